"""Each rule trigger fires its rule, and each action does what it says, through the real
paths that change subscribers; the engine is run with a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from automations.engine import automations_run
from automations.models import History
from automations.services import ActionKind, TriggerSpec, rule_save
from sequences.engine import sequences_advance
from sequences.models import Sequence, Subscription
from sequences.services import subscriber_enrol
from subscribers.models import Subscriber, Tag, Tagging
from subscribers.services import (
    subscriber_tags_add,
    subscriber_unsubscribe,
    subscriber_untag,
    subscriber_update,
)
from subscribers.signup_forms.services import form_create
from subscribers.signup_forms.signup import signup_submit
from tests.factories import AccountFactory, CustomFieldFactory, SubscriberFactory, TagFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


@pytest.fixture
def account():
    return AccountFactory(name="Ann's Kitchen", time_zone="UTC")


def fired(rule, subscriber) -> bool:
    return History.objects.filter(rule_id=rule.pk, subscriber_id=subscriber.pk).exists()


def marker_rule(account, spec: TriggerSpec):
    marker = TagFactory(account=account, name="Fired")
    return rule_save(
        account=account,
        name="Marker",
        triggers=[spec],
        actions=[{"kind": ActionKind.ADD_TAG, "object_id": marker.pk}],
    )


def test_tag_removed_fires_only_for_that_tag(account):
    vip, other = TagFactory(account=account, name="VIP"), TagFactory(account=account)
    rule = marker_rule(account, TriggerSpec(kind="tag_removed", object_id=vip.pk))
    ann, bob = SubscriberFactory(account=account), SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[vip.pk])
    subscriber_tags_add(subscriber=bob, tag_ids=[other.pk])
    automations_run(now=NOW)
    assert not fired(rule, ann)
    subscriber_untag(subscriber=ann, tag=vip)
    subscriber_untag(subscriber=bob, tag=other)
    automations_run(now=NOW)
    assert fired(rule, ann) and not fired(rule, bob)


def test_field_changed_fires_for_that_field_and_value_only(account):
    CustomFieldFactory(account=account, key="plan", label="Plan")
    CustomFieldFactory(account=account, key="city", label="City")
    rule = marker_rule(account, TriggerSpec(kind="field_changed", detail="plan", value="pro"))
    ann, bob, cy = (SubscriberFactory(account=account) for _ in range(3))
    subscriber_update(subscriber=ann, email=ann.email, first_name="", fields={"plan": "pro"})
    subscriber_update(subscriber=bob, email=bob.email, first_name="", fields={"plan": "free"})
    subscriber_update(subscriber=cy, email=cy.email, first_name="", fields={"city": "pro"})
    automations_run(now=NOW)
    assert fired(rule, ann) and not fired(rule, bob) and not fired(rule, cy)


def test_unsubscribing_fires_the_unsubscribe_trigger(account):
    rule = marker_rule(account, TriggerSpec(kind="unsubscribed"))
    ann = SubscriberFactory(account=account)
    subscriber_unsubscribe(subscriber=ann, reason="clicked the link")
    automations_run(now=NOW)
    assert fired(rule, ann)


def test_each_action_does_what_it_says(account):
    start = TagFactory(account=account, name="Start")
    old, new = TagFactory(account=account, name="Old"), TagFactory(account=account, name="New")
    CustomFieldFactory(account=account, key="stage", label="Stage")
    joining = Sequence.objects.create(account=account, name="Joining")
    leaving = Sequence.objects.create(account=account, name="Leaving")
    rule_save(
        account=account,
        name="Everything",
        triggers=[TriggerSpec(kind="tag_added", object_id=start.pk)],
        actions=[
            {"kind": ActionKind.ADD_TAG, "object_id": new.pk},
            {"kind": ActionKind.REMOVE_TAG, "object_id": old.pk},
            {"kind": ActionKind.SUBSCRIBE_SEQUENCE, "object_id": joining.pk},
            {"kind": ActionKind.REMOVE_SEQUENCE, "object_id": leaving.pk},
            {"kind": ActionKind.SET_FIELD, "detail": "stage", "value": "lead"},
            {"kind": ActionKind.UNSUBSCRIBE},
        ],
    )
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[old.pk])
    subscriber_enrol(sequence=leaving, subscriber=ann)
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    automations_run(now=NOW)

    ann.refresh_from_db()
    assert set(Tagging.objects.filter(subscriber=ann).values_list("tag__name", flat=True)) == {
        "Start",
        "New",
    }
    assert Subscription.objects.get(sequence=joining, subscriber=ann).state == (
        Subscription.State.ACTIVE
    )
    assert Subscription.objects.get(sequence=leaving, subscriber=ann).state == (
        Subscription.State.REMOVED
    )
    assert ann.fields["stage"] == "lead"
    assert ann.state == Subscriber.State.UNSUBSCRIBED
    note = History.objects.get(subscriber_id=ann.pk, rule_id__isnull=False).note
    assert note == (
        "rule “Everything”: tagged “New”, removed tag “Old”, subscribed to “Joining” (never the "
        "unsubscribed), removed from “Leaving”, set stage to “lead”, unsubscribed"
    )


def test_an_action_on_a_tag_deleted_since_does_nothing_and_says_so(account):
    start, gone = TagFactory(account=account), TagFactory(account=account, name="Gone")
    rule = rule_save(
        account=account,
        name="Stale",
        triggers=[TriggerSpec(kind="tag_added", object_id=start.pk)],
        actions=[{"kind": ActionKind.ADD_TAG, "object_id": gone.pk}],
    )
    Tag.objects.filter(pk=gone.pk).delete()
    ann = SubscriberFactory(account=account)
    subscriber_tags_add(subscriber=ann, tag_ids=[start.pk])
    automations_run(now=NOW)
    assert History.objects.get(rule_id=rule.pk).note.endswith("tag deleted: nothing tagged")
    assert list(Tagging.objects.filter(subscriber=ann).values_list("tag_id", flat=True)) == [
        start.pk
    ]


def test_a_rule_never_acts_on_another_accounts_subscriber(account):
    start, marker = TagFactory(account=account), TagFactory(account=account, name="Fired")
    rule_save(
        account=account,
        name="Mine",
        triggers=[TriggerSpec(kind="tag_added", object_id=start.pk)],
        actions=[{"kind": ActionKind.ADD_TAG, "object_id": marker.pk}],
    )
    other = AccountFactory()
    theirs = SubscriberFactory(account=other)
    their_tag = TagFactory(account=other)
    # Their tagging records an event of their account: it matches none of our triggers.
    subscriber_tags_add(subscriber=theirs, tag_ids=[their_tag.pk])
    automations_run(now=NOW)
    assert not Tagging.objects.filter(tag=marker).exists()


def test_subscribing_through_that_form_fires_the_rule_and_another_form_does_not(account):
    chosen = form_create(account=account, name="Newsletter", double_opt_in=False)
    other = form_create(account=account, name="Webinar", double_opt_in=False)
    rule = marker_rule(account, TriggerSpec(kind="form_joined", object_id=chosen.pk))
    signup_submit(form=chosen, email="ann@example.org", data={})
    signup_submit(form=other, email="bob@example.org", data={})
    automations_run(now=NOW)
    ann, bob = (Subscriber.objects.get(email=e) for e in ("ann@example.org", "bob@example.org"))
    assert fired(rule, ann) and not fired(rule, bob)


def test_subscribing_to_and_completing_a_sequence_fire_their_rules(make_sequence):
    sequence = make_sequence(emails=[("One", 0, "days")])
    account = sequence.account
    started = marker_rule(account, TriggerSpec(kind="sequence_subscribed", object_id=sequence.pk))
    graduated = TagFactory(account=account, name="Graduated")
    finished = rule_save(
        account=account,
        name="Finished",
        triggers=[TriggerSpec(kind="sequence_completed", object_id=sequence.pk)],
        actions=[{"kind": ActionKind.ADD_TAG, "object_id": graduated.pk}],
    )
    ann = SubscriberFactory(account=account)
    subscriber_enrol(sequence=sequence, subscriber=ann, now=NOW)
    automations_run(now=NOW)
    assert fired(started, ann) and not fired(finished, ann)
    sequences_advance(now=NOW)
    sequences_advance(now=NOW)
    automations_run(now=NOW)
    assert fired(finished, ann)
    assert "Graduated" in set(
        Tagging.objects.filter(subscriber=ann).values_list("tag__name", flat=True)
    )
