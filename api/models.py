from __future__ import annotations

from django.conf import settings
from django.db import models

from convertkit.models import Account, Job


class ApiKey(models.Model):
    """A credential for the REST API, reaching one account. Only a SHA-256 digest of the secret
    is kept: the key is shown once, when it is created, and cannot be read back."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # The key's first characters, shown in the list so a creator can tell their keys apart.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Written at most once a minute (api.keys.api_key_authenticate), not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "id"], name="apikey_account_id")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class OAuthGrantAccount(models.Model):
    """The account an authorization code was granted for: the creator's current account when
    they approved the app on the consent page."""

    grant = models.OneToOneField(
        settings.OAUTH2_PROVIDER_GRANT_MODEL, on_delete=models.CASCADE, related_name="account_link"
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")


class OAuthTokenAccount(models.Model):
    """The account an OAuth access token reaches (and the only one): copied from its grant, then
    from token to token on each refresh."""

    access_token = models.OneToOneField(
        settings.OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL,
        on_delete=models.CASCADE,
        related_name="account_link",
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")


class BulkBatch(models.Model):
    """One batch of a bulk API request's items, as it came, and what applying it gave (Kit's
    result shapes and failures): the request's Job is done when every batch has a result. The
    batches go once the result has been posted to the callback URL."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="bulk_batches")
    seq = models.IntegerField()
    # The items as JSON text: only ever read back whole, and text is stored many times faster
    # than jsonb, which PostgreSQL would parse on the way in.
    items = models.TextField()
    result = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="bulkbatch_unique_seq"),
        ]
