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
   now is a new unique human one. Row locks make that true with several drains at once.
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

from django.conf import settings
from django.db import OperationalError, connection, transaction

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


@dataclass(frozen=True, slots=True)
class TrackedEvent:
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
    __slots__ = ("account_id", "broadcast_id", "sent_at", "subscriber_id")

    def __init__(self, broadcast_id, account_id, subscriber_id, sent_at) -> None:
        self.broadcast_id = broadcast_id
        self.account_id = account_id
        self.subscriber_id = subscriber_id
        self.sent_at = sent_at


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
        kept = [event for event in events if event.delivery_id in deliveries]
        kept = _flag_machines(kept, deliveries)
        if kept:
            _events_copy(cursor, kept, deliveries)
            rollups = _rollups_from_events(kept, deliveries)
            _activity_upsert(cursor, kept, deliveries, rollups)
            _rollups_add(cursor, rollups)
        return StoreResult(stored=len(kept), orphaned=len(events) - len(kept))


def _deliveries(cursor, ids: set[int]) -> dict[int, _Delivery]:
    cursor.execute(
        "SELECT id, broadcast_id, account_id, subscriber_id, sent_at "
        "FROM broadcasts_delivery WHERE id = ANY(%s::bigint[])",
        [_int_array(ids)],
    )
    return {row[0]: _Delivery(*row[1:]) for row in cursor.fetchall()}


def _int_array(values) -> str:
    """A PostgreSQL array literal: psycopg2 adapts a list of thousands of ints slowly, and the
    server then plans a statement as long as the list."""
    return "{" + ",".join(str(int(value)) for value in values) + "}"


def _flag_machines(
    events: list[TrackedEvent], deliveries: dict[int, _Delivery]
) -> list[TrackedEvent]:
    too_soon = dt.timedelta(seconds=settings.TRACKING_SCANNER_SECONDS)
    window = dt.timedelta(seconds=MANY_LINKS_SECONDS)
    clicks_by_delivery: dict[int, list[int]] = defaultdict(list)
    flagged = list(events)
    for index, event in enumerate(events):
        if event.kind != EventKind.CLICK or event.machine != Machine.HUMAN:
            continue
        sent_at = deliveries[event.delivery_id].sent_at
        if sent_at is not None and event.occurred_at - sent_at <= too_soon:
            flagged[index] = _with_machine(event, Machine.TOO_SOON)
        else:
            clicks_by_delivery[event.delivery_id].append(index)
    for indexes in clicks_by_delivery.values():
        if len(indexes) < MANY_LINKS:
            continue
        indexes.sort(key=lambda i: events[i].occurred_at)
        start = 0
        for end in range(len(indexes)):
            while events[indexes[end]].occurred_at - events[indexes[start]].occurred_at > window:
                start += 1
            in_window = indexes[start : end + 1]
            if len({events[i].link_id for i in in_window}) >= MANY_LINKS:
                for i in in_window:
                    flagged[i] = _with_machine(events[i], Machine.MANY_LINKS)
    return flagged


def _with_machine(event: TrackedEvent, machine: int) -> TrackedEvent:
    return TrackedEvent(event.kind, event.occurred_at, event.delivery_id, event.link_id, machine)


def _events_copy(cursor, events: list[TrackedEvent], deliveries: dict[int, _Delivery]) -> None:
    buffer = io.StringIO()
    write = buffer.write
    for event in events:
        delivery = deliveries[event.delivery_id]
        write(
            f"{event.occurred_at.isoformat()}\t{event.kind}\t{event.machine}\t"
            f"{delivery.account_id}\t{delivery.broadcast_id}\t{event.delivery_id}\t"
            f"{delivery.subscriber_id}\t{event.link_id or _NULL}\n"
        )
    buffer.seek(0)
    cursor.cursor.copy_expert(
        "COPY tracking_event (occurred_at, kind, machine, account_id, broadcast_id, "
        "delivery_id, subscriber_id, link_id) FROM STDIN",
        buffer,
    )


def _hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _rollups_from_events(
    events: list[TrackedEvent], deliveries: dict[int, _Delivery]
) -> dict[tuple[int, int, dt.datetime], list[int]]:
    """The raw (not unique) counts: every open and every click, and by a person."""
    rollups: dict[tuple[int, int, dt.datetime], list[int]] = defaultdict(
        lambda: [0] * len(ROLLUP_COLUMNS)
    )
    for event in events:
        if event.kind not in (EventKind.OPEN, EventKind.CLICK):
            continue
        broadcast_id = deliveries[event.delivery_id].broadcast_id
        hour = _hour(event.occurred_at)
        name = "opens" if event.kind == EventKind.OPEN else "clicks"
        keys = [(broadcast_id, 0, hour)]
        if event.kind == EventKind.CLICK and event.link_id:
            keys.append((broadcast_id, event.link_id, hour))
        for key in keys:
            counters = rollups[key]
            counters[_COLUMN[name]] += 1
            if event.machine == Machine.HUMAN:
                counters[_COLUMN["human_" + name]] += 1
    return rollups


def _activity_upsert(
    cursor,
    events: list[TrackedEvent],
    deliveries: dict[int, _Delivery],
    rollups: dict[tuple[int, int, dt.datetime], list[int]],
) -> None:
    firsts: dict[tuple[int, int, int], list] = {}
    for event in events:
        human_at = event.occurred_at if event.machine == Machine.HUMAN else None
        link_ids = [0]
        if event.kind == EventKind.CLICK and event.link_id:
            link_ids.append(event.link_id)
        for link_id in link_ids:
            key = (event.delivery_id, event.kind, link_id)
            first = firsts.get(key)
            if first is None:
                firsts[key] = [event.occurred_at, human_at]
                continue
            if event.occurred_at < first[0]:
                first[0] = event.occurred_at
            if human_at is not None and (first[1] is None or human_at < first[1]):
                first[1] = human_at
    rows = io.StringIO()
    for key in sorted(firsts):
        delivery = deliveries[key[0]]
        first_at, first_human_at = firsts[key]
        rows.write(
            f"{key[0]}\t{key[1]}\t{key[2]}\t{delivery.account_id}\t{delivery.broadcast_id}\t"
            f"{delivery.subscriber_id}\t{first_at.isoformat()}\t"
            f"{first_human_at.isoformat() if first_human_at else _NULL}\n"
        )
    rows.seek(0)
    # A temporary table emptied at COMMIT, made once per connection: COPY fills it far faster
    # than a statement carrying thousands of values would be parsed and planned.
    # Emptied here too: several stores may share one transaction (webhooks, tests).
    cursor.execute(
        """
        CREATE TEMPORARY TABLE IF NOT EXISTS tracking_activity_batch (
            delivery_id bigint, kind smallint, link_id bigint, account_id bigint,
            broadcast_id bigint, subscriber_id bigint, first_at timestamptz,
            first_human_at timestamptz
        ) ON COMMIT DELETE ROWS;
        DELETE FROM tracking_activity_batch;
        """
    )
    cursor.cursor.copy_expert(
        "COPY tracking_activity_batch (delivery_id, kind, link_id, account_id, broadcast_id, "
        "subscriber_id, first_at, first_human_at) FROM STDIN",
        rows,
    )
    cursor.execute(
        """
        INSERT INTO tracking_deliveryactivity AS a
            (delivery_id, kind, link_id, account_id, broadcast_id, subscriber_id,
             first_at, first_human_at)
        SELECT delivery_id, kind, link_id, account_id, broadcast_id, subscriber_id,
               first_at, first_human_at
        FROM tracking_activity_batch ORDER BY 1, 2, 3
        ON CONFLICT (delivery_id, kind, link_id) DO UPDATE
            SET first_human_at = EXCLUDED.first_human_at
            WHERE a.first_human_at IS NULL AND EXCLUDED.first_human_at IS NOT NULL
        RETURNING a.kind, a.link_id, a.broadcast_id, (a.xmax = 0), a.first_at, a.first_human_at
        """
    )
    for kind, link_id, broadcast_id, inserted, first_at, first_human_at in cursor.fetchall():
        if inserted:
            rollups[(broadcast_id, link_id, _hour(first_at))][_COLUMN[_UNIQUE_COLUMN[kind]]] += 1
        human_column = _HUMAN_UNIQUE_COLUMN.get(kind)
        if human_column and first_human_at is not None:
            rollups[(broadcast_id, link_id, _hour(first_human_at))][_COLUMN[human_column]] += 1


def _rollups_add(cursor, rollups: dict[tuple[int, int, dt.datetime], list[int]]) -> None:
    if not rollups:
        return
    keys = sorted(rollups)
    arrays = [
        _int_array(key[0] for key in keys),
        _int_array(key[1] for key in keys),
        "{" + ",".join(f'"{key[2].isoformat()}"' for key in keys) + "}",
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
        SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], {casts})
        ORDER BY 1, 2, 3
        ON CONFLICT (broadcast_id, link_id, hour) DO UPDATE SET {updates}
        """,
        arrays,
    )
