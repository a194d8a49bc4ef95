"""Thin Celery tasks over the automations engine, each naming its queue."""

from __future__ import annotations

import contextlib
import secrets

from celery import shared_task

from convertkit.celery import DATABASE_RETRY
from convertkit.redis import redis_client

# While one engine run holds this, the beat's next ticks return at once instead of queueing up
# behind it. Two runs at once would still be safe (every claim skips locked rows); one keeps the
# outbox in order. It outlives a run's time budget (engine.RUN_TIME_BUDGET) a little, so a
# worker killed mid-run holds the engine up for at most that long.
_RUN_LOCK = "ck:automations:run"
_RUN_LOCK_SECONDS = 35
# Deletes the lock only if it is still this run's (a run that outlived its lock must not free
# the next run's).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


@shared_task(name="automations.run", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def run() -> None:
    """Consumes the event outbox and moves due journeys on (celery beat, every second)."""
    from redis.exceptions import RedisError

    from automations.engine import automations_run

    token = secrets.token_hex(8)
    try:
        client = redis_client()
        if not client.set(_RUN_LOCK, token, nx=True, ex=_RUN_LOCK_SECONDS):
            return
    except RedisError:
        client = None
    try:
        automations_run()
    finally:
        if client is not None:
            with contextlib.suppress(RedisError):
                client.eval(_RELEASE, 1, _RUN_LOCK, token)


@shared_task(name="automations.dates", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def dates() -> None:
    """Enters whoever's date comes round this hour (celery beat, every five minutes)."""
    from automations.engine import date_entries_run

    date_entries_run()
