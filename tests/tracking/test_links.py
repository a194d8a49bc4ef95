"""Tracked links and the open pixel in what the send pipeline sends; none in the preview or the
test copy."""

from __future__ import annotations

import re
from email.message import EmailMessage
from html import escape, unescape
from html.parser import HTMLParser

import pytest
from django.db import connection

from broadcasts.models import Broadcast, Delivery
from broadcasts.public.links import web_view_url
from broadcasts.rendering import frozen_parts, preview
from broadcasts.services import broadcast_send, broadcast_send_test
from subscribers.models import Subscriber
from subscribers.unsubscribe import unsubscribe_test_token, unsubscribe_token, unsubscribe_url
from tests.broadcasts.conftest import make_broadcast, smtp_sink, wait_until  # noqa: F401
from tracking.links import MAX_URL_LENGTH, links_create, url_trackable
from tracking.models import Link
from tracking.tokens import click_token_verify, open_token_verify

TRACKING_URL = "https://t.example.com"
CLICK = f"{TRACKING_URL}/t/c/"
OPEN = f"{TRACKING_URL}/t/o/"
SOUP = "https://example.com/soup?a=1&b=2"
BREAD = "https://example.com/bread"
AUTOLINK = "https://example.com/all-recipes"
PERSONAL = "https://example.com/p?who={{ subscriber.email }}"
TOO_LONG = "https://example.com/" + "x" * (MAX_URL_LENGTH - 19)
BODY = f"""Hi {{{{ subscriber.first_name }}}},

Make [the soup]({SOUP}), then [the bread]({BREAD}).

Still hungry? [The soup again]({SOUP}), or <{AUTOLINK}>.

[Write to us](mailto:ann@example.com), [call us](tel:+15551234), [back to the top](#top),
[your page]({PERSONAL}), [the long one]({TOO_LONG}), [leave]({{{{ unsubscribe_url }}}}).
"""
# The body's tracked URLs, in order of first appearance.
TRACKED = [SOUP, BREAD, AUTOLINK]


@pytest.fixture(autouse=True)
def _sites(settings):
    settings.SITE_URL = "https://mail.example.com"
    settings.TRACKING_URL = TRACKING_URL


class _Tags(HTMLParser):
    """The attributes of every <a> and <img>, in order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.anchors: list[dict] = []
        self.images: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "img":
            self.images.append(dict(attrs))


def _html(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def _text(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def _delivery(message: EmailMessage) -> Delivery:
    return Delivery.objects.get(subscriber__email=message["To"].addresses[0].addr_spec)


def _clicked(url: str, delivery: Delivery) -> str:
    """The URL a tracked URL leads to, checking that its token names this delivery, its
    broadcast and a link of that broadcast."""
    assert url.startswith(CLICK), url
    token = click_token_verify(url.removeprefix(CLICK))
    assert token is not None, url
    assert (token.broadcast_id, token.delivery_id) == (delivery.broadcast_id, delivery.pk)
    return Link.objects.get(pk=token.link_id, broadcast_id=delivery.broadcast_id).url


@pytest.fixture
def send(db, eager_celery, smtp_sink, django_capture_on_commit_callbacks):  # noqa: F811
    """send(broadcast): sends it through the pipeline (Send, fan-out, send batches), each task
    run as it is queued; returns the messages the SMTP sink received."""

    def run(broadcast: Broadcast) -> list[EmailMessage]:
        with django_capture_on_commit_callbacks(execute=True):
            assert broadcast_send(broadcast=broadcast)
        broadcast.refresh_from_db()
        assert broadcast.state == Broadcast.State.SENT
        return smtp_sink.messages

    return run


def test_a_sent_message_sends_every_body_link_through_the_click_tracker_for_its_delivery(
    make_broadcast,  # noqa: F811
    smtp_sink,  # noqa: F811
    celery_worker_start,
):
    broadcast = make_broadcast(recipients=2, body=BODY)

    assert broadcast_send(broadcast=broadcast)
    with celery_worker_start():
        wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).state == Broadcast.State.SENT)

    assert len(smtp_sink.messages) == 2
    seen_tokens = set()
    for message in smtp_sink.messages:
        delivery = _delivery(message)
        hrefs = [anchor.get("href") for anchor in _Tags(_html(message)).anchors]
        tracked = [href for href in hrefs if href and href.startswith(CLICK)]
        assert [_clicked(href, delivery) for href in tracked] == [SOUP, BREAD, SOUP, AUTOLINK]
        seen_tokens.update(tracked)
        # The text part's links lead to the same places, through the same tracker.
        text_urls = re.findall(rf"{re.escape(CLICK)}[\w-]+", _text(message))
        assert [_clicked(url, delivery) for url in text_urls] == [SOUP, BREAD, SOUP, AUTOLINK]
        for original in (SOUP, escape(SOUP), BREAD):
            assert original not in _html(message) and original not in _text(message)
    # Each recipient's links are their own.
    assert len(seen_tokens) == 2 * len(TRACKED)


def test_a_sent_message_opens_its_pixel_with_a_token_for_its_delivery(
    make_broadcast,  # noqa: F811
    send,
):
    broadcast = make_broadcast(recipients=2, body=BODY)

    messages = send(broadcast)

    for message in messages:
        delivery = _delivery(message)
        html = _html(message)
        pixel = _Tags(html).images[-1]
        assert pixel["src"].startswith(OPEN)
        token = open_token_verify(pixel["src"].removeprefix(OPEN))
        assert (token.broadcast_id, token.delivery_id) == (broadcast.pk, delivery.pk)
        assert (pixel["width"], pixel["height"], pixel["alt"]) == ("1", "1", "")
        assert "display:block" in pixel["style"]
        # At the very end of the body, after the footer.
        assert re.search(r'<img src="[^"]+"[^>]*>\s*</body>', html)
        assert "/t/o/" not in _text(message)


def test_each_distinct_url_is_one_link_in_order_of_first_appearance_and_created_once(
    make_broadcast,  # noqa: F811
    send,
):
    broadcast = make_broadcast(recipients=1, body=BODY)

    send(broadcast)
    # A second click on Send, and a retry of the freezing step, change nothing.
    assert broadcast_send(broadcast=broadcast) is False
    links_create(broadcast=broadcast, urls=frozen_parts(broadcast).links)

    links = Link.objects.filter(broadcast=broadcast).order_by("position")
    assert [(link.position, link.url) for link in links] == [
        (1, SOUP),
        (2, BREAD),
        (3, AUTOLINK),
    ]
    assert {link.account_id for link in links} == {broadcast.account_id}


def test_unsubscribe_mailto_tel_anchor_personalised_and_overlong_links_are_left_as_written(
    make_broadcast,  # noqa: F811
    send,
):
    broadcast = make_broadcast(recipients=1, body=BODY)

    (message,) = send(broadcast)

    subscriber = Subscriber.objects.get(account=broadcast.account)
    leave = unsubscribe_url(subscriber=subscriber)
    personal = PERSONAL.replace("{{ subscriber.email }}", subscriber.email)
    hrefs = [unescape(a["href"]) for a in _Tags(_html(message)).anchors if "href" in a]
    untracked = [href for href in hrefs if not href.startswith(CLICK)]
    assert untracked == [
        web_view_url(broadcast),  # "View in browser", above the body
        "mailto:ann@example.com",
        "tel:+15551234",
        "#top",
        personal,
        TOO_LONG,
        leave,  # the body's own unsubscribe link
        leave,  # the footer's
    ]
    assert message["List-Unsubscribe"].strip().startswith(f"<{leave}>, <mailto:")
    text = _text(message)
    for shown in ("(ann@example.com)", "(tel:+15551234)", f"({personal})", f"({TOO_LONG})"):
        assert shown in text
    assert f"leave ({leave})" in text and f"Unsubscribe: {leave}" in text
    assert not Link.objects.filter(url__in=[personal, PERSONAL, TOO_LONG, leave]).exists()


def test_javascript_and_data_hrefs_are_dropped_by_the_sanitiser_and_never_become_links(
    make_broadcast,  # noqa: F811
    send,
):
    hostile = [
        "javascript:alert(1)",
        " JaVaScRiPt:alert(2)",
        "java&#9;script:alert(3)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCg0KTwvc2NyaXB0Pg==",
        "vbscript:msgbox(5)",
    ]
    broadcast = make_broadcast(
        recipients=1,
        body_format=Broadcast.BodyFormat.HTML,
        body="".join(f'<p><a href="{href}">bad {n}</a></p>' for n, href in enumerate(hostile))
        + f'<p><a href="{BREAD}">good</a></p>',
    )

    (message,) = send(broadcast)

    # After the "View in browser" link.
    anchors = _Tags(_html(message)).anchors
    body_anchors = anchors[1 : len(hostile) + 2]
    # The sanitiser removed the href itself, before freezing looked for links.
    assert [("href" in anchor) for anchor in body_anchors] == [False] * len(hostile) + [True]
    assert "script:" not in _html(message) and "data:" not in _html(message)
    assert list(Link.objects.filter(broadcast=broadcast).values_list("url", flat=True)) == [BREAD]


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        "/relative",
        "https://",
        "http://[::1",
        "https://example.com/a b",
        "https://example.com/\r\nLocation: https://evil.example",
        # A browser reads example.com\ as example.com/; urlsplit (and so the redirect) would
        # take evil.example for the host.
        "https://example.com\\@evil.example/",
        "https://example.com/" + "x" * MAX_URL_LENGTH,
    ],
)
def test_only_a_well_formed_http_url_could_ever_become_a_link(url):
    assert not url_trackable(url)
    assert url_trackable("HTTPS://Example.com/Soup?a=1#b")


def test_a_message_with_fifty_links_stays_small(make_broadcast, send):  # noqa: F811
    # Ids as a long-running installation has them: ten-digit deliveries and links. (setval is
    # not rolled back with the test: later tests merely get larger ids.)
    with connection.cursor() as cursor:
        for table in ("broadcasts_delivery", "tracking_link"):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), greatest(%s, nextval("
                "pg_get_serial_sequence(%s, 'id'))))",
                [table, 9_000_000_000, table],
            )
    urls = [f"https://example.com/recipes/{n}" for n in range(50)]
    broadcast = make_broadcast(
        recipients=1, body="\n\n".join(f"[Recipe {n}]({url})" for n, url in enumerate(urls))
    )

    (message,) = send(broadcast)

    delivery = _delivery(message)
    assert delivery.pk > 9_000_000_000
    tracked = [a["href"] for a in _Tags(_html(message)).anchors if a["href"].startswith(CLICK)]
    assert [_clicked(href, delivery) for href in tracked] == urls
    assert max(len(href) - len(TRACKING_URL) for href in tracked) < 40
    # Fifty links and the pixel cost under 2.5 KB over the untracked message.
    untracked = preview(broadcast, Subscriber.objects.get(account=broadcast.account)).html
    assert len(_html(message)) - len(untracked) < 2_500


def test_the_preview_and_the_test_copy_are_not_tracked(
    make_broadcast,  # noqa: F811
    smtp_sink,  # noqa: F811
    db,
    eager_celery,
    django_capture_on_commit_callbacks,
):
    broadcast = make_broadcast(recipients=1, body=BODY)
    subscriber = Subscriber.objects.get(account=broadcast.account)

    shown = preview(broadcast, subscriber)
    with django_capture_on_commit_callbacks(execute=True):
        broadcast_send_test(broadcast=broadcast, to_email="ann@example.com")

    (test_copy,) = smtp_sink.messages
    for html, text in ((shown.html, shown.text), (_html(test_copy), _text(test_copy))):
        hrefs = [unescape(a["href"]) for a in _Tags(html).anchors if "href" in a]
        assert hrefs[:5] == [web_view_url(broadcast), SOUP, BREAD, SOUP, AUTOLINK]
        assert _Tags(html).images == []
        assert "/t/c/" not in html + text and "/t/o/" not in html + text
        assert f"the soup ({SOUP})" in text
    assert not Link.objects.exists()


def test_the_preview_is_the_sent_html_but_for_the_tracked_urls_and_the_pixel(
    make_broadcast,  # noqa: F811
    send,
):
    broadcast = make_broadcast(
        recipients=1,
        preview_text="Five soups for {{ subscriber.first_name }}",
        body="# Soup\n\n" + BODY + '\n\n<table><tr><td style="color: #c00">Red</td></tr></table>',
    )
    subscriber = Subscriber.objects.get(account=broadcast.account)
    # The preview's unsubscribe link is a test's (it unsubscribes nobody); the sent one is theirs.
    shown = preview(broadcast, subscriber).html.replace(
        unsubscribe_test_token(account=broadcast.account),
        unsubscribe_token(subscriber=subscriber),
    )

    (message,) = send(broadcast)

    delivery = _delivery(message)
    sent = _html(message).replace("\r\n", "\n").rstrip("\n")
    untracked = re.sub(
        rf"{re.escape(CLICK)}[\w-]+",
        lambda match: escape(_clicked(match[0], delivery)),
        re.sub(r"<img [^>]*/t/o/[^>]*>(?=</body>)", "", sent),
    )
    assert untracked == shown
