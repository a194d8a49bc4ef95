"""bench/automations.py at a tiny size, so the benchmark cannot rot between full runs (never timed
here): the real bulk job in a thread of its own, the real engine beside it, the real checks."""

from __future__ import annotations

import json
from io import StringIO

import pytest

from automations.models import Event, History, Journey, Rule
from bench.automations import bench_run, table_print
from convertkit.models import Job
from sequences.models import Subscription
from subscribers.models import Subscriber, Tagging

SUBSCRIBERS = 300


@pytest.mark.django_db(transaction=True)
def test_the_automations_benchmark_carries_everyone_through_the_rule_and_the_flow_once():
    figures = bench_run(subscribers=SUBSCRIBERS, say=lambda *args, **kwargs: None)

    assert (figures["duplicates"], figures["lost"]) == (0, 0)
    assert Job.objects.get().state == Job.State.DONE
    assert Subscriber.objects.count() == SUBSCRIBERS
    assert not Event.objects.exists()
    assert Rule.objects.get().fired_count == SUBSCRIBERS
    for tag in ("Customer", "Buyer", "VIP"):
        assert Tagging.objects.filter(tag__name=tag).count() == SUBSCRIBERS
    assert Subscription.objects.filter(sequence__name="Onboarding").count() == SUBSCRIBERS
    assert Journey.objects.filter(state=Journey.State.EXITED, visit=1).count() == SUBSCRIBERS
    # Per subscriber: the rule, the entry, and the delay, condition, tag and exit steps.
    assert History.objects.count() == 6 * SUBSCRIBERS
    details = figures["_details"]
    # Customer added; nothing listens for Buyer or VIP added, or for the subscription.
    assert details["outbox_events"] == SUBSCRIBERS
    assert details["steps"] == 4 * SUBSCRIBERS
    assert any(
        key.startswith("INSERT INTO automations_history") for key, *_ in details["statements"]
    )
    assert figures["events"] == SUBSCRIBERS
    assert figures["rule_events_per_s"] > 0 and figures["flow_events_per_s"] > 0
    assert figures["limit_rows_per_s"] > 0 and figures["lag_p99_s"] >= 0
    out = StringIO()
    table_print(figures, out=out)
    assert "automation" in out.getvalue() and "0 dup, 0 lost" in out.getvalue()
    line = json.dumps({key: value for key, value in figures.items() if key != "_details"})
    assert list(json.loads(line)) == [
        "bench",
        "events",
        "rule_events_per_s",
        "flow_events_per_s",
        "limit_rows_per_s",
        "ratio",
        "lag_p99_s",
        "duplicates",
        "lost",
    ]
