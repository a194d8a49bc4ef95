"""The whole life of a signup, in Chromium: a creator builds a form, pastes its embed code on a
site of another origin, a visitor subscribes there, reads the confirmation in the SMTP sink,
confirms, and later leaves with the one-click unsubscribe POST of RFC 8058."""

from __future__ import annotations

import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, Playwright, expect

from convertkit.dev.devstack import free_port
from subscribers.models import Subscriber
from tests.e2e.steps import build_form, sign_up, wait_for_messages

CONFIRM_URL_RE = re.compile(r"(http://\S+/f/confirm/\S+/)")


@pytest.fixture
def other_origin(tmp_path):
    """A creator's own website: a static server on another port, hence another origin."""
    root = tmp_path / "site"
    root.mkdir()
    server = ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(SimpleHTTPRequestHandler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_build_embed_subscribe_confirm_then_one_click_unsubscribe(
    site: str, page: Page, playwright: Playwright, settings, mail_sink, other_origin
):
    settings.SITE_URL = site
    sign_up(page, site, email="ann@example.com", account_name="Ann's Kitchen")
    page.goto(f"{site}/settings/")
    page.get_by_label("Postal address").fill("1 Main Street, Springfield")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()

    build_form(page, site, name="Weekly recipes", tag="recipes", double_opt_in=True)
    embed_code = page.locator("textarea[readonly]").first.input_value()
    assert "/f/embed.js" in embed_code
    root, origin = other_origin
    (root / "index.html").write_text(
        f"<!doctype html><html><head><meta charset=utf-8><title>Ann's blog</title></head>"
        f"<body><h1>Ann's blog</h1>{embed_code}</body></html>",
        encoding="utf-8",
    )

    visitor = page.context.browser.new_context()  # no cookies of the creator's session
    blog = visitor.new_page()
    blog.goto(f"{origin}/index.html")
    blog.get_by_label("Email address").fill("reader@example.org")
    blog.get_by_label("First name").fill("Rita")
    blog.get_by_role("button", name="Subscribe").click()
    expect(blog.get_by_text("Now check your email to confirm")).to_be_visible()
    assert blog.url == f"{origin}/index.html"  # answered inline by the embed script
    subscriber = Subscriber.objects.get(email="reader@example.org")
    assert subscriber.state == Subscriber.State.UNCONFIRMED

    confirmation = wait_for_messages(mail_sink, 1, timeout=20.0)[0]
    assert confirmation["To"].addresses[0].addr_spec == "reader@example.org"
    body = confirmation.get_body(preferencelist=("plain",)).get_content()
    blog.goto(CONFIRM_URL_RE.search(body)[1])
    expect(blog.get_by_role("heading", name="You are subscribed")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.ACTIVE
    assert [t.tag.name for t in subscriber.taggings.select_related("tag")] == ["recipes"]

    assert confirmation["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https_url = re.search(r"<(http[^>]+)>", confirmation["List-Unsubscribe"])[1]
    mail_client = playwright.request.new_context()  # a mail provider: no cookies, no session
    answer = mail_client.post(https_url, form={"List-Unsubscribe": "One-Click"}, max_redirects=0)
    assert answer.status == 200
    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.UNSUBSCRIBED
    mail_client.dispose()
    visitor.close()
