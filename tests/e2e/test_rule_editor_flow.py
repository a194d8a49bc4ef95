"""The rule editor in Chromium on a phone (375 px wide): the creator opens Rules from the menu,
builds "tag Customer added or someone subscribes to any form → add tag Buyer, subscribe to
sequence Onboarding", adding rows in place by keyboard (htmx puts the focus on the new row),
and sees the rule in words. Without JavaScript the same buttons reload the page and the rule
saves the same. Each row shows only the fields its kind uses, and nothing is wider than the
screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from automations.models import Rule
from tests.automations.rules.conftest import objects_of
from tests.e2e.steps import session_share

PHONE = {"width": 375, "height": 667}
SENTENCE = (
    "When tag Customer is added or someone subscribes to any form → add tag Buyer, "
    "subscribe to sequence Onboarding"
)


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": PHONE, "is_mobile": True, "has_touch": True}


@pytest.fixture
def signed_in(live_server, alice_client, account_a):
    return live_server.url


@pytest.fixture
def customer_id(account_a) -> int:
    return objects_of(account_a).customer.id


def _fits_the_screen(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide"


def _build_rule(page: Page, *, keyboard: bool, customer_id: int) -> None:
    page.get_by_label("Rule name").fill("Buyers")
    first = page.locator("#trigger-0")
    first.get_by_label("When").select_option(label="Tag added")
    expect(first.get_by_label("Tag")).to_be_visible()
    expect(first.get_by_label("Form")).to_be_hidden()
    expect(first.get_by_label("Custom field")).to_be_hidden()
    first.get_by_label("Tag").select_option(label="Customer")

    add = page.get_by_role("button", name="Add another trigger")
    if keyboard:
        add.focus()
        page.keyboard.press("Enter")
        # htmx swapped the rows in and put the focus on the new row's first field.
        expect(page.locator("#trigger-1").get_by_label("When")).to_be_focused()
    else:
        add.click()
    second = page.locator("#trigger-1")
    second.get_by_label("When").select_option(label="Subscribes to a form")
    expect(second.get_by_label("Form")).to_be_visible()
    expect(second.get_by_label("Tag")).to_be_hidden()
    # What was chosen before the row was added stays chosen.
    expect(first.get_by_label("When")).to_have_value("tag_added")
    expect(first.get_by_label("Tag")).to_have_value(str(customer_id))

    action = page.locator("#action-0")
    action.get_by_label("Then").select_option(label="Add tag")
    action.get_by_label("Tag").select_option(label="Buyer")
    page.get_by_role("button", name="Add another action").click()
    page.locator("#action-1").get_by_label("Then").select_option(label="Subscribe to sequence")
    page.locator("#action-1").get_by_label("Sequence").select_option(label="Onboarding")
    _fits_the_screen(page)
    page.get_by_role("button", name="Create rule").click()


def test_build_a_rule_on_a_phone_by_keyboard(page: Page, signed_in, alice_client, customer_id):
    session_share(page, signed_in, alice_client)
    page.set_default_timeout(15_000)
    page.goto(f"{signed_in}/")
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("link", name="Rules").click()
    page.get_by_role("link", name="New rule").click()
    _fits_the_screen(page)
    _build_rule(page, keyboard=True, customer_id=customer_id)

    expect(page.get_by_text("Rule “Buyers” saved.")).to_be_visible()
    expect(page.get_by_text(SENTENCE)).to_be_visible()
    _fits_the_screen(page)
    rule = Rule.objects.get()
    assert list(rule.triggers.order_by("id").values_list("kind", flat=True)) == [
        "tag_added",
        "form_joined",
    ]
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_text("“Buyers” is disabled")).to_be_visible()
    rule.refresh_from_db()
    assert not rule.enabled


def test_build_a_rule_without_javascript(browser, signed_in, alice_client, customer_id):
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(15_000)
    session_share(page, signed_in, alice_client)
    page.goto(f"{signed_in}/automations/rules/new/")
    _build_rule(page, keyboard=False, customer_id=customer_id)
    expect(page.get_by_text(SENTENCE)).to_be_visible()
    assert Rule.objects.get().actions[1]["kind"] == "subscribe_sequence"
    context.close()
