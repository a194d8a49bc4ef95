"""Every way a subscriber enters a sequence: a form's setting (single and double opt-in), a tag
added (by hand, at signup, in bulk, by an import), the subscriber page, the bulk action, the
import option; each enrols exactly once, refuses the suppressed and never reaches another
account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import dateformat, timezone

from broadcasts.models import Delivery
from convertkit.models import Job
from sequences.engine import sequences_advance
from sequences.entry import form_sequences_set, tag_sequences_set
from sequences.models import Sequence, SequenceTrigger, Subscription
from sequences.services import subscriber_enrol
from subscribers import bulk
from subscribers.csv import importer
from subscribers.models import Signup, Subscriber, Tag, Tagging
from subscribers.services import subscriber_tag
from subscribers.signup_forms.services import form_create
from subscribers.signup_forms.signup import confirmation_url
from tests.factories import AccountFactory, SubscriberFactory, TagFactory, TaggingFactory
from tests.sequences.conftest import advance_and_send

pytestmark = pytest.mark.django_db

ACTIVE, UNCONFIRMED, COMPLETED = (
    Subscription.State.ACTIVE,
    Subscription.State.UNCONFIRMED,
    Subscription.State.COMPLETED,
)
# A Monday, 10:00 UTC (after the default send hour of 9).
MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def subscription_of(subscriber) -> Subscription | None:
    return Subscription.objects.filter(subscriber_id=subscriber.pk).first()


def sent_subjects(subscriber) -> list[str]:
    return list(
        Delivery.objects.filter(subscriber_id=subscriber.pk, state=Delivery.State.SENT)
        .order_by("id")
        .values_list("broadcast__subject", flat=True)
    )


def enrol_statements(queries) -> int:
    return sum("INSERT INTO sequences_subscription" in query["sql"] for query in queries)


def later(**delta) -> datetime:
    """The real clock moved on: what enrolled through a page or a form did so at the real now."""
    return timezone.now() + timedelta(**delta)


@pytest.fixture
def course(make_sequence, account_a):
    return make_sequence(account=account_a, emails=[("One", 0, "days"), ("Two", 1, "days")])


@pytest.fixture
def visitor(settings):
    settings.SITE_URL = "http://testserver"
    return Client(REMOTE_ADDR="203.0.113.7")


def sign_up(visitor, form, email="reader@example.org", **fields):
    return visitor.post(f"/f/{form.uid}/subscribe", {"email": email, **fields})


# --- Forms ---------------------------------------------------------------------------------------


def test_a_single_opt_in_signup_enters_the_forms_sequence_once(
    course, account_a, visitor, django_capture_on_commit_callbacks, smtp_sink
):
    form = form_create(account=account_a, name="Footer", double_opt_in=False)
    form_sequences_set(form=form, sequence_ids=[course.pk])

    with django_capture_on_commit_callbacks(execute=True):
        sign_up(visitor, form)
    reader = Subscriber.objects.get(email="reader@example.org")
    subscription = subscription_of(reader)
    assert (subscription.sequence_id, subscription.state) == (course.pk, ACTIVE)
    advance_and_send(course, later())
    assert sent_subjects(reader) == ["One"]

    with django_capture_on_commit_callbacks(execute=True):
        sign_up(visitor, form)  # again: they stay where they are
    advance_and_send(course, later(days=1))
    advance_and_send(course, later(days=5))
    with django_capture_on_commit_callbacks(execute=True):
        sign_up(visitor, form)  # after completing a sequence that does not repeat
    advance_and_send(course, later(days=6))

    assert sent_subjects(reader) == ["One", "Two"]
    assert Subscription.objects.get().state == COMPLETED
    assert smtp_sink.copies["reader@example.org"] == 2


def test_a_repeating_sequence_starts_again_for_someone_who_completed_it_and_signs_up_again(
    make_sequence, account_a, visitor, django_capture_on_commit_callbacks, smtp_sink
):
    course = make_sequence(account=account_a, emails=[("One", 0, "days")], repeat=True)
    form = form_create(account=account_a, name="Footer", double_opt_in=False)
    form_sequences_set(form=form, sequence_ids=[course.pk])
    with django_capture_on_commit_callbacks(execute=True):
        sign_up(visitor, form)
    advance_and_send(course, later())
    assert Subscription.objects.get().state == COMPLETED

    with django_capture_on_commit_callbacks(execute=True):
        sign_up(visitor, form)
    subscription = Subscription.objects.get()
    assert (subscription.state, subscription.round, subscription.position_key) == (ACTIVE, 1, None)
    advance_and_send(course, later(minutes=1))
    assert smtp_sink.copies["reader@example.org"] == 2


def test_a_double_opt_in_signup_waits_unconfirmed_and_starts_when_they_confirm(
    course, account_a, visitor, django_capture_on_commit_callbacks, smtp_sink
):
    form = form_create(account=account_a, name="Footer", double_opt_in=True)
    form_sequences_set(form=form, sequence_ids=[course.pk])
    with django_capture_on_commit_callbacks(execute=True):
        sign_up(visitor, form)
    reader = Subscriber.objects.get(email="reader@example.org")
    assert subscription_of(reader).state == UNCONFIRMED
    advance_and_send(course, later(days=3))
    assert sent_subjects(reader) == []

    confirm = confirmation_url(Signup.objects.get()).removeprefix("http://testserver")
    with django_capture_on_commit_callbacks(execute=True):
        assert visitor.post(confirm).status_code == 200
    subscription = subscription_of(reader)
    assert subscription.state == ACTIVE and subscription.next_due_at is not None
    advance_and_send(course, subscription.next_due_at)
    assert sent_subjects(reader) == ["One"]


def test_someone_who_had_unsubscribed_enters_the_forms_sequence_only_once_they_confirm(
    course, account_a, visitor, django_capture_on_commit_callbacks
):
    form = form_create(account=account_a, name="Footer", double_opt_in=False)
    form_sequences_set(form=form, sequence_ids=[course.pk])
    reader = SubscriberFactory(
        account=account_a, email="reader@example.org", state=Subscriber.State.UNSUBSCRIBED
    )
    with django_capture_on_commit_callbacks(execute=True):
        sign_up(visitor, form)
    assert subscription_of(reader) is None

    confirm = confirmation_url(Signup.objects.get()).removeprefix("http://testserver")
    with django_capture_on_commit_callbacks(execute=True):
        visitor.post(confirm)
    assert subscription_of(reader).state == ACTIVE


@pytest.mark.parametrize("state", [Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED])
def test_a_bounced_or_complained_address_signing_up_enters_nothing(
    course, account_a, visitor, state
):
    form = form_create(account=account_a, name="Footer", double_opt_in=False)
    form_sequences_set(form=form, sequence_ids=[course.pk])
    SubscriberFactory(account=account_a, email="reader@example.org", state=state)
    sign_up(visitor, form)
    assert not Subscription.objects.exists()


def test_the_builder_saves_the_forms_sequences_and_refuses_another_accounts(
    alice_client, account_a, course, make_sequence
):
    from tests.subscribers.signup_forms.test_builder import builder_url, page_inputs

    form = form_create(account=account_a, name="Footer")
    theirs = make_sequence(account=AccountFactory(), emails=[("Theirs", 0, "days")])
    page = alice_client.get(builder_url(form))
    assert "Add subscribers to sequences" in page.content.decode()
    data = page_inputs(page)

    response = alice_client.post(builder_url(form), {**data, "sequences": [course.pk]})
    assert response.status_code == 302
    assert list(SequenceTrigger.objects.values_list("form_id", "sequence_id")) == [
        (form.pk, course.pk)
    ]
    page = alice_client.get(builder_url(form)).content.decode()
    assert f'value="{course.pk}" id="id_sequences_0" checked' in page

    response = alice_client.post(builder_url(form), {**data, "sequences": [theirs.pk]})
    assert response.status_code == 400
    assert "not one of the available choices" in response.content.decode()
    assert list(SequenceTrigger.objects.values_list("form_id", "sequence_id")) == [
        (form.pk, course.pk)
    ]

    response = alice_client.post(builder_url(form), data)  # none ticked
    assert response.status_code == 302
    assert not SequenceTrigger.objects.exists()


def test_a_form_or_tag_cannot_be_pointed_at_another_accounts_sequence_by_the_services(
    course, account_a
):
    from sequences.services import SequenceInvalid

    theirs = Sequence.objects.create(account=AccountFactory(), name="Theirs")
    form = form_create(account=account_a, name="Footer")
    tag = TagFactory(account=account_a)
    with pytest.raises(SequenceInvalid):
        form_sequences_set(form=form, sequence_ids=[course.pk, theirs.pk])
    with pytest.raises(SequenceInvalid):
        tag_sequences_set(tag=tag, sequence_ids=[theirs.pk])
    assert not SequenceTrigger.objects.exists()


# --- Tags ----------------------------------------------------------------------------------------


def test_adding_a_tag_on_the_subscriber_page_enrols_them_once(alice_client, account_a, course):
    tag = TagFactory(account=account_a, name="buyer")
    tag_sequences_set(tag=tag, sequence_ids=[course.pk])
    reader = SubscriberFactory(account=account_a)
    url = reverse("subscriber_tag", args=[reader.pk])

    alice_client.post(url, {"name": "Buyer"})
    subscription = subscription_of(reader)
    assert (subscription.sequence_id, subscription.state) == (course.pk, ACTIVE)

    sequences_advance(now=later())
    Tagging.objects.filter(subscriber=reader).delete()
    alice_client.post(url, {"name": "buyer"})  # removed and added again: no restart
    subscription.refresh_from_db()
    assert subscription.sent_count == 1 and subscription.position_key is not None
    assert Subscription.objects.count() == 1


def test_a_tag_they_had_already_adds_them_to_nothing(account_a, course):
    tag = TagFactory(account=account_a, name="buyer")
    reader = SubscriberFactory(account=account_a)
    TaggingFactory(tag=tag, subscriber=reader)
    tag_sequences_set(tag=tag, sequence_ids=[course.pk])
    subscriber_tag(subscriber=reader, name="buyer")
    assert subscription_of(reader) is None


def test_a_tag_added_to_an_unsubscribed_subscriber_enrols_nobody(account_a, course):
    tag = TagFactory(account=account_a, name="buyer")
    tag_sequences_set(tag=tag, sequence_ids=[course.pk])
    reader = SubscriberFactory(account=account_a, state=Subscriber.State.UNSUBSCRIBED)
    subscriber_tag(subscriber=reader, name="buyer")
    assert reader.taggings.exists() and subscription_of(reader) is None


def test_a_form_s_tags_enrol_through_the_tags_trigger_once_confirmed(
    account_a, course, visitor, django_capture_on_commit_callbacks
):
    form = form_create(account=account_a, name="Footer", tag_names=["webinar"])
    tag_sequences_set(tag=Tag.objects.get(name="webinar"), sequence_ids=[course.pk])
    with django_capture_on_commit_callbacks(execute=True):
        sign_up(visitor, form)
    reader = Subscriber.objects.get()
    assert subscription_of(reader) is None  # tags wait for the confirmation
    with django_capture_on_commit_callbacks(execute=True):
        visitor.post(confirmation_url(Signup.objects.get()).removeprefix("http://testserver"))
    assert subscription_of(reader).state == ACTIVE


def test_the_tag_page_sets_what_adding_the_tag_does_and_refuses_another_accounts_sequence(
    alice_client, account_a, course
):
    tag = TagFactory(account=account_a, name="buyer")
    theirs = Sequence.objects.create(account=AccountFactory(), name="Theirs")
    url = reverse("tag_detail", args=[tag.pk])
    assert "Welcome course" in alice_client.get(url).content.decode()

    assert alice_client.post(url, {"sequences": [course.pk]})["Location"] == url
    assert SequenceTrigger.objects.get().sequence == course
    listing = alice_client.get(reverse("tag_list")).content.decode()
    assert "Welcome course" in listing

    response = alice_client.post(url, {"sequences": [course.pk, theirs.pk]})
    assert response.status_code == 400
    assert "Nothing was saved" in response.content.decode()
    assert list(SequenceTrigger.objects.values_list("sequence_id", flat=True)) == [course.pk]

    alice_client.post(url, {})
    assert not SequenceTrigger.objects.exists()


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(bulk, "BATCH_SIZE", 5)


def run_bulk(client, data, django_capture_on_commit_callbacks) -> Job:
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("subscriber_bulk"), {**data, "confirmed": "yes"})
    assert response.status_code == 302, response.content.decode()
    job = Job.objects.get()
    bulk.bulk_job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_the_bulk_tag_action_enrols_the_newly_tagged_in_one_statement_per_batch(
    alice_client, account_a, course, small_batches, django_capture_on_commit_callbacks
):
    tag = TagFactory(account=account_a, name="buyer")
    tag_sequences_set(tag=tag, sequence_ids=[course.pk])
    readers = [SubscriberFactory(account=account_a) for _ in range(12)]
    TaggingFactory(tag=tag, subscriber=readers[0])  # had it already: not added
    bounced = SubscriberFactory(account=account_a, state=Subscriber.State.BOUNCED)
    data = {"q": "", "state": "", "tag": "", "action": "tag", "target_tag": tag.pk}

    with CaptureQueriesContext(connection) as queries:
        job = run_bulk(alice_client, data, django_capture_on_commit_callbacks)

    assert job.state == Job.State.DONE and job.summary == {"affected": 12}
    batches = -(-Subscriber.objects.filter(account=account_a).count() // bulk.BATCH_SIZE)
    assert batches > 1 and enrol_statements(queries.captured_queries) == batches
    assert set(Subscription.objects.values_list("subscriber_id", flat=True)) == {
        reader.pk for reader in readers[1:]
    }
    assert bounced.taggings.exists() and subscription_of(bounced) is None


# --- The subscriber page -----------------------------------------------------------------------


def test_the_subscriber_page_adds_to_a_sequence_shows_where_they_are_and_removes(
    alice_client, account_a, course
):
    reader = SubscriberFactory(account=account_a)
    detail = reverse("subscriber_detail", args=[reader.pk])
    add = reverse("subscriber_sequence_add", args=[reader.pk])
    page = alice_client.get(detail).content.decode()
    assert "Not in any sequence." in page and "Add to sequence" in page
    assert f'<option value="{course.pk}"' in page

    response = alice_client.post(add, {"sequence": course.pk}, follow=True)
    page = response.content.decode()
    assert "Added to the sequence “Welcome course”." in page
    assert "before email 1 of 2" in page and "Due now" in page

    sequences_advance(now=later())
    page = alice_client.get(detail).content.decode()
    assert "after email 1 of 2" in page
    assert f'<option value="{course.pk}"' not in page  # not offered again while they are in it
    # Email two is due at 9:00 UTC the next day, shown in the account's zone (Europe/Paris).
    due = subscription_of(reader).next_due_at
    assert (due.astimezone(UTC).hour, due.astimezone(UTC).date()) == (9, later(days=1).date())
    local = timezone.localtime(due, account_a.time_zone and ZoneInfo(account_a.time_zone))
    assert dateformat.format(local, "D j M Y, H:i e") in page

    response = alice_client.post(add, {"sequence": course.pk}, follow=True)
    assert "They are already in “Welcome course”: nothing changed." in response.content.decode()

    remove = reverse("subscriber_sequence_remove", args=[reader.pk, course.pk])
    page = alice_client.post(remove, follow=True).content.decode()
    assert "Removed from “Welcome course”" in page
    assert subscription_of(reader).state == Subscription.State.REMOVED
    assert "Removed" in page and f'action="{remove}"' not in page


@pytest.mark.parametrize(
    "state", [Subscriber.State.UNSUBSCRIBED, Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED]
)
def test_a_suppressed_subscriber_is_refused_with_the_reason_on_their_page(
    alice_client, account_a, course, state
):
    reader = SubscriberFactory(account=account_a, email="gone@example.org", state=state)
    response = alice_client.post(
        reverse("subscriber_sequence_add", args=[reader.pk]), {"sequence": course.pk}
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert f"gone@example.org is {state}: they cannot be added to a sequence." in body
    assert 'role="alert"' in body
    assert not Subscription.objects.exists()


def test_another_accounts_sequence_cannot_be_added_from_the_subscriber_page(
    alice_client, account_a
):
    theirs = Sequence.objects.create(account=AccountFactory(), name="Theirs")
    reader = SubscriberFactory(account=account_a)
    response = alice_client.post(
        reverse("subscriber_sequence_add", args=[reader.pk]), {"sequence": theirs.pk}
    )
    assert response.status_code == 400
    assert "not one of the available choices" in response.content.decode()
    removal = reverse("subscriber_sequence_remove", args=[reader.pk, theirs.pk])
    assert alice_client.post(removal).status_code == 404
    assert not Subscription.objects.exists()


def test_the_timeline_shows_the_sequence_emails_sent(alice_client, account_a, course, smtp_sink):
    reader = SubscriberFactory(account=account_a)
    subscriber_enrol(sequence=course, subscriber=reader, now=MONDAY)
    advance_and_send(course, MONDAY)
    page = alice_client.get(reverse("subscriber_detail", args=[reader.pk])).content.decode()
    assert "“One”" in page
    assert "from the sequence" in page and "Welcome course" in page


# --- The bulk action -----------------------------------------------------------------------------


def test_the_bulk_action_adds_a_filtered_list_and_counts_added_restarted_and_refused(
    alice_client, account_a, make_sequence, small_batches, django_capture_on_commit_callbacks
):
    course = make_sequence(account=account_a, emails=[("One", 0, "days")], repeat=True)
    vip = TagFactory(account=account_a, name="vip")
    fresh = [SubscriberFactory(account=account_a) for _ in range(3)]
    finished = SubscriberFactory(account=account_a)
    inside = SubscriberFactory(account=account_a)
    unsubscribed = SubscriberFactory(account=account_a, state=Subscriber.State.UNSUBSCRIBED)
    outside = SubscriberFactory(account=account_a)  # not tagged: not in the filtered list
    for reader in [*fresh, finished, inside, unsubscribed]:
        TaggingFactory(tag=vip, subscriber=reader)
    subscriber_enrol(sequence=course, subscriber=finished, now=MONDAY)
    sequences_advance(now=MONDAY)
    assert subscription_of(finished).state == COMPLETED
    subscriber_enrol(sequence=course, subscriber=inside, now=MONDAY)
    data = {"q": "", "state": "", "tag": vip.pk, "action": "sequence", "target_sequence": course.pk}

    confirm = alice_client.post(reverse("subscriber_bulk"), data).content.decode()
    assert "Add 6 subscribers to the sequence &#x27;Welcome course&#x27;?" in confirm
    with CaptureQueriesContext(connection) as queries:
        job = run_bulk(alice_client, data, django_capture_on_commit_callbacks)

    assert job.kind == Job.Kind.BULK_SEQUENCE and job.state == Job.State.DONE
    assert job.summary == {"added": 3, "restarted": 1, "refused": 2}
    assert job.message.startswith("3 added to 'Welcome course', 1 restarted")
    assert enrol_statements(queries.captured_queries) == 2  # 6 in the list, batches of 5
    assert subscription_of(unsubscribed) is None and subscription_of(outside) is None
    assert subscription_of(finished).round == 1
    progress = alice_client.get(reverse("job_progress", args=[job.pk])).content.decode()
    assert "Added" in progress and "Refused" in progress


def test_the_bulk_action_refuses_another_accounts_sequence_and_starts_nothing(
    alice_client, account_a
):
    theirs = Sequence.objects.create(account=AccountFactory(), name="Theirs")
    SubscriberFactory(account=account_a)
    data = {"q": "", "state": "", "tag": "", "action": "sequence", "target_sequence": theirs.pk}
    response = alice_client.post(reverse("subscriber_bulk"), {**data, "confirmed": "yes"})
    assert response.status_code == 400
    assert not Job.objects.exists() and not Subscription.objects.exists()
    response = alice_client.post(reverse("subscriber_bulk"), {**data, "target_sequence": ""})
    assert "Choose the sequence to add them to." in response.content.decode()


def test_a_bulk_job_whose_sequence_was_deleted_stops_with_the_reason(
    alice_client, account_a, course, small_batches, django_capture_on_commit_callbacks
):
    SubscriberFactory(account=account_a)
    data = {"q": "", "state": "", "tag": "", "action": "sequence", "target_sequence": course.pk}
    with django_capture_on_commit_callbacks(execute=False):
        alice_client.post(reverse("subscriber_bulk"), {**data, "confirmed": "yes"})
    course.delete()
    job = Job.objects.get()
    bulk.bulk_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert job.message == "The sequence 'Welcome course' was deleted, so the job stopped."


# --- The import ----------------------------------------------------------------------------------


def import_file(account, data: bytes, *, mapping, tags=(), sequence=None) -> Job:
    job = importer.import_job_create(
        account=account, created_by=None, file_name="list.csv", chunks=[data]
    )
    importer.import_job_start(
        job=job,
        mapping=mapping,
        tag_names=list(tags),
        encoding="utf-8",
        consent_by="tests",
        enqueue=False,
        sequence=sequence,
    )
    return importer.import_job_run(job_id=job.pk)


def test_an_import_adds_everyone_in_the_file_to_the_chosen_sequence(account_a, course):
    SubscriberFactory(account=account_a, email="known@example.org")
    SubscriberFactory(account=account_a, email="left@example.org", state="unsubscribed")
    data = b"email\nnew@example.org\nknown@example.org\nleft@example.org\nnot-an-address\n"
    with CaptureQueriesContext(connection) as queries:
        job = import_file(account_a, data, mapping=["email"], sequence=course)

    assert job.state == Job.State.DONE, job.message
    assert job.summary["added to “Welcome course”"] == 2
    assert job.summary["restarted at its first email"] == 0
    assert job.summary["refused (unsubscribed, bounced or complained, or in it already)"] == 1
    assert enrol_statements(queries.captured_queries) == 1
    assert set(Subscription.objects.values_list("subscriber__email", flat=True)) == {
        "new@example.org",
        "known@example.org",
    }


def test_an_import_tags_enrol_those_newly_tagged_through_the_tags_trigger(account_a, course):
    buyer = TagFactory(account=account_a, name="buyer")
    tag_sequences_set(tag=buyer, sequence_ids=[course.pk])
    had_it = SubscriberFactory(account=account_a, email="had@example.org")
    TaggingFactory(tag=buyer, subscriber=had_it)
    data = b"email,tags\nnew@example.org,Buyer\nhad@example.org,buyer\nother@example.org,misc\n"
    job = import_file(account_a, data, mapping=["email", "tags"])

    assert job.state == Job.State.DONE, job.message
    assert list(Subscription.objects.values_list("subscriber__email", flat=True)) == [
        "new@example.org"
    ]
    # Chosen tags go the same way.
    job = import_file(account_a, b"email\nthird@example.org\n", mapping=["email"], tags=["buyer"])
    assert Subscription.objects.filter(subscriber__email="third@example.org").exists()


def test_the_import_map_page_offers_the_accounts_sequences_only(alice_client, account_a, course):
    theirs = Sequence.objects.create(account=AccountFactory(), name="Theirs")
    job = importer.import_job_create(
        account=account_a, created_by=None, file_name="list.csv", chunks=[b"email\na@b.org\n"]
    )
    url = reverse("subscriber_import_map", args=[job.pk])
    page = alice_client.get(url).content.decode()
    assert "Welcome course" in page and "Theirs" not in page
    data = {"column_0": "email", "encoding": "utf-8", "tags": ""}
    response = alice_client.post(url, {**data, "sequence": theirs.pk})
    assert response.status_code == 200  # the page again, with the error
    assert "not one of the available choices" in response.content.decode()
    job.refresh_from_db()
    assert "mapping" not in job.params
    with pytest.raises(ValueError):
        importer.import_job_start(
            job=job,
            mapping=["email"],
            tag_names=[],
            encoding="utf-8",
            consent_by="t",
            sequence=theirs,
        )

    response = alice_client.post(url, {**data, "sequence": course.pk})
    assert response["Location"] == reverse("job_detail", args=[job.pk])
    job.refresh_from_db()
    assert job.params["sequence"] == course.pk


def test_an_import_whose_sequence_was_deleted_imports_nothing_and_says_why(account_a, course):
    job = importer.import_job_create(
        account=account_a, created_by=None, file_name="list.csv", chunks=[b"email\na@b.org\n"]
    )
    importer.import_job_start(
        job=job,
        mapping=["email"],
        tag_names=[],
        encoding="utf-8",
        consent_by="t",
        enqueue=False,
        sequence=course,
    )
    course.delete()
    job = importer.import_job_run(job_id=job.pk)
    assert job.state == Job.State.FAILED
    assert "The sequence “Welcome course” was deleted" in job.message
    assert not Subscriber.objects.exists()


def test_an_unconfirmed_subscriber_added_from_their_page_is_told_to_wait(
    alice_client, account_a, course
):
    reader = SubscriberFactory(account=account_a, state=Subscriber.State.UNCONFIRMED)
    response = alice_client.post(
        reverse("subscriber_sequence_add", args=[reader.pk]), {"sequence": course.pk}, follow=True
    )
    page = response.content.decode()
    assert "it starts once they confirm their address" in page
    assert "Starts when they confirm their address" in page
    assert subscription_of(reader).state == UNCONFIRMED
