"""Rules and automations reacting to what really happens: a person's click stored by the
tracking drain, a sequence finishing under its own scheduler, a signup through a form; and the
conditions read from real tracking and segment data."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from automations.engine import automations_run
from automations.models import History, Journey
from automations.services import (
    ActionKind,
    TriggerSpec,
    automation_create,
    automation_state_set,
    entry_add,
    node_add,
    rule_save,
)
from sequences.engine import sequences_advance
from subscribers.models import Segment, Subscriber, Tag, Tagging
from subscribers.services import subscriber_tags_add
from subscribers.signup_forms.services import form_create
from subscribers.signup_forms.signup import signup_submit
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory
from tracking.models import EventKind as TrackedKind
from tracking.store import TrackedEvent, events_store

pytestmark = pytest.mark.django_db
State = Journey.State


def tags_of(subscriber) -> set[str]:
    return set(Tagging.objects.filter(subscriber=subscriber).values_list("tag__name", flat=True))


def click(delivery, link, now=None):
    events_store([TrackedEvent(TrackedKind.CLICK, now or timezone.now(), delivery.pk, link.pk)])


def test_a_click_on_a_link_whose_url_matches_fires_the_rule(sent_broadcast):
    broadcast = sent_broadcast(recipients=2)
    account = broadcast.account
    clicked = TagFactory(account=account, name="Likes bread")
    rule_save(
        account=account,
        name="Bread lovers",
        triggers=[TriggerSpec(kind="link_clicked", detail="/bread")],
        actions=[{"kind": ActionKind.ADD_TAG, "object_id": clicked.pk}],
    )
    reader, other = broadcast.delivery_set.order_by("id")
    soup, bread = broadcast.links.order_by("position")
    click(reader, bread)
    click(other, soup)
    automations_run()
    assert "Likes bread" in tags_of(reader.subscriber)
    assert "Likes bread" not in tags_of(other.subscriber)


def test_a_click_pulls_a_waiting_subscriber_to_the_event_and_on(sent_broadcast):
    broadcast = sent_broadcast(recipients=1)
    account = broadcast.account
    start, thanked = TagFactory(account=account), TagFactory(account=account, name="Thanked")
    soup, _ = broadcast.links.order_by("position")
    automation = automation_create(account=account, name="Soup")
    entry_add(automation=automation, spec=TriggerSpec(kind="tag_added", object_id=start.pk))
    wait = node_add(
        automation=automation,
        parent=None,
        branch="",
        kind="delay",
        config={"amount": 30, "unit": "days"},
    )
    goal = node_add(
        automation=automation,
        parent=wait,
        branch="",
        kind="goal",
        config={"kind": "link_clicked", "object_id": soup.pk},
    )
    node_add(
        automation=automation, parent=goal, branch="", kind="add_tag", config={"tag_id": thanked.pk}
    )
    automation_state_set(automation=automation, state="active")
    delivery = broadcast.delivery_set.get()
    subscriber_tags_add(subscriber=delivery.subscriber, tag_ids=[start.pk])
    automations_run()
    assert Journey.objects.get().node_id == wait.pk

    click(delivery, soup)
    automations_run()
    assert "Thanked" in tags_of(delivery.subscriber)
    assert Journey.objects.get().state == State.COMPLETED


def test_a_sequence_step_waits_for_the_sequence_to_finish(make_sequence):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    account = sequence.account
    start, graduated = TagFactory(account=account), TagFactory(account=account, name="Graduated")
    automation = automation_create(account=account, name="Course")
    entry_add(automation=automation, spec=TriggerSpec(kind="tag_added", object_id=start.pk))
    step = node_add(
        automation=automation,
        parent=None,
        branch="",
        kind="sequence",
        config={"sequence_id": sequence.pk},
    )
    node_add(
        automation=automation,
        parent=step,
        branch="",
        kind="add_tag",
        config={"tag_id": graduated.pk},
    )
    automation_state_set(automation=automation, state="active")
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    now = timezone.now()
    automations_run(now=now)
    journey = Journey.objects.get()
    assert journey.node_id == step.pk and journey.due_at is None

    sequences_advance(now=now)
    automations_run(now=now)
    assert "Graduated" not in tags_of(ann)
    # Email two, a day later, completes the sequence; its event moves the journey on.
    later = now + timedelta(days=2)
    sequences_advance(now=later)
    sequences_advance(now=later)
    automations_run(now=later)
    assert "Graduated" in tags_of(ann)
    assert Journey.objects.get().state == State.COMPLETED


def test_joining_any_form_enters_the_automation(account_a):
    form = form_create(account=account_a, name="Newsletter", double_opt_in=False)
    automation = automation_create(account=account_a, name="Any form")
    entry_add(automation=automation, spec=TriggerSpec(kind="form_joined"))
    welcomed = TagFactory(account=account_a, name="Welcomed")
    node_add(
        automation=automation,
        parent=None,
        branch="",
        kind="add_tag",
        config={"tag_id": welcomed.pk},
    )
    automation_state_set(automation=automation, state="active")
    signup_submit(form=form, email="ann@example.org", data={}, ip="127.0.0.1")
    automations_run()
    ann = Subscriber.objects.get(email="ann@example.org")
    assert "Welcomed" in tags_of(ann)


def _split(account, config):
    """Start added → condition(config) → yes: tag Yes / no: tag No."""
    start = TagFactory(account=account, name="Start")
    automation = automation_create(account=account, name="Split")
    entry_add(automation=automation, spec=TriggerSpec(kind="tag_added", object_id=start.pk))
    split = node_add(automation=automation, parent=None, branch="", kind="condition", config=config)
    for branch, name in (("yes", "Yes"), ("no", "No")):
        tag = TagFactory(account=account, name=name)
        node_add(
            automation=automation,
            parent=split,
            branch=branch,
            kind="add_tag",
            config={"tag_id": tag.pk},
        )
    automation_state_set(automation=automation, state="active")
    return start


def test_the_opened_condition_reads_the_persons_opens(sent_broadcast):
    broadcast = sent_broadcast(recipients=2)
    opened, unopened = broadcast.delivery_set.order_by("id")
    events_store([TrackedEvent(TrackedKind.OPEN, timezone.now(), opened.pk)])
    start = _split(broadcast.account, {"test": "opened", "message_id": broadcast.pk})
    for delivery in (opened, unopened):
        subscriber_tags_add(subscriber=delivery.subscriber, tag_ids=[start.pk])
    automations_run()
    assert "Yes" in tags_of(opened.subscriber)
    assert "No" in tags_of(unopened.subscriber)


@pytest.mark.parametrize("by", ["segment", "field"])
def test_the_segment_and_field_conditions_read_the_subscriber_now(account_a, by):
    CustomFieldFactory(account=account_a, key="city", label="City")
    paris = SubscriberFactory(account=account_a, fields={"city": "Paris"})
    lyon = SubscriberFactory(account=account_a, fields={"city": "Lyon"})
    segment = Segment.objects.create(
        account=account_a,
        name="Parisians",
        field_conditions=[{"key": "city", "op": "equals", "value": "Paris"}],
    )
    config = (
        {"test": "segment", "segment_id": segment.pk}
        if by == "segment"
        else {"test": "field", "key": "city", "op": "equals", "value": "paris"}
    )
    start = _split(account_a, config)
    for subscriber in (paris, lyon):
        subscriber_tags_add(subscriber=subscriber, tag_ids=[start.pk])
    automations_run()
    assert "Yes" in tags_of(paris) and "No" in tags_of(lyon)


def test_a_condition_on_a_tag_deleted_since_sends_everyone_down_no(account_a):
    gone = TagFactory(account=account_a, name="Gone")
    start = _split(account_a, {"test": "has_tag", "tag_id": gone.pk})
    ann = SubscriberFactory(account=account_a)
    subscriber_tags_add(subscriber=ann, tag_ids=[gone.pk])
    Tag.objects.filter(pk=gone.pk).delete()
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    automations_run()
    assert "No" in tags_of(ann)
    assert History.objects.filter(subscriber_id=ann.pk, note="condition").count() == 1
