"""The sequence scheduler: finds due subscriptions through their index, decides what each one
gets, and hands the emails to the broadcast pipeline as Delivery rows. Safe to run twice, and
any number of times at once.

One advance of a sequence (subscriptions_advance), in one transaction:

1. Claims up to SEQUENCE_CLAIM_BATCH subscriptions of the sequence whose next_due_at has come
   (index subscription_due), soonest first, FOR UPDATE SKIP LOCKED: two schedulers take
   disjoint rows, and a row is never read by one while another is moving it.
2. Reads, in the same statement, each subscriber's state and time zone; and, in one more query,
   which of them are excluded now (tags, segments, other sequences).
3. Decides each row in Python (_decide): the next live email after their position; if it is not
   due yet, the row's next_due_at moves to the exact time (nothing sent); if they are excluded,
   they pass it (skipped) and go on; else a Delivery (message, subscriber, round) is added and
   their position moves past it. Unconfirmed subscribers wait for their confirmation,
   suppressed ones stop, and whoever has no email left completes.
4. Inserts the deliveries (ON CONFLICT DO NOTHING on the unique (message, subscriber, round):
   a replay adds nothing), moves the subscriptions, adds to each message's recipient count and
   records a sequence_completed event (the automations outbox) for each one who completed.

After the commit it publishes one send task per id range of new deliveries; if that publish
is lost (a crash, a Redis flush), the broadcast sweeper finds the queued deliveries of a
"sending" message without progress and publishes them again. Sending is then the pipeline's:
claimed, marked sending only while the subscriber is still mailable, never twice.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from automations.models import EventKind
from automations.outbox import events_add
from broadcasts.pipeline import deliveries_publish, deliveries_queue
from sequences.models import Sequence, SequenceEmail, Subscription
from sequences.schedule import Timing, due_at, zone_named
from subscribers.models import Subscriber
from subscribers.segments.filters import segments_condition

logger = logging.getLogger(__name__)

SubState = Subscription.State
# A scheduler run stops taking new batches after this long (the next beat tick goes on).
ADVANCE_TIME_BUDGET = 25.0


@dataclass(frozen=True)
class _Email:
    message_id: int
    sort_key: float
    delay_amount: int
    delay_unit: str
    send_days: frozenset[int] | None


@dataclass
class _Plan:
    """One sequence's configuration, read once per batch."""

    sequence: Sequence
    emails: list[_Email]
    keys: list[float]

    @classmethod
    def load(cls, sequence: Sequence) -> _Plan:
        emails = [
            _Email(
                message_id=row[0],
                sort_key=row[1],
                delay_amount=row[2],
                delay_unit=row[3],
                send_days=frozenset(row[4]) if row[4] else None,
            )
            for row in SequenceEmail.objects.filter(
                sequence=sequence, published=True, deleted_at__isnull=True
            )
            .order_by("sort_key")
            .values_list("message_id", "sort_key", "delay_amount", "delay_unit", "send_days")
        ]
        return cls(sequence=sequence, emails=emails, keys=[email.sort_key for email in emails])

    def next_email(self, position_key: float | None) -> _Email | None:
        index = 0 if position_key is None else bisect.bisect_right(self.keys, position_key)
        return self.emails[index] if index < len(self.emails) else None

    def timing(self, email: _Email, zone_name: str) -> Timing:
        sequence = self.sequence
        zone = (zone_named(zone_name) if sequence.subscriber_time_zone else None) or zone_named(
            sequence.time_zone
        )
        return Timing(
            delay_amount=email.delay_amount,
            delay_unit=email.delay_unit,
            send_days=email.send_days or frozenset(sequence.send_days),
            send_hour=sequence.send_hour,
            zone=zone or zone_named("UTC"),
        )


@dataclass
class _Row:
    """A claimed subscription, and what _decide makes of it."""

    id: int
    subscriber_id: int
    state: int
    round: int
    position_key: float | None
    sent_count: int
    anchor_at: datetime
    subscriber_state: str | None
    zone_name: str
    next_due_at: datetime | None = None
    completed: bool = False
    send: int | None = None  # the message id of the email it gets now
    skipped: int = 0


@dataclass
class AdvanceReport:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    completed: int = 0
    batches: int = 0

    def add(self, other: AdvanceReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _decide(row: _Row, *, plan: _Plan, excluded: bool, now: datetime) -> None:
    """What one claimed subscription gets now (see the module docstring, step 3)."""
    if row.subscriber_state is None:
        row.state, row.next_due_at = SubState.REMOVED, None
        return
    if row.subscriber_state == Subscriber.State.UNCONFIRMED:
        row.state, row.next_due_at = SubState.UNCONFIRMED, None
        return
    if row.subscriber_state != Subscriber.State.ACTIVE:
        row.state, row.next_due_at = SubState.STOPPED, None
        return
    row.state = SubState.ACTIVE
    while True:
        email = plan.next_email(row.position_key)
        if email is None and (not plan.emails or plan.sequence.hold):
            # Nothing published yet, or an evergreen sequence: they wait (not completed), and
            # the next email published reaches them (subscriptions_due_lower makes them due).
            row.next_due_at = None
            return
        if email is None:
            row.state, row.next_due_at, row.completed = SubState.COMPLETED, None, True
            return
        due = due_at(anchor=row.anchor_at, timing=plan.timing(email, row.zone_name))
        if due > now or row.send is not None:
            # Not yet; or they were just sent one: the next waits for the next pass (due may
            # be now), so nobody gets two emails in one claim.
            row.next_due_at = due
            return
        row.position_key = email.sort_key
        if excluded:
            # Excluded subscribers move past what falls due while they are excluded.
            row.skipped += 1
            row.anchor_at = due
            continue
        row.send = email.message_id
        row.sent_count += 1
        row.anchor_at = now


def _claim_rows(*, sequence_id: int, now: datetime, limit: int) -> list[_Row]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT sub.id, sub.subscriber_id, sub.state, sub.round, sub.position_key,
                   sub.sent_count, sub.anchor_at, s.state,
                   coalesce(nullif(s.time_zone, ''), s.fields ->> 'time_zone', '')
            FROM {Subscription._meta.db_table} sub
            LEFT JOIN {Subscriber._meta.db_table} s ON s.id = sub.subscriber_id
            WHERE sub.sequence_id = %s AND sub.next_due_at <= %s
            ORDER BY sub.next_due_at
            LIMIT %s
            FOR UPDATE OF sub SKIP LOCKED
            """,
            [sequence_id, now, limit],
        )
        return [_Row(*row) for row in cursor.fetchall()]


def exclusion_condition(
    *,
    sequence: Sequence,
    subscriber_id: str = "s.id",
    row_alias: str = "s",
    correlated: bool = True,
) -> tuple[str, dict]:
    """The sequence's exclusions as an SQL boolean, TRUE while they hold a subscriber back (a
    tag, another sequence of this account they are still in, a segment), and its parameters
    (names starting with "x_"); "FALSE" without exclusions. `subscriber_id` is the SQL of the
    subscriber's id; segments read the subscribers_subscriber row aliased `row_alias`.

    What the scheduler asks of each claimed batch (correlated: each condition probed per row
    through its index) and the sequence page counts over all the active subscribers
    (`correlated=False`: each tag and sequence condition read once, as a hashed set)."""
    account_id = sequence.account_id
    tags = list(sequence.exclude_tag_ids)
    sequences = [pk for pk in sequence.exclude_sequence_ids if pk != sequence.pk]
    params: dict = {"x_account_id": account_id}
    # (the id column, FROM ... WHERE ...) of each set of excluded subscribers.
    sets = []
    if tags:
        params["x_tags"] = tags
        sets.append(
            (
                "t.subscriber_id",
                """subscribers_tagging t JOIN subscribers_tag g
                   ON g.id = t.tag_id AND g.account_id = %(x_account_id)s
                   WHERE t.tag_id = ANY(%(x_tags)s)""",
            )
        )
    if sequences:
        params["x_sequences"] = sequences
        params["x_in_sequence"] = [int(SubState.ACTIVE), int(SubState.UNCONFIRMED)]
        sets.append(
            (
                "o.subscriber_id",
                f"""{Subscription._meta.db_table} o JOIN {Sequence._meta.db_table} q
                    ON q.id = o.sequence_id AND q.account_id = %(x_account_id)s
                    WHERE o.sequence_id = ANY(%(x_sequences)s)
                      AND o.state = ANY(%(x_in_sequence)s)""",
            )
        )
    alternatives = [
        f"EXISTS (SELECT 1 FROM {source} AND {column} = {subscriber_id})"
        if correlated
        else f"{subscriber_id} IN (SELECT {column} FROM {source})"
        for column, source in sets
    ]
    if sequence.exclude_segment_ids:
        segments_sql, segments_params = segments_condition(
            account_id=account_id,
            segment_ids=list(sequence.exclude_segment_ids),
            alias=row_alias,
            prefix="x_seg",
        )
        params.update(segments_params)
        alternatives.append(segments_sql)
    if not alternatives:
        return "FALSE", {}
    return "(" + " OR ".join(alternatives) + ")", params


def _excluded_ids(*, sequence: Sequence, subscriber_ids: list[int]) -> set[int]:
    """Which of these subscribers the sequence's exclusions hold back now: one query."""
    if not sequence.has_exclusions or not subscriber_ids:
        return set()
    condition, params = exclusion_condition(sequence=sequence)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.id FROM {Subscriber._meta.db_table} s
            WHERE s.id = ANY(%(x_ids)s) AND {condition}
            """,
            {**params, "x_ids": subscriber_ids},
        )
        return {row[0] for row in cursor.fetchall()}


def _write(*, sequence: Sequence, rows: list[_Row], now: datetime) -> list[tuple[int, int]]:
    """Step 4: the deliveries, the subscriptions and the messages' counts, and a
    sequence_completed event for each subscriber who completed; returns the new deliveries as
    (id, message id)."""
    created = deliveries_queue(
        account_id=sequence.account_id,
        sends=[(row.send, row.subscriber_id, row.round) for row in rows if row.send is not None],
        now=now,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Subscription._meta.db_table} sub SET
                state = v.state, position_key = v.position_key, sent_count = v.sent_count,
                anchor_at = v.anchor_at, next_due_at = v.next_due_at,
                completed_at = CASE WHEN v.completed THEN %s ELSE sub.completed_at END
            FROM unnest(%s::bigint[], %s::smallint[], %s::float8[], %s::smallint[],
                        %s::timestamptz[], %s::timestamptz[], %s::boolean[])
                 AS v(id, state, position_key, sent_count, anchor_at, next_due_at, completed)
            WHERE sub.id = v.id
            """,
            [
                now,
                [row.id for row in rows],
                [int(row.state) for row in rows],
                [row.position_key for row in rows],
                [row.sent_count for row in rows],
                [row.anchor_at for row in rows],
                [row.next_due_at for row in rows],
                [row.completed for row in rows],
            ],
        )
    events_add(
        account_id=sequence.account_id,
        kind=EventKind.SEQUENCE_COMPLETED,
        subscriber_ids=[row.subscriber_id for row in rows if row.completed],
        object_id=sequence.pk,
    )
    return created


def subscriptions_advance(
    *, sequence: Sequence, now: datetime, limit: int | None = None
) -> AdvanceReport:
    """One batch of a sequence's due subscriptions (see the module docstring)."""
    limit = limit or settings.SEQUENCE_CLAIM_BATCH
    report = AdvanceReport()
    with transaction.atomic():
        rows = _claim_rows(sequence_id=sequence.pk, now=now, limit=limit)
        if not rows:
            return report
        plan = _Plan.load(sequence)
        excluded = _excluded_ids(
            sequence=sequence,
            subscriber_ids=[row.subscriber_id for row in rows if row.subscriber_state],
        )
        for row in rows:
            _decide(row, plan=plan, excluded=row.subscriber_id in excluded, now=now)
            report.sent += row.send is not None
            report.skipped += row.skipped
            report.completed += row.completed
        created = _write(sequence=sequence, rows=rows, now=now)
    report.claimed = len(rows)
    report.batches = deliveries_publish(created)
    return report


def sequences_due(*, now: datetime) -> list[Sequence]:
    """The running sequences with a subscription due: one index probe each."""
    return list(
        Sequence.objects.raw(
            f"""
            SELECT q.* FROM {Sequence._meta.db_table} q
            WHERE q.state = %s AND cardinality(q.send_days) > 0 AND EXISTS (
                SELECT 1 FROM {Subscription._meta.db_table} sub
                WHERE sub.sequence_id = q.id AND sub.next_due_at <= %s)
            ORDER BY q.id
            """,
            [Sequence.State.ACTIVE, now],
        )
    )


def sequences_advance(*, now: datetime | None = None, budget: float | None = None) -> AdvanceReport:
    """Advances every running sequence's due subscriptions, batch by batch, round-robin, until
    none is due or the time budget is spent. `now` is the clock (tests move it)."""
    clock = now is None
    budget = ADVANCE_TIME_BUDGET if budget is None else budget
    started = time.monotonic()
    total = AdvanceReport()
    while time.monotonic() - started < budget:
        current = timezone.now() if clock else now
        due = sequences_due(now=current)
        if not due:
            break
        progressed = False
        for sequence in due:
            report = subscriptions_advance(sequence=sequence, now=current)
            total.add(report)
            progressed = progressed or report.claimed > 0
            if time.monotonic() - started >= budget:
                break
        if not progressed:
            # Everything due is locked by another scheduler right now.
            break
    if total.claimed:
        logger.info("Sequences advanced: %s", total)
    return total
