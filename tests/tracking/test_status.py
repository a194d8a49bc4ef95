"""`manage.py tracking_status`: what waits, what is claimed, what is spooled, how fast it goes."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from convertkit.redis import redis_client
from tests.tracking.recording import empty_recording  # noqa: F401 - an autouse fixture
from tracking.buffer import chunk_push
from tracking.drain import batch_claim, tracking_drain
from tracking.models import SpooledEvents
from tracking.partitions import partition_name
from tracking.status import tracking_status_read


def _lines(broadcast, *, count: int, at_ms: int) -> str:
    delivery = broadcast.delivery_set.first()
    return "\n".join(f"1 0 {at_ms} {broadcast.pk} {delivery.pk} 0" for _ in range(count))


@pytest.fixture
def traffic(sent_broadcast):
    """5 events drained just now; then 4 events claimed by a drain still at work, 2 events
    from 30 s ago and 3 more waiting in Redis, and 6 events spooled to PostgreSQL."""
    broadcast = sent_broadcast(recipients=1)
    now_ms = int(time.time() * 1000)
    chunk_push(text=_lines(broadcast, count=5, at_ms=now_ms), events=5)
    drained = tracking_drain()
    chunk_push(text=_lines(broadcast, count=4, at_ms=now_ms), events=4)
    claimed_at = time.time()
    batch_claim()
    chunk_push(text=_lines(broadcast, count=2, at_ms=now_ms - 30_000), events=2)
    chunk_push(text=_lines(broadcast, count=3, at_ms=now_ms), events=3)
    SpooledEvents.objects.create(chunk=_lines(broadcast, count=6, at_ms=now_ms))
    assert drained.stored == 5
    return now_ms / 1000, claimed_at


def test_status_shows_waiting_claimed_spooled_lag_and_rate(traffic):
    now, claimed_at = traffic
    reading_at = now + 2  # the drained second is then a whole second of the last minute

    status = tracking_status_read(now=reading_at)

    assert (status.waiting_events, status.waiting_chunks) == (5, 2)
    assert status.claimed_batches == 1
    assert status.oldest_claim_age_s == pytest.approx(reading_at - claimed_at, abs=0.01)
    assert (status.spooled_rows, status.spooled_events) == (1, 6)
    assert status.drain_lag_s == pytest.approx(32, abs=0.01)
    assert status.drained_per_s == pytest.approx(5 / 60)
    assert partition_name(timezone.now().date()) in status.partitions
    assert status.redis_error is None


def test_nothing_waiting_means_no_lag(db):
    status = tracking_status_read()

    assert (status.waiting_events, status.claimed_batches, status.spooled_rows) == (0, 0, 0)
    assert (status.drain_lag_s, status.oldest_claim_age_s) == (0.0, None)


def test_the_command_prints_the_figures_and_json(traffic):
    text, as_json = StringIO(), StringIO()

    call_command("tracking_status", stdout=text)
    call_command("tracking_status", "--json", stdout=as_json)

    assert "Waiting in Redis:     5 events (2 chunks)" in text.getvalue()
    assert "Spooled in Postgres:  1 rows, 6 events" in text.getvalue()
    figures = json.loads(as_json.getvalue())
    assert figures["waiting_events"] == 5
    assert figures["claimed_batches"] == 1
    assert figures["spooled_events"] == 6


def test_the_status_still_answers_when_redis_is_unreachable(traffic, settings):
    redis_url = settings.REDIS_URL
    redis_client.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    try:
        status = tracking_status_read()
        text = StringIO()
        call_command("tracking_status", stdout=text)
    finally:
        settings.REDIS_URL = redis_url
        redis_client.cache_clear()

    assert status.redis_error
    assert (status.spooled_rows, status.waiting_events) == (1, 0)
    assert text.getvalue().startswith("REDIS UNREACHABLE")
