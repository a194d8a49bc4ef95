"""Thin Celery tasks over the automations engine, each naming its queue."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from celery import shared_task

from convertkit.celery import DATABASE_RETRY
from convertkit.redis import redis_client

# While a run of one half of the engine holds its key, the beat's next ticks of that half
# return at once instead of queueing up behind it. Two runs at once would still be safe (every
# claim skips locked rows), only slower: the second scans past the first's locked rows, and one
# consumer keeps the outbox in order. A key outlives a run's time budget
# (engine.RUN_TIME_BUDGET) a little, so a worker killed mid-run holds that half up for at most
# that long.
_CONSUME_LOCK = "ck:automations:consume"
_ADVANCE_LOCK = "ck:automations:advance"
_LOCK_SECONDS = 35
# Deletes a key only if it is still this run's (a run that outlived its key must not free the
# next run's).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


@contextlib.contextmanager
def _alone(key: str) -> Iterator[bool]:
    """Whether this run holds `key` (True as well when Redis cannot be reached: running is
    safe, only perhaps wasteful), released at the end."""
    from redis.exceptions import RedisError

    token = secrets.token_hex(8)
    try:
        client = redis_client()
        if not client.set(key, token, nx=True, ex=_LOCK_SECONDS):
            yield False
            return
    except RedisError:
        client = None
    try:
        yield True
    finally:
        if client is not None:
            with contextlib.suppress(RedisError):
                client.eval(_RELEASE, 1, key, token)


@shared_task(name="automations.consume", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def consume() -> None:
    """Acts on the event outbox: rules, entry points, events (celery beat, every second)."""
    from automations.engine import outbox_run

    with _alone(_CONSUME_LOCK) as alone:
        if alone:
            outbox_run()


@shared_task(name="automations.advance", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def advance() -> None:
    """Moves the journeys whose step is due (celery beat, every second)."""
    from automations.engine import journeys_run

    with _alone(_ADVANCE_LOCK) as alone:
        if alone:
            journeys_run()


@shared_task(name="automations.dates", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def dates() -> None:
    """Enters whoever's date comes round this hour (celery beat, every five minutes)."""
    from automations.engine import date_entries_run

    date_entries_run()
