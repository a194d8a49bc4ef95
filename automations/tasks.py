"""Thin Celery tasks over the automations engine, each naming its queue."""

from __future__ import annotations

import contextlib

from celery import shared_task

from convertkit.celery import DATABASE_RETRY
from convertkit.redis import redis_client

# While one engine run holds this (a minute at most), the beat's next ticks return at once
# instead of queueing up behind it. Two runs at once would still be safe (every claim skips
# locked rows); one keeps the outbox in order.
_RUN_LOCK = "ck:automations:run"


@shared_task(name="automations.run", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def run() -> None:
    """Consumes the event outbox and moves due journeys on (celery beat, every second)."""
    from redis.exceptions import RedisError

    from automations.engine import automations_run

    try:
        client = redis_client()
        if not client.set(_RUN_LOCK, 1, nx=True, ex=60):
            return
    except RedisError:
        client = None
    try:
        automations_run()
    finally:
        if client is not None:
            with contextlib.suppress(RedisError):
                client.delete(_RUN_LOCK)


@shared_task(name="automations.dates", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def dates() -> None:
    """Enters whoever's date comes round this hour (celery beat, every five minutes)."""
    from automations.engine import date_entries_run

    date_entries_run()
