"""Unsubscribes through our own link and the one-click POST count in the report of the broadcast
that made the subscriber leave: their most recent one, if it reached them lately."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from broadcasts.models import Broadcast, Delivery
from subscribers.models import Subscriber
from subscribers.unsubscribe import unsubscribe_token
from tests.broadcasts.conftest import wait_until
from tests.factories import SubscriberFactory
from tests.tracking.conftest import database_connect, lock_waits
from tracking.models import DeliveryActivity, Event, EventKind, Rollup
from tracking.services import (
    UNSUBSCRIBE_ATTRIBUTION_DAYS,
    esp_event_record,
    unsubscribe_record,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(account_a):
    return SubscriberFactory(account=account_a, email="reader@example.org")


@pytest.fixture
def mail_client():
    """A mail client's or a reader's request: no session, CSRF checks as in production."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def delivered(account_a):
    """delivered(subscriber, days_ago, state=SENT): a broadcast of account A with one delivery
    to the subscriber, sent that many days ago."""

    def make(subscriber: Subscriber, days_ago: float, state=Delivery.State.SENT) -> Delivery:
        sent_at = timezone.now() - dt.timedelta(days=days_ago)
        broadcast = Broadcast.objects.create(
            account=account_a, subject="Soup season", state=Broadcast.State.SENT, sent_at=sent_at
        )
        return Delivery.objects.create(
            broadcast=broadcast,
            account=account_a,
            subscriber=subscriber,
            state=state,
            attempts=1,
            sent_at=sent_at if state == Delivery.State.SENT else None,
        )

    return make


def _unsubscribes(delivery: Delivery) -> int:
    total = Rollup.objects.filter(broadcast_id=delivery.broadcast_id, link_id=0).aggregate(
        total=Sum("unsubscribes")
    )["total"]
    return total or 0


def _path(subscriber: Subscriber) -> str:
    return reverse("unsubscribe", kwargs={"token": unsubscribe_token(subscriber=subscriber)})


def _one_click(client: Client, subscriber: Subscriber):
    return client.post(_path(subscriber), {"List-Unsubscribe": "One-Click"})


def _link(client: Client, subscriber: Subscriber):
    return client.post(_path(subscriber))


@pytest.mark.parametrize("unsubscribe", [_link, _one_click], ids=["link", "one-click"])
def test_unsubscribe_counts_for_the_most_recent_broadcast(
    unsubscribe, mail_client, reader, delivered
):
    older = delivered(reader, days_ago=9)
    latest = delivered(reader, days_ago=2)
    delivered(reader, days_ago=1, state=Delivery.State.FAILED)  # never reached them
    assert unsubscribe(mail_client, reader).status_code == 200
    assert (_unsubscribes(older), _unsubscribes(latest)) == (0, 1)
    activity = DeliveryActivity.objects.get(kind=EventKind.UNSUBSCRIBE)
    assert (activity.delivery_id, activity.subscriber_id) == (latest.pk, reader.pk)


def test_unsubscribing_twice_counts_once(mail_client, reader, delivered):
    latest = delivered(reader, days_ago=2)
    _link(mail_client, reader)
    _one_click(mail_client, reader)
    _link(mail_client, reader)
    assert _unsubscribes(latest) == 1
    assert Event.objects.filter(kind=EventKind.UNSUBSCRIBE).count() == 1


def test_unsubscribe_long_after_the_last_broadcast_is_counted_for_none(
    mail_client, reader, delivered
):
    old = delivered(reader, days_ago=UNSUBSCRIBE_ATTRIBUTION_DAYS + 1)
    assert _one_click(mail_client, reader).status_code == 200
    assert reader.state_changes.get().to_state == "unsubscribed"
    assert _unsubscribes(old) == 0
    assert not Event.objects.exists()


def test_unsubscribe_of_someone_never_mailed_records_no_event(mail_client, reader):
    assert _link(mail_client, reader).status_code == 200
    assert Subscriber.objects.get(pk=reader.pk).state == "unsubscribed"
    assert not Event.objects.exists() and not Rollup.objects.exists()


def test_opening_the_unsubscribe_page_records_nothing(mail_client, reader, delivered):
    latest = delivered(reader, days_ago=2)
    assert mail_client.get(_path(reader)).status_code == 200
    assert _unsubscribes(latest) == 0


def test_unsubscribe_of_a_bounced_subscriber_changes_nothing(mail_client, reader, delivered):
    latest = delivered(reader, days_ago=2)
    Subscriber.objects.filter(pk=reader.pk).update(state=Subscriber.State.BOUNCED)
    assert _link(mail_client, reader).status_code == 200
    assert Subscriber.objects.get(pk=reader.pk).state == "bounced"
    assert _unsubscribes(latest) == 0


def test_resubscribing_and_leaving_again_counts_the_new_broadcast(mail_client, reader, delivered):
    first = delivered(reader, days_ago=20)
    _link(mail_client, reader)
    mail_client.post(_path(reader), {"action": "resubscribe"})
    second = delivered(reader, days_ago=1)
    _link(mail_client, reader)
    assert (_unsubscribes(first), _unsubscribes(second)) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_an_unsubscribe_and_a_bounce_in_one_account_at_once_both_go_through(sent_broadcast):
    broadcast = sent_broadcast(recipients=2)
    bounced, leaving = broadcast.delivery_set.select_related("subscriber").order_by("id")
    holder, watcher = database_connect(), database_connect()
    watcher.autocommit = True  # pg_stat_activity stays as first read within a transaction
    # An uncommitted activity row of the leaving reader's delivery stops the unsubscribe just
    # before its own, holding what it wrote until then; the bounce runs into that meanwhile.
    with holder.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tracking_deliveryactivity (delivery_id, kind, link_id, account_id, "
            "broadcast_id, subscriber_id, first_at) VALUES (%s, %s, 0, %s, %s, %s, now())",
            [leaving.pk, EventKind.UNSUBSCRIBE, broadcast.account_id, broadcast.pk,
             leaving.subscriber_id],
        )  # fmt: skip
    errors = []

    def run(work):
        try:
            work()
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    unsubscribe = threading.Thread(
        target=run,
        args=(lambda: unsubscribe_record(subscriber=leaving.subscriber, reason="link"),),
    )
    bounce = threading.Thread(
        target=run,
        args=(
            lambda: esp_event_record(
                esp_name="Postmark",
                event_id="bounce-1",
                message_id=bounced.esp_message_id,
                kind=EventKind.BOUNCE,
                occurred_at=timezone.now(),
            ),
        ),
    )
    try:
        unsubscribe.start()
        wait_until(lambda: lock_waits(watcher) == 1)
        bounce.start()
        wait_until(lambda: not bounce.is_alive() or lock_waits(watcher) == 2)
    finally:
        holder.rollback()
        holder.close()
        watcher.close()
    unsubscribe.join(60)
    bounce.join(60)

    assert errors == []
    states = dict(Subscriber.objects.values_list("pk", "state"))
    assert states[bounced.subscriber_id] == "bounced"
    assert states[leaving.subscriber_id] == "unsubscribed"
    totals = Rollup.objects.filter(broadcast_id=broadcast.pk, link_id=0).aggregate(
        bounces=Sum("bounces"), unsubscribes=Sum("unsubscribes")
    )
    assert totals == {"bounces": 1, "unsubscribes": 1}
