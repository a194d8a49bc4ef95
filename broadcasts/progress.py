"""What the progress page and `manage.py broadcast_status` show, read from the broadcast's own
counters (one row), never by counting deliveries."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from broadcasts.models import Broadcast


@dataclass(frozen=True)
class Progress:
    state: str
    total: int
    sent: int
    failed: int
    unknown: int
    skipped: int
    cancelled: int
    remaining: int
    percent: float
    rate_per_s: float | None  # finished deliveries per second since sending started
    eta_seconds: float | None


def broadcast_progress(*, broadcast: Broadcast) -> Progress:
    finished = broadcast.finished_count
    rate = eta = None
    if broadcast.send_started_at and finished:
        end = broadcast.sent_at or timezone.now()
        elapsed = (end - broadcast.send_started_at).total_seconds()
        if elapsed > 0:
            rate = finished / elapsed
    remaining = broadcast.remaining_count
    if rate and broadcast.state == Broadcast.State.SENDING:
        eta = remaining / rate
    total = broadcast.recipient_count
    return Progress(
        state=broadcast.state,
        total=total,
        sent=broadcast.sent_count,
        failed=broadcast.failed_count,
        unknown=broadcast.unknown_count,
        skipped=broadcast.skipped_count,
        cancelled=broadcast.cancelled_count,
        remaining=remaining,
        percent=100.0 * finished / total if total else (100.0 if broadcast.sent_at else 0.0),
        rate_per_s=rate,
        eta_seconds=eta,
    )
