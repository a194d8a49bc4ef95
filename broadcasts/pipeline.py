"""The send pipeline: fan-out, send batches, the sweeper. PostgreSQL is the truth; Redis only
carries work, and everything here is safe to run twice.

Fan-out snapshots the audience into Delivery rows with one INSERT ... SELECT ... ON CONFLICT DO
NOTHING, then publishes one send task per id range of BROADCAST_BATCH_SIZE queued deliveries.
A send task claims its range (conditional UPDATE), and for each send call of the transport:
checks pause/cancel, waits for the account's rate limit, renders, marks the call's deliveries
sending, makes the call, and records the outcomes in one statement with the broadcast's
counters. A worker killed mid-call leaves that call's deliveries "sending"; the sweeper marks
them unknown (never re-sent), hands claimed-but-unsent ones back to the queue, and republishes
the batches of a broadcast whose tasks were lost (a Redis flush).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from redis.exceptions import RedisError

from broadcasts.audience import audience_sql
from broadcasts.models import Broadcast, Delivery
from convertkit.redis import redis_client
from subscribers.models import Subscriber

logger = logging.getLogger(__name__)

S = Delivery.State
# Deliveries not yet finished, as an SQL list.
_OPEN_STATES_SQL = ", ".join(str(int(state)) for state in Delivery.OPEN_STATES)
# A task stops claiming more work after this long and queues the rest of its range again, so
# no claim is ever held long enough for the sweeper to think its task died.
TASK_TIME_BUDGET = 120.0
# A rate-limit wait longer than this releases the claim and retries later instead of sleeping.
MAX_RATE_SLEEP = 5.0


def fan_out(*, broadcast_id: int) -> int:
    """Snapshots the audience (once) and publishes send tasks for every queued delivery;
    returns how many batches were published. Running it again adds nobody twice."""
    broadcast = Broadcast.objects.filter(pk=broadcast_id).first()
    if broadcast is None or broadcast.state != Broadcast.State.SENDING:
        return 0
    if broadcast.fanned_out_at is None:
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
                    ON CONFLICT (broadcast_id, subscriber_id) DO NOTHING
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


def batches_publish(*, broadcast_id: int) -> int:
    """One send task per range of queued deliveries, published over one broker connection."""
    from broadcasts.tasks import send_batch

    ranges = queued_ranges(broadcast_id=broadcast_id, size=settings.BROADCAST_BATCH_SIZE)
    with send_batch.app.producer_or_acquire() as producer:
        for first_id, last_id in ranges:
            send_batch.apply_async((broadcast_id, first_id, last_id), producer=producer)
    Broadcast.objects.filter(pk=broadcast_id).update(progressed_at=timezone.now())
    return len(ranges)


def broadcast_finish_if_done(*, broadcast_id: int) -> bool:
    """Marks a sending broadcast sent once no delivery is queued, claimed or sending."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE broadcasts_broadcast SET state = %s, sent_at = now(), updated_at = now()
            WHERE id = %s AND state = %s AND fanned_out_at IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM broadcasts_delivery WHERE broadcast_id = %s
                AND state IN ({_OPEN_STATES_SQL}))
            """,
            [Broadcast.State.SENT, broadcast_id, Broadcast.State.SENDING, broadcast_id],
        )
        return cursor.rowcount == 1


@dataclass
class _Outcome:
    delivery_id: int
    status: str  # sent | failed | unknown | retry | skipped | released | cancelled
    esp_message_id: str = ""
    error: str = ""


_STATUS_STATE = {
    "sent": S.SENT,
    "failed": S.FAILED,
    "unknown": S.UNKNOWN,
    "skipped": S.SKIPPED,
    "cancelled": S.CANCELLED,
}
# The CASE arms of outcomes_record's final states, written once rather than per send call.
_STATE_CASE = " ".join(
    f"WHEN '{status}' THEN {int(state)}" for status, state in _STATUS_STATE.items()
)


def outcomes_record(
    *, broadcast_id: int, claim: int, outcomes: list[_Outcome], defer: float = 0.0
) -> None:
    """Writes a call's outcomes and adds them to the broadcast's counters, in one statement.

    Only rows still held by `claim` move. "retry" goes back to queued with a backoff (or to
    failed after BROADCAST_MAX_ATTEMPTS); "released" goes back to queued, not to be sent for
    `defer` seconds (a rate limit's wait), so the sweeper sees it waiting, not stalled.
    """
    if not outcomes:
        return
    rows = ", ".join(["(%s::bigint, %s, %s, %s)"] * len(outcomes))
    params: list = []
    for outcome in outcomes:
        params += [
            outcome.delivery_id,
            outcome.status,
            outcome.esp_message_id[:255],
            outcome.error[:500],
        ]
    max_attempts = settings.BROADCAST_MAX_ATTEMPTS
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH v(id, status, esp_message_id, error) AS (VALUES {rows}),
            moved AS (
                UPDATE broadcasts_delivery d SET
                    state = CASE
                        WHEN v.status = 'retry' AND d.attempts + 1 >= {max_attempts}
                            THEN {int(S.FAILED)}
                        WHEN v.status IN ('retry', 'released') THEN {int(S.QUEUED)}
                        ELSE (CASE v.status {_STATE_CASE} END) END,
                    attempts = d.attempts + (v.status NOT IN ('skipped', 'released',
                                                              'cancelled'))::int,
                    claim = CASE WHEN v.status IN ('retry', 'released') THEN NULL
                                 ELSE d.claim END,
                    not_before = CASE WHEN v.status = 'retry' THEN now() + make_interval(
                                     secs => least(300, 5 * power(2, d.attempts)))
                                 WHEN v.status = 'released' AND %s > 0
                                     THEN now() + make_interval(secs => %s)
                                 ELSE d.not_before END,
                    sent_at = CASE WHEN v.status = 'sent' THEN now() ELSE d.sent_at END,
                    esp_message_id = CASE WHEN v.status = 'sent' THEN v.esp_message_id
                                          ELSE d.esp_message_id END,
                    error = CASE WHEN v.status IN ('failed', 'unknown', 'retry')
                                 THEN v.error ELSE d.error END
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
            """,
            [*params, defer, defer, claim, broadcast_id],
        )


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


def _mark_sending(*, broadcast_id: int, ids: list[int], claim: int) -> set[int]:
    """Claimed -> sending for the deliveries about to be in one send call, if the broadcast is
    still sending (checked in the same statement: one round trip per call); the ones this claim
    still holds, none when the broadcast was paused or cancelled."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE broadcasts_delivery SET state = {int(S.SENDING)}, claimed_at = now()
            WHERE id = ANY(%s) AND claim = %s AND state = {int(S.CLAIMED)}
              AND EXISTS (SELECT 1 FROM broadcasts_broadcast WHERE id = %s AND state = %s)
            RETURNING id
            """,
            [ids, claim, broadcast_id, Broadcast.State.SENDING],
        )
        return {row[0] for row in cursor.fetchall()}


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
    """Sends the queued deliveries of one id range (see the module docstring); returns the
    seconds after which the range should be tried again (retries backing off, a rate limit, the
    time budget spent), or None when nothing of it is left for this task."""
    from broadcasts.rendering import BroadcastRenderer, RenderFailed
    from broadcasts.transport import open_transport

    broadcast = Broadcast.objects.select_related("account").filter(pk=broadcast_id).first()
    if broadcast is None or broadcast.state != Broadcast.State.SENDING:
        return None
    claim = secrets.randbits(62)
    claimed = _claim(broadcast_id=broadcast_id, first_id=first_id, last_id=last_id, claim=claim)
    if not claimed:
        return _retry_after(broadcast_id=broadcast_id, first_id=first_id, last_id=last_id)
    # Only what rendering and the skip check read.
    subscribers = Subscriber.objects.only(
        "id", "account_id", "email", "first_name", "fields", "state"
    ).in_bulk([subscriber_id for _, subscriber_id in claimed])
    mailable, gone = [], []
    for delivery_id, subscriber_id in claimed:
        subscriber = subscribers.get(subscriber_id)
        if subscriber is None or subscriber.state != Subscriber.State.ACTIVE:
            # Unsubscribed, bounced or complained since the fan-out: they get nothing more.
            gone.append(_Outcome(delivery_id, "skipped"))
        else:
            mailable.append((delivery_id, subscriber))
    outcomes_record(broadcast_id=broadcast_id, claim=claim, outcomes=gone)

    renderer = BroadcastRenderer(broadcast)
    started, again = time.monotonic(), None
    with open_transport() as transport:
        size = _call_size(transport)
        for start in range(0, len(mailable), size):
            call = mailable[start : start + size]
            if time.monotonic() - started > TASK_TIME_BUDGET:
                _hand_back(
                    broadcast_id=broadcast_id, claim=claim, rest=mailable[start:], status="released"
                )
                again = 0.0
                break
            wait = rate_wait(account_id=broadcast.account_id, count=len(call))
            while 0 < wait <= MAX_RATE_SLEEP:
                time.sleep(wait)
                wait = rate_wait(account_id=broadcast.account_id, count=len(call))
            if wait:
                _hand_back(
                    broadcast_id=broadcast_id,
                    claim=claim,
                    rest=mailable[start:],
                    status="released",
                    defer=wait,
                )
                again = wait
                break
            items, failed = [], []
            for delivery_id, subscriber in call:
                try:
                    items.append(
                        (
                            delivery_id,
                            renderer.message(delivery_id=delivery_id, subscriber=subscriber),
                        )
                    )
                except RenderFailed as error:
                    failed.append(_Outcome(delivery_id, "failed", error=str(error)))
            outcomes_record(broadcast_id=broadcast_id, claim=claim, outcomes=failed)
            held = _mark_sending(
                broadcast_id=broadcast_id,
                ids=[delivery_id for delivery_id, _ in items],
                claim=claim,
            )
            if (
                items
                and not held
                and _stopped(broadcast_id=broadcast_id, claim=claim, rest=mailable[start:])
            ):
                break
            # Refused by a pause that a resume undid before _stopped looked: still claimed by
            # us, so hand them back to the queue rather than leave them to the sweeper.
            outcomes_record(
                broadcast_id=broadcast_id,
                claim=claim,
                outcomes=[_Outcome(d, "released") for d, _message in items if d not in held],
            )
            items = [item for item in items if item[0] in held]
            if not items:
                continue
            results = transport.send_call(items)
            outcomes_record(
                broadcast_id=broadcast_id,
                claim=claim,
                outcomes=[
                    _Outcome(r.delivery_id, r.status, r.esp_message_id, r.error) for r in results
                ],
            )
            if any(r.status == "failed" for r in results):
                failure_pause_check(broadcast_id=broadcast_id)
    if broadcast_finish_if_done(broadcast_id=broadcast_id):
        return None
    if again is not None:
        return again
    return _retry_after(broadcast_id=broadcast_id, first_id=first_id, last_id=last_id)


def _stopped(*, broadcast_id: int, claim: int, rest: list) -> bool:
    """When a call found nothing to send: if the broadcast was paused or cancelled, hands the
    rest of the batch back (cancelled, or queued for after a resume) and says stop."""
    state = Broadcast.objects.filter(pk=broadcast_id).values_list("state", flat=True).first()
    if state == Broadcast.State.SENDING:
        return False
    status = "cancelled" if state == Broadcast.State.CANCELLED else "released"
    _hand_back(broadcast_id=broadcast_id, claim=claim, rest=rest, status=status)
    return True


def _hand_back(
    *, broadcast_id: int, claim: int, rest: list, status: str, defer: float = 0.0
) -> None:
    """The unsent rest of a batch, (delivery id, subscriber) pairs, released or cancelled."""
    outcomes_record(
        broadcast_id=broadcast_id,
        claim=claim,
        outcomes=[_Outcome(delivery_id, status) for delivery_id, _ in rest],
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
    republished: list[int] | None = None
    finished: list[int] | None = None


def sweep(*, now=None) -> SweepReport:
    """Repairs what lost tasks left behind (celery beat runs it every minute):

    1. Deliveries "sending" for longer than BROADCAST_SENDING_TIMEOUT: their worker died during
       the call, so whether they went out is unknown -> unknown, never re-sent.
    2. Deliveries "claimed" for longer than BROADCAST_CLAIM_TIMEOUT: their task died before
       sending them -> queued again (cancelled for a cancelled broadcast).
    3. Sending broadcasts with no progress for BROADCAST_STALL_TIMEOUT: their tasks were lost
       (Redis flushed or restarted) -> fan-out again, which publishes the queued ranges.
    4. Sending broadcasts with nothing left open -> sent; cancelled ones' queued deliveries ->
       cancelled.
    """
    from broadcasts.tasks import fan_out as fan_out_task

    now = now or timezone.now()
    report = SweepReport(republished=[], finished=[])
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH moved AS (
                UPDATE broadcasts_delivery SET state = {int(S.UNKNOWN)},
                    error = 'The worker stopped during the send call: it may or may not have '
                            'been delivered, so it is not sent again.'
                WHERE state = {int(S.SENDING)} AND claimed_at < %s
                RETURNING broadcast_id
            ), counts AS (SELECT broadcast_id, count(*) AS n FROM moved GROUP BY broadcast_id)
            UPDATE broadcasts_broadcast b SET unknown_count = unknown_count + counts.n
            FROM counts WHERE b.id = counts.broadcast_id
            RETURNING counts.n
            """,
            [now - timedelta(seconds=settings.BROADCAST_SENDING_TIMEOUT)],
        )
        report.unknown = sum(row[0] for row in cursor.fetchall())
        cursor.execute(
            f"""
            WITH moved AS (
                UPDATE broadcasts_delivery d SET claim = NULL,
                    state = CASE WHEN b.state = %s THEN {int(S.CANCELLED)}
                                 ELSE {int(S.QUEUED)} END
                FROM broadcasts_broadcast b
                WHERE b.id = d.broadcast_id AND d.state = {int(S.CLAIMED)} AND d.claimed_at < %s
                RETURNING d.broadcast_id, d.state
            ), counts AS (
                SELECT broadcast_id, count(*) FILTER (WHERE state = {int(S.CANCELLED)}) AS n,
                       count(*) AS total
                FROM moved GROUP BY broadcast_id
            )
            UPDATE broadcasts_broadcast b SET cancelled_count = cancelled_count + counts.n
            FROM counts WHERE b.id = counts.broadcast_id
            RETURNING counts.total
            """,
            [
                Broadcast.State.CANCELLED,
                now - timedelta(seconds=settings.BROADCAST_CLAIM_TIMEOUT),
            ],
        )
        report.released = sum(row[0] for row in cursor.fetchall())
    stalled = Broadcast.objects.filter(
        state=Broadcast.State.SENDING,
        progressed_at__lt=now - timedelta(seconds=settings.BROADCAST_STALL_TIMEOUT),
    ).values_list("id", flat=True)
    for broadcast_id in stalled:
        if broadcast_finish_if_done(broadcast_id=broadcast_id):
            report.finished.append(broadcast_id)
            continue
        if not Delivery.objects.filter(
            Q(not_before__isnull=True) | Q(not_before__lte=now),
            broadcast_id=broadcast_id,
            state=S.QUEUED,
        ).exists():
            # Everything queued is waiting out a backoff or a rate limit, and the tasks that
            # will send it are counting down: not stalled.
            continue
        Broadcast.objects.filter(pk=broadcast_id).update(progressed_at=now)
        fan_out_task.delay(broadcast_id)
        report.republished.append(broadcast_id)
    for broadcast_id in Broadcast.objects.filter(state=Broadcast.State.SENDING).values_list(
        "id", flat=True
    ):
        if broadcast_id not in report.republished and broadcast_finish_if_done(
            broadcast_id=broadcast_id
        ):
            report.finished.append(broadcast_id)
    cancelled_open = (
        Delivery.objects.filter(broadcast__state=Broadcast.State.CANCELLED, state=S.QUEUED)
        .values_list("broadcast_id", flat=True)
        .distinct()
    )
    for broadcast_id in list(cancelled_open):
        deliveries_cancel(broadcast_id=broadcast_id)
    return report
