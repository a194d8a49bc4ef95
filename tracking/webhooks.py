"""ESP events from anymail's tracking webhooks, mounted under /webhooks/ (convertkit/urls.py).

anymail's views check each request (WEBHOOK_SECRET basic auth for every ESP, plus Mailgun's
signature with its webhook signing key), parse the ESP's payload and send one normalised event
per message through the `tracking` signal. Here an event becomes one of our kinds and goes to
tracking.services.esp_event_record; opens and clicks the ESP tracked are ignored (we track our
own), and so is anything that says nothing about the recipient (queued, sent, failed ...).

An event is matched to its delivery by the ESP message id the send stored. That id is written
only when the whole ESP call has returned, and a fast ESP's bounce can arrive first: so every
message also carries anymail metadata naming its delivery (broadcasts/transport.py), and an event
whose metadata names a delivery that has no ESP message id yet gives it the event's one first.

A request whose events cannot be written (the database is down) answers 500, and the ESP sends it
again later; a replay changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import re

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from django.conf import settings
from django.core import checks
from django.db.models import Exists
from django.utils import timezone

from broadcasts.models import Delivery
from broadcasts.transport import DELIVERY_METADATA
from tracking.models import EventKind
from tracking.services import esp_event_record

logger = logging.getLogger(__name__)

# anymail reports some soft bounces as "bounced": whether a bounce was temporary is then in the
# ESP's own payload. Postmark: Type SoftBounce; Amazon SES: bounceType Transient, or Undetermined
# (SES could not tell; several in a row still make a bounce); SendGrid: type "blocked" (refused
# for now, by a block list or a policy) rather than "bounce". anymail itself already reports
# Postmark's Transient and DnsError, Mailgun's severity "temporary" and SendGrid's deferrals as
# "deferred".
_TEMPORARY_BOUNCE = {
    "Postmark": lambda raw: raw.get("Type") == "SoftBounce",
    "Amazon SES": lambda raw: (
        (raw.get("bounce") or {}).get("bounceType") in ("Transient", "Undetermined")
    ),
    "SendGrid": lambda raw: raw.get("type") == "blocked",
}
# An ESP that refuses to send to an address it knows bounces (SendGrid's "Bounced Address"
# drop) or is invalid (Postmark's BadEmailAddress) reports a hard bounce in other words.
_REJECTED_AS_BOUNCE = (RejectReason.BOUNCED, RejectReason.INVALID)
# A delivery id as the transport writes it: a positive integer that fits a bigint, ASCII digits.
_DELIVERY_ID = re.compile(r"[1-9][0-9]{0,18}")
_DELIVERY_ID_MAX = 2**63 - 1
_ESP_MESSAGE_ID_MAX = Delivery._meta.get_field("esp_message_id").max_length


def esp_event_kind(*, event: AnymailTrackingEvent, esp_name: str) -> int | None:
    """Our EventKind for anymail's event, or None when it is not one we record."""
    event_type = event.event_type
    if event_type == EventType.DELIVERED:
        return EventKind.DELIVERED
    if event_type == EventType.DEFERRED:
        return EventKind.SOFT_BOUNCE
    if event_type == EventType.BOUNCED:
        temporary = _TEMPORARY_BOUNCE.get(esp_name)
        raw = event.esp_event
        if temporary is not None and isinstance(raw, dict) and temporary(raw):
            return EventKind.SOFT_BOUNCE
        return EventKind.BOUNCE
    if event_type == EventType.REJECTED and event.reject_reason in _REJECTED_AS_BOUNCE:
        return EventKind.BOUNCE
    if event_type == EventType.COMPLAINED:
        return EventKind.COMPLAINT
    if event_type == EventType.UNSUBSCRIBED:
        return EventKind.UNSUBSCRIBE
    return None


def esp_event_id(event: AnymailTrackingEvent) -> str:
    """The key that makes a replay recognisable: the ESP's event id with the recipient (one
    Amazon SES notification covers every recipient of a message), or, for events without an id
    (Postmark's deliveries), a hash of what identifies the event."""
    recipient = event.recipient or ""
    if event.event_id:
        return f"{event.event_id}/{recipient}" if recipient else str(event.event_id)
    timestamp = event.timestamp.isoformat() if event.timestamp else ""
    identity = f"{event.message_id}|{event.event_type}|{timestamp}|{recipient}"
    return "derived:" + hashlib.sha256(identity.encode()).hexdigest()


def metadata_delivery_id(metadata: object) -> int | None:
    """The delivery id the message's anymail metadata names, or None when it names none or
    names it with anything but a positive integer (as text, or a number in some ESPs' JSON)."""
    if not isinstance(metadata, dict):
        return None
    value = metadata.get(DELIVERY_METADATA)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DELIVERY_ID.fullmatch(value):
        return None
    delivery_id = int(value)
    return delivery_id if delivery_id <= _DELIVERY_ID_MAX else None


def _message_id_attach(*, delivery_id: int, message_id: str) -> None:
    """Gives the delivery the event's ESP message id when the send has not stored one yet, in one
    conditional UPDATE. A delivery with another message id keeps it, and so does one whose
    message id is on another delivery already: that one is what the event is matched to."""
    if len(message_id) > _ESP_MESSAGE_ID_MAX:
        return
    Delivery.objects.filter(
        ~Exists(Delivery.objects.filter(esp_message_id=message_id)),
        pk=delivery_id,
        esp_message_id="",
    ).update(esp_message_id=message_id)


def esp_event_received(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """Receiver of anymail's tracking signal (connected in TrackingConfig.ready)."""
    kind = esp_event_kind(event=event, esp_name=esp_name)
    if kind is None:
        return
    if not event.message_id:
        logger.info("%s %s event without a message id ignored", esp_name, event.event_type)
        return
    message_id = str(event.message_id)
    delivery_id = metadata_delivery_id(event.metadata)
    if delivery_id is not None:
        _message_id_attach(delivery_id=delivery_id, message_id=message_id)
    esp_event_record(
        esp_name=esp_name,
        event_id=esp_event_id(event),
        message_id=message_id,
        kind=kind,
        occurred_at=event.timestamp or timezone.now(),
        detail=event.mta_response or event.description or "",
    )


def _mail_backend() -> str:
    mailers = getattr(settings, "MAILERS", None)
    if mailers:
        return mailers["default"]["BACKEND"]
    return settings.EMAIL_BACKEND


@checks.register(checks.Tags.security, deploy=True)
def webhook_secret_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """With an ESP's backend and no ANYMAIL_WEBHOOK_SECRET, the settings give anymail an
    unguessable secret, so every webhook is refused: bounces and complaints are not recorded
    until one is set. (Over SMTP no delivery has an ESP message id, so no webhook event can
    match one.)"""
    if not _mail_backend().startswith("anymail."):
        return []
    if getattr(settings, "ANYMAIL_WEBHOOK_SECRET_SET", True):
        return []
    return [
        checks.Warning(
            "ANYMAIL_WEBHOOK_SECRET is not set: the ESP webhooks under /webhooks/ refuse every "
            "event, so bounces and complaints are not recorded.",
            hint="Set ANYMAIL_WEBHOOK_SECRET=user:password and put it in the webhook URLs "
            "configured at the ESP (https://user:password@host/webhooks/...).",
            id="tracking.W001",
        )
    ]
