"""bench/sequences.py at a tiny size, so the benchmark cannot rot between full runs (never timed
here): a real fake-Postmark receiver, a real Celery worker process, the real scheduler and
pipeline."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.conf import settings
from django.db import connection

from bench.pages import bench_database_url
from bench.sequences import bench_run, table_print
from broadcasts.models import Broadcast, Delivery


@pytest.mark.django_db(transaction=True)
def test_the_sequence_benchmark_sends_each_email_once_to_everyone():
    figures = bench_run(
        subscribers=120,
        database_url=bench_database_url(settings.DATABASE_URL, connection.settings_dict["NAME"]),
        redis_url=settings.CELERY_BROKER_URL,
        private_redis=False,
        concurrency=2,
        say=lambda *args, **kwargs: None,
    )

    assert figures["duplicates"] == 0
    assert figures["missing"] == 0
    details = figures["_details"]
    assert details["email1"]["copies"] == details["email2"]["copies"] == 120
    messages = Broadcast.objects.filter(
        kind=Broadcast.Kind.SEQUENCE_EMAIL, sequence_email__sequence__name="Soup school"
    )
    assert sorted(messages.values_list("sent_count", flat=True)) == [120, 120]
    assert Delivery.objects.filter(state=Delivery.State.SENT).count() == 3 * 120
    assert figures["claim_ms_10k"] > 0 and figures["claim_ms_1m"] > 0
    assert figures["email1_msgs_per_s"] > 0 and figures["broadcast_msgs_per_s"] > 0
    out = StringIO()
    table_print(figures, out=out)
    assert "enrolment" in out.getvalue() and "due query" in out.getvalue()
    line = json.dumps({key: value for key, value in figures.items() if key != "_details"})
    assert set(json.loads(line)) == {
        "bench",
        "subscribers",
        "enrol_s",
        "email1_msgs_per_s",
        "broadcast_msgs_per_s",
        "ratio",
        "email2_msgs_per_s",
        "claim_ms_10k",
        "claim_ms_1m",
        "duplicates",
        "missing",
    }


@pytest.mark.django_db(transaction=True)
def test_the_sequence_page_benchmark_measures_every_figure(settings):
    from bench.sequence_page import bench_run as page_bench_run

    settings.DEBUG = False
    figures = page_bench_run(subscriptions=300, repeat=1, say=lambda *args, **kwargs: None)

    assert figures["subscriptions"] == 300
    assert set(figures["ms"]) == {
        "page",
        "figures",
        "list",
        "list_counts",
        "status",
        "counts",
        "excluded",
        "due",
        "emails",
    }
    assert all(timing["p50_ms"] > 0 for timing in figures["ms"].values())
