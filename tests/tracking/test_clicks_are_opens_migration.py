"""The data migration that makes the clicks stored before "a click is an open" count as opens:
it leaves the activity and the rollups exactly as the store now writes them."""

from __future__ import annotations

import datetime as dt
import importlib

from django.db import connection

from tracking.models import DeliveryActivity, EventKind, Machine, Rollup
from tracking.store import ROLLUP_COLUMNS, TrackedEvent, events_store

migration = importlib.import_module("tracking.migrations.0002_clicks_are_opens")

OPEN, CLICK = EventKind.OPEN, EventKind.CLICK

# What the store wrote before a click was an open: open activity from open events alone, and
# the link-0 rollups' unique open counters counted from that activity.
BEFORE_CLICKS_WERE_OPENS = """
DELETE FROM tracking_deliveryactivity a WHERE a.kind = 1 AND NOT EXISTS (
    SELECT 1 FROM tracking_event e WHERE e.delivery_id = a.delivery_id AND e.kind = 1);
UPDATE tracking_deliveryactivity a SET first_human_at = (
    SELECT min(e.occurred_at) FROM tracking_event e
    WHERE e.delivery_id = a.delivery_id AND e.kind = 1 AND e.machine = 0)
WHERE a.kind = 1;
UPDATE tracking_rollup r SET
    unique_opens = (SELECT count(*) FROM tracking_deliveryactivity a
        WHERE a.broadcast_id = r.broadcast_id AND a.kind = 1
          AND date_trunc('hour', a.first_at AT TIME ZONE 'UTC') = r.hour AT TIME ZONE 'UTC'),
    human_unique_opens = (SELECT count(*) FROM tracking_deliveryactivity a
        WHERE a.broadcast_id = r.broadcast_id AND a.kind = 1
          AND date_trunc('hour', a.first_human_at AT TIME ZONE 'UTC') = r.hour AT TIME ZONE 'UTC')
WHERE r.link_id = 0;
"""


def stored() -> tuple[list, list]:
    activity = list(
        DeliveryActivity.objects.order_by("delivery_id", "kind", "link_id").values_list(
            "delivery_id", "kind", "link_id", "first_at", "first_human_at"
        )
    )
    rollups = list(
        Rollup.objects.order_by("broadcast_id", "link_id", "hour").values_list(
            "broadcast_id", "link_id", "hour", *ROLLUP_COLUMNS
        )
    )
    return activity, rollups


def human_openers(broadcast) -> int:
    return sum(
        Rollup.objects.filter(broadcast_id=broadcast.pk, link_id=0).values_list(
            "human_unique_opens", flat=True
        )
    )


def test_the_migration_gives_stored_clicks_the_opens_the_store_now_records(sent_broadcast):
    broadcast = sent_broadcast(recipients=5, sent_ago=dt.timedelta(hours=4))
    opened, images_off, proxied, scanned, untouched = broadcast.delivery_set.order_by("id")
    soup, bread = broadcast.links.order_by("position")
    hour = opened.sent_at.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    minutes = [hour + dt.timedelta(minutes=m) for m in range(0, 120, 10)]
    # In time order, a batch each, as drains after one another store them.
    for event in (
        TrackedEvent(OPEN, minutes[0], opened.pk),
        TrackedEvent(OPEN, minutes[0], proxied.pk, machine=Machine.PRIVACY_PROXY),
        TrackedEvent(CLICK, minutes[1], opened.pk, soup.pk),
        TrackedEvent(CLICK, minutes[2], images_off.pk, soup.pk),
        TrackedEvent(CLICK, minutes[3], scanned.pk, bread.pk, machine=Machine.SCANNER_AGENT),
        TrackedEvent(CLICK, minutes[4], images_off.pk, bread.pk),
        TrackedEvent(CLICK, minutes[7], proxied.pk, bread.pk),
    ):
        events_store([event])
    as_the_store_writes = stored()

    with connection.cursor() as cursor:
        cursor.execute(BEFORE_CLICKS_WERE_OPENS)
    assert stored() != as_the_store_writes
    assert human_openers(broadcast) == 1  # only `opened`, before the migration

    with connection.cursor() as cursor:
        cursor.execute(migration.CLICKS_ARE_OPENS)
    assert stored() == as_the_store_writes
    assert human_openers(broadcast) == 3
    assert not DeliveryActivity.objects.filter(delivery_id=untouched.pk).exists()
