"""Helpers for the tests of keyset-paged list pages (subscribers' forms, broadcasts)."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.db import connection
from django.test.utils import CaptureQueriesContext


def pager_link(response, text: str) -> str | None:
    """The href of the link whose text starts with `text` ("Older", "← Newer"), or None."""
    match = re.search(r'<a href="([^"]+)"[^>]*>' + re.escape(text), response.content.decode())
    return match.group(1) if match else None


def row_of(response, name: str) -> str:
    """The table row whose link reads `name`."""
    body = response.content.decode()
    start = body.index(f">{name}</a>")
    return body[body.rindex("<tr>", 0, start) : body.index("</tr>", start)]


def keyset_walk_check(client, url: str, *, names_on: Callable, newest_first: list[str]) -> None:
    """Follows "Older" from `url` to the end, then "← Newer" back to the start, asserting that
    every row appears once, in order, 50 a page, and that no query used OFFSET."""
    seen, pages = [], []
    with CaptureQueriesContext(connection) as queries:
        while url:
            response = client.get(url)
            pages.append(url)
            seen += names_on(response)
            url = pager_link(response, "Older")
    assert seen == newest_first
    assert len(pages) == -(-len(newest_first) // 50)
    assert "OFFSET" not in " ".join(query["sql"] for query in queries).upper()

    back = client.get(pager_link(client.get(pages[-1]), "← Newer"))
    assert names_on(back) == newest_first[50:100]
    first = client.get(pager_link(back, "← Newer"))
    assert names_on(first) == newest_first[:50]
    assert pager_link(first, "← Newer") is None


def queries_for_page(client, url: str) -> int:
    """How many queries one fetch of the page makes, once the session is warm."""
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)
