"""How the automations engine keeps up: what `manage.py automation_status` shows.

- The outbox: events waiting (rows of Event) and the lag, the age of the oldest one: events are
  consumed oldest first, so it is how long a change now waits for its rules and automations.
- The rates: History rows written in the last minute. A step writes its row when it runs (a
  replay writes none, see History), a rule one per subscriber it fired for, an entry one per
  subscriber who entered: exact counts of the work done, whichever process did it, read from the
  rows themselves rather than from counters a crash could lose.
- Per automation that people can enter (active or paused): who is in it, who waits (for a delay
  or a wait to end, for an event, for their sequence to finish), who is due (a step the engine
  has yet to run; a number that grows is an engine behind), and its steps per second. Per rule:
  how many times it fired, in all and per second.

Every figure is a fixed number of queries. The last minute's History rows are found from the
newest backwards through the primary key (History has no index on `at`, and needs none here).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from automations.models import Automation, Event, History, Journey, Rule
from convertkit.models import Account

RATE_WINDOW = timedelta(seconds=60)
# A History row carries its transaction's start time (now()), and ids are given in insert
# order: the rows of the window all lie after the newest row older than this before it, unless
# an engine transaction lasted longer (each batch is one, of seconds).
_ID_SLACK = timedelta(seconds=60)


@dataclass
class AutomationLine:
    automation: Automation
    active: int  # in it now
    waiting: int  # in it, not due: in a delay or a wait, or waiting for an event or a sequence
    due: int  # in it, due now: a step the engine has yet to run
    steps_per_s: float


@dataclass
class RuleLine:
    rule: Rule
    fired_per_s: float


@dataclass
class AutomationStatus:
    backlog: int  # events in the outbox
    lag_s: float  # age of the oldest event in the outbox; 0 when there is none
    steps_per_s: float  # automation steps run per second, mean of the last minute
    rule_runs_per_s: float  # subscribers a rule fired for, per second
    entries_per_s: float  # subscribers who entered an automation, per second
    automations: list[AutomationLine] = field(default_factory=list)
    rules: list[RuleLine] = field(default_factory=list)

    @property
    def due(self) -> int:
        return sum(line.due for line in self.automations)


def _outbox(now: datetime) -> tuple[int, float]:
    table = Event._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), (SELECT created_at FROM {table} ORDER BY id LIMIT 1) FROM {table}"
        )
        backlog, oldest = cursor.fetchone()
    return backlog, max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


def _recent_work(now: datetime) -> dict[tuple[int | None, int | None, bool], int]:
    """History rows of the last minute by (rule, automation, whether a step)."""
    table = History._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT rule_id, automation_id, node_id IS NOT NULL, count(*) FROM {table}
            WHERE id > coalesce((SELECT id FROM {table} WHERE at < %(before)s
                                 ORDER BY id DESC LIMIT 1), 0)
              AND at >= %(since)s AND at <= %(now)s
            GROUP BY 1, 2, 3
            """,
            {"before": now - RATE_WINDOW - _ID_SLACK, "since": now - RATE_WINDOW, "now": now},
        )
        return {(rule, automation, step): count for rule, automation, step, count in cursor}


def _journey_counts(automation_ids: list[int], now: datetime) -> dict[int, tuple[int, int]]:
    """(in it, due) per automation."""
    if not automation_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT automation_id, count(*), count(*) FILTER (WHERE due_at <= %(now)s)
            FROM {Journey._meta.db_table}
            WHERE automation_id = ANY(%(ids)s) AND state = %(active)s
            GROUP BY automation_id
            """,
            {"ids": automation_ids, "now": now, "active": int(Journey.State.ACTIVE)},
        )
        return {pk: (active, due) for pk, active, due in cursor}


def automation_status_read(
    *, account: Account | None = None, now: datetime | None = None
) -> AutomationStatus:
    """The outbox and the rates of the whole engine; the automations and rules of `account`,
    or of every account."""
    now = now or timezone.now()
    window = RATE_WINDOW.total_seconds()
    backlog, lag_s = _outbox(now)
    work = _recent_work(now)
    steps: dict[int, int] = defaultdict(int)
    fired: dict[int, int] = defaultdict(int)
    entries = 0
    for (rule_id, automation_id, step), count in work.items():
        if rule_id is not None:
            fired[rule_id] += count
        elif automation_id is not None and step:
            steps[automation_id] += count
        elif automation_id is not None:
            entries += count
    automations = (
        Automation.objects.exclude(state=Automation.State.INACTIVE)
        .select_related("account")
        .order_by("id")
    )
    rules = Rule.objects.select_related("account").order_by("id")
    if account is not None:
        automations, rules = automations.filter(account=account), rules.filter(account=account)
    automations = list(automations)
    counts = _journey_counts([automation.pk for automation in automations], now)
    lines = []
    for automation in automations:
        active, due = counts.get(automation.pk, (0, 0))
        lines.append(
            AutomationLine(
                automation=automation,
                active=active,
                waiting=active - due,
                due=due,
                steps_per_s=steps[automation.pk] / window,
            )
        )
    return AutomationStatus(
        backlog=backlog,
        lag_s=lag_s,
        steps_per_s=sum(steps.values()) / window,
        rule_runs_per_s=sum(fired.values()) / window,
        entries_per_s=entries / window,
        automations=lines,
        rules=[RuleLine(rule=rule, fired_per_s=fired[rule.pk] / window) for rule in rules],
    )
