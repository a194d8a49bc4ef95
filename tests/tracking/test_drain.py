"""The drain writes every event pushed exactly once: with batches, malformed lines, several
drains at once, and drains that die before or after their COMMIT (a real worker, kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Sum

from convertkit.redis import redis_client
from tests.broadcasts.conftest import process_env, wait_until
from tests.tracking.conftest import database_connect, lock_waits
from tests.tracking.recording import (  # noqa: F401 - fixtures
    click_path,
    empty_recording,
    open_path,
    wsgi_call,
)
from tracking.buffer import QUEUE_KEY, WAITING_KEY, buffer_flush, chunk_push
from tracking.drain import (
    CLAIM_TIMEOUT_S,
    CLAIMS_KEY,
    DrainReport,
    batch_claim,
    claim_events,
    drained_batches_prune,
    tracking_drain,
)
from tracking.models import DrainedBatch, Event, EventKind, Rollup
from tracking.store import events_store
from tracking.tasks import drain as drain_task

ROOT = Path(__file__).resolve().parents[2]


def _traffic(broadcast, *, rounds: int = 1) -> Counter:
    """Opens and clicks of every delivery through the endpoints, flushed to Redis; returns the
    (kind, delivery, link) of each event sent."""
    sent: Counter = Counter()
    links = list(broadcast.links.all())
    for _ in range(rounds):
        for delivery in broadcast.delivery_set.all():
            wsgi_call(open_path(delivery))
            sent[(EventKind.OPEN, delivery.pk, None)] += 1
            for link in links:
                wsgi_call(click_path(delivery, link))
                sent[(EventKind.CLICK, delivery.pk, link.pk)] += 1
        buffer_flush()
    return sent


def _stored(broadcast) -> Counter:
    return Counter(
        Event.objects.filter(broadcast_id=broadcast.pk).values_list(
            "kind", "delivery_id", "link_id"
        )
    )


def _rollup_totals(broadcast) -> tuple[int, int]:
    totals = Rollup.objects.filter(broadcast_id=broadcast.pk, link_id=0).aggregate(
        opens=Sum("opens"), clicks=Sum("clicks")
    )
    return totals["opens"], totals["clicks"]


def _nothing_left() -> bool:
    client = redis_client()
    return (
        client.llen(QUEUE_KEY) == 0
        and int(client.get(WAITING_KEY) or 0) == 0
        and client.zcard(CLAIMS_KEY) == 0
    )


def test_a_drain_writes_exactly_the_events_pushed_and_the_rollups_agree(sent_broadcast):
    broadcast = sent_broadcast(recipients=4)
    sent = _traffic(broadcast, rounds=2)

    report = tracking_drain()

    assert _stored(broadcast) == sent
    assert report.stored == sum(sent.values()) == 24
    assert _rollup_totals(broadcast) == (8, 16)
    assert _nothing_left()


def test_events_are_drained_in_batches_of_the_configured_size(sent_broadcast, settings):
    settings.TRACKING_DRAIN_BATCH = 3
    broadcast = sent_broadcast(recipients=2, links=("https://example.com/a",))
    sent = _traffic(broadcast, rounds=5)  # five chunks of four events

    report = tracking_drain()

    assert report.batches == 5  # a batch takes whole chunks until it has 3 events or more
    assert _stored(broadcast) == sent
    assert _nothing_left()


def test_malformed_lines_are_skipped_and_the_rest_of_their_batch_is_stored(sent_broadcast):
    broadcast = sent_broadcast(recipients=1)
    delivery = broadcast.delivery_set.get()
    now_ms = int(time.time() * 1000)
    good = f"1 0 {now_ms} {broadcast.pk} {delivery.pk} 0"
    lines = [
        good,
        "garbage",
        f"9 0 {now_ms} {broadcast.pk} {delivery.pk} 0",  # no such kind
        f"1 0 {now_ms} {broadcast.pk} -5 0",
        f"1 0 {now_ms} {broadcast.pk} {2**63} 0",  # past bigint
        f"1 0 99999999999999999999 {broadcast.pk} {delivery.pk} 0",
        f"1 0 {now_ms} {broadcast.pk} {delivery.pk}",
        "",
        good,
    ]
    chunk_push(text="\n".join(lines), events=len(lines))

    report = tracking_drain()

    assert (report.stored, report.malformed) == (2, 7)
    assert Event.objects.filter(delivery_id=delivery.pk).count() == 2
    assert _nothing_left()


def test_events_of_deleted_deliveries_are_dropped_not_stored(sent_broadcast):
    broadcast = sent_broadcast(recipients=2, links=())
    first, second = broadcast.delivery_set.order_by("id")
    wsgi_call(open_path(first))
    wsgi_call(open_path(second))
    buffer_flush()
    second.delete()

    report = tracking_drain()

    assert (report.stored, report.orphaned) == (1, 1)
    assert list(Event.objects.values_list("delivery_id", flat=True)) == [first.pk]


def test_a_claim_left_by_a_drain_that_died_before_its_commit_is_drained_later_once(
    sent_broadcast,
):
    broadcast = sent_broadcast(recipients=3)
    sent = _traffic(broadcast)
    key = batch_claim()  # ...and the drain that claimed it died

    assert tracking_drain().stored == 0  # not stale yet: its drain may still be at work
    report = tracking_drain(now=time.time() + CLAIM_TIMEOUT_S + 1)

    assert (report.taken_over, report.stored) == (1, sum(sent.values()))
    assert DrainedBatch.objects.filter(key=key).exists()
    assert _stored(broadcast) == sent
    assert _nothing_left()


def test_a_claim_whose_batch_already_committed_is_not_written_twice(sent_broadcast):
    broadcast = sent_broadcast(recipients=3)
    sent = _traffic(broadcast)
    key = batch_claim()
    # The drain committed, then died before releasing its claim.
    events_store(claim_events(key, DrainReport()), batch_key=key)

    report = tracking_drain(now=time.time() + CLAIM_TIMEOUT_S + 1)

    assert (report.taken_over, report.already_drained, report.stored) == (1, 1, 0)
    assert _stored(broadcast) == sent
    assert _rollup_totals(broadcast) == (3, 6)
    assert _nothing_left()


def test_old_markers_are_pruned_but_never_one_a_live_claim_may_need(sent_broadcast):
    import datetime as dt

    from django.utils import timezone

    broadcast = sent_broadcast(recipients=3)
    _traffic(broadcast)
    key = batch_claim()
    # A drain committed this claim, then died before releasing it; its marker is old.
    events_store(claim_events(key, DrainReport()), batch_key=key)
    long_ago = timezone.now() - dt.timedelta(days=3)
    DrainedBatch.objects.filter(key=key).update(drained_at=long_ago)
    DrainedBatch.objects.create(key="old-and-released", events=1)
    DrainedBatch.objects.filter(key="old-and-released").update(
        drained_at=long_ago - dt.timedelta(hours=1)
    )
    redis_client().zadd(CLAIMS_KEY, {key: long_ago.timestamp() - 10})

    assert drained_batches_prune() == 1
    assert list(DrainedBatch.objects.values_list("key", flat=True)) == [key]

    redis_client().zrem(CLAIMS_KEY, key)
    assert drained_batches_prune() == 1
    assert not DrainedBatch.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_drains_running_at_once_store_every_event_once(sent_broadcast, settings):
    settings.TRACKING_DRAIN_BATCH = 10
    broadcast = sent_broadcast(recipients=10)
    sent = _traffic(broadcast, rounds=6)
    reports = []

    def drain_in_thread():
        try:
            reports.append(tracking_drain())
        finally:
            connection.close()

    threads = [threading.Thread(target=drain_in_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(reports) == 3
    assert sum(report.stored for report in reports) == sum(sent.values()) == 180
    assert _stored(broadcast) == sent
    assert _rollup_totals(broadcast) == (60, 120)
    assert _nothing_left()


def _worker_start() -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "convertkit", "worker", "-Q", "tracking",
            "-c", "1", "--loglevel", "WARNING", "--without-mingle", "--without-gossip",
        ],
        cwd=ROOT,
        env=process_env(),
        start_new_session=True,  # its own process group: kill -9 takes the children too
    )  # fmt: skip


def _blocked_on_rollups(lock_conn) -> bool:
    with lock_conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'tracking_rollup' AND NOT l.granted"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_in_the_middle_of_a_drain_loses_and_double_counts_nothing(sent_broadcast):
    broadcast = sent_broadcast(recipients=20)
    sent = _traffic(broadcast, rounds=2)
    # The test holds the rollup table, so the worker's drain stops mid-transaction: its events
    # and batch marker written, not committed.
    lock_conn = database_connect()
    worker = _worker_start()
    try:
        with lock_conn.cursor() as cursor:
            cursor.execute("LOCK TABLE tracking_rollup IN EXCLUSIVE MODE")
        # Queued before the worker is up, which can take longer than the 10 s beat's messages
        # live on a busy machine.
        drain_task.apply_async(expires=300)
        wait_until(lambda: _blocked_on_rollups(lock_conn), timeout=90)
        claimed = redis_client().zrange(CLAIMS_KEY, 0, -1)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        lock_conn.rollback()  # its backend now finds its client gone and rolls back
        lock_conn.close()

    assert len(claimed) == 1
    assert not Event.objects.filter(broadcast_id=broadcast.pk).exists()

    report = tracking_drain(now=time.time() + CLAIM_TIMEOUT_S + 1)

    assert report.taken_over == 1
    assert list(DrainedBatch.objects.values_list("key", flat=True)) == claimed
    lost = sum((sent - _stored(broadcast)).values())
    double_counted = sum((_stored(broadcast) - sent).values())
    assert (lost, double_counted) == (0, 0)
    assert _rollup_totals(broadcast) == (40, 80)
    assert _nothing_left()


@pytest.mark.django_db(transaction=True)
def test_a_slow_drain_whose_claim_is_taken_over_and_the_taker_count_the_batch_once(
    sent_broadcast,
):
    broadcast = sent_broadcast(recipients=5)
    sent = _traffic(broadcast)
    lock_conn, watcher = database_connect(), database_connect()
    watcher.autocommit = True  # pg_stat_activity stays as first read within a transaction
    key = batch_claim()
    results, errors = {}, []

    def run(name, work):
        try:
            results[name] = work()
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    # The slow drain is stopped in its transaction, its batch marker written, not committed...
    slow = threading.Thread(
        target=run,
        args=("slow", lambda: events_store(claim_events(key, DrainReport()), batch_key=key)),
    )
    # ...when another drain finds its claim stale and takes it over.
    taker = threading.Thread(
        target=run,
        args=("taker", lambda: tracking_drain(now=time.time() + CLAIM_TIMEOUT_S + 1)),
    )
    try:
        with lock_conn.cursor() as cursor:
            cursor.execute("LOCK TABLE tracking_rollup IN EXCLUSIVE MODE")
        slow.start()
        wait_until(lambda: lock_waits(watcher) == 1)
        taker.start()
        wait_until(lambda: not taker.is_alive() or lock_waits(watcher) == 2)
    finally:
        lock_conn.rollback()
        lock_conn.close()
        watcher.close()
    slow.join(60)
    taker.join(60)

    assert errors == []
    assert results["slow"].stored == sum(sent.values())
    assert (results["taker"].taken_over, results["taker"].stored) == (1, 0)
    assert _stored(broadcast) == sent
    assert _rollup_totals(broadcast) == (5, 10)
    assert _nothing_left()
