"""The creator's sequence pages: the keyset-paged list, a new sequence, its page (emails in
order with their delays and badges, add / move / publish / unpublish / delete, settings with
clear errors and nothing saved on bad input, pause and resume), the email editor (the broadcast
editor's email part: live preview, preview as, test send; the delay and its own send days) and
the reports, checked against real sends through the pipeline and real tracking rollups.

Posts start from what the page itself renders (its inputs, as a browser would send them), with
the changes a test makes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from broadcasts.models import Broadcast, Delivery
from sequences.models import Sequence, SequenceEmail, Subscription
from sequences.services import subscriber_enrol
from subscribers.models import Subscriber
from tests.broadcasts.test_views import page_inputs
from tests.factories import SubscriberFactory, TagFactory, TaggingFactory
from tests.sequences.conftest import advance_and_send, email_add
from tracking.models import EventKind, Machine
from tracking.store import TrackedEvent, events_store

HTMX = {"HTTP_HX_REQUEST": "true"}
# A Monday, 10:00 UTC (after the default send hour of 9).
MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def url(name: str, *objects) -> str:
    args = []
    for item in objects:
        if isinstance(item, SequenceEmail):
            args += [item.sequence_id, item.id]
        else:
            args.append(item.id)
    return reverse(name, args=args)


def stored(sequence: Sequence) -> dict:
    sequence.refresh_from_db()
    return {field.attname: getattr(sequence, field.attname) for field in Sequence._meta.fields}


def email_stored(email: SequenceEmail) -> tuple[dict, dict]:
    email.refresh_from_db()
    message = Broadcast.objects.get(pk=email.message_id)
    return (
        {f.attname: getattr(email, f.attname) for f in SequenceEmail._meta.fields},
        {f.attname: getattr(message, f.attname) for f in Broadcast._meta.fields},
    )


def subjects_in_order(sequence: Sequence) -> list[str]:
    return list(
        sequence.emails.filter(deleted_at__isnull=True)
        .order_by("sort_key")
        .values_list("message__subject", flat=True)
    )


@pytest.fixture
def course(make_sequence, account_a, alice):
    """Alice's sequence "Welcome course": One (immediately), Two (a day later), a draft."""
    sequence = make_sequence(account=account_a, emails=[("One", 0, "days"), ("Two", 1, "days")])
    email_add(sequence, subject="Draft three", delay=2, unit="hours", publish=False)
    return sequence


def emails_of(sequence: Sequence) -> list[SequenceEmail]:
    return list(sequence.emails.filter(deleted_at__isnull=True).order_by("sort_key"))


def settings_data(client, sequence: Sequence, **changes) -> dict:
    return {**page_inputs(client.get(url("sequence_detail", sequence)), "settings"), **changes}


def editor_data(client, email: SequenceEmail, **changes) -> dict:
    return {**page_inputs(client.get(url("sequence_email_edit", email)), "email-form"), **changes}


# --- List and create --------------------------------------------------------------------------


def test_sequences_sit_next_to_broadcasts_in_the_main_navigation(alice_client, account_a):
    body = alice_client.get(reverse("sequence_list")).content.decode()
    nav = body[body.index('id="main-nav"') : body.index("</nav>")]
    links = re.findall(r'class="nav-link[^"]*"[^>]*>([^<]+)<', nav)
    assert links.index("Sequences") == links.index("Broadcasts") + 1
    assert 'aria-current="page">Sequences<' in nav


def test_the_list_shows_each_sequence_with_its_state_emails_and_subscribers(
    alice_client, course, account_a
):
    for n in range(3):
        reader = SubscriberFactory(account=account_a, email=f"r{n}@example.org")
        subscriber_enrol(sequence=course, subscriber=reader, now=MONDAY)
    waiting = SubscriberFactory(account=account_a, state=Subscriber.State.UNCONFIRMED)
    subscriber_enrol(sequence=course, subscriber=waiting, now=MONDAY)
    Sequence.objects.create(account=account_a, name="Quiet one", state=Sequence.State.PAUSED)
    Sequence.objects.create(account=account_a, name="No days", send_days=[])

    response = alice_client.get(reverse("sequence_list") + "?counts=1")
    assert response.status_code == 200
    rows = re.findall(r"<tr>(.*?)</tr>", response.content.decode(), re.S)[1:]
    cells = [re.sub(r"<[^>]+>", "", row).split() for row in rows]
    assert cells[0] == ["No", "days", "Paused:", "no", "send", "day", "0", "0"]
    assert cells[1] == ["Quiet", "one", "Paused", "0", "0"]
    assert cells[2] == ["Welcome", "course", "Active", "3", "(2", "published)", "3"]
    assert f'href="/sequences/{course.id}/"' in rows[2]


def test_the_list_shows_at_once_and_its_counts_come_after(
    alice_client, course, account_a, account_b
):
    for n in range(2):
        reader = SubscriberFactory(account=account_a, email=f"r{n}@example.org")
        subscriber_enrol(sequence=course, subscriber=reader, now=MONDAY)
    theirs = Sequence.objects.create(account=account_b, name="Theirs")
    body = alice_client.get(reverse("sequence_list")).content.decode()
    assert f'<span id="active-{course.id}"><span class="muted" title="Counting…">' in body
    counts_url = re.search(r'hx-get="([^"]+)"', body)[1].replace("&amp;", "&")
    assert counts_url == f"{reverse('sequence_list_counts')}?ids={course.id}"
    # Another account's id counts nothing, and says nothing of that sequence.
    hostile = ",-1,abc,99999999999999999999999"
    answer = alice_client.get(f"{counts_url},{theirs.id}{hostile}", **HTMX).content.decode()
    assert re.findall(r'<span id="active-(\d+)" hx-swap-oob="true">([^<]*)</span>', answer) == [
        (str(course.id), "2")
    ]
    redirect = alice_client.get(counts_url)
    assert redirect.status_code == 302 and redirect.url.endswith("?counts=1")


def test_the_list_is_keyset_paged_newest_first(alice_client, account_a):
    Sequence.objects.bulk_create(
        Sequence(account=account_a, name=f"Course {n:02d}") for n in range(55)
    )
    first = alice_client.get(reverse("sequence_list")).content.decode()
    names = re.findall(r">(Course \d+)</a>", first)
    assert names[0] == "Course 54" and len(names) == 50
    older = re.search(r'href="([^"]+)">Older', first)[1].replace("&amp;", "&")
    second = alice_client.get(older).content.decode()
    assert re.findall(r">(Course \d+)</a>", second) == [f"Course {n:02d}" for n in range(4, -1, -1)]
    assert "← Newer" in second and "Older" not in second


def test_the_empty_list_explains_sequences_and_offers_to_create_one(alice_client, account_a):
    body = alice_client.get(reverse("sequence_list")).content.decode()
    assert "Create your first sequence" in body
    assert f'href="{reverse("sequence_create")}"' in body


def test_a_new_sequence_takes_the_accounts_time_zone_and_opens_its_page(alice_client, account_a):
    response = alice_client.post(reverse("sequence_create"), {"name": "  Bread school  "})
    sequence = Sequence.objects.get(account=account_a)
    assert response.status_code == 302 and response.url == url("sequence_detail", sequence)
    assert (sequence.name, sequence.time_zone, sequence.state) == (
        "Bread school",
        "Europe/Paris",
        Sequence.State.ACTIVE,
    )
    body = alice_client.get(response.url).content.decode()
    assert "Write the first email" in body


@pytest.mark.parametrize("name", ["", "   ", "Two\nlines"])
def test_a_sequence_needs_a_name_on_one_line(alice_client, account_a, name):
    response = alice_client.post(reverse("sequence_create"), {"name": name})
    assert response.status_code == 400
    assert re.search(r"Give the sequence a name|must be on one line", response.content.decode())
    assert not Sequence.objects.exists()


# --- The sequence page: emails ----------------------------------------------------------------


def test_the_page_lists_the_emails_in_order_with_delay_badge_and_own_days(alice_client, course):
    one, two, three = emails_of(course)
    SequenceEmail.objects.filter(pk=two.pk).update(send_days=[0, 2, 4])
    body = alice_client.get(url("sequence_detail", course)).content.decode()
    cards = [body[body.index(f'id="email-{e.id}"') :] for e in (one, two, three)]
    cards = [card[: card.index("</li>")] for card in cards]
    assert body.index(f'id="email-{one.id}"') < body.index(f'id="email-{two.id}"')
    assert body.index(f'id="email-{two.id}"') < body.index(f'id="email-{three.id}"')
    assert "Immediately" in cards[0] and "badge-published" in cards[0]
    assert (
        "1 day after the previous email" in cards[1] and "sends on Mon, Wed, Fri only" in cards[1]
    )
    assert "2 hours after the previous email" in cards[2] and "badge-draft" in cards[2]
    assert "Draft three" in cards[2]
    # Move up is not offered to the first, nor down to the last.
    assert 'value="up"' not in cards[0] and 'value="down"' in cards[0]
    assert 'value="up"' in cards[2] and 'value="down"' not in cards[2]


def test_an_email_is_added_at_the_end_or_after_any_email(alice_client, course):
    one, two, three = emails_of(course)
    response = alice_client.post(url("sequence_email_create", course))
    last = SequenceEmail.objects.latest("id")
    assert response.status_code == 302 and response.url == url("sequence_email_edit", last)
    assert emails_of(course)[-1] == last and not last.published
    assert (last.delay_amount, last.delay_unit) == (1, "days")

    alice_client.post(url("sequence_email_create", course), {"after": one.id})
    inserted = SequenceEmail.objects.latest("id")
    assert emails_of(course) == [one, inserted, two, three, last]


def test_an_email_of_another_sequence_cannot_be_named_as_the_place(
    alice_client, course, make_sequence, account_a
):
    other = make_sequence(account=account_a, emails=[("Elsewhere", 0, "days")])
    (elsewhere,) = emails_of(other)
    before = SequenceEmail.objects.count()
    response = alice_client.post(url("sequence_email_create", course), {"after": elsewhere.id})
    assert response.status_code == 404
    assert SequenceEmail.objects.count() == before


def test_emails_move_up_and_down(alice_client, course):
    one, two, three = emails_of(course)
    response = alice_client.post(url("sequence_email_move", three), {"direction": "up"})
    assert response.status_code == 302
    assert response.url == url("sequence_detail", course) + f"#email-{three.id}"
    assert emails_of(course) == [one, three, two]
    alice_client.post(url("sequence_email_move", one), {"direction": "down"})
    assert emails_of(course) == [three, one, two]
    alice_client.post(url("sequence_email_move", one), {"direction": "sideways"})
    assert emails_of(course) == [three, one, two]


def test_deleting_an_email_asks_first_then_takes_it_out_of_the_list(alice_client, course):
    one, two, three = emails_of(course)
    confirm = alice_client.get(url("sequence_email_delete", two))
    assert confirm.status_code == 200
    assert "Delete “Two”?" in confirm.content.decode()
    assert emails_of(course) == [one, two, three]
    response = alice_client.post(url("sequence_email_delete", two))
    assert response.status_code == 302
    assert emails_of(course) == [one, three]
    body = alice_client.get(response.url).content.decode()
    assert "“Two” was deleted." in body and f'id="email-{two.id}"' not in body
    assert alice_client.get(url("sequence_email_edit", two)).status_code == 404


def test_publish_and_unpublish_from_the_page(alice_client, course):
    one, two, three = emails_of(course)
    response = alice_client.post(url("sequence_email_publish", three))
    assert response.status_code == 302
    three.refresh_from_db()
    assert three.published
    alice_client.post(url("sequence_email_unpublish", one))
    one.refresh_from_db()
    assert not one.published
    body = alice_client.get(url("sequence_detail", course)).content.decode()
    assert "is a draft again" in body


def test_a_liquid_error_is_shown_line_numbered_and_the_email_is_not_published(alice_client, course):
    *_, draft = emails_of(course)
    Broadcast.objects.filter(pk=draft.message_id).update(body="Hello\n\n{% if %}\nSoup")
    response = alice_client.post(url("sequence_email_publish", draft))
    assert response.status_code == 400
    body = response.content.decode()
    assert "Not published. Fix these first:" in body
    assert re.search(r"<li>Body \(line 3\): [^<]+</li>", body)
    draft.refresh_from_db()
    assert not draft.published
    assert Broadcast.objects.get(pk=draft.message_id).frozen_html == ""


def test_an_email_without_a_subject_is_not_published(alice_client, course):
    response = alice_client.post(url("sequence_email_create", course))
    new = SequenceEmail.objects.get(pk=re.search(r"emails/(\d+)/", response.url)[1])
    response = alice_client.post(url("sequence_email_publish", new))
    assert response.status_code == 400
    body = response.content.decode()
    assert "<li>Write a subject.</li>" in body and "<li>Write the email&#x27;s body.</li>" in body
    new.refresh_from_db()
    assert not new.published


# --- The sequence page: settings --------------------------------------------------------------


def test_the_settings_are_saved(alice_client, course, account_a):
    soup = TagFactory(account=account_a, name="soup")
    other = Sequence.objects.create(account=account_a, name="Bread school")
    data = settings_data(
        alice_client,
        course,
        name="Welcome, again",
        send_days=["0", "2", "4"],
        send_hour="7",
        time_zone="America/New_York",
        subscriber_time_zone="on",
        repeat="on",
        exclude_tag_ids=[str(soup.id)],
        exclude_sequence_ids=[str(other.id)],
    )
    response = alice_client.post(url("sequence_settings", course), data)
    assert response.status_code == 302
    saved = stored(course)
    assert saved["name"] == "Welcome, again"
    assert saved["send_days"] == [0, 2, 4]
    assert saved["send_hour"] == 7
    assert saved["time_zone"] == "America/New_York"
    assert saved["subscriber_time_zone"] is True and saved["repeat"] is True
    assert saved["exclude_tag_ids"] == [soup.id]
    assert saved["exclude_sequence_ids"] == [other.id]
    body = alice_client.get(response.url).content.decode()
    assert "Settings saved." in body
    assert "Sends on Mon, Wed, Fri at 07:00 (each subscriber&#x27;s time zone)." in body


def _theirs(account_b):
    return {
        "tag": TagFactory(account=account_b, name="theirs").id,
        "sequence": Sequence.objects.create(account=account_b, name="Theirs").id,
    }


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"send_hour": "24"}, "The send hour must be between 0 and 23."),
        ({"send_hour": "-1"}, "The send hour must be between 0 and 23."),
        ({"send_hour": "nine"}, "The send hour must be between 0 and 23."),
        ({"send_days": ["7"]}, "Send days are Monday to Sunday."),
        ({"time_zone": "Mars/Olympus_Mons"}, "Choose a time zone from the list."),
        ({"name": ""}, "Give the sequence a name."),
        ({"exclude_tag_ids": ["theirs:tag"]}, "Choose tags of this account only."),
        ({"exclude_sequence_ids": ["theirs:sequence"]}, "Choose sequences of this account only."),
        ({"exclude_segment_ids": ["999999"]}, "Choose segments of this account only."),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error_and_nothing_is_saved(
    alice_client, course, account_b, changes, error
):
    theirs = _theirs(account_b)
    changes = {
        key: [str(theirs[v.split(":")[1]]) if v.startswith("theirs:") else v for v in value]
        if isinstance(value, list)
        else value
        for key, value in changes.items()
    }
    before = stored(course)
    response = alice_client.post(
        url("sequence_settings", course), settings_data(alice_client, course, **changes)
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was saved." in body and error in body
    assert stored(course) == before


def test_no_send_day_is_allowed_and_pauses_the_sequence_as_in_kit(alice_client, course):
    data = settings_data(alice_client, course)
    del data["send_days"]
    response = alice_client.post(url("sequence_settings", course), data)
    assert response.status_code == 302
    assert stored(course)["send_days"] == []
    body = alice_client.get(response.url).content.decode()
    assert "With no send day nobody gets anything" in body
    assert "No send day is chosen, so nobody gets anything" in body
    assert "Paused: no send day" in body
    for email in emails_of(course)[:2]:
        assert Broadcast.objects.get(pk=email.message_id).state == Broadcast.State.PAUSED


def test_pause_holds_everyone_and_resume_goes_on(alice_client, course):
    response = alice_client.post(url("sequence_pause", course))
    assert response.status_code == 302
    assert stored(course)["state"] == Sequence.State.PAUSED
    body = alice_client.get(response.url).content.decode()
    assert "Paused. Everyone stays where they are" in body
    assert f'action="{url("sequence_resume", course)}"' in body
    alice_client.post(url("sequence_resume", course))
    assert stored(course)["state"] == Sequence.State.ACTIVE
    # GET changes nothing.
    alice_client.get(url("sequence_pause", course))
    assert stored(course)["state"] == Sequence.State.ACTIVE


# --- The email editor -------------------------------------------------------------------------


def test_the_editor_is_the_broadcast_editors_email_part_with_when_it_goes_out(alice_client, course):
    _one, two, _three = emails_of(course)
    response = alice_client.get(url("sequence_email_edit", two))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Email 2: Two" in body
    assert 'value="Two"' in body and 'name="body_format" value="markdown"' in body
    assert 'id="broadcast-preview"' in body and 'form="email-form"' in body
    srcdoc = body[body.index('srcdoc="') :]
    assert "this is Two." in srcdoc[: srcdoc.index('"></iframe>')]
    assert 'name="delay_amount"' in body and 'value="1"' in body
    assert "after the previous email" in body
    assert "The sequence sends every day." in body
    assert "Tests go to alice@example.com" in body


def test_saving_stores_the_content_the_delay_and_the_emails_own_days(alice_client, course):
    *_, draft = emails_of(course)
    data = editor_data(
        alice_client,
        draft,
        subject="Three, {{ subscriber.first_name }}",
        preview_text="The third",
        body="Third **email**.",
        delay_amount="3",
        delay_unit="days",
        own_send_days="on",
        send_days=["1", "3"],
    )
    response = alice_client.post(url("sequence_email_edit", draft), data)
    assert response.status_code == 302
    email, message = email_stored(draft)
    assert (email["delay_amount"], email["delay_unit"], email["send_days"]) == (3, "days", [1, 3])
    assert (message["subject"], message["preview_text"], message["body"]) == (
        "Three, {{ subscriber.first_name }}",
        "The third",
        "Third **email**.",
    )
    # Back to the sequence's days.
    data = editor_data(alice_client, draft)
    del data["own_send_days"]
    alice_client.post(url("sequence_email_edit", draft), data)
    assert email_stored(draft)[0]["send_days"] is None


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"delay_amount": "-1"}, "The delay cannot be negative."),
        ({"delay_amount": "366", "delay_unit": "days"}, "The delay can be at most 365 days."),
        ({"delay_amount": "8761", "delay_unit": "hours"}, "at most 8,760 hours (365 days)"),
        ({"delay_amount": "soon"}, "Enter a whole number of days or hours"),
        ({"delay_unit": "weeks"}, "The delay is in days or hours."),
        ({"own_send_days": "on", "send_days": []}, "Choose at least one day"),
        ({"send_days": ["9"], "own_send_days": "on"}, "Send days are Monday to Sunday."),
        ({"subject": "Two\r\nBcc: all@example.com"}, "The subject must be on one line"),
    ],
)
def test_bad_email_input_is_refused_inline_and_nothing_is_saved(
    alice_client, course, changes, error
):
    _one, two, _three = emails_of(course)
    before = email_stored(two)
    data = editor_data(alice_client, two, **changes)
    response = alice_client.post(url("sequence_email_edit", two), data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was saved" in body and error in body
    assert email_stored(two) == before


def test_a_published_email_keeps_working_liquid_or_nothing_is_saved(alice_client, course):
    _one, two, _three = emails_of(course)
    before = email_stored(two)
    data = editor_data(alice_client, two, body="Hello\n{% for %}")
    response = alice_client.post(url("sequence_email_edit", two), data)
    assert response.status_code == 400
    assert "Nothing was saved: this email is published" in response.content.decode()
    assert email_stored(two) == before


def test_the_draft_editor_lists_what_stops_publishing_line_numbered(alice_client, course):
    *_, draft = emails_of(course)
    Broadcast.objects.filter(pk=draft.message_id).update(body="Hi\n{{ subscriber.name | nope }}")
    body = alice_client.get(url("sequence_email_edit", draft)).content.decode()
    problems = body[body.index("Before you can publish") :]
    assert re.search(r"<li>Body \(line 2\): [^<]+</li>", problems)


def test_the_live_preview_renders_unsaved_values_as_the_subscriber_chosen(
    alice_client, course, account_a
):
    SubscriberFactory(account=account_a, email="rita@example.org", first_name="Rita")
    _one, two, _three = emails_of(course)
    before = email_stored(two)
    data = editor_data(
        alice_client,
        two,
        subject="For {{ subscriber.first_name }}",
        body="Dear {{ subscriber.first_name }},\n\n{% if %}",
        preview_email="rita@example.org",
    )
    response = alice_client.post(url("sequence_email_preview", two), data, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "For Rita" in body and "Dear Rita" in body
    assert "Body, line 3" in body
    assert email_stored(two) == before


def test_a_test_goes_to_the_creator_as_the_subscriber_chosen(
    alice_client, course, account_a, eager_celery, django_capture_on_commit_callbacks
):
    SubscriberFactory(account=account_a, email="rita@example.org", first_name="Rita")
    _one, two, _three = emails_of(course)
    data = editor_data(
        alice_client,
        two,
        subject="Two for {{ subscriber.first_name }}",
        preview_email="rita@example.org",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(url("sequence_email_test", two), data)
    assert response.status_code == 302
    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == "[Test] Two for Rita"
    assert "Hello Rita, this is Two." in message.body
    assert not Delivery.objects.exists()


def test_no_test_is_sent_while_the_template_is_broken(
    alice_client, course, eager_celery, django_capture_on_commit_callbacks
):
    *_, draft = emails_of(course)
    data = editor_data(alice_client, draft, body="{% if %}")
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(url("sequence_email_test", draft), data)
    assert response.status_code == 400
    assert "no test was sent" in response.content.decode()
    assert mail.outbox == []


def test_publishing_from_the_editor_saves_first(alice_client, course):
    *_, draft = emails_of(course)
    data = editor_data(alice_client, draft, subject="Three, finally")
    response = alice_client.post(url("sequence_email_publish", draft), data)
    assert response.status_code == 302
    email, message = email_stored(draft)
    assert email["published"] and message["subject"] == "Three, finally"
    assert "Three, finally" in message["frozen_subject"]


# --- Reports ----------------------------------------------------------------------------------


@pytest.fixture
def reported(course, account_a, smtp_sink):
    """Five subscribers through "Welcome course" with real sends: four active (one of them tagged
    "pause-me", which the sequence excludes), one unconfirmed; three took email One, two of
    them then Two and completed. Opens and clicks of One recorded: a person, a privacy proxy;
    an unsubscribe and a bounce."""
    one, two, three = emails_of(course)
    SequenceEmail.objects.filter(pk=three.pk).delete()
    Broadcast.objects.filter(pk=three.message_id).delete()
    readers = [
        SubscriberFactory(account=account_a, email=f"reader{n}@example.org") for n in range(4)
    ]
    unconfirmed = SubscriberFactory(
        account=account_a, email="later@example.org", state=Subscriber.State.UNCONFIRMED
    )
    for reader in readers[:3] + [unconfirmed]:
        subscriber_enrol(sequence=course, subscriber=reader, now=MONDAY)
    advance_and_send(course, MONDAY)
    subscriber_enrol(sequence=course, subscriber=readers[3], now=MONDAY + timedelta(hours=1))
    # The last one waits for One until Tuesday's run, after the others passed Two.
    Subscription.objects.filter(subscriber=readers[3]).update(
        next_due_at=MONDAY + timedelta(days=5)
    )
    Subscription.objects.filter(subscriber=readers[2]).update(
        next_due_at=MONDAY + timedelta(days=5)
    )
    advance_and_send(course, MONDAY + timedelta(days=1))
    pause_me = TagFactory(account=account_a, name="pause-me")
    TaggingFactory(tag=pause_me, subscriber=readers[3])
    Sequence.objects.filter(pk=course.pk).update(exclude_tag_ids=[pause_me.id])
    course.refresh_from_db()

    d = {x.subscriber_id: x for x in Delivery.objects.filter(broadcast_id=one.message_id)}
    sent = MONDAY + timedelta(hours=2)
    events_store(
        [
            TrackedEvent(EventKind.OPEN, sent, d[readers[0].id].pk),
            TrackedEvent(EventKind.OPEN, sent, d[readers[1].id].pk, machine=Machine.PRIVACY_PROXY),
            TrackedEvent(EventKind.UNSUBSCRIBE, sent, d[readers[1].id].pk),
            TrackedEvent(EventKind.BOUNCE, sent, d[readers[2].id].pk),
        ]
    )
    return course, one, two


def card_stat(body: str, card_id: str) -> str:
    start = body.index(f'id="{card_id}"')
    return re.search(r'class="stat">([^<]+)<', body[start:])[1]


def test_the_page_shows_at_once_and_its_subscriber_figures_come_after(alice_client, reported):
    course, *_ = reported
    body = alice_client.get(url("sequence_detail", course)).content.decode()
    assert 'id="count-active"' not in body
    assert f'hx-get="{url("sequence_subscribers", course)}" hx-trigger="load"' in body
    assert 'href="?figures=1#subscribers"' in body
    partial = alice_client.get(url("sequence_subscribers", course), **HTMX).content.decode()
    assert partial.startswith('<div id="subscriber-figures">')
    assert card_stat(partial, "count-active") == "2"
    assert 'id="positions"' in partial
    redirect = alice_client.get(url("sequence_subscribers", course))
    assert redirect.url == url("sequence_detail", course) + "?figures=1#subscribers"


def test_the_report_counts_subscribers_by_state_and_the_excluded_now(alice_client, reported):
    course, _one, _two = reported
    assert dict(
        Subscription.objects.filter(sequence=course).values_list("subscriber__email", "state")
    ) == {
        "reader0@example.org": Subscription.State.COMPLETED,
        "reader1@example.org": Subscription.State.COMPLETED,
        "reader2@example.org": Subscription.State.ACTIVE,
        "reader3@example.org": Subscription.State.ACTIVE,
        "later@example.org": Subscription.State.UNCONFIRMED,
    }
    body = alice_client.get(url("sequence_detail", course) + "?figures=1").content.decode()
    assert card_stat(body, "count-active") == "2"
    assert card_stat(body, "count-unconfirmed") == "1"
    assert card_stat(body, "count-completed") == "2"
    assert card_stat(body, "count-excluded") == "1"


def test_each_email_shows_what_it_sent_and_its_rates_from_the_rollups(alice_client, reported):
    course, one, two = reported
    body = alice_client.get(url("sequence_detail", course)).content.decode()
    first = body[body.index(f'id="email-{one.id}"') :]
    first = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", first[: first.index("</li>")]))
    # Three sent; one person opened (33.3%); with the proxy's open, two (66.7%) raw.
    assert "Sent 3 " in first
    assert "Opens 33.3% (raw 66.7%)" in first
    assert "Clicks 0.0% (raw 0.0%)" in first
    assert "Unsubscribed 1 " in first and "Bounced 1 " in first
    second = body[body.index(f'id="email-{two.id}"') :]
    second = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", second[: second.index("</li>")]))
    assert "Sent 2 " in second and "Opens 0.0% (raw 0.0%)" in second
    assert f'href="{url("sequence_email_report", one)}"' in body


def test_the_chart_shows_how_many_stand_after_each_email(alice_client, reported):
    course, _one, _two = reported
    body = alice_client.get(url("sequence_detail", course) + "?figures=1").content.decode()
    chart = body[body.index('id="positions"') :]
    rows = re.findall(
        r'<tr><th scope="row" class="nowrap">([^<]+)</th><td class="num">([^<]+)<', chart
    )
    # reader2 passed One and waits for Two; reader3 has passed none; two completed.
    assert rows == [("None yet", "1"), ("#1 One", "1"), ("#2 Two", "0"), ("Completed", "2")]


def test_an_emails_full_report_is_the_broadcast_report_under_its_sequence(alice_client, reported):
    course, one, _two = reported
    response = alice_client.get(url("sequence_email_report", one))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Report: One" in body
    assert f'href="{url("sequence_detail", course)}#email-{one.id}"' in body
    assert "Resend to non-openers" not in body
    assert re.search(r'id="open-rate".*?class="stat">33\.3%<', body, re.S)
    people = alice_client.get(url("sequence_email_report", one) + "opened/")
    assert people.status_code == 200
    assert "reader0@example.org" in people.content.decode()
    assert alice_client.get(url("sequence_email_report", one) + "nonsense/").status_code == 404


def test_a_draft_that_never_went_out_has_no_report(alice_client, course):
    *_, draft = emails_of(course)
    response = alice_client.get(url("sequence_email_report", draft))
    assert response.status_code == 302 and response.url == url("sequence_email_edit", draft)


def test_the_report_page_runs_a_fixed_number_of_queries(alice_client, reported):
    course, *_ = reported

    def queries() -> tuple[int, int]:
        counted = []
        for path, extra in (
            (url("sequence_detail", course), {}),
            (url("sequence_subscribers", course), HTMX),
        ):
            with CaptureQueriesContext(connection) as captured:
                assert alice_client.get(path, **extra).status_code == 200
            counted.append(len(captured.captured_queries))
        return tuple(counted)

    before = queries()
    for n in range(3):
        email_add(course, subject=f"More {n}", delay=1)
    assert queries() == before  # three more emails, not one query more


def test_the_subscriber_timeline_links_a_sequence_email_to_its_report(alice_client, reported):
    _course, one, two = reported
    reader = Subscriber.objects.get(email="reader0@example.org")
    body = alice_client.get(reverse("subscriber_detail", args=[reader.id])).content.decode()
    timeline = body[body.index('class="timeline"') :]
    assert f'href="{url("sequence_email_report", one)}">“One”' in timeline
    assert f'href="{url("sequence_email_report", two)}">“Two”' in timeline
    assert "/broadcasts/" not in timeline


def test_the_excluded_count_is_whom_the_scheduler_holds_back(
    alice_client, make_sequence, account_a, smtp_sink
):
    """The page counts with the scheduler's own condition, read as sets over all the
    subscribers; the scheduler probes it per claimed row: both find the same people."""
    course = make_sequence(account=account_a, emails=[("One", 0, "days")])
    other = make_sequence(account=account_a, emails=[])
    vip = TagFactory(account=account_a, name="vip")
    tagged, inside, finished, plain = (
        SubscriberFactory(account=account_a, email=f"{name}@example.org")
        for name in ("tagged", "inside", "finished", "plain")
    )
    TaggingFactory(tag=vip, subscriber=tagged)
    for subscriber in (inside, finished):
        subscriber_enrol(sequence=other, subscriber=subscriber, now=MONDAY)
    Subscription.objects.filter(sequence=other, subscriber=finished).update(
        state=Subscription.State.COMPLETED
    )
    Sequence.objects.filter(pk=course.pk).update(
        exclude_tag_ids=[vip.id], exclude_sequence_ids=[other.id]
    )
    course.refresh_from_db()
    for subscriber in (tagged, inside, finished, plain):
        subscriber_enrol(sequence=course, subscriber=subscriber, now=MONDAY)

    body = alice_client.get(url("sequence_detail", course) + "?figures=1").content.decode()
    assert card_stat(body, "count-excluded") == "2"
    advance_and_send(course, MONDAY)
    (one,) = emails_of(course)
    assert set(
        Delivery.objects.filter(broadcast_id=one.message_id).values_list(
            "subscriber__email", flat=True
        )
    ) == {"finished@example.org", "plain@example.org"}
