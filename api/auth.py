"""Who is calling: the key in the X-Kit-Api-Key header or an OAuth access token in
Authorization: Bearer, and the credential's rate limit."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.utils import timezone
from ninja.security import APIKeyHeader, HttpBearer
from oauth2_provider.models import AccessToken
from oauth2_provider.oauth2_backends import get_oauthlib_core

from api.errors import ACCESS_TOKEN_EXPIRED, RETRY_LATER, ApiError
from api.keys import api_key_authenticate
from api.models import OAuthTokenAccount
from convertkit.ratelimit import rate_limits_hit


def credential_admit(request, *, kind: str, credential_id: int, limit: str, account) -> None:
    """Counts one request against `limit` (COUNT/SECONDS) for this credential (an API key, an
    OAuth token), 429 with Retry-After past it; then the request acts as `account`. Every
    credential of /v4/ and /v3/ passes through here."""
    exceeded = rate_limits_hit([(kind, str(credential_id), limit)])
    if exceeded:
        raise ApiError(429, [RETRY_LATER], {"Retry-After": str(exceeded.retry_after)})
    request.account = account


def api_key_admit(request, api_key) -> None:
    """An API key's request, on /v4/ or /v3/: one budget per key (API_RATE_LIMIT)."""
    credential_admit(
        request,
        kind="api-key",
        credential_id=api_key.pk,
        limit=settings.API_RATE_LIMIT,
        account=api_key.account,
    )


class KitApiKey(APIKeyHeader):
    """X-Kit-Api-Key: a live key sets request.account to its account (every lookup then goes
    through convertkit.tenancy, so another account's ids are 404s) and counts one request
    against API_RATE_LIMIT for that key; past it, 429 with Retry-After."""

    param_name = "X-Kit-Api-Key"

    def authenticate(self, request, key):
        api_key = api_key_authenticate(key)
        if api_key is None:
            return None
        api_key_admit(request, api_key)
        return api_key


class KitOAuthToken(HttpBearer):
    """Authorization: Bearer <OAuth access token> (api.oauth): a live token sets request.account
    to the account it was granted for, and counts one request against API_OAUTH_RATE_LIMIT for
    that token. An expired or revoked token is a 401, as a missing one is."""

    def authenticate(self, request, token):
        valid, oauth_request = get_oauthlib_core().verify_request(request, scopes=["public"])
        if not valid:
            # Kit's own wording, on which its client libraries refresh the token and retry.
            expired = AccessToken.objects.filter(
                token_checksum=hashlib.sha256(token.encode()).hexdigest(),
                expires__lte=timezone.now(),
            )
            if expired.exists():
                raise ApiError(401, [ACCESS_TOKEN_EXPIRED])
            return None
        access_token = oauth_request.access_token
        link = (
            OAuthTokenAccount.objects.select_related("account")
            # Only while the creator who approved the app is still a member of the account.
            .filter(access_token=access_token, account__memberships__user_id=access_token.user_id)
            .first()
        )
        if link is None:
            return None
        credential_admit(
            request,
            kind="oauth-token",
            credential_id=access_token.pk,
            limit=settings.API_OAUTH_RATE_LIMIT,
            account=link.account,
        )
        return access_token
