"""Links, events and rollups (see "Tracking" in DESIGN.md).

How an open or a click travels:

    request path (tracking/endpoints.py): verify the token, buffer the event in the process,
        answer (GIF or 302); a background thread pushes the buffer to Redis every TRACKING_FLUSH_MS
    drain (tracking/drain.py, Celery queue "tracking"): claims chunks from Redis, then in one
        transaction writes Event rows, DeliveryActivity firsts and Rollup counters, and a
        DrainedBatch marker that makes the whole batch happen once
    reports (tracking/reports.py): read Rollup and DeliveryActivity, never COUNT(*) over Event

ESP webhooks (tracking/webhooks.py) write through the same store, one transaction per event.

No database foreign keys on the big tables (Event, DeliveryActivity, Rollup): as on Delivery,
checks per row at COMMIT would cost more than the rows. Deleting a broadcast or a subscriber
goes through the ORM, which cascades where a relation is declared.
"""

from __future__ import annotations

from django.db import models

from broadcasts.models import Broadcast
from convertkit.models import Account


class EventKind(models.IntegerChoices):
    OPEN = 1, "Opened"
    CLICK = 2, "Clicked"
    DELIVERED = 3, "Delivered"
    BOUNCE = 4, "Bounced"
    SOFT_BOUNCE = 5, "Soft bounce"
    COMPLAINT = 6, "Complained"
    UNSUBSCRIBE = 7, "Unsubscribed"


class Machine(models.IntegerChoices):
    """Why an open or click is taken for a machine's rather than a person's (0: a person's).
    Machine events are stored and shown as raw counts, but kept out of human rates."""

    HUMAN = 0, "Person"
    PRIVACY_PROXY = 1, "Privacy proxy prefetch (Apple Mail Privacy Protection)"
    SCANNER_AGENT = 2, "Known link scanner"
    HEAD_REQUEST = 3, "HEAD request"
    TOO_SOON = 4, "Within seconds of delivery"
    MANY_LINKS = 5, "Many links at once"
    IP_FLOOD = 6, "Flood from one address"


class Link(models.Model):
    """One distinct URL of a broadcast, created when the broadcast is frozen for sending. A
    click redirects only to the URL stored here."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    broadcast = models.ForeignKey(
        Broadcast, on_delete=models.CASCADE, db_index=False, related_name="links"
    )
    url = models.CharField(max_length=2000)
    # Order of first appearance in the message, for showing links in the creator's order.
    position = models.SmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["broadcast", "url"], name="link_unique_url"),
        ]

    def __str__(self) -> str:
        return self.url


class Event(models.Model):
    """One open, click or ESP event: append-only, partitioned by month on occurred_at (see the
    migration; `tracking_partitions` creates months ahead and detaches old ones). Unmanaged:
    Django cannot declare a partitioned table. No index at all: pages read DeliveryActivity and
    Rollup; this is the raw record. The drain's DrainedBatch marker makes each batch's insert
    happen once, and webhooks dedupe on WebhookReceipt."""

    id = models.BigIntegerField(primary_key=True)
    occurred_at = models.DateTimeField()
    kind = models.SmallIntegerField(choices=EventKind.choices)
    machine = models.SmallIntegerField(choices=Machine.choices, default=Machine.HUMAN)
    account_id = models.BigIntegerField()
    broadcast_id = models.BigIntegerField(null=True)
    delivery_id = models.BigIntegerField(null=True)
    subscriber_id = models.BigIntegerField(null=True)
    link_id = models.BigIntegerField(null=True)

    class Meta:
        managed = False
        db_table = "tracking_event"


class DeliveryActivity(models.Model):
    """The first time each kind of event happened to one delivery (for clicks: also per link),
    and the first time a person (not a machine) did it. Its rows are the unique counts: an
    INSERT ... ON CONFLICT that inserts is a new unique open/click; one that sets first_human_at
    is a new unique human one. Concurrent drains cannot both count one: the row lock decides.

    link_id is 0 for every kind but a click on a given link; a click also writes its link_id 0
    row, which is "clicked anything" (unique clicks of the broadcast), and an open row: whoever
    clicked opened the email, pixel or not."""

    delivery_id = models.BigIntegerField()
    kind = models.SmallIntegerField(choices=EventKind.choices)
    link_id = models.BigIntegerField(default=0)
    account_id = models.BigIntegerField()
    broadcast_id = models.BigIntegerField()
    subscriber_id = models.BigIntegerField()
    first_at = models.DateTimeField()
    first_human_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["delivery_id", "kind", "link_id"], name="activity_unique"
            ),
        ]
        indexes = [
            # Who opened / clicked / bounced, newest first, keyset-paged by id.
            models.Index(fields=["broadcast_id", "kind", "link_id", "id"], name="activity_list"),
            # The subscriber's activity and the engagement filters of audiences.
            models.Index(fields=["subscriber_id", "kind"], name="activity_subscriber"),
        ]


class Rollup(models.Model):
    """Counters per broadcast (link_id 0) and per link of a broadcast, by hour. Reports sum
    these; nothing counts Event rows. Unique counts land in the hour of the first event."""

    broadcast_id = models.BigIntegerField()
    link_id = models.BigIntegerField(default=0)
    hour = models.DateTimeField()
    opens = models.IntegerField(default=0)
    human_opens = models.IntegerField(default=0)
    unique_opens = models.IntegerField(default=0)
    human_unique_opens = models.IntegerField(default=0)
    clicks = models.IntegerField(default=0)
    human_clicks = models.IntegerField(default=0)
    unique_clicks = models.IntegerField(default=0)
    human_unique_clicks = models.IntegerField(default=0)
    delivered = models.IntegerField(default=0)
    bounces = models.IntegerField(default=0)
    soft_bounces = models.IntegerField(default=0)
    complaints = models.IntegerField(default=0)
    unsubscribes = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["broadcast_id", "link_id", "hour"], name="rollup_unique_hour"
            ),
        ]


class DrainedBatch(models.Model):
    """A batch of events the drain has written: inserted in the batch's own transaction, so a
    batch drained again (its worker died after COMMIT, before Redis heard) writes nothing."""

    key = models.CharField(max_length=64, primary_key=True)
    events = models.IntegerField()
    drained_at = models.DateTimeField(auto_now_add=True)


class WebhookReceipt(models.Model):
    """An ESP event already processed, by the ESP's own event id: a replay changes nothing."""

    esp_name = models.CharField(max_length=32)
    event_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["esp_name", "event_id"], name="webhook_receipt_unique"),
        ]


class SpooledEvents(models.Model):
    """Events the web process could not hand to Redis (Redis unreachable), in the buffer's own
    text format, written by the flusher thread (never by a request) and drained like Redis
    chunks."""

    chunk = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
