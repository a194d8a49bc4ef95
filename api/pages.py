"""The creator's API keys page in the settings: list, create (the key shown once), revoke; and
the API's reference page, public as Kit's is (what it documents is public at /v4/openapi.json)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse

from api.forms import ApiKeyForm
from api.keys import api_key_create, api_key_revoke
from api.models import ApiKey
from api.oauth import oauth_connections, oauth_disconnect
from api.reference import api_reference
from convertkit.tenancy import account_required, get_for_account

# The new key's secret, between the POST that made it and the page that shows it, once.
SHOWN_KEY_SESSION = "api_key_shown"


@account_required
def api_key_list(request):
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        api_key, secret = api_key_create(
            account=request.account, name=form.cleaned_data["name"], created_by=request.user
        )
        request.session[SHOWN_KEY_SESSION] = {"id": api_key.id, "secret": secret}
        return redirect("api_key_list")
    shown = request.session.pop(SHOWN_KEY_SESSION, None)
    keys = ApiKey.objects.filter(account=request.account).order_by("revoked_at", "-id")
    return render(
        request,
        "api/api_key_list.html",
        {
            "form": form,
            "keys": keys,
            "new_key": next((key for key in keys if shown and key.id == shown["id"]), None),
            "new_secret": shown["secret"] if shown else "",
            "connections": oauth_connections(account=request.account),
        },
        status=400 if form.errors else 200,
    )


@account_required
def api_key_revoke_confirm(request, key_id: int):
    api_key = get_for_account(request, ApiKey, pk=key_id, revoked_at=None)
    if request.method == "POST":
        api_key_revoke(api_key=api_key)
        messages.success(request, f"Key “{api_key.name}” revoked. Requests with it now fail.")
        return redirect("api_key_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Revoke the key “{api_key.name}”?",
            "explanation": f"Whatever uses the key {api_key.prefix}… can no longer reach your "
            "account. This cannot be undone: a new key would have to be created and given to it.",
            "button": "Revoke key",
            "danger": True,
            "cancel_url": reverse("api_key_list"),
        },
    )


@account_required
def oauth_app_disconnect(request, application_id: int):
    """Disconnects an app connected over OAuth: its tokens for this account stop working."""
    connection = next(
        (
            found
            for found in oauth_connections(account=request.account)
            if found["application"].id == application_id
        ),
        None,
    )
    if connection is None:
        raise Http404
    name = connection["application"].name
    if request.method == "POST":
        oauth_disconnect(account=request.account, application_id=application_id)
        messages.success(request, f"“{name}” disconnected. Its requests now fail.")
        return redirect("api_key_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Disconnect “{name}”?",
            "explanation": f"{name} can no longer reach your account. To use it again, connect "
            "it again from the app.",
            "button": "Disconnect",
            "danger": True,
            "cancel_url": reverse("api_key_list"),
        },
    )


def api_reference_page(request):
    """Every operation of /v4/, grouped by resource, from the generated OpenAPI document."""
    return render(
        request,
        "api/api_reference.html",
        {
            "resources": api_reference(),
            "base_url": f"{request.scheme}://{request.get_host()}",
        },
    )
