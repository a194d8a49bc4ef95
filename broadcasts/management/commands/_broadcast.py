"""What the broadcast commands share: finding the broadcast, and printing its progress."""

from __future__ import annotations

from django.core.management.base import CommandError

from broadcasts.models import Broadcast
from broadcasts.progress import Progress


def broadcast_get(broadcast_id: int) -> Broadcast:
    """The broadcast, else CommandError; a sequence email's message is not one (sending it as
    a broadcast would mail the whole list): sequence_status shows those."""
    broadcast = (
        Broadcast.objects.broadcasts().select_related("account").filter(pk=broadcast_id).first()
    )
    if broadcast is None:
        raise CommandError(f"There is no broadcast {broadcast_id}.")
    return broadcast


def progress_note(progress: Progress) -> str:
    parts = [
        progress.state,
        f"sent {progress.sent:,}",
        f"failed {progress.failed:,}",
        f"unknown {progress.unknown:,}",
        f"skipped {progress.skipped:,}",
        f"remaining {progress.remaining:,}",
    ]
    if progress.rate_per_s:
        parts.append(f"{progress.rate_per_s:,.0f}/s")
    if progress.eta_seconds is not None:
        parts.append(f"ETA {int(progress.eta_seconds // 60)}m{int(progress.eta_seconds % 60):02d}s")
    return ", ".join(parts)
