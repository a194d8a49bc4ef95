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


class KitApiKey(APIKeyHeader):
    """X-Kit-Api-Key: a live key sets request.account to its account (every lookup then goes
    through convertkit.tenancy, so another account's ids are 404s) and counts one request
    against API_RATE_LIMIT for that key; past it, 429 with Retry-After."""

    param_name = "X-Kit-Api-Key"

    def authenticate(self, request, key):
        api_key = api_key_authenticate(key)
        if api_key is None:
            return None
        exceeded = rate_limits_hit([("api-key", str(api_key.pk), settings.API_RATE_LIMIT)])
        if exceeded:
            raise ApiError(429, [RETRY_LATER], {"Retry-After": str(exceeded.retry_after)})
        request.account = api_key.account
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
        exceeded = rate_limits_hit(
            [("oauth-token", str(access_token.pk), settings.API_OAUTH_RATE_LIMIT)]
        )
        if exceeded:
            raise ApiError(429, [RETRY_LATER], {"Retry-After": str(exceeded.retry_after)})
        request.account = link.account
        return access_token
