"""The broadcast pages on a phone (375 x 667 CSS pixels, an iPhone SE's): while the creator
writes, what stays pinned over the editor (the site's header, the save bar) leaves most of the
screen to the writing; the progress page's figures sit side by side in a grid, not in one long
column."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from broadcasts.models import Broadcast
from tests.e2e.steps import session_share

PHONE = {"width": 375, "height": 667}
# At most this share of the screen may stay pinned over the page while writing.
PINNED_SHARE = 0.15

# The share of the viewport's height, down the middle of the screen, where what is on top is
# pinned (position fixed or sticky, or inside such an element): what covers the page.
PINNED_JS = """
() => {
  const x = Math.floor(window.innerWidth / 2);
  let covered = 0;
  for (let y = 0; y < window.innerHeight; y++) {
    for (let el = document.elementFromPoint(x, y); el; el = el.parentElement) {
      const position = getComputedStyle(el).position;
      if (position === "fixed" || position === "sticky") { covered++; break; }
    }
  }
  return covered / window.innerHeight;
}
"""


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": PHONE, "is_mobile": True, "has_touch": True}


@pytest.fixture
def signed_in(page: Page, live_server, alice_client):
    """Alice's session in the browser, and the live site's URL."""
    page.set_default_timeout(15_000)
    session_share(page, live_server.url, alice_client)
    return live_server.url


def test_writing_on_a_phone_leaves_the_screen_to_the_editor(page: Page, signed_in, account_a):
    broadcast = Broadcast.objects.create(account=account_a, subject="Soup season", body="Hello")
    page.goto(f"{signed_in}/broadcasts/{broadcast.id}/")
    body = page.locator("#broadcast-form").get_by_label("Body")
    body.click()
    body.press("End")
    body.type("\n\nA line written on the phone.")
    # The field where the creator writes, in the middle of the screen.
    body.evaluate("field => field.scrollIntoView({block: 'center'})")

    pinned = page.evaluate(PINNED_JS)
    assert pinned <= PINNED_SHARE, f"{pinned:.0%} of the screen is pinned over the editor"
    # The save bar is still at hand, on one line, and saves.
    savebar = page.locator(".builder-savebar")
    expect(savebar).to_be_in_viewport()
    save = savebar.get_by_role("button", name="Save", exact=True)
    assert savebar.bounding_box()["height"] < 2 * save.bounding_box()["height"]
    for control in savebar.locator("button:visible, a").all():
        box = control.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], control.inner_text()
    save.click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    broadcast.refresh_from_db()
    assert broadcast.body.endswith("A line written on the phone.")


def test_the_progress_figures_form_a_grid_on_a_phone(page: Page, signed_in, account_a):
    broadcast = Broadcast.objects.create(
        account=account_a,
        subject="Soup season",
        body="Hello",
        state=Broadcast.State.SENDING,
        send_started_at=timezone.now() - timedelta(minutes=10),
        recipient_count=1_250_000,
        sent_count=1_000_000,
        failed_count=12,
        skipped_count=8,
    )
    page.goto(f"{signed_in}/broadcasts/{broadcast.id}/progress/")
    figures = page.locator(".progress-figures > div")
    expect(figures.first).to_be_visible()
    boxes = [figures.nth(n).bounding_box() for n in range(figures.count())]
    columns = {round(box["x"]) for box in boxes}
    rows = {round(box["y"]) for box in boxes}
    assert len(columns) >= 2, f"{len(boxes)} figures in one column"
    assert len(rows) <= -(-len(boxes) // 2)
    # Nothing spills out of its cell or off the screen.
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for n in range(figures.count()):
        cell = figures.nth(n)
        assert cell.evaluate("cell => cell.scrollWidth <= cell.clientWidth"), cell.inner_text()


def test_the_report_figures_form_a_grid_on_a_phone(page: Page, signed_in, account_a):
    broadcast = Broadcast.objects.create(
        account=account_a,
        subject="Soup season",
        body="Hello",
        state=Broadcast.State.SENT,
        send_started_at=timezone.now() - timedelta(hours=2),
        sent_at=timezone.now() - timedelta(hours=1),
        recipient_count=1_250_000,
        sent_count=1_250_000,
    )
    page.goto(f"{signed_in}/broadcasts/{broadcast.id}/report/")
    figures = page.locator(".report-figures > div")
    expect(figures.first).to_be_visible()
    boxes = [figures.nth(n).bounding_box() for n in range(figures.count())]
    assert len({round(box["x"]) for box in boxes}) >= 2, f"{len(boxes)} figures in one column"
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
