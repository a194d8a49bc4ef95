"""Where outgoing webhooks (and the bulk API's callbacks) may POST: http(s) URLs of public
addresses only. Loopback, private, link-local (cloud metadata: 169.254.169.254), multicast,
reserved, unspecified and every other non-global address is refused twice: when the URL is
given (its host resolved), and when a POST connects, against the address the socket actually
reached, so a name that resolves elsewhere by then (DNS rebinding) is refused too.
settings.WEBHOOK_ALLOW_PRIVATE_TARGETS lifts both checks for development and tests.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# What is kept of an answer's body (the delivery log shows it).
EXCERPT_CHARS = 500
# What is read of an answer's body at most: a longer one closes its connection.
_READ_LIMIT = 64 * 1024


class TargetRefused(Exception):
    """The connection reached an address webhooks may not POST to."""


def address_problem(address: str) -> str | None:
    """Why POSTing to this IP address is refused, or None when it is a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for flag, why in (
        ("is_loopback", "a loopback address"),
        ("is_unspecified", "an unspecified address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, flag):
            return why
    if not ip.is_global:
        return "not a public address"
    return None


def _private_allowed() -> bool:
    return settings.WEBHOOK_ALLOW_PRIVATE_TARGETS


def target_url_errors(url: str, *, field: str = "target_url") -> list[str]:
    """What is wrong with `url` as a webhook target ([] when nothing): not http(s), no host,
    or a host that does not resolve, or resolves to an address that is not public."""
    if not isinstance(url, str) or not url.strip():
        return [f"{field} is required"]
    if len(url) > 2000:
        return [f"{field} is longer than 2000 characters"]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return [f"{field} is not a valid URL"]
    if parts.scheme not in ("http", "https"):
        return [f"{field} must be an http or https URL"]
    host = parts.hostname
    if not host:
        return [f"{field} must name a host"]
    if _private_allowed():
        return []
    try:
        found = socket.getaddrinfo(
            host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        return [f"{field} host {host} does not resolve"]
    for *_, sockaddr in found:
        problem = address_problem(sockaddr[0])
        if problem:
            return [f"{field} must be a public address: {host} is {problem} ({sockaddr[0]})"]
    return []


class _CheckedConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        if not _private_allowed():
            peer = sock.getpeername()[0]
            problem = address_problem(peer)
            if problem:
                sock.close()
                raise TargetRefused(f"{self.host} connected to {problem} ({peer}): refused")
        return sock


class _CheckedHTTPSConnection(_CheckedConnection, HTTPSConnection):
    pass


class _CheckedPool(HTTPConnectionPool):
    ConnectionCls = _CheckedConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


_pools: urllib3.PoolManager | None = None
_pools_lock = threading.Lock()


def _pool_manager() -> urllib3.PoolManager:
    """One pool of keep-alive connections per process, per host, shared by the threads."""
    global _pools
    with _pools_lock:
        if _pools is None:
            manager = urllib3.PoolManager(
                num_pools=1000, maxsize=settings.WEBHOOK_CONCURRENCY, block=False, retries=False
            )
            manager.pool_classes_by_scheme = {"http": _CheckedPool, "https": _CheckedHTTPSPool}
            _pools = manager
        return _pools


@dataclass
class Answer:
    """What one POST got: the status (None when no answer came), the first characters of the
    body, the time it took, the error when there was no answer, and Retry-After in seconds."""

    status: int | None
    excerpt: str = ""
    duration_ms: int = 0
    error: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """A Retry-After header as seconds from `now`: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - now).total_seconds()


def target_post(
    url: str, *, body: bytes, headers: dict[str, str], now: datetime | None = None
) -> Answer:
    """POSTs `body` to `url` on a pooled keep-alive connection, with the connect and read
    timeouts of the settings, no redirects followed, and the address checks of this module."""
    timeout = urllib3.Timeout(
        connect=settings.WEBHOOK_CONNECT_TIMEOUT, read=settings.WEBHOOK_READ_TIMEOUT
    )
    started = time.monotonic()
    try:
        response = _pool_manager().request(
            "POST",
            url,
            body=body,
            headers=headers,
            timeout=timeout,
            redirect=False,
            preload_content=False,
        )
        try:
            data = response.read(_READ_LIMIT)
        except BaseException:
            response.close()
            raise
        # A body read to its end leaves the connection for the next POST; a longer one closes it.
        if len(data) < _READ_LIMIT:
            response.release_conn()
        else:
            response.close()
    except TargetRefused as refused:
        return Answer(None, duration_ms=_ms(started), error=str(refused)[:500])
    except (urllib3.exceptions.HTTPError, OSError) as error:
        return Answer(None, duration_ms=_ms(started), error=_error_text(error))
    return Answer(
        response.status,
        excerpt=data[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS],
        duration_ms=_ms(started),
        retry_after=retry_after_seconds(
            response.headers.get("Retry-After"), now=now or datetime.now(UTC)
        ),
    )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _error_text(error: Exception) -> str:
    """What went wrong, in words a creator reads in the delivery log: urllib3's own text names
    its connection classes and repeats the host."""
    reason = getattr(error, "reason", None) or error
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return "the host name does not resolve"
    # Checked before timeouts: urllib3's NewConnectionError is also a ConnectTimeoutError.
    if "Connection refused" in str(reason):
        return "connection refused"
    if isinstance(reason, ConnectionResetError) or "Connection reset" in str(reason):
        return "connection reset"
    if isinstance(reason, urllib3.exceptions.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(reason, urllib3.exceptions.SSLError):
        return f"TLS error: {reason}"[:500]
    return f"{type(reason).__name__}: {reason}"[:500]
