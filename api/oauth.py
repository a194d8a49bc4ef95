"""OAuth 2.0 for third-party apps, with django-oauth-toolkit: Kit's /v4/oauth/authorize (the
consent page), /v4/oauth/token and /v4/oauth/revoke.

A token reaches one account: the creator's current account when they approved the app. The
consent view hands it to the validator with the other credentials; the validator stores it
beside the authorization code (OAuthGrantAccount), copies it to the access token the code is
exchanged for (OAuthTokenAccount), and from token to token on each refresh."""

from __future__ import annotations

import json
import time

from django.db import transaction
from django.http import HttpResponseForbidden, JsonResponse, QueryDict
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.models import get_application_model, revoke_access_token
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.views import AuthorizationView, RevokeTokenView, TokenView
from oauthlib.oauth2 import AccessDeniedError

from api.models import OAuthGrantAccount, OAuthTokenAccount


class AccountOAuth2Validator(OAuth2Validator):
    """DOT's validator, carrying the account from the consent page to every token."""

    def _create_authorization_code(self, request, code, expires=None):
        grant = super()._create_authorization_code(request, code, expires)
        OAuthGrantAccount.objects.create(grant=grant, account_id=request.account_id)
        return grant

    def validate_code(self, client_id, code, client, request, *args, **kwargs):
        if not super().validate_code(client_id, code, client, request, *args, **kwargs):
            return False
        request.account_id = (
            OAuthGrantAccount.objects.filter(grant__code=code, grant__application=client)
            .values_list("account_id", flat=True)
            .first()
        )
        return request.account_id is not None

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            return False
        request.account_id = (
            OAuthTokenAccount.objects.filter(
                access_token_id=request.refresh_token_instance.access_token_id
            )
            .values_list("account_id", flat=True)
            .first()
        )
        return request.account_id is not None

    def _create_access_token(self, expires, request, token, source_refresh_token=None):
        access_token = super()._create_access_token(expires, request, token, source_refresh_token)
        OAuthTokenAccount.objects.create(access_token=access_token, account_id=request.account_id)
        return access_token


class ConsentView(AuthorizationView):
    """The consent page: the app's name, the account it will reach and the scopes, always asked
    (a creator with several accounts approves each one)."""

    template_name = "api/oauth_authorize.html"

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and not request.account:
            return HttpResponseForbidden("Create an account before connecting an app to it.")
        if "approval_prompt" in request.GET:
            request.GET = request.GET.copy()
            del request.GET["approval_prompt"]
        return super().dispatch(request, *args, **kwargs)

    def create_authorization_response(self, request, scopes, credentials, allow):
        # The account the page showed: a creator who switched accounts in another tab since
        # must see the page again rather than connect an account they were not shown.
        shown = request.POST.get("account_id")
        if shown != str(request.account.id):
            raise OAuthToolkitError(
                error=AccessDeniedError(state=credentials.get("state")),
                redirect_uri=credentials["redirect_uri"],
            )
        credentials["account_id"] = request.account.id
        with transaction.atomic():
            return super().create_authorization_response(request, scopes, credentials, allow)


def _json_body_as_form(request) -> bool:
    """Kit's own client libraries post JSON to /oauth/token; DOT reads form fields (RFC 6749).
    A JSON object body is handed to DOT as the form it stands for; False if it is not one."""
    if request.content_type != "application/json":
        return True
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    form = QueryDict(mutable=True)
    for key, value in data.items():
        if isinstance(value, str | int):
            form[key] = str(value)
    request.POST = form
    return True


def _malformed():
    return JsonResponse(
        {"error": "invalid_request", "error_description": "The body is not a JSON object"},
        status=400,
    )


class KitTokenView(TokenView):
    """DOT's token endpoint, taking JSON as well as a form, with the `created_at` (Unix time)
    Kit adds to its answer."""

    def post(self, request, *args, **kwargs):
        if not _json_body_as_form(request):
            return _malformed()
        return super().post(request, *args, **kwargs)

    def create_token_response(self, request):
        url, headers, body, status = super().create_token_response(request)
        if status == 200:
            answer = json.loads(body)
            answer["created_at"] = int(time.time())
            body = json.dumps(answer)
        return url, headers, body, status


class KitRevokeTokenView(RevokeTokenView):
    """DOT's revocation endpoint (RFC 7009), taking JSON as well as a form."""

    def post(self, request, *args, **kwargs):
        if not _json_body_as_form(request):
            return _malformed()
        return super().post(request, *args, **kwargs)


def oauth_application_create(
    *, name: str, redirect_uris: list[str], confidential: bool = True
) -> tuple[object, str]:
    """Registers a third-party app (authorization code grant, PKCE required): the Application
    and its client secret in clear, which is stored hashed and cannot be read back."""
    from oauth2_provider.generators import generate_client_secret

    Application = get_application_model()
    secret = generate_client_secret()
    application = Application(
        name=name,
        redirect_uris=" ".join(redirect_uris),
        client_type=Application.CLIENT_CONFIDENTIAL if confidential else Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        client_secret=secret,
        algorithm="",
    )
    application.full_clean()
    application.save()
    return application, secret


def oauth_connections(*, account) -> list[dict]:
    """The apps holding a live token for the account, for the settings page: each app once,
    with when it was last connected."""
    apps: dict[int, dict] = {}
    links = (
        OAuthTokenAccount.objects.filter(account=account)
        .select_related("access_token__application")
        .order_by("-access_token__created")
    )
    for link in links:
        application = link.access_token.application
        apps.setdefault(
            application.id, {"application": application, "since": link.access_token.created}
        )
    return list(apps.values())


def oauth_disconnect(*, account, application_id: int) -> int:
    """Revokes every token of the app that reaches the account (and its refresh token), as the
    app's own call to /v4/oauth/revoke would; the number revoked. The app's tokens for other
    accounts are untouched."""
    links = OAuthTokenAccount.objects.filter(
        account=account, access_token__application_id=application_id
    ).select_related("access_token")
    revoked = 0
    with transaction.atomic():
        for link in links:
            revoke_access_token(link.access_token)
            revoked += 1
    return revoked
