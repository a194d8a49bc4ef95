"""The send pipeline: fan-out, send batches, the sweeper. PostgreSQL is the truth; Redis carries
work and what the sweeper needs after a crash (broadcasts/journal.py). Everything here is safe to
run twice.

Fan-out snapshots the audience into Delivery rows with one INSERT ... SELECT ... ON CONFLICT DO
NOTHING, then publishes one send task per id range of BROADCAST_BATCH_SIZE queued deliveries.
A send task keeps a heartbeat for a new claim, claims its range (conditional UPDATE) and sends it
in calls of the transport's size (call_send): each renders its messages, begins its send journal,
marks its deliveries sending in one statement that also skips (and counts) the subscribers no
longer mailable and checks pause/cancel, makes the transport call (which journals each start),
and records the outcomes in one statement with the broadcast's counters, through a database
outage if need be. The sweeper settles the claims whose heartbeat stopped from their journals
(never sending anything twice), and republishes the batches of a broadcast whose tasks were lost
(a Redis flush or restart).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from redis.exceptions import RedisError

from broadcasts import tasks
from broadcasts.audience import audience_sql
from broadcasts.journal import (
    ClaimHeartbeat,
    JournalRead,
    SendJournal,
    claims_beating,
    journal_settle,
    redis_data_lost,
)
from broadcasts.models import Broadcast, Delivery
from broadcasts.rendering import BroadcastRenderer, RenderFailed
from broadcasts.transport import Outcome, Transport, open_transport
from broadcasts.transport import OutcomeStatus as O
from convertkit.redis import redis_client
from subscribers.models import Subscriber

logger = logging.getLogger(__name__)

S = Delivery.State
T = TypeVar("T")
# Deliveries not yet finished, as an SQL list.
_OPEN_STATES_SQL = ", ".join(str(int(state)) for state in Delivery.OPEN_STATES)
# A task stops claiming more work after this long and queues the rest of its range again, so
# that other broadcasts' send tasks, and the sweeper, never wait long for a worker process.
TASK_TIME_BUDGET = 30.0
# A rate-limit wait longer than this releases the claim and retries later instead of sleeping.
MAX_RATE_SLEEP = 5.0
# When Redis cannot be reached, a send task sends nothing (it could keep no journal) and tries
# its range again after this long.
NO_REDIS_WAIT = 5.0
UNKNOWN_ERROR = (
    "The worker stopped during the send call: it may or may not have been delivered, "
    "so it is not sent again."
)


def fan_out(*, broadcast_id: int) -> int:
    """Snapshots the audience (once) and publishes send tasks for every queued delivery;
    returns how many batches were published. Running it again adds nobody twice."""
    broadcast = Broadcast.objects.filter(pk=broadcast_id).first()
    if broadcast is None or broadcast.state != Broadcast.State.SENDING:
        return 0
    if broadcast.fanned_out_at is None and broadcast.kind == Broadcast.Kind.BROADCAST:
        audience, params = audience_sql(broadcast)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT fanned_out_at FROM broadcasts_broadcast WHERE id = %s FOR UPDATE",
                [broadcast_id],
            )
            if cursor.fetchone()[0] is None:
                cursor.execute(
                    f"""
                    INSERT INTO broadcasts_delivery
                        (broadcast_id, account_id, subscriber_id, state, attempts,
                         esp_message_id, error)
                    SELECT %(broadcast_id)s, %(account_id)s, audience.id, {int(S.QUEUED)}, 0,
                           '', ''
                    FROM ({audience}) AS audience
                    ORDER BY audience.id
                    ON CONFLICT (broadcast_id, subscriber_id, round) DO NOTHING
                    """,
                    {**params, "broadcast_id": broadcast_id},
                )
                cursor.execute(
                    """
                    UPDATE broadcasts_broadcast SET fanned_out_at = now(), progressed_at = now(),
                        recipient_count = (SELECT count(*) FROM broadcasts_delivery
                                           WHERE broadcast_id = %(id)s)
                    WHERE id = %(id)s
                    """,
                    {"id": broadcast_id},
                )
        logger.info("Broadcast %s fanned out", broadcast_id)
    published = batches_publish(broadcast_id=broadcast_id)
    broadcast_finish_if_done(broadcast_id=broadcast_id)
    return published


def queued_ranges(*, broadcast_id: int, size: int) -> list[tuple[int, int]]:
    """(first id, last id) of consecutive runs of `size` queued deliveries."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT min(id), max(id) FROM (
                SELECT id, (row_number() OVER (ORDER BY id) - 1) / %s AS batch
                FROM broadcasts_delivery WHERE broadcast_id = %s AND state = {int(S.QUEUED)}
            ) numbered GROUP BY batch ORDER BY 1
            """,
            [size, broadcast_id],
        )
        return cursor.fetchall()


def ranges_publish(*, broadcast_id: int, ranges: list[tuple[int, int]]) -> int:
    """One send task per (first id, last id) range of the broadcast's deliveries, published
    over one broker connection; returns how many."""
    with tasks.send_batch.app.producer_or_acquire() as producer:
        for first_id, last_id in ranges:
            tasks.send_batch.apply_async((broadcast_id, first_id, last_id), producer=producer)
    return len(ranges)


def deliveries_queue(
    *, account_id: int, sends: list[tuple[int, int, int]], now: datetime
) -> list[tuple[int, int]]:
    """Queues one Delivery per (message id, subscriber id, round) of `sends` (a sequence's or an
    automation's emails, one by one), ON CONFLICT DO NOTHING on the unique key so a replay adds
    nothing, and adds to each message's recipient count; returns the new deliveries as
    (id, message id)."""
    if not sends:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Delivery._meta.db_table}
                (broadcast_id, account_id, subscriber_id, round, state, attempts,
                 esp_message_id, error)
            SELECT v.message_id, %s, v.subscriber_id, v.round, {int(Delivery.State.QUEUED)},
                   0, '', ''
            FROM unnest(%s::bigint[], %s::bigint[], %s::smallint[])
                 AS v(message_id, subscriber_id, round)
            ORDER BY v.message_id, v.subscriber_id
            ON CONFLICT (broadcast_id, subscriber_id, round) DO NOTHING
            RETURNING id, broadcast_id
            """,
            [
                account_id,
                [message_id for message_id, _, _ in sends],
                [subscriber_id for _, subscriber_id, _ in sends],
                [round_ for _, _, round_ in sends],
            ],
        )
        created = cursor.fetchall()
        counts: dict[int, int] = defaultdict(int)
        for _, message_id in created:
            counts[message_id] += 1
        if counts:
            cursor.execute(
                f"""
                UPDATE {Broadcast._meta.db_table} b
                SET recipient_count = b.recipient_count + v.n, progressed_at = %s
                FROM unnest(%s::bigint[], %s::int[]) AS v(id, n) WHERE b.id = v.id
                """,
                [now, list(counts), list(counts.values())],
            )
    return created


def deliveries_publish(created: list[tuple[int, int]]) -> int:
    """One send task per id range of BROADCAST_BATCH_SIZE new deliveries of a message (after
    deliveries_queue's commit)."""
    by_message: dict[int, list[int]] = defaultdict(list)
    for delivery_id, message_id in created:
        by_message[message_id].append(delivery_id)
    size = settings.BROADCAST_BATCH_SIZE
    published = 0
    for message_id, ids in by_message.items():
        ids.sort()
        chunks = [ids[start : start + size] for start in range(0, len(ids), size)]
        published += ranges_publish(
            broadcast_id=message_id, ranges=[(chunk[0], chunk[-1]) for chunk in chunks]
        )
    return published


def batches_publish(*, broadcast_id: int) -> int:
    """One send task per range of queued deliveries."""
    ranges = queued_ranges(broadcast_id=broadcast_id, size=settings.BROADCAST_BATCH_SIZE)
    ranges_publish(broadcast_id=broadcast_id, ranges=ranges)
    Broadcast.objects.filter(pk=broadcast_id).update(progressed_at=timezone.now())
    return len(ranges)


def broadcast_finish_if_done(*, broadcast_id: int) -> bool:
    """Marks a sending broadcast sent once no delivery is queued, claimed or sending (never a
    sequence email's message: the scheduler adds deliveries to it for as long as it is live)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE broadcasts_broadcast SET state = %s, sent_at = now(), updated_at = now()
            WHERE id = %s AND state = %s AND fanned_out_at IS NOT NULL
              AND kind = '{Broadcast.Kind.BROADCAST}' AND NOT EXISTS (
                SELECT 1 FROM broadcasts_delivery WHERE broadcast_id = %s
                AND state IN ({_OPEN_STATES_SQL}))
            """,
            [Broadcast.State.SENT, broadcast_id, Broadcast.State.SENDING, broadcast_id],
        )
        return cursor.rowcount == 1


_STATUS_STATE = {
    O.SENT: S.SENT,
    O.FAILED: S.FAILED,
    O.UNKNOWN: S.UNKNOWN,
    O.SKIPPED: S.SKIPPED,
    O.CANCELLED: S.CANCELLED,
}
# The CASE arms of outcomes_record's final states, written once rather than per send call.
_STATE_CASE = " ".join(
    f"WHEN '{status}' THEN {int(state)}" for status, state in _STATUS_STATE.items()
)


def _database_retry(statement: Callable[[], T]) -> T:
    """Runs `statement` (idempotent) until it gets through, for up to BROADCAST_OUTCOME_RETRY
    seconds: after a dropped connection (a killed backend, a restart, a failover) Django's
    connection is closed, so that the next try opens a new one, and tries back off from
    immediately to every five seconds. Inside a transaction nothing can be retried."""
    deadline = time.monotonic() + settings.BROADCAST_OUTCOME_RETRY
    pause = 0.0
    while True:
        try:
            return statement()
        except (OperationalError, InterfaceError) as error:
            if connection.in_atomic_block or time.monotonic() + pause > deadline:
                raise
            logger.warning("Database unavailable, trying again in %.1f s: %s", pause, error)
            connection.close()
            time.sleep(pause)
            pause = min(5.0, max(0.5, 2 * pause))


def outcomes_record(
    *, broadcast_id: int, claim: int, outcomes: list[Outcome], defer: float = 0.0
) -> None:
    """Writes outcomes and adds them to the broadcast's counters, in one statement, retried
    through a database outage (_database_retry): running it twice changes nothing more.

    Only rows still held by `claim` move. RETRY goes back to queued with a backoff (or to
    failed after BROADCAST_MAX_ATTEMPTS); RELEASED goes back to queued, not to be sent for
    `defer` seconds (a rate limit's wait), so the sweeper sees it waiting, not stalled. SENT
    clears an earlier attempt's error.
    """
    if not outcomes:
        return
    rows = ", ".join(["(%s::bigint, %s, %s, %s)"] * len(outcomes))
    params: list = []
    for outcome in outcomes:
        params += [
            outcome.delivery_id,
            str(outcome.status),
            outcome.esp_message_id[:255],
            outcome.error[:500],
        ]
    max_attempts = settings.BROADCAST_MAX_ATTEMPTS
    sql = f"""
        WITH v(id, status, esp_message_id, error) AS (VALUES {rows}),
        moved AS (
            UPDATE broadcasts_delivery d SET
                state = CASE
                    WHEN v.status = '{O.RETRY}' AND d.attempts + 1 >= {max_attempts}
                        THEN {int(S.FAILED)}
                    WHEN v.status IN ('{O.RETRY}', '{O.RELEASED}') THEN {int(S.QUEUED)}
                    ELSE (CASE v.status {_STATE_CASE} END) END,
                attempts = d.attempts + (v.status NOT IN ('{O.SKIPPED}', '{O.RELEASED}',
                                                          '{O.CANCELLED}'))::int,
                claim = CASE WHEN v.status IN ('{O.RETRY}', '{O.RELEASED}') THEN NULL
                             ELSE d.claim END,
                not_before = CASE WHEN v.status = '{O.RETRY}' THEN now() + make_interval(
                                 secs => least(300, 5 * power(2, d.attempts)))
                             WHEN v.status = '{O.RELEASED}' AND %s > 0
                                 THEN now() + make_interval(secs => %s)
                             ELSE d.not_before END,
                sent_at = CASE WHEN v.status = '{O.SENT}' THEN now() ELSE d.sent_at END,
                esp_message_id = CASE WHEN v.status = '{O.SENT}' THEN v.esp_message_id
                                      ELSE d.esp_message_id END,
                error = CASE WHEN v.status IN ('{O.FAILED}', '{O.UNKNOWN}', '{O.RETRY}')
                                 THEN v.error
                             WHEN v.status = '{O.SENT}' THEN ''
                             ELSE d.error END
            FROM v
            WHERE d.id = v.id AND d.claim = %s AND d.state IN ({int(S.CLAIMED)},
                                                               {int(S.SENDING)})
            RETURNING d.state
        )
        UPDATE broadcasts_broadcast SET
            sent_count = sent_count + (SELECT count(*) FROM moved WHERE state = {int(S.SENT)}),
            failed_count = failed_count
                + (SELECT count(*) FROM moved WHERE state = {int(S.FAILED)}),
            unknown_count = unknown_count
                + (SELECT count(*) FROM moved WHERE state = {int(S.UNKNOWN)}),
            skipped_count = skipped_count
                + (SELECT count(*) FROM moved WHERE state = {int(S.SKIPPED)}),
            cancelled_count = cancelled_count
                + (SELECT count(*) FROM moved WHERE state = {int(S.CANCELLED)}),
            progressed_at = now()
        WHERE id = %s
        """

    def write() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, defer, defer, claim, broadcast_id])

    _database_retry(write)


def _claim(*, broadcast_id: int, first_id: int, last_id: int, claim: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE broadcasts_delivery SET state = {int(S.CLAIMED)}, claim = %s,
                claimed_at = now()
            WHERE broadcast_id = %s AND id BETWEEN %s AND %s AND state = {int(S.QUEUED)}
              AND (not_before IS NULL OR not_before <= now())
            RETURNING id, subscriber_id
            """,
            [claim, broadcast_id, first_id, last_id],
        )
        return sorted(cursor.fetchall())


def _claim_release(*, broadcast_id: int, claim: int) -> int:
    """Hands the claim's deliveries that are in no send call back to the queue (claimed ->
    queued): always safe, since only their claim could have sent them. Returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE broadcasts_delivery SET state = {int(S.QUEUED)}, claim = NULL
            WHERE broadcast_id = %s AND state = {int(S.CLAIMED)} AND claim = %s
            """,
            [broadcast_id, claim],
        )
        return cursor.rowcount


def _mark_sending(*, broadcast_id: int, claim: int, ids: list[int]) -> tuple[bool, set[int]]:
    """Claimed -> sending for the deliveries of one send call, in one statement (one round
    trip), if the broadcast is still sending; returns whether it was and the ids marked.

    Whether each subscriber is still mailable is read in the same statement, so that the
    message of one who unsubscribed, bounced, complained or was erased since the fan-out is not
    sent unless that happened during the transport call itself: those are skipped instead, and
    added to the broadcast's skipped_count at once.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH live AS (
                SELECT 1 FROM broadcasts_broadcast WHERE id = %(broadcast)s AND state = %(sending)s
            ), marked AS (
                UPDATE broadcasts_delivery d SET claimed_at = now(),
                    state = CASE WHEN EXISTS (
                        SELECT 1 FROM {Subscriber._meta.db_table} s
                        WHERE s.id = d.subscriber_id AND s.state = %(active)s
                    ) THEN {int(S.SENDING)} ELSE {int(S.SKIPPED)} END
                WHERE d.id = ANY(%(ids)s) AND d.claim = %(claim)s AND d.state = {int(S.CLAIMED)}
                  AND EXISTS (SELECT 1 FROM live)
                RETURNING d.id, d.state
            ), counted AS (
                UPDATE broadcasts_broadcast b SET skipped_count = b.skipped_count + skipped.n
                FROM (SELECT count(*) AS n FROM marked WHERE state = {int(S.SKIPPED)}) skipped
                WHERE b.id = %(broadcast)s AND skipped.n > 0
            )
            SELECT EXISTS (SELECT 1 FROM live),
                   ARRAY(SELECT id FROM marked WHERE state = {int(S.SENDING)})
            """,
            {
                "broadcast": broadcast_id,
                "sending": Broadcast.State.SENDING,
                "active": Subscriber.State.ACTIVE,
                "ids": ids,
                "claim": claim,
            },
        )
        live, held = cursor.fetchone()
        return live, set(held)


def rate_wait(*, account_id: int, count: int) -> float:
    """Takes `count` sends from the account's per-second and per-hour allowances
    (BROADCAST_RATE_PER_SECOND / _PER_HOUR, 0 = no limit); returns 0.0, or how many seconds to
    wait before trying again (nothing taken). Without Redis, no limit is enforced."""
    limits = [
        (window, limit)
        for window, limit in (
            (1, settings.BROADCAST_RATE_PER_SECOND),
            (3600, settings.BROADCAST_RATE_PER_HOUR),
        )
        if limit
    ]
    if not limits:
        return 0.0
    now = time.time()
    keys = [f"ck:send-rate:{account_id}:{window}:{int(now // window)}" for window, _ in limits]
    try:
        client = redis_client()
        pipe = client.pipeline(transaction=False)
        for key, (window, _limit) in zip(keys, limits, strict=True):
            pipe.incrby(key, count)
            pipe.expire(key, window + 1)
        totals = pipe.execute()[::2]
        over = [
            window - now % window
            for total, (window, limit) in zip(totals, limits, strict=True)
            if total > limit
        ]
        if over:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.decrby(key, count)
            pipe.execute()
            return max(over)
    except RedisError as error:
        logger.warning("Send rate limit not enforced, Redis unavailable: %s", error)
    return 0.0


def _call_size(transport) -> int:
    """The transport's call size, but never more than a rate limit lets through at once."""
    limits = [settings.BROADCAST_RATE_PER_SECOND, settings.BROADCAST_RATE_PER_HOUR]
    return max(1, min([transport.max_call_size, *[limit for limit in limits if limit]]))


def failure_pause_check(*, broadcast_id: int) -> None:
    """Pauses the broadcast, saying why, once too many of its messages have failed."""
    from broadcasts.services import broadcast_pause

    broadcast = Broadcast.objects.filter(pk=broadcast_id).first()
    if broadcast is None or broadcast.state != Broadcast.State.SENDING:
        return
    if broadcast.kind != Broadcast.Kind.BROADCAST:
        # A sequence email's failures are its report's; pausing one email would hold its
        # subscribers' deliveries while the sequence went on.
        return
    done = broadcast.sent_count + broadcast.failed_count + broadcast.unknown_count
    if done < settings.BROADCAST_PAUSE_MIN_SENDS:
        return
    if broadcast.failed_count / done > settings.BROADCAST_PAUSE_FAILURE_RATE:
        last_error = (
            Delivery.objects.filter(broadcast_id=broadcast_id, state=S.FAILED)
            .order_by("-id")
            .values_list("error", flat=True)
            .first()
        )
        broadcast_pause(
            broadcast=broadcast,
            reason=(
                f"Paused automatically: {broadcast.failed_count:,} of {done:,} messages failed"
                f" (last error: {last_error or 'unknown'}). Check the mail settings, then resume."
            ),
        )
        logger.warning("Broadcast %s paused: too many failures", broadcast_id)


def send_batch(*, broadcast_id: int, first_id: int, last_id: int) -> float | None:
    """Sends the queued deliveries of one id range under a new claim (see the module docstring);
    returns the seconds after which the range should be tried again (retries backing off, a rate
    limit, the time budget spent, Redis out of reach), or None when nothing of it is left for
    this task.

    A task that fails (a database outage) first hands back what it had claimed but not yet put
    in a send call, if the database lets it; the rest is the sweeper's once the heartbeat stops.
    """
    broadcast = Broadcast.objects.select_related("account").filter(pk=broadcast_id).first()
    if broadcast is None or broadcast.state != Broadcast.State.SENDING:
        return None
    claim = secrets.randbits(62)
    with ClaimHeartbeat(claim) as beating:
        if not beating:
            return NO_REDIS_WAIT
        try:
            again = _claimed_send(
                broadcast=broadcast, claim=claim, first_id=first_id, last_id=last_id
            )
        except Exception as error:
            if isinstance(error, DatabaseError):
                connection.close()  # a dropped connection: the release opens a new one
            try:
                _claim_release(broadcast_id=broadcast_id, claim=claim)
            except DatabaseError:
                logger.warning("Claim %s of broadcast %s left to the sweeper", claim, broadcast_id)
            raise
    if broadcast_finish_if_done(broadcast_id=broadcast_id):
        return None
    if again is not None:
        return again
    return _retry_after(broadcast_id=broadcast_id, first_id=first_id, last_id=last_id)


def _claimed_send(*, broadcast: Broadcast, claim: int, first_id: int, last_id: int) -> float | None:
    """send_batch's work under its heartbeat: claims the range and sends it call by call;
    returns the seconds after which to try again when it stopped early, else None."""
    claimed = _claim(broadcast_id=broadcast.pk, first_id=first_id, last_id=last_id, claim=claim)
    if not claimed:
        return None
    # Only what rendering and the skip check read.
    subscribers = Subscriber.objects.only(
        "id", "account_id", "email", "first_name", "fields", "state"
    ).in_bulk([subscriber_id for _, subscriber_id in claimed])
    pending, gone = [], []
    for delivery_id, subscriber_id in claimed:
        subscriber = subscribers.get(subscriber_id)
        if subscriber is None or subscriber.state != Subscriber.State.ACTIVE:
            # Unsubscribed, bounced, complained or erased since the fan-out: not even rendered.
            gone.append(Outcome(delivery_id, O.SKIPPED))
        else:
            pending.append((delivery_id, subscriber))
    outcomes_record(broadcast_id=broadcast.pk, claim=claim, outcomes=gone)
    renderer = BroadcastRenderer(broadcast)
    started = time.monotonic()
    with SendJournal(claim) as journal, open_transport() as transport:
        size = _call_size(transport)
        for start in range(0, len(pending), size):
            rest = pending[start:]
            if time.monotonic() - started > TASK_TIME_BUDGET:
                _hand_back(broadcast_id=broadcast.pk, claim=claim, rest=rest, status=O.RELEASED)
                return 0.0
            wait = rate_wait(account_id=broadcast.account_id, count=min(size, len(rest)))
            while 0 < wait <= MAX_RATE_SLEEP:
                time.sleep(wait)
                wait = rate_wait(account_id=broadcast.account_id, count=min(size, len(rest)))
            if wait:
                _hand_back(
                    broadcast_id=broadcast.pk, claim=claim, rest=rest, status=O.RELEASED, defer=wait
                )
                return wait
            stop = call_send(
                broadcast_id=broadcast.pk,
                claim=claim,
                rest=rest,
                size=size,
                transport=transport,
                journal=journal,
                renderer=renderer,
            )
            if stop is not None:
                return stop.again
    return None


@dataclass(frozen=True)
class BatchStop:
    """A send call's word that its batch stops, the rest handed back: `again` is what
    send_batch returns (None for a paused or cancelled broadcast)."""

    again: float | None


def call_send(
    *,
    broadcast_id: int,
    claim: int,
    rest: list[tuple[int, Subscriber]],
    size: int,
    transport: Transport,
    journal: SendJournal,
    renderer: BroadcastRenderer,
) -> BatchStop | None:
    """One send call of a batch: the first `size` of `rest`, the (delivery id, subscriber) pairs
    the batch has not sent yet.

    1. Renders each message; a message that cannot be rendered fails alone.
    2. Begins the call's journal and marks the deliveries sending (_mark_sending: skipping
       the subscribers no longer mailable, refusing all when the broadcast is paused or
       cancelled); the journal's answer is awaited only then.
    3. Makes the transport call, journaling each start, and records the outcomes.
    Returns None to go on with the batch, or how it stops.
    """
    call = rest[:size]
    items, failed = [], []
    for delivery_id, subscriber in call:
        try:
            items.append(
                (delivery_id, renderer.message(delivery_id=delivery_id, subscriber=subscriber))
            )
        except RenderFailed as error:
            failed.append(Outcome(delivery_id, O.FAILED, error=str(error)))
    outcomes_record(broadcast_id=broadcast_id, claim=claim, outcomes=failed)
    if not items:
        return None
    ids = [delivery_id for delivery_id, _message in items]
    journaled = journal.begin(ids)
    sending, held = _mark_sending(broadcast_id=broadcast_id, claim=claim, ids=ids)
    if not journaled():
        # Nothing of the call was sent; what was marked sending is ours to hand back.
        _hand_back(broadcast_id=broadcast_id, claim=claim, rest=rest, status=O.RELEASED)
        return BatchStop(again=0.0)
    if not sending:
        if _stopped(broadcast_id=broadcast_id, claim=claim, rest=rest):
            journal.end()
            return BatchStop(again=None)
        # Refused by a pause that a resume undid before _stopped looked: still claimed by us,
        # so hand them back to the queue rather than leave them to the sweeper.
        _hand_back(broadcast_id=broadcast_id, claim=claim, rest=call, status=O.RELEASED)
    items = [item for item in items if item[0] in held]
    if items:
        outcomes = transport.send_call(items, journal)
        # Recorded while the outcomes are written, in case they cannot be.
        journal.step_ahead(done=outcomes, starting=[])
        outcomes_record(broadcast_id=broadcast_id, claim=claim, outcomes=outcomes)
        if any(outcome.status == O.FAILED for outcome in outcomes):
            failure_pause_check(broadcast_id=broadcast_id)
    journal.end()
    if journal.refused:
        _hand_back(broadcast_id=broadcast_id, claim=claim, rest=rest, status=O.RELEASED)
        return BatchStop(again=0.0)
    return None


def _stopped(*, broadcast_id: int, claim: int, rest: list) -> bool:
    """When a call found the broadcast not sending: if it was paused or cancelled, hands the
    rest of the batch back (cancelled, or queued for after a resume) and says stop."""
    state = Broadcast.objects.filter(pk=broadcast_id).values_list("state", flat=True).first()
    if state == Broadcast.State.SENDING:
        return False
    status = O.CANCELLED if state == Broadcast.State.CANCELLED else O.RELEASED
    _hand_back(broadcast_id=broadcast_id, claim=claim, rest=rest, status=status)
    return True


def _hand_back(*, broadcast_id: int, claim: int, rest: list, status: O, defer: float = 0.0) -> None:
    """The unsent rest of a batch, (delivery id, subscriber) pairs, released or cancelled."""
    outcomes_record(
        broadcast_id=broadcast_id,
        claim=claim,
        outcomes=[Outcome(delivery_id, status) for delivery_id, _ in rest],
        defer=defer,
    )


def _retry_after(*, broadcast_id: int, first_id: int, last_id: int) -> float | None:
    """Seconds until the range's next queued delivery may be sent (0 for one with no backoff),
    or None when the range has none queued."""
    row = (
        Delivery.objects.filter(
            broadcast_id=broadcast_id, id__gte=first_id, id__lte=last_id, state=S.QUEUED
        )
        .order_by(F("not_before").asc(nulls_first=True))
        .values_list("not_before")
        .first()
    )
    if row is None:
        return None
    if row[0] is None:
        return 0.0
    return max(0.0, (row[0] - timezone.now()).total_seconds())


def deliveries_cancel(*, broadcast_id: int) -> int:
    """Marks a cancelled broadcast's queued deliveries cancelled (claimed ones are handed back
    as cancelled by their task, or by the sweeper)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH moved AS (
                UPDATE broadcasts_delivery SET state = {int(S.CANCELLED)}
                WHERE broadcast_id = %s AND state = {int(S.QUEUED)}
                  AND EXISTS (SELECT 1 FROM broadcasts_broadcast b WHERE b.id = %s
                              AND b.state = %s)
                RETURNING 1
            )
            UPDATE broadcasts_broadcast SET cancelled_count = cancelled_count
                + (SELECT count(*) FROM moved) WHERE id = %s
            RETURNING (SELECT count(*) FROM moved)
            """,
            [broadcast_id, broadcast_id, Broadcast.State.CANCELLED, broadcast_id],
        )
        row = cursor.fetchone()
        return row[0] if row else 0


@dataclass
class SweepReport:
    unknown: int = 0
    released: int = 0
    settled: int = 0  # outcomes that came back before the task died, written from its journal
    republished: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Held:
    """A claim holding deliveries (claimed or sending)."""

    claim: int
    broadcast_id: int
    first_id: int
    last_id: int


def _claims_quiet(*, since: datetime) -> list[_Held]:
    """The claims holding deliveries of which none was claimed or marked sending after `since`,
    among the broadcasts that may have any (found through the open deliveries' index)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT claim, broadcast_id, min(id), max(id) FROM broadcasts_delivery
            WHERE broadcast_id IN (SELECT id FROM broadcasts_broadcast WHERE state IN %s)
              AND state IN ({int(S.CLAIMED)}, {int(S.SENDING)})
            GROUP BY claim, broadcast_id
            HAVING max(claimed_at) < %s
            """,
            [
                (Broadcast.State.SENDING, Broadcast.State.PAUSED, Broadcast.State.CANCELLED),
                since,
            ],
        )
        return [_Held(*row) for row in cursor.fetchall()]


def _settled(delivery_id: int, journal: JournalRead | None) -> Outcome:
    """What a dead claim's "sending" delivery becomes, by its journal (broadcasts/journal.py)."""
    if journal is not None:
        if delivery_id in journal.done:
            return journal.done[delivery_id]
        if delivery_id in journal.call and delivery_id not in journal.flight:
            return Outcome(delivery_id, O.RELEASED)
    return Outcome(delivery_id, O.UNKNOWN, error=UNKNOWN_ERROR)


def _claim_settle(*, held: _Held, journal_readable: bool, report: SweepReport) -> None:
    """Settles the deliveries of a claim whose task died: its sending ones from its journal
    (read only when `journal_readable`, else none: all unknown), its claimed ones back to the
    queue; publishes a send task for what went back to the queue."""
    journal = None
    if journal_readable:
        try:
            journal = journal_settle(held.claim)
        except RedisError as error:
            logger.warning("Send journal of claim %s unreadable: %s", held.claim, error)
    sending = Delivery.objects.filter(
        broadcast_id=held.broadcast_id, state=S.SENDING, claim=held.claim
    ).values_list("id", flat=True)
    outcomes = [_settled(delivery_id, journal) for delivery_id in sending]
    outcomes_record(broadcast_id=held.broadcast_id, claim=held.claim, outcomes=outcomes)
    requeued = _claim_release(broadcast_id=held.broadcast_id, claim=held.claim)
    for outcome in outcomes:
        if outcome.status == O.UNKNOWN:
            report.unknown += 1
        elif outcome.status == O.RELEASED:
            requeued += 1
        else:
            report.settled += 1
    report.released += requeued
    if requeued or any(outcome.status == O.RETRY for outcome in outcomes):
        tasks.send_batch.delay(held.broadcast_id, held.first_id, held.last_id)


def sweep(*, now: datetime | None = None) -> SweepReport:
    """Repairs what dead or lost send tasks left behind (celery beat runs it every ten seconds):

    1. Claims whose task died: none of their deliveries claimed or marked sending, and no
       heartbeat, for BROADCAST_HEARTBEAT_TIMEOUT. Each is settled (_claim_settle): sending
       deliveries from the task's journal (what came back -> that outcome, in flight -> unknown,
       never started -> queued; no journal -> unknown), claimed ones back to the queue. Without
       Redis, a claim is taken for dead after BROADCAST_SENDING_TIMEOUT, and settled without
       its journal.
    2. Sending broadcasts whose send tasks were lost: all of them when Redis lost its data since
       the last sweep (a flush, a restart without persistence), else those without progress for
       BROADCAST_STALL_TIMEOUT -> fan-out again, which publishes the queued ranges.
    3. Sending broadcasts with nothing left open -> sent; cancelled ones' queued deliveries ->
       cancelled.
    """
    now = now or timezone.now()
    report = SweepReport()
    quiet = _claims_quiet(since=now - timedelta(seconds=settings.BROADCAST_HEARTBEAT_TIMEOUT))
    try:
        beating = claims_beating([held.claim for held in quiet], now=now.timestamp())
        dead, journal_readable = [held for held in quiet if held.claim not in beating], True
    except RedisError as error:
        logger.warning("Send heartbeats unreadable, falling back to the sending timeout: %s", error)
        cutoff = now - timedelta(seconds=settings.BROADCAST_SENDING_TIMEOUT)
        dead, journal_readable = _claims_quiet(since=cutoff), False
    for held in dead:
        _claim_settle(held=held, journal_readable=journal_readable, report=report)

    try:
        lost = redis_data_lost()
    except RedisError:
        lost = False
    sending = Broadcast.objects.filter(state=Broadcast.State.SENDING)
    if not lost:
        sending = sending.filter(
            progressed_at__lt=now - timedelta(seconds=settings.BROADCAST_STALL_TIMEOUT)
        )
    # Only those with something queued and not waiting out a backoff or a rate limit (whose
    # tasks are counting down): one probe of the open deliveries' index each, in one query,
    # however many sequence emails sit idle.
    sendable = Delivery.objects.filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now),
        broadcast_id=OuterRef("pk"),
        state=S.QUEUED,
    )
    for broadcast_id, has_sendable in sending.annotate(has_sendable=Exists(sendable)).values_list(
        "id", "has_sendable"
    ):
        if broadcast_finish_if_done(broadcast_id=broadcast_id):
            report.finished.append(broadcast_id)
            continue
        if not has_sendable:
            continue
        Broadcast.objects.filter(pk=broadcast_id).update(progressed_at=now)
        tasks.fan_out.delay(broadcast_id)
        report.republished.append(broadcast_id)
    for broadcast_id in (
        Broadcast.objects.broadcasts()
        .filter(state=Broadcast.State.SENDING)
        .values_list("id", flat=True)
    ):
        if broadcast_id not in report.republished and broadcast_finish_if_done(
            broadcast_id=broadcast_id
        ):
            report.finished.append(broadcast_id)
    # One probe of the open deliveries' index per cancelled broadcast (a join would scan them).
    cancelled_open = Broadcast.objects.filter(
        Exists(Delivery.objects.filter(broadcast_id=OuterRef("pk"), state=S.QUEUED)),
        state=Broadcast.State.CANCELLED,
    ).values_list("id", flat=True)
    for broadcast_id in list(cancelled_open):
        deliveries_cancel(broadcast_id=broadcast_id)
    return report
