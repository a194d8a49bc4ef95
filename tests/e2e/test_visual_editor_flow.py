"""The visual editor in Chromium: a new broadcast opens in it; the creator writes a heading, a
paragraph with a bold word and a button, undoes and redoes, sees the draft autosaved, and finds
it all again after a reload; on a phone the page never scrolls sideways."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from broadcasts.models import Broadcast
from tests.e2e.steps import session_share

PHONE = {"width": 375, "height": 812}


@pytest.fixture
def signed_in(page: Page, live_server, alice_client):
    page.set_default_timeout(15_000)
    session_share(page, live_server.url, alice_client)
    return live_server.url


def blocks(broadcast: Broadcast) -> list[dict]:
    broadcast.refresh_from_db()
    return json.loads(broadcast.body)["content"]


def test_write_undo_redo_autosave_and_reload_in_the_visual_editor(page: Page, signed_in, account_a):
    page.goto(f"{signed_in}/broadcasts/")
    page.get_by_role("button", name="New broadcast").click()
    expect(page.locator("[data-email-editor][data-ready]")).to_be_visible()
    expect(page.get_by_label("Visual")).to_be_checked()
    expect(page.locator("#broadcast-form").get_by_label("Body")).to_be_hidden()
    broadcast = Broadcast.objects.broadcasts().get(account=account_a)
    page.locator("#broadcast-form").get_by_label("Subject").fill("Soup season")

    text = page.get_by_label("Email content")
    toolbar = page.get_by_role("toolbar", name="Formatting")
    text.click()
    toolbar.get_by_label("Text style").select_option(label="Heading 1")
    page.keyboard.type("Soup season")
    page.keyboard.press("Enter")
    page.keyboard.type("Hot ")
    page.keyboard.press("Control+b")
    page.keyboard.type("soup")
    page.keyboard.press("Control+b")
    page.keyboard.type(" is back.")
    expect(text.locator("h1")).to_have_text("Soup season")
    expect(text.locator("strong")).to_have_text("soup")

    toolbar.get_by_role("button", name="Button", exact=True).click()
    page.get_by_label("Button text").fill("See the recipes")
    page.get_by_label("Button text").press("Enter")
    page.get_by_label("Button link").fill("example.com/soups")
    page.get_by_label("Button link").press("Enter")
    expect(page.get_by_label("Button link")).to_have_value("https://example.com/soups")
    expect(text.get_by_text("See the recipes")).to_be_visible()

    # Undo and redo, by keyboard and by the toolbar.
    page.wait_for_timeout(600)
    text.locator("p", has_text="is back.").click()
    page.keyboard.press("End")
    page.keyboard.type(" Oops")
    expect(text).to_contain_text("is back. Oops")
    page.keyboard.press("Control+z")
    expect(text).not_to_contain_text("Oops")
    toolbar.get_by_role("button", name="Redo").click()
    expect(text).to_contain_text("is back. Oops")
    toolbar.get_by_role("button", name="Undo").click()
    expect(text).not_to_contain_text("Oops")

    # Autosaved, a couple of seconds after the last change.
    expect(page.locator("[data-autosave-status]")).to_have_text(re.compile(r"^Saved \d\d:\d\d$"))
    saved = blocks(broadcast)
    assert broadcast.body_format == "visual" and broadcast.subject == "Soup season"
    assert saved[0] == {
        "type": "heading",
        "attrs": {"level": 1},
        "content": [{"type": "text", "text": "Soup season"}],
    }
    assert {"type": "text", "text": "soup", "marks": [{"type": "bold"}]} in saved[1]["content"]
    button = next(block for block in saved if block["type"] == "button")
    assert button["attrs"] == {
        "text": "See the recipes",
        "href": "https://example.com/soups",
        "background": "#2563eb",
        "color": "#ffffff",
        "align": "center",
    }
    assert "Oops" not in broadcast.body

    page.reload()
    text = page.get_by_label("Email content")
    expect(text.locator("h1")).to_have_text("Soup season")
    expect(text.locator("strong")).to_have_text("soup")
    expect(text.get_by_text("See the recipes")).to_be_visible()

    # Switching to HTML keeps the content as the editor's HTML, and back again.
    form = page.locator("#broadcast-form")
    form.get_by_label("HTML").check()
    expect(form.get_by_label("Body")).to_have_value(
        re.compile(r"^<h1>Soup season</h1><p>Hot <strong>soup</strong>")
    )
    expect(text).to_be_hidden()
    form.get_by_label("Visual").check()
    expect(text.locator("h1")).to_have_text("Soup season")
    expect(text.get_by_text("See the recipes")).to_be_visible()

    # On a phone: the toolbar wraps, the page does not scroll sideways.
    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.locator("[data-email-editor][data-ready]")).to_be_visible()
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1] == PHONE["width"], widths
    toolbar_box = page.get_by_role("toolbar", name="Formatting").bounding_box()
    assert toolbar_box["x"] >= 0 and toolbar_box["x"] + toolbar_box["width"] <= PHONE["width"]
