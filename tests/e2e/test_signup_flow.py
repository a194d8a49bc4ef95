from __future__ import annotations

from playwright.sync_api import Page, expect

from convertkit.models import Account
from tests.e2e.steps import sign_up


def test_creator_signs_up_and_completes_settings(site: str, page: Page):
    sign_up(page, site, email="new.creator@example.com", account_name="Plants Weekly")
    expect(page.get_by_text("add your postal address")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").first.click()
    page.get_by_label("Postal address").fill("3 Greenhouse Lane, Leeds")
    page.get_by_label("Time zone").select_option("Europe/London")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    account = Account.objects.get(name="Plants Weekly")
    assert account.postal_address == "3 Greenhouse Lane, Leeds"
    assert account.time_zone == "Europe/London"


def test_phone_visitor_opens_the_menu_to_navigate(site: str, page: Page):
    page.set_viewport_size({"width": 390, "height": 844})
    sign_up(page, site, email="phone@example.com", account_name="Pocket News")
    menu = page.get_by_role("button", name="Menu")
    subscribers_link = page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Subscribers"
    )
    expect(subscribers_link).to_be_hidden()
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    subscribers_link.click()
    expect(page.get_by_role("heading", name="Subscribers", exact=True)).to_be_visible()
