from __future__ import annotations

from playwright.sync_api import Page, expect

from convertkit.models import Account


def test_creator_signs_up_and_completes_settings(site: str, page: Page):
    page.goto(f"{site}/signup/")
    page.get_by_label("Email").fill("new.creator@example.com")
    page.get_by_label("Password").fill("a long enough passphrase 7")
    page.get_by_label("Name of your newsletter or business").fill("Plants Weekly")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text("add your postal address")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").first.click()
    page.get_by_label("Postal address").fill("3 Greenhouse Lane, Leeds")
    page.get_by_label("Time zone").select_option("Europe/London")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    account = Account.objects.get(name="Plants Weekly")
    assert account.postal_address == "3 Greenhouse Lane, Leeds"
    assert account.time_zone == "Europe/London"
