"""A bulk action tags a million subscribers; one rule and one five-node automation react.

    make bench-automations                                  # 1,000,000 subscribers
    make bench-automations ARGS="--subscribers 20000"       # a quick look

1. Creates its own database (convertkit_bench_automations) and Redis, as bench/broadcast.py
   does, and seeds an account with --subscribers active subscribers.
2. Builds, through the services a creator's clicks call:
   - a rule: tag "Customer" added -> add tag "Buyer", subscribe to the sequence "Onboarding";
   - an active automation entered when "Customer" is added: delay 1 day -> condition "has tag
     Buyer" -> (yes) add tag "VIP" -> exit.
3. The limit: a rule's History row per subscriber (a heap row and three index entries: the
   primary key, history_subscriber, history_rule) written by one INSERT ... SELECT into a copy
   of automations_history with its columns, defaults and indexes, dropped after the measure.
4. The bulk action tags every subscriber with "Customer" through the real path
   (subscribers.bulk.bulk_job_create, then bulk_job_run in a thread, as a worker runs it: batches
   of 5,000, each one transaction with its outbox events). Meanwhile this process runs the engine
   as beat does on two workers, in two threads with a database connection each, over and over:
   automations.consume's events_consume(now=the wall clock), and automations.advance's
   journeys_advance_batch for each automation with someone due, its clock one delay ahead of the
   wall clock (now + 1 day): the delay is moved past by the clock, so whoever entered is due at
   once. It stops once the bulk action is done, the outbox is empty and nobody is due.
5. Reads the outcome from the database and prints a table and, last, one JSON line.

Figures (N = --subscribers, each tagged once by the bulk action: N "tag added" events):

- rule_events_per_s: N / seconds from the bulk action's start until the engine's last batch
  that fired the rule committed (every event carried through the rule: both actions and its
  history row). End to end: the bulk action and the automation share those seconds.
- flow_events_per_s: N / seconds from the bulk action's start until the last step of the
  automation committed (everyone through entry, delay, condition, tag and exit).
- limit_rows_per_s: N / seconds of the one INSERT ... SELECT of step 3; ratio: the slower of
  the two rates above / the limit.
- lag_p99_s: the 99th percentile over subscribers of (the `at` of their History row of the exit
  step) - (the `created_at` of their "Customer" Tagging): from the start of the bulk batch's
  transaction that tagged them (its now()) to the start of the statement that recorded their
  exit (statement_timestamp()). Each end is early by less than its batch's duration: the bulk
  batch commits after its statements, the engine's after the journeys' UPDATE. The delay is not
  in it: the engine's clock runs one delay ahead.
- duplicates: rule history rows beyond one per subscriber, automation history rows beyond one
  per (subscriber, step), entries beyond one per subscriber, journeys past their first visit,
  subscriptions restarted (round > 0), and the rule's fired_count beyond N. Must be 0.
- lost: subscribers of the account without each of: the "Customer", "Buyer" and "VIP" tags,
  a subscription to "Onboarding", the rule's history row, an exited journey and the exit step's
  history row; plus events left in the outbox. Must be 0.

The table also shows the engine's own time: seconds spent in events_consume (the rule and the
entries) and in journeys_advance_batch (the steps), the rates they give alone, and where that
time went: seconds and calls per statement (Django's execute_wrapper), the costliest first.
Target: both rates >= 10,000 events/s at 1,000,000 on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.broadcast import _say, active_account_seed, bench_session  # noqa: E402 - after the path

TARGET_EVENTS_PER_S = 10_000
DELAY = timedelta(days=1)
# automations.advance runs one at a time (automations.tasks).
ADVANCE_RUNS = 1
LIMIT_TABLE = "bench_limit_history"
PROGRESS_EVERY_S = 5.0
STATEMENTS_SHOWN = 10


@dataclass
class Scenario:
    customer: object
    buyer: object
    vip: object
    sequence: object
    rule: object
    automation: object
    exit_node: object


def scenario_build(*, account) -> Scenario:
    """The rule and the automation of the module docstring, built through the services."""
    from automations.services import (
        ActionKind,
        TriggerSpec,
        automation_create,
        automation_state_set,
        entry_add,
        node_add,
        rule_save,
    )
    from sequences.models import Sequence
    from subscribers.services import tag_create

    customer, buyer, vip = (
        tag_create(account=account, name=name) for name in ("Customer", "Buyer", "VIP")
    )
    sequence = Sequence.objects.create(account=account, name="Onboarding", time_zone="UTC")
    tag_added = TriggerSpec(kind="tag_added", object_id=customer.pk)
    rule = rule_save(
        account=account,
        name="Customers get onboarding",
        triggers=[tag_added],
        actions=[
            {"kind": ActionKind.ADD_TAG, "object_id": buyer.pk},
            {"kind": ActionKind.SUBSCRIBE_SEQUENCE, "object_id": sequence.pk},
        ],
    )
    automation = automation_create(account=account, name="Welcome customers")
    entry_add(automation=automation, spec=tag_added)
    delay = node_add(
        automation=automation,
        parent=None,
        branch="",
        kind="delay",
        config={"amount": DELAY.days, "unit": "days"},
    )
    condition = node_add(
        automation=automation,
        parent=delay,
        branch="",
        kind="condition",
        config={"test": "has_tag", "tag_id": buyer.pk},
    )
    tag_step = node_add(
        automation=automation,
        parent=condition,
        branch="yes",
        kind="add_tag",
        config={"tag_id": vip.pk},
    )
    exit_node = node_add(automation=automation, parent=tag_step, branch="", kind="exit")
    automation_state_set(automation=automation, state="active")
    return Scenario(customer, buyer, vip, sequence, rule, automation, exit_node)


def limit_measure(*, account_id: int) -> tuple[int, float]:
    """One INSERT ... SELECT of a row per subscriber into a copy of automations_history (its
    columns, defaults and indexes); returns (rows, seconds). The copy is dropped after."""
    from django.db import connection

    from automations.models import History
    from subscribers.models import Subscriber

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {LIMIT_TABLE}")
        cursor.execute(f"CREATE TABLE {LIMIT_TABLE} (LIKE {History._meta.db_table} INCLUDING ALL)")
        try:
            started = time.perf_counter()
            cursor.execute(
                f"""
                INSERT INTO {LIMIT_TABLE} (account_id, subscriber_id, rule_id, note, at)
                SELECT account_id, id, 1, 'rule “Customers get onboarding”: tagged “Buyer”', now()
                FROM {Subscriber._meta.db_table} WHERE account_id = %s
                """,
                [account_id],
            )
            seconds = time.perf_counter() - started
            rows = cursor.rowcount
        finally:
            cursor.execute(f"DROP TABLE {LIMIT_TABLE}")
    return rows, seconds


@dataclass
class BulkRun:
    """The bulk action, run in a thread as a worker would run it."""

    job_id: int
    thread: threading.Thread | None = None
    seconds: float = 0.0
    error: BaseException | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="bulk-action", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from django.db import connection

        from subscribers.bulk import bulk_job_run

        started = time.perf_counter()
        try:
            bulk_job_run(job_id=self.job_id)
        except BaseException as error:  # handed to the main thread by finish()
            self.error = error
        finally:
            self.seconds = time.perf_counter() - started
            connection.close()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def finish(self) -> None:
        from convertkit.models import Job

        self.thread.join()
        if self.error is not None:
            raise self.error
        job = Job.objects.get(pk=self.job_id)
        if job.state != Job.State.DONE:
            raise RuntimeError(f"The bulk job ended {job.state}: {job.message}")


def bulk_start(*, account, tag, subscribers: int) -> BulkRun:
    """The bulk "tag" action on every subscriber, as the subscriber list's confirm button
    creates it (the task it queues on commit would find the job already claimed)."""
    from convertkit.models import Membership
    from subscribers.bulk import bulk_job_create
    from subscribers.selectors import SubscriberFilter, Total

    owner = Membership.objects.filter(account=account).select_related("user").first().user
    job = bulk_job_create(
        account=account,
        user=owner,
        action="tag",
        filters=SubscriberFilter(),
        tag=tag,
        total=Total(subscribers),
    )
    run = BulkRun(job_id=job.pk)
    run.start()
    return run


@dataclass
class EngineRun:
    events: int = 0
    rule_runs: int = 0
    entered: int = 0
    steps: int = 0
    consume_s: float = 0.0
    advance_s: float = 0.0
    consume_batches: int = 0
    advance_batches: int = 0
    # time.time() when the last batch that fired the rule, and the last that ran a step, ended.
    rule_done_at: float = 0.0
    flow_done_at: float = 0.0
    batch_ms: dict = field(default_factory=lambda: {"consume": [], "advance": []})
    statements: StatementTimes = field(default_factory=lambda: StatementTimes())
    # The advancing threads add to the same figures.
    lock: threading.Lock = field(default_factory=threading.Lock)


class StatementTimes:
    """Seconds and calls per statement the engine runs (Django's execute_wrapper, in the
    engine's thread only), keyed by the statement's first words: where its time goes."""

    KEY_LENGTH = 60

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        # The two engine threads add to the same figures.
        self.lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = " ".join(sql.split())[: self.KEY_LENGTH]
            with self.lock:
                self.seconds[key] += time.perf_counter() - started
                self.calls[key] += 1

    def top(self, count: int) -> list[tuple[str, float, int]]:
        ranked = sorted(self.seconds.items(), key=lambda item: -item[1])[:count]
        return [(key, round(seconds, 2), self.calls[key]) for key, seconds in ranked]


def engine_follow(*, bulk: BulkRun, started: float, say: Callable) -> EngineRun:
    """The engine beside the bulk action, as beat runs it on worker processes (step 4 of the
    module docstring): the outbox consumed in one thread, the due journeys advanced in
    ADVANCE_RUNS others (as many as automations.advance lets run at once), each with its own
    database connection."""
    run = EngineRun()
    consumed = threading.Event()
    advancing = [
        threading.Thread(
            target=_in_thread, args=(_advance_loop, run, consumed), name=f"advance-{n}", daemon=True
        )
        for n in range(ADVANCE_RUNS)
    ]
    for thread in advancing:
        thread.start()
    try:
        _in_thread(_consume_loop, run, bulk, started, say)
    finally:
        consumed.set()
        for thread in advancing:
            thread.join()
    return run


def _in_thread(loop: Callable, run: EngineRun, *args) -> None:
    from django.db import connection

    try:
        with connection.execute_wrapper(run.statements):
            loop(run, *args)
    finally:
        connection.close()


def _consume_loop(run: EngineRun, bulk: BulkRun, started: float, say: Callable) -> None:
    """automations.consume, over and over until the bulk action is done and the outbox empty."""
    from django.utils import timezone

    from automations.engine import events_consume
    from convertkit.models import Job

    last_said = time.monotonic()
    while True:
        # Read before consuming: once the bulk action had ended, every event it wrote is seen.
        bulk_ended = not bulk.running
        t = time.perf_counter()
        report = events_consume(now=timezone.now())
        elapsed = time.perf_counter() - t
        if report.events:
            run.consume_s += elapsed
            run.consume_batches += 1
            run.batch_ms["consume"].append(1000 * elapsed)
            run.events += report.events
            run.entered += report.entered
        if report.rule_runs:
            run.rule_runs += report.rule_runs
            run.rule_done_at = time.time()
        if time.monotonic() - last_said >= PROGRESS_EVERY_S:
            last_said = time.monotonic()
            tagged = Job.objects.filter(pk=bulk.job_id).values_list("processed", flat=True)[0]
            say(
                f"  {time.time() - started:6.1f} s: bulk {tagged:,} tagged; engine: "
                f"{run.events:,} events, rule fired {run.rule_runs:,}, entered "
                f"{run.entered:,}, {run.steps:,} steps"
            )
        if report.events == 0:
            if bulk_ended:
                return
            time.sleep(0.01)


def _advance_loop(run: EngineRun, consumed: threading.Event) -> None:
    """automations.advance, over and over with its clock one delay ahead, until the outbox is
    consumed and nobody is due."""
    from django.utils import timezone

    from automations.engine import automations_due, journeys_advance_batch

    while True:
        consumer_done = consumed.is_set()
        clock = timezone.now() + DELAY
        steps = 0
        for automation in automations_due(now=clock):
            t = time.perf_counter()
            ran = journeys_advance_batch(automation=automation, now=clock)
            elapsed = time.perf_counter() - t
            if ran:
                with run.lock:
                    run.advance_s += elapsed
                    run.advance_batches += 1
                    run.batch_ms["advance"].append(1000 * elapsed)
                    run.steps += ran
                    run.flow_done_at = max(run.flow_done_at, time.time())
                steps += ran
        if steps == 0:
            if consumer_done:
                return
            time.sleep(0.01)


def outcome_read(*, scenario: Scenario, subscribers: int) -> dict:
    """Duplicates, lost and lag from the database (see the module docstring)."""
    from django.db import connection

    from automations.models import Event, History, Journey, Rule
    from sequences.models import Subscription
    from subscribers.models import Subscriber, Tagging

    history, journey = History._meta.db_table, Journey._meta.db_table
    tagging, subscription = Tagging._meta.db_table, Subscription._meta.db_table
    params = {
        "account": scenario.rule.account_id,
        "rule": scenario.rule.pk,
        "automation": scenario.automation.pk,
        "exit": scenario.exit_node.pk,
        "sequence": scenario.sequence.pk,
        "customer": scenario.customer.pk,
        "buyer": scenario.buyer.pk,
        "vip": scenario.vip.pk,
        "exited": int(Journey.State.EXITED),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT
              (SELECT count(*) - count(DISTINCT subscriber_id) FROM {history}
               WHERE rule_id = %(rule)s)
            + (SELECT count(*) - count(DISTINCT (subscriber_id, node_id)) FROM {history}
               WHERE automation_id = %(automation)s AND node_id IS NOT NULL)
            + (SELECT count(*) - count(DISTINCT subscriber_id) FROM {history}
               WHERE automation_id = %(automation)s AND node_id IS NULL)
            + (SELECT count(*) FROM {journey}
               WHERE automation_id = %(automation)s AND visit <> 1)
            + (SELECT count(*) FROM {subscription}
               WHERE sequence_id = %(sequence)s AND round <> 0)
            """,
            params,
        )
        duplicates = cursor.fetchone()[0]
        fired = Rule.objects.get(pk=scenario.rule.pk).fired_count
        duplicates += max(0, fired - subscribers)
        cursor.execute(
            f"""
            SELECT count(*) FROM {Subscriber._meta.db_table} s
            WHERE s.account_id = %(account)s AND NOT (
                  EXISTS (SELECT 1 FROM {tagging} t
                          WHERE t.subscriber_id = s.id AND t.tag_id = %(customer)s)
              AND EXISTS (SELECT 1 FROM {tagging} t
                          WHERE t.subscriber_id = s.id AND t.tag_id = %(buyer)s)
              AND EXISTS (SELECT 1 FROM {tagging} t
                          WHERE t.subscriber_id = s.id AND t.tag_id = %(vip)s)
              AND EXISTS (SELECT 1 FROM {subscription} q
                          WHERE q.subscriber_id = s.id AND q.sequence_id = %(sequence)s)
              AND EXISTS (SELECT 1 FROM {history} h
                          WHERE h.subscriber_id = s.id AND h.rule_id = %(rule)s)
              AND EXISTS (SELECT 1 FROM {journey} j
                          WHERE j.subscriber_id = s.id AND j.automation_id = %(automation)s
                            AND j.state = %(exited)s)
              AND EXISTS (SELECT 1 FROM {history} h
                          WHERE h.subscriber_id = s.id AND h.automation_id = %(automation)s
                            AND h.node_id = %(exit)s))
            """,
            params,
        )
        lost = cursor.fetchone()[0] + Event.objects.count()
        cursor.execute(
            f"""
            SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lag), max(lag)
            FROM (SELECT extract(epoch FROM h.at - t.created_at) AS lag
                  FROM {history} h
                  JOIN {tagging} t ON t.subscriber_id = h.subscriber_id
                                  AND t.tag_id = %(customer)s
                  WHERE h.automation_id = %(automation)s AND h.node_id = %(exit)s) lags
            """,
            params,
        )
        (lag_p50, lag_p99), lag_max = cursor.fetchone()
    return {
        "duplicates": duplicates,
        "lost": lost,
        "fired_count": fired,
        "lag_p50_s": round(float(lag_p50 or 0), 2),
        "lag_p99_s": round(float(lag_p99 or 0), 2),
        "lag_max_s": round(float(lag_max or 0), 2),
    }


def _per_s(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


def bench_run(*, subscribers: int, say: Callable = _say) -> dict:
    from django.db import connection

    say(f"Seeding {subscribers:,} subscribers")
    account, seed_seconds = active_account_seed(subscribers=subscribers, say=say)
    scenario = scenario_build(account=account)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE subscribers_subscriber")
    say("The limit: one INSERT ... SELECT of a history row per subscriber")
    limit_rows, limit_s = limit_measure(account_id=account.pk)
    limit_per_s = _per_s(limit_rows, limit_s)
    say(f"  {limit_rows:,} rows in {limit_s:.2f} s: {limit_per_s:,.0f} rows/s")

    say(f"The bulk action tags {subscribers:,} subscribers; the engine follows")
    started = time.time()
    bulk = bulk_start(account=account, tag=scenario.customer, subscribers=subscribers)
    engine = engine_follow(bulk=bulk, started=started, say=say)
    bulk.finish()
    ended = time.time()
    say(f"  done in {ended - started:.1f} s (bulk action {bulk.seconds:.1f} s)")
    say("Checking every subscriber's tags, sequence, journey and history")
    outcome = outcome_read(scenario=scenario, subscribers=subscribers)

    rule_s = engine.rule_done_at - started if engine.rule_done_at else 0.0
    flow_s = engine.flow_done_at - started if engine.flow_done_at else 0.0
    rule_per_s, flow_per_s = _per_s(subscribers, rule_s), _per_s(subscribers, flow_s)
    slower = min(rule_per_s, flow_per_s)
    return {
        "bench": "automations",
        "events": subscribers,
        "rule_events_per_s": rule_per_s,
        "flow_events_per_s": flow_per_s,
        "limit_rows_per_s": limit_per_s,
        "ratio": round(slower / limit_per_s, 3) if limit_per_s else 0.0,
        "lag_p99_s": outcome["lag_p99_s"],
        "duplicates": outcome["duplicates"],
        "lost": outcome["lost"],
        "_details": {
            "seed_seconds": round(seed_seconds, 1),
            "total_s": round(ended - started, 2),
            "rule_s": round(rule_s, 2),
            "flow_s": round(flow_s, 2),
            "bulk_s": round(bulk.seconds, 2),
            "bulk_per_s": _per_s(subscribers, bulk.seconds),
            "outbox_events": engine.events,
            "rule_runs": engine.rule_runs,
            "entered": engine.entered,
            "steps": engine.steps,
            "consume_s": round(engine.consume_s, 2),
            "consume_batches": engine.consume_batches,
            "consume_batch_p95_ms": _percentile(engine.batch_ms["consume"], 0.95),
            "advance_s": round(engine.advance_s, 2),
            "advance_batches": engine.advance_batches,
            "advance_batch_p95_ms": _percentile(engine.batch_ms["advance"], 0.95),
            "sql_s": round(sum(engine.statements.seconds.values()), 2),
            "statements": engine.statements.top(STATEMENTS_SHOWN),
            **outcome,
        },
    }


def table_print(figures: dict, *, out=sys.stdout) -> None:
    details = figures["_details"]
    n = figures["events"]

    def verdict(rate: float) -> str:
        return f"{'ok' if rate >= TARGET_EVENTS_PER_S else 'MISSED'}: >= {TARGET_EVENTS_PER_S:,}"

    rows = [
        ("events", f"{n:,}", "tag added by the bulk action, one per subscriber"),
        (
            "bulk action",
            f"{details['bulk_per_s']:,.0f} tagged/s",
            f"{details['bulk_s']:.1f} s, batches of 5,000 with their outbox events",
        ),
        (
            "rule",
            f"{figures['rule_events_per_s']:,.0f} events/s",
            f"bulk start to the rule's last batch, {details['rule_s']:.1f} s"
            f" ({verdict(figures['rule_events_per_s'])})",
        ),
        (
            "automation",
            f"{figures['flow_events_per_s']:,.0f} events/s",
            f"bulk start to the last exit, {details['flow_s']:.1f} s"
            f" ({verdict(figures['flow_events_per_s'])})",
        ),
        (
            "limit",
            f"{figures['limit_rows_per_s']:,.0f} rows/s",
            f"one INSERT ... SELECT of {n:,} history rows; ratio {figures['ratio']:.3f}"
            " (the slower rate / the limit)",
        ),
        (
            "lag",
            f"p99 {figures['lag_p99_s']:.1f} s",
            f"tagged to exit step, the delay moved past; p50 {details['lag_p50_s']:.1f} s,"
            f" max {details['lag_max_s']:.1f} s",
        ),
        (
            "consume",
            f"{details['consume_s']:.1f} s",
            f"events_consume: {details['outbox_events']:,} events in {details['consume_batches']:,} batches, p95"
            f" {details['consume_batch_p95_ms']:,.0f} ms; {_per_s(n, details['consume_s']):,.0f}"
            " tag events/s alone",
        ),
        (
            "advance",
            f"{details['advance_s']:.1f} s",
            f"journeys_advance_batch: {details['steps']:,} steps in"
            f" {details['advance_batches']:,} batches, p95 {details['advance_batch_p95_ms']:,.0f}"
            f" ms; {_per_s(n, details['advance_s']):,.0f} people/s alone",
        ),
        (
            "checks",
            f"{figures['duplicates']} dup, {figures['lost']} lost",
            f"rule fired {details['fired_count']:,} times; both must be 0",
        ),
    ]
    for name, value, note in rows:
        print(f"{name:<12}{value:>20}   {note}", file=out)
    engine_s = details["consume_s"] + details["advance_s"]
    print(
        f"Where the engine's {engine_s:.1f} s went: {details['sql_s']:.1f} s in statements"
        " (idle polls included; the rest: Python and commits); the costliest:",
        file=out,
    )
    for key, seconds, calls in details["statements"]:
        print(f"  {seconds:8.2f} s {calls:6,} x  {key}", file=out)
    print(f"Seeding took {details['seed_seconds']:.1f} s.", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--redis-url", default="", help="use this Redis instead of a private one")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--database", default="convertkit_bench_automations")
    args = parser.parse_args(argv)
    if args.subscribers < 1:
        parser.error("--subscribers must be positive")

    with bench_session(database=args.database, redis_url=args.redis_url, keep=args.keep):
        figures = bench_run(subscribers=args.subscribers)
    table_print(figures)
    print(json.dumps({key: value for key, value in figures.items() if key != "_details"}))
    return 0 if figures["duplicates"] == 0 and figures["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
