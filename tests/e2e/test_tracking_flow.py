"""Tracking in Chromium: a broadcast goes out through the real worker and SMTP sink, a reader's
browser loads the message's pixel and follows its link (redirected to the linked page), the
events are drained into PostgreSQL, and the report shows the open, the click, the link and the
chart of them. A second reader, whose mail client blocks images, follows the link without
loading the pixel: the report counts them as having opened it too."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from broadcasts.models import Broadcast
from convertkit.models import Account
from subscribers.models import Subscriber
from tests.broadcasts.conftest import wait_until
from tests.e2e.steps import sign_up, wait_for_messages
from tracking.drain import tracking_drain
from tracking.models import Rollup

READER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)


@pytest.fixture
def browser_context_args(browser_context_args):
    # A reader's browser: headless Chromium's own agent is a link scanner's.
    return {**browser_context_args, "user_agent": READER_AGENT}


def html_part(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def test_an_open_and_a_click_from_the_sent_email_show_in_the_report(
    site: str, page: Page, settings, mail_sink
):
    settings.SITE_URL = settings.TRACKING_URL = site
    settings.TRACKING_SCANNER_SECONDS = 0
    sign_up(page, site, email="ann@example.com", account_name="Ann's Kitchen")
    account = Account.objects.get(name="Ann's Kitchen")
    Account.objects.filter(pk=account.pk).update(
        sender_email="news@ann.example", postal_address="1 Main Street, Springfield"
    )
    for name in ("Rita", "Sam"):
        Subscriber.objects.create(account=account, email=f"{name.lower()}@example.org")

    page.goto(f"{site}/broadcasts/")
    page.get_by_role("button", name="New broadcast").click()
    editor = page.locator("#broadcast-form")
    editor.get_by_label("Subject").fill("Soup season")
    # The link leads to a page of the live site: the browser has no other web to reach.
    recipes = f"{site}/health/?from=soup"
    editor.get_by_label("Markdown").check()
    editor.get_by_label("Body").fill(f"Hello,\n\n[Five soups]({recipes}) to try.")
    editor.get_by_role("button", name="Send…").click()
    page.get_by_role("button", name="Send to 2 recipients").click()
    expect(page.locator("#broadcast-progress")).to_contain_text("Done", timeout=60_000)

    messages = wait_for_messages(mail_sink, 2)
    rita = next(m for m in messages if "rita@example.org" in m["To"])
    html = html_part(rita)
    assert recipes not in html and recipes.replace("&", "&amp;") not in html
    (click_url,) = re.findall(rf'href="({re.escape(site)}/t/c/[^"]+)"', html)
    (pixel_url,) = re.findall(rf'src="({re.escape(site)}/t/o/[^"]+)"', html)

    # Rita's mail client loads the pixel; she follows the link to the creator's page.
    pixel = page.request.get(pixel_url)
    assert pixel.status == 200 and pixel.headers["content-type"] == "image/gif"
    page.goto(click_url)
    expect(page).to_have_url(recipes)
    # Sam's blocks images: only his click is recorded.
    sam = next(m for m in messages if "sam@example.org" in m["To"])
    (sams_click,) = re.findall(rf'href="({re.escape(site)}/t/c/[^"]+)"', html_part(sam))
    page.goto(sams_click)
    expect(page).to_have_url(recipes)

    # The web process hands the events to Redis within 100 ms; a drain writes them.
    broadcast = Broadcast.objects.get(account=account)

    def drained() -> bool:
        tracking_drain(budget_s=1)
        counts = Rollup.objects.filter(broadcast_id=broadcast.pk, link_id=0).values_list(
            "human_unique_opens", "human_unique_clicks"
        )
        return sum(o for o, _ in counts) == 2 and sum(c for _, c in counts) == 2

    wait_until(drained, timeout=15)

    page.goto(f"{site}/broadcasts/{broadcast.pk}/report/")
    expect(page.locator("#recipients .stat")).to_have_text("2")
    # Both opened (Sam's click says he did), both clicked: never more clickers than openers.
    expect(page.locator("#open-rate .stat")).to_have_text("100.0%")
    expect(page.locator("#open-rate .human-count")).to_have_text("2")
    expect(page.locator("#click-rate .stat")).to_have_text("100.0%")
    chart = page.locator("svg[role='img']").first
    expect(chart).to_be_visible()
    link_row = page.get_by_role("row").filter(has_text=recipes)
    expect(link_row).to_have_count(1)
    expect(link_row.get_by_role("cell").nth(1)).to_have_text("2")
