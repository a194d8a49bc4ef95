"""Delivering webhooks: workers claim due deliveries in batches, POST them concurrently over
pooled keep-alive connections, and record what came back in bulk.

deliveries_send, one batch:

1. Claims up to WEBHOOK_DELIVERY_BATCH due deliveries (FOR UPDATE SKIP LOCKED) in a short
   transaction that counts the attempt and moves each one a lease ahead: a worker that dies
   mid-POST leaves them due again when the lease ends (a retry, never a loss).
2. POSTs them from a thread pool (WEBHOOK_CONCURRENCY at once), each signed
   `X-Kit-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` with X-Kit-Delivery
   and X-Kit-Event, through webhooks.targets (public addresses only, timeouts).
3. In one transaction: one INSERT of the attempts, one UPDATE of the deliveries (delivered; a
   retry after 30 s, 2 min, 15 min, 1 h, 4 h, 12 h, 24 h, or Retry-After on a 429 or 503; failed
   after the eighth attempt or at once on 410 Gone), and each endpoint's health: a success
   clears failing_since, a failure sets it, and an endpoint failing for a day is disabled (its
   deliveries parked) and its account's owners are told by email.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from convertkit.models import Membership
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.targets import Answer, target_post

logger = logging.getLogger(__name__)

# The wait after each failed attempt (Kit's schedule); the attempt after the last one is final.
RETRY_DELAYS = (30, 120, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# Retry-After is honoured on these statuses, clamped to this range (seconds).
RETRY_AFTER_STATUSES = (429, 503)
RETRY_AFTER_RANGE = (1, 24 * 3600)
# An endpoint failing this long is disabled.
FAILING_LIMIT = timedelta(days=1)
# How long a claimed delivery is left to its worker before it is due again.
LEASE = timedelta(minutes=5)
# A run stops taking new batches after this long (the next beat tick goes on).
RUN_TIME_BUDGET = 25.0
KEPT_DAYS = 30

DELIVERY_TABLE = WebhookDelivery._meta.db_table
ENDPOINT_TABLE = WebhookEndpoint._meta.db_table
ATTEMPT_TABLE = WebhookAttempt._meta.db_table
Status = WebhookDelivery.Status
USER_AGENT = "ConvertKit-Webhooks/1.0"


@dataclass
class _Claimed:
    id: int
    event_type: str
    attempt: int
    endpoint_id: int
    account_id: int
    url: str
    secret: str
    # The secret before a rotation, while its overlap window is open ("" otherwise).
    previous_secret: str
    body: bytes


@dataclass
class DeliveryReport:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    endpoints_disabled: int = 0

    def add(self, other: DeliveryReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _claim(now: datetime, limit: int) -> list[_Claimed]:
    """Step 1. The body is built by PostgreSQL from the stored events: a legacy webhook's is
    its one event's data ({"subscriber": ...}), an endpoint's the {delivery_id, events} envelope."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH due AS (
                SELECT id FROM {DELIVERY_TABLE}
                WHERE status IN ('pending', 'retrying') AND next_attempt_at <= %(now)s
                ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
            )
            UPDATE {DELIVERY_TABLE} AS d
            SET next_attempt_at = %(lease)s, attempt_count = d.attempt_count + 1
            FROM due, {ENDPOINT_TABLE} AS e
            WHERE d.id = due.id AND e.id = d.endpoint_id
            RETURNING d.id, d.event_type, d.attempt_count, e.id, e.account_id, e.url, e.secret,
                CASE WHEN e.previous_secret_expires_at > %(now)s THEN e.previous_secret
                     ELSE '' END,
                CASE WHEN e.kind = 'legacy' THEN (d.events -> 0 -> 'data')::text
                     ELSE jsonb_build_object('delivery_id', d.id, 'events', d.events)::text END
            """,
            {"now": now, "limit": limit, "lease": now + LEASE},
        )
        return [_Claimed(*row[:8], body=row[8].encode()) for row in sorted(cursor.fetchall())]


def signature_header(keys: list[str], timestamp: int, body: bytes) -> str:
    """Kit's X-Kit-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">, one v1 per
    secret (two during a rotation's overlap window)."""
    signed = str(timestamp).encode() + b"." + body
    digests = [hmac.new(key.encode(), signed, hashlib.sha256).hexdigest() for key in keys]
    return ",".join([f"t={timestamp}", *(f"v1={digest}" for digest in digests)])


def _post(claimed: _Claimed, now: datetime) -> Answer:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Kit-Delivery": str(claimed.id),
        "X-Kit-Event": claimed.event_type,
        "X-Kit-Signature": signature_header(
            [key for key in (claimed.secret, claimed.previous_secret) if key],
            int(now.timestamp()),
            claimed.body,
        ),
    }
    try:
        return target_post(claimed.url, body=claimed.body, headers=headers, now=now)
    except Exception as error:
        # One delivery that breaks the POST itself must not fail its whole batch (which would
        # come back after the lease, POSTed again to everyone): it is a failed attempt.
        logger.exception("Webhook delivery %s could not be POSTed", claimed.id)
        return Answer(None, error=f"{type(error).__name__}: {error}"[:500])


_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=settings.WEBHOOK_CONCURRENCY, thread_name_prefix="webhook"
        )
    return _executor


def _next_step(claimed: _Claimed, answer: Answer, now: datetime) -> tuple[str, datetime | None]:
    """The delivery's status after this attempt, and when the next one is due."""
    if answer.ok:
        return Status.DELIVERED, None
    if answer.status == 410 or claimed.attempt >= MAX_ATTEMPTS:
        return Status.FAILED, None
    wait = RETRY_DELAYS[claimed.attempt - 1]
    if answer.status in RETRY_AFTER_STATUSES and answer.retry_after is not None:
        low, high = RETRY_AFTER_RANGE
        wait = min(max(answer.retry_after, low), high)
    return Status.RETRYING, now + timedelta(seconds=wait)


def _record(claimed: list[_Claimed], answers: list[Answer], now: datetime) -> DeliveryReport:
    """Step 3. The endpoints' rows are locked first, in id order, as endpoint_update locks
    its endpoint before parking its deliveries: two workers, or a worker and a creator
    disabling an endpoint, take their locks in one order and never deadlock. A delivery whose
    endpoint was disabled while it was in flight is parked, not scheduled."""
    report = DeliveryReport(claimed=len(claimed))
    healthy = {item.endpoint_id for item, answer in zip(claimed, answers, strict=True) if answer.ok}
    failing = {item.endpoint_id for item in claimed} - healthy
    ids = [item.id for item in claimed]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, enabled FROM {ENDPOINT_TABLE} WHERE id = ANY(%s::bigint[]) "
            "ORDER BY id FOR UPDATE",
            [sorted(healthy | failing)],
        )
        enabled = dict(cursor.fetchall())
        statuses, dues, completed = [], [], []
        for item, answer in zip(claimed, answers, strict=True):
            status, due = _next_step(item, answer, now)
            statuses.append(status.value)
            dues.append(due if enabled.get(item.endpoint_id) else None)
            completed.append(now if status in (Status.DELIVERED, Status.FAILED) else None)
            report.delivered += status == Status.DELIVERED
            report.retrying += status == Status.RETRYING
            report.failed += status == Status.FAILED
        cursor.execute(
            f"""
            INSERT INTO {ATTEMPT_TABLE}
                (delivery_id, at, status_code, response_excerpt, duration_ms, error)
            SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::smallint[], %s::text[],
                                 %s::int[], %s::text[])
            """,
            [
                ids,
                [now] * len(ids),
                [answer.status for answer in answers],
                [answer.excerpt for answer in answers],
                [answer.duration_ms for answer in answers],
                [answer.error for answer in answers],
            ],
        )
        cursor.execute(
            f"""
            UPDATE {DELIVERY_TABLE} AS d
            SET status = v.status, next_attempt_at = v.due, completed_at = v.completed
            FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::timestamptz[])
                 AS v(id, status, due, completed)
            WHERE d.id = v.id
            """,
            [ids, statuses, dues, completed],
        )
        # One statement for both: the first failure since a success starts the clock, a
        # success stops it.
        cursor.execute(
            f"""
            UPDATE {ENDPOINT_TABLE} AS e
            SET failing_since = CASE WHEN v.ok THEN NULL ELSE %s::timestamptz END
            FROM unnest(%s::bigint[], %s::boolean[]) AS v(id, ok)
            WHERE e.id = v.id AND (e.failing_since IS NULL) <> v.ok
            """,
            [now, sorted(healthy | failing), [pk in healthy for pk in sorted(healthy | failing)]],
        )
        if failing:
            report.endpoints_disabled = _endpoints_disable_failing(failing, now)
    return report


def _endpoints_disable_failing(endpoint_ids: set[int], now: datetime) -> int:
    """Disables those of these endpoints failing for FAILING_LIMIT, parks their deliveries
    and emails their accounts' owners (on commit)."""
    from convertkit.tasks import send_account_email

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {ENDPOINT_TABLE}
            SET enabled = false, disabled_reason = %s, updated_at = %s
            WHERE id = ANY(%s::bigint[]) AND enabled AND failing_since <= %s
            RETURNING id, account_id, url, failing_since
            """,
            [WebhookEndpoint.Disabled.FAILING, now, sorted(endpoint_ids), now - FAILING_LIMIT],
        )
        disabled = cursor.fetchall()
    if not disabled:
        return 0
    deliveries_park(endpoint_ids=[row[0] for row in disabled])
    owners = Membership.objects.filter(
        account_id__in={row[1] for row in disabled}, role=Membership.Role.OWNER
    ).values_list("account_id", "user__email")
    emails: dict[int, list[str]] = {}
    for account_id, address in owners:
        emails.setdefault(account_id, []).append(address)
    for _endpoint_id, account_id, url, since in disabled:
        for address in emails.get(account_id, []):
            send_account_email.delay_on_commit(
                to=address,
                subject="A webhook was disabled: its endpoint kept failing",
                body=(
                    f"Every delivery to your webhook endpoint\n\n    {url}\n\nhas failed since "
                    f"{since:%Y-%m-%d %H:%M} UTC, so it was disabled. Deliveries waiting for "
                    "it are kept: once the endpoint answers again, enable it in Settings, "
                    "Webhooks, and they will be sent.\n"
                ),
            )
    logger.warning("Webhook endpoints disabled after a day of failures: %s", disabled)
    return len(disabled)


def deliveries_park(*, endpoint_ids: list[int]) -> int:
    """Takes the waiting deliveries of disabled endpoints off the due index (kept, not due)."""
    return WebhookDelivery.objects.filter(
        endpoint_id__in=endpoint_ids, status__in=[Status.PENDING, Status.RETRYING]
    ).update(next_attempt_at=None)


def deliveries_unpark(*, endpoint_ids: list[int], now: datetime) -> int:
    """Makes the parked deliveries of re-enabled endpoints due now."""
    return WebhookDelivery.objects.filter(
        endpoint_id__in=endpoint_ids,
        status__in=[Status.PENDING, Status.RETRYING],
        next_attempt_at__isnull=True,
    ).update(next_attempt_at=now)


def deliveries_send(*, now: datetime | None = None, limit: int | None = None) -> DeliveryReport:
    """One batch (see the module docstring); `now` is the clock (tests move it)."""
    now = now or timezone.now()
    claimed = _claim(now, limit or settings.WEBHOOK_DELIVERY_BATCH)
    if not claimed:
        return DeliveryReport()
    answers = list(_pool().map(lambda item: _post(item, now), claimed))
    return _record(claimed, answers, now)


def deliveries_run(*, now: datetime | None = None, budget: float | None = None) -> DeliveryReport:
    """Batches until nothing is due or the time budget is spent (the task webhooks.deliver)."""
    budget = RUN_TIME_BUDGET if budget is None else budget
    started = time.monotonic()
    total = DeliveryReport()
    while time.monotonic() - started < budget:
        report = deliveries_send(now=now)
        total.add(report)
        if not report.claimed:
            break
    if total.claimed:
        logger.info("Webhook deliveries: %s", total)
    return total


def deliveries_prune(*, now: datetime | None = None) -> int:
    """Deletes deliveries (and their attempts) older than KEPT_DAYS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=KEPT_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH old AS (DELETE FROM {DELIVERY_TABLE} WHERE created_at < %s RETURNING id),
            attempts AS (DELETE FROM {ATTEMPT_TABLE} WHERE delivery_id IN (SELECT id FROM old))
            SELECT count(*) FROM old
            """,
            [cutoff],
        )
        return cursor.fetchone()[0]
