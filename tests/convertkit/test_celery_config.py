"""Celery is configured for work that is never lost: late acks, JSON, no results, four queues."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker

from convertkit.celery import app

QUEUES = {"fanout", "send", "tracking", "default"}


def _our_tasks():
    app.loader.import_default_modules()
    return [task for name, task in app.tasks.items() if not name.startswith("celery.")]


def test_the_four_queues_are_declared_and_default_is_the_default():
    assert {queue.name for queue in app.conf.task_queues} == QUEUES
    assert app.conf.task_default_queue == "default"


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("broadcasts.fan_out", "fanout"),
        ("broadcasts.send_batch", "send"),
        ("broadcasts.send_test", "default"),
        ("tracking.drain", "tracking"),
        ("convertkit.send_account_email", "default"),
        ("subscribers.run_import", "default"),
    ],
)
def test_tasks_are_routed_to_their_queue(task_name, queue):
    app.loader.import_default_modules()
    message = app.amqp.router.route(app.tasks[task_name]._get_exec_options(), task_name)

    assert message["queue"].name == queue


def test_every_task_names_one_of_the_four_queues_on_its_decorator():
    """No routing table to keep in step with task names: each task says where it runs."""
    assert not app.conf.task_routes
    for task in _our_tasks():
        if task.name.startswith("tests."):
            continue
        assert task.queue in QUEUES, task.name


def test_mail_tasks_share_one_bounded_retry_policy():
    mail_tasks = [
        "broadcasts.send_test",
        "convertkit.send_account_email",
        "subscribers.send_subscriber_email",
        "subscribers.send_form_confirmation",
        "subscribers.send_form_incentive",
    ]
    policies = {
        (
            tuple(app.tasks[name].autoretry_for),
            app.tasks[name].retry_backoff,
            app.tasks[name].retry_backoff_max,
            app.tasks[name].max_retries,
        )
        for name in mail_tasks
    }

    assert len(policies) == 1
    ((_errors, _backoff, _backoff_max, max_retries),) = policies
    assert 0 < max_retries <= 10


def test_every_task_is_acknowledged_only_after_it_ran():
    """A worker killed mid-task leaves the message for another worker instead of losing it."""
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    tasks = _our_tasks()
    assert tasks, "no task registered: autodiscovery is broken"
    for task in tasks:
        assert task.acks_late is True, task.name
        assert task.reject_on_worker_lost in (None, True), task.name


def test_messages_are_json_and_results_are_not_kept():
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_ignore_result is True
    assert app.conf.result_backend is None
    for task in _our_tasks():
        assert task.ignore_result is True, task.name
        assert task.serializer == "json", task.name


def test_visibility_timeout_outlasts_every_retry_countdown():
    """Redis redelivers an unacknowledged task after the visibility timeout: a task waiting for
    its countdown must not be handed to a second worker meanwhile."""
    timeout = app.conf.broker_transport_options["visibility_timeout"]
    longest_countdown = max(
        max(task.default_retry_delay or 0, getattr(task, "retry_backoff_max", 0) or 0)
        for task in _our_tasks()
    )

    assert timeout >= 3600
    assert timeout > longest_countdown


def test_visibility_timeout_is_read_from_the_environment():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from convertkit.celery import app; "
            "print(app.conf.broker_transport_options['visibility_timeout'])",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env={"PATH": os.environ["PATH"], "DEBUG": "true", "CELERY_VISIBILITY_TIMEOUT": "7200"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7200"


_received: list[str] = []
_all_received = threading.Event()


@app.task(name="tests.note_queue", bind=True)
def note_queue(self) -> None:
    _received.append(self.request.delivery_info["routing_key"])
    if len(_received) == len(QUEUES):
        _all_received.set()


def test_a_worker_started_for_the_four_queues_runs_tasks_from_each():
    """Through real Redis: what `celery -A convertkit worker -Q fanout,send,tracking,default` does."""
    _received.clear()
    _all_received.clear()
    with start_worker(
        app, pool="threads", concurrency=2, queues=sorted(QUEUES), perform_ping_check=False
    ):
        for queue in sorted(QUEUES):
            note_queue.apply_async(queue=queue)
        assert _all_received.wait(timeout=20), f"only got {_received}"

    assert sorted(_received) == sorted(QUEUES)
