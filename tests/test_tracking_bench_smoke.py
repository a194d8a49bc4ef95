"""bench/tracking.py at a tiny size, so the benchmark cannot rot between full runs (never timed
here): the real gunicorn command, the Python load generator, a real Celery worker draining."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.conf import settings
from django.db import connection

from bench.pages import bench_database_url
from bench.tracking import bench_run, table_print
from tracking.models import Event, EventKind, Rollup


@pytest.mark.django_db(transaction=True)
def test_the_tracking_benchmark_records_every_answered_open_and_click_once():
    figures = bench_run(
        deliveries=200,
        links=5,
        duration=1,
        tool="python",
        database_url=bench_database_url(settings.DATABASE_URL, connection.settings_dict["NAME"]),
        redis_url=settings.CELERY_BROKER_URL,
        stall_timeout=60,
        say=lambda *args, **kwargs: None,
    )

    line = json.dumps({key: value for key, value in figures.items() if key != "_details"})
    assert list(json.loads(line)) == [
        "bench",
        "connections",
        "open_req_per_s",
        "click_req_per_s",
        "limit_req_per_s",
        "ratio",
        "p99_ms",
        "limit_p99_ms",
        "drain_events_per_s",
        "lost",
        "double_counted",
    ]
    assert figures["bench"] == "tracking" and figures["connections"] == 32
    assert figures["lost"] == 0
    assert figures["double_counted"] == 0
    details = figures["_details"]
    assert details["unexpected"] == {"ping": 0, "open": 0, "click": 0}
    loads = details["loads"]
    assert loads["ping"]["statuses"].keys() == {200}
    assert loads["click"]["statuses"].keys() == {302}
    assert details["socket_errors"] == {"ping": 0, "open": 0, "click": 0}
    # The Python generator waits for the answers in flight: every answer is exactly one row.
    events = Event.objects.filter(broadcast_id=details["broadcast_id"])
    opens = events.filter(kind=EventKind.OPEN).count()
    clicks = events.filter(kind=EventKind.CLICK).count()
    assert opens == loads["open"]["statuses"][200] > 0
    assert clicks == loads["click"]["statuses"][302] > 0
    assert details["drain"]["depth_events"] == opens + clicks
    assert details["web_exit_status"] == 0
    rollups = Rollup.objects.filter(broadcast_id=details["broadcast_id"], link_id=0)
    assert sum(rollups.values_list("opens", flat=True)) == opens
    assert sum(rollups.values_list("clicks", flat=True)) == clicks
    assert figures["ratio"] == round(
        min(figures["open_req_per_s"], figures["click_req_per_s"]) / figures["limit_req_per_s"], 3
    )
    out = StringIO()
    table_print(figures, out=out)
    for word in ("ping", "open", "click", "drain", "lost"):
        assert word in out.getvalue()
