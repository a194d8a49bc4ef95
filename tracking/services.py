"""What ESP events and unsubscribes do to deliveries, reports and subscribers.

Both write their event through tracking.store.events_store, in the same transaction as the change
to the subscriber, so a report never counts a bounce whose subscriber is still active (or the
other way round).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from broadcasts.models import Delivery
from subscribers.models import Subscriber
from subscribers.services import (
    UNSUBSCRIBABLE_STATES,
    subscriber_suppress,
    subscriber_unsubscribe,
)
from tracking.models import DeliveryActivity, EventKind, WebhookReceipt
from tracking.store import TrackedEvent, events_store

logger = logging.getLogger(__name__)

# An unsubscribe through our own link is counted for the subscriber's latest broadcast if it
# reached them this recently; an older one is not what made them leave.
UNSUBSCRIBE_ATTRIBUTION_DAYS = 60
# Activity that shows a message reached the subscriber: it breaks a run of soft bounces.
REACHED_KINDS = (EventKind.DELIVERED, EventKind.OPEN, EventKind.CLICK)
# Kinds that change the subscriber, not only the report.
SUBSCRIBER_KINDS = (
    EventKind.BOUNCE,
    EventKind.SOFT_BOUNCE,
    EventKind.COMPLAINT,
    EventKind.UNSUBSCRIBE,
)
SOFT_BOUNCES_REASON = "{limit} soft bounces in a row reported by {esp}"
_RECEIPT_ID_MAX = WebhookReceipt._meta.get_field("event_id").max_length


def esp_event_record(
    *,
    esp_name: str,
    event_id: str,
    message_id: str,
    kind: int,
    occurred_at: dt.datetime,
    detail: str = "",
) -> bool:
    """Records one ESP event (delivered, bounce, soft bounce, complaint, unsubscribe) once.

    1. Finds the delivery the ESP message id names (stored at send); for an unknown message it
       logs and writes nothing.
    2. In one transaction: inserts the WebhookReceipt (esp_name, event_id); if it is there
       already the event is a replay and nothing else happens.
    3. For kinds that change the subscriber, locks the subscriber's row first: concurrent events
       of one subscriber then take turns (and see each other's rows), and every writer takes the
       subscriber, then the rollup rows, then the account's rows the state's UPDATE takes by
       trigger (SubscriberCount, ListGrowth), as the unsubscribe page does, so none can deadlock.
    4. Writes the event, its DeliveryActivity first and Rollup counter through events_store.
    5. A hard bounce makes the subscriber bounced, a complaint complained, an ESP unsubscribe
       unsubscribed; a soft bounce that ends a run of SOFT_BOUNCE_LIMIT makes them bounced.

    Returns whether the event was recorded (False for an unknown message or a replay).
    """
    delivery = (
        Delivery.objects.select_related("subscriber").filter(esp_message_id=message_id).first()
    )
    if delivery is None:
        logger.info("%s event %s for unknown message %r ignored", esp_name, event_id, message_id)
        return False
    subscriber = delivery.subscriber
    with transaction.atomic():
        if not _receipt_insert(esp_name=esp_name, event_id=event_id):
            logger.info("%s event %s was recorded before: replay ignored", esp_name, event_id)
            return False
        if kind in SUBSCRIBER_KINDS:
            list(Subscriber.objects.select_for_update().filter(pk=subscriber.pk).values("pk"))
        events_store([TrackedEvent(kind=kind, occurred_at=occurred_at, delivery_id=delivery.pk)])
        if kind == EventKind.BOUNCE:
            subscriber_suppress(
                subscriber=subscriber,
                state=Subscriber.State.BOUNCED,
                reason=_reason(f"hard bounce reported by {esp_name}", detail),
            )
        elif kind == EventKind.COMPLAINT:
            subscriber_suppress(
                subscriber=subscriber,
                state=Subscriber.State.COMPLAINED,
                reason=_reason(f"spam complaint reported by {esp_name}", detail),
            )
        elif kind == EventKind.UNSUBSCRIBE:
            subscriber_unsubscribe(
                subscriber=subscriber,
                reason=_reason(f"unsubscribed through {esp_name}", detail),
            )
        elif kind == EventKind.SOFT_BOUNCE and _soft_bounces_in_a_row(subscriber=subscriber):
            limit = settings.SOFT_BOUNCE_LIMIT
            subscriber_suppress(
                subscriber=subscriber,
                state=Subscriber.State.BOUNCED,
                reason=_reason(SOFT_BOUNCES_REASON.format(limit=limit, esp=esp_name), detail),
            )
    return True


def unsubscribe_record(*, subscriber: Subscriber, reason: str) -> bool:
    """Unsubscribes the subscriber (subscriber_unsubscribe) and, when that changed their state,
    records an UNSUBSCRIBE event on their most recent delivery sent within
    UNSUBSCRIBE_ATTRIBUTION_DAYS, so that broadcast's report counts it; both in one transaction.
    Returns whether the state changed."""
    with transaction.atomic():
        # The subscriber's row first, then the event, then the state: an UPDATE of the state
        # takes the account's SubscriberCount and ListGrowth rows (triggers), which
        # esp_event_record takes after the rollup rows. Changing the state before writing the
        # event would take them the other way round and deadlock with a bounce of the account.
        subscribable = (
            Subscriber.objects.select_for_update()
            .filter(pk=subscriber.pk, state__in=UNSUBSCRIBABLE_STATES)
            .values_list("pk", flat=True)
            .first()
        )
        if subscribable is None:
            return False
        now = timezone.now()
        delivery_id = (
            Delivery.objects.filter(
                subscriber_id=subscriber.pk,
                state=Delivery.State.SENT,
                sent_at__gte=now - dt.timedelta(days=UNSUBSCRIBE_ATTRIBUTION_DAYS),
            )
            .order_by("-sent_at", "-id")
            .values_list("id", flat=True)
            .first()
        )
        if delivery_id is not None:
            events_store(
                [TrackedEvent(kind=EventKind.UNSUBSCRIBE, occurred_at=now, delivery_id=delivery_id)]
            )
        return subscriber_unsubscribe(subscriber=subscriber, reason=reason)


def _receipt_insert(*, esp_name: str, event_id: str) -> bool:
    """Inserts the receipt unless it exists; whether it was inserted. A concurrent copy of the
    same event waits on the unique index until this transaction ends, then inserts nothing."""
    if len(event_id) > _RECEIPT_ID_MAX:
        event_id = "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {WebhookReceipt._meta.db_table} (esp_name, event_id, received_at) "
            "VALUES (%s, %s, now()) ON CONFLICT DO NOTHING",
            [esp_name[:32], event_id],
        )
        return cursor.rowcount == 1


def _soft_bounces_in_a_row(*, subscriber: Subscriber) -> bool:
    """Whether the subscriber's last SOFT_BOUNCE_LIMIT sent deliveries all soft-bounced, with
    none of them delivered, opened or clicked."""
    limit = settings.SOFT_BOUNCE_LIMIT
    activity = DeliveryActivity.objects.filter(delivery_id=OuterRef("pk"))
    latest = list(
        Delivery.objects.filter(subscriber_id=subscriber.pk, state=Delivery.State.SENT)
        .annotate(
            soft=Exists(activity.filter(kind=EventKind.SOFT_BOUNCE)),
            reached=Exists(activity.filter(kind__in=REACHED_KINDS)),
        )
        .order_by(F("sent_at").desc(nulls_last=True), "-id")
        .values_list("soft", "reached")[:limit]
    )
    return len(latest) == limit and all(soft and not reached for soft, reached in latest)


def _reason(what: str, detail: str) -> str:
    detail = " ".join(detail.split())
    return f"{what}: {detail}" if detail else what
