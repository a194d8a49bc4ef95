"""Kit's outgoing webhooks: the legacy /v4/webhooks (list, create, delete; one event each, the
bare {"subscriber": ...} body) and /v4/webhook_endpoints (list, create, get, update, delete,
and each endpoint's delivery history, with resend). Thin over webhooks.services.

An endpoint an OAuth app created is that app's: its tokens see only their own endpoints (as
Kit scopes them), API keys see every endpoint of the account. Another account's ids are 404s.
The signing secret is in the answer to a create only."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse
from ninja import Router, Schema
from oauth2_provider.models import AccessToken

from api.errors import ApiError
from api.pagination import page_of, page_request, paged, query_parameter, refuse_if
from api.shapes import timestamp
from api.views import json_answer
from webhooks.events import LEGACY_EVENTS
from webhooks.models import EventType, WebhookDelivery, WebhookEndpoint
from webhooks.services import (
    RotationOpen,
    WebhookInputError,
    delivery_resend,
    endpoint_create,
    endpoint_delete,
    endpoint_previous_secret_revoke,
    endpoint_secret_rotate,
    endpoint_update,
)

router = Router(tags=["Webhooks"])
Kind = WebhookEndpoint.Kind
STATUSES = ("active", "disabled")


def _app(request):
    return request.auth.application if isinstance(request.auth, AccessToken) else None


def _endpoints(request, kind: str):
    endpoints = WebhookEndpoint.objects.filter(account=request.account, kind=kind)
    app = _app(request)
    return endpoints.filter(oauth_application=app) if app is not None else endpoints


def _endpoint(request, kind: str, endpoint_id: int) -> WebhookEndpoint:
    endpoint = _endpoints(request, kind).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404
    return endpoint


def _refused(error: WebhookInputError):
    return ApiError(422, error.errors)


# Legacy webhooks ------------------------------------------------------------------------------


class LegacyWebhookIn(Schema):
    target_url: str
    event: dict[str, Any]


def legacy_webhook_json(endpoint: WebhookEndpoint) -> dict:
    subscription = endpoint.subscriptions.all()[0]
    event: dict[str, Any] = {"name": subscription.event_type.split(".", 1)[1]}
    param = LEGACY_EVENTS.get(subscription.event_type)
    if param and param != "initiator_value":
        event[param] = subscription.object_id
    event["initiator_value"] = subscription.initiator_value or None
    return {
        "id": endpoint.id,
        "account_id": endpoint.account_id,
        "event": event,
        "target_url": endpoint.url,
    }


@router.get("/webhooks", openapi_extra=paged())
def webhook_list(request):
    problems: list[str] = []
    paging = page_request(request, list_name="webhooks", problems=problems)
    refuse_if(problems)
    items, pagination = page_of(
        _endpoints(request, Kind.LEGACY).prefetch_related("subscriptions"), paging
    )
    return json_answer(
        {"webhooks": [legacy_webhook_json(row) for row in items], "pagination": pagination}
    )


@router.post("/webhooks")
def webhook_create(request, payload: LegacyWebhookIn):
    """Kit's names are accepted with or without their "subscriber." prefix."""
    event = dict(payload.event)
    if isinstance(event.get("name"), str) and "." not in event["name"]:
        event["name"] = f"subscriber.{event['name']}"
    try:
        endpoint = endpoint_create(
            account=request.account,
            url=payload.target_url,
            events=event,
            kind=Kind.LEGACY,
            oauth_application=_app(request),
        )
    except WebhookInputError as error:
        raise _refused(error) from None
    return json_answer({"webhook": legacy_webhook_json(endpoint)}, 201)


@router.delete("/webhooks/{int:webhook_id}")
def webhook_delete(request, webhook_id: int):
    endpoint_delete(endpoint=_endpoint(request, Kind.LEGACY, webhook_id))
    return HttpResponse(status=204)


# Webhook endpoints ----------------------------------------------------------------------------


class EndpointIn(Schema):
    url: str
    events: list[str]
    name: str | None = None
    description: str | None = None


class EndpointUpdate(Schema):
    url: str | None = None
    events: list[str] | None = None
    name: str | None = None
    description: str | None = None
    status: str | None = None


def endpoint_json(endpoint: WebhookEndpoint, *, secret: bool = False) -> dict:
    shape = {
        "id": endpoint.id,
        "name": endpoint.name or None,
        "description": endpoint.description or None,
        "url": endpoint.url,
        "events": sorted(s.event_type for s in endpoint.subscriptions.all()),
        "status": "active" if endpoint.enabled else "disabled",
        "disabled_reason": endpoint.disabled_reason or None,
        "failing_since": timestamp(endpoint.failing_since),
        "previous_secret_expires_at": timestamp(endpoint.previous_secret_expires_at),
        "created_at": timestamp(endpoint.created_at),
        "updated_at": timestamp(endpoint.updated_at),
    }
    if secret:
        shape["secret"] = endpoint.secret
    return shape


@router.get(
    "/webhook_endpoints",
    openapi_extra=paged(query_parameter("status", "active or disabled")),
)
def endpoint_list(request):
    problems: list[str] = []
    paging = page_request(request, list_name="webhook_endpoints", problems=problems)
    endpoints = _endpoints(request, Kind.ENVELOPE).prefetch_related("subscriptions")
    status = request.GET.get("status", "")
    if status and status not in STATUSES:
        problems.append(f"status must be one of {', '.join(STATUSES)}")
    elif status:
        endpoints = endpoints.filter(enabled=status == "active")
    refuse_if(problems)
    items, pagination = page_of(endpoints, paging)
    return json_answer(
        {"webhook_endpoints": [endpoint_json(row) for row in items], "pagination": pagination}
    )


@router.post("/webhook_endpoints")
def endpoint_create_view(request, payload: EndpointIn):
    try:
        endpoint = endpoint_create(
            account=request.account,
            url=payload.url,
            events=payload.events,
            name=payload.name,
            description=payload.description,
            oauth_application=_app(request),
        )
    except WebhookInputError as error:
        raise _refused(error) from None
    return json_answer({"webhook_endpoint": endpoint_json(endpoint, secret=True)}, 201)


@router.get("/webhook_endpoints/{int:endpoint_id}")
def endpoint_get(request, endpoint_id: int):
    return json_answer(
        {"webhook_endpoint": endpoint_json(_endpoint(request, Kind.ENVELOPE, endpoint_id))}
    )


@router.put("/webhook_endpoints/{int:endpoint_id}")
def endpoint_update_view(request, endpoint_id: int, payload: EndpointUpdate):
    """What is given changes; `events` replaces the event set; status active or disabled."""
    endpoint = _endpoint(request, Kind.ENVELOPE, endpoint_id)
    if payload.status is not None and payload.status not in STATUSES:
        raise ApiError(422, [f"status must be one of {', '.join(STATUSES)}"])
    try:
        endpoint_update(
            endpoint=endpoint,
            url=payload.url,
            events=payload.events,
            name=payload.name,
            description=payload.description,
            enabled=None if payload.status is None else payload.status == "active",
        )
    except WebhookInputError as error:
        raise _refused(error) from None
    endpoint = WebhookEndpoint.objects.prefetch_related("subscriptions").get(pk=endpoint.pk)
    return json_answer({"webhook_endpoint": endpoint_json(endpoint)})


class RotateIn(Schema):
    force: bool = False


@router.post("/webhook_endpoints/{int:endpoint_id}/rotate_secret")
def endpoint_rotate_secret(request, endpoint_id: int, payload: RotateIn | None = None):
    """A new secret, shown once; the old one signs beside it for a day. 409 while an earlier
    rotation's window is open, unless force."""
    endpoint = _endpoint(request, Kind.ENVELOPE, endpoint_id)
    try:
        endpoint_secret_rotate(endpoint=endpoint, force=bool(payload and payload.force))
    except RotationOpen:
        raise ApiError(
            409,
            [
                "A previous rotation's secret is still valid: revoke it, wait for "
                "previous_secret_expires_at, or rotate with force"
            ],
        ) from None
    endpoint = WebhookEndpoint.objects.prefetch_related("subscriptions").get(pk=endpoint.pk)
    return json_answer({"webhook_endpoint": endpoint_json(endpoint, secret=True)})


@router.post("/webhook_endpoints/{int:endpoint_id}/revoke_previous_secret")
def endpoint_revoke_previous_secret(request, endpoint_id: int):
    endpoint = _endpoint(request, Kind.ENVELOPE, endpoint_id)
    endpoint_previous_secret_revoke(endpoint=endpoint)
    return json_answer({"webhook_endpoint": endpoint_json(endpoint)})


@router.delete("/webhook_endpoints/{int:endpoint_id}")
def endpoint_delete_view(request, endpoint_id: int):
    endpoint_delete(endpoint=_endpoint(request, Kind.ENVELOPE, endpoint_id))
    return HttpResponse(status=204)


# Delivery history -----------------------------------------------------------------------------


def delivery_json(delivery: WebhookDelivery, *, full: bool = False) -> dict:
    shape = {
        "id": delivery.id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempt_count": delivery.attempt_count,
        "event_count": len(delivery.events),
        "created_at": timestamp(delivery.created_at),
        "completed_at": timestamp(delivery.completed_at),
        "next_attempt_at": timestamp(delivery.next_attempt_at)
        if delivery.status in (WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING)
        else None,
    }
    if full:
        shape["events"] = delivery.events
        shape["attempts"] = [
            {
                "attempted_at": timestamp(attempt.at),
                "status_code": attempt.status_code,
                "response_body": attempt.response_excerpt,
                "duration_ms": attempt.duration_ms,
                "error": attempt.error or None,
            }
            for attempt in delivery.attempts.order_by("id")
        ]
    return shape


@router.get(
    "/webhook_endpoints/{int:endpoint_id}/deliveries",
    openapi_extra=paged(
        query_parameter("status", "pending, retrying, delivered or failed"),
        query_parameter("event_type", "an event type, e.g. subscriber.tag_added"),
    ),
)
def delivery_list(request, endpoint_id: int):
    """Newest first; ?status= and ?event_type= filter (an unknown value is a 422 naming it)."""
    endpoint = _endpoint(request, Kind.ENVELOPE, endpoint_id)
    problems: list[str] = []
    paging = page_request(request, list_name=f"webhook_deliveries:{endpoint.pk}", problems=problems)
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint)
    status = request.GET.get("status", "")
    if status and status not in WebhookDelivery.Status.values:
        problems.append(f"status {status} is not one of {', '.join(WebhookDelivery.Status.values)}")
    elif status:
        deliveries = deliveries.filter(status=status)
    event_type = request.GET.get("event_type", "")
    if event_type and event_type not in EventType.values:
        problems.append(f"event_type {event_type} is not a known event type")
    elif event_type:
        deliveries = deliveries.filter(event_type=event_type)
    refuse_if(problems)
    items, pagination = page_of(deliveries, paging)
    return json_answer(
        {"deliveries": [delivery_json(row) for row in items], "pagination": pagination}
    )


def _delivery(request, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    endpoint = _endpoint(request, Kind.ENVELOPE, endpoint_id)
    delivery = WebhookDelivery.objects.filter(endpoint=endpoint, pk=delivery_id).first()
    if delivery is None:
        raise Http404
    return delivery


@router.get("/webhook_endpoints/{int:endpoint_id}/deliveries/{int:delivery_id}")
def delivery_get(request, endpoint_id: int, delivery_id: int):
    delivery = _delivery(request, endpoint_id, delivery_id)
    return json_answer({"delivery": delivery_json(delivery, full=True)})


@router.post("/webhook_endpoints/{int:endpoint_id}/deliveries/{int:delivery_id}/resend")
def delivery_resend_view(request, endpoint_id: int, delivery_id: int):
    """A new delivery of the same events (the same event ids), due now."""
    resent = delivery_resend(delivery=_delivery(request, endpoint_id, delivery_id))
    return json_answer({"delivery": delivery_json(resent, full=True)}, 201)
