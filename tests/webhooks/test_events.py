"""Each of Kit's events is written where its change happens, and reaches the webhooks that
listen for it with the subscriber as Kit shows them (and the tag, form or sequence)."""

from __future__ import annotations

import pytest

from automations.engine import events_consume
from automations.models import EventKind
from automations.outbox import events_add
from sequences.services import subscribers_enrol
from subscribers.models import Subscriber
from subscribers.services import (
    subscriber_create,
    subscriber_resubscribe,
    subscriber_suppress,
    subscriber_unsubscribe,
    subscribers_tag,
    subscribers_untag,
)
from subscribers.signup_forms.services import form_create
from subscribers.signup_forms.signup import signup_confirm, signup_submit
from tests.factories import SubscriberFactory, TagFactory
from tests.subscribers.csv.test_import import run_import
from tests.webhooks.conftest import NOW
from tracking.models import Link
from webhooks.events import CATALOG_EVENTS
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.queue import deliveries_queue_for_subscribers
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def everything(account_a):
    """An endpoint listening to the whole catalog."""
    return endpoint_create(
        account=account_a, url="http://127.0.0.1:9/hook", events=list(CATALOG_EVENTS)
    )


def legacy(account, name, **param):
    return endpoint_create(
        account=account,
        url="http://127.0.0.1:9/hook",
        events={"name": name, **param},
        kind=WebhookEndpoint.Kind.LEGACY,
    )


def queued() -> dict[str, list[dict]]:
    """What the outbox queued, by event type: each event's data."""
    events_consume(now=NOW)
    found: dict[str, list[dict]] = {}
    for delivery in WebhookDelivery.objects.order_by("id"):
        found.setdefault(delivery.event_type, []).extend(e["data"] for e in delivery.events)
    WebhookDelivery.objects.all().delete()
    return found


def test_a_subscriber_added_is_created_and_activated(account_a, everything):
    legacy(account_a, "subscriber.subscriber_activate")

    person = subscriber_create(account=account_a, email="ada@example.org", first_name="Ada")

    found = queued()
    assert set(found) == {
        "subscriber.created",
        "subscriber.activated",
        "subscriber.subscriber_activate",
    }
    assert found["subscriber.subscriber_activate"] == [
        {
            "subscriber": {
                "id": person.pk,
                "first_name": "Ada",
                "email_address": "ada@example.org",
                "state": "active",
                "created_at": person.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "fields": {},
            }
        }
    ]


def test_a_double_opt_in_signup_is_created_then_activated_on_confirmation(account_a, everything):
    form = form_create(
        account=account_a, name="Newsletter", fields=[{"key": "email"}], double_opt_in=True
    )
    legacy(account_a, "subscriber.form_subscribe", form_id=form.pk)

    result = signup_submit(form=form, email="rita@example.org", data={}, ip="203.0.113.7")
    found = queued()
    assert set(found) == {"subscriber.created"}
    assert found["subscriber.created"][0]["subscriber"]["state"] == "inactive"

    signup_confirm(signup=result.signup)
    found = queued()
    assert set(found) == {
        "subscriber.activated",
        "subscriber.subscribed_to_form",
        "subscriber.form_subscribe",
    }
    assert found["subscriber.subscribed_to_form"][0]["form"] == {
        "id": form.pk,
        "name": "Newsletter",
    }
    assert set(found["subscriber.form_subscribe"][0]) == {"subscriber"}


def test_a_single_opt_in_signup_is_created_activated_and_subscribed(account_a, everything):
    form = form_create(
        account=account_a, name="Newsletter", fields=[{"key": "email"}], double_opt_in=False
    )

    signup_submit(form=form, email="rita@example.org", data={}, ip="203.0.113.7")

    assert set(queued()) == {
        "subscriber.created",
        "subscriber.activated",
        "subscriber.subscribed_to_form",
    }


def test_unsubscribes_bounces_and_complaints_each_have_their_event(account_a, everything):
    for name in ("unsubscribe", "bounce", "complain"):
        legacy(account_a, f"subscriber.subscriber_{name}")
    leaver, bouncer, complainer = SubscriberFactory.create_batch(3, account=account_a)

    subscriber_unsubscribe(subscriber=leaver, reason="link")
    subscriber_suppress(subscriber=bouncer, state=Subscriber.State.BOUNCED, reason="hard bounce")
    subscriber_suppress(subscriber=complainer, state=Subscriber.State.COMPLAINED, reason="spam")

    found = queued()
    states = {name: [d["subscriber"]["state"] for d in data] for name, data in found.items()}
    assert states == {
        "subscriber.unsubscribed": ["cancelled"],
        "subscriber.subscriber_unsubscribe": ["cancelled"],
        "subscriber.bounced": ["bounced"],
        "subscriber.subscriber_bounce": ["bounced"],
        "subscriber.complained": ["complained"],
        "subscriber.subscriber_complain": ["complained"],
    }


def test_resubscribing_activates(account_a, everything):
    person = SubscriberFactory(account=account_a, state=Subscriber.State.UNSUBSCRIBED)

    subscriber_resubscribe(subscriber=person, reason="their link")

    assert list(queued()) == ["subscriber.activated"]


def test_an_import_creates_and_activates_the_new_subscribers(account_a, everything):
    SubscriberFactory(account=account_a, email="known@example.org")

    run_import(account_a, "email\nknown@example.org\nnew@example.org\n")

    found = queued()
    assert set(found) == {"subscriber.created", "subscriber.activated"}
    assert [d["subscriber"]["email_address"] for d in found["subscriber.created"]] == [
        "new@example.org"
    ]


def test_tags_name_their_tag(account_a, everything):
    tag, other = TagFactory(account=account_a, name="Customer"), TagFactory(account=account_a)
    legacy(account_a, "subscriber.tag_add", tag_id=tag.pk)
    legacy(account_a, "subscriber.tag_remove", tag_id=tag.pk)
    person = SubscriberFactory(account=account_a)

    subscribers_tag(account_id=account_a.pk, tag_id=tag.pk, subscriber_ids=[person.pk])
    subscribers_tag(account_id=account_a.pk, tag_id=other.pk, subscriber_ids=[person.pk])
    subscribers_untag(account_id=account_a.pk, tag_id=tag.pk, subscriber_ids=[person.pk])

    found = queued()
    assert {name: len(data) for name, data in found.items()} == {
        "subscriber.tag_added": 2,
        "subscriber.tag_add": 1,
        "subscriber.tag_removed": 1,
        "subscriber.tag_remove": 1,
    }
    assert [d["tag"]["name"] for d in found["subscriber.tag_removed"]] == ["Customer"]


def test_sequences_name_their_sequence(account_a, everything, make_sequence):
    sequence = make_sequence(account=account_a)
    legacy(account_a, "subscriber.course_subscribe", sequence_id=sequence.pk)
    legacy(account_a, "subscriber.course_complete", sequence_id=sequence.pk)
    person = SubscriberFactory(account=account_a)

    subscribers_enrol(
        sequence=sequence, source_sql="SELECT %(id)s::bigint", source_params={"id": person.pk}
    )
    events_add(
        account_id=account_a.pk,
        kind=EventKind.SEQUENCE_COMPLETED,
        subscriber_ids=[person.pk],
        object_id=sequence.pk,
    )

    found = queued()
    assert set(found) == {
        "subscriber.added_to_sequence",
        "subscriber.course_subscribe",
        "subscriber.sequence_completed",
        "subscriber.course_complete",
    }
    assert found["subscriber.sequence_completed"][0]["sequence"] == {
        "id": sequence.pk,
        "name": "Welcome course",
    }


def test_a_legacy_link_click_listens_for_its_url_only(account_a, everything, sent_broadcast):
    broadcast = sent_broadcast(
        account=account_a, links=("https://a.example/x", "https://a.example/y")
    )
    wanted, other = Link.objects.filter(broadcast=broadcast).order_by("url")
    legacy(account_a, "subscriber.link_click", initiator_value="https://a.example/x")
    person = SubscriberFactory(account=account_a)

    for link in (wanted, other):
        events_add(
            account_id=account_a.pk,
            kind=EventKind.LINK_CLICKED,
            subscriber_ids=[person.pk],
            object_id=link.pk,
        )

    found = queued()
    assert len(found["subscriber.link_click"]) == 1
    assert [d["link"]["url"] for d in found["subscriber.link_clicked"]] == [
        "https://a.example/x",
        "https://a.example/y",
    ]


def test_the_send_webhook_action_queues_one_delivery_per_subscriber_for_a_legacy_webhook(
    account_a,
):
    hook = legacy(account_a, "subscriber.subscriber_activate")
    people = SubscriberFactory.create_batch(3, account=account_a)
    outsider = SubscriberFactory()

    queued_count = deliveries_queue_for_subscribers(
        endpoint=hook,
        subscriber_ids=[p.pk for p in people] + [outsider.pk],
        event_type="subscriber.sent_by_automation",
        now=NOW,
    )

    assert queued_count == 3
    assert sorted(
        d.events[0]["data"]["subscriber"]["id"] for d in WebhookDelivery.objects.all()
    ) == [p.pk for p in people]
