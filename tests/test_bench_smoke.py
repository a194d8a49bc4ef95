"""bench/pages.py at a tiny size, so the benchmark cannot rot between full runs (never timed here)."""

from __future__ import annotations

import json
from io import StringIO

import pytest

from bench.pages import COUNT_SQL_START, PAGE_TABLES, PAGES, bench_run, table_print
from broadcasts.models import Broadcast
from subscribers.models import Form, Segment, Subscriber


@pytest.mark.django_db(transaction=True)
def test_the_pages_benchmark_measures_every_page_and_the_import_at_a_tiny_size():
    figures = bench_run(
        subscribers=400,
        small=200,
        forms=120,
        small_forms=60,
        broadcasts=70,
        small_broadcasts=55,
        import_rows=300,
        repeat=2,
        say=lambda *args, **kwargs: None,
    )

    for key in ("p95_ms", "small_p95_ms", "limit_p95_ms"):
        assert set(figures[key]) == set(PAGES)
        assert all(value > 0 for value in figures[key].values())
    assert figures["import_rows_per_s"] > 0
    assert figures["limit_copy_rows_per_s"] > 0
    assert Subscriber.objects.count() == 600
    details = figures["_details"]
    limits = dict(details["rows_sql"])
    assert limits.pop("members").startswith(COUNT_SQL_START)
    assert all(PAGE_TABLES[page] in sql and "LIMIT" in sql for page, sql in limits.items())
    assert "/subscribers/segments/" in details["urls"]["segment"]
    assert Form.objects.count() == 180
    assert Broadcast.objects.count() == 125
    assert Segment.objects.count() == 2
    assert "?q=" in details["urls"]["search"] and "%2B" in details["urls"]["search"]
    out = StringIO()
    table_print(figures, out=out)
    assert all(page in out.getvalue() for page in PAGES)
    json.dumps({key: value for key, value in figures.items() if key != "_details"})
