"""`manage.py automation_status [--account] [--watch]`: the outbox's backlog and lag, the steps,
rule runs and entries of the last minute, and per automation and rule where people stand and
what fired; from a real engine run, the clock passed in."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from automations.engine import events_consume, journeys_advance_batch
from automations.models import Event, History
from automations.outbox import events_add
from automations.services import (
    ActionKind,
    TriggerSpec,
    automation_create,
    automation_state_set,
    entry_add,
    node_add,
    rule_save,
)
from automations.status import automation_status_read
from subscribers.services import subscribers_tag
from tests.factories import AccountFactory, SubscriberFactory, TagFactory

pytestmark = pytest.mark.django_db


def status_of(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("automation_status", *args, stdout=out)
    return out.getvalue().splitlines()


def automation_build(account, name, *, entry_tag, steps, state):
    automation = automation_create(account=account, name=name)
    entry_add(automation=automation, spec=TriggerSpec(kind="tag_added", object_id=entry_tag.pk))
    parent = None
    for kind, config in steps:
        parent = node_add(automation=automation, parent=parent, branch="", kind=kind, config=config)
    automation_state_set(automation=automation, state=state)
    return automation


def tag_and_consume(account, tag, subscribers, *, now):
    subscribers_tag(
        account_id=account.pk, tag_id=tag.pk, subscriber_ids=[s.pk for s in subscribers]
    )
    while events_consume(now=now).events:
        pass


@pytest.fixture
def engine_at_work():
    """Ann's Kitchen: the rule "Customers" (Customer added -> tag Buyer) fired for four people
    (seven more firings ten minutes ago), a disabled rule; "Welcome" (Customer added -> wait a
    day -> tag Thanked): two went through it, one is due now, one waits; "Held", paused, holds
    all four at its start; "Draft" is inactive. Five events wait in the outbox, the oldest for
    30 s. Another account has an automation of its own."""
    now = timezone.now()
    account = AccountFactory(name="Ann's Kitchen", time_zone="UTC")
    customer, buyer, thanked = (
        TagFactory(account=account, name=name) for name in ("Customer", "Buyer", "Thanked")
    )
    rule = rule_save(
        account=account,
        name="Customers",
        triggers=[TriggerSpec(kind="tag_added", object_id=customer.pk)],
        actions=[{"kind": ActionKind.ADD_TAG, "object_id": buyer.pk}],
    )
    rule_save(
        account=account,
        name="Off",
        enabled=False,
        triggers=[TriggerSpec(kind="tag_added", object_id=thanked.pk)],
        actions=[{"kind": ActionKind.ADD_TAG, "object_id": buyer.pk}],
    )
    for _n in range(7):
        History.objects.create(
            account_id=account.pk,
            subscriber_id=0,
            rule_id=rule.pk,
            note="rule “Customers”: tagged “Buyer”",
            at=now - timedelta(minutes=10),
        )
    welcome = automation_build(
        account,
        "Welcome",
        entry_tag=customer,
        steps=[("delay", {"amount": 1, "unit": "days"}), ("add_tag", {"tag_id": thanked.pk})],
        state="active",
    )
    automation_build(
        account,
        "Held",
        entry_tag=customer,
        steps=[("add_tag", {"tag_id": thanked.pk})],
        state="paused",
    )
    automation_build(account, "Draft", entry_tag=customer, steps=[], state="inactive")
    other = AccountFactory(name="Bob's Bikes")
    automation_build(
        other,
        "Bikes",
        entry_tag=TagFactory(account=other),
        steps=[("exit", {})],
        state="active",
    )
    ann, bea, cy, dee = (SubscriberFactory(account=account) for _n in range(4))
    tag_and_consume(account, customer, [ann, bea], now=now - timedelta(days=2))
    assert journeys_advance_batch(automation=welcome, now=now - timedelta(days=1)) == 4
    tag_and_consume(account, customer, [cy], now=now - timedelta(days=1))
    tag_and_consume(account, customer, [dee], now=now)
    events_add(
        account_id=account.pk, kind="tag_added", subscriber_ids=[ann.pk] * 5, object_id=customer.pk
    )
    Event.objects.update(created_at=now - timedelta(seconds=30))
    return now


def test_it_reads_the_backlog_lag_rates_and_each_automation_and_rule(engine_at_work):
    now = engine_at_work
    # History rows carry the time of the statement that wrote them: read after the engine ran.
    reading = timezone.now()

    status = automation_status_read(now=reading)

    assert status.backlog == 5
    assert status.lag_s == pytest.approx(30 + (reading - now).total_seconds())
    # Ann and Bea: the delay and the tag; the firings of ten minutes ago are not counted.
    assert status.steps_per_s == pytest.approx(4 / 60)
    assert status.rule_runs_per_s == pytest.approx(4 / 60)
    assert status.entries_per_s == pytest.approx(8 / 60)
    lines = {line.automation.name: line for line in status.automations}
    assert set(lines) == {"Welcome", "Held", "Bikes"}
    welcome, held = lines["Welcome"], lines["Held"]
    assert (welcome.active, welcome.waiting, welcome.due) == (2, 1, 1)
    assert welcome.steps_per_s == pytest.approx(4 / 60)
    assert (held.active, held.waiting, held.due) == (4, 0, 4)
    assert (lines["Bikes"].active, lines["Bikes"].steps_per_s) == (0, 0)
    assert status.due == 5
    rules = {line.rule.name: line for line in status.rules}
    assert rules["Customers"].rule.fired_count == 4
    assert rules["Customers"].fired_per_s == pytest.approx(4 / 60)
    assert rules["Off"].fired_per_s == 0


def test_the_command_prints_the_figures_one_line_per_automation_and_rule(engine_at_work):
    lines = status_of()

    assert re.fullmatch(
        r"Outbox:       5 events waiting; lag 3[01]\.\d s \(age of the oldest\)", lines[0]
    )
    assert lines[1] == (
        "Engine:       0.1 steps/s, 0.1 rule runs/s, 0.1 entries/s (mean of the last minute)"
    )
    assert lines[2] == "Due now:      5 people at a step the engine has yet to run"
    table = [line.split() for line in lines[4:]]
    assert table[0] == [
        "id",
        "state",
        "in",
        "it",
        "waiting",
        "due",
        "now",
        "steps/s",
        "automation",
        "(account)",
    ]
    assert table[1][1:6] == ["active", "2", "1", "1", "0.1"]
    assert " ".join(table[1][6:]) == "Welcome (Ann's Kitchen)"
    assert table[2][1:6] == ["paused", "4", "0", "4", "0.0"]
    assert " ".join(table[2][6:]) == "Held (Ann's Kitchen)"
    assert " ".join(table[3][6:]) == "Bikes (Bob's Bikes)"
    assert table[4] == []
    assert table[5] == ["id", "state", "fired", "fired/s", "rule", "(account)"]
    assert table[6][1:] == ["enabled", "4", "0.1", "Customers", "(Ann's", "Kitchen)"]
    assert table[7][1:] == ["disabled", "0", "0.0", "Off", "(Ann's", "Kitchen)"]


def test_with_an_account_it_lists_that_accounts_automations_and_rules_only(engine_at_work):
    lines = status_of("--account", "Bob's Bikes")

    assert lines[0].startswith("Outbox:       5 events waiting")
    assert [line.split()[-3:] for line in lines[5:6]] == [["Bikes", "(Bob's", "Bikes)"]]
    assert lines[7].split()[-2:] == ["rule", "(account)"]
    assert lines[8].strip() == "(no rule)"


def test_an_unknown_account_is_a_clear_error(db):
    with pytest.raises(CommandError, match="No account is named “Nobody”"):
        status_of("--account", "Nobody")


def test_nothing_waiting_means_no_lag_and_no_rate(db):
    status = automation_status_read()

    assert (status.backlog, status.lag_s, status.due) == (0, 0.0, 0)
    assert (status.steps_per_s, status.rule_runs_per_s, status.entries_per_s) == (0, 0, 0)
    assert status_of()[4:] == [
        "    id  state         in it    waiting    due now   steps/s  automation (account)",
        "        (no active or paused automation)",
        "",
        "    id  state         fired    fired/s  rule (account)",
        "        (no rule)",
    ]


def test_watch_prints_again_until_ctrl_c(engine_at_work, monkeypatch):
    from automations.management.commands import automation_status

    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt
        Event.objects.all().delete()

    monkeypatch.setattr(automation_status.time, "sleep", sleep)
    readings = [line for line in status_of("--watch") if line.startswith("Outbox:")]

    assert sleeps == [2.0, 2.0]
    assert readings[0].startswith("Outbox:       5 events waiting; lag 3")
    assert readings[1] == "Outbox:       0 events waiting; lag 0.0 s (age of the oldest)"
