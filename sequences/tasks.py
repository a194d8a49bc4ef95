"""Thin Celery tasks over the sequence scheduler and services, each naming its queue."""

from __future__ import annotations

import contextlib
import logging

from celery import shared_task

from convertkit.celery import DATABASE_RETRY
from convertkit.redis import redis_client

logger = logging.getLogger(__name__)

# While one scheduler run holds this (a minute at most), the beat's next ticks return at once
# instead of queueing up behind it; two runs at once would still be safe, only wasteful.
_ADVANCE_LOCK = "ck:sequences:advance"


@shared_task(name="sequences.advance", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def advance() -> None:
    """Hands every due sequence email to the send queue (celery beat, every five seconds)."""
    from redis.exceptions import RedisError

    from sequences.engine import sequences_advance

    try:
        client = redis_client()
        if not client.set(_ADVANCE_LOCK, 1, nx=True, ex=60):
            return
    except RedisError:
        client = None
    try:
        sequences_advance()
    finally:
        if client is not None:
            with contextlib.suppress(RedisError):
                client.delete(_ADVANCE_LOCK)
