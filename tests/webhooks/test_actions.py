"""A rule's and an automation step's "send a webhook": checked when saved (another account's
webhook is refused), run by the engine (the subscribers POSTed to the webhook)."""

from __future__ import annotations

import pytest

from automations.engine import automations_run
from automations.models import Automation, History, Node
from automations.services import (
    ActionKind,
    AutomationInvalid,
    TriggerSpec,
    automation_create,
    automation_state_set,
    entry_add,
    node_add,
    rule_save,
)
from subscribers.services import subscribers_tag
from tests.factories import SubscriberFactory, TagFactory
from tests.webhooks.conftest import NOW
from webhooks.delivery import deliveries_send
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create, endpoint_update

pytestmark = pytest.mark.django_db


def hook(account, receiver):
    endpoint = endpoint_create(
        account=account,
        url=receiver.url,
        events={"name": "subscriber.subscriber_activate"},
        kind=WebhookEndpoint.Kind.LEGACY,
    )
    receiver.secret = endpoint.secret
    return endpoint


def test_a_rule_sends_its_subscribers_to_the_webhook(account_a, receiver):
    tag = TagFactory(account=account_a, name="Customer")
    endpoint = hook(account_a, receiver)
    rule = rule_save(
        account=account_a,
        name="Tell the shop",
        triggers=[TriggerSpec(kind="tag_added", object_id=tag.pk)],
        actions=[{"kind": ActionKind.SEND_WEBHOOK, "object_id": endpoint.pk}],
    )
    ann, bob = SubscriberFactory.create_batch(2, account=account_a)
    subscribers_tag(account_id=account_a.pk, tag_id=tag.pk, subscriber_ids=[ann.pk, bob.pk])

    automations_run(now=NOW)
    deliveries_send(now=NOW)

    assert sorted(r.json["subscriber"]["id"] for r in receiver.received) == [ann.pk, bob.pk]
    assert all(r.signature_ok for r in receiver.received)
    assert {r.headers["X-Kit-Event"] for r in receiver.received} == {
        "subscriber.sent_by_automation"
    }
    notes = History.objects.filter(rule_id=rule.pk).values_list("note", flat=True)
    assert set(notes) == {f"rule “Tell the shop”: sent a webhook to {receiver.url}"}


def test_a_disabled_webhook_sends_nothing_and_says_so(account_a, receiver):
    tag = TagFactory(account=account_a)
    endpoint = hook(account_a, receiver)
    endpoint_update(endpoint=endpoint, enabled=False)
    rule = rule_save(
        account=account_a,
        name="Tell the shop",
        triggers=[TriggerSpec(kind="tag_added", object_id=tag.pk)],
        actions=[{"kind": ActionKind.SEND_WEBHOOK, "object_id": endpoint.pk}],
    )
    ann = SubscriberFactory(account=account_a)
    subscribers_tag(account_id=account_a.pk, tag_id=tag.pk, subscriber_ids=[ann.pk])

    automations_run(now=NOW)

    assert not WebhookDelivery.objects.exists()
    (note,) = History.objects.filter(rule_id=rule.pk).values_list("note", flat=True)
    assert "disabled: nothing sent" in note


def test_an_automation_step_sends_a_webhook(account_a, receiver):
    tag = TagFactory(account=account_a)
    endpoint = hook(account_a, receiver)
    automation = automation_create(account=account_a, name="Welcome")
    entry_add(automation=automation, spec=TriggerSpec(kind="tag_added", object_id=tag.pk))
    node_add(
        automation=automation,
        parent=None,
        branch="",
        kind=Node.Kind.WEBHOOK,
        config={"endpoint": endpoint.pk},
    )
    automation_state_set(automation=automation, state=Automation.State.ACTIVE)
    ann = SubscriberFactory(account=account_a)
    subscribers_tag(account_id=account_a.pk, tag_id=tag.pk, subscriber_ids=[ann.pk])

    automations_run(now=NOW)
    deliveries_send(now=NOW)

    assert [r.json["subscriber"]["id"] for r in receiver.received] == [ann.pk]


def test_another_accounts_webhook_cannot_be_chosen(account_a, account_b, receiver):
    theirs = hook(account_b, receiver)
    tag = TagFactory(account=account_a)
    automation = automation_create(account=account_a, name="Welcome")

    with pytest.raises(AutomationInvalid):
        rule_save(
            account=account_a,
            name="Steal",
            triggers=[TriggerSpec(kind="tag_added", object_id=tag.pk)],
            actions=[{"kind": ActionKind.SEND_WEBHOOK, "object_id": theirs.pk}],
        )
    with pytest.raises(AutomationInvalid):
        node_add(
            automation=automation,
            parent=None,
            branch="",
            kind=Node.Kind.WEBHOOK,
            config={"endpoint": theirs.pk},
        )
    assert not Node.objects.filter(automation=automation).exists()
