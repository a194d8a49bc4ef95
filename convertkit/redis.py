"""One Redis client per process for what is not cache or broker: rate limits, counters and the
keys that let one run of a periodic task go at a time.

Short timeouts: these callers sit on public request paths and degrade (fail open, skip a count)
when Redis is away, rather than hang a web worker.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from functools import cache

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        decode_responses=True,
        socket_connect_timeout=0.5,
        socket_timeout=1.0,
        health_check_interval=30,
    )


# Deletes a key only if it still holds this run's token: a run that outlived its key (expired,
# or flushed and taken again) must not free the next run's.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


@contextlib.contextmanager
def run_alone(key: str, *, seconds: int) -> Iterator[bool]:
    """Whether this run of a periodic task may go: True once it holds `key` (for at most
    `seconds`: a worker killed mid-run holds the next runs back that long), False while another
    run holds it; True as well when Redis cannot be reached, for such tasks are safe to run twice,
    only wasteful. The key is released at the end."""
    token = secrets.token_hex(8)
    try:
        client = redis_client()
        if not client.set(key, token, nx=True, ex=seconds):
            yield False
            return
    except redis.RedisError:
        client = None
    try:
        yield True
    finally:
        if client is not None:
            with contextlib.suppress(redis.RedisError):
                client.eval(_RELEASE, 1, key, token)
