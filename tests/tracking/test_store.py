"""The store writes each event once and keeps rollups equal to what the raw rows say."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from tracking.models import DeliveryActivity, Event, EventKind, Machine, Rollup
from tracking.partitions import partition_name, partitions_ensure, partitions_existing
from tracking.store import ROLLUP_COLUMNS, TrackedEvent, events_store


def _totals(broadcast, link_id=0):
    return Rollup.objects.filter(broadcast_id=broadcast.pk, link_id=link_id).aggregate(
        **{name: Sum(name) for name in ROLLUP_COLUMNS}
    )


def test_opens_and_clicks_are_counted_raw_unique_and_human(sent_broadcast):
    broadcast = sent_broadcast(recipients=3)
    d1, d2, d3 = broadcast.delivery_set.order_by("id")
    soup, bread = broadcast.links.order_by("position")
    now = timezone.now()
    events = [
        TrackedEvent(EventKind.OPEN, now, d1.pk),
        TrackedEvent(EventKind.OPEN, now, d1.pk),
        TrackedEvent(EventKind.OPEN, now, d2.pk, machine=Machine.PRIVACY_PROXY),
        TrackedEvent(EventKind.CLICK, now, d1.pk, soup.pk),
        TrackedEvent(EventKind.CLICK, now, d1.pk, bread.pk),
        TrackedEvent(EventKind.CLICK, now, d3.pk, soup.pk, machine=Machine.SCANNER_AGENT),
    ]
    result = events_store(events)
    assert (result.stored, result.orphaned) == (6, 0)
    totals = _totals(broadcast)
    assert totals["opens"] == 3 and totals["human_opens"] == 2
    # d3's scanner click is a machine's open too.
    assert totals["unique_opens"] == 3 and totals["human_unique_opens"] == 1
    assert totals["clicks"] == 3 and totals["human_clicks"] == 2
    assert totals["unique_clicks"] == 2 and totals["human_unique_clicks"] == 1
    soup_totals = _totals(broadcast, soup.pk)
    assert soup_totals["clicks"] == 2 and soup_totals["human_unique_clicks"] == 1
    assert Event.objects.filter(broadcast_id=broadcast.pk).count() == 6


def test_a_later_human_open_makes_a_machine_only_opener_a_human_one(sent_broadcast):
    broadcast = sent_broadcast(recipients=1)
    delivery = broadcast.delivery_set.get()
    now = timezone.now()
    events_store([TrackedEvent(EventKind.OPEN, now, delivery.pk, machine=Machine.PRIVACY_PROXY)])
    events_store([TrackedEvent(EventKind.OPEN, now, delivery.pk)])
    events_store([TrackedEvent(EventKind.OPEN, now, delivery.pk)])
    totals = _totals(broadcast)
    assert (totals["unique_opens"], totals["human_unique_opens"], totals["opens"]) == (1, 1, 3)


def test_a_persons_click_is_their_open_too_whether_or_not_the_pixel_loaded(sent_broadcast):
    broadcast = sent_broadcast(recipients=3, sent_ago=dt.timedelta(hours=3))
    images_off, proxied, opened = broadcast.delivery_set.order_by("id")
    soup = broadcast.links.get(url="https://example.com/soup")
    at = images_off.sent_at.replace(minute=10, second=0, microsecond=0) + dt.timedelta(hours=1)
    events_store(
        [
            TrackedEvent(EventKind.OPEN, at, proxied.pk, machine=Machine.PRIVACY_PROXY),
            TrackedEvent(EventKind.OPEN, at, opened.pk),
        ]
    )
    events_store([TrackedEvent(EventKind.CLICK, at, images_off.pk, soup.pk)])
    later = at + dt.timedelta(hours=1)
    events_store(
        [
            TrackedEvent(EventKind.CLICK, later, proxied.pk, soup.pk),
            TrackedEvent(EventKind.CLICK, later, opened.pk, soup.pk),
        ]
    )

    firsts = dict(
        DeliveryActivity.objects.filter(kind=EventKind.OPEN).values_list(
            "delivery_id", "first_human_at"
        )
    )
    assert firsts == {images_off.pk: at, proxied.pk: later, opened.pk: at}
    totals = _totals(broadcast)
    assert (totals["unique_opens"], totals["human_unique_opens"]) == (3, 3)
    assert (totals["unique_clicks"], totals["human_unique_clicks"]) == (3, 3)
    # Raw counts stay what was recorded: two pixels loaded.
    assert (totals["opens"], totals["human_opens"]) == (2, 1)
    # Each unique lands in the hour of the first that made it: the proxied one's person at the
    # click.
    by_hour = dict(
        Rollup.objects.filter(broadcast_id=broadcast.pk, link_id=0).values_list(
            "hour", "human_unique_opens"
        )
    )
    assert by_hour == {at.replace(minute=0): 2, later.replace(minute=0): 1}


def test_a_batch_stored_again_under_its_key_writes_nothing(sent_broadcast):
    broadcast = sent_broadcast(recipients=2)
    events = [
        TrackedEvent(EventKind.OPEN, timezone.now(), delivery.pk)
        for delivery in broadcast.delivery_set.all()
    ]
    assert events_store(events, batch_key="batch-1").stored == 2
    again = events_store(events, batch_key="batch-1")
    assert again.already_drained and again.stored == 0
    assert Event.objects.filter(broadcast_id=broadcast.pk).count() == 2
    assert _totals(broadcast)["opens"] == 2


def test_events_of_deleted_deliveries_are_dropped_not_failed(sent_broadcast):
    broadcast = sent_broadcast(recipients=2)
    gone, kept = broadcast.delivery_set.order_by("id")
    gone.subscriber.delete()
    now = timezone.now()
    result = events_store(
        [TrackedEvent(EventKind.OPEN, now, gone.pk), TrackedEvent(EventKind.OPEN, now, kept.pk)]
    )
    assert (result.stored, result.orphaned) == (1, 1)


def test_an_event_of_a_month_without_its_partition_is_stored_and_moves_in_when_it_is_made(
    sent_broadcast,
):
    broadcast = sent_broadcast(recipients=1)
    delivery = broadcast.delivery_set.get()
    long_ago = dt.datetime(2001, 2, 3, 4, 5, tzinfo=dt.UTC)  # an ESP event stamped long ago
    assert partition_name(long_ago.date()) not in partitions_existing()

    assert events_store([TrackedEvent(EventKind.BOUNCE, long_ago, delivery.pk)]).stored == 1
    partitions_ensure(months_ahead=0, today=long_ago.date())

    assert list(Event.objects.values_list("occurred_at", flat=True)) == [long_ago]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {partition_name(long_ago.date())}")
        assert cursor.fetchone()[0] == 1
    assert _totals(broadcast)["bounces"] == 1


def test_clicks_right_after_sending_or_on_every_link_at_once_are_machine(sent_broadcast):
    broadcast = sent_broadcast(
        recipients=2,
        links=("https://a.example/", "https://b.example/", "https://c.example/"),
        sent_ago=dt.timedelta(seconds=3),
    )
    early, other = broadcast.delivery_set.order_by("id")
    links = list(broadcast.links.order_by("position"))
    now = timezone.now()
    events_store([TrackedEvent(EventKind.CLICK, now, early.pk, links[0].pk)])
    later = now + dt.timedelta(minutes=5)
    events_store(
        [
            TrackedEvent(EventKind.CLICK, later + dt.timedelta(seconds=i), other.pk, link.pk)
            for i, link in enumerate(links)
        ]
    )
    machines = dict(
        Event.objects.filter(broadcast_id=broadcast.pk).values_list("delivery_id", "machine")
    )
    assert machines[early.pk] == Machine.TOO_SOON
    assert set(Event.objects.filter(delivery_id=other.pk).values_list("machine", flat=True)) == {
        Machine.MANY_LINKS
    }
    assert _totals(broadcast)["human_clicks"] == 0


def test_bounces_count_each_delivery_once(sent_broadcast):
    broadcast = sent_broadcast(recipients=1)
    delivery = broadcast.delivery_set.get()
    now = timezone.now()
    events_store([TrackedEvent(EventKind.BOUNCE, now, delivery.pk)])
    events_store([TrackedEvent(EventKind.BOUNCE, now, delivery.pk)])
    assert _totals(broadcast)["bounces"] == 1
    assert DeliveryActivity.objects.filter(delivery_id=delivery.pk).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_stores_count_a_unique_open_once(sent_broadcast):
    broadcast = sent_broadcast(recipients=50)
    deliveries = list(broadcast.delivery_set.values_list("id", flat=True))
    now = timezone.now()
    events = [TrackedEvent(EventKind.OPEN, now, delivery_id) for delivery_id in deliveries]
    errors = []

    def store(batch):
        try:
            events_store(batch)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=store, args=(order,))
        for order in (events, events[::-1], events, events[::-1])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    totals = _totals(broadcast)
    assert totals["unique_opens"] == 50 and totals["opens"] == 200
