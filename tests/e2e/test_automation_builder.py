"""The automation builder in a browser: steps added in place by keyboard (htmx swaps the flow
and puts the focus on what opened), a condition's branches side by side on a desktop and one
above the other on a phone (375 CSS pixels), with nothing wider than the screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.automations.flows import objects_of, tagged_flow
from tests.e2e.steps import session_share

PHONE = {"width": 375, "height": 667}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def builder_page(page: Page, live_server, alice_client, account_a):
    """Alice on the builder of "Welcome" (entered when "Customer" is added, no steps yet)."""
    page.set_default_timeout(15_000)
    session_share(page, live_server.url, alice_client)
    automation = tagged_flow(account_a, objects_of(account_a))
    page.goto(f"{live_server.url}/automations/{automation.pk}/")
    return automation


def _press(page: Page, control, then: str) -> None:
    """Enter on `control`; htmx swaps the flow, and once it has settled the focus is on `then`
    (what opened, or the notice of what was done)."""
    control.press("Enter")
    expect(page.locator(then)).to_be_focused()


def _branching_flow_build(page: Page) -> None:
    """By keyboard: a condition at the start, a delay under "Yes", an exit under "No"."""
    _press(page, page.get_by_role("link", name="Add a step at the start"), ".flow-panel-heading")
    expect(page.locator(".flow-panel-heading")).to_contain_text("Add a step")
    _press(page, page.get_by_role("link", name="Has a tag"), ".flow-panel-heading")
    page.get_by_role("combobox", name="Tag").select_option(label="Customer")
    _press(page, page.get_by_role("button", name="Add step"), ".flow-notice")
    expect(page.locator(".flow-notice")).to_have_text("Step added: Condition: Has a tag.")
    _press(
        page,
        page.get_by_role("link", name="Add a step under “Yes” of “Has the tag “Customer”?”"),
        ".flow-panel-heading",
    )
    _press(page, page.get_by_role("link", name="Delay"), ".flow-panel-heading")
    page.get_by_role("spinbutton", name="Wait").fill("2")
    _press(page, page.get_by_role("button", name="Add step"), ".flow-notice")
    _press(
        page,
        page.get_by_role("link", name="Add a step under “No” of “Has the tag “Customer”?”"),
        ".flow-panel-heading",
    )
    _press(page, page.get_by_role("button", name="Exit"), ".flow-notice")
    expect(page.locator(".flow-branch-yes")).to_contain_text("Wait 2 days")
    expect(page.locator(".flow-branch-no")).to_contain_text("Exit the automation")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_branching_flow_is_built_by_keyboard_and_drawn_to_fit(page: Page, builder_page, viewport):
    page.set_viewport_size(viewport)
    _branching_flow_build(page)
    yes = page.locator(".flow-branch-yes").bounding_box()
    no = page.locator(".flow-branch-no").bounding_box()
    if viewport is PHONE:
        assert yes["y"] + yes["height"] <= no["y"], "the branches are one above the other"
    else:
        assert yes["x"] + yes["width"] <= no["x"] and abs(yes["y"] - no["y"]) < 1
    assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
    page.screenshot(path=f"/tmp/flow-{viewport['width']}.png", full_page=True)
    for card in page.locator(".flow-card").all():
        box = card.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
