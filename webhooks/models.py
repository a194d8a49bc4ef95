"""Outgoing webhooks: endpoints, what they listen to, and the deliveries made to them. See
"Webhooks" in docs/architecture.md.

- WebhookEndpoint: a URL of the account's, signed with its own secret. Kit's two kinds: a legacy
  webhook (/v4/webhooks: one event, the bare `{"subscriber": ...}` body) and a webhook endpoint
  (/v4/webhook_endpoints: many events, the `{delivery_id, events}` envelope).
- WebhookSubscription: one event type an endpoint listens to (about one tag, form, sequence or link
  for the legacy events that name one). It listens through an automations Trigger row of role
  "hook", so the outbox writes its events and the engine queues its deliveries.
- WebhookDelivery: one POST's worth of events (1 to 100 of one type), due at `next_attempt_at` under
  the index webhook_delivery_due; kept 30 days with its attempts.
- WebhookAttempt: one POST of a delivery and what came back (a short excerpt only).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from convertkit.models import Account


class EventType(models.TextChoices):
    """Kit's event names: the legacy ones (/v4/webhooks) and the catalog's (webhook endpoints)."""

    # Legacy.
    SUBSCRIBER_ACTIVATE = "subscriber.subscriber_activate", "Subscriber activated"
    SUBSCRIBER_UNSUBSCRIBE = "subscriber.subscriber_unsubscribe", "Subscriber unsubscribed"
    SUBSCRIBER_BOUNCE = "subscriber.subscriber_bounce", "Subscriber bounced"
    SUBSCRIBER_COMPLAIN = "subscriber.subscriber_complain", "Subscriber complained"
    FORM_SUBSCRIBE = "subscriber.form_subscribe", "Subscribes to a form"
    COURSE_SUBSCRIBE = "subscriber.course_subscribe", "Subscribes to a sequence"
    COURSE_COMPLETE = "subscriber.course_complete", "Completes a sequence"
    LINK_CLICK = "subscriber.link_click", "Clicks a link"
    TAG_ADD = "subscriber.tag_add", "Tag added"
    TAG_REMOVE = "subscriber.tag_remove", "Tag removed"
    # The catalog of webhook endpoints.
    CREATED = "subscriber.created", "Subscriber created"
    ACTIVATED = "subscriber.activated", "Subscriber activated"
    UNSUBSCRIBED = "subscriber.unsubscribed", "Subscriber unsubscribed"
    BOUNCED = "subscriber.bounced", "Subscriber bounced"
    COMPLAINED = "subscriber.complained", "Subscriber complained"
    SUBSCRIBED_TO_FORM = "subscriber.subscribed_to_form", "Subscribed to a form"
    ADDED_TO_SEQUENCE = "subscriber.added_to_sequence", "Added to a sequence"
    SEQUENCE_COMPLETED = "subscriber.sequence_completed", "Completed a sequence"
    TAG_ADDED = "subscriber.tag_added", "Tag added"
    TAG_REMOVED = "subscriber.tag_removed", "Tag removed"
    LINK_CLICKED = "subscriber.link_clicked", "Clicked a link"
    # Ours: a rule's or an automation's "send a webhook" action.
    SENT_BY_AUTOMATION = "subscriber.sent_by_automation", "Sent by a rule or automation"


class WebhookEndpoint(models.Model):
    class Kind(models.TextChoices):
        LEGACY = "legacy", "Legacy webhook"
        ENVELOPE = "envelope", "Webhook endpoint"

    class Disabled(models.TextChoices):
        NO = "", "Enabled"
        MANUAL = "manual", "Disabled by the account"
        FAILING = "failing", "Failing for a day"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.ENVELOPE)
    url = models.URLField(max_length=2000)
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.CharField(max_length=1000, blank=True, default="")
    # Signs every POST (HMAC-SHA256). The API shows it once, at creation; the app can reveal it.
    secret = models.CharField(max_length=64)
    # After a rotation, the old secret signs too (a second v1) until this time, so receivers
    # can switch over without dropping a delivery.
    previous_secret = models.CharField(max_length=64, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(
        max_length=8, choices=Disabled.choices, blank=True, default=Disabled.NO
    )
    # The first failed attempt since the last delivered one: a day of it disables the endpoint.
    failing_since = models.DateTimeField(null=True, blank=True)
    # Set when an OAuth app created it: that app's tokens see it, and only those.
    oauth_application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-id"], name="webhook_endpoint_account")]
        constraints = [
            models.CheckConstraint(
                condition=Q(enabled=True, disabled_reason="")
                | Q(enabled=False, disabled_reason__in=["manual", "failing"]),
                name="webhook_endpoint_disabled_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.url


class WebhookSubscription(models.Model):
    """An event type an endpoint listens to; object_id is the tag, form or sequence a legacy
    event names (None: any), initiator_value the clicked URL of a legacy link_click."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="subscriptions"
    )
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    object_id = models.BigIntegerField(null=True, blank=True)
    initiator_value = models.CharField(max_length=2000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_type", "object_id", "initiator_value"],
                name="webhook_subscription_unique",
                nulls_distinct=False,
            ),
        ]


class WebhookDelivery(models.Model):
    """One POST's worth of events to one endpoint. Its id is Kit's `delivery_id` (the envelope's
    and X-Kit-Delivery's), the same on every retry."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, db_index=False, related_name="deliveries"
    )
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    # [{"id": uuid, "type": ..., "created": "2026-...Z", "data": {"subscriber": {...}}}]: one to
    # a hundred events; a legacy webhook's body is its one event's data.
    events = models.JSONField()
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.SmallIntegerField(default=0)
    # When the next attempt is due (pending, retrying); a worker that claims the delivery moves
    # it a lease ahead, so a worker that dies mid-POST leaves it due again, not lost.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=Q(status__in=["pending", "retrying"]),
            ),
            models.Index(fields=["endpoint", "-id"], name="webhook_delivery_endpoint"),
            # Deliveries are written in created_at order: a BRIN index finds those past the
            # 30 days kept at almost no cost to each insert.
            BrinIndex(fields=["created_at"], name="webhook_delivery_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "retrying", "delivered", "failed"]),
                name="webhook_delivery_status_valid",
            ),
        ]


class WebhookAttempt(models.Model):
    """One POST of a delivery: the status code (None when no answer came), the first 500
    characters of the answer, how long it took, and the error when there was no answer."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempts", db_index=False
    )
    at = models.DateTimeField()
    status_code = models.SmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True, default="")
    duration_ms = models.IntegerField(default=0)
    error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["delivery", "id"], name="webhook_attempt_delivery")]
