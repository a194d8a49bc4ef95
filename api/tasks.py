from __future__ import annotations

from celery import shared_task


@shared_task(name="api.oauth_tokens_clear", queue="default", ignore_result=True)
def oauth_tokens_clear() -> None:
    """Deletes what OAuth left behind (django-oauth-toolkit's clear_expired, as its `cleartokens`
    command): expired codes, refresh tokens expired past OAUTH_REFRESH_TOKEN_SECONDS or revoked,
    and expired access tokens with no refresh token. Their account links go with them."""
    from oauth2_provider.models import clear_expired

    clear_expired()
