"""A broadcast's whole life in Chromium: the creator writes it, watches the live preview follow
(as a chosen subscriber, at mobile width, with a template mistake pointed out by line), sends
a test to herself, sends it after the confirmation, and watches the progress page until done;
the real worker sends every copy through an SMTP sink, exactly once."""

from __future__ import annotations

from collections import Counter

from playwright.sync_api import Page, expect

from broadcasts.models import Broadcast
from convertkit.models import Account
from subscribers.models import Subscriber
from tests.e2e.steps import sign_up, wait_for_messages

READERS = 40


def recipients(message) -> list[str]:
    return [address.addr_spec for address in message["To"].addresses]


def test_compose_preview_test_send_then_watch_it_go_out(site: str, page: Page, settings, mail_sink):
    settings.SITE_URL = site
    sign_up(page, site, email="ann@example.com", account_name="Ann's Kitchen")
    page.goto(f"{site}/settings/")
    page.get_by_label("From address").fill("news@ann.example")
    page.get_by_label("Postal address").fill("1 Main Street, Springfield")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    account = Account.objects.get(name="Ann's Kitchen")
    Subscriber.objects.bulk_create(
        Subscriber(account=account, email=f"reader{n}@example.org", first_name=f"Reader{n}")
        for n in range(READERS)
    )
    Subscriber.objects.create(account=account, email="rita@example.org", first_name="Rita")

    # Compose.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Broadcasts").click()
    page.get_by_role("button", name="New broadcast").click()
    editor = page.locator("#broadcast-form")
    expect(page.locator("#recipient-count")).to_contain_text(f"{READERS + 1} recipients")
    editor.get_by_label("Subject").fill("Soup season, {{ subscriber.first_name }}")
    editor.get_by_label("Preview text").fill("Five soups for cold evenings")
    editor.get_by_label("Body").fill(
        "Hello {{ subscriber.first_name | default: 'friend' }},\n\n**Soup** is back."
    )

    # The live preview follows, as the subscriber chosen.
    preview = page.locator("#broadcast-preview")
    email = page.frame_locator("#broadcast-preview iframe")
    expect(preview).to_contain_text("Soup season, ")
    expect(email.locator("strong", has_text="Soup")).to_be_visible()
    page.get_by_label("Preview as").fill("rita@example.org")
    page.get_by_label("Preview as").press("Enter")
    expect(preview).to_contain_text("Soup season, Rita")
    expect(email.get_by_text("Hello Rita,")).to_be_visible()
    desktop = page.locator(".email-frame").bounding_box()["width"]
    page.get_by_label("Mobile").check()
    expect(page.locator(".email-frame")).to_have_css("width", "375px")
    assert desktop > 375
    page.get_by_label("Desktop").check()

    # A template mistake is pointed out with its line, before anything is sent.
    body = editor.get_by_label("Body")
    body.fill(
        "Hello {{ subscriber.first_name | default: 'friend' }},\n\n{% if %}\n**Soup** is back."
    )
    expect(preview.locator(".template-problems")).to_contain_text("Body, line 3")
    body.fill("Hello {{ subscriber.first_name | default: 'friend' }},\n\n**Soup** is back.")
    expect(preview.locator(".template-problems")).to_have_count(0)

    # A test to the creator: saved first, then mailed.
    editor.get_by_role("button", name="Send a test to me").click()
    expect(page.get_by_text("A test is on its way to ann@example.com.")).to_be_visible()
    (test_copy,) = wait_for_messages(mail_sink, 1)
    assert recipients(test_copy) == ["ann@example.com"]
    assert "Soup season" in test_copy["Subject"]
    broadcast = Broadcast.objects.get(account=account)
    assert broadcast.state == Broadcast.State.DRAFT

    # Send, after the confirmation with the count.
    editor.get_by_role("button", name="Send…").click()
    expect(
        page.get_by_role("heading", name="Send “Soup season, {{ subscriber.first_name }}” now?")
    ).to_be_visible()
    page.get_by_role("button", name=f"Send to {READERS + 1} recipients").click()
    expect(page.get_by_text("Sending has started.")).to_be_visible()

    # The progress page polls until the last copy has gone out.
    progress = page.locator("#broadcast-progress")
    expect(progress).to_contain_text("Done", timeout=60_000)
    expect(progress.locator(".stat").first).to_have_text(f"{READERS + 1}")
    expect(progress.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(progress.get_by_role("button", name="Pause")).to_have_count(0)

    messages = wait_for_messages(mail_sink, READERS + 2)
    copies = Counter(address for message in messages[1:] for address in recipients(message))
    assert set(copies.values()) == {1}
    assert len(copies) == READERS + 1
    rita = next(m for m in messages if recipients(m) == ["rita@example.org"])
    assert rita["Subject"] == "Soup season, Rita"
    assert rita["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # The list shows it sent, to how many.
    page.get_by_role("link", name="← Broadcasts").click()
    row = page.get_by_role("row", name="Soup season")
    expect(row).to_contain_text("Sent")
    expect(row).to_contain_text(f"{READERS + 1}")
