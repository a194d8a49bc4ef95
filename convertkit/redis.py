"""One Redis client per process for what is not cache or broker: rate limits and counters.

Short timeouts: these callers sit on public request paths and degrade (fail open, skip a count)
when Redis is away, rather than hang a web worker.
"""

from __future__ import annotations

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
