"""The open pixel and the click redirect, answered below Django (convertkit/wsgi.py).

    GET|HEAD /t/o/<token>    open: a 43-byte transparent GIF, never cached
    GET|HEAD /t/c/<token>    click: 302 to the URL stored for the token's link
    GET|HEAD /t/ping.gif     the same GIF, recording nothing (load balancer probe)

Each also answers with a trailing slash, which some link rewriters add. Every other path under
/t/ is a 404, every other method a 405. A bad, tampered or truncated token, a link of another
broadcast, or a stored URL that is not http(s) gets a small 404 page and records nothing: a
click never redirects anywhere but to a URL the creator's broadcast holds.

These paths skip Django's middleware and URL resolution, which take far longer than a response
this small (bench/tracking.py measures the endpoints against /t/ping.gif). A request
verifies the token (no database), buffers one event line in the process (tracking/buffer.py)
and answers. A click reads its link from the database only the first time a process sees it
(link rows never change).

What makes an event a machine's (tracking.models.Machine), decided here:

- HEAD_REQUEST: a HEAD request (people's mail clients and browsers GET).
- SCANNER_AGENT: a user agent of a known link scanner (SCANNER_AGENTS), or none at all.
- PRIVACY_PROXY (opens): Apple Mail Privacy Protection's prefetching proxy, which sends a bare
  WebKit agent with no Version/ or Safari/ token, or just "Mozilla/5.0". Gmail's and Yahoo's
  image proxies fetch when a person opens the message: those are people's opens.
- IP_FLOOD (clicks): more than TRACKING_CLICKS_PER_IP_PER_MINUTE clicks from one address within
  the minute, in this process. Still redirected: a person behind that NAT still gets there.

The store adds TOO_SOON and MANY_LINKS, which need the delivery's send time and other events.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.http import HttpResponse
from django.utils.encoding import iri_to_uri

from convertkit.ratelimit import environ_client_ip, rate_limit_network
from tracking.buffer import event_buffer
from tracking.models import EventKind, Link, Machine
from tracking.tokens import click_token_verify, open_token_verify

PREFIX = "/t/"
OPEN_PREFIX = "/t/o/"
CLICK_PREFIX = "/t/c/"
PING_PATH = "/t/ping.gif"

# The usual 43-byte 1x1 GIF: one white pixel, white marked transparent.
GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_STORE = "no-store, no-cache, must-revalidate, private, max-age=0"
_GIF_HEADERS = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(GIF))),
    ("Cache-Control", NO_STORE),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
]
_NOT_FOUND_PAGE = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Link not found</title>"
    b"<h1>Link not found</h1><p>This link is not valid. Check that it was copied whole from "
    b"the email.</p></html>"
)
_UNAVAILABLE_PAGE = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Try again</title>"
    b"<h1>Try again in a moment</h1><p>This link cannot be followed right now.</p></html>"
)

# Substrings (case-insensitive) of the user agents of link scanners of mail security gateways
# and of HTTP libraries, which follow links to check them before (or instead of) a person.
SCANNER_AGENTS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "microsoft office existence discovery",
    "microsoft office protocol discovery",
    "symantec",
    "trend micro",
    "trendmicro",
    "forcepoint",
    "cisco",
    "ironport",
    "bingpreview",
    "headlesschrome",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "curl/",
    "wget/",
)
_SCANNER = re.compile("|".join(re.escape(agent) for agent in SCANNER_AGENTS), re.IGNORECASE)
_APPLE_PRIVACY_PROXY = re.compile(
    r"Mozilla/5\.0( \([^()]*\) AppleWebKit/[\d.]+ \(KHTML, like Gecko\))?"
)

LINK_CACHE_MAX = 50_000
# And at most this many characters of Locations: a link's URL may be 2,000 characters, 24,000
# once percent-encoded, so a count alone would let one tenant's long links take gigabytes.
LINK_CACHE_MAX_CHARS = 10_000_000
CLICK_COUNTER_MAX_ADDRESSES = 100_000

StartResponse = Callable[..., object]


@lru_cache(maxsize=4096)
def agent_machine(user_agent: str) -> int:
    """SCANNER_AGENT, PRIVACY_PROXY (meaningful for opens only) or HUMAN, by user agent."""
    if not user_agent or _SCANNER.search(user_agent):
        return Machine.SCANNER_AGENT
    if _APPLE_PRIVACY_PROXY.fullmatch(user_agent):
        return Machine.PRIVACY_PROXY
    return Machine.HUMAN


def redirect_target(url: str) -> str | None:
    """The Location header for a stored URL, or None when it is not an absolute http(s) URL
    (javascript:, data:, //host and the like are never redirected to)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return iri_to_uri(url)


class _LinkCache:
    """link id -> (broadcast id, Location or None), per process; link rows never change."""

    def __init__(self) -> None:
        self._links: dict[int, tuple[int, str | None]] = {}
        self._chars = 0  # of the Locations held
        self._lock = threading.Lock()

    def get(self, link_id: int) -> tuple[int, str | None] | None:
        found = self._links.get(link_id)
        if found is not None:
            return found
        if not connection.in_atomic_block:
            close_old_connections()  # Django's request signals never run on this path
        row = Link.objects.filter(pk=link_id).values_list("broadcast_id", "url").first()
        if row is None:
            return None
        found = (row[0], redirect_target(row[1]))
        with self._lock:
            if link_id not in self._links:
                self._links[link_id] = found
                self._chars += len(found[1] or "")
            while len(self._links) > LINK_CACHE_MAX or self._chars > LINK_CACHE_MAX_CHARS:
                _broadcast_id, location = self._links.pop(next(iter(self._links)))
                self._chars -= len(location or "")
        return found

    def clear(self) -> None:
        with self._lock:
            self._links.clear()
            self._chars = 0


class _ClickCounter:
    """Clicks per client address in the current minute, in this process."""

    def __init__(self) -> None:
        self._minute = 0
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def hit(self, address: str, now: float) -> int:
        minute = int(now // 60)
        with self._lock:
            if minute != self._minute:
                self._minute, self._counts = minute, {}
            count = self._counts.get(address, 0) + 1
            if count > 1 or len(self._counts) < CLICK_COUNTER_MAX_ADDRESSES:
                self._counts[address] = count
            return count


links = _LinkCache()
clicks_per_address = _ClickCounter()


def _gif(start_response: StartResponse, head: bool) -> Iterable[bytes]:
    start_response("200 OK", list(_GIF_HEADERS))
    return [] if head else [GIF]


def _page(start_response: StartResponse, status: str, body: bytes, head: bool, *extra):
    start_response(
        status,
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", NO_STORE),
            *extra,
        ],
    )
    return [] if head else [body]


def _open(environ: dict, start_response: StartResponse, head: bool, path: str) -> Iterable[bytes]:
    token = open_token_verify(path[len(OPEN_PREFIX) :])
    if token is None:
        return _page(start_response, "404 Not Found", _NOT_FOUND_PAGE, head)
    machine = Machine.HEAD_REQUEST if head else agent_machine(environ.get("HTTP_USER_AGENT", ""))
    event_buffer(
        kind=EventKind.OPEN,
        machine=machine,
        broadcast_id=token.broadcast_id,
        delivery_id=token.delivery_id,
    )
    return _gif(start_response, head)


def _click(environ: dict, start_response: StartResponse, head: bool, path: str) -> Iterable[bytes]:
    token = click_token_verify(path[len(CLICK_PREFIX) :])
    if token is None:
        return _page(start_response, "404 Not Found", _NOT_FOUND_PAGE, head)
    try:
        link = links.get(token.link_id)
    except DatabaseError:
        return _page(start_response, "503 Service Unavailable", _UNAVAILABLE_PAGE, head)
    if link is None or link[0] != token.broadcast_id or link[1] is None:
        return _page(start_response, "404 Not Found", _NOT_FOUND_PAGE, head)
    now = time.time()
    # Counted per IPv4 address or IPv6 /64, as the signup limits do; a request without a
    # usable address is not counted (sharing one "unknown" count would flag everyone).
    address = environ_client_ip(environ)
    flooding = (
        address is not None
        and clicks_per_address.hit(rate_limit_network(address), now)
        > settings.TRACKING_CLICKS_PER_IP_PER_MINUTE
    )
    if head:
        machine = Machine.HEAD_REQUEST
    else:
        machine = agent_machine(environ.get("HTTP_USER_AGENT", ""))
        if machine == Machine.PRIVACY_PROXY:
            machine = Machine.HUMAN  # the privacy proxy fetches images, not links
        if machine == Machine.HUMAN and flooding:
            machine = Machine.IP_FLOOD
    event_buffer(
        kind=EventKind.CLICK,
        machine=machine,
        broadcast_id=token.broadcast_id,
        delivery_id=token.delivery_id,
        link_id=token.link_id,
    )
    start_response(
        "302 Found",
        [("Location", link[1]), ("Content-Length", "0"), ("Cache-Control", NO_STORE)],
    )
    return []


def tracking_respond(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    """Answers a request whose PATH_INFO is under /t/."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "HEAD"):
        return _page(
            start_response,
            "405 Method Not Allowed",
            b"<!doctype html><title>Method not allowed</title><h1>Method not allowed</h1>",
            False,
            ("Allow", "GET, HEAD"),
        )
    head = method == "HEAD"
    path = environ["PATH_INFO"].removesuffix("/")
    if path.startswith(OPEN_PREFIX):
        return _open(environ, start_response, head, path)
    if path.startswith(CLICK_PREFIX):
        return _click(environ, start_response, head, path)
    if path == PING_PATH:
        return _gif(start_response, head)
    return _page(start_response, "404 Not Found", _NOT_FOUND_PAGE, head)


def tracking_wsgi(django_application: Callable) -> Callable:
    """A WSGI application answering /t/ itself and passing every other path to Django."""

    def application(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(PREFIX):
            return tracking_respond(environ, start_response)
        return django_application(environ, start_response)

    return application


def tracking_view(request, rest: str = ""):
    """The same answers through Django's URLs, for servers that do not run convertkit.wsgi's
    application (Django's test live server, runserver's static handler). Slower: the whole
    middleware stack runs first. Production traffic never reaches it."""
    answer: dict = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = status, headers

    body = b"".join(tracking_respond(request.environ, start_response))
    response = HttpResponse(body, status=int(answer["status"].split()[0]))
    for name, value in answer["headers"]:
        response[name] = value
    return response
