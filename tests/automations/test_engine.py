"""The automations engine against real PostgreSQL: rules fire, subscribers enter, wait, branch,
are pulled forward and leave; replays change nothing; the clock is passed in, never slept on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from automations.engine import automations_run, date_entries_run, events_consume
from automations.models import Event, EventKind, History, Journey, Node, Rule
from automations.outbox import events_add
from automations.services import (
    ActionKind,
    AutomationInvalid,
    TriggerSpec,
    automation_create,
    automation_state_set,
    automation_update,
    entry_add,
    node_add,
    node_delete,
    node_update,
    rule_save,
)
from sequences.models import Sequence, Subscription
from subscribers.models import Subscriber, Tagging
from subscribers.services import subscriber_tags_add, subscriber_unsubscribe, subscribers_tag
from tests.factories import AccountFactory, CustomFieldFactory, SubscriberFactory, TagFactory

pytestmark = pytest.mark.django_db

MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
State = Journey.State


@pytest.fixture
def account():
    return AccountFactory(name="Ann's Kitchen", time_zone="UTC")


def tags_of(subscriber) -> set[str]:
    return set(Tagging.objects.filter(subscriber=subscriber).values_list("tag__name", flat=True))


def drain(now=MONDAY):
    """Runs the engine until the outbox is empty and nothing is due at `now`."""
    return automations_run(now=now, budget=60)


def flow(account, *steps, entry_tag=None, reentry=False, state="active", name="Welcome"):
    """An automation entered when `entry_tag` is added, with `steps` [(kind, config), ...] one
    under the other; returns it and its nodes."""
    automation = automation_create(account=account, name=name)
    if reentry:
        automation_update(automation=automation, name=name, reentry=True, daily_entry_limit=2)
    entry_add(automation=automation, spec=TriggerSpec(kind="tag_added", object_id=entry_tag.pk))
    nodes, parent = [], None
    for kind, config in steps:
        node = node_add(automation=automation, parent=parent, branch="", kind=kind, config=config)
        nodes.append(node)
        parent = node
    automation_state_set(automation=automation, state=state)
    return automation, nodes


# Rules ----------------------------------------------------------------------------------------


def test_a_rule_tags_and_subscribes_whoever_gets_its_tag(account):
    customer, buyer = (
        TagFactory(account=account, name="Customer"),
        TagFactory(account=account, name="Buyer"),
    )
    sequence = Sequence.objects.create(account=account, name="Onboarding")
    rule = rule_save(
        account=account,
        name="Customers",
        triggers=[TriggerSpec(kind="tag_added", object_id=customer.pk)],
        actions=[
            {"kind": ActionKind.ADD_TAG, "object_id": buyer.pk},
            {"kind": ActionKind.SUBSCRIBE_SEQUENCE, "object_id": sequence.pk},
        ],
    )
    ann, bob = SubscriberFactory(account=account), SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[customer.pk])

    report = drain()

    assert tags_of(ann) == {"Customer", "Buyer"}
    assert tags_of(bob) == set()
    assert Subscription.objects.filter(sequence=sequence, subscriber=ann).exists()
    assert report.rule_runs == 1
    rule.refresh_from_db()
    assert rule.fired_count == 1
    note = History.objects.get(rule_id=rule.pk, subscriber_id=ann.pk).note
    assert "tagged “Buyer”" in note and "Onboarding" in note
    assert not Event.objects.exists()


def test_a_disabled_rule_does_nothing(account):
    customer, buyer = TagFactory(account=account), TagFactory(account=account)
    rule_save(
        account=account,
        name="Off",
        enabled=False,
        triggers=[TriggerSpec(kind="tag_added", object_id=customer.pk)],
        actions=[{"kind": ActionKind.ADD_TAG, "object_id": buyer.pk}],
    )
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[customer.pk])
    drain()
    assert buyer.name not in tags_of(ann)


def test_a_replayed_event_changes_nothing_more(account):
    customer = TagFactory(account=account)
    field = CustomFieldFactory(account=account, key="visits", label="Visits")
    rule = rule_save(
        account=account,
        name="Count",
        triggers=[TriggerSpec(kind="tag_added", object_id=customer.pk)],
        actions=[{"kind": ActionKind.SET_FIELD, "detail": field.key, "value": "1"}],
    )
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[customer.pk])
    drain()
    events_add(
        account_id=account.pk, kind="tag_added", subscriber_ids=[ann.pk], object_id=customer.pk
    )
    drain()
    ann.refresh_from_db()
    assert ann.fields["visits"] == "1"
    # The field changed once: the second firing found it already set and wrote no event.
    assert Rule.objects.get(pk=rule.pk).fired_count == 2
    assert not Event.objects.exists()


def test_a_rule_never_subscribes_an_unsubscribed_person_to_a_sequence(account):
    customer = TagFactory(account=account)
    sequence = Sequence.objects.create(account=account, name="Onboarding")
    rule_save(
        account=account,
        name="Customers",
        triggers=[TriggerSpec(kind="tag_added", object_id=customer.pk)],
        actions=[{"kind": ActionKind.SUBSCRIBE_SEQUENCE, "object_id": sequence.pk}],
    )
    ann = SubscriberFactory(account=account)
    subscriber_unsubscribe(subscriber=ann, reason="test")
    subscriber_tags_add(subscriber=ann, tag_ids=[customer.pk])
    drain()
    assert not Subscription.objects.filter(sequence=sequence).exists()
    ann.refresh_from_db()
    assert ann.state == Subscriber.State.UNSUBSCRIBED


def test_rules_that_trigger_each_other_are_stopped_and_say_so(account, settings):
    settings.AUTOMATION_MAX_DEPTH = 4
    first, second = TagFactory(account=account, name="A"), TagFactory(account=account, name="B")
    for name, when, then in (("A to B", first, second), ("B to A", second, first)):
        rule_save(
            account=account,
            name=name,
            triggers=[TriggerSpec(kind="tag_added", object_id=when.pk)],
            actions=[
                {"kind": ActionKind.REMOVE_TAG, "object_id": when.pk},
                {"kind": ActionKind.ADD_TAG, "object_id": then.pk},
            ],
        )
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[first.pk])
    drain()
    assert not Event.objects.exists()
    assert History.objects.filter(subscriber_id=ann.pk, note__startswith="stopped").count() == 1
    assert History.objects.filter(subscriber_id=ann.pk, rule_id__isnull=False).count() == 4


def test_a_rule_on_another_accounts_tag_is_refused_and_nothing_is_saved(account):
    theirs = TagFactory(account=AccountFactory())
    with pytest.raises(AutomationInvalid, match="does not exist"):
        rule_save(
            account=account,
            name="Sneaky",
            triggers=[TriggerSpec(kind="tag_added", object_id=theirs.pk)],
            actions=[{"kind": ActionKind.UNSUBSCRIBE}],
        )
    assert not Rule.objects.exists()


# Automations ----------------------------------------------------------------------------------


def test_a_subscriber_waits_the_delay_then_branches_and_completes(account):
    start, clicked, vip = (TagFactory(account=account, name=n) for n in ("Start", "Clicked", "VIP"))
    automation = automation_create(account=account, name="Journey")
    entry_add(automation=automation, spec=TriggerSpec(kind="tag_added", object_id=start.pk))
    delay = node_add(
        automation=automation,
        parent=None,
        branch="",
        kind="delay",
        config={"amount": 1, "unit": "days"},
    )
    split = node_add(
        automation=automation,
        parent=delay,
        branch="",
        kind="condition",
        config={"test": "has_tag", "tag_id": clicked.pk},
    )
    node_add(
        automation=automation, parent=split, branch="yes", kind="add_tag", config={"tag_id": vip.pk}
    )
    node_add(automation=automation, parent=split, branch="no", kind="exit", config={})
    automation_state_set(automation=automation, state="active")
    ann, bob = SubscriberFactory(account=account), SubscriberFactory(account=account)
    subscribers_tag(account_id=account.pk, tag_id=start.pk, subscriber_ids=[ann.pk, bob.pk])
    subscriber_tags_add(subscriber=ann, tag_ids=[clicked.pk])

    drain(MONDAY)
    assert set(Journey.objects.values_list("node_id", flat=True)) == {delay.pk}
    drain(MONDAY + timedelta(hours=23))
    assert set(Journey.objects.values_list("node_id", flat=True)) == {delay.pk}

    drain(MONDAY + timedelta(days=1, minutes=1))
    assert "VIP" in tags_of(ann) and "VIP" not in tags_of(bob)
    assert Journey.objects.get(subscriber=ann).state == State.COMPLETED
    assert Journey.objects.get(subscriber=bob).state == State.EXITED
    notes = list(
        History.objects.filter(subscriber_id=ann.pk).order_by("id").values_list("note", flat=True)
    )
    assert notes[0].startswith("entered “Journey”")
    assert notes[1:] == ["waited 1 days", "condition", "tagged “VIP”"]


def test_an_event_pulls_people_forward_but_never_back(account):
    start, paid, thanked = (
        TagFactory(account=account, name=n) for n in ("Start", "Paid", "Thanked")
    )
    automation, (wait, goal, thank) = flow(
        account,
        ("delay", {"amount": 2, "unit": "weeks"}),
        ("goal", {"kind": "tag_added", "object_id": paid.pk}),
        ("add_tag", {"tag_id": thanked.pk}),
        entry_tag=start,
    )
    ann, bob = SubscriberFactory(account=account), SubscriberFactory(account=account)
    subscribers_tag(account_id=account.pk, tag_id=start.pk, subscriber_ids=[ann.pk, bob.pk])
    drain()
    subscriber_tags_add(subscriber=ann, tag_ids=[paid.pk])
    drain(MONDAY + timedelta(minutes=5))
    assert "Thanked" in tags_of(ann)
    assert Journey.objects.get(subscriber=ann).state == State.COMPLETED
    assert Journey.objects.get(subscriber=bob).node_id == wait.pk
    # Bob reaches the event without the tag: he waits there, then the tag moves him on.
    drain(MONDAY + timedelta(weeks=2, minutes=1))
    assert Journey.objects.get(subscriber=bob).node_id == goal.pk
    assert Journey.objects.get(subscriber=bob).due_at is None
    subscriber_tags_add(subscriber=bob, tag_ids=[paid.pk])
    drain(MONDAY + timedelta(weeks=2, minutes=2))
    assert "Thanked" in tags_of(bob)
    # A finished subscriber is not pulled back in by the event.
    before = History.objects.count()
    events_add(account_id=account.pk, kind="tag_added", subscriber_ids=[ann.pk], object_id=paid.pk)
    drain(MONDAY + timedelta(weeks=3))
    assert History.objects.count() == before


def test_paused_automations_take_people_in_at_the_start_and_inactive_ones_nobody(account):
    start, done = TagFactory(account=account), TagFactory(account=account, name="Done")
    automation, (tag_step,) = flow(
        account, ("add_tag", {"tag_id": done.pk}), entry_tag=start, state="paused"
    )
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    drain()
    journey = Journey.objects.get(subscriber=ann)
    assert journey.node_id == tag_step.pk and "Done" not in tags_of(ann)
    automation_state_set(automation=automation, state="active")
    drain(MONDAY + timedelta(seconds=1))
    assert "Done" in tags_of(ann)

    automation_state_set(automation=automation, state="inactive")
    bob = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=bob, tag_ids=[start.pk])
    drain(MONDAY + timedelta(seconds=2))
    assert not Journey.objects.filter(subscriber=bob).exists()


def test_the_loop_guard_stops_re_entry_beyond_the_daily_limit_and_says_so(account):
    start = TagFactory(account=account, name="Start")
    automation, _ = flow(
        account, ("remove_tag", {"tag_id": start.pk}), entry_tag=start, reentry=True
    )
    ann = SubscriberFactory(account=account)
    for minute in range(4):
        # Tagged again each time (the step removes it; a guarded entry leaves it on).
        Tagging.objects.filter(subscriber=ann).delete()
        subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
        drain(MONDAY + timedelta(minutes=minute))
    journey = Journey.objects.get(subscriber=ann)
    assert journey.visit == 2
    assert History.objects.filter(subscriber_id=ann.pk, note__contains="loop guard").count() == 2
    # The next day the count starts again.
    Tagging.objects.filter(subscriber=ann).delete()
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    drain(MONDAY + timedelta(days=1))
    assert Journey.objects.get(subscriber=ann).visit == 3


def test_without_re_entry_a_finished_subscriber_stays_out(account):
    start = TagFactory(account=account)
    flow(account, ("remove_tag", {"tag_id": start.pk}), entry_tag=start)
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    drain()
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    drain(MONDAY + timedelta(minutes=1))
    assert Journey.objects.get(subscriber=ann).visit == 1


def test_deleting_a_step_where_people_wait_moves_them_to_the_next(account):
    start, done = TagFactory(account=account), TagFactory(account=account, name="Done")
    automation, (wait, tag_step) = flow(
        account,
        ("delay", {"amount": 3, "unit": "days"}),
        ("add_tag", {"tag_id": done.pk}),
        entry_tag=start,
    )
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    drain()
    assert node_delete(node=wait, now=MONDAY + timedelta(hours=1)) == 1
    drain(MONDAY + timedelta(hours=1))
    assert "Done" in tags_of(ann)
    tag_step.refresh_from_db()
    assert tag_step.parent_id is None


def test_a_move_between_automations_that_would_loop_is_refused(account):
    start = TagFactory(account=account)
    first, _ = flow(
        account, ("delay", {"amount": 1, "unit": "days"}), entry_tag=start, name="First"
    )
    second = automation_create(account=account, name="Second")
    node_add(
        automation=second, parent=None, branch="", kind="move", config={"automation_id": first.pk}
    )
    wait = Node.objects.get(automation=first)
    with pytest.raises(AutomationInvalid, match="loop"):
        node_add(
            automation=first,
            parent=wait,
            branch="",
            kind="move",
            config={"automation_id": second.pk},
        )
    assert Node.objects.filter(automation=first, kind="move").count() == 0


def test_an_impossible_date_in_a_wait_is_refused(account):
    automation = automation_create(account=account, name="Launch")
    with pytest.raises(AutomationInvalid, match="2027-02-30"):
        node_add(
            automation=automation,
            parent=None,
            branch="",
            kind="wait_until",
            config={"mode": "date", "date": "2027-02-30", "hour": 9},
        )
    assert not Node.objects.exists()


def test_birthdays_enter_once_on_their_day_from_the_chosen_hour(account):
    CustomFieldFactory(account=account, key="birthday", label="Birthday")
    done = TagFactory(account=account, name="Cake")
    automation = automation_create(account=account, name="Birthday")
    entry_add(
        automation=automation, spec=TriggerSpec(kind="date_occurs", detail="birthday", hour=9)
    )
    node_add(
        automation=automation, parent=None, branch="", kind="add_tag", config={"tag_id": done.pk}
    )
    automation_state_set(automation=automation, state="active")
    ann = SubscriberFactory(account=account, fields={"birthday": "1990-12-07"})
    SubscriberFactory(account=account, fields={"birthday": "1990-12-08"})
    SubscriberFactory(account=account, fields={"birthday": "2023-02-30"})
    SubscriberFactory(account=account, fields={"birthday": "soon"})

    assert date_entries_run(now=MONDAY.replace(hour=8)) == 0
    assert date_entries_run(now=MONDAY.replace(hour=9)) == 1
    assert date_entries_run(now=MONDAY.replace(hour=15)) == 0
    drain(MONDAY.replace(hour=9))
    assert Journey.objects.get().subscriber_id == ann.pk and "Cake" in tags_of(ann)


def test_a_consumed_batch_is_gone(account):
    start = TagFactory(account=account)
    rule_save(
        account=account,
        name="Listening",
        enabled=False,
        triggers=[TriggerSpec(kind="tag_added", object_id=start.pk)],
        actions=[{"kind": ActionKind.UNSUBSCRIBE}],
    )
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    assert Event.objects.filter(kind=EventKind.TAG_ADDED, subscriber_id=ann.pk).count() == 1
    assert events_consume(now=MONDAY).events == 1
    assert events_consume(now=MONDAY).events == 0
    assert not Event.objects.exists()


def test_an_event_that_fails_on_its_own_is_set_aside_and_the_others_are_acted_on(account, settings):
    # An event whose effects cannot be written (their depth overflows the column) fails every
    # batch it is in; it must not hold back the events around it.
    settings.AUTOMATION_MAX_DEPTH = 40_000
    customer, buyer = TagFactory(account=account), TagFactory(account=account, name="Buyer")
    rule_save(
        account=account,
        name="Customers",
        triggers=[TriggerSpec(kind="tag_added", object_id=customer.pk)],
        actions=[{"kind": ActionKind.ADD_TAG, "object_id": buyer.pk}],
    )
    ann, bad, bob = (SubscriberFactory(account=account) for _ in range(3))
    for subscriber, depth in ((ann, 0), (bad, 32_767), (bob, 0)):
        Event.objects.create(
            account_id=account.pk,
            subscriber_id=subscriber.pk,
            kind="tag_added",
            object_id=customer.pk,
            depth=depth,
        )
    drain()
    assert "Buyer" in tags_of(ann) and "Buyer" in tags_of(bob)
    assert "Buyer" not in tags_of(bad)
    assert History.objects.filter(subscriber_id=bad.pk, note__startswith="could not act").exists()
    assert not Event.objects.exists()


def test_edits_while_people_wait_are_not_retroactive_but_steps_ahead_of_them_count(account):
    start = TagFactory(account=account, name="Start")
    above, ahead = (
        TagFactory(account=account, name="Above"),
        TagFactory(account=account, name="Ahead"),
    )
    automation, (wait,) = flow(account, ("delay", {"amount": 3, "unit": "days"}), entry_tag=start)
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    drain()
    due = Journey.objects.get(subscriber=ann).due_at
    assert due == MONDAY + timedelta(days=3)

    # A shorter delay counts for those who arrive from now on; Ann keeps her time.
    node_update(node=wait, config={"amount": 1, "unit": "days"})
    # A step above her is one she has passed; a step below her is ahead of her.
    node_add(
        automation=automation, parent=None, branch="", kind="add_tag", config={"tag_id": above.pk}
    )
    node_add(
        automation=automation, parent=wait, branch="", kind="add_tag", config={"tag_id": ahead.pk}
    )
    drain(MONDAY + timedelta(days=2))
    assert Journey.objects.get(subscriber=ann).node_id == wait.pk
    drain(MONDAY + timedelta(days=3))
    assert tags_of(ann) == {"Start", "Ahead"}
    assert Journey.objects.get(subscriber=ann).state == State.COMPLETED
