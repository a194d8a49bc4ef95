"""Writing events: the one place Event rows, DeliveryActivity firsts and Rollup counters change.

`events_store(events, batch_key=...)` does, in one transaction:

1. With a batch key, inserts the DrainedBatch marker; if it was there already, the batch was
   written before (its drain died after COMMIT) and nothing more happens.
2. Looks up the events' deliveries in one query (broadcast, account, subscriber, sent time);
   events whose delivery is gone (its subscriber or broadcast was deleted) are dropped.
3. Flags the clicks no person makes: within TRACKING_SCANNER_SECONDS of the send, or three or
   more links of one message within MANY_LINKS_SECONDS (a scanner following every link).
4. COPYs the Event rows (append-only, partitioned by month).
5. Upserts DeliveryActivity firsts, in key order so concurrent batches cannot deadlock. An
   inserted row is a new unique (open, click, bounce ...); a row whose first_human_at is set
   now is a new unique human one. Row locks make that true with several drains at once. A click
   is also an open of its delivery (whoever clicked opened the email, with images blocked or
   not), a person's when a person clicked: so nobody counts as clicking without opening. The
   same statement records a link_clicked event (the automations outbox) for each link of a
   delivery that a person clicks for the first time.
6. Adds the batch's counts to Rollup rows (per broadcast and per link, by hour), in key order.

Counts therefore change exactly when the events are written: once.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings
from django.db import OperationalError, connection, transaction

from automations.models import EventKind as AutomationEventKind
from automations.outbox import events_insert_sql
from tracking.models import EventKind, Machine

MANY_LINKS = 3
MANY_LINKS_SECONDS = 5
_DEADLOCK_RETRIES = 3
# COPY's text format's NULL.
_NULL = "\\N"

# Rollup counter columns, in the order of the arrays built below.
ROLLUP_COLUMNS = (
    "opens",
    "human_opens",
    "unique_opens",
    "human_unique_opens",
    "clicks",
    "human_clicks",
    "unique_clicks",
    "human_unique_clicks",
    "delivered",
    "bounces",
    "soft_bounces",
    "complaints",
    "unsubscribes",
)
_COLUMN = {name: index for index, name in enumerate(ROLLUP_COLUMNS)}
# The counter an inserted activity row of each kind adds to (opens and clicks: the unique one).
_UNIQUE_COLUMN = {
    EventKind.OPEN: "unique_opens",
    EventKind.CLICK: "unique_clicks",
    EventKind.DELIVERED: "delivered",
    EventKind.BOUNCE: "bounces",
    EventKind.SOFT_BOUNCE: "soft_bounces",
    EventKind.COMPLAINT: "complaints",
    EventKind.UNSUBSCRIBE: "unsubscribes",
}
_HUMAN_UNIQUE_COLUMN = {
    EventKind.OPEN: "human_unique_opens",
    EventKind.CLICK: "human_unique_clicks",
}


class TrackedEvent(NamedTuple):
    # A tuple, not a frozen dataclass: a drain makes tens of thousands a second.
    kind: int
    occurred_at: dt.datetime
    delivery_id: int
    link_id: int = 0
    machine: int = Machine.HUMAN


@dataclass
class StoreResult:
    stored: int
    orphaned: int
    already_drained: bool = False


class _Delivery:
    __slots__ = ("account_id", "broadcast_id", "sent_epoch", "subscriber_id")

    def __init__(self, broadcast_id, account_id, subscriber_id, sent_epoch) -> None:
        self.broadcast_id = broadcast_id
        self.account_id = account_id
        self.subscriber_id = subscriber_id
        self.sent_epoch = sent_epoch


# An event as the store works on it: times as epoch seconds, which cost a fraction of what
# datetimes do to compare, bucket and write (a drain handles tens of thousands a second).
_KIND, _EPOCH, _DELIVERY, _LINK, _MACHINE = range(5)


def events_store(events: Sequence[TrackedEvent], *, batch_key: str | None = None) -> StoreResult:
    """Writes the events once (see the module docstring). Inside a caller's transaction it
    joins it; on its own it retries a deadlock a few times."""
    if connection.in_atomic_block:
        return _store(events, batch_key)
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            with transaction.atomic():
                return _store(events, batch_key)
        except OperationalError as error:
            if "deadlock" not in str(error) or attempt == _DEADLOCK_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _store(events: Sequence[TrackedEvent], batch_key: str | None) -> StoreResult:
    with transaction.atomic(), connection.cursor() as cursor:
        if batch_key is not None:
            cursor.execute(
                "INSERT INTO tracking_drainedbatch (key, events, drained_at) "
                "VALUES (%s, %s, now()) ON CONFLICT DO NOTHING RETURNING key",
                [batch_key, len(events)],
            )
            if cursor.fetchone() is None:
                return StoreResult(stored=0, orphaned=0, already_drained=True)
        if not events:
            return StoreResult(stored=0, orphaned=0)
        deliveries = _deliveries(cursor, {event.delivery_id for event in events})
        kept = [
            [e.kind, e.occurred_at.timestamp(), e.delivery_id, e.link_id, e.machine]
            for e in events
            if e.delivery_id in deliveries
        ]
        if kept:
            _flag_machines(kept, deliveries)
            _events_copy(cursor, kept, deliveries)
            rollups = _rollups_from_events(kept, deliveries)
            _activity_upsert(cursor, rollups)
            _rollups_add(cursor, rollups)
        return StoreResult(stored=len(kept), orphaned=len(events) - len(kept))


def _deliveries(cursor, ids: set[int]) -> dict[int, _Delivery]:
    cursor.execute(
        "SELECT id, broadcast_id, account_id, subscriber_id, extract(epoch FROM sent_at)::float8 "
        "FROM broadcasts_delivery WHERE id = ANY(%s::bigint[])",
        [_int_array(sorted(ids))],
    )
    return {row[0]: _Delivery(*row[1:]) for row in cursor.fetchall()}


def _int_array(values) -> str:
    """A PostgreSQL array literal: psycopg2 adapts a list of thousands of ints slowly, and the
    server then plans a statement as long as the list."""
    return "{" + ",".join(str(int(value)) for value in values) + "}"


def _flag_machines(events: list[list], deliveries: dict[int, _Delivery]) -> None:
    too_soon = settings.TRACKING_SCANNER_SECONDS
    clicks_by_delivery: dict[int, list[list]] = defaultdict(list)
    for event in events:
        if event[_KIND] != EventKind.CLICK or event[_MACHINE] != Machine.HUMAN:
            continue
        sent_epoch = deliveries[event[_DELIVERY]].sent_epoch
        if sent_epoch is not None and event[_EPOCH] - sent_epoch <= too_soon:
            event[_MACHINE] = Machine.TOO_SOON
        else:
            clicks_by_delivery[event[_DELIVERY]].append(event)
    for clicks in clicks_by_delivery.values():
        if len(clicks) < MANY_LINKS:
            continue
        clicks.sort(key=lambda click: click[_EPOCH])
        start = 0
        for end in range(len(clicks)):
            while clicks[end][_EPOCH] - clicks[start][_EPOCH] > MANY_LINKS_SECONDS:
                start += 1
            in_window = clicks[start : end + 1]
            if len({click[_LINK] for click in in_window}) >= MANY_LINKS:
                for click in in_window:
                    click[_MACHINE] = Machine.MANY_LINKS


def _events_copy(cursor, events: list[list], deliveries: dict[int, _Delivery]) -> None:
    buffer = io.StringIO()
    write = buffer.write
    for kind, epoch, delivery_id, link_id, machine in events:
        delivery = deliveries[delivery_id]
        write(
            f"{epoch!r}\t{kind}\t{machine}\t{delivery.account_id}\t{delivery.broadcast_id}\t"
            f"{delivery_id}\t{delivery.subscriber_id}\t{link_id or _NULL}\n"
        )
    buffer.seek(0)
    # Through a temporary table with epoch seconds (COPY cannot convert them on the way in),
    # which the activity upsert then reads too. Made once per connection, emptied at COMMIT and
    # here (several stores may share one transaction: webhooks, tests).
    cursor.execute(
        """
        CREATE TEMPORARY TABLE IF NOT EXISTS tracking_event_batch (
            epoch float8, kind smallint, machine smallint, account_id bigint,
            broadcast_id bigint, delivery_id bigint, subscriber_id bigint, link_id bigint
        ) ON COMMIT DELETE ROWS;
        DELETE FROM tracking_event_batch;
        """
    )
    cursor.cursor.copy_expert("COPY tracking_event_batch FROM STDIN", buffer)
    cursor.execute(
        """
        INSERT INTO tracking_event (occurred_at, kind, machine, account_id, broadcast_id,
                                    delivery_id, subscriber_id, link_id)
        SELECT to_timestamp(epoch), kind, machine, account_id, broadcast_id, delivery_id,
               subscriber_id, link_id
        FROM tracking_event_batch
        """
    )


def _hour_key(epoch: float) -> int:
    return int(epoch // 3600)


def _rollups_from_events(
    events: list[list], deliveries: dict[int, _Delivery]
) -> dict[tuple[int, int, int], list[int]]:
    """The raw (not unique) counts: every open and every click, and by a person. Keyed by
    (broadcast, link, hours since the epoch)."""
    rollups: dict[tuple[int, int, int], list[int]] = defaultdict(lambda: [0] * len(ROLLUP_COLUMNS))
    opens, human_opens = _COLUMN["opens"], _COLUMN["human_opens"]
    clicks, human_clicks = _COLUMN["clicks"], _COLUMN["human_clicks"]
    for kind, epoch, delivery_id, link_id, machine in events:
        if kind == EventKind.OPEN:
            counters = rollups[(deliveries[delivery_id].broadcast_id, 0, _hour_key(epoch))]
            counters[opens] += 1
            if machine == Machine.HUMAN:
                counters[human_opens] += 1
        elif kind == EventKind.CLICK:
            broadcast_id, hour = deliveries[delivery_id].broadcast_id, _hour_key(epoch)
            for key in ((broadcast_id, 0, hour), (broadcast_id, link_id, hour))[
                : 2 if link_id else 1
            ]:
                counters = rollups[key]
                counters[clicks] += 1
                if machine == Machine.HUMAN:
                    counters[human_clicks] += 1
    return rollups


def _activity_upsert(cursor, rollups: dict[tuple[int, int, int], list[int]]) -> None:
    """Upserts the firsts of the batch (already in tracking_event_batch, see _events_copy),
    found by PostgreSQL's GROUP BY; adds the unique counts the upsert reveals to `rollups`, and
    records the link_clicked events of the links first clicked by a person."""
    # A row the upsert returns with first_human_at is a person's first click of that link in
    # that delivery: inserted with it, or given it now (the upsert returns no other row).
    link_clicked = events_insert_sql(
        kind=AutomationEventKind.LINK_CLICKED,
        rows_sql="""
            SELECT account_id, link_id, subscriber_id, '' FROM upserted
            WHERE kind = %(click)s AND link_id <> 0 AND first_human_at IS NOT NULL
        """,
    )
    cursor.execute(
        f"""
        WITH upserted AS (
            INSERT INTO tracking_deliveryactivity AS a
                (delivery_id, kind, link_id, account_id, broadcast_id, subscriber_id,
                 first_at, first_human_at)
            SELECT delivery_id, kind, link_id, min(account_id), min(broadcast_id),
                   min(subscriber_id), to_timestamp(min(epoch)),
                   to_timestamp(min(epoch) FILTER (WHERE machine = %(human)s))
            FROM (
                SELECT delivery_id, kind, coalesce(link_id, 0) AS link_id, account_id,
                       broadcast_id, subscriber_id, epoch, machine
                FROM tracking_event_batch
                UNION ALL
                -- A click is also "clicked anything": its link 0 row.
                SELECT delivery_id, kind, 0, account_id, broadcast_id, subscriber_id, epoch, machine
                FROM tracking_event_batch WHERE kind = %(click)s AND link_id IS NOT NULL
                UNION ALL
                -- ... and an open.
                SELECT delivery_id, %(open)s, 0, account_id, broadcast_id, subscriber_id, epoch,
                       machine
                FROM tracking_event_batch WHERE kind = %(click)s
            ) AS firsts
            GROUP BY delivery_id, kind, link_id
            ORDER BY 1, 2, 3
            ON CONFLICT (delivery_id, kind, link_id) DO UPDATE
                SET first_human_at = EXCLUDED.first_human_at
                WHERE a.first_human_at IS NULL AND EXCLUDED.first_human_at IS NOT NULL
            RETURNING a.kind, a.link_id, a.broadcast_id, (a.xmax = 0) AS inserted,
                      a.first_at, a.first_human_at, a.account_id, a.subscriber_id
        ), link_clicked AS ({link_clicked})
        SELECT kind, link_id, broadcast_id, inserted, extract(epoch FROM first_at)::float8,
               extract(epoch FROM first_human_at)::float8
        FROM upserted
        """,
        {"human": int(Machine.HUMAN), "click": int(EventKind.CLICK), "open": int(EventKind.OPEN)},
    )
    for kind, link_id, broadcast_id, inserted, first_epoch, human_epoch in cursor.fetchall():
        if inserted:
            key = (broadcast_id, link_id, _hour_key(first_epoch))
            rollups[key][_COLUMN[_UNIQUE_COLUMN[kind]]] += 1
        human_column = _HUMAN_UNIQUE_COLUMN.get(kind)
        if human_column and human_epoch is not None:
            rollups[(broadcast_id, link_id, _hour_key(human_epoch))][_COLUMN[human_column]] += 1


def _rollups_add(cursor, rollups: dict[tuple[int, int, int], list[int]]) -> None:
    if not rollups:
        return
    keys = sorted(rollups)
    arrays = [
        _int_array(key[0] for key in keys),
        _int_array(key[1] for key in keys),
        _int_array(key[2] * 3600 for key in keys),
    ]
    arrays += [
        _int_array(rollups[key][index] for key in keys) for index in range(len(ROLLUP_COLUMNS))
    ]
    names = ", ".join(ROLLUP_COLUMNS)
    casts = ", ".join(["%s::integer[]"] * len(ROLLUP_COLUMNS))
    updates = ", ".join(f"{name} = r.{name} + EXCLUDED.{name}" for name in ROLLUP_COLUMNS)
    cursor.execute(
        f"""
        INSERT INTO tracking_rollup AS r (broadcast_id, link_id, hour, {names})
        SELECT broadcast_id, link_id, to_timestamp(hour_epoch), {names}
        FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], {casts})
            AS v(broadcast_id, link_id, hour_epoch, {names})
        ORDER BY 1, 2, 3
        ON CONFLICT (broadcast_id, link_id, hour) DO UPDATE SET {updates}
        """,
        arrays,
    )
