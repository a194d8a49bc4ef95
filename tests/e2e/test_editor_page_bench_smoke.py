"""bench/editor_page.py at a tiny size, so the benchmark cannot rot between full runs (never
timed here): the editor opened in Chromium both ways in, its ready mark read."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.editor_page import measure, seed


@pytest.mark.django_db(transaction=True)
def test_the_editor_page_benchmark_reads_the_ready_mark_both_ways_in(live_server):
    session, path = seed(blocks=3)

    # The bench drives its own Playwright; pytest-playwright's event loop runs in this thread.
    with ThreadPoolExecutor(max_workers=1) as thread:
        figures = thread.submit(
            measure, base=live_server.url, path=path, session=session, repeat=1
        ).result()

    for way in ("same_tab", "new_tab"):
        assert 0 < figures[f"{way}_html_p50_ms"] <= figures[f"{way}_ready_p50_ms"]
        assert 0 < figures[f"{way}_script_p50_ms"] <= figures[f"{way}_ready_p50_ms"]
        assert figures[f"{way}_ready_p50_ms"] <= figures[f"{way}_ready_p95_ms"]
