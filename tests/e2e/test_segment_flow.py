"""Segments in Chromium: from the subscriber list the creator opens Segments, creates one with a
tag condition, and sees its live member count (fetched by htmx) on its page; then she picks it
as a broadcast's audience and the recipient count follows. On a phone (375 px wide) the
segment editor and page fit the screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from broadcasts.models import Broadcast
from subscribers.models import Segment
from tests.e2e.steps import session_share
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory, TaggingFactory

PHONE = {"width": 375, "height": 667}


@pytest.fixture
def signed_in(page: Page, live_server, alice_client, account_a):
    """Alice's session in the browser, an account of 5 subscribers (3 tagged soup, one of them
    unsubscribed), and the live site's URL."""
    page.set_default_timeout(15_000)
    session_share(page, live_server.url, alice_client)
    soup = TagFactory(account=account_a, name="soup")
    TagFactory(account=account_a, name="bread")
    CustomFieldFactory(account=account_a, key="city", label="City")
    for n in range(5):
        state = "unsubscribed" if n == 2 else "active"
        subscriber = SubscriberFactory(account=account_a, email=f"r{n}@example.org", state=state)
        if n < 4:
            TaggingFactory(tag=soup, subscriber=subscriber)
    return live_server.url


def create_soup_segment(page: Page, site: str) -> None:
    page.goto(f"{site}/subscribers/")
    page.get_by_role("link", name="Segments").click()
    expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
    page.get_by_role("link", name="Create segment").first.click()
    page.get_by_label("Name").fill("Soup lovers")
    page.get_by_role("group", name="Tagged with", exact=True).get_by_label("soup").check()
    page.get_by_role("button", name="Create segment").click()
    expect(page.get_by_role("heading", name="Soup lovers")).to_be_visible()


def test_create_a_segment_with_a_tag_and_see_its_count_then_send_to_it(
    page: Page, signed_in: str, account_a
):
    create_soup_segment(page, signed_in)

    expect(page.get_by_text("Segment “Soup lovers” created.")).to_be_visible()
    expect(page.get_by_text("All active subscribers tagged with any of “soup”.")).to_be_visible()
    # 4 tagged, one of them unsubscribed: 3 members a broadcast would reach.
    expect(page.locator("#segment-count")).to_have_text(
        "3 active subscribers in this segment right now."
    )
    segment = Segment.objects.get(account=account_a)
    assert segment.include_tag_ids == [account_a.tag_set.get(name="soup").id]

    broadcast = Broadcast.objects.create(account=account_a, subject="Soup season", body="Hi")
    page.goto(f"{signed_in}/broadcasts/{broadcast.id}/")
    count = page.locator("#recipient-count")
    expect(count).to_contain_text("4 recipients")
    page.get_by_label("Segment").select_option(label="Soup lovers")
    expect(count).to_contain_text("3 recipients")


@pytest.fixture
def browser_context_args(browser_context_args, request):
    if "phone" in request.node.name:
        return {**browser_context_args, "viewport": PHONE, "is_mobile": True, "has_touch": True}
    return browser_context_args


def fits_the_screen(page: Page) -> None:
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for control in page.locator("main input:visible, main select:visible, main .button").all():
        box = control.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, control.get_attribute("name")


def test_the_segment_editor_and_page_fit_a_phone(page: Page, signed_in: str):
    page.goto(f"{signed_in}/subscribers/segments/new/")
    fits_the_screen(page)
    # A custom field condition's field, comparison and value stack rather than squeeze.
    row = page.locator(".field-condition").first
    key, value = row.get_by_label("Custom field"), row.get_by_label("Value")
    assert value.bounding_box()["y"] > key.bounding_box()["y"]
    create_soup_segment(page, signed_in)
    expect(page.locator("#segment-count")).to_contain_text("3 active subscribers")
    fits_the_screen(page)
