"""bench/broadcast.py at a tiny size, so the benchmark cannot rot between full runs (never timed
here): real receivers, a real Celery worker process, the real pipeline, for both transports."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.conf import settings
from django.db import connection

from bench.broadcast import bench_run, table_print
from bench.pages import bench_database_url
from broadcasts.models import Broadcast, Delivery


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("transport", ["smtp", "esp"])
def test_the_broadcast_benchmark_sends_everyone_one_copy_and_measures_the_limit(transport):
    figures = bench_run(
        transport=transport,
        recipients=120,
        database_url=bench_database_url(settings.DATABASE_URL, connection.settings_dict["NAME"]),
        redis_url=settings.CELERY_BROKER_URL,
        limit_messages=50,
        stall_timeout=60,
        say=lambda *args, **kwargs: None,
    )

    assert figures["duplicates"] == 0
    assert figures["missing"] == 0
    details = figures["_details"]
    assert details["send"]["sent"] == 120
    assert details["send"]["copies"] == 120
    assert details["send"]["strays"] == 0
    assert details["limit"]["messages"] == 50
    assert figures["msgs_per_s"] > 0 and figures["limit_msgs_per_s"] > 0
    assert figures["ratio"] == round(figures["msgs_per_s"] / figures["limit_msgs_per_s"], 3)
    assert figures["worker_peak_rss_mb"] > 10
    assert details["worker_processes"] >= 3  # the worker and its two pool processes
    broadcast = Broadcast.objects.get()
    assert broadcast.state == Broadcast.State.SENT
    assert Delivery.objects.filter(state=Delivery.State.SENT).count() == 120
    out = StringIO()
    table_print(figures, out=out)
    assert "msgs/s" in out.getvalue() and transport in out.getvalue()
    line = json.dumps({key: value for key, value in figures.items() if key != "_details"})
    assert set(json.loads(line)) == {
        "bench",
        "transport",
        "recipients",
        "fanout_s",
        "msgs_per_s",
        "limit_msgs_per_s",
        "ratio",
        "duplicates",
        "missing",
        "worker_peak_rss_mb",
        "redis_peak_mb",
        "body",
    }


@pytest.mark.django_db(transaction=True)
def test_the_broadcast_benchmark_sends_the_visual_email_beside_the_markdown_one():
    figures = bench_run(
        transport="esp",
        recipients=60,
        database_url=bench_database_url(settings.DATABASE_URL, connection.settings_dict["NAME"]),
        redis_url=settings.CELERY_BROKER_URL,
        limit_messages=20,
        stall_timeout=60,
        body="both",
        say=lambda *args, **kwargs: None,
    )

    assert (figures["visual_duplicates"], figures["visual_missing"]) == (0, 0)
    assert figures["visual_msgs_per_s"] > 0
    assert figures["markdown_again_msgs_per_s"] > 0
    markdown, visual, again = Broadcast.objects.order_by("id")
    assert (markdown.body_format, visual.body_format, again.body_format) == (
        "markdown",
        "visual",
        "markdown",
    )
    assert again.state == Broadcast.State.SENT and again.sent_count == 60
    assert visual.state == Broadcast.State.SENT and visual.sent_count == 60
    assert 'alt="Five bowls of soup on a wooden table"' in visual.frozen_html
    assert "Get the five recipes" in visual.frozen_html
    out = StringIO()
    table_print(figures, out=out)
    assert "the same email from the visual editor" in out.getvalue()
