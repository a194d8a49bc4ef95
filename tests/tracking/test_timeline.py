"""The subscriber page's activity timeline: what was sent to them and what they did with it,
newest first, 50 at a time with a "More activity" link, and nothing of it to another account."""

from __future__ import annotations

import datetime as dt
import re

from django.urls import reverse

from tests.list_pages import pager_link, queries_for_page
from tracking.models import EventKind, Machine
from tracking.reports import subscriber_timeline, timeline_cursor
from tracking.store import TrackedEvent, events_store


def detail_url(subscriber) -> str:
    return reverse("subscriber_detail", args=[subscriber.id])


def entries_on(response) -> list[str]:
    """Each timeline entry as one line of text: "<label> “<subject>”[: <url>][ Machine: ...]"."""
    body = response.content.decode()
    items = re.findall(r'<li class="timeline-entry[^"]*">(.*?)</li>', body, re.S)
    lines = []
    for item in items:
        text = re.sub(r"<time[^>]*>.*?</time>\s*—", "", item, flags=re.S)
        text = re.sub(r"<[^>]+>", "", text)
        lines.append(" ".join(text.replace("&#x27;", "'").split()))
    return lines


def test_the_timeline_shows_sends_opens_clicks_and_esp_events_newest_first(
    alice_client, sent_broadcast, account_a
):
    broadcast = sent_broadcast(recipients=1, account=account_a, sent_ago=dt.timedelta(days=2))
    delivery = broadcast.delivery_set.get()
    soup = broadcast.links.get(url="https://example.com/soup")
    sent = delivery.sent_at
    events_store(
        [
            TrackedEvent(EventKind.DELIVERED, sent + dt.timedelta(seconds=20), delivery.pk),
            TrackedEvent(
                EventKind.OPEN,
                sent + dt.timedelta(minutes=1),
                delivery.pk,
                machine=Machine.PRIVACY_PROXY,
            ),
            TrackedEvent(EventKind.OPEN, sent + dt.timedelta(hours=1), delivery.pk),
            TrackedEvent(EventKind.CLICK, sent + dt.timedelta(hours=2), delivery.pk, soup.pk),
            TrackedEvent(EventKind.SOFT_BOUNCE, sent + dt.timedelta(hours=3), delivery.pk),
            TrackedEvent(EventKind.COMPLAINT, sent + dt.timedelta(hours=4), delivery.pk),
            TrackedEvent(EventKind.UNSUBSCRIBE, sent + dt.timedelta(hours=5), delivery.pk),
        ]
    )
    response = alice_client.get(detail_url(delivery.subscriber))
    assert entries_on(response) == [
        "Unsubscribed from “Soup season”",
        "Marked as spam: “Soup season”",
        "Soft bounce: “Soup season”",
        "Clicked a link in “Soup season”: https://example.com/soup",
        # The first open by a person; the privacy proxy's earlier fetch is not a second entry.
        "Opened “Soup season”",
        "Sent “Soup season”",
    ]
    assert f'href="{reverse("broadcast_report", args=[broadcast.id])}"' in (
        response.content.decode()
    )


def test_a_click_without_the_pixel_shows_as_opened_then_clicked(
    alice_client, sent_broadcast, account_a
):
    broadcast = sent_broadcast(recipients=1, account=account_a, sent_ago=dt.timedelta(days=1))
    delivery = broadcast.delivery_set.get()
    soup = broadcast.links.get(url="https://example.com/soup")
    clicked = delivery.sent_at + dt.timedelta(hours=1)
    events_store([TrackedEvent(EventKind.CLICK, clicked, delivery.pk, soup.pk)])
    response = alice_client.get(detail_url(delivery.subscriber))
    assert entries_on(response) == [
        "Clicked a link in “Soup season”: https://example.com/soup",
        "Opened “Soup season”",
        "Sent “Soup season”",
    ]


def test_a_subscriber_without_mail_has_an_empty_timeline(alice_client, account_a):
    from tests.factories import SubscriberFactory

    subscriber = SubscriberFactory(account=account_a, email="new@example.org")
    response = alice_client.get(detail_url(subscriber))
    assert entries_on(response) == []
    assert "No emails sent to new@example.org yet." in response.content.decode()


def test_more_activity_pages_through_everything_once_even_at_the_same_moment(
    alice_client, sent_broadcast, account_a
):
    """63 entries, many at the very same microsecond (clicks, the opens they imply, and sends
    alike): 50 on the subscriber page, the other 13 behind "More activity", none twice, none
    missed."""
    links = tuple(f"https://example.com/soup/{n}" for n in range(19))
    broadcasts = [
        sent_broadcast(recipients=1, account=account_a, links=links, sent_ago=dt.timedelta(days=1))
        for _ in range(3)
    ]
    subscriber = broadcasts[0].delivery_set.get().subscriber
    # The same person received all three: move the other deliveries to them.
    for broadcast in broadcasts[1:]:
        broadcast.delivery_set.update(subscriber=subscriber)
    deliveries = [broadcast.delivery_set.get() for broadcast in broadcasts]
    moment = deliveries[0].sent_at
    for delivery in deliveries:
        delivery.sent_at = moment
        delivery.save(update_fields=["sent_at"])
    events_store(
        [
            TrackedEvent(EventKind.CLICK, moment + dt.timedelta(minutes=n // 6), d.pk, link.pk)
            for d in deliveries
            for n, link in enumerate(d.broadcast.links.order_by("position"))
        ]
    )
    first = alice_client.get(detail_url(subscriber))
    assert len(entries_on(first)) == 50
    more = pager_link(first, "More activity")
    assert more.startswith(reverse("subscriber_activity", args=[subscriber.id]))
    second = alice_client.get(more)
    assert len(entries_on(second)) == 13
    assert pager_link(second, "More activity") is None
    assert entries_on(second)[-3:] == ["Sent “Soup season”"] * 3
    both = entries_on(first) + entries_on(second)
    assert len(set(both)) == 19 + 2
    assert sum(entry.startswith("Clicked a link in") for entry in both) == 57
    assert sum(entry.startswith("Opened") for entry in both) == 3


def test_a_malformed_cursor_shows_the_latest_activity(alice_client, sent_broadcast, account_a):
    broadcast = sent_broadcast(recipients=1, account=account_a, links=())
    subscriber = broadcast.delivery_set.get().subscriber
    url = reverse("subscriber_activity", args=[subscriber.id])
    # The last one fits the length check but lies past the year 9999.
    for cursor in ("abc", "1.2.3", "99999999999999999999.1.1", "1.1", "999999999999999999.1.1"):
        response = alice_client.get(f"{url}?before={cursor}")
        assert response.status_code == 200
        assert entries_on(response) == ["Sent “Soup season”"]


def test_charlie_gets_404_for_alices_subscriber_and_their_activity(
    charlie_client, bob_client, sent_broadcast, account_a
):
    subscriber = sent_broadcast(recipients=1, account=account_a).delivery_set.get().subscriber
    for url in (detail_url(subscriber), reverse("subscriber_activity", args=[subscriber.id])):
        assert charlie_client.get(url).status_code == 404
        assert bob_client.get(url).status_code == 200


def test_the_timeline_costs_the_same_queries_for_1_entry_as_for_50(
    alice_client, sent_broadcast, account_a
):
    quiet = sent_broadcast(recipients=1, account=account_a).delivery_set.get()
    quiet_count = queries_for_page(alice_client, detail_url(quiet.subscriber))

    # A first click on each of 60 links: 60 entries and the send, more than a page holds.
    links = tuple(f"https://example.com/soup/{n}" for n in range(60))
    busy = sent_broadcast(recipients=1, account=account_a, links=links).delivery_set.get()
    moment = busy.sent_at + dt.timedelta(minutes=5)
    events_store(
        [
            TrackedEvent(EventKind.CLICK, moment + dt.timedelta(minutes=n), busy.pk, link.pk)
            for n, link in enumerate(busy.broadcast.links.all())
        ]
    )
    assert queries_for_page(alice_client, detail_url(busy.subscriber)) == quiet_count
    assert len(entries_on(alice_client.get(detail_url(busy.subscriber)))) == 50


def test_paging_the_timeline_at_any_size_gives_every_entry_once_in_order(sent_broadcast, account_a):
    """Sends and opens at the very same microsecond, cut into pages of every size from 1 to 7:
    walking the pages gives the whole timeline, in order, whatever entry a page ends on."""
    broadcasts = [
        sent_broadcast(recipients=1, account=account_a, links=(), sent_ago=dt.timedelta(days=1))
        for _ in range(3)
    ]
    subscriber = broadcasts[0].delivery_set.get().subscriber
    deliveries = []
    moment = broadcasts[0].sent_at
    for broadcast in broadcasts:
        broadcast.delivery_set.update(subscriber=subscriber, sent_at=moment)
        deliveries.append(broadcast.delivery_set.get())
    events_store(
        [TrackedEvent(EventKind.OPEN, moment, delivery.pk) for delivery in deliveries]
        + [TrackedEvent(EventKind.BOUNCE, moment, delivery.pk) for delivery in deliveries]
        + [TrackedEvent(EventKind.OPEN, moment + dt.timedelta(seconds=1), deliveries[0].pk)]
    )
    whole = subscriber_timeline(subscriber=subscriber, size=100)
    assert sorted(entry.kind for entry in whole.entries) == sorted(
        ["opened"] * 3 + ["bounced"] * 3 + ["received"] * 3
    )
    for size in range(1, 8):
        walked, before = [], None
        while True:
            page = subscriber_timeline(
                subscriber=subscriber, size=size, before=before and timeline_cursor(before)
            )
            walked += page.entries
            if page.older is None:
                break
            before = page.older
        assert walked == whole.entries, size
