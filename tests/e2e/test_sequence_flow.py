"""A sequence built in Chromium: the creator opens Sequences from the main navigation, creates
one, writes two emails in the broadcast editor's email part (the live preview follows), gives
the second a delay, publishes both and sees them listed in order with their delays; then, on a
phone (375 CSS pixels wide), the page fits the screen, an email moves up from the keyboard and
the settings save."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from sequences.models import Sequence
from tests.e2e.steps import create_sequence, session_share, write_email

PHONE = {"width": 375, "height": 667}
# Whether anything makes the page wider than the screen (a sideways scroll of the whole page).
OVERFLOW_JS = "() => document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture
def signed_in(page: Page, live_server, alice_client):
    """Alice's session in the browser, and the live site's URL."""
    page.set_default_timeout(15_000)
    session_share(page, live_server.url, alice_client)
    return live_server.url


def test_build_a_two_email_sequence_and_use_it_on_a_phone(page: Page, signed_in, account_a):
    page.goto(f"{signed_in}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sequences").click()
    expect(page.get_by_role("heading", name="Create your first sequence")).to_be_visible()
    create_sequence(page, signed_in, name="Soup school")

    # The first email: immediate.
    page.get_by_role("button", name="Add an email").click()
    expect(page.get_by_role("heading", name="Email 1: Untitled")).to_be_visible()
    write_email(page, subject="Welcome to soup school", body="Hello {{ subscriber.first_name }}!")
    email = page.frame_locator("#broadcast-preview iframe")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_text("“Welcome to soup school” is published.")).to_be_visible()

    # The second: two days after the first.
    page.get_by_role("button", name="Add an email at the end").click()
    expect(page.get_by_role("heading", name="Email 2: Untitled")).to_be_visible()
    write_email(page, subject="Lesson one: stock", body="Bones, water, **time**.")
    expect(email.locator("strong", has_text="time")).to_be_visible()
    timing = page.locator("#timing")
    timing.get_by_label("Delay").fill("2")
    timing.get_by_label("Unit").select_option("days")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_text("“Lesson one: stock” is published.")).to_be_visible()

    emails = page.locator(".sequence-email")
    expect(emails).to_have_count(2)
    expect(emails.nth(0)).to_contain_text("Welcome to soup school")
    expect(emails.nth(0)).to_contain_text("Immediately")
    expect(emails.nth(1)).to_contain_text("Lesson one: stock")
    expect(emails.nth(1)).to_contain_text("2 days after the previous email")
    for n in range(2):
        expect(emails.nth(n).locator(".badge")).to_have_text("Published")
    # Where the subscribers stand arrives once the page has shown.
    expect(page.locator("#count-active .stat")).to_have_text("0")
    expect(page.locator("#positions")).to_contain_text("Nobody is in this sequence yet.")

    page.get_by_role("link", name="← Sequences").click()
    row = page.locator("tr", has_text="Soup school")
    expect(row).to_contain_text("Active")
    expect(row.locator("td[data-label=Emails]")).to_have_text("2")
    expect(row.locator("td[data-label=Subscribers]")).to_have_text("0")

    # On a phone.
    page.set_viewport_size(PHONE)
    row.get_by_role("link", name="Soup school").click()
    expect(page.get_by_role("heading", name="Soup school", exact=True)).to_be_visible()
    assert page.evaluate(OVERFLOW_JS) <= 0, "the sequence page is wider than a phone"
    for n in range(2):
        box = emails.nth(n).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    # Move the second email up, from the keyboard.
    move = page.get_by_role("button", name="Move email 2 up")
    move.focus()
    page.keyboard.press("Enter")
    expect(emails.nth(0)).to_contain_text("Lesson one: stock")
    expect(emails.nth(1)).to_contain_text("Welcome to soup school")
    assert page.evaluate(OVERFLOW_JS) <= 0

    settings = page.locator("#settings")
    settings.get_by_role("combobox", name="Send time").select_option("07:00")
    settings.get_by_label("Sat").uncheck()
    settings.get_by_label("Sun").uncheck()
    settings.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    expect(page.get_by_text("Sends on weekdays at 07:00 (Europe/Paris).")).to_be_visible()
    sequence = Sequence.objects.get(account=account_a)
    assert (sequence.send_hour, sequence.send_days) == (7, [0, 1, 2, 3, 4])

    # The email editor fits the phone too.
    page.get_by_role("link", name="Edit email 1").click()
    expect(page.get_by_role("heading", name="Email 1: Lesson one: stock")).to_be_visible()
    assert page.evaluate(OVERFLOW_JS) <= 0, "the email editor is wider than a phone"
