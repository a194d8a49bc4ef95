"""The broadcast editor and progress pages: save, live preview (unsaved values, a chosen
subscriber, template problems with line numbers), recipient count, test send, schedule in the
account's time zone, send after a confirmation, delete, and the live progress page with pause,
resume, cancel and the unknown deliveries.

Posts start from what the editor page itself renders (its inputs, as a browser would send them),
with the changes a test makes."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from broadcasts.models import Broadcast, Delivery
from tests.factories import SubscriberFactory, TagFactory, TaggingFactory

HTMX = {"HTTP_HX_REQUEST": "true"}
PARIS = ZoneInfo("Europe/Paris")


class _EditorInputs(HTMLParser):
    """The name/value pairs a browser submits from <form id="{form_id}"> (and the inputs and
    selects outside it that name it in their form attribute); repeated names give lists."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        # The <select> being read: its name, whether it takes several, its options' values,
        # those selected.
        self.select: tuple[str, bool, list[str], list[str]] | None = None
        self.values: dict[str, str | list[str]] = {}
        self.textarea: str | None = None

    def _add(self, name: str, value: str) -> None:
        if name in self.values:
            existing = self.values[name]
            self.values[name] = (
                [*existing, value] if isinstance(existing, list) else [existing, value]
            )
        else:
            self.values[name] = value

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "option" and self.select is not None:
            value = attrs.get("value") or ""
            self.select[2].append(value)
            if "selected" in attrs:
                self.select[3].append(value)
            return
        if tag == "form" and attrs.get("id") == self.form_id:
            self.inside = True
        owned = self.inside or attrs.get("form") == self.form_id
        if not owned or "disabled" in attrs or not attrs.get("name"):
            return
        if tag == "input":
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            if kind != "submit":
                self._add(attrs["name"], attrs.get("value") or "")
        elif tag == "textarea":
            self.textarea = attrs["name"]
            self.values[self.textarea] = ""
        elif tag == "select":
            self.select = (attrs["name"], "multiple" in attrs, [], [])

    def handle_data(self, data):
        if self.textarea:
            self.values[self.textarea] += data

    def handle_endtag(self, tag):
        if tag == "select" and self.select is not None:
            name, multiple, options, selected = self.select
            # A single select with nothing marked submits its first option, as a browser does.
            for value in selected or ([] if multiple else options[:1]):
                self._add(name, value)
            self.select = None
        elif tag == "textarea" and self.textarea:
            self.values[self.textarea] = self.values[self.textarea].removeprefix("\n")
            self.textarea = None
        elif tag == "form":
            self.inside = False


def page_inputs(response, form_id: str = "broadcast-form") -> dict:
    parser = _EditorInputs(form_id)
    parser.feed(response.content.decode())
    return parser.values


def url(name: str, broadcast: Broadcast) -> str:
    return reverse(name, args=[broadcast.id])


def stored(broadcast: Broadcast) -> dict:
    broadcast.refresh_from_db()
    return {field.attname: getattr(broadcast, field.attname) for field in Broadcast._meta.fields}


@pytest.fixture
def broadcast_a(account_a, alice):
    for n in range(3):
        SubscriberFactory(
            account=account_a, email=f"reader{n}@example.org", first_name=f"Reader{n}"
        )
    return Broadcast.objects.create(
        account=account_a,
        subject="Soup season",
        preview_text="Five soups",
        body="Hello {{ subscriber.first_name }},\n\nSoup is back.",
    )


@pytest.fixture
def page_data(alice_client, broadcast_a):
    return page_inputs(alice_client.get(url("broadcast_edit", broadcast_a)))


@pytest.fixture
def tags(account_a):
    return {name: TagFactory(account=account_a, name=name) for name in ("soup", "bread", "vip")}


def sending(broadcast: Broadcast, **counters) -> Broadcast:
    Broadcast.objects.filter(pk=broadcast.pk).update(
        state=Broadcast.State.SENDING,
        send_started_at=timezone.now() - timedelta(seconds=100),
        **counters,
    )
    broadcast.refresh_from_db()
    return broadcast


# --- Editor -----------------------------------------------------------------------------------


def test_the_editor_shows_the_email_the_audience_and_a_preview(alice_client, broadcast_a, tags):
    response = alice_client.get(url("broadcast_edit", broadcast_a))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="Soup season"' in body
    assert 'name="body_format" value="markdown"' in body and 'value="html"' in body
    for tag in tags.values():
        assert f'name="include_tag_ids" value="{tag.id}"' in body
        assert f'name="exclude_tag_ids" value="{tag.id}"' in body
    assert 'id="broadcast-preview"' in body
    srcdoc = body[body.index('srcdoc="') :]
    assert "Soup is back." in srcdoc[: srcdoc.index('"></iframe>')]
    assert "a sample subscriber" in body
    assert 'value="desktop"' in body and 'value="mobile"' in body
    assert "Tests go to alice@example.com" in body


def test_saving_stores_the_email_and_its_audience(alice_client, broadcast_a, page_data, tags):
    data = {
        **page_data,
        "subject": "Bread week",
        "preview_text": "Seven loaves",
        "body_format": "html",
        "body": "<p>Hi {{ subscriber.first_name }}</p>",
        "include_match": "all",
        "include_tag_ids": [tags["soup"].id, tags["bread"].id],
        "exclude_tag_ids": [tags["vip"].id],
    }
    response = alice_client.post(url("broadcast_edit", broadcast_a), data)
    assert response.status_code == 302
    saved = stored(broadcast_a)
    assert saved["subject"] == "Bread week"
    assert saved["preview_text"] == "Seven loaves"
    assert saved["body_format"] == "html"
    assert saved["body"] == "<p>Hi {{ subscriber.first_name }}</p>"
    assert saved["include_match"] == "all"
    assert saved["include_tag_ids"] == sorted([tags["soup"].id, tags["bread"].id])
    assert saved["exclude_tag_ids"] == [tags["vip"].id]
    assert "Saved." in alice_client.get(response.url).content.decode()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"subject": "Soup\r\nBcc: everyone@example.com"}, "The subject must be on one line"),
        ({"preview_text": "x" * 256}, "at most 255 characters"),
        ({"body_format": "word"}, "Select a valid choice"),
    ],
)
def test_bad_input_is_refused_inline_and_nothing_is_saved(
    alice_client, broadcast_a, page_data, changes, error
):
    before = stored(broadcast_a)
    response = alice_client.post(url("broadcast_edit", broadcast_a), {**page_data, **changes})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was saved" in body
    assert error in body
    assert stored(broadcast_a) == before


def test_a_tag_cannot_be_both_required_and_left_out(alice_client, broadcast_a, page_data, tags):
    before = stored(broadcast_a)
    data = {**page_data, "include_tag_ids": [tags["vip"].id], "exclude_tag_ids": [tags["vip"].id]}
    response = alice_client.post(url("broadcast_edit", broadcast_a), data)
    assert response.status_code == 400
    assert "A tag cannot be both required and left out: vip." in response.content.decode()
    assert stored(broadcast_a) == before


def test_a_tag_of_another_account_cannot_be_chosen(alice_client, broadcast_a, page_data, account_b):
    theirs = TagFactory(account=account_b, name="theirs")
    before = stored(broadcast_a)
    response = alice_client.post(
        url("broadcast_edit", broadcast_a), {**page_data, "include_tag_ids": [theirs.id]}
    )
    assert response.status_code == 400
    assert f"Choose among your tags: {theirs.id} is not one of them." in response.content.decode()
    assert stored(broadcast_a) == before


# --- Live preview -----------------------------------------------------------------------------


def test_the_preview_shows_unsaved_values_and_never_saves(alice_client, broadcast_a, page_data):
    before = stored(broadcast_a)
    data = {
        **page_data,
        "subject": "Unsaved subject",
        "body": "Unsaved body, {{ subscriber.first_name }}.",
    }
    response = alice_client.post(url("broadcast_preview", broadcast_a), data, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="broadcast-form"' not in body  # only the preview pane, for htmx
    assert "Unsaved subject" in body
    assert "Unsaved body" in body
    assert 'class="email-frame"' in body and "sandbox=" in body
    assert stored(broadcast_a) == before


def test_the_preview_cannot_break_out_of_its_frame(alice_client, broadcast_a, page_data):
    attack = '"></iframe><script>alert(1)</script><iframe srcdoc="'
    data = {**page_data, "body_format": "html", "subject": attack, "body": attack}
    body = alice_client.post(url("broadcast_preview", broadcast_a), data, **HTMX).content.decode()
    assert "<script>" not in body
    assert body.count("<iframe") == 1


def test_the_preview_fills_in_the_chosen_subscribers_data(alice_client, broadcast_a, page_data):
    SubscriberFactory(account=broadcast_a.account, email="rita@example.org", first_name="Rita")
    data = {
        **page_data,
        "body": "Dear {{ subscriber.first_name }}",
        "preview_email": " Rita@Example.org ",
    }
    body = alice_client.post(url("broadcast_preview", broadcast_a), data, **HTMX).content.decode()
    assert "Dear Rita" in body
    assert "rita@example.org" in body

    data["preview_email"] = "nobody@example.org"
    body = alice_client.post(url("broadcast_preview", broadcast_a), data, **HTMX).content.decode()
    assert "No subscriber has the address nobody@example.org: showing sample data." in body
    assert "Dear Rita" not in body


def test_the_preview_never_shows_a_subscriber_of_another_account(
    alice_client, broadcast_a, page_data, account_b
):
    SubscriberFactory(account=account_b, email="secret@example.org", first_name="Secretia")
    data = {
        **page_data,
        "body": "Dear {{ subscriber.first_name }}",
        "preview_email": "secret@example.org",
    }
    body = alice_client.post(url("broadcast_preview", broadcast_a), data, **HTMX).content.decode()
    assert "Secretia" not in body
    assert "No subscriber has the address secret@example.org" in body


def test_template_problems_are_listed_with_their_line_numbers(alice_client, broadcast_a, page_data):
    data = {**page_data, "body": "Hello,\n\nSoup for {{ subscriber.first_name\n\nBye"}
    body = alice_client.post(url("broadcast_preview", broadcast_a), data, **HTMX).content.decode()
    assert "Template problem" in body
    assert "Body, line 3:" in body


def test_the_preview_keeps_the_saved_value_of_an_invalid_field_and_says_so(
    alice_client, broadcast_a, page_data
):
    data = {**page_data, "subject": "Two\nlines", "body": "New body"}
    body = alice_client.post(url("broadcast_preview", broadcast_a), data, **HTMX).content.decode()
    assert "Shown as saved until fixed: Subject." in body
    assert "Soup season" in body
    assert "New body" in body


def test_without_javascript_the_preview_button_shows_the_whole_editor_unsaved(
    alice_client, broadcast_a, page_data
):
    before = stored(broadcast_a)
    response = alice_client.post(
        url("broadcast_preview", broadcast_a), {**page_data, "subject": "Draft subject"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "They are not saved yet." in body
    assert 'value="Draft subject"' in body
    assert stored(broadcast_a) == before


# --- Recipient count --------------------------------------------------------------------------


def test_the_editor_page_leaves_the_recipient_count_to_htmx(alice_client, broadcast_a):
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(url("broadcast_edit", broadcast_a))
    assert "COUNT(" not in " ".join(q["sql"] for q in queries).upper()
    assert f'hx-get="{url("broadcast_count", broadcast_a)}"' in response.content.decode()


def test_the_recipient_count_follows_the_audience_chosen_before_saving(
    alice_client, broadcast_a, tags
):
    subscribers = list(broadcast_a.account.subscriber_set.order_by("id"))
    TaggingFactory(tag=tags["soup"], subscriber=subscribers[0])
    TaggingFactory(tag=tags["soup"], subscriber=subscribers[1])
    TaggingFactory(tag=tags["vip"], subscriber=subscribers[1])
    count_url = url("broadcast_count", broadcast_a)

    everyone = alice_client.get(count_url, {"include_match": "any"}, **HTMX).content.decode()
    assert "<strong>3</strong> recipients" in everyone
    soup = alice_client.get(
        count_url,
        {
            "include_match": "any",
            "include_tag_ids": tags["soup"].id,
            "exclude_tag_ids": tags["vip"].id,
        },
        **HTMX,
    ).content.decode()
    assert "<strong>1</strong> recipient right now" in soup
    assert stored(broadcast_a)["include_tag_ids"] == []


def test_without_javascript_the_count_link_shows_the_editor_with_the_count(
    alice_client, broadcast_a
):
    response = alice_client.get(url("broadcast_count", broadcast_a))
    assert response.status_code == 302
    body = alice_client.get(response.url).content.decode()
    assert "<strong>3</strong> recipients right now" in body


# --- Test send --------------------------------------------------------------------------------


def test_send_a_test_to_me_saves_then_mails_the_creator(
    alice_client, broadcast_a, page_data, eager_celery, django_capture_on_commit_callbacks
):
    data = {**page_data, "subject": "Test me", "body": "Hello {{ subscriber.first_name }}"}
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(url("broadcast_test", broadcast_a), data)
    assert response.status_code == 302
    assert stored(broadcast_a)["subject"] == "Test me"
    assert stored(broadcast_a)["state"] == Broadcast.State.DRAFT
    assert [message.to for message in mail.outbox] == [["alice@example.com"]]
    assert "Test me" in mail.outbox[0].subject
    assert (
        "A test is on its way to alice@example.com."
        in alice_client.get(response.url).content.decode()
    )


def test_no_test_goes_out_while_the_template_has_problems(
    alice_client, broadcast_a, page_data, eager_celery, django_capture_on_commit_callbacks
):
    data = {**page_data, "body": "Hi {{ subscriber.first_name"}
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(url("broadcast_test", broadcast_a), data)
    assert response.status_code == 400
    assert "no test was sent" in response.content.decode()
    assert mail.outbox == []


# --- Schedule ---------------------------------------------------------------------------------


def test_scheduling_reads_the_time_in_the_accounts_time_zone(alice_client, broadcast_a, page_data):
    local = (
        (timezone.now() + timedelta(days=30))
        .astimezone(PARIS)
        .replace(hour=9, minute=30, second=0, microsecond=0)
    )
    data = {**page_data, "subject": "Saved with the schedule", "send_at": f"{local:%Y-%m-%dT%H:%M}"}
    response = alice_client.post(url("broadcast_schedule", broadcast_a), data)
    assert response.status_code == 302
    saved = stored(broadcast_a)
    assert saved["state"] == Broadcast.State.SCHEDULED
    assert saved["scheduled_at"] == local
    assert saved["subject"] == "Saved with the schedule"
    body = alice_client.get(response.url).content.decode()
    assert f"Scheduled for <strong>{local:%-d %b %Y}, 09:30</strong> (Europe/Paris)" in body
    assert 'value="' + f"{local:%Y-%m-%dT}09:30" + '"' in body


def test_a_time_in_the_past_is_refused_with_a_clear_message(alice_client, broadcast_a, page_data):
    past = (timezone.now() - timedelta(hours=1)).astimezone(PARIS)
    data = {**page_data, "send_at": f"{past:%Y-%m-%dT%H:%M}"}
    response = alice_client.post(url("broadcast_schedule", broadcast_a), data)
    assert response.status_code == 400
    assert "has already passed. Choose a later time, or send now." in response.content.decode()
    assert stored(broadcast_a)["state"] == Broadcast.State.DRAFT


def test_scheduling_without_a_time_asks_for_one(alice_client, broadcast_a, page_data):
    response = alice_client.post(
        url("broadcast_schedule", broadcast_a), {**page_data, "send_at": ""}
    )
    assert response.status_code == 400
    assert "Choose the date and time to send at." in response.content.decode()
    assert stored(broadcast_a)["state"] == Broadcast.State.DRAFT


def test_scheduling_without_a_postal_address_is_refused(alice_client, broadcast_a, page_data):
    broadcast_a.account.postal_address = ""
    broadcast_a.account.save()
    later = (timezone.now() + timedelta(days=2)).astimezone(PARIS)
    data = {**page_data, "send_at": f"{later:%Y-%m-%dT%H:%M}"}
    response = alice_client.post(url("broadcast_schedule", broadcast_a), data)
    assert response.status_code == 400
    assert "Saved, but not scheduled. Add your postal address" in response.content.decode()
    assert stored(broadcast_a)["state"] == Broadcast.State.DRAFT


def test_unscheduling_makes_it_a_draft_again(alice_client, broadcast_a):
    Broadcast.objects.filter(pk=broadcast_a.pk).update(
        state=Broadcast.State.SCHEDULED, scheduled_at=timezone.now() + timedelta(days=1)
    )
    assert "Unschedule" in alice_client.get(url("broadcast_edit", broadcast_a)).content.decode()
    response = alice_client.post(url("broadcast_unschedule", broadcast_a))
    assert response.status_code == 302
    saved = stored(broadcast_a)
    assert (saved["state"], saved["scheduled_at"]) == (Broadcast.State.DRAFT, None)


def test_a_scheduled_send_that_could_not_go_out_says_why_in_the_editor(alice_client, broadcast_a):
    Broadcast.objects.filter(pk=broadcast_a.pk).update(paused_reason="Write a subject.")
    body = alice_client.get(url("broadcast_edit", broadcast_a)).content.decode()
    assert "Your scheduled send did not go out: Write a subject." in body


# --- Send -------------------------------------------------------------------------------------


def test_send_saves_then_asks_to_confirm_with_the_recipient_count(
    alice_client, broadcast_a, page_data, tags
):
    data = {**page_data, "subject": "Final subject", "exclude_tag_ids": [tags["vip"].id]}
    response = alice_client.post(url("broadcast_send", broadcast_a), data)
    assert response.url == url("broadcast_send", broadcast_a)
    assert stored(broadcast_a)["subject"] == "Final subject"
    assert stored(broadcast_a)["state"] == Broadcast.State.DRAFT

    body = alice_client.get(response.url).content.decode()
    assert "Send “Final subject” now?" in body
    assert '<span class="stat">3</span>' in body
    assert "All active subscribers, except those tagged with “vip”." in body
    assert "Send to 3 recipients</button>" in body


def test_confirming_starts_the_send_and_opens_the_progress_page(alice_client, broadcast_a):
    response = alice_client.post(url("broadcast_send", broadcast_a), {"confirmed": "yes"})
    assert response.url == url("broadcast_progress", broadcast_a)
    assert stored(broadcast_a)["state"] == Broadcast.State.SENDING
    body = alice_client.get(response.url).content.decode()
    assert "Sending has started." in body
    assert f'hx-get="{url("broadcast_progress_live", broadcast_a)}?unknown=0"' in body
    assert 'hx-trigger="every 2s"' in body


def test_a_refused_send_says_why_and_changes_nothing(alice_client, broadcast_a):
    broadcast_a.account.postal_address = ""
    broadcast_a.account.save()
    confirm = alice_client.get(url("broadcast_send", broadcast_a)).content.decode()
    assert "It cannot be sent yet" in confirm
    assert "Add your postal address in Settings first" in confirm
    assert " disabled>Send to 3 recipients" in confirm

    before = stored(broadcast_a)
    response = alice_client.post(url("broadcast_send", broadcast_a), {"confirmed": "yes"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "<strong>Not sent.</strong> Add your postal address in Settings first" in body
    assert stored(broadcast_a) == before


def test_a_sending_broadcast_opens_on_its_progress_page_and_cannot_be_edited(
    alice_client, broadcast_a, page_data
):
    sending(broadcast_a)
    before = stored(broadcast_a)
    for name in ("broadcast_edit", "broadcast_send", "broadcast_delete"):
        response = alice_client.get(url(name, broadcast_a))
        assert response.url == url("broadcast_progress", broadcast_a)
    for name in ("broadcast_edit", "broadcast_test", "broadcast_schedule", "broadcast_preview"):
        alice_client.post(url(name, broadcast_a), {**page_data, "subject": "Too late"})
    alice_client.post(url("broadcast_delete", broadcast_a))
    assert stored(broadcast_a) == before


def test_deleting_a_draft_asks_first(alice_client, broadcast_a):
    confirm = alice_client.get(url("broadcast_delete", broadcast_a))
    assert "Delete “Soup season”?" in confirm.content.decode()
    assert Broadcast.objects.filter(pk=broadcast_a.pk).exists()
    response = alice_client.post(url("broadcast_delete", broadcast_a))
    assert response.url == reverse("broadcast_list")
    assert not Broadcast.objects.filter(pk=broadcast_a.pk).exists()


# --- Progress ---------------------------------------------------------------------------------


def test_the_progress_page_shows_the_counts_rate_and_time_left_while_sending(
    alice_client, broadcast_a
):
    sending(
        broadcast_a,
        recipient_count=1000,
        sent_count=180,
        failed_count=12,
        unknown_count=0,
        skipped_count=8,
    )
    response = alice_client.get(url("broadcast_progress", broadcast_a))
    body = response.content.decode()
    assert "Sending to 1,000 recipients" in body
    assert 'aria-valuenow="20"' in body  # 200 of 1,000 finished
    figures = body[body.index('class="grid progress-figures"') :]
    for label, value in (("Sent", "180"), ("Failed", "12"), ("Unknown", "0"), ("Remaining", "800")):
        assert f'{label}</dt><dd class="stat">{value}</dd>' in figures
    assert "2 emails a second" in body  # 200 in 100 s
    assert "about 7 min left" in body  # 800 more at 2/s
    assert 'hx-trigger="every 2s"' in body
    assert ">Pause</button>" in body and "Cancel…" in body


def test_once_sent_the_progress_stops_polling_and_says_done(alice_client, broadcast_a):
    Broadcast.objects.filter(pk=broadcast_a.pk).update(
        state=Broadcast.State.SENT,
        recipient_count=3,
        sent_count=3,
        send_started_at=timezone.now() - timedelta(seconds=5),
        sent_at=timezone.now(),
    )
    body = alice_client.get(url("broadcast_progress_live", broadcast_a), **HTMX).content.decode()
    assert "hx-trigger" not in body
    assert "Done, finished" in body
    assert ">Pause</button>" not in body and "Cancel…" not in body
    assert 'aria-valuenow="100"' in body


def test_pause_resume_and_cancel(alice_client, broadcast_a, django_capture_on_commit_callbacks):
    sending(broadcast_a, recipient_count=3)
    response = alice_client.post(url("broadcast_pause", broadcast_a))
    assert response.url == url("broadcast_progress", broadcast_a)
    assert stored(broadcast_a)["state"] == Broadcast.State.PAUSED
    body = alice_client.get(response.url).content.decode()
    assert "Paused. Batches already handed" in body
    assert ">Resume</button>" in body and 'hx-trigger="every 2s"' not in body

    alice_client.post(url("broadcast_resume", broadcast_a))
    assert stored(broadcast_a)["state"] == Broadcast.State.SENDING

    confirm = alice_client.get(url("broadcast_cancel", broadcast_a)).content.decode()
    assert "Cancel “Soup season”?" in confirm
    assert stored(broadcast_a)["state"] == Broadcast.State.SENDING
    alice_client.post(url("broadcast_cancel", broadcast_a))
    assert stored(broadcast_a)["state"] == Broadcast.State.CANCELLED
    body = alice_client.get(url("broadcast_progress", broadcast_a)).content.decode()
    assert "Cancelled: nobody else will get it." in body


def test_a_broadcast_that_paused_itself_says_why(alice_client, broadcast_a):
    Broadcast.objects.filter(pk=broadcast_a.pk).update(
        state=Broadcast.State.PAUSED, paused_reason="12% of sends failed (over 10%)."
    )
    body = alice_client.get(url("broadcast_progress", broadcast_a)).content.decode()
    assert "It paused itself: 12% of sends failed (over 10%)." in body


def test_unknown_deliveries_are_listed_and_explained(alice_client, broadcast_a):
    subscribers = list(broadcast_a.account.subscriber_set.order_by("id"))
    in_flight = timezone.now().replace(microsecond=0)
    for subscriber, state in zip(
        subscribers,
        (Delivery.State.UNKNOWN, Delivery.State.SENT, Delivery.State.UNKNOWN),
        strict=True,
    ):
        Delivery.objects.create(
            broadcast=broadcast_a,
            account=broadcast_a.account,
            subscriber=subscriber,
            state=state,
            claimed_at=in_flight,
        )
    sending(broadcast_a, recipient_count=3, sent_count=1, unknown_count=2)

    body = alice_client.get(url("broadcast_progress", broadcast_a)).content.decode()
    section = body[body.index('id="unknown-deliveries"') :]
    assert "Unknown outcome: 2 recipients" in section
    assert "never sent again" in section
    assert subscribers[0].email in section and subscribers[2].email in section
    assert subscribers[1].email not in section
    assert f"{in_flight.astimezone(PARIS):%-d %b %Y, %H:%M}" in section


def test_a_poll_reads_the_unknown_deliveries_only_when_their_count_changed(
    alice_client, broadcast_a
):
    subscriber = broadcast_a.account.subscriber_set.first()
    Delivery.objects.create(
        broadcast=broadcast_a,
        account=broadcast_a.account,
        subscriber=subscriber,
        state=Delivery.State.UNKNOWN,
    )
    sending(broadcast_a, recipient_count=3, unknown_count=1)
    live = url("broadcast_progress_live", broadcast_a)

    with CaptureQueriesContext(connection) as queries:
        same = alice_client.get(f"{live}?unknown=1", **HTMX).content.decode()
    assert "BROADCASTS_DELIVERY" not in " ".join(q["sql"] for q in queries).upper()
    assert "hx-swap-oob" not in same

    changed = alice_client.get(f"{live}?unknown=0", **HTMX).content.decode()
    assert 'id="unknown-deliveries" aria-labelledby="unknown-heading" hx-swap-oob="true"' in changed
    assert subscriber.email in changed
    assert f"{live}?unknown=1" in changed  # the next poll knows the page shows them


@pytest.mark.parametrize(("body_format", "shown"), [("visual", True), ("markdown", False)])
def test_the_visual_editor_shows_for_a_visual_body_only(
    alice_client, broadcast_a, body_format, shown
):
    broadcast_a.body_format = body_format
    broadcast_a.body = '{"type": "doc", "content": [{"type": "paragraph"}]}'
    broadcast_a.save()
    page = alice_client.get(url("broadcast_edit", broadcast_a)).content.decode()
    source = page[page.index("<div data-email-source") :]
    assert ("data-visual" in source[: source.index(">")]) is shown
    mount = page[page.index("<div data-email-editor") :]
    mount = mount[: mount.index(">")]
    assert 'data-input="id_body"' in mount and 'data-content-label="Email content"' in mount
    assert "data-snippet-key" not in mount
