"""Fixed-window rate limits in Redis, for public endpoints anyone on the internet can hit (form
signups, creator logins, sign-up and password reset emails).

Each limit is (count, seconds), from settings such as SIGNUP_LIMIT_PER_IP="30/600". The limits
given to one call are counted in one pipelined round trip. A window is aligned to the clock, so a
refusal ends when its window does, however many refused attempts follow. When Redis cannot be
reached the limits are not enforced (logged): a signup or a login must not fail because a counter
is away.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from convertkit.redis import redis_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LimitExceeded:
    scope: str
    retry_after: int  # seconds until the window that was exceeded ends

    @property
    def wait_text(self) -> str:
        """How long to wait, for a message: "1 minute", "14 minutes" (rounded up)."""
        minutes = max(1, -(-self.retry_after // 60))
        return f"{minutes} minute{'s' if minutes != 1 else ''}"


def rate_limits_hit(checks: list[tuple[str, str, tuple[int, int]]]) -> LimitExceeded | None:
    """Counts one hit against each (scope, identifier, limit); the first limit now exceeded, or
    None. Hits are counted even when refused, so hammering keeps the window closed."""
    now = int(time.time())
    try:
        pipe = redis_client().pipeline(transaction=False)
        for scope, identifier, (_count, seconds) in checks:
            window = now - now % seconds
            key = f"ck:rl:{scope}:{identifier}:{window}"
            pipe.incr(key)
            pipe.expire(key, seconds + 1)
        results = pipe.execute()
    except RedisError as error:
        logger.warning("Rate limits not enforced, Redis unavailable: %s", error)
        return None
    for (scope, _identifier, (count, seconds)), hits in zip(checks, results[::2], strict=True):
        if hits > count:
            return LimitExceeded(scope=scope, retry_after=seconds - now % seconds)
    return None


def _valid_ip(value: str) -> str | None:
    try:
        # The common case in C: an IPv4 address already in its canonical spelling. The click
        # tracker asks on every click, and ipaddress's parse costs several times more.
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value)) == value:
            return value
    except (OSError, ValueError):
        pass
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def environ_client_ip(environ: Mapping[str, str]) -> str | None:
    """The client's address from a WSGI environ (request.META is one): REMOTE_ADDR, or with
    TRUSTED_PROXY_COUNT=N proxies in front, the address the outermost trusted proxy saw (N-th
    from the right of X-Forwarded-For), so a client cannot choose its own address by sending the
    header. None when it is not an IP address."""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [part.strip() for part in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= proxies:
            return _valid_ip(forwarded[-proxies])
    return _valid_ip(environ.get("REMOTE_ADDR") or "")


def client_ip(request) -> str | None:
    return environ_client_ip(request.META)


def rate_limit_network(ip: str | None) -> str:
    """What a per-IP limit counts: the address itself for IPv4, its /64 for IPv6 (one client
    usually holds a whole /64 and could otherwise take a fresh address for every request)."""
    if ip is None:
        return "unknown"
    # `ip` comes from environ_client_ip, valid and canonical: an IPv4 address has no colon. The
    # click tracker asks on every click, where parsing it again costs more than all the rest.
    if ":" not in ip:
        return ip
    address = ipaddress.ip_address(ip)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return ip


def address_and_network_hit(
    request,
    *,
    scope: str,
    email: str | None,
    per_address: tuple[int, int],
    per_ip: tuple[int, int],
) -> LimitExceeded | None:
    """Counts one hit against `scope`'s limit for the client's network and, when given, for the
    address (case-folded and hashed: Redis holds no addresses). Any address counts the same,
    whether or not it has a login, so a refusal tells nothing about accounts."""
    checks = [(f"{scope}-ip", rate_limit_network(client_ip(request)), per_ip)]
    if email:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        checks.insert(0, (f"{scope}-address", digest, per_address))
    return rate_limits_hit(checks)
