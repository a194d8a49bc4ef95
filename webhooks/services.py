"""Creating, changing and deleting webhook endpoints (the API's and the app's one path), and
resending a delivery. Bad input raises WebhookInputError with every problem; nothing is stored
then."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from automations.models import Trigger
from convertkit.models import Account
from sequences.models import Sequence
from subscribers.models import Form, Tag
from webhooks.delivery import deliveries_park, deliveries_unpark
from webhooks.events import CATALOG_EVENTS, KIND_OF, LEGACY_EVENTS
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookSubscription
from webhooks.targets import target_url_errors
from webhooks.tasks import deliver

Kind = WebhookEndpoint.Kind
# How long the old secret keeps signing after a rotation.
ROTATION_OVERLAP = timedelta(hours=24)
# The model each legacy parameter names (initiator_value is a URL, not an id).
_PARAM_MODELS = {"tag_id": Tag, "form_id": Form, "sequence_id": Sequence}


class WebhookInputError(ValueError):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


# (event type, object id, initiator value): one subscription.
Spec = tuple[str, int | None, str]


def _legacy_spec(account: Account, event, errors: list[str]) -> Spec | None:
    if not isinstance(event, dict) or not isinstance(event.get("name"), str):
        errors.append("event.name is required")
        return None
    name = event["name"]
    if name not in LEGACY_EVENTS:
        errors.append(f"event.name {name} is not a supported event")
        return None
    param = LEGACY_EVENTS[name]
    if param is None:
        return (name, None, "")
    value = event.get(param)
    if param == "initiator_value":
        if not isinstance(value, str) or not value.strip():
            errors.append(f"event.initiator_value is required for {name}")
            return None
        return (name, None, value.strip()[:2000])
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(f"event.{param} is required for {name} and must be an integer")
        return None
    if not 0 < value < 2**63 or not (
        _PARAM_MODELS[param].objects.filter(account=account, pk=value).exists()
    ):
        errors.append(f"event.{param} {value} was not found")
        return None
    return (name, value, "")


def _catalog_specs(events, errors: list[str]) -> list[Spec]:
    if not isinstance(events, list) or not events:
        errors.append("events must list at least one event type")
        return []
    specs: list[Spec] = []
    for name in events:
        if name not in CATALOG_EVENTS:
            errors.append(f"events: {name} is not a supported event type")
        elif (name, None, "") not in specs:
            specs.append((name, None, ""))
    return specs


def _subscriptions_set(endpoint: WebhookEndpoint, specs: list[Spec]) -> None:
    """Makes the endpoint listen to exactly `specs`, each through its hook trigger."""
    current = {
        (s.event_type, s.object_id, s.initiator_value): s for s in endpoint.subscriptions.all()
    }
    gone = [s.pk for spec, s in current.items() if spec not in specs]
    WebhookSubscription.objects.filter(pk__in=gone).delete()
    for event_type, object_id, initiator_value in specs:
        if (event_type, object_id, initiator_value) in current:
            continue
        subscription = WebhookSubscription.objects.create(
            account_id=endpoint.account_id,
            endpoint=endpoint,
            event_type=event_type,
            object_id=object_id,
            initiator_value=initiator_value,
        )
        Trigger.objects.create(
            account_id=endpoint.account_id,
            role=Trigger.Role.HOOK,
            kind=KIND_OF[event_type],
            object_id=object_id,
            detail=initiator_value,
            webhook=subscription,
        )


def _text(value, name: str, limit: int, errors: list[str]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.append(f"{name} must be a string")
        return ""
    if len(value) > limit:
        errors.append(f"{name} is longer than {limit} characters")
    return value.strip()


def endpoint_create(
    *,
    account: Account,
    url: str,
    events,
    name: str | None = "",
    description: str | None = "",
    kind: str = Kind.ENVELOPE,
    oauth_application=None,
) -> WebhookEndpoint:
    """A new endpoint listening to `events`: for a webhook endpoint, catalog event names
    ("subscriber.tag_added"); for a legacy webhook, one event {"name": "subscriber.tag_add",
    "tag_id": 3} (its parameter checked against the account's objects)."""
    errors = target_url_errors(url, field="url" if kind == Kind.ENVELOPE else "target_url")
    name = _text(name, "name", 255, errors)
    description = _text(description, "description", 1000, errors)
    if kind == Kind.LEGACY:
        spec = _legacy_spec(account, events, errors)
        specs = [spec] if spec else []
    else:
        specs = _catalog_specs(events, errors)
    if errors:
        raise WebhookInputError(errors)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            account=account,
            kind=kind,
            url=url.strip(),
            name=name,
            description=description,
            secret=secrets.token_hex(32),
            oauth_application=oauth_application,
        )
        _subscriptions_set(endpoint, specs)
    return endpoint


def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    events=None,
    name: str | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    now: datetime | None = None,
) -> WebhookEndpoint:
    """Changes what is given (None: unchanged). `events` replaces the subscriptions. Enabling
    an endpoint clears its failure and makes its parked deliveries due; disabling parks them."""
    errors: list[str] = []
    changes: dict = {}
    if url is not None:
        errors += target_url_errors(url, field="url")
        changes["url"] = url.strip()
    if name is not None:
        changes["name"] = _text(name, "name", 255, errors)
    if description is not None:
        changes["description"] = _text(description, "description", 1000, errors)
    specs = None
    if events is not None:
        if endpoint.kind == Kind.LEGACY:
            spec = _legacy_spec(endpoint.account, events, errors)
            specs = [spec] if spec else []
        else:
            specs = _catalog_specs(events, errors)
    if enabled is not None and not isinstance(enabled, bool):
        errors.append("enabled must be true or false")
    if errors:
        raise WebhookInputError(errors)
    now = now or timezone.now()
    with transaction.atomic():
        # Locked first, as the delivery workers lock it before writing its deliveries.
        endpoint.enabled = (
            WebhookEndpoint.objects.select_for_update()
            .values_list("enabled", flat=True)
            .get(pk=endpoint.pk)
        )
        if enabled is True and not endpoint.enabled:
            changes.update(enabled=True, disabled_reason="", failing_since=None)
            deliveries_unpark(endpoint_ids=[endpoint.pk], now=now)
        elif enabled is False and endpoint.enabled:
            changes.update(enabled=False, disabled_reason=WebhookEndpoint.Disabled.MANUAL)
            deliveries_park(endpoint_ids=[endpoint.pk])
        if changes:
            for field, value in changes.items():
                setattr(endpoint, field, value)
            endpoint.save()
        if specs is not None:
            _subscriptions_set(endpoint, specs)
    if enabled is True:
        _kick()
    return endpoint


class RotationOpen(Exception):
    """A rotation's overlap window is still open (rotate with force to end it)."""


def endpoint_secret_rotate(
    *, endpoint: WebhookEndpoint, force: bool = False, now: datetime | None = None
) -> str:
    """A new signing secret, returned (the only time it is shown); the old one keeps signing
    beside it for ROTATION_OVERLAP. RotationOpen while an earlier rotation's window is open,
    unless `force`, which drops the secret that window kept."""
    now = now or timezone.now()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        window = endpoint.previous_secret_expires_at
        if window is not None and window > now and not force:
            raise RotationOpen
        endpoint.previous_secret, endpoint.secret = endpoint.secret, secrets.token_hex(32)
        endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
        endpoint.save()
    return endpoint.secret


def endpoint_previous_secret_revoke(*, endpoint: WebhookEndpoint) -> None:
    """Ends a rotation's overlap window now: only the current secret signs."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret="", previous_secret_expires_at=None
    )
    endpoint.previous_secret, endpoint.previous_secret_expires_at = "", None


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Deletes the endpoint with its subscriptions (and their triggers), deliveries and
    attempts."""
    endpoint.delete()


def delivery_resend(*, delivery: WebhookDelivery, now: datetime | None = None) -> WebhookDelivery:
    """A new delivery of the same events (the same event ids, so receivers can deduplicate) to
    the same endpoint, due now."""
    now = now or timezone.now()
    resent = WebhookDelivery.objects.create(
        account_id=delivery.account_id,
        endpoint_id=delivery.endpoint_id,
        event_type=delivery.event_type,
        events=delivery.events,
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at=now if delivery.endpoint.enabled else None,
        created_at=now,
    )
    _kick()
    return resent


def _kick() -> None:
    transaction.on_commit(deliver.delay)
