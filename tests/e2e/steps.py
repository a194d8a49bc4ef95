"""Steps the browser tests share."""

from __future__ import annotations

from playwright.sync_api import Page, expect


def sign_up(page: Page, site: str, *, email: str, account_name: str) -> None:
    page.goto(f"{site}/signup/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("a long enough passphrase 7")
    page.get_by_label("Name of your newsletter or business").fill(account_name)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
