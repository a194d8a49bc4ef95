"""Faults in the middle of a broadcast, against a real `celery worker` process with the production
settings: kill -9 of the worker, its database connection killed, the database out of reach.
Afterwards every recipient has exactly one copy, except a message that was on its way at a kill,
which is marked unknown and never sent again; an outcome the worker knew is written."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg2
import pytest
from aiosmtpd.controller import Controller
from django.db import connection
from django.utils import timezone

from broadcasts import pipeline
from broadcasts.models import Broadcast, Delivery
from broadcasts.services import broadcast_send
from convertkit.dev.devstack import free_port
from tests.broadcasts.conftest import CountingHandler, process_env, smtp_settings, wait_until

ROOT = Path(__file__).resolve().parents[2]


def worker_start(
    *, smtp_port: int, concurrency: int = 2, batch_size: int = 20, **env: str
) -> subprocess.Popen:
    env = process_env(
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_port),
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        BROADCAST_BATCH_SIZE=str(batch_size),
        **env,
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "convertkit",
            "worker",
            "-Q",
            "fanout,send,default",
            "-c",
            str(concurrency),
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group: kill -9 takes the children too
    )


def sink_start(handler: CountingHandler, settings) -> Controller:
    """A real SMTP server with `handler`, the site's mail pointed at it (handler.port)."""
    handler.port = free_port()
    sink = Controller(handler, hostname="127.0.0.1", port=handler.port, ready_timeout=10)
    sink.start()
    smtp_settings(settings, handler.port)
    return sink


def worker_stop(worker: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)


def deliveries_by_state() -> dict[int, set[str]]:
    states: dict[int, set[str]] = {}
    for email, state in Delivery.objects.values_list("subscriber__email", "state"):
        states.setdefault(state, set()).add(email)
    return states


@pytest.mark.django_db(transaction=True)
def test_kill_9_mid_broadcast_leaves_one_copy_each_except_flagged_unknowns(
    make_broadcast, settings
):
    handler = CountingHandler(delay=0.01)
    port = free_port()
    sink = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    sink.start()
    smtp_settings(settings, port)
    broadcast = make_broadcast(recipients=300)
    worker = worker_start(smtp_port=port)
    try:
        assert broadcast_send(broadcast=broadcast)
        wait_until(lambda: sum(handler.copies.values()) >= 60, 60)
        os.killpg(worker.pid, signal.SIGKILL)  # no warm shutdown: mid-call, mid-batch
        worker.wait(10)
        killed_at = sum(handler.copies.values())

        # What a restarted deployment does: the sweeper once its timeouts have passed (its
        # clock is moved on instead of waiting ten minutes; run before the new worker, whose
        # own calls would otherwise look ten minutes old too), then a new worker.
        pipeline.sweep(now=timezone.now() + timedelta(minutes=15))
        worker = worker_start(smtp_port=port)
        wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).state == Broadcast.State.SENT, 90)
    finally:
        worker_stop(worker)
        sink.stop()

    assert 60 <= killed_at < 300
    states = dict(Delivery.objects.values_list("subscriber__email", "state"))
    assert len(states) == 300
    assert max(handler.copies.values()) == 1, "somebody got a second copy"
    unknown = {email for email, state in states.items() if state == Delivery.State.UNKNOWN}
    sent = {email for email, state in states.items() if state == Delivery.State.SENT}
    assert sent | unknown == set(states)
    assert all(handler.copies[email] == 1 for email in sent)
    # Only the messages on their way at the kill: two worker processes, one message each.
    assert len(unknown) <= 2
    broadcast.refresh_from_db()
    assert (broadcast.sent_count, broadcast.unknown_count) == (len(sent), len(unknown))


@pytest.mark.django_db(transaction=True)
def test_kill_9_while_a_message_is_on_its_way_leaves_only_that_message_unknown(
    make_broadcast, settings
):
    """The send journal: of the SMTP call in flight at the kill, the messages accepted before it
    are recorded sent, the one whose DATA was on its way is unknown, and the ones never started
    go back to the queue with the rest of the batch, to be sent once."""
    workers = []

    def kill_the_worker(recipient: str) -> str | None:
        if recipient != "reader46@example.org":
            return None
        os.killpg(workers[0].pid, signal.SIGKILL)  # before the message is accepted
        return "451 4.3.0 The sender is gone"

    handler = CountingHandler(on_data=kill_the_worker)
    sink = sink_start(handler, settings)
    broadcast = make_broadcast(recipients=100)
    # Batches of 40, calls of 20: the kill lands in the first call of the second batch.
    workers.append(worker_start(smtp_port=handler.port, concurrency=1, batch_size=40))
    try:
        assert broadcast_send(broadcast=broadcast)
        workers[0].wait(60)
        # The sweeper once the dead task's heartbeat is older than the timeout (its clock moved
        # on instead of waiting), before the new worker, as in a restarted deployment.
        report = pipeline.sweep(
            now=timezone.now() + timedelta(seconds=settings.BROADCAST_HEARTBEAT_TIMEOUT + 5)
        )
        workers.append(worker_start(smtp_port=handler.port, concurrency=1, batch_size=40))
        wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).state == Broadcast.State.SENT, 90)
    finally:
        for worker in workers:
            worker_stop(worker)
        sink.stop()

    # Sent 40..45, unknown 46, queued again 47..59 (never started) and 60..79 (claimed).
    assert (report.settled, report.unknown, report.released) == (6, 1, 33)
    states = deliveries_by_state()
    assert states[Delivery.State.UNKNOWN] == {"reader46@example.org"}
    assert len(states[Delivery.State.SENT]) == 99
    assert handler.copies == {email: 1 for email in states[Delivery.State.SENT]}
    broadcast.refresh_from_db()
    assert (broadcast.sent_count, broadcast.unknown_count) == (99, 1)


def backends_terminate(*, keep: int) -> int:
    """pg_terminate_backend of every connection to the test database but this test's own
    (`keep`) and the one doing it: the worker's."""
    database = connection.settings_dict
    killer = psycopg2.connect(
        dbname=database["NAME"],
        user=database["USER"],
        host=database["HOST"] or "127.0.0.1",
        port=database["PORT"] or 5432,
    )
    try:
        with killer.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s)",
                [keep],
            )
            return cursor.fetchone()[0]
    finally:
        killer.close()


@pytest.mark.django_db(transaction=True)
def test_a_database_connection_killed_between_send_and_outcome_write_leaves_no_unknowns(
    make_broadcast, settings
):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own_backend,) = cursor.fetchone()
    killed = []

    def kill_the_workers_connection(recipient: str) -> None:
        # Mid-call: the worker's connection is idle until it writes the call's outcomes.
        if recipient == "reader25@example.org":
            killed.append(backends_terminate(keep=own_backend))

    handler = CountingHandler(on_data=kill_the_workers_connection)
    sink = sink_start(handler, settings)
    broadcast = make_broadcast(recipients=60)
    worker = worker_start(smtp_port=handler.port, concurrency=1)
    try:
        assert broadcast_send(broadcast=broadcast)
        wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).state == Broadcast.State.SENT, 60)
    finally:
        worker_stop(worker)
        sink.stop()

    assert killed and killed[0] >= 1
    assert set(deliveries_by_state()) == {Delivery.State.SENT}
    assert handler.copies == {f"reader{n}@example.org": 1 for n in range(60)}
    broadcast.refresh_from_db()
    assert (broadcast.sent_count, broadcast.unknown_count) == (60, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("outage", ["before the fan-out", "before the send tasks", "mid-call"])
def test_tasks_that_meet_a_database_outage_are_retried_and_every_outcome_is_written(
    outage, make_broadcast, settings, database_proxy
):
    """The worker reaches the database through a proxy that the test cuts, as a PostgreSQL
    restart would: no task is lost, no outcome is left unwritten, without the sweeper."""

    def cut_mid_call(recipient: str) -> None:
        if outage == "mid-call" and recipient == "reader25@example.org":
            database_proxy.cut()

    handler = CountingHandler(on_data=cut_mid_call)
    sink = sink_start(handler, settings)
    broadcast = make_broadcast(recipients=60)
    assert broadcast_send(broadcast=broadcast)
    if outage == "before the send tasks":
        pipeline.fan_out(broadcast_id=broadcast.pk)
    if outage != "mid-call":
        database_proxy.cut()
    worker = worker_start(smtp_port=handler.port, concurrency=1, DATABASE_URL=database_proxy.url())
    try:
        # The outage lasts until the worker has been turned away a few times.
        wait_until(lambda: database_proxy.refused >= 3, 60)
        database_proxy.restore()
        wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).state == Broadcast.State.SENT, 90)
    finally:
        worker_stop(worker)
        sink.stop()

    assert set(deliveries_by_state()) == {Delivery.State.SENT}
    assert handler.copies == {f"reader{n}@example.org": 1 for n in range(60)}
    broadcast.refresh_from_db()
    assert (broadcast.sent_count, broadcast.unknown_count) == (60, 0)
