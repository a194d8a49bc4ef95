"""The scheduler with a controllable clock: each email once, on time, in order; forward-only
edits; unconfirmed subscribers waiting; suppression stopping everything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broadcasts.models import Delivery
from sequences.engine import sequences_advance
from sequences.models import Subscription
from sequences.services import (
    email_delete,
    email_unpublish,
    subscriber_enrol,
    subscriptions_confirmed,
)
from subscribers.models import Subscriber
from subscribers.services import subscriber_unsubscribe
from tests.factories import SubscriberFactory
from tests.sequences.conftest import advance_and_send, email_add

pytestmark = pytest.mark.django_db

# A Monday, 10:00 UTC (after the default send hour of 9).
MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def received(subscriber) -> list[str]:
    """The subjects of the sequence emails sent to `subscriber`, in the order sent."""
    return list(
        Delivery.objects.filter(subscriber=subscriber, state=Delivery.State.SENT)
        .order_by("id")
        .values_list("broadcast__subject", flat=True)
    )


def test_a_subscriber_gets_each_email_once_at_its_time(make_sequence, smtp_sink):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days"), ("Three", 2, "hours")])
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)

    advance_and_send(sequence, MONDAY)
    assert received(reader) == ["One"]
    advance_and_send(sequence, MONDAY + timedelta(hours=20))  # Tuesday 06:00: before 9
    assert received(reader) == ["One"]
    advance_and_send(sequence, MONDAY + timedelta(hours=23))  # Tuesday 09:00
    assert received(reader) == ["One", "Two"]
    advance_and_send(sequence, MONDAY + timedelta(hours=24, minutes=59))
    assert received(reader) == ["One", "Two"]
    advance_and_send(sequence, MONDAY + timedelta(hours=25))  # two hours after Two
    assert received(reader) == ["One", "Two", "Three"]
    subscription = Subscription.objects.get(subscriber=reader)
    assert subscription.state == Subscription.State.COMPLETED
    assert smtp_sink.copies["reader@example.org"] == 3
    advance_and_send(sequence, MONDAY + timedelta(days=30))
    assert smtp_sink.copies["reader@example.org"] == 3


def test_running_the_scheduler_twice_at_once_sends_nothing_twice(make_sequence, smtp_sink):
    sequence = make_sequence(emails=[("One", 0, "days")])
    for n in range(30):
        reader = SubscriberFactory(account=sequence.account, email=f"r{n}@example.org")
        subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    sequences_advance(now=MONDAY)
    sequences_advance(now=MONDAY)
    advance_and_send(sequence, MONDAY)
    assert Delivery.objects.filter(state=Delivery.State.SENT).count() == 30
    assert max(smtp_sink.copies.values()) == 1


def test_an_email_inserted_after_a_subscribers_place_reaches_them_and_one_before_does_not(
    make_sequence, smtp_sink
):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    one, two = sequence.emails.order_by("sort_key")
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    assert received(reader) == ["One"]

    email_add(sequence, subject="Before one", delay=0, after=None, publish=True)  # at the end
    # Move it before One: nobody who passed One gets it.
    from sequences.services import email_move

    before = sequence.emails.get(message__subject="Before one")
    email_move(email=before, up=True)
    email_move(email=before, up=True)
    email_add(sequence, subject="One and a half", delay=2, unit="hours", after=one)

    advance_and_send(sequence, MONDAY + timedelta(hours=2))
    assert received(reader) == ["One", "One and a half"]
    advance_and_send(sequence, MONDAY + timedelta(days=1, hours=1))
    assert received(reader) == ["One", "One and a half", "Two"]
    advance_and_send(sequence, MONDAY + timedelta(days=5))
    assert received(reader) == ["One", "One and a half", "Two"]


def test_an_email_deleted_or_unpublished_while_someone_waits_for_it_moves_them_on(
    make_sequence, smtp_sink
):
    sequence = make_sequence(
        emails=[("One", 0, "days"), ("Two", 1, "days"), ("Three", 1, "days"), ("Four", 1, "days")]
    )
    _one, two, three, _four = sequence.emails.order_by("sort_key")
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    email_delete(email=two)
    email_unpublish(email=three)
    advance_and_send(sequence, MONDAY + timedelta(days=1))
    assert received(reader) == ["One", "Four"]


def test_unconfirmed_subscribers_wait_until_they_confirm(make_sequence, smtp_sink):
    sequence = make_sequence(emails=[("One", 0, "days")])
    reader = SubscriberFactory(
        account=sequence.account, email="new@example.org", state=Subscriber.State.UNCONFIRMED
    )
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY + timedelta(days=2))
    assert received(reader) == []
    assert Subscription.objects.get(subscriber=reader).state == Subscription.State.UNCONFIRMED

    Subscriber.objects.filter(pk=reader.pk).update(state=Subscriber.State.ACTIVE)
    later = MONDAY + timedelta(days=3)
    subscriptions_confirmed(subscriber_id=reader.pk, now=later)
    advance_and_send(sequence, later)
    assert received(reader) == ["One"]


def test_an_unsubscribed_subscriber_gets_nothing_more(make_sequence, smtp_sink):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    subscriber_unsubscribe(subscriber=reader, reason="test")
    advance_and_send(sequence, MONDAY + timedelta(days=2))
    assert received(reader) == ["One"]
    assert Subscription.objects.get(subscriber=reader).state == Subscription.State.STOPPED


def test_a_removed_subscriber_gets_nothing_more_not_even_an_email_already_queued(
    make_sequence, smtp_sink
):
    from sequences.services import subscription_remove

    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    sequences_advance(now=MONDAY)  # email one queued, not yet sent
    assert subscription_remove(sequence=sequence, subscriber_id=reader.pk)
    advance_and_send(sequence, MONDAY + timedelta(days=3))
    assert received(reader) == []
    one = sequence.emails.order_by("sort_key").first().message
    one.refresh_from_db()
    assert one.cancelled_count == 1
    assert Subscription.objects.get(subscriber=reader).state == Subscription.State.REMOVED


def test_someone_added_before_any_email_is_published_waits_and_gets_the_first_one(
    make_sequence, smtp_sink
):
    sequence = make_sequence(emails=[])
    reader = SubscriberFactory(account=sequence.account, email="early@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY + timedelta(hours=1))
    subscription = Subscription.objects.get(subscriber=reader)
    assert subscription.state == Subscription.State.ACTIVE
    assert subscription.next_due_at is None

    email_add(sequence, subject="Welcome")  # published: reaches whoever waits
    advance_and_send(sequence, MONDAY + timedelta(hours=2))
    assert received(reader) == ["Welcome"]


def test_an_evergreen_sequence_keeps_those_who_had_every_email_for_the_next_one_published(
    make_sequence, smtp_sink
):
    from sequences.services import sequence_update

    sequence = make_sequence(emails=[("One", 0, "days")], hold=True)
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    subscription = Subscription.objects.get(subscriber=reader)
    assert (subscription.state, subscription.next_due_at) == (Subscription.State.ACTIVE, None)

    one = sequence.emails.get()
    email_add(sequence, subject="Two", delay=1, after=one)
    advance_and_send(sequence, MONDAY + timedelta(days=1))
    assert received(reader) == ["One", "Two"]

    # No longer evergreen: whoever it held at its end completes.
    settings = {
        name: getattr(sequence, name)
        for name in ("name", "send_days", "send_hour", "time_zone", "repeat")
    }
    sequence_update(sequence=sequence, **settings, hold=False)
    advance_and_send(sequence, MONDAY + timedelta(days=2))
    assert Subscription.objects.get(subscriber=reader).state == Subscription.State.COMPLETED


def test_without_hold_someone_who_had_every_email_completes_and_a_later_one_misses_them(
    make_sequence, smtp_sink
):
    sequence = make_sequence(emails=[("One", 0, "days")])
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    assert Subscription.objects.get(subscriber=reader).state == Subscription.State.COMPLETED
    email_add(sequence, subject="Two", delay=1, after=sequence.emails.get())
    advance_and_send(sequence, MONDAY + timedelta(days=2))
    assert received(reader) == ["One"]
