"""charlie (account B) gets 404 for every broadcast URL of account A, by GET and by POST, and
nothing changes; bob (a member of A) can use the same pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import URLPattern, reverse
from django.utils import timezone

from broadcasts import urls as broadcast_urls
from broadcasts.models import Broadcast, Delivery
from subscribers.models import Subscriber, Tag
from tests.factories import SubscriberFactory, TagFactory

HTMX = {"HTTP_HX_REQUEST": "true"}
S = Broadcast.State


def _editor_post(tag: Tag, **changes) -> dict:
    return {
        "subject": "Changed by the test",
        "preview_text": "",
        "body_format": "markdown",
        "body": "Hello {{ subscriber.first_name }}",
        "include_match": "any",
        "include_tag_ids": [tag.id],
        "send_at": f"{timezone.localtime(timezone.now() + timedelta(days=3)):%Y-%m-%dT%H:%M}",
        **changes,
    }


# name: (the state the broadcast of A is in, what a POST sends, how bob's POST shows, the
# status of bob's GET)
CASES = {
    "broadcast_edit": (S.DRAFT, {}, lambda b: b.subject == "Changed by the test", 200),
    "broadcast_autosave": (S.DRAFT, {}, lambda b: b.subject == "Changed by the test", 405),
    "broadcast_preview": (S.DRAFT, {}, lambda b: b.subject == "Soup season", 302),
    "broadcast_count": (S.DRAFT, {}, lambda b: b.subject == "Soup season", 200),
    "broadcast_test": (S.DRAFT, {}, lambda b: b.subject == "Changed by the test", 302),
    "broadcast_schedule": (S.DRAFT, {}, lambda b: b.state == S.SCHEDULED, 302),
    "broadcast_unschedule": (S.SCHEDULED, {}, lambda b: b.state == S.DRAFT, 302),
    "broadcast_send": (S.DRAFT, {"confirmed": "yes"}, lambda b: b.state == S.SENDING, 200),
    "broadcast_delete": (S.DRAFT, {}, lambda b: b is None, 200),
    "broadcast_progress": (S.SENDING, {}, lambda b: b.state == S.SENDING, 200),
    "broadcast_progress_live": (S.SENDING, {}, lambda b: b.state == S.SENDING, 200),
    "broadcast_pause": (S.SENDING, {}, lambda b: b.state == S.PAUSED, 302),
    "broadcast_resume": (S.PAUSED, {}, lambda b: b.state == S.SENDING, 302),
    "broadcast_cancel": (S.SENDING, {}, lambda b: b.state == S.CANCELLED, 200),
    "broadcast_unknown_resend": (S.SENDING, {}, lambda b: b.unknown_count == 0, 302),
    "broadcast_unknown_leave": (S.SENDING, {}, lambda b: b.unknown_left_count == 1, 302),
    "broadcast_public": (S.SENT, {"public": "1"}, lambda b: b.public, 302),
    "broadcast_resend_unopened": (
        S.SENT,
        {},
        lambda b: Broadcast.objects.filter(not_opened_broadcast_id=b.pk, state=S.DRAFT).exists(),
        302,
    ),
}


def broadcast_of_a(account, state: str) -> Broadcast:
    subscriber = SubscriberFactory(account=account, email="ann@example.org", first_name="Ann")
    tag = TagFactory(account=account, name="soup")
    subscriber.taggings.create(tag=tag, account=account)
    broadcast = Broadcast.objects.create(
        account=account,
        subject="Soup season",
        body="Hello {{ subscriber.first_name }}",
        state=state,
        scheduled_at=timezone.now() + timedelta(days=1) if state == S.SCHEDULED else None,
        send_started_at=timezone.now() if state in (S.SENDING, S.PAUSED) else None,
        recipient_count=1 if state in (S.SENDING, S.PAUSED) else 0,
        unknown_count=1 if state in (S.SENDING, S.PAUSED) else 0,
    )
    if state in (S.SENDING, S.PAUSED):
        Delivery.objects.create(
            broadcast=broadcast,
            account=account,
            subscriber=subscriber,
            state=Delivery.State.UNKNOWN,
        )
    return broadcast


def snapshot() -> list:
    return [
        list(Broadcast.objects.order_by("id").values()),
        list(Delivery.objects.order_by("id").values()),
        list(Subscriber.objects.order_by("id").values()),
        list(Tag.objects.order_by("id").values()),
    ]


def test_every_broadcast_view_with_an_id_is_covered():
    with_ids = {
        pattern.name
        for pattern in broadcast_urls.urlpatterns
        if isinstance(pattern, URLPattern) and "<int:" in str(pattern.pattern)
    }
    assert with_ids == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_charlie_gets_404_for_account_a_broadcasts_and_changes_nothing(
    charlie_client, account_a, name
):
    state, data = CASES[name][:2]
    broadcast = broadcast_of_a(account_a, state)
    url = reverse(name, args=[broadcast.id])
    before = snapshot()
    tag = Tag.objects.get(account=account_a)
    assert charlie_client.get(url).status_code == 404
    assert charlie_client.get(url, **HTMX).status_code == 404
    assert charlie_client.post(url, _editor_post(tag, **data)).status_code == 404
    assert charlie_client.post(url, _editor_post(tag, **data), **HTMX).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_bob_a_member_of_account_a_can_use_the_same_pages(bob_client, account_a, name):
    state, data, changed, get_status = CASES[name]
    broadcast = broadcast_of_a(account_a, state)
    url = reverse(name, args=[broadcast.id])
    tag = Tag.objects.get(account=account_a)
    assert bob_client.get(url, **HTMX).status_code == get_status
    response = bob_client.post(url, _editor_post(tag, **data), **HTMX)
    assert response.status_code in (200, 302)
    assert changed(Broadcast.objects.filter(pk=broadcast.pk).first())


def test_charlie_cannot_preview_as_a_subscriber_of_account_a(charlie_client, account_a, account_b):
    SubscriberFactory(account=account_a, email="ann@example.org", first_name="Annabel")
    theirs = Broadcast.objects.create(account=account_b, body="Hi {{ subscriber.first_name }}")
    body = charlie_client.post(
        reverse("broadcast_preview", args=[theirs.id]),
        {"body_format": "markdown", "body": theirs.body, "preview_email": "ann@example.org"},
        **HTMX,
    ).content.decode()
    assert "Annabel" not in body
    assert "No subscriber has the address ann@example.org" in body
