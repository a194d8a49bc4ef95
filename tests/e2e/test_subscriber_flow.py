"""The creator's main subscriber flow, clicked through in Chromium with a real worker behind it:
sign up -> add a subscriber -> import a CSV and watch its progress -> search -> tag -> export."""

from __future__ import annotations

import csv
import io

from playwright.sync_api import Page, expect

from subscribers.models import Subscriber, Tag
from tests.e2e.steps import sign_up

CSV_ROWS = [
    ("Email Address", "First Name"),
    ("zoe.quinn@example.net", "Zoe"),
    ("mark.twain@example.net", "Mark"),
    ("Ann@Example.com", "Ann again"),  # already added by hand: updated, not duplicated
    ("not-an-address", "Broken"),
    *((f"reader{n}@example.net", f"Reader {n}") for n in range(200)),
]


def _csv_bytes() -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(CSV_ROWS)
    return buffer.getvalue().encode("utf-8")


def test_sign_up_add_import_search_tag_export(site: str, page: Page):
    sign_up(page, site, email="creator@example.com", account_name="Reading Club")

    # Add a subscriber by hand.
    page.get_by_role("link", name="Add a subscriber").first.click()
    page.get_by_label("Email address").fill("ann@example.com")
    page.get_by_label("First name").fill("Ann")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.get_by_role("heading", name="ann@example.com")).to_be_visible()

    # Import a CSV, map its columns, and watch the progress bar reach the end.
    page.goto(f"{site}/subscribers/import/")
    page.get_by_label("CSV file").set_input_files(
        {"name": "club.csv", "mimeType": "text/csv", "buffer": _csv_bytes()}
    )
    page.get_by_role("button", name="Upload and continue").click()
    expect(page.get_by_role("heading", name="Import club.csv")).to_be_visible()
    page.get_by_label("Tag everyone in this file with").fill("book club")
    page.get_by_role("button", name="Start the import").click()
    progress = page.get_by_role("progressbar")
    expect(progress).to_be_visible()
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    problems = page.get_by_role("region", name="Rows with problems")
    expect(problems.get_by_role("row")).to_have_count(2)  # the header and line 5
    expect(problems.get_by_role("cell", name="5", exact=True)).to_be_visible()

    account = Tag.objects.get(name="book club").account
    assert Subscriber.objects.filter(account=account).count() == 203
    assert (
        Subscriber.objects.get(account=account, email="ann@example.com").first_name == "Ann again"
    )

    # Search narrows the list without a page load.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Subscribers").click()
    page.get_by_role("searchbox").fill("zoe")
    results = page.locator("#subscriber-results")
    expect(results.get_by_role("link", name="zoe.quinn@example.net")).to_be_visible()
    expect(results.get_by_role("link", name="mark.twain@example.net")).to_have_count(0)

    # Tag the one subscriber found.
    results.get_by_role("link", name="zoe.quinn@example.net").click()
    page.get_by_label("Tag name").fill("vip")
    page.get_by_role("button", name="Add tag").click()
    expect(page.locator(".tag", has_text="vip")).to_be_visible()
    zoe = Subscriber.objects.get(account=account, email="zoe.quinn@example.net")
    assert sorted(zoe.taggings.values_list("tag__name", flat=True)) == ["book club", "vip"]

    # Export everything as CSV and read it back.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Subscribers").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export").click()
    exported = download_info.value.path().read_text(encoding="utf-8")
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(exported))}
    assert len(rows) == 203
    assert "vip" in rows["zoe.quinn@example.net"]["tags"]
    assert rows["ann@example.com"]["first_name"] == "Ann again"
