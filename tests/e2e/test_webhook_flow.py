"""Webhooks in the browser, on a phone (375 px): the creator adds an endpoint for "Tag added"
pointing at a real local receiver, a subscriber is tagged, the delivery arrives signed with the
secret the page shows and is in the log as delivered; Resend sends the same event again."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from automations.engine import events_consume_safely
from subscribers.services import subscribers_tag
from tests.e2e.steps import session_share
from tests.factories import SubscriberFactory, TagFactory
from tests.webhooks.conftest import Receiver
from webhooks.delivery import deliveries_send

PHONE = {"width": 375, "height": 667}
NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": PHONE, "is_mobile": True, "has_touch": True}


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


def test_an_endpoint_added_on_a_phone_receives_a_signed_delivery_and_a_resend(
    page: Page, live_server, alice_client, account_a, receiver
):
    page.set_default_timeout(15_000)
    session_share(page, live_server.url, alice_client)
    tag = TagFactory(account=account_a, name="Customer")
    subscriber = SubscriberFactory(account=account_a, email="ada@example.com")

    page.goto(f"{live_server.url}/settings/")
    page.get_by_role("link", name="Webhooks", exact=True).click()
    page.get_by_role("link", name="Add endpoint").first.click()
    page.get_by_label("Endpoint URL").fill(receiver.url)
    page.get_by_label("Name").fill("Shop")
    page.get_by_label("Tag added (subscriber.tag_added)").check()
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_role("heading", name="Shop")).to_be_visible()
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    page.get_by_text("Signing secret", exact=True).click()
    receiver.secret = page.locator("#webhook-secret").inner_text().strip()

    subscribers_tag(account_id=account_a.id, tag_id=tag.id, subscriber_ids=[subscriber.id])
    events_consume_safely(now=timezone.now())
    deliveries_send(now=timezone.now())
    assert len(receiver.received) == 1
    first = receiver.received[0]
    assert first.signature_ok
    event = first.json["events"][0]
    assert event["type"] == "subscriber.tag_added"
    assert event["data"]["subscriber"]["email_address"] == "ada@example.com"

    page.reload()
    row = page.locator("tbody tr").first
    expect(row).to_contain_text("Delivered")
    expect(row).to_contain_text("HTTP 200")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    row.get_by_role("link").click()
    expect(page.get_by_text(event["id"])).to_be_visible()
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    page.get_by_role("button", name="Resend").click()
    expect(page.get_by_text("Resending as delivery")).to_be_visible()

    deliveries_send(now=timezone.now())
    assert len(receiver.received) == 2
    again = receiver.received[1]
    assert again.signature_ok
    assert again.json["events"][0]["id"] == event["id"]
    assert again.json["delivery_id"] != first.json["delivery_id"]
    page.reload()
    expect(page.locator(".page-header .badge")).to_have_text("Delivered")
