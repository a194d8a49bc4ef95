"""bench/api_overhead.py and bench/api.py at tiny sizes, so the benchmarks cannot rot (never timed
here)."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from bench.api import bench_run as api_bench_run
from bench.api import table_print
from bench.pages import bench_database_url
from subscribers.models import Subscriber


def test_the_api_overhead_benchmark_prints_its_figures():
    bench = Path(__file__).resolve().parent.parent / "bench" / "api_overhead.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--requests", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(figures) == [
        "bench",
        "requests",
        "django_req_per_s",
        "drf_req_per_s",
        "ninja_req_per_s",
        "drf_ratio",
        "ninja_ratio",
    ]
    assert all(figures[key] > 0 for key in list(figures)[2:])


@pytest.mark.django_db(transaction=True)
def test_the_api_benchmark_walks_the_list_and_creates_beside_its_limit():
    """bench/api.py at a few hundred subscribers, half-second phases: the real gunicorn command with
    the do-nothing route, the list walked past the small list's end, every create answered; a
    small bulk request and a few webhooks through the parts' own modules."""
    figures = api_bench_run(
        subscribers=300,
        small=40,
        pages=3,
        per_page=20,
        walks=1,
        duration=0.5,
        rounds=1,
        connections=4,
        web_workers=2,
        bulk_rows=300,
        webhook_deliveries=30,
        webhook_down_seconds=0.5,
        database_url=bench_database_url(settings.DATABASE_URL, connection.settings_dict["NAME"]),
        redis_url=settings.CELERY_BROKER_URL,
        say=lambda *args, **kwargs: None,
    )
    table_print(figures, out=StringIO())
    line = json.dumps({key: value for key, value in figures.items() if key != "_details"})
    assert list(json.loads(line)) == [
        "bench",
        "list_p95_ms",
        "list_small_p95_ms",
        "create_req_per_s",
        "limit_req_per_s",
        "ratio",
        "bulk_rows_per_s",
        "webhook_deliveries_per_s",
        "webhooks_lost",
    ]
    details = figures["_details"]
    assert details["list"]["rows"] == 3 * 20
    # 40 subscribers (about 34 active) are two pages of 20: the third page starts again.
    assert details["list"]["small_restarts"] >= 1
    assert details["create"]["unexpected"] == {"limit": 0, "create": 0}
    assert figures["create_req_per_s"] > 0 and figures["limit_req_per_s"] > 0
    # The bulk and webhook parts ran against the same server, and no event was lost.
    assert figures["bulk_rows_per_s"] > 0
    assert figures["webhook_deliveries_per_s"] > 0 and figures["webhooks_lost"] == 0
    created = details["create"]["kinds"]["create"]["statuses"][201]
    warmup = details["create"]["warmup_created"]
    assert Subscriber.objects.filter(email__startswith="created+").count() == warmup + created
