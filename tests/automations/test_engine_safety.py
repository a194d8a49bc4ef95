"""Exactly once with real parts: a `celery worker` process running the engine's tasks killed with
kill -9 mid-batch, a Redis flush in the middle of a run, two engine runs at once, a batch whose
transaction fails midway. Afterwards every subscriber fired the rule once, passed each step
once, got every tag, and the outbox is empty: nothing lost, nothing done twice.

A batch is caught in flight by a row lock the test holds from a connection of its own (the rule's
row, which each firing updates last; or a tag's row, which tagging it locks): the batch waits on
it, mid-transaction, for as long as the test needs. Nothing sleeps for time to pass.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from django.db import connection

from automations import tasks
from automations.engine import automations_run
from automations.models import Event, EventKind, History, Journey, Node, Rule
from automations.services import (
    ActionKind,
    TriggerSpec,
    automation_create,
    automation_state_set,
    entry_add,
    node_add,
    rule_save,
)
from broadcasts.models import Broadcast, Delivery
from broadcasts.rendering import frozen_parts
from convertkit.dev.devstack import free_port
from convertkit.redis import redis_client
from subscribers.models import Subscriber, Tag, Tagging
from subscribers.services import subscribers_tag
from tests.broadcasts.conftest import wait_until
from tests.broadcasts.test_crash_safety import worker_start, worker_stop
from tests.factories import AccountFactory, CustomFieldFactory, TagFactory
from tests.sequences.test_engine_safety import backends_waiting_on_a_lock, readers_create

pytestmark = pytest.mark.django_db(transaction=True)

MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
State = Journey.State


@dataclass
class Welcome:
    """A rule (Start added → tag Customer, set plan to gold) and an automation entered by the
    same tag (Welcomed → has Even? yes: VIP → exit; no: Regular → exit), over subscribers
    tagged Start by one bulk statement."""

    tags: dict[str, Tag]
    rule: Rule
    steps: dict[str, Node]
    ids: list[int]
    evens: set[int]

    @property
    def odds(self) -> set[int]:
        return set(self.ids) - self.evens

    def start_events_left(self) -> set[int]:
        """Whose Start event is still in the outbox."""
        return set(
            Event.objects.filter(
                kind=EventKind.TAG_ADDED, object_id=self.tags["Start"].pk
            ).values_list("subscriber_id", flat=True)
        )


def welcome_create(count: int, *, delay_and_email: bool = False) -> Welcome:
    """The scenario, `count` subscribers tagged Start (the outbox holds one event each). With
    `delay_and_email`, the automation first waits a day and sends one email."""
    account = AccountFactory(name="Ann's Kitchen", time_zone="UTC")
    tags = {
        name: TagFactory(account=account, name=name)
        for name in ("Start", "Even", "Customer", "Welcomed", "VIP", "Regular")
    }
    CustomFieldFactory(account=account, key="plan", label="Plan")
    rule = rule_save(
        account=account,
        name="Customers",
        triggers=[TriggerSpec(kind="tag_added", object_id=tags["Start"].pk)],
        actions=[
            {"kind": ActionKind.ADD_TAG, "object_id": tags["Customer"].pk},
            {"kind": ActionKind.SET_FIELD, "detail": "plan", "value": "gold"},
        ],
    )
    automation = automation_create(account=account, name="Welcome")
    entry_add(automation=automation, spec=TriggerSpec(kind="tag_added", object_id=tags["Start"].pk))
    steps: dict[str, Node] = {}

    def add(name: str, parent: str | None, kind: str, config: dict, branch: str = "") -> None:
        steps[name] = node_add(
            automation=automation,
            parent=steps[parent] if parent else None,
            branch=branch,
            kind=kind,
            config=config,
        )

    parent = None
    if delay_and_email:
        add("delay", None, "delay", {"amount": 1, "unit": "days"})
        add("email", "delay", "email", {})
        message = steps["email"].message
        message.subject, message.body = "Welcome", "Hello, and welcome."
        message.frozen_subject, message.frozen_html, message.frozen_text = frozen_parts(message)[:3]
        message.save()
        parent = "email"
    add("welcome", parent, "add_tag", {"tag_id": tags["Welcomed"].pk})
    add("split", "welcome", "condition", {"test": "has_tag", "tag_id": tags["Even"].pk})
    add("vip", "split", "add_tag", {"tag_id": tags["VIP"].pk}, branch="yes")
    add("vip exit", "vip", "exit", {})
    add("regular", "split", "add_tag", {"tag_id": tags["Regular"].pk}, branch="no")
    add("regular exit", "regular", "exit", {})
    automation_state_set(automation=automation, state="active")

    readers_create(account, count)
    ids = sorted(Subscriber.objects.filter(account=account).values_list("id", flat=True))
    evens = set(ids[::2])
    # What the condition tests, there before anything happens (and no event of its own).
    Tagging.objects.bulk_create(
        Tagging(account=account, tag=tags["Even"], subscriber_id=pk) for pk in evens
    )
    assert subscribers_tag(account_id=account.pk, tag_id=tags["Start"].pk, subscriber_ids=ids)
    assert Event.objects.count() == count
    return Welcome(tags=tags, rule=rule, steps=steps, ids=ids, evens=evens)


def tagged(tag: Tag) -> set[int]:
    return set(Tagging.objects.filter(tag=tag).values_list("subscriber_id", flat=True))


def assert_everything_done_once(welcome: Welcome, *, set_aside: frozenset = frozenset()) -> None:
    """Nothing lost, nothing twice: the outbox is empty; each subscriber (but those whose event
    was `set_aside`) fired the rule once, entered once, passed each step of their branch once
    (and none of the other), has every tag and the field, and left at the exit."""
    everyone = set(welcome.ids) - set_aside
    evens, odds = welcome.evens - set_aside, welcome.odds - set_aside
    assert Event.objects.count() == 0
    fired = Counter(History.objects.filter(rule_id=welcome.rule.pk).values_list("subscriber_id"))
    assert fired == Counter((pk,) for pk in everyone)
    assert Rule.objects.get(pk=welcome.rule.pk).fired_count == len(everyone)
    automation_id = welcome.steps["welcome"].automation_id
    entered = History.objects.filter(automation_id=automation_id, node_id__isnull=True)
    assert Counter(entered.values_list("subscriber_id")) == Counter((pk,) for pk in everyone)
    branch = {"vip": evens, "vip exit": evens, "regular": odds, "regular exit": odds}
    for name, step in welcome.steps.items():
        passed = Counter(History.objects.filter(node_id=step.pk).values_list("subscriber_id"))
        assert passed == Counter((pk,) for pk in branch.get(name, everyone)), name
    expected = {"Start": set(welcome.ids), "Even": welcome.evens}
    expected |= {"Customer": everyone, "Welcomed": everyone}
    expected |= {"VIP": evens, "Regular": odds}
    assert {name: tagged(tag) for name, tag in welcome.tags.items()} == expected
    gold = Subscriber.objects.filter(pk__in=everyone, fields__plan="gold").count()
    assert gold == len(everyone)
    journeys = Counter(Journey.objects.values_list("subscriber_id", "state", "node_id", "visit"))
    assert journeys == Counter((pk, State.EXITED, None, 1) for pk in everyone)


def assert_nothing_half_done(welcome: Welcome) -> None:
    """Whoever's Start event is back in the outbox has nothing of it: the batch that had it
    rolled back whole. Everyone else fired the rule exactly once."""
    waiting = welcome.start_events_left()
    done = set(welcome.ids) - waiting
    fired = Counter(History.objects.filter(rule_id=welcome.rule.pk).values_list("subscriber_id"))
    assert fired == Counter((pk,) for pk in done)
    assert tagged(welcome.tags["Customer"]) == done
    assert not Journey.objects.filter(subscriber_id__in=waiting).exists()
    assert not History.objects.filter(subscriber_id__in=waiting).exists()


# Holding a batch in flight ---------------------------------------------------------------------


@contextmanager
def row_locked(model, pk: int) -> Iterator[None]:
    """Holds the row's lock (SELECT ... FOR UPDATE, from a connection of its own; it waits for
    a batch holding it to commit) until the block ends: whatever batch needs the row waits."""
    holder = psycopg2.connect(**connection.get_connection_params())
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {model._meta.db_table} WHERE id = %s FOR UPDATE", [pk])
        yield
    finally:
        holder.rollback()
        holder.close()


# When the running test began, by the database's clock (_test_began).
_began: list = [None]


@pytest.fixture(autouse=True)
def _test_began():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        _began[0] = cursor.fetchone()[0]


def other_backends() -> int:
    """Connections to the test database but this test's own, opened since the test began (a
    worker's, a dying backend's). Older ones are not this test's: an idle connection an earlier
    test's thread left behind, closed only when the garbage collector gets to it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_start >= %s",
            [_began[0]],
        )
        return cursor.fetchone()[0]


def automations_worker_start(*, concurrency: int = 1):
    """A real `celery worker` process with small batches, so that a run takes many."""
    return worker_start(
        smtp_port=free_port(),  # no mail is sent
        concurrency=concurrency,
        AUTOMATION_EVENT_BATCH="200",
        AUTOMATION_CLAIM_BATCH="200",
    )


def beat_tick() -> None:
    """What celery beat does every second: both halves of the engine queued, the outbox's
    first (a worker of concurrency 1 runs them one after the other)."""
    tasks.consume.apply_async()
    tasks.advance.apply_async()


def kill_9(worker) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)


# 1. kill -9 of a worker mid-batch ---------------------------------------------------------------


def test_a_worker_killed_mid_events_batch_leaves_each_rule_and_step_done_exactly_once():
    """The worker has committed some batches of the outbox when the next one, having deleted
    its events and tagged, set fields and entered its subscribers, is killed at its last
    statement. The batch rolls back whole; the next run does it, and nobody twice."""
    welcome = welcome_create(3000)
    worker = automations_worker_start()
    try:
        beat_tick()
        wait_until(lambda: len(welcome.start_events_left()) <= 2400, 60)
        with row_locked(Rule, welcome.rule.pk):
            wait_until(lambda: backends_waiting_on_a_lock() == 1, 60)
            kill_9(worker)
    finally:
        worker_stop(worker)
    # The killed backend finds its client gone once the lock lets it go on, and rolls back.
    wait_until(lambda: other_backends() == 0, 30)

    assert 0 < len(welcome.start_events_left()) <= 2400
    assert_nothing_half_done(welcome)

    # The engine itself: the task would find the killed run's Redis lock until it expires.
    automations_run()
    assert_everything_done_once(welcome)


def test_a_worker_killed_mid_journeys_batch_leaves_each_step_done_exactly_once():
    """The worker consumes the whole outbox (rule fired, journeys entered); its first batch of
    journeys runs the first step's History rows and is killed tagging them. Nobody has passed a
    step; the next run takes them through every step once."""
    welcome = welcome_create(3000)
    worker = automations_worker_start()
    try:
        with row_locked(Tag, welcome.tags["Welcomed"].pk):
            beat_tick()
            wait_until(lambda: backends_waiting_on_a_lock() == 1, 60)
            kill_9(worker)
    finally:
        worker_stop(worker)
    wait_until(lambda: other_backends() == 0, 30)

    assert not welcome.start_events_left()
    places = Counter(Journey.objects.values_list("state", "node_id"))
    assert places == {(State.ACTIVE, welcome.steps["welcome"].pk): 3000}
    assert not History.objects.filter(node_id__isnull=False).exists()
    assert not tagged(welcome.tags["Welcomed"])

    automations_run()
    assert_everything_done_once(welcome)


# 2. A Redis flush mid-run -------------------------------------------------------------------------


def test_a_redis_flush_mid_run_lets_the_next_run_in_and_everything_is_done_once():
    """The flush takes the run's lock and its unacknowledged task message; the beat's next tick
    starts a second run at once, beside the first still in its batch. Redis held nothing the
    work needed: together they do everything once."""
    welcome = welcome_create(2000)
    worker = automations_worker_start(concurrency=2)
    try:
        with row_locked(Rule, welcome.rule.pk):
            beat_tick()
            wait_until(lambda: backends_waiting_on_a_lock() == 1, 60)
            assert redis_client().exists(tasks._CONSUME_LOCK)
            redis_client().flushdb()
            assert not redis_client().exists(tasks._CONSUME_LOCK)
            beat_tick()
            # The second run has claimed a batch of its own and waits to fire the rule too.
            wait_until(lambda: backends_waiting_on_a_lock() == 2, 60)
        wait_until(
            lambda: (
                not Event.objects.exists()
                and not Journey.objects.filter(state=State.ACTIVE).exists()
            ),
            60,
        )
        # The beat's next tick finds nothing left.
        tasks.consume()
        tasks.advance()
    finally:
        worker_stop(worker)

    assert_everything_done_once(welcome)


# 3. Two runs at once ------------------------------------------------------------------------------


def runs_at_once(now: datetime) -> list:
    """Two engine runs, each in its own thread with its own database connection, started
    together over the same outbox and due journeys; returns their reports."""
    start = threading.Barrier(2)
    reports, errors = [], []

    def run() -> None:
        try:
            start.wait(10)
            reports.append(automations_run(now=now, budget=120))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    return reports


def test_two_runs_at_once_fire_each_rule_and_pass_each_step_once_and_send_one_email_each(
    settings,
):
    settings.AUTOMATION_EVENT_BATCH = settings.AUTOMATION_CLAIM_BATCH = 100
    welcome = welcome_create(2000, delay_and_email=True)

    reports = runs_at_once(MONDAY)
    assert all(report.events > 0 for report in reports), reports
    assert sum(report.rule_runs for report in reports) == 2000
    assert sum(report.entered for report in reports) == 2000
    assert Counter(Journey.objects.values_list("node_id")) == {(welcome.steps["delay"].pk,): 2000}

    reports = runs_at_once(MONDAY + timedelta(days=1, minutes=1))
    assert all(report.steps > 0 for report in reports), reports

    assert_everything_done_once(welcome)
    message = welcome.steps["email"].message
    deliveries = Counter(Delivery.objects.values_list("broadcast_id", "subscriber_id", "round"))
    assert deliveries == Counter((message.pk, pk, 1) for pk in welcome.ids)
    assert Broadcast.objects.get(pk=message.pk).recipient_count == 2000


# 4. A batch whose transaction fails midway -------------------------------------------------------


@pytest.fixture
def plan_refused():
    """plan_refused(subscriber_id): from then on, the database refuses to change that
    subscriber's fields (a trigger raising), until the test ends or calls the returned undo."""
    statements = []

    def refuse(subscriber_id: int):
        with connection.cursor() as cursor:
            cursor.execute(
                """
                CREATE FUNCTION test_plan_refused() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'subscriber % may not change', NEW.id; END $$
                """
            )
            cursor.execute(
                f"""
                CREATE TRIGGER test_plan_refused BEFORE UPDATE ON subscribers_subscriber
                FOR EACH ROW WHEN (NEW.id = {int(subscriber_id)})
                EXECUTE FUNCTION test_plan_refused()
                """
            )
        statements.append("DROP FUNCTION IF EXISTS test_plan_refused() CASCADE")
        return undo

    def undo() -> None:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    yield refuse
    undo()


def test_a_batch_failing_midway_rolls_back_whole_and_only_its_failing_event_is_set_aside(
    settings, plan_refused
):
    """The rule's second action (set plan) fails for one subscriber of the outbox's second
    batch, after its first action (tag Customer) and the automation's entries: the batch rolls
    back whole and is taken again one event at a time; the one event that fails on its own is
    set aside with a note, nothing of it kept, and everyone else's is done once."""
    settings.AUTOMATION_EVENT_BATCH = settings.AUTOMATION_CLAIM_BATCH = 200
    welcome = welcome_create(1000)
    refused = welcome.ids[300]
    plan_refused(refused)

    automations_run(now=MONDAY)

    notes = list(History.objects.filter(subscriber_id=refused).values_list("note", flat=True))
    assert len(notes) == 1 and notes[0].startswith("could not act on the event tag_added")
    assert not Journey.objects.filter(subscriber_id=refused).exists()
    assert refused not in tagged(welcome.tags["Customer"])
    assert_everything_done_once(welcome, set_aside=frozenset({refused}))
