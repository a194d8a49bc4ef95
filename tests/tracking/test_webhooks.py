"""ESP webhooks: payloads shaped like Postmark's, Mailgun's, Amazon SES's and SendGrid's real ones,
posted to anymail's own webhook URLs, change reports and subscribers once, and only when genuine."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import time

import pytest
from django.core import checks
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from broadcasts.audience import audience_count
from broadcasts.models import Broadcast, Delivery
from broadcasts.transport import DELIVERY_METADATA
from subscribers.models import StateChange, Subscriber
from tests.factories import SubscriberFactory
from tracking.models import DeliveryActivity, Event, EventKind, Rollup, WebhookReceipt
from tracking.store import TrackedEvent, events_store
from tracking.webhooks import webhook_secret_check

pytestmark = [
    pytest.mark.django_db,
    # anymail warns on every SendGrid request that it no longer supports SendGrid officially.
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning"),
]

SECRET = "esp-webhooks:correct-horse-battery"
MAILGUN_SIGNING_KEY = "mailgun-webhook-signing-key-for-tests"
BOUNCE_TEXT = "550 5.1.1 The email account that you tried to reach does not exist"
ESPS = ("postmark", "mailgun", "amazon_ses", "sendgrid")
# Amazon SES publishes no unsubscribe event: its subscription management is its own product.
ESPS_WITH_UNSUBSCRIBE = ("postmark", "mailgun", "sendgrid")
ESP_NAMES = {
    "postmark": "Postmark",
    "mailgun": "Mailgun",
    "amazon_ses": "Amazon SES",
    "sendgrid": "SendGrid",
}
_serial = itertools.count(1)


@pytest.fixture(autouse=True)
def _esp_settings(settings):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY,
    }
    settings.SOFT_BOUNCE_LIMIT = 3


def _basic_auth(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@pytest.fixture
def esp_client():
    """The ESP posting with the user:password put in the webhook URL configured there."""
    return Client(HTTP_AUTHORIZATION=_basic_auth(SECRET))


# --- Payloads, one builder per ESP and kind ---------------------------------------------------


def _message_id(esp: str) -> str:
    """An ESP message id as the ESP's send API answers it (what the transport stored)."""
    n = next(_serial)
    return {
        "postmark": f"0a129aee-e1cd-480d-b08d-4f48548ff{n:03d}",
        "mailgun": f"<20240612101010.{n}.4a6a2f3b@mg.example.com>",
        "amazon_ses": f"010001902ff1d2c5-6cf7ad2b-9e3a-4d3a-9d55-{n:012d}-000000",
        "sendgrid": f"2d5e5a0c-64c4-4a33-8f57-{n:012d}",
    }[esp]


def _postmark(kind: str, message_id: str, email: str) -> dict:
    at = timezone.now().isoformat()
    if kind == "delivered":
        # Postmark's delivery webhook has no ID: a replay is recognised by what it describes.
        return {
            "RecordType": "Delivery",
            "ServerID": 23,
            "MessageStream": "broadcast",
            "MessageID": message_id,
            "Recipient": email,
            "Tag": "",
            "DeliveredAt": at,
            "Details": "smtp;250 2.0.0 OK",
            "Metadata": {},
        }
    if kind == "unsubscribe":
        return {
            "RecordType": "SubscriptionChange",
            "ServerID": 23,
            "MessageStream": "broadcast",
            "MessageID": message_id,
            "ChangedAt": at,
            "Recipient": email,
            "Origin": "Recipient",
            "SuppressSending": True,
            "SuppressionReason": "ManualSuppression",
            "Tag": "",
            "Metadata": {},
        }
    types = {
        "hard_bounce": ("Bounce", "HardBounce", 1, "Hard bounce"),
        "soft_bounce": ("Bounce", "SoftBounce", 4096, "Soft bounce"),
        "complaint": ("SpamComplaint", "SpamComplaint", 512, "Spam complaint"),
        "open": ("Open", None, 0, ""),
    }
    record_type, bounce_type, type_code, name = types[kind]
    if kind == "open":
        return {
            "RecordType": "Open",
            "MessageStream": "broadcast",
            "FirstOpen": True,
            "MessageID": message_id,
            "Recipient": email,
            "ReceivedAt": at,
            "UserAgent": "Mozilla/5.0",
            "Platform": "WebMail",
            "Metadata": {},
        }
    return {
        "RecordType": record_type,
        "ID": 4323372000 + next(_serial),
        "Type": bounce_type,
        "TypeCode": type_code,
        "Name": name,
        "Tag": "",
        "MessageID": message_id,
        "ServerID": 23,
        "MessageStream": "broadcast",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": BOUNCE_TEXT if kind == "hard_bounce" else "421 4.7.0 try again later",
        "Email": email,
        "From": "news@example.com",
        "BouncedAt": at,
        "DumpAvailable": False,
        "Inactive": kind != "soft_bounce",
        "CanActivate": True,
        "Subject": "Soup season",
        "Metadata": {},
    }


def _mailgun(kind: str, message_id: str, email: str, *, signing_key: str = MAILGUN_SIGNING_KEY):
    """A JSON webhook as Mailgun signs it: HMAC-SHA256 of timestamp + token with the
    webhook signing key; the token is also anymail's event id."""
    event_data: dict = {
        "id": f"evt{next(_serial)}",
        "timestamp": timezone.now().timestamp(),
        "recipient": email,
        "message": {
            # Mailgun's headers carry the Message-ID without the angle brackets of its send API.
            "headers": {
                "message-id": message_id.strip("<>"),
                "to": email,
                "from": "news@example.com",
                "subject": "Soup season",
            }
        },
        "user-variables": {},
        "tags": [],
    }
    if kind == "delivered":
        event_data |= {
            "event": "delivered",
            "log-level": "info",
            "delivery-status": {"code": 250, "message": "OK", "description": ""},
        }
    elif kind in ("hard_bounce", "soft_bounce"):
        event_data |= {
            "event": "failed",
            "log-level": "error" if kind == "hard_bounce" else "warn",
            "severity": "permanent" if kind == "hard_bounce" else "temporary",
            "reason": "bounce" if kind == "hard_bounce" else "generic",
            "delivery-status": {
                "code": 550 if kind == "hard_bounce" else 421,
                "message": BOUNCE_TEXT if kind == "hard_bounce" else "4.7.0 try again later",
                "description": "",
                "attempt-no": 1,
            },
        }
    elif kind == "complaint":
        event_data |= {"event": "complained", "log-level": "warn"}
    elif kind == "unsubscribe":
        event_data |= {"event": "unsubscribed", "log-level": "info"}
    token = hashlib.sha256(f"token{next(_serial)}".encode()).hexdigest()[:50]
    timestamp = str(int(time.time()))
    signature = hmac.new(
        signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


def _ses_event(kind: str, message_id: str, email: str) -> dict:
    at = timezone.now().isoformat()
    mail = {
        "timestamp": at,
        "source": "news@example.com",
        "sendingAccountId": "111122223333",
        "messageId": message_id,
        "destination": [email],
        "headersTruncated": False,
        "headers": [{"name": "Subject", "value": "Soup season"}],
        "commonHeaders": {"from": ["news@example.com"], "to": [email], "subject": "Soup season"},
    }
    if kind == "delivered":
        return {
            "eventType": "Delivery",
            "mail": mail,
            "delivery": {
                "timestamp": at,
                "processingTimeMillis": 546,
                "recipients": [email],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
            },
        }
    if kind in ("hard_bounce", "soft_bounce"):
        return {
            "eventType": "Bounce",
            "mail": mail,
            "bounce": {
                "bounceType": "Permanent" if kind == "hard_bounce" else "Transient",
                "bounceSubType": "General" if kind == "hard_bounce" else "MailboxFull",
                "bouncedRecipients": [
                    {
                        "emailAddress": email,
                        "action": "failed",
                        "status": "5.1.1" if kind == "hard_bounce" else "4.2.2",
                        "diagnosticCode": f"smtp; {BOUNCE_TEXT}"
                        if kind == "hard_bounce"
                        else "smtp; 452 4.2.2 mailbox full",
                    }
                ],
                "timestamp": at,
                "feedbackId": f"0100018f-{next(_serial)}",
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            },
        }
    if kind == "complaint":
        return {
            "eventType": "Complaint",
            "mail": mail,
            "complaint": {
                "complainedRecipients": [{"emailAddress": email}],
                "timestamp": at,
                "feedbackId": f"0100018f-{next(_serial)}",
                "userAgent": "Mozilla/5.0",
                "complaintFeedbackType": "abuse",
                "arrivalDate": at,
            },
        }
    raise ValueError(kind)


def _sns_envelope(ses_event: dict) -> tuple[dict, dict]:
    """The SNS Notification an SES configuration set publishes, and its x-amz-sns headers."""
    sns_id = f"6b0f2b5e-1f2a-5a48-9c4b-{next(_serial):012d}"
    body = {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:ses-events",
        "Message": json.dumps(ses_event),
        "Timestamp": timezone.now().isoformat().replace("+00:00", "Z"),
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+..",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }
    headers = {
        "HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification",
        "HTTP_X_AMZ_SNS_MESSAGE_ID": sns_id,
        "HTTP_X_AMZ_SNS_TOPIC_ARN": body["TopicArn"],
    }
    return body, headers


def _sendgrid_event(kind: str, message_id: str, email: str) -> dict:
    """One event of SendGrid's batch; anymail_id is the custom arg anymail's SendGrid backend
    sends each message with (and answers as its message id)."""
    event = {
        "email": email,
        "timestamp": int(timezone.now().timestamp()),
        "smtp-id": f"<{message_id}@ismtpd0001p1lon1.sendgrid.net>",
        "sg_event_id": base64.urlsafe_b64encode(f"sg-event-{next(_serial)}".encode()).decode(),
        "sg_message_id": f"{message_id[:22]}.filter0001.16648.5515E0B88.0",
        "anymail_id": message_id,
        "category": [],
    }
    kinds = {
        "delivered": {"event": "delivered", "response": "250 OK", "ip": "168.1.1.1", "tls": 1},
        "hard_bounce": {
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": BOUNCE_TEXT,
            "bounce_classification": "Invalid Address",
        },
        # A block: refused for now (a block list, a policy), not a dead address.
        "soft_bounce": {
            "event": "bounce",
            "type": "blocked",
            "status": "4.7.1",
            "reason": "421 4.7.1 deferred: too many messages from this IP",
            "bounce_classification": "Reputation",
        },
        "complaint": {"event": "spamreport"},
        "unsubscribe": {"event": "unsubscribe"},
        "open": {"event": "open", "useragent": "Mozilla/5.0", "ip": "10.0.0.1"},
        "processed": {"event": "processed"},
        "deferred": {"event": "deferred", "response": "421 try again later", "attempt": "1"},
    }
    return event | kinds[kind]


def _webhook(
    esp: str,
    kind: str,
    delivery: Delivery,
    *,
    message_id: str = "",
    metadata: dict | None = None,
) -> tuple[dict | list, dict]:
    """(JSON body, extra request headers) of `esp` reporting `kind` for the delivery: for the
    message id stored at send unless `message_id` is given, with the message's anymail
    `metadata` where each ESP hands it back."""
    message_id, email = message_id or delivery.esp_message_id, delivery.subscriber.email
    metadata = metadata or {}
    if esp == "postmark":
        return _postmark(kind, message_id, email) | {"Metadata": metadata}, {}
    if esp == "mailgun":
        body = _mailgun(kind, message_id, email)
        body["event-data"]["user-variables"] = metadata
        return body, {}
    if esp == "amazon_ses":
        event = _ses_event(kind, message_id, email)
        if metadata:
            # anymail sends metadata in an X-Metadata header; SES notifications include the
            # message's headers when "Include original headers" is on.
            event["mail"]["headers"].append({"name": "X-Metadata", "value": json.dumps(metadata)})
        return _sns_envelope(event)
    # SendGrid merges a message's custom args (anymail's metadata) into each of its events.
    return [_sendgrid_event(kind, message_id, email) | metadata], {}


def _post(client: Client, esp: str, body, headers: dict | None = None):
    return client.post(
        reverse(f"anymail:{esp}_tracking_webhook"),
        data=json.dumps(body),
        content_type="application/json",
        **(headers or {}),
    )


# --- Fixtures and what a test looks at ----------------------------------------------------------


def _sent(
    esp: str, broadcast: Broadcast, subscriber: Subscriber, sent_at: dt.datetime | None = None
) -> Delivery:
    return Delivery.objects.create(
        broadcast=broadcast,
        account=broadcast.account,
        subscriber=subscriber,
        state=Delivery.State.SENT,
        attempts=1,
        sent_at=sent_at or timezone.now() - dt.timedelta(minutes=5),
        esp_message_id=_message_id(esp),
    )


@pytest.fixture
def delivery_for(sent_broadcast):
    """delivery_for(esp): the one delivery of a sent broadcast, with a message id as `esp`
    answered it at send."""

    def make(esp: str) -> Delivery:
        broadcast = sent_broadcast(recipients=1)
        delivery = broadcast.delivery_set.select_related("subscriber").get()
        delivery.esp_message_id = _message_id(esp)
        delivery.save(update_fields=["esp_message_id"])
        return delivery

    return make


@pytest.fixture
def in_flight(sent_broadcast):
    """in_flight(): the one delivery of a broadcast whose ESP call has not returned yet: sending,
    with no ESP message id stored."""

    def make() -> Delivery:
        broadcast = sent_broadcast(recipients=1)
        Broadcast.objects.filter(pk=broadcast.pk).update(
            state=Broadcast.State.SENDING, sent_at=None, sent_count=0
        )
        broadcast.delivery_set.update(
            state=Delivery.State.SENDING, claim=7, sent_at=None, esp_message_id=""
        )
        return broadcast.delivery_set.select_related("subscriber").get()

    return make


def _naming(delivery_id: object) -> dict:
    """The metadata the transport sends a message with, naming `delivery_id`."""
    return {DELIVERY_METADATA: str(delivery_id)}


@pytest.fixture
def next_sent(sent_broadcast):
    """next_sent(esp, subscriber): a new broadcast of the subscriber's account, sent to them an
    hour after the previous one (events of a message arrive before the next one is sent)."""
    sent_at = [timezone.now() - dt.timedelta(days=1)]

    def make(esp: str, subscriber: Subscriber) -> Delivery:
        sent_at[0] += dt.timedelta(hours=1)
        broadcast = sent_broadcast(recipients=0, account=subscriber.account)
        return _sent(esp, broadcast, subscriber, sent_at[0])

    return make


def _report(broadcast_id: int) -> dict[str, int]:
    names = ("delivered", "bounces", "soft_bounces", "complaints", "unsubscribes")
    totals = Rollup.objects.filter(broadcast_id=broadcast_id, link_id=0).aggregate(
        **{name: Sum(name) for name in names}
    )
    return {name: totals[name] or 0 for name in names}


def _state(subscriber: Subscriber) -> str:
    return Subscriber.objects.values_list("state", flat=True).get(pk=subscriber.pk)


def _everything() -> tuple:
    """All that an ESP event may change, to compare before and after."""
    rollups = Rollup.objects.aggregate(
        **{
            name: Sum(name)
            for name in ("delivered", "bounces", "soft_bounces", "complaints", "unsubscribes")
        }
    )
    return (
        Event.objects.count(),
        DeliveryActivity.objects.count(),
        tuple(sorted(rollups.items())),
        StateChange.objects.count(),
        tuple(Subscriber.objects.order_by("pk").values_list("pk", "state")),
        WebhookReceipt.objects.count(),
    )


# --- Each ESP, each kind -----------------------------------------------------------------------


@pytest.mark.parametrize("esp", ESPS)
def test_delivered_event_counts_the_message_delivered(esp, esp_client, delivery_for):
    delivery = delivery_for(esp)
    response = _post(esp_client, esp, *_webhook(esp, "delivered", delivery))
    assert response.status_code == 200
    assert _report(delivery.broadcast_id)["delivered"] == 1
    assert DeliveryActivity.objects.filter(
        delivery_id=delivery.pk, kind=EventKind.DELIVERED
    ).exists()
    assert _state(delivery.subscriber) == Subscriber.State.ACTIVE


@pytest.mark.parametrize("esp", ESPS)
def test_hard_bounce_marks_the_subscriber_bounced_with_the_esps_reason(
    esp, esp_client, delivery_for
):
    delivery = delivery_for(esp)
    response = _post(esp_client, esp, *_webhook(esp, "hard_bounce", delivery))
    assert response.status_code == 200
    assert _state(delivery.subscriber) == Subscriber.State.BOUNCED
    change = StateChange.objects.get(subscriber=delivery.subscriber)
    assert (change.from_state, change.to_state) == ("active", "bounced")
    assert ESP_NAMES[esp] in change.reason and BOUNCE_TEXT in change.reason
    assert _report(delivery.broadcast_id) == {
        "delivered": 0,
        "bounces": 1,
        "soft_bounces": 0,
        "complaints": 0,
        "unsubscribes": 0,
    }


@pytest.mark.parametrize("esp", ESPS)
def test_soft_bounce_is_counted_and_leaves_the_subscriber_active(esp, esp_client, delivery_for):
    delivery = delivery_for(esp)
    response = _post(esp_client, esp, *_webhook(esp, "soft_bounce", delivery))
    assert response.status_code == 200
    report = _report(delivery.broadcast_id)
    assert (report["soft_bounces"], report["bounces"]) == (1, 0)
    assert _state(delivery.subscriber) == Subscriber.State.ACTIVE
    assert not StateChange.objects.exists()


@pytest.mark.parametrize("esp", ESPS)
def test_complaint_marks_the_subscriber_complained(esp, esp_client, delivery_for):
    delivery = delivery_for(esp)
    response = _post(esp_client, esp, *_webhook(esp, "complaint", delivery))
    assert response.status_code == 200
    assert _state(delivery.subscriber) == Subscriber.State.COMPLAINED
    change = StateChange.objects.get(subscriber=delivery.subscriber)
    assert change.to_state == "complained" and ESP_NAMES[esp] in change.reason
    assert _report(delivery.broadcast_id)["complaints"] == 1


@pytest.mark.parametrize("esp", ESPS_WITH_UNSUBSCRIBE)
def test_esp_unsubscribe_unsubscribes_the_subscriber(esp, esp_client, delivery_for):
    delivery = delivery_for(esp)
    response = _post(esp_client, esp, *_webhook(esp, "unsubscribe", delivery))
    assert response.status_code == 200
    assert _state(delivery.subscriber) == Subscriber.State.UNSUBSCRIBED
    change = StateChange.objects.get(subscriber=delivery.subscriber)
    assert change.to_state == "unsubscribed" and ESP_NAMES[esp] in change.reason
    assert _report(delivery.broadcast_id)["unsubscribes"] == 1


@pytest.mark.parametrize("esp", ESPS)
@pytest.mark.parametrize("kind", ["hard_bounce", "delivered"])
def test_replayed_event_changes_nothing(esp, kind, esp_client, delivery_for):
    delivery = delivery_for(esp)
    body, headers = _webhook(esp, kind, delivery)
    assert _post(esp_client, esp, body, headers).status_code == 200
    before = _everything()
    assert _post(esp_client, esp, body, headers).status_code == 200
    assert _everything() == before
    assert Event.objects.filter(delivery_id=delivery.pk).count() == 1
    assert WebhookReceipt.objects.filter(esp_name=ESP_NAMES[esp]).count() == 1


@pytest.mark.parametrize("esp", ESPS)
def test_soft_bounces_in_a_row_make_the_subscriber_bounced(esp, esp_client, next_sent):
    subscriber = SubscriberFactory()
    for _ in range(2):
        _post(esp_client, esp, *_webhook(esp, "soft_bounce", next_sent(esp, subscriber)))
        assert _state(subscriber) == Subscriber.State.ACTIVE
    third = next_sent(esp, subscriber)
    _post(esp_client, esp, *_webhook(esp, "soft_bounce", third))
    assert _state(subscriber) == Subscriber.State.BOUNCED
    change = StateChange.objects.get(subscriber=subscriber)
    assert "3 soft bounces in a row" in change.reason and ESP_NAMES[esp] in change.reason
    assert _report(third.broadcast_id)["soft_bounces"] == 1


def test_a_delivered_message_between_soft_bounces_starts_the_run_again(esp_client, next_sent):
    subscriber = SubscriberFactory()

    def report(*kinds: str) -> None:
        delivery = next_sent("postmark", subscriber)
        for kind in kinds:
            body = _postmark(kind, delivery.esp_message_id, subscriber.email)
            assert _post(esp_client, "postmark", body).status_code == 200

    report("soft_bounce")
    report("delivered")
    # Deferred, then delivered after all: it reached them, so it is no soft bounce in a row.
    report("soft_bounce", "delivered")
    report("soft_bounce")
    report("soft_bounce")
    assert _state(subscriber) == Subscriber.State.ACTIVE
    report("soft_bounce")
    assert _state(subscriber) == Subscriber.State.BOUNCED


def test_an_opened_message_breaks_a_run_of_soft_bounces(esp_client, next_sent):
    """Our own pixel saw the message read, whatever the ESP said of its delivery."""
    subscriber = SubscriberFactory()
    for n in range(3):
        delivery = next_sent("postmark", subscriber)
        if n == 1:
            events_store([TrackedEvent(EventKind.OPEN, timezone.now(), delivery.pk)])
        body = _postmark("soft_bounce", delivery.esp_message_id, subscriber.email)
        assert _post(esp_client, "postmark", body).status_code == 200
    assert _state(subscriber) == Subscriber.State.ACTIVE


def test_fewer_sent_messages_than_the_limit_never_make_a_bounce(esp_client, delivery_for):
    delivery = delivery_for("sendgrid")
    body = [
        _sendgrid_event(kind, delivery.esp_message_id, delivery.subscriber.email)
        for kind in ("deferred", "deferred", "soft_bounce")
    ]
    assert _post(esp_client, "sendgrid", body).status_code == 200
    assert _report(delivery.broadcast_id)["soft_bounces"] == 1
    assert _state(delivery.subscriber) == Subscriber.State.ACTIVE


def test_sendgrid_batch_applies_each_event_to_its_own_delivery(esp_client, sent_broadcast):
    broadcast = sent_broadcast(recipients=4)
    deliveries = list(broadcast.delivery_set.select_related("subscriber").order_by("id"))
    for delivery in deliveries:
        delivery.esp_message_id = _message_id("sendgrid")
        delivery.save(update_fields=["esp_message_id"])
    delivered, bounced, complained, unsubscribed = deliveries
    body = [
        _sendgrid_event("processed", delivered.esp_message_id, delivered.subscriber.email),
        _sendgrid_event("delivered", delivered.esp_message_id, delivered.subscriber.email),
        _sendgrid_event("open", delivered.esp_message_id, delivered.subscriber.email),
        _sendgrid_event("hard_bounce", bounced.esp_message_id, bounced.subscriber.email),
        _sendgrid_event("complaint", complained.esp_message_id, complained.subscriber.email),
        _sendgrid_event("delivered", unsubscribed.esp_message_id, unsubscribed.subscriber.email),
        _sendgrid_event("unsubscribe", unsubscribed.esp_message_id, unsubscribed.subscriber.email),
    ]
    assert _post(esp_client, "sendgrid", body).status_code == 200
    assert [_state(d.subscriber) for d in deliveries] == [
        "active",
        "bounced",
        "complained",
        "unsubscribed",
    ]
    assert _report(broadcast.pk) == {
        "delivered": 2,
        "bounces": 1,
        "soft_bounces": 0,
        "complaints": 1,
        "unsubscribes": 1,
    }
    # The ESP's open is not recorded: opens come from our own pixel.
    assert not Event.objects.filter(kind=EventKind.OPEN).exists()


def test_sendgrid_drop_of_a_known_bounced_address_marks_the_subscriber_bounced(
    esp_client, delivery_for
):
    delivery = delivery_for("sendgrid")
    event = _sendgrid_event("processed", delivery.esp_message_id, delivery.subscriber.email)
    event |= {"event": "dropped", "reason": "Bounced Address"}
    assert _post(esp_client, "sendgrid", [event]).status_code == 200
    assert _state(delivery.subscriber) == Subscriber.State.BOUNCED


def test_esp_opens_are_ignored(esp_client, delivery_for):
    delivery = delivery_for("postmark")
    before = _everything()
    body = _postmark("open", delivery.esp_message_id, delivery.subscriber.email)
    assert _post(esp_client, "postmark", body).status_code == 200
    assert _everything() == before


# --- Events that arrive before the send stored the ESP message id --------------------------------


@pytest.mark.parametrize("esp", ESPS)
@pytest.mark.parametrize(
    ("kind", "state"),
    [("hard_bounce", Subscriber.State.BOUNCED), ("complaint", Subscriber.State.COMPLAINED)],
)
def test_event_arriving_before_the_send_stored_the_message_id_finds_the_delivery_by_metadata(
    esp, kind, state, esp_client, in_flight
):
    delivery = in_flight()
    message_id = _message_id(esp)
    body, headers = _webhook(
        esp, kind, delivery, message_id=message_id, metadata=_naming(delivery.pk)
    )
    assert _post(esp_client, esp, body, headers).status_code == 200
    assert _state(delivery.subscriber) == state
    report = _report(delivery.broadcast_id)
    assert (report["bounces"], report["complaints"]) == (
        (1, 0) if kind == "hard_bounce" else (0, 1)
    )
    # The same id the send writes when its call returns: later events match it either way.
    delivery.refresh_from_db()
    assert delivery.esp_message_id == message_id


def test_replay_of_an_event_that_arrived_before_the_send_changes_nothing(esp_client, in_flight):
    delivery = in_flight()
    body, headers = _webhook(
        "postmark",
        "hard_bounce",
        delivery,
        message_id=_message_id("postmark"),
        metadata=_naming(delivery.pk),
    )
    assert _post(esp_client, "postmark", body, headers).status_code == 200
    before = _everything()
    assert _post(esp_client, "postmark", body, headers).status_code == 200
    assert _everything() == before
    assert Event.objects.filter(delivery_id=delivery.pk).count() == 1


def _untouched(delivery: Delivery, before: tuple) -> None:
    assert _everything() == before
    delivery.refresh_from_db()
    assert delivery.esp_message_id == ""
    assert _state(delivery.subscriber) == Subscriber.State.ACTIVE


@pytest.mark.parametrize("esp", ESPS)
@pytest.mark.parametrize("named", ["no such delivery", "not a number"])
def test_metadata_naming_no_delivery_changes_nothing(esp, named, esp_client, in_flight):
    delivery = in_flight()
    value = Delivery.objects.order_by("-pk").values_list("pk", flat=True)[0] + 1000
    if named == "not a number":
        value = f"{delivery.pk}; drop table broadcasts_delivery"
    before = _everything()
    body, headers = _webhook(
        esp, "hard_bounce", delivery, message_id=_message_id(esp), metadata=_naming(value)
    )
    assert _post(esp_client, esp, body, headers).status_code == 200
    _untouched(delivery, before)


@pytest.mark.parametrize(
    "garbage",
    [
        "0",
        "-{pk}",
        "0{pk}",
        " {pk}",
        "{pk}\n",
        "{pk}.0",
        "+{pk}",
        "1_{pk}",
        "{fullwidth}",
        "",
        "99999999999999999999",
        0,
        -1,
        1.0,
        True,
        None,
        ["{pk}"],
        {"id": "{pk}"},
    ],
)
def test_metadata_that_is_not_a_positive_integer_changes_nothing(garbage, esp_client, in_flight):
    delivery = in_flight()
    pk = delivery.pk
    # The delivery's own id in disguise, where it fits: a lax parser would find it.
    fullwidth = str(pk).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    value = json.loads(
        json.dumps(garbage).replace("{pk}", str(pk)).replace("{fullwidth}", fullwidth)
    )
    if isinstance(garbage, float):
        value = float(pk)
    before = _everything()
    body = _postmark("hard_bounce", _message_id("postmark"), delivery.subscriber.email)
    body["Metadata"] = {DELIVERY_METADATA: value}
    assert _post(esp_client, "postmark", body).status_code == 200
    _untouched(delivery, before)


def test_metadata_naming_a_delivery_with_another_message_id_changes_nothing(
    esp_client, delivery_for
):
    sent = delivery_for("postmark")
    stored = sent.esp_message_id
    before = _everything()
    body = _postmark("hard_bounce", _message_id("postmark"), sent.subscriber.email)
    body["Metadata"] = _naming(sent.pk)
    assert _post(esp_client, "postmark", body).status_code == 200
    assert _everything() == before
    sent.refresh_from_db()
    assert sent.esp_message_id == stored


def test_a_message_id_already_stored_wins_over_metadata_naming_another_delivery(
    esp_client, in_flight, delivery_for
):
    sent = delivery_for("postmark")
    waiting = in_flight()
    body = _postmark("hard_bounce", sent.esp_message_id, sent.subscriber.email)
    body["Metadata"] = _naming(waiting.pk)
    assert _post(esp_client, "postmark", body).status_code == 200
    # Two deliveries with one message id would leave the next event to either of them.
    assert _state(sent.subscriber) == Subscriber.State.BOUNCED
    waiting.refresh_from_db()
    assert waiting.esp_message_id == ""
    assert _state(waiting.subscriber) == Subscriber.State.ACTIVE


# --- Bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("esp", ESPS)
def test_event_for_an_unknown_message_changes_nothing_and_is_answered(
    esp, esp_client, delivery_for
):
    delivery = delivery_for(esp)
    delivery.esp_message_id = _message_id(esp)  # not what is stored
    before = _everything()
    response = _post(esp_client, esp, *_webhook(esp, "hard_bounce", delivery))
    # 200 all the same: an error would make the ESP send it again for days.
    assert response.status_code == 200
    assert _everything() == before


@pytest.mark.parametrize("esp", ESPS)
def test_webhook_without_basic_auth_is_rejected_and_changes_nothing(esp, delivery_for):
    delivery = delivery_for(esp)
    before = _everything()
    response = _post(Client(), esp, *_webhook(esp, "hard_bounce", delivery))
    # SNS only sends credentials after a 401 asking for them; anymail answers the others 400.
    assert response.status_code == (401 if esp == "amazon_ses" else 400)
    assert _everything() == before


@pytest.mark.parametrize("esp", ESPS)
def test_webhook_with_wrong_basic_auth_is_rejected_and_changes_nothing(esp, delivery_for):
    delivery = delivery_for(esp)
    before = _everything()
    forger = Client(HTTP_AUTHORIZATION=_basic_auth("esp-webhooks:guessed"))
    response = _post(forger, esp, *_webhook(esp, "hard_bounce", delivery))
    assert response.status_code == 400
    assert _everything() == before


def test_mailgun_webhook_with_a_forged_signature_is_rejected(esp_client, delivery_for):
    delivery = delivery_for("mailgun")
    before = _everything()
    body = _mailgun(
        "hard_bounce",
        delivery.esp_message_id,
        delivery.subscriber.email,
        signing_key="not-the-signing-key",
    )
    assert _post(esp_client, "mailgun", body).status_code == 400
    assert _everything() == before


def test_unsigned_mailgun_webhook_is_rejected(esp_client, delivery_for):
    delivery = delivery_for("mailgun")
    before = _everything()
    body = _mailgun("hard_bounce", delivery.esp_message_id, delivery.subscriber.email)
    del body["signature"]
    assert _post(esp_client, "mailgun", body).status_code == 400
    assert _everything() == before


# --- What bounced subscribers no longer get ---------------------------------------------------


def test_bounced_subscriber_is_not_in_the_next_broadcasts_audience(esp_client, sent_broadcast):
    broadcast = sent_broadcast(recipients=3)
    deliveries = list(broadcast.delivery_set.select_related("subscriber").order_by("id"))
    for delivery in deliveries:
        delivery.esp_message_id = _message_id("postmark")
        delivery.save(update_fields=["esp_message_id"])
    bounced, complained = deliveries[0], deliveries[1]
    next_broadcast = Broadcast.objects.create(account=broadcast.account, subject="Bread season")
    assert audience_count(audience=next_broadcast) == 3
    for kind, delivery in (("hard_bounce", bounced), ("complaint", complained)):
        body = _postmark(kind, delivery.esp_message_id, delivery.subscriber.email)
        assert _post(esp_client, "postmark", body).status_code == 200
    assert audience_count(audience=next_broadcast) == 1


def test_deploy_check_warns_when_an_esp_is_used_without_webhook_secret(settings):
    settings.MAILERS = {"default": {"BACKEND": "anymail.backends.postmark.EmailBackend"}}
    settings.ANYMAIL_WEBHOOK_SECRET_SET = True
    assert webhook_secret_check(None) == []
    settings.ANYMAIL_WEBHOOK_SECRET_SET = False
    warnings = webhook_secret_check(None)
    assert [warning.id for warning in warnings] == ["tracking.W001"]
    assert warnings[0].level == checks.WARNING


def test_without_a_configured_secret_every_webhook_is_refused(settings, delivery_for):
    from convertkit import settings as project_settings

    # This process has no ANYMAIL_WEBHOOK_SECRET: the settings made up an unguessable one.
    assert project_settings.ANYMAIL_WEBHOOK_SECRET_SET is False
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": project_settings.ANYMAIL["WEBHOOK_SECRET"],
    }
    delivery = delivery_for("postmark")
    body = _postmark("hard_bounce", delivery.esp_message_id, delivery.subscriber.email)
    # No credentials, the credentials of another deployment, a guess at the made-up ones.
    for client in (
        Client(),
        Client(HTTP_AUTHORIZATION=_basic_auth(SECRET)),
        Client(HTTP_AUTHORIZATION=_basic_auth("unset:guess")),
    ):
        assert _post(client, "postmark", body).status_code in (400, 401)
    delivery.subscriber.refresh_from_db()
    assert delivery.subscriber.state == "active"


def test_deploy_check_is_quiet_when_mail_goes_over_smtp(settings):
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend"}}
    settings.ANYMAIL = {}
    assert webhook_secret_check(None) == []
