"""The web process's buffer: events reach Redis in chunks, on time, on a graceful exit of a real
gunicorn, and through PostgreSQL when Redis cannot be reached."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from convertkit.dev.devstack import free_port
from convertkit.redis import redis_client
from tests.broadcasts.conftest import process_env, wait_until
from tests.tracking.recording import (  # noqa: F401 - fixtures
    click_path,
    empty_recording,
    open_path,
    queued_lines,
    wsgi_call,
)
from tracking import buffer
from tracking.buffer import WAITING_KEY, buffer_flush, event_buffer
from tracking.drain import tracking_drain
from tracking.models import Event, EventKind, SpooledEvents

ROOT = Path(__file__).resolve().parents[2]


def _waiting() -> int:
    return int(redis_client().get(WAITING_KEY) or 0)


@pytest.fixture
def idle_flusher(settings):
    """Only a full buffer or an explicit flush hands events over during the test: the thread
    finishes its current wait and starts one of ten minutes, which the teardown ends."""
    interval = settings.TRACKING_FLUSH_MS
    settings.TRACKING_FLUSH_MS = 600_000
    buffer_flush()
    time.sleep(0.3)
    yield
    settings.TRACKING_FLUSH_MS = interval
    buffer._buffer._wake.set()


def test_a_flush_hands_all_buffered_events_to_redis_as_one_chunk(sent_broadcast, idle_flusher):
    broadcast = sent_broadcast(recipients=3)
    for delivery in broadcast.delivery_set.all():
        wsgi_call(open_path(delivery))
        wsgi_call(click_path(delivery, broadcast.links.first()))

    buffer_flush()

    [chunk] = queued_lines()
    assert len(chunk) == 6
    assert _waiting() == 6


def test_the_flusher_thread_hands_events_over_without_being_asked(sent_broadcast):
    broadcast = sent_broadcast(recipients=1)

    wsgi_call(open_path(broadcast.delivery_set.get()))

    wait_until(lambda: _waiting() == 1, timeout=10)


def test_a_full_buffer_wakes_the_flusher_before_its_interval(settings, idle_flusher):
    settings.TRACKING_BUFFER_EVENTS = 5
    event_buffer(kind=EventKind.OPEN, machine=0, broadcast_id=1, delivery_id=1)
    buffer_flush()

    for delivery_id in range(2, 7):
        event_buffer(kind=EventKind.OPEN, machine=0, broadcast_id=1, delivery_id=delivery_id)

    wait_until(lambda: _waiting() == 6, timeout=10)


@pytest.mark.django_db(transaction=True)
def test_when_redis_is_unreachable_events_are_spooled_to_postgres_then_drained(
    sent_broadcast, settings
):
    broadcast = sent_broadcast(recipients=2)
    deliveries = list(broadcast.delivery_set.all())
    redis_url = settings.REDIS_URL
    redis_client.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        answers = [wsgi_call(open_path(delivery)) for delivery in deliveries]
        answers.append(wsgi_call(click_path(deliveries[0], broadcast.links.first())))
        buffer_flush()
    finally:
        settings.REDIS_URL = redis_url
        redis_client.cache_clear()

    assert [answer.status for answer in answers] == [200, 200, 302]
    spooled = list(SpooledEvents.objects.all())
    assert sum(len(row.chunk.split("\n")) for row in spooled) == 3
    assert queued_lines() == []

    report = tracking_drain()

    assert (report.stored, report.spooled_rows) == (3, len(spooled))
    assert not SpooledEvents.objects.exists()
    assert Event.objects.filter(broadcast_id=broadcast.pk).count() == 3


@pytest.mark.django_db(transaction=True)
def test_events_are_held_while_redis_and_postgres_both_fail_and_handed_over_later(
    sent_broadcast, settings, caplog, monkeypatch, idle_flusher
):
    broadcast = sent_broadcast(recipients=1)
    delivery = broadcast.delivery_set.get()
    redis_url = settings.REDIS_URL
    monkeypatch.setattr(buffer, "HOLD_MAX_EVENTS", 3)
    redis_client.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE tracking_spooledevents RENAME TO spool_away")
    try:
        for _ in range(3):  # three flushes of two events each, past the cap of three
            wsgi_call(open_path(delivery))
            wsgi_call(open_path(delivery))
            buffer_flush()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE spool_away RENAME TO tracking_spooledevents")
        settings.REDIS_URL = redis_url
        redis_client.cache_clear()

    assert caplog.text.count("LOST: dropped the 2 oldest") == 2
    buffer_flush()
    assert [len(chunk) for chunk in queued_lines()] == [2]


@pytest.mark.django_db(transaction=True)
def test_a_graceful_gunicorn_exit_hands_the_buffered_events_to_redis(sent_broadcast):
    broadcast = sent_broadcast(recipients=3)
    deliveries = list(broadcast.delivery_set.all())
    link = broadcast.links.first()
    port = free_port()
    # Only the exit can hand the events over: the timer would wait ten minutes.
    env = process_env(TRACKING_FLUSH_MS="600000")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "-c", "python:convertkit.gunicorn_conf",
            "convertkit.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--no-control-socket", "--log-level", "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: _answers(port, "/t/ping.gif") == 200, timeout=60)
        statuses = [_answers(port, open_path(delivery)) for delivery in deliveries]
        statuses += [_answers(port, click_path(delivery, link)) for delivery in deliveries]
        before_exit = queued_lines()
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)

    assert statuses == [200] * 3 + [302] * 3
    assert before_exit == []
    lines = [line for chunk in queued_lines() for line in chunk]
    assert sorted((int(line[0]), int(line[4])) for line in lines) == sorted(
        [(EventKind.OPEN, delivery.pk) for delivery in deliveries]
        + [(EventKind.CLICK, delivery.pk) for delivery in deliveries]
    )
    assert _waiting() == 6


def _answers(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"User-Agent": "Mozilla/5.0 (X11) Firefox/131.0"})
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()
