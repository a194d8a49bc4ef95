"""A subscriber opens the unsubscribe link of an email in Chromium and leaves the list."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from subscribers.models import StateChange, Subscriber
from subscribers.unsubscribe import LINK_REASON, unsubscribe_url
from tests.factories import AccountFactory, SubscriberFactory


def test_open_the_link_click_unsubscribe_and_leave_the_list(site: str, page: Page, settings):
    settings.SITE_URL = site
    account = AccountFactory(name="Reading Club")
    subscriber = SubscriberFactory(account=account, email="zoe@example.net")

    page.goto(unsubscribe_url(subscriber=subscriber))
    expect(page.get_by_role("heading", name="Unsubscribe from Reading Club")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.ACTIVE

    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    expect(
        page.get_by_text("zoe@example.net will get no more emails from Reading Club")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Subscribe again")).to_be_visible()

    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.UNSUBSCRIBED
    assert StateChange.objects.get(subscriber=subscriber).reason == LINK_REASON
