"""The account's webhook endpoints in the settings: list, create, edit, enable or disable,
delete; each endpoint's delivery log (newest first, by status) and a delivery's attempts, with
"Resend". Thin: the work is webhooks.services', shared with the API."""

from __future__ import annotations

import json

from django.contrib import messages
from django.db.models import OuterRef, Subquery
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from convertkit.paging import keyset_page, page_cursor
from convertkit.tenancy import account_required, get_for_account
from webhooks.forms import EndpointForm
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import (
    WebhookInputError,
    delivery_resend,
    endpoint_create,
    endpoint_delete,
    endpoint_update,
)

Status = WebhookDelivery.Status


def _endpoint(request, endpoint_id: int) -> WebhookEndpoint:
    return get_for_account(
        request, WebhookEndpoint.objects.prefetch_related("subscriptions"), pk=endpoint_id
    )


def _last_delivery(field: str) -> Subquery:
    return Subquery(
        WebhookDelivery.objects.filter(endpoint=OuterRef("pk")).order_by("-id").values(field)[:1]
    )


@account_required
def endpoint_list(request):
    endpoints = (
        WebhookEndpoint.objects.filter(account=request.account)
        .prefetch_related("subscriptions")
        .annotate(
            last_status=_last_delivery("status"), last_created_at=_last_delivery("created_at")
        )
    )
    page = keyset_page(
        endpoints, after=page_cursor(request, "after"), before=page_cursor(request, "before")
    )
    return render(request, "webhooks/endpoint_list.html", {"page": page})


def _endpoint_form_page(request, form: EndpointForm, endpoint: WebhookEndpoint | None, save):
    """The add and edit pages: `save(**cleaned_data)` is the service call; its refusals are
    shown on the form, each beside its field where its message names one."""
    if request.method == "POST" and form.is_valid():
        try:
            saved = save(**form.cleaned_data)
        except WebhookInputError as error:
            for message in error.errors:
                field = message.split(" ", 1)[0].split(":", 1)[0].removeprefix("target_")
                form.add_error(field if field in form.fields else None, message)
        else:
            messages.success(
                request,
                "Endpoint saved."
                if endpoint
                else "Endpoint added. Its signing secret is below: use it to check each delivery.",
            )
            return redirect("webhook_endpoint_detail", saved.pk)
    return render(
        request,
        "webhooks/endpoint_form.html",
        {"form": form, "endpoint": endpoint},
        status=400 if form.errors else 200,
    )


@account_required
def endpoint_create_page(request):
    return _endpoint_form_page(
        request,
        EndpointForm(request.POST or None),
        None,
        lambda **values: endpoint_create(account=request.account, **values),
    )


@account_required
def endpoint_edit(request, endpoint_id: int):
    endpoint = _endpoint(request, endpoint_id)
    initial = {
        "url": endpoint.url,
        "name": endpoint.name,
        "description": endpoint.description,
        "events": [s.event_type for s in endpoint.subscriptions.all()],
    }
    form = EndpointForm(
        request.POST or None,
        initial=initial,
        legacy=endpoint.kind == WebhookEndpoint.Kind.LEGACY,
    )
    return _endpoint_form_page(
        request, form, endpoint, lambda **values: endpoint_update(endpoint=endpoint, **values)
    )


@account_required
def endpoint_detail(request, endpoint_id: int):
    endpoint = _endpoint(request, endpoint_id)
    status = request.GET.get("status", "")
    deliveries = endpoint.deliveries.annotate(
        last_status_code=Subquery(
            WebhookAttempt.objects.filter(delivery=OuterRef("pk"))
            .order_by("-id")
            .values("status_code")[:1]
        )
    )
    if status in Status.values:
        deliveries = deliveries.filter(status=status)
    else:
        status = ""
    page = keyset_page(
        deliveries, after=page_cursor(request, "after"), before=page_cursor(request, "before")
    )
    return render(
        request,
        "webhooks/endpoint_detail.html",
        {
            "endpoint": endpoint,
            "page": page,
            "status": status,
            "statuses": Status.choices,
            "host": f"{request.scheme}://{request.get_host()}",
        },
    )


@account_required
@require_POST
def endpoint_enabled_set(request, endpoint_id: int):
    endpoint = _endpoint(request, endpoint_id)
    enabled = request.POST.get("enabled") == "1"
    endpoint_update(endpoint=endpoint, enabled=enabled)
    messages.success(
        request,
        "Endpoint enabled: deliveries held while it was off are sent now."
        if enabled
        else "Endpoint disabled: new deliveries wait until you enable it again.",
    )
    return redirect("webhook_endpoint_detail", endpoint.pk)


@account_required
def endpoint_delete_confirm(request, endpoint_id: int):
    endpoint = _endpoint(request, endpoint_id)
    if request.method == "POST":
        endpoint_delete(endpoint=endpoint)
        messages.success(request, f"Endpoint {endpoint.url} deleted.")
        return redirect("webhook_endpoint_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete the endpoint {endpoint.name or endpoint.url}?",
            "explanation": "It receives nothing more, and its delivery log is deleted with it. "
            "Deliveries not yet made are dropped.",
            "button": "Delete endpoint",
            "danger": True,
            "cancel_url": reverse("webhook_endpoint_detail", args=[endpoint.pk]),
        },
    )


def _delivery(request, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    return get_for_account(
        request,
        WebhookDelivery.objects.select_related("endpoint"),
        pk=delivery_id,
        endpoint_id=endpoint_id,
    )


@account_required
def delivery_detail(request, endpoint_id: int, delivery_id: int):
    delivery = _delivery(request, endpoint_id, delivery_id)
    # What was POSTed: a legacy webhook's one event's data, else Kit's envelope.
    if delivery.endpoint.kind == WebhookEndpoint.Kind.LEGACY and delivery.events:
        body = delivery.events[0]["data"]
    else:
        body = {"delivery_id": delivery.pk, "events": delivery.events}
    return render(
        request,
        "webhooks/delivery_detail.html",
        {
            "delivery": delivery,
            "endpoint": delivery.endpoint,
            "attempts": list(delivery.attempts.order_by("id")),
            "body": json.dumps(body, indent=2, ensure_ascii=False),
        },
    )


@account_required
@require_POST
def delivery_resend_page(request, endpoint_id: int, delivery_id: int):
    delivery = _delivery(request, endpoint_id, delivery_id)
    resent = delivery_resend(delivery=delivery)
    if delivery.endpoint.enabled:
        messages.success(request, f"Resending as delivery {resent.pk}, with the same events.")
    else:
        messages.success(
            request,
            f"Queued as delivery {resent.pk}: it is sent when the endpoint is enabled again.",
        )
    return redirect("webhook_delivery_detail", endpoint_id, resent.pk)
