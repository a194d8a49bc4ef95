"""bench/webhooks_part.py at a tiny size, so the benchmark cannot rot between full runs (never
timed here): the real receiver process, real worker processes, the outage, the count."""

from __future__ import annotations

import pytest

from bench.webhooks_part import webhooks_measure
from webhooks.models import WebhookDelivery

SUBSCRIBERS = 40


@pytest.mark.django_db(transaction=True)
def test_the_webhooks_benchmark_delivers_every_event_once_through_an_outage():
    figures = webhooks_measure(
        deliveries=SUBSCRIBERS, down_seconds=0.5, workers=1, concurrency=4, say=lambda *a: None
    )

    assert figures["webhooks_lost"] == 0
    assert figures["webhook_deliveries_per_s"] > 0
    details = figures["_details"]
    # Per round: one legacy delivery per subscriber, one endpoint delivery for all of them.
    assert details["deliveries_first_round"] == SUBSCRIBERS + 1
    assert details["receiver"]["bad_signatures"] == 0
    assert details["receiver"]["unique_event_ids"] == 2 * SUBSCRIBERS
    assert details["receiver"]["unique_legacy_deliveries"] == 2 * SUBSCRIBERS
    assert WebhookDelivery.objects.filter(status="delivered").count() == 2 * (SUBSCRIBERS + 1)
