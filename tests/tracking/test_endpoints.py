"""The open pixel and the click redirect, called through convertkit.wsgi.application as gunicorn
calls it: what a mail client and a browser get, and which event each request records."""

from __future__ import annotations

import time

import pytest
from django.utils.encoding import iri_to_uri

from tests.tracking.recording import (  # noqa: F401 - empty_recording is an autouse fixture
    CHROME,
    click_path,
    empty_recording,
    open_path,
    recorded,
    wsgi_call,
)
from tracking import endpoints
from tracking.endpoints import GIF
from tracking.models import EventKind, Link, Machine
from tracking.tokens import click_token

NO_STORE = "no-store, no-cache, must-revalidate, private, max-age=0"
APPLE_PRIVACY_PROXY = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
GMAIL_IMAGE_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)


@pytest.fixture
def broadcast(sent_broadcast):
    return sent_broadcast(recipients=2)


def _delivery(broadcast):
    return broadcast.delivery_set.order_by("id").first()


def _link(broadcast):
    return broadcast.links.order_by("position").first()


def test_open_pixel_is_a_43_byte_transparent_gif_that_is_never_cached(broadcast):
    answer = wsgi_call(open_path(_delivery(broadcast)))

    assert answer.status == 200
    assert answer.body == GIF and len(GIF) == 43 and GIF.startswith(b"GIF89a")
    assert answer.headers == {
        "Content-Type": "image/gif",
        "Content-Length": "43",
        "Cache-Control": NO_STORE,
        "Pragma": "no-cache",
        "Expires": "0",
    }


def test_an_open_is_recorded_for_its_delivery_as_a_persons(broadcast):
    delivery = _delivery(broadcast)
    before = int(time.time() * 1000)

    wsgi_call(open_path(delivery))

    [(kind, machine, ts_ms, broadcast_id, delivery_id, link_id)] = recorded()
    assert (int(kind), int(machine)) == (EventKind.OPEN, Machine.HUMAN)
    assert (int(broadcast_id), int(delivery_id), int(link_id)) == (broadcast.pk, delivery.pk, 0)
    assert before <= int(ts_ms) <= int(time.time() * 1000)


def test_a_click_redirects_to_the_url_stored_for_its_link_and_is_recorded(broadcast):
    delivery = _delivery(broadcast)
    link = broadcast.links.get(url="https://example.com/bread")

    answer = wsgi_call(click_path(delivery, link))

    assert answer.status == 302
    assert answer.headers["Location"] == "https://example.com/bread"
    assert answer.headers["Cache-Control"] == NO_STORE
    [(kind, machine, _ts, broadcast_id, delivery_id, link_id)] = recorded()
    assert (int(kind), int(machine)) == (EventKind.CLICK, Machine.HUMAN)
    assert (int(broadcast_id), int(delivery_id), int(link_id)) == (
        broadcast.pk,
        delivery.pk,
        link.pk,
    )


def test_a_link_with_non_ascii_characters_redirects_to_its_encoded_url(sent_broadcast):
    broadcast = sent_broadcast(recipients=1, links=("https://example.com/café?q=crème brûlée",))

    answer = wsgi_call(click_path(_delivery(broadcast), _link(broadcast)))

    assert answer.status == 302
    assert answer.headers["Location"] == (
        "https://example.com/caf%C3%A9?q=cr%C3%A8me%20br%C3%BBl%C3%A9e"
    )


def _tampered(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(lambda d, link: "/t/o/" + _tampered(open_path(d)[5:]), id="tampered open"),
        pytest.param(lambda d, link: open_path(d)[:-3], id="truncated open"),
        pytest.param(lambda d, link: open_path(d) + "x", id="lengthened open"),
        pytest.param(
            lambda d, link: "/t/c/" + _tampered(click_path(d, link)[5:]), id="tampered click"
        ),
        pytest.param(lambda d, link: click_path(d, link)[:-2], id="truncated click"),
        pytest.param(lambda d, link: "/t/o/" + click_path(d, link)[5:], id="click token as open"),
        pytest.param(lambda d, link: "/t/c/" + open_path(d)[5:], id="open token as click"),
        pytest.param(lambda d, link: "/t/c/", id="no token"),
        pytest.param(lambda d, link: "/t/c/" + "%2F%2Fevil.com", id="garbage"),
        pytest.param(lambda d, link: open_path(d) + "//", id="two trailing slashes"),
    ],
)
def test_a_bad_token_gets_a_404_page_and_records_nothing(broadcast, make_path):
    answer = wsgi_call(make_path(_delivery(broadcast), _link(broadcast)))

    assert answer.status == 404
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"Link not found" in answer.body
    assert "Location" not in answer.headers
    assert recorded() == []


def test_a_token_naming_another_broadcasts_link_is_not_redirected(sent_broadcast):
    ours = sent_broadcast(recipients=1, links=("https://example.com/ours",))
    theirs = sent_broadcast(recipients=1, links=("https://evil.example/phish",))
    # Signed for our broadcast and delivery, but naming the other broadcast's link.
    token = click_token(
        broadcast_id=ours.pk, delivery_id=_delivery(ours).pk, link_id=_link(theirs).pk
    )

    answer = wsgi_call("/t/c/" + token)

    assert answer.status == 404
    assert "Location" not in answer.headers
    assert recorded() == []


def test_a_token_of_a_link_that_does_not_exist_gets_a_404(broadcast):
    delivery = _delivery(broadcast)
    missing = Link.objects.order_by("-id").first().pk + 1000
    token = click_token(broadcast_id=broadcast.pk, delivery_id=delivery.pk, link_id=missing)

    assert wsgi_call("/t/c/" + token).status == 404
    assert recorded() == []


def test_a_process_keeps_the_locations_of_long_links_it_redirected_to_within_a_budget(
    sent_broadcast, monkeypatch
):
    # A link may be 2,000 characters, 24,000 once percent-encoded: a tenant clicking its own
    # long links must not fill a web process's memory by the count of links alone.
    monkeypatch.setattr(endpoints, "LINK_CACHE_MAX_CHARS", 2_000)
    urls = tuple(f"https://example.com/{n}/" + "\N{POT OF FOOD}" * 50 for n in range(6))
    broadcast = sent_broadcast(recipients=1, links=urls)
    delivery = _delivery(broadcast)

    for _ in range(2):
        answers = [
            wsgi_call(click_path(delivery, link)) for link in broadcast.links.order_by("position")
        ]
        assert [answer.status for answer in answers] == [302] * 6
        assert [answer.headers["Location"] for answer in answers] == [
            iri_to_uri(url) for url in urls
        ]

    held = [location for _broadcast, location in endpoints.links._links.values()]
    assert 0 < len(held) < 6
    assert sum(len(location) for location in held) <= 2_000


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/phish",
        "http:evil.example",
        "ftp://example.com/file",
        "/relative/path",
        "mailto:ann@example.com",
    ],
)
def test_a_link_whose_stored_url_is_not_http_is_never_redirected_to(sent_broadcast, url):
    broadcast = sent_broadcast(recipients=1, links=(url,))

    answer = wsgi_call(click_path(_delivery(broadcast), _link(broadcast)))

    assert answer.status == 404
    assert "Location" not in answer.headers
    assert recorded() == []


def test_head_requests_get_the_same_headers_without_a_body_and_are_flagged(broadcast):
    delivery, link = _delivery(broadcast), _link(broadcast)

    pixel = wsgi_call(open_path(delivery), method="HEAD")
    click = wsgi_call(click_path(delivery, link), method="HEAD")

    assert (pixel.status, pixel.body, pixel.headers["Content-Length"]) == (200, b"", "43")
    assert (click.status, click.headers["Location"]) == (302, link.url)
    assert [int(line[1]) for line in recorded()] == [Machine.HEAD_REQUEST] * 2


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0 (compatible; Barracuda Sentinel URL Scanner)",
        "Mimecast Link Scanner",
        "Mozilla/5.0 (Windows NT 10.0) Proofpoint URL Defense",
        "Microsoft Office Existence Discovery",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/534+ (KHTML, like Gecko) "
        "BingPreview/1.0b",
        "python-requests/2.32.3",
        "curl/8.5.0",
        "",
        None,
    ],
)
def test_known_link_scanners_are_redirected_but_flagged(broadcast, agent):
    delivery, link = _delivery(broadcast), _link(broadcast)

    click = wsgi_call(click_path(delivery, link), agent=agent)
    pixel = wsgi_call(open_path(delivery), agent=agent)

    assert (click.status, pixel.status) == (302, 200)
    assert [int(line[1]) for line in recorded()] == [Machine.SCANNER_AGENT] * 2


@pytest.mark.parametrize("agent", [APPLE_PRIVACY_PROXY, "Mozilla/5.0"])
def test_apple_mail_privacy_protection_prefetches_are_flagged(broadcast, agent):
    wsgi_call(open_path(_delivery(broadcast)), agent=agent)

    assert [int(line[1]) for line in recorded()] == [Machine.PRIVACY_PROXY]


@pytest.mark.parametrize(
    "agent",
    [
        GMAIL_IMAGE_PROXY,
        "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        SAFARI,
        CHROME,
    ],
)
def test_opens_through_gmail_and_yahoo_image_proxies_and_browsers_are_a_persons(broadcast, agent):
    wsgi_call(open_path(_delivery(broadcast)), agent=agent)

    assert [int(line[1]) for line in recorded()] == [Machine.HUMAN]


def _same_minute() -> None:
    """The flood count is per clock minute: start well inside one."""
    if time.time() % 60 > 55:
        time.sleep(60 - time.time() % 60 + 0.1)


def test_clicks_past_the_limit_from_one_address_are_flagged_but_still_redirected(
    broadcast, settings
):
    settings.TRACKING_CLICKS_PER_IP_PER_MINUTE = 3
    delivery, link = _delivery(broadcast), _link(broadcast)
    _same_minute()

    answers = [wsgi_call(click_path(delivery, link), address="198.51.100.20") for _ in range(5)]
    other = wsgi_call(click_path(delivery, link), address="198.51.100.21")

    assert [answer.status for answer in answers + [other]] == [302] * 6
    assert [int(line[1]) for line in recorded()] == [Machine.HUMAN] * 3 + [Machine.IP_FLOOD] * 2 + [
        Machine.HUMAN
    ]


def test_the_flood_count_uses_the_address_the_trusted_proxy_saw(broadcast, settings):
    settings.TRACKING_CLICKS_PER_IP_PER_MINUTE = 2
    settings.TRUSTED_PROXY_COUNT = 1
    delivery, link = _delivery(broadcast), _link(broadcast)
    _same_minute()

    for spoofed in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        wsgi_call(
            click_path(delivery, link),
            address="10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"{spoofed}, 198.51.100.30",
        )

    assert [int(line[1]) for line in recorded()] == [Machine.HUMAN] * 2 + [Machine.IP_FLOOD]


def test_an_ipv6_client_cannot_escape_the_flood_count_by_changing_address(broadcast, settings):
    settings.TRACKING_CLICKS_PER_IP_PER_MINUTE = 2
    delivery, link = _delivery(broadcast), _link(broadcast)
    _same_minute()

    for host in (1, 2, 3):
        wsgi_call(click_path(delivery, link), address=f"2001:db8:5:7::{host}")
    wsgi_call(click_path(delivery, link), address="2001:db8:5:8::1")

    assert [int(line[1]) for line in recorded()] == [Machine.HUMAN] * 2 + [
        Machine.IP_FLOOD,
        Machine.HUMAN,
    ]


def test_ping_answers_the_gif_and_records_nothing(db):
    answer = wsgi_call("/t/ping.gif")

    assert (answer.status, answer.body, answer.headers["Cache-Control"]) == (200, GIF, NO_STORE)
    assert recorded() == []


@pytest.mark.parametrize("path", ["/t/", "/t/x/abc", "/t/ping.png", "/t/o"])
def test_other_tracking_paths_are_404(db, path):
    assert wsgi_call(path).status == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_refused_with_405_and_record_nothing(broadcast, method):
    answer = wsgi_call(open_path(_delivery(broadcast)), method=method)

    assert answer.status == 405
    assert answer.headers["Allow"] == "GET, HEAD"
    assert recorded() == []


def test_every_other_path_is_still_served_by_django(db):
    answer = wsgi_call("/login/")

    assert answer.status == 200
    assert b"<form" in answer.body


def test_a_token_of_a_deleted_delivery_still_answers(broadcast):
    """The request path does not look deliveries up; the drain drops such events."""
    delivery = _delivery(broadcast)
    path = open_path(delivery)
    delivery.delete()

    assert wsgi_call(path).status == 200
