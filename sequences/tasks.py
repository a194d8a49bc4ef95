"""Thin Celery tasks over the sequence scheduler and services, each naming its queue."""

from __future__ import annotations

from celery import shared_task

from convertkit.celery import DATABASE_RETRY
from convertkit.redis import run_alone

# While one scheduler run holds this (a minute at most), the beat's next ticks return at once
# instead of queueing up behind it; two runs at once would still be safe, only wasteful.
_ADVANCE_LOCK = "ck:sequences:advance"


@shared_task(name="sequences.advance", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def advance() -> None:
    """Hands every due sequence email to the send queue (celery beat, every five seconds)."""
    from sequences.engine import sequences_advance

    with run_alone(_ADVANCE_LOCK, seconds=60) as alone:
        if alone:
            sequences_advance()
