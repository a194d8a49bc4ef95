"""kill -9 of a worker in the middle of a broadcast: afterwards every recipient has exactly one
copy, except deliveries whose send call was in flight at the kill, which are marked unknown and
never sent again. The worker is a real `celery worker` process with the production settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from broadcasts import pipeline
from broadcasts.models import Broadcast, Delivery
from broadcasts.services import broadcast_send
from convertkit.dev.devstack import free_port
from tests.broadcasts.conftest import CountingHandler, process_env, smtp_settings, wait_until

ROOT = Path(__file__).resolve().parents[2]


def worker_start(*, smtp_port: int) -> subprocess.Popen:
    env = process_env(
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_port),
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        BROADCAST_BATCH_SIZE="20",
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
            "2",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group: kill -9 takes the children too
    )


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
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        sink.stop()

    assert 60 <= killed_at < 300
    states = dict(Delivery.objects.values_list("subscriber__email", "state"))
    assert len(states) == 300
    assert max(handler.copies.values()) == 1, "somebody got a second copy"
    unknown = {email for email, state in states.items() if state == Delivery.State.UNKNOWN}
    sent = {email for email, state in states.items() if state == Delivery.State.SENT}
    assert sent | unknown == set(states)
    assert all(handler.copies[email] == 1 for email in sent)
    # Only the send calls in flight at the kill: two worker processes, one call each.
    assert len(unknown) <= 2 * 20
    broadcast.refresh_from_db()
    assert (broadcast.sent_count, broadcast.unknown_count) == (len(sent), len(unknown))
