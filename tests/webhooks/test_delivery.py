"""From a real change to a real receiver: a tag added through the service, the outbox consumed
by the engine, the delivery POSTed, signed, retried on the schedule, never lost."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.core import mail

from automations.engine import events_consume
from automations.models import Event
from convertkit.redis import redis_client
from subscribers.services import subscribers_tag, subscribers_untag
from tests.factories import SubscriberFactory, TagFactory
from tests.webhooks.conftest import NOW
from webhooks import delivery as delivery_module
from webhooks.delivery import RETRY_DELAYS, deliveries_prune, deliveries_send
from webhooks.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import (
    delivery_resend,
    endpoint_create,
    endpoint_secret_rotate,
    endpoint_update,
)
from webhooks.tasks import deliver

pytestmark = pytest.mark.django_db
Status = WebhookDelivery.Status


def legacy_webhook(account, receiver, tag, name=EventType.TAG_ADD):
    endpoint = endpoint_create(
        account=account,
        url=receiver.url,
        events={"name": name, "tag_id": tag.pk},
        kind=WebhookEndpoint.Kind.LEGACY,
    )
    receiver.secret = endpoint.secret
    return endpoint


def endpoint_for(account, receiver, *events):
    endpoint = endpoint_create(account=account, url=receiver.url, events=list(events))
    receiver.secret = endpoint.secret
    return endpoint


def tag_people(account, tag, count=1, **fields):
    people = SubscriberFactory.create_batch(count, account=account, **fields)
    subscribers_tag(account_id=account.pk, tag_id=tag.pk, subscriber_ids=[p.pk for p in people])
    return people


def test_a_tag_added_reaches_a_legacy_webhook_and_an_endpoint_signed(account_a, receiver):
    tag = TagFactory(account=account_a, name="Customer")
    legacy = legacy_webhook(account_a, receiver, tag)
    endpoint = endpoint_create(account=account_a, url=receiver.url, events=["subscriber.tag_added"])
    endpoint.secret = legacy.secret
    endpoint.save()
    (person,) = tag_people(account_a, tag, first_name="Ada", fields={"company": "Kit"})

    assert events_consume(now=NOW).webhooks == 2
    report = deliveries_send(now=NOW)

    assert report.delivered == 2
    assert all(request.signature_ok for request in receiver.received)
    by_event = {request.headers["X-Kit-Event"]: request for request in receiver.received}
    subscriber = {
        "id": person.pk,
        "first_name": "Ada",
        "email_address": person.email,
        "state": "active",
        "created_at": person.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fields": {"company": "Kit"},
    }
    assert by_event["subscriber.tag_add"].json == {"subscriber": subscriber}
    envelope = by_event["subscriber.tag_added"].json
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert envelope["delivery_id"] == delivery.pk
    assert by_event["subscriber.tag_added"].headers["X-Kit-Delivery"] == str(delivery.pk)
    (event,) = envelope["events"]
    assert event["type"] == "subscriber.tag_added"
    assert event["created"] == "2026-03-02T10:00:00Z"
    assert event["data"] == {"subscriber": subscriber, "tag": {"id": tag.pk, "name": "Customer"}}
    assert delivery.status == Status.DELIVERED and delivery.completed_at == NOW
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert (attempt.status_code, attempt.response_excerpt) == (200, "ok")
    assert not Event.objects.exists()


def test_a_tag_nobody_listens_for_queues_nothing(account_a, receiver):
    legacy_webhook(account_a, receiver, TagFactory(account=account_a))
    tag_people(account_a, TagFactory(account=account_a))

    assert events_consume(now=NOW).webhooks == 0
    assert not WebhookDelivery.objects.exists()


def test_an_endpoint_gets_a_hundred_events_of_one_type_per_delivery(account_a, receiver):
    tag = TagFactory(account=account_a)
    endpoint_for(account_a, receiver, "subscriber.tag_added", "subscriber.tag_removed")
    people = tag_people(account_a, tag, count=150)
    subscribers_untag(account_id=account_a.pk, tag_id=tag.pk, subscriber_ids=[people[0].pk])

    events_consume(now=NOW)
    deliveries_send(now=NOW)

    sizes = sorted(
        (request.headers["X-Kit-Event"], len(request.json["events"]))
        for request in receiver.received
    )
    assert sizes == [
        ("subscriber.tag_added", 50),
        ("subscriber.tag_added", 100),
        ("subscriber.tag_removed", 1),
    ]
    assert len(set(receiver.event_ids())) == 151


def test_a_failing_delivery_is_retried_on_kits_schedule_then_failed(account_a, receiver):
    tag = TagFactory(account=account_a)
    legacy_webhook(account_a, receiver, tag)
    tag_people(account_a, tag)
    events_consume(now=NOW)
    receiver.answers.extend([(500, {}, "down")] * 8)

    now = NOW
    waits = []
    for _ in RETRY_DELAYS:
        deliveries_send(now=now)
        delivery = WebhookDelivery.objects.get()
        assert delivery.status == Status.RETRYING
        waits.append((delivery.next_attempt_at - now).total_seconds())
        assert deliveries_send(now=delivery.next_attempt_at - timedelta(seconds=1)).claimed == 0
        now = delivery.next_attempt_at
    deliveries_send(now=now)

    assert waits == [30, 120, 900, 3600, 14400, 43200, 86400]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempt_count, delivery.completed_at) == (
        Status.FAILED,
        8,
        now,
    )
    assert delivery.attempts.count() == 8 == len(receiver.received)
    assert deliveries_send(now=now + timedelta(days=3)).claimed == 0


def test_nothing_is_lost_while_the_receiver_is_down(account_a, receiver):
    tag = TagFactory(account=account_a)
    legacy_webhook(account_a, receiver, tag)
    endpoint = endpoint_for(account_a, receiver, "subscriber.tag_added")
    WebhookEndpoint.objects.update(secret=endpoint.secret)
    tag_people(account_a, tag, count=120)
    events_consume(now=NOW)
    receiver.stop()

    down = deliveries_send(now=NOW)
    receiver.start()
    # Every due delivery is sent again; a connection the machine's load drops on the way is one
    # more retry, not a loss, so the clock goes on until nothing is left.
    later = NOW
    for _ in range(4):
        later += timedelta(hours=1)
        if not deliveries_send(now=later).claimed:
            break

    assert (down.claimed, down.retrying, down.delivered) == (122, 122, 0)
    refused = WebhookAttempt.objects.filter(at=NOW, status_code=None).exclude(error="")
    assert refused.count() == 122
    assert WebhookDelivery.objects.filter(status=Status.DELIVERED).count() == 122
    received = [request for request in receiver.received if request.signature_ok]
    assert len(received) == len(receiver.received) >= 122
    assert len(set(receiver.event_ids())) == 120
    legacy = {
        request.headers["X-Kit-Delivery"] for request in received if "events" not in request.json
    }
    assert len(legacy) == 120


def test_a_410_stops_the_retries_at_once(account_a, receiver):
    tag = TagFactory(account=account_a)
    endpoint = legacy_webhook(account_a, receiver, tag)
    tag_people(account_a, tag)
    events_consume(now=NOW)
    receiver.answers.append((410, {}, "gone"))

    deliveries_send(now=NOW)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempt_count) == (Status.FAILED, 1)
    assert deliveries_send(now=NOW + timedelta(days=2)).claimed == 0
    endpoint.refresh_from_db()
    assert endpoint.enabled


@pytest.mark.parametrize(
    ("status", "retry_after", "wait"),
    [
        (429, "120", 120),
        (503, format_datetime(NOW + timedelta(minutes=10), usegmt=True), 600),
        (429, "0", 1),
        (503, str(10 * 86400), 86400),
        # Retry-After means nothing on other statuses: the schedule applies.
        (500, "120", 30),
    ],
)
def test_retry_after_is_honoured_within_bounds(account_a, receiver, status, retry_after, wait):
    tag = TagFactory(account=account_a)
    legacy_webhook(account_a, receiver, tag)
    tag_people(account_a, tag)
    events_consume(now=NOW)
    receiver.answers.append((status, {"Retry-After": retry_after}, "slow down"))

    deliveries_send(now=NOW)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.RETRYING
    assert delivery.next_attempt_at == NOW + timedelta(seconds=wait)


def test_only_the_first_500_characters_of_an_answer_are_kept(account_a, receiver):
    tag = TagFactory(account=account_a)
    legacy_webhook(account_a, receiver, tag)
    tag_people(account_a, tag)
    events_consume(now=NOW)
    receiver.answers.append((500, {}, "é" * 100_000))

    deliveries_send(now=NOW)

    assert WebhookAttempt.objects.get().response_excerpt == "é" * 500


def test_a_day_of_failures_disables_the_endpoint_and_tells_the_owner(
    account_a, alice, receiver, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    # Mail goes out through eager tasks here; the delivery kicks (which would run on the
    # real clock) stay out of the way of this test's own.
    monkeypatch.setattr(deliver, "delay", lambda: None)
    tag = TagFactory(account=account_a)
    endpoint = legacy_webhook(account_a, receiver, tag)
    tag_people(account_a, tag)
    events_consume(now=NOW)
    receiver.answers.extend([(500, {}, "down")] * 20)

    now, later = NOW, None
    with django_capture_on_commit_callbacks(execute=True):
        while not deliveries_send(now=now).endpoints_disabled:
            if later is None and now - NOW >= timedelta(hours=12):
                # A second change, whose delivery is still being retried when the day is up.
                (later,) = tag_people(account_a, tag)
                events_consume(now=now)
            now = min(WebhookDelivery.objects.values_list("next_attempt_at", flat=True))
    receiver.answers.clear()

    endpoint.refresh_from_db()
    assert now - NOW >= timedelta(days=1)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "failing")
    assert endpoint.failing_since == NOW
    (message,) = mail.outbox
    assert message.to == [alice.email]
    assert receiver.url in message.body
    # Kept, not due: nothing is POSTed while the endpoint is disabled...
    waiting = WebhookDelivery.objects.filter(status=Status.RETRYING)
    assert {d.next_attempt_at for d in waiting} == {None}
    assert deliveries_send(now=now + timedelta(days=3)).claimed == 0
    # ...and enabling it sends what waited.
    endpoint_update(endpoint=endpoint, enabled=True, now=now + timedelta(days=3))
    assert deliveries_send(now=now + timedelta(days=3)).delivered == len(waiting) == 2
    sent = {request.json["subscriber"]["id"] for request in receiver.received[-2:]}
    assert later.pk in sent


def test_a_success_clears_the_failure_clock(account_a, receiver):
    tag = TagFactory(account=account_a)
    endpoint = legacy_webhook(account_a, receiver, tag)
    tag_people(account_a, tag)
    events_consume(now=NOW)
    receiver.answers.append((500, {}, "down"))

    deliveries_send(now=NOW)
    endpoint.refresh_from_db()
    assert endpoint.failing_since == NOW
    deliveries_send(now=NOW + timedelta(seconds=30))

    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_a_disabled_endpoint_gets_no_deliveries(account_a, receiver):
    tag = TagFactory(account=account_a)
    endpoint = legacy_webhook(account_a, receiver, tag)
    endpoint_update(endpoint=endpoint, enabled=False)
    tag_people(account_a, tag)

    assert events_consume(now=NOW).webhooks == 0


def test_a_resent_delivery_carries_the_same_events(account_a, receiver):
    tag = TagFactory(account=account_a)
    endpoint_for(account_a, receiver, "subscriber.tag_added")
    tag_people(account_a, tag, count=3)
    events_consume(now=NOW)
    deliveries_send(now=NOW)

    resent = delivery_resend(delivery=WebhookDelivery.objects.get(), now=NOW)
    deliveries_send(now=NOW)

    first, second = (request.json for request in receiver.received)
    assert second["delivery_id"] == resent.pk != first["delivery_id"]
    assert second["events"] == first["events"]


def test_history_older_than_30_days_is_deleted_with_its_attempts(account_a, receiver):
    tag = TagFactory(account=account_a)
    legacy_webhook(account_a, receiver, tag)
    tag_people(account_a, tag, count=2)
    events_consume(now=NOW)
    deliveries_send(now=NOW)
    old, recent = WebhookDelivery.objects.order_by("id")
    WebhookDelivery.objects.filter(pk=old.pk).update(created_at=NOW - timedelta(days=31))

    assert deliveries_prune(now=NOW) == 1
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [recent.pk]
    assert list(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == [recent.pk]


def test_after_a_rotation_both_secrets_sign_until_the_window_ends(account_a, receiver):
    tag = TagFactory(account=account_a)
    endpoint = endpoint_for(account_a, receiver, "subscriber.tag_added")
    old = endpoint.secret
    new = endpoint_secret_rotate(endpoint=endpoint, now=NOW)
    tag_people(account_a, tag)
    events_consume(now=NOW)

    deliveries_send(now=NOW)
    resend = delivery_resend(delivery=WebhookDelivery.objects.get(), now=NOW + timedelta(days=2))
    deliveries_send(now=NOW + timedelta(days=2))

    during, after = receiver.received
    assert during.headers["X-Kit-Signature"].count("v1=") == 2
    assert receiver.signature_valid(during.headers["X-Kit-Signature"], during.body, old)
    assert receiver.signature_valid(during.headers["X-Kit-Signature"], during.body, new)
    assert after.json["delivery_id"] == resend.pk
    assert after.headers["X-Kit-Signature"].count("v1=") == 1
    assert not receiver.signature_valid(after.headers["X-Kit-Signature"], after.body, old)
    assert receiver.signature_valid(after.headers["X-Kit-Signature"], after.body, new)


def test_the_task_delivers_while_a_run_slot_is_free(account_a, receiver, settings):
    tag = TagFactory(account=account_a)
    legacy_webhook(account_a, receiver, tag)
    tag_people(account_a, tag)
    events_consume(now=NOW)
    settings.WEBHOOK_DELIVERY_RUNS = 1
    client = redis_client()
    client.set("ck:webhooks:deliver:0", "another run", ex=60)
    try:
        deliver()
        assert receiver.received == []
    finally:
        client.delete("ck:webhooks:deliver:0")

    deliver()

    assert len(receiver.received) == 1
    assert WebhookDelivery.objects.get().status == Status.DELIVERED


def test_a_delivery_that_breaks_its_post_fails_alone(account_a, receiver, monkeypatch):
    tag = TagFactory(account=account_a)
    legacy_webhook(account_a, receiver, tag)
    broken = endpoint_for(account_a, receiver, "subscriber.tag_added")
    WebhookEndpoint.objects.filter(pk=broken.pk).update(url=receiver.url + "?broken")
    WebhookEndpoint.objects.update(secret=broken.secret)
    real_post = delivery_module.target_post

    def post(url, **kwargs):
        if url.endswith("?broken"):
            raise RuntimeError("a bug")
        return real_post(url, **kwargs)

    monkeypatch.setattr(delivery_module, "target_post", post)
    tag_people(account_a, tag)
    events_consume(now=NOW)

    report = deliveries_send(now=NOW)

    assert (report.delivered, report.retrying) == (1, 1)
    failed = WebhookAttempt.objects.get(delivery__endpoint=broken)
    assert (failed.status_code, failed.error) == (None, "RuntimeError: a bug")
