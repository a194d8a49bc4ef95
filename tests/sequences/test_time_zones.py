"""Subscribers' own time zones: sent by the browser at signup, set by an import column (or the
"time_zone" custom field), and used by a sequence that sends at its hour in each subscriber's
zone, across daylight saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from broadcasts.models import Delivery
from convertkit.models import Job
from sequences.services import subscriber_enrol
from subscribers.csv import importer
from subscribers.models import Subscriber
from subscribers.signup_forms.services import form_create
from tests.factories import SubscriberFactory
from tests.sequences.conftest import advance_and_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def visitor(settings):
    settings.SITE_URL = "http://testserver"
    return Client(REMOTE_ADDR="203.0.113.7")


@pytest.fixture
def form(account_a):
    return form_create(account=account_a, name="Footer", double_opt_in=False)


def sign_up(visitor, form, email="reader@example.org", **fields):
    return visitor.post(f"/f/{form.uid}/subscribe", {"email": email, **fields})


def import_rows(account, data: bytes) -> Job:
    job = importer.import_job_create(
        account=account, created_by=None, file_name="list.csv", chunks=[data]
    )
    header = data.split(b"\n", 1)[0].decode().split(",")
    importer.import_job_start(
        job=job,
        mapping=importer.import_mapping_guess(header=header, custom_fields=[]),
        tag_names=[],
        encoding="utf-8",
        consent_by="tests",
        enqueue=False,
    )
    return importer.import_job_run(job_id=job.pk)


# --- Signup --------------------------------------------------------------------------------------


def test_the_hosted_page_and_the_embed_snippet_carry_the_time_zone_field(visitor, form):
    page = visitor.get(f"/f/{form.uid}/").content.decode()
    assert 'name="ck_time_zone" value="" data-ck-time-zone' in page
    assert "Intl.DateTimeFormat().resolvedOptions().timeZone" in page
    script = visitor.get(reverse("form_embed_script")).content.decode()
    assert "resolvedOptions().timeZone" in script and "[data-ck-time-zone]" in script


def test_a_signup_stores_the_browsers_time_zone(visitor, form):
    assert sign_up(visitor, form, ck_time_zone="America/New_York").status_code == 200
    assert Subscriber.objects.get().time_zone == "America/New_York"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "x" * 300, "utc "])
def test_a_time_zone_that_is_not_one_is_ignored_not_an_error(visitor, form, zone):
    response = sign_up(visitor, form, ck_time_zone=zone)
    assert response.status_code == 200
    assert Subscriber.objects.get().time_zone == ""


def test_a_known_zone_is_never_replaced_by_nothing_nor_by_a_stranger_for_an_active_subscriber(
    visitor, form, account_a
):
    known = SubscriberFactory(account=account_a, email="known@example.org", time_zone="Asia/Tokyo")
    unknown = SubscriberFactory(account=account_a, email="unknown@example.org")
    sign_up(visitor, form, "known@example.org", ck_time_zone="")
    sign_up(visitor, form, "known@example.org", ck_time_zone="Europe/Paris")
    sign_up(visitor, form, "unknown@example.org", ck_time_zone="Europe/Paris")
    known.refresh_from_db()
    unknown.refresh_from_db()
    assert (known.time_zone, unknown.time_zone) == ("Asia/Tokyo", "Europe/Paris")


def test_an_unconfirmed_subscriber_takes_the_latest_zone_and_an_unsubscribed_one_on_confirming(
    visitor, account_a, django_capture_on_commit_callbacks
):
    from subscribers.models import Signup
    from subscribers.signup_forms.signup import confirmation_url

    form = form_create(account=account_a, name="Double", double_opt_in=True)
    sign_up(visitor, form, "new@example.org", ck_time_zone="Europe/Paris")
    sign_up(visitor, form, "new@example.org", ck_time_zone="Europe/Berlin")
    assert Subscriber.objects.get(email="new@example.org").time_zone == "Europe/Berlin"

    left = SubscriberFactory(account=account_a, email="left@example.org", state="unsubscribed")
    sign_up(visitor, form, "left@example.org", ck_time_zone="Europe/Lisbon")
    left.refresh_from_db()
    assert left.time_zone == ""  # what they submitted waits for their confirmation
    signup = Signup.objects.filter(subscriber=left).get()
    with django_capture_on_commit_callbacks(execute=True):
        visitor.post(confirmation_url(signup).removeprefix("http://testserver"))
    left.refresh_from_db()
    assert (left.state, left.time_zone) == ("active", "Europe/Lisbon")


def test_time_zone_is_not_a_key_a_custom_field_may_take(alice_client):
    response = alice_client.post(
        reverse("custom_field_list"), {"label": "Zone", "key": "ck_time_zone"}
    )
    assert response.status_code == 400


# --- Import --------------------------------------------------------------------------------------


def test_an_import_column_sets_time_zones_and_reports_bad_ones_as_row_errors(account_a):
    SubscriberFactory(account=account_a, email="kept@example.org", time_zone="Asia/Tokyo")
    SubscriberFactory(account=account_a, email="moved@example.org", time_zone="Asia/Tokyo")
    data = (
        b"email,time zone\n"
        b"new@example.org,America/New_York\n"
        b"kept@example.org,\n"
        b"moved@example.org,Europe/Paris\n"
        b"bad@example.org,Eastern Time\n"
    )
    job = import_rows(account_a, data)

    assert job.state == Job.State.DONE, job.message
    zones = dict(Subscriber.objects.values_list("email", "time_zone"))
    assert zones == {
        "new@example.org": "America/New_York",
        "kept@example.org": "Asia/Tokyo",
        "moved@example.org": "Europe/Paris",
    }
    (error,) = job.errors.all()
    assert (error.line, error.column_name) == (5, "time zone")
    assert error.message.startswith("“Eastern Time” is not a time zone name")
    assert job.summary["updated"] == 1 and job.summary["created"] == 1


# --- The engine ----------------------------------------------------------------------------------


def sent_at_pass(subscriber) -> list[str]:
    return list(
        Delivery.objects.filter(subscriber=subscriber, state=Delivery.State.SENT)
        .order_by("id")
        .values_list("broadcast__subject", flat=True)
    )


# (zone, when they enter, when email two is due in UTC: 9:00 in their zone the next day). Each
# next day is a daylight saving change in that zone; the unknown zone falls back to the
# sequence's (UTC).
DST_CASES = [
    ("America/New_York", datetime(2026, 3, 7, 15, 0, tzinfo=UTC), datetime(2026, 3, 8, 13, 0)),
    ("Europe/Paris", datetime(2026, 3, 28, 12, 0, tzinfo=UTC), datetime(2026, 3, 29, 7, 0)),
    ("Europe/Paris", datetime(2026, 10, 24, 12, 0, tzinfo=UTC), datetime(2026, 10, 25, 8, 0)),
    ("", datetime(2026, 3, 7, 15, 0, tzinfo=UTC), datetime(2026, 3, 8, 9, 0)),
]


@pytest.mark.parametrize("known_by", ["signup", "import", "custom field"])
@pytest.mark.parametrize(("zone", "entered", "due"), DST_CASES)
def test_a_sequence_sends_at_nine_in_the_subscribers_own_zone_across_a_dst_change(
    make_sequence, account_a, visitor, form, smtp_sink, known_by, zone, entered, due
):
    due = due.replace(tzinfo=UTC)
    sequence = make_sequence(
        account=account_a,
        emails=[("One", 0, "days"), ("Two", 1, "days")],
        subscriber_time_zone=True,
    )
    if known_by == "signup":
        sign_up(visitor, form, ck_time_zone=zone)
    elif known_by == "import":
        import_rows(account_a, f"email,timezone\nreader@example.org,{zone}\n".encode())
    else:
        SubscriberFactory(account=account_a, email="reader@example.org", fields={"time_zone": zone})
    reader = Subscriber.objects.get(email="reader@example.org")
    assert (reader.time_zone if known_by != "custom field" else reader.fields["time_zone"]) == zone
    subscriber_enrol(sequence=sequence, subscriber=reader, now=entered)

    advance_and_send(sequence, entered)
    assert sent_at_pass(reader) == ["One"]
    advance_and_send(sequence, due - timedelta(minutes=1))
    assert sent_at_pass(reader) == ["One"]
    advance_and_send(sequence, due)
    assert sent_at_pass(reader) == ["One", "Two"]
    assert smtp_sink.copies["reader@example.org"] == 2


def test_without_the_option_the_sequences_own_zone_decides(make_sequence, account_a, smtp_sink):
    sequence = make_sequence(account=account_a, emails=[("One", 0, "days"), ("Two", 1, "days")])
    reader = SubscriberFactory(account=account_a, time_zone="America/New_York")
    entered = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    subscriber_enrol(sequence=sequence, subscriber=reader, now=entered)
    advance_and_send(sequence, entered)
    advance_and_send(sequence, datetime(2026, 3, 8, 9, 0, tzinfo=UTC))
    assert sent_at_pass(reader) == ["One", "Two"]
