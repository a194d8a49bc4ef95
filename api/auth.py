"""Who is calling: the key in the X-Kit-Api-Key header, and its rate limit."""

from __future__ import annotations

from django.conf import settings
from ninja.security import APIKeyHeader

from api.errors import RETRY_LATER, ApiError
from api.keys import api_key_authenticate
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
