"""charlie (account B) gets 404 for every sequence URL of account A, by GET and by POST, and
nothing changes; bob (a member of A) gets the exact page and his changes are made. A sequence
email's message is not a broadcast: every broadcast page, report, list and command answers as
if it did not exist."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import URLPattern, reverse
from django.utils import timezone

from broadcasts import urls as broadcast_urls
from broadcasts.models import Broadcast, Delivery
from sequences import urls as sequence_urls
from sequences.models import Sequence, SequenceEmail, Subscription
from sequences.services import subscriber_enrol
from tests.broadcasts.test_tenancy import CASES as BROADCAST_CASES
from tests.factories import SubscriberFactory, TagFactory
from tests.sequences.conftest import email_add
from tracking import urls as tracking_urls
from tracking.models import Rollup

HTMX = {"HTTP_HX_REQUEST": "true"}
POSTED = {
    "name": "Changed by the test",
    "send_days": [str(day) for day in range(7)],
    "send_hour": "9",
    "time_zone": "UTC",
    "subject": "Changed by the test",
    "preview_text": "",
    "body_format": "markdown",
    "body": "Hello {{ subscriber.first_name }}",
    "delay_amount": "0",
    "delay_unit": "days",
    "direction": "down",
}


def _published(sequence: Sequence) -> SequenceEmail:
    return sequence.emails.get(message__subject="One")


def _draft(sequence: Sequence) -> SequenceEmail:
    return sequence.emails.get(message__subject="Draft")


def _changed(sequence: Sequence) -> bool:
    return sequence.emails.filter(message__subject="Changed by the test").exists()


def _unchanged(sequence: Sequence) -> bool:
    """A page that only shows: the sequence as sequence_of_a made it."""
    return (
        sequence.name == "Welcome course"
        and not _changed(sequence)
        and list(sequence.emails.order_by("sort_key").values_list("published", flat=True))
        == [True, False]
    )


# name: (the email the URL names (None: the sequence only), the sequence's state, what bob's
# POST changes, the status of bob's GET). PAGES: what his GET of a page shows.
CASES = {
    "sequence_detail": (None, "active", lambda q: q.name == "Welcome course", 200),
    "sequence_settings": (None, "active", lambda q: q.name == "Changed by the test", 302),
    "sequence_subscribers": (None, "active", lambda q: q.name == "Welcome course", 302),
    "sequence_pause": (None, "active", lambda q: q.state == "paused", 302),
    "sequence_resume": (None, "paused", lambda q: q.state == "active", 302),
    "sequence_email_create": (None, "active", lambda q: q.emails.count() == 3, 302),
    "sequence_email_edit": (_published, "active", lambda q: _changed(q), 200),
    "sequence_email_autosave": (_draft, "active", lambda q: _changed(q), 405),
    "sequence_email_preview": (
        _published,
        "active",
        lambda q: not _changed(q) and q.emails.filter(message__subject="One").exists(),
        302,
    ),
    "sequence_email_test": (_published, "active", lambda q: _changed(q), 302),
    "sequence_email_publish": (
        _draft,
        "active",
        lambda q: q.emails.filter(published=True).count() == 2,
        302,
    ),
    "sequence_email_unpublish": (
        _published,
        "active",
        lambda q: not q.emails.filter(published=True).exists(),
        302,
    ),
    "sequence_email_move": (
        _published,
        "active",
        lambda q: (
            list(q.emails.order_by("sort_key").values_list("message__subject", flat=True))
            == ["Draft", "One"]
        ),
        302,
    ),
    "sequence_email_delete": (
        _published,
        "active",
        lambda q: q.emails.get(message__subject="One").deleted_at is not None,
        200,
    ),
    "sequence_email_report": (_published, "active", lambda q: _unchanged(q), 200),
    "sequence_email_report_people": (_published, "active", lambda q: _unchanged(q), 200),
}
# The status of bob's POST where it is not a redirect: pages that show, not change.
POST_STATUS = {
    "sequence_detail": 200,
    "sequence_email_autosave": 200,
    "sequence_email_preview": 200,
    "sequence_email_report": 200,
    "sequence_email_report_people": 200,
    "sequence_subscribers": 200,
}


PAGES = {
    "sequence_detail": '<h1 class="break">Welcome course</h1>',
    "sequence_email_edit": "<title>Email 1: One · Welcome course",
    "sequence_email_delete": "<title>Delete “One”?",
    "sequence_email_report": "<title>Report: One",
    "sequence_email_report_people": "<title>Who opened: One",
}


def sequence_of_a(make_sequence, account, state: str = "active") -> Sequence:
    """A's "Welcome course": One (published, with a subscriber queued for it), Draft."""
    sequence = make_sequence(account=account, emails=[("One", 0, "days")])
    email_add(sequence, subject="Draft", publish=False)
    Sequence.objects.filter(pk=sequence.pk).update(state=state)
    sequence.refresh_from_db()
    subscriber = SubscriberFactory(account=account, email="ann@example.org", first_name="Ann")
    subscriber_enrol(sequence=sequence, subscriber=subscriber)
    TagFactory(account=account, name="soup")
    return sequence


def url_of(name: str, sequence: Sequence) -> str:
    pick = CASES[name][0]
    if pick is None:
        return reverse(name, args=[sequence.id])
    extra = ["opened"] if name.endswith("_people") else []
    return reverse(name, args=[sequence.id, pick(sequence).id, *extra])


def snapshot() -> list:
    return [
        list(model.objects.order_by("id").values())
        for model in (Sequence, SequenceEmail, Broadcast, Subscription, Delivery)
    ]


def test_every_sequence_view_with_an_id_is_covered():
    with_ids = {
        pattern.name
        for pattern in sequence_urls.urlpatterns
        if isinstance(pattern, URLPattern) and "<int:" in str(pattern.pattern)
    }
    assert with_ids == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_charlie_gets_404_for_account_a_sequences_and_changes_nothing(
    charlie_client, make_sequence, account_a, name
):
    sequence = sequence_of_a(make_sequence, account_a, CASES[name][1])
    url = url_of(name, sequence)
    before = snapshot()
    assert charlie_client.get(url).status_code == 404
    assert charlie_client.get(url, **HTMX).status_code == 404
    assert charlie_client.post(url, POSTED).status_code == 404
    assert charlie_client.post(url, POSTED, **HTMX).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_bob_a_member_of_account_a_can_use_the_same_pages(
    bob_client, make_sequence, account_a, name
):
    pick, state, changed, get_status = CASES[name]
    sequence = sequence_of_a(make_sequence, account_a, state)
    url = url_of(name, sequence)
    response = bob_client.get(url)
    assert response.status_code == get_status
    if get_status == 200:
        assert PAGES[name] in response.content.decode()
    response = bob_client.post(url, POSTED, **HTMX)
    assert response.status_code == POST_STATUS.get(name, 302)
    sequence.refresh_from_db()
    assert changed(sequence)


def test_charlie_cannot_reach_account_a_emails_through_a_sequence_of_his_own(
    charlie_client, make_sequence, account_a, account_b
):
    """A URL pairing charlie's own sequence with an email of A is a 404 too."""
    ours = sequence_of_a(make_sequence, account_a)
    theirs = make_sequence(account=account_b, emails=[("Charlie's", 0, "days")])
    before = snapshot()
    for name in CASES:
        if CASES[name][0] is None:
            continue
        extra = ["opened"] if name.endswith("_people") else []
        url = reverse(name, args=[theirs.id, CASES[name][0](ours).id, *extra])
        assert charlie_client.get(url).status_code == 404, name
        assert charlie_client.post(url, POSTED).status_code == 404, name
    response = charlie_client.post(
        reverse("sequence_email_create", args=[theirs.id]), {"after": _published(ours).id}
    )
    assert response.status_code == 404
    assert snapshot() == before


# --- A sequence email's message is not a broadcast --------------------------------------------


def _broadcast_urls(message_id: int) -> list[str]:
    names = set(BROADCAST_CASES) | {
        pattern.name
        for pattern in tracking_urls.urlpatterns
        if "broadcast_id" in str(pattern.pattern)
    }
    urls = []
    for name in sorted(names):
        extra = ["opened"] if name == "broadcast_report_people" else []
        urls.append(reverse(name, args=[message_id, *extra]))
    return urls


def test_every_broadcast_url_with_an_id_is_tried():
    with_ids = {
        pattern.name
        for pattern in broadcast_urls.urlpatterns
        if isinstance(pattern, URLPattern) and "<int:" in str(pattern.pattern)
    }
    assert with_ids <= set(BROADCAST_CASES)


def test_a_sequence_emails_message_is_a_404_on_every_broadcast_page(
    alice_client, make_sequence, account_a
):
    sequence = sequence_of_a(make_sequence, account_a)
    before = snapshot()
    for email in (_published(sequence), _draft(sequence)):
        for url in _broadcast_urls(email.message_id):
            assert alice_client.get(url).status_code == 404, url
            assert alice_client.post(url, {**POSTED, "confirmed": "yes"}).status_code == 404, url
    assert snapshot() == before


def test_broadcast_lists_leave_sequence_emails_out(alice_client, make_sequence, account_a):
    sequence = sequence_of_a(make_sequence, account_a)
    message_id = _published(sequence).message_id
    Broadcast.objects.filter(pk=message_id).update(sent_count=5)
    real = Broadcast.objects.create(
        account=account_a,
        subject="A real broadcast",
        body="Hi",
        state=Broadcast.State.SENT,
        sent_count=5,
    )
    for opened in (real.id, message_id):
        Rollup.objects.create(
            broadcast_id=opened, hour=timezone.now(), unique_opens=2, human_unique_opens=2
        )
    listed = alice_client.get(reverse("broadcast_list")).content.decode()
    assert "A real broadcast" in listed and ">One<" not in listed and ">Draft<" not in listed
    draft = Broadcast.objects.create(account=account_a, subject="Next")
    editor = alice_client.get(reverse("broadcast_edit", args=[draft.id])).content.decode()
    choices = editor.split('name="not_opened_broadcast_id"')[1].split("</select>")[0]
    assert "A real broadcast" in choices and "One" not in choices
    dashboard = alice_client.get(reverse("dashboard")).content.decode()
    chart = dashboard[dashboard.index('id="rates-chart-title"') :]
    assert "A real broadcast" in chart and ">One<" not in chart


def test_broadcast_commands_do_not_take_a_sequence_emails_message(make_sequence, account_a):
    sequence = sequence_of_a(make_sequence, account_a)
    draft = _draft(sequence)
    Broadcast.objects.filter(pk=draft.message_id).update(subject="Hi", body="Hello")
    for command in ("send_broadcast", "broadcast_status"):
        with pytest.raises(CommandError, match=f"There is no broadcast {draft.message_id}"):
            call_command(command, str(draft.message_id))
    assert not Delivery.objects.filter(broadcast_id=draft.message_id).exists()
    assert Broadcast.objects.get(pk=draft.message_id).state == Broadcast.State.DRAFT


def test_an_email_is_reached_only_through_its_own_sequence(alice_client, make_sequence, account_a):
    """A URL pairing one of alice's sequences with an email of another of hers is a 404: no
    page can show or change an email under the wrong sequence's settings."""
    course = sequence_of_a(make_sequence, account_a)
    other = make_sequence(account=account_a, emails=[("Elsewhere", 0, "days")])
    before = snapshot()
    for name, (pick, *_rest) in CASES.items():
        if pick is None:
            continue
        extra = ["opened"] if name.endswith("_people") else []
        url = reverse(name, args=[other.id, pick(course).id, *extra])
        assert alice_client.get(url).status_code == 404, name
        assert alice_client.post(url, POSTED).status_code == 404, name
    assert snapshot() == before
