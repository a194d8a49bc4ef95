"""A new creator's first minutes in Chromium: signing up through the emailed link, settings,
the phone menu; and what a visitor sees of sign-up and login abuse."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from convertkit.models import Account
from tests.conftest import PASSWORD
from tests.e2e.steps import account_mail_take, sign_up
from tests.factories import UserFactory


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


def _signup_answer(page: Page, site: str, email: str) -> str:
    page.goto(f"{site}/signup/")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    return page.locator("main").inner_text()


def test_signing_up_with_a_taken_address_looks_the_same_and_the_owner_is_told_by_email(
    site: str, page: Page
):
    UserFactory(email="ann@example.com")

    taken = _signup_answer(page, site, "ann@example.com")
    free = _signup_answer(page, site, "someone.new@example.com")

    assert taken == free
    assert "already has a login" in account_mail_take("ann@example.com")
    assert "/signup/finish/" in account_mail_take("someone.new@example.com")


def test_too_many_login_attempts_say_when_to_try_again(site: str, page: Page, settings):
    settings.LOGIN_LIMIT_PER_ADDRESS = (3, 900)
    UserFactory(email="ann@example.com")
    page.goto(f"{site}/login/")
    for attempt in ("guess 1", "guess 2", "guess 3", PASSWORD):
        page.get_by_label("Email").fill("ann@example.com")
        page.get_by_label("Password").fill(attempt)
        page.get_by_role("button", name="Log in").click()

    expect(page.get_by_text("Too many login attempts for this address")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Try again in \d+ minutes?\."))).to_be_visible()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
