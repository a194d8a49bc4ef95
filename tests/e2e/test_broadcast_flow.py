"""A broadcast's whole life in Chromium: the creator writes it, watches the live preview follow
(as a chosen subscriber, at mobile width, with a template mistake pointed out by line), sends
a test to herself, sends it after the confirmation, and watches the progress page until done;
the real worker sends every copy through an SMTP sink, exactly once. Every page names it by its
subject as a sample subscriber gets it, never by its Liquid. When a worker's death leaves some
deliveries unknown, the progress page lets her send those again."""

from __future__ import annotations

import re
from collections import Counter

from playwright.sync_api import Page, expect

from broadcasts.models import Broadcast, Delivery
from broadcasts.services import broadcast_send
from convertkit.models import Account
from subscribers.models import Subscriber
from tests.broadcasts.conftest import wait_until
from tests.e2e.steps import session_share, sign_up, wait_for_messages

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
    editor.get_by_label("Markdown").check()
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
    expect(page.get_by_role("heading", name="Send “Soup season, Jane” now?")).to_be_visible()
    page.get_by_role("button", name=f"Send to {READERS + 1} recipients").click()
    expect(page.get_by_text("Sending has started.")).to_be_visible()

    # The progress page polls until the last copy has gone out.
    expect(page.get_by_role("heading", name="Soup season, Jane", level=1)).to_be_visible()
    expect(page).to_have_title(re.compile(r"^Soup season, Jane · "))
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

    # The list shows it sent, to how many, by name.
    page.get_by_role("link", name="← Broadcasts").click()
    row = page.get_by_role("row", name="Soup season, Jane")
    expect(row).to_contain_text("Sent")
    expect(row.locator("td[data-label='Sent']")).to_have_text(f"{READERS + 1}")
    expect(page.locator("main")).not_to_contain_text("{{")


def test_unknown_deliveries_are_sent_again_when_the_creator_chooses_to(
    site: str, page: Page, settings, mail_sink, alice_client, account_a
):
    settings.SITE_URL = site
    for n in range(5):
        Subscriber.objects.create(account=account_a, email=f"reader{n}@example.org")
    broadcast = Broadcast.objects.create(
        account=account_a, subject="Soup season, {{ subscriber.first_name }}", body="Hello"
    )
    assert broadcast_send(broadcast=broadcast)
    wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).state == Broadcast.State.SENT)
    wait_for_messages(mail_sink, 5)
    # A worker was killed while handing two of them over: the sweeper marked them unknown.
    lost = list(broadcast.delivery_set.order_by("id")[:2])
    Delivery.objects.filter(pk__in=[d.pk for d in lost]).update(state=Delivery.State.UNKNOWN)
    Broadcast.objects.filter(pk=broadcast.pk).update(sent_count=3, unknown_count=2)

    session_share(page, site, alice_client)
    page.goto(f"{site}/broadcasts/{broadcast.pk}/progress/")
    unknown = page.locator("#unknown-deliveries")
    expect(unknown).to_contain_text("Unknown outcome: 2 recipients")
    expect(unknown.get_by_role("button", name="Leave them")).to_be_visible()
    unknown.get_by_role("button", name="Send the 2 again").click()

    expect(page.get_by_text("2 emails queued to go out again.")).to_be_visible()
    expect(page.locator("#broadcast-progress")).to_contain_text("Done", timeout=60_000)
    expect(page.locator("#unknown-deliveries")).to_contain_text("you chose to send 2 emails")
    messages = wait_for_messages(mail_sink, 7)
    again = Counter(address for message in messages[5:] for address in recipients(message))
    assert again == {d.subscriber.email: 1 for d in lost}
    broadcast.refresh_from_db()
    assert (broadcast.sent_count, broadcast.unknown_count) == (5, 0)
