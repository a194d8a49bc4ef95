"""API keys: created (the secret returned once), revoked, and checked on every API request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from api.models import ApiKey
from convertkit.models import Account, User

KEY_PREFIX = "kit_"
PREFIX_SHOWN = len(KEY_PREFIX) + 8
LAST_USED_PRECISION = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, account: Account, name: str, created_by: User | None) -> tuple[ApiKey, str]:
    """A new key for the account and its secret (256 random bits), which is not stored: only
    its digest is, so the secret must be shown to the creator now or never."""
    name = " ".join(name.split())[:100]
    if not name:
        raise ValueError("A key needs a name")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        account=account,
        name=name,
        prefix=secret[:PREFIX_SHOWN],
        key_hash=_digest(secret),
        created_by=created_by,
    )
    return api_key, secret


def api_key_revoke(*, api_key: ApiKey) -> bool:
    """Revokes the key (it answers 401 from now on); returns whether it was still live."""
    now = timezone.now()
    revoked = bool(ApiKey.objects.filter(pk=api_key.pk, revoked_at=None).update(revoked_at=now))
    if revoked:
        api_key.revoked_at = now
    return revoked


def api_key_authenticate(secret: str | None) -> ApiKey | None:
    """The live key whose secret this is, with its account, or None. Its last_used_at is
    written when it is a minute old or more, by a conditional UPDATE, so a busy key costs one
    write a minute, not one per request."""
    if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    digest = _digest(secret)
    api_key = (
        ApiKey.objects.select_related("account").filter(key_hash=digest, revoked_at=None).first()
    )
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_PRECISION:
        ApiKey.objects.filter(pk=api_key.pk).filter(
            Q(last_used_at=None) | Q(last_used_at__lte=now - LAST_USED_PRECISION)
        ).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
