"""An import whose file has problems, in Chromium with a real worker: the finished page says it
is done, lists the problems by line with their column and reason, and offers them all as CSV."""

from __future__ import annotations

import csv
import io

from playwright.sync_api import Page, expect

from tests.e2e.steps import sign_up

FILE = (
    "E-mail,Given name,Status\n"
    "ann@example.com,Ann,active\n"
    "not an address,Bob,active\n"
    "cid@example.com,Cid\n"
    "dan@example.com,Dan,sleeping\n"
    "ann@example.com,Ann,active\n"
    "eve@example.com,Eve,active\n"
)


def test_an_import_with_problems_lists_them_when_it_is_done(site: str, page: Page):
    sign_up(page, site, email="creator@example.com", account_name="Reading Club")
    page.goto(f"{site}/subscribers/import/")
    page.get_by_label("CSV file").set_input_files(
        {"name": "club.csv", "mimeType": "text/csv", "buffer": FILE.encode()}
    )
    page.get_by_role("button", name="Upload and continue").click()
    page.get_by_role("button", name="Start the import").click()

    expect(page.get_by_role("progressbar")).to_have_attribute(
        "aria-valuenow", "100", timeout=60_000
    )
    expect(
        page.get_by_text("Done: 6 rows read: 2 new, 0 updated, 4 with problems.")
    ).to_be_visible()
    expect(page.get_by_text("started")).to_have_count(0)
    problems = page.get_by_role("region", name="Rows with problems")
    expect(problems.get_by_text("All 4, by line.")).to_be_visible()
    rows = problems.get_by_role("row")
    expect(rows).to_have_count(5)
    assert [rows.nth(n).inner_text().split("\t") for n in range(1, 5)] == [
        ["3", "E-mail", "The email address contains a space."],
        [
            "4",
            "(whole row)",
            "This row has fewer values than the header has columns (2 instead of 3); check "
            "for a missing or extra delimiter.",
        ],
        [
            "5",
            "Status",
            "“sleeping” is not a state; use one of unconfirmed, active, "
            "unsubscribed, bounced, complained.",
        ],
        ["6", "E-mail", "Duplicate of line 2 (the first one was imported)."],
    ]

    with page.expect_download() as download_info:
        problems.get_by_role("link", name="Download them as CSV").click()
    downloaded = download_info.value.path().read_text(encoding="utf-8")
    lines = list(csv.reader(io.StringIO(downloaded)))
    assert lines[0] == ["line", "column", "value", "error"]
    assert [line[:3] for line in lines[1:]] == [
        ["3", "E-mail", "not an address"],
        ["4", "", "cid@example.com"],
        ["5", "Status", "dan@example.com"],
        ["6", "E-mail", "ann@example.com"],
    ]
