"""Subscribers, tags, custom fields, and what suppression and history need.

Totals shown on list pages come from SubscriberCount and Tag.subscriber_count, kept exact by
statement-level triggers (migration 0002), so no page ever runs COUNT(*) over millions of rows.
"""

from __future__ import annotations

import hashlib

from django.contrib.postgres.indexes import OpClass
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower

from convertkit.models import Account, Job


def email_hash(email: str) -> str:
    """What suppression keeps of an erased address: enough to recognise it, not to read it."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


class Subscriber(models.Model):
    class State(models.TextChoices):
        UNCONFIRMED = "unconfirmed", "Unconfirmed"
        ACTIVE = "active", "Active"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"

    # States that must never be mailed again, nor reactivated by a form, an import or the API.
    SUPPRESSED_STATES = (State.UNSUBSCRIBED, State.BOUNCED, State.COMPLAINED)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    # Stored lower-cased (uniqueness is case-insensitive); the C collation lets the unique index
    # also serve prefix searches (LIKE 'ann%').
    email = models.CharField(max_length=254, db_collation="C")
    first_name = models.CharField(max_length=255, blank=True, default="")
    fields = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    source = models.CharField(max_length=255, blank=True, default="")
    consent_at = models.DateTimeField(null=True, blank=True)
    consent_method = models.CharField(max_length=255, blank=True, default="")
    consent_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "email"], name="subscriber_unique_email"),
            models.CheckConstraint(
                condition=Q(email=Lower("email")), name="subscriber_email_lower"
            ),
            models.CheckConstraint(
                condition=Q(
                    state__in=["unconfirmed", "active", "unsubscribed", "bounced", "complained"]
                ),
                name="subscriber_state_valid",
            ),
        ]
        indexes = [
            # Newest first, keyset-paged: WHERE account_id = ? AND id < ? ORDER BY id DESC.
            models.Index(fields=["account", "id"], name="subscriber_account_id"),
            # Only the minority states: "active" pages are read from subscriber_account_id (most
            # rows qualify), and an import of active subscribers skips this index entirely.
            models.Index(
                fields=["account", "state", "id"],
                name="subscriber_account_state",
                condition=~Q(state="active"),
            ),
            # Prefix search on first name: lower(first_name) LIKE 'ann%'.
            models.Index(
                F("account_id"),
                OpClass(Lower("first_name"), name="text_pattern_ops"),
                name="subscriber_first_name",
            ),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_suppressed(self) -> bool:
        return self.state in self.SUPPRESSED_STATES


class SubscriberCount(models.Model):
    """Exact number of subscribers per (account, state), maintained by database triggers."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    state = models.CharField(max_length=16, choices=Subscriber.State.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "state"], name="subscribercount_unique"),
        ]


class Tag(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    name = models.CharField(max_length=100)
    # Maintained by a trigger on Tagging; never written by application code.
    subscriber_count = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                F("account"), Lower("name"), name="tag_unique_name_per_account"
            ),
        ]
        indexes = [models.Index(fields=["account", "name"], name="tag_account_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tagging(models.Model):
    # No database constraint: the tag's own foreign key already ties a tagging to an account, and
    # a third check per row made tagging a million imported subscribers markedly slower.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, db_index=False, db_constraint=False
    )
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, db_index=False, related_name="taggings")
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, db_index=False, related_name="taggings"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Also the index that pages a tag's subscribers newest first.
            models.UniqueConstraint(fields=["tag", "subscriber"], name="tagging_unique"),
        ]
        indexes = [models.Index(fields=["subscriber"], name="tagging_subscriber")]


class CustomField(models.Model):
    """A field the account defines (company, city, ...); values live in Subscriber.fields[key]."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    key = models.SlugField(max_length=50)
    label = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="customfield_unique_key"),
        ]
        ordering = ["label"]

    def __str__(self) -> str:
        return self.label


class StateChange(models.Model):
    """History of a subscriber's state: who or what moved them, and when."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, db_index=False, related_name="state_changes"
    )
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["subscriber", "-id"], name="statechange_subscriber")]


class Suppression(models.Model):
    """An erased address, hashed, so that no import or form brings it back unasked."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    email_hash = models.CharField(max_length=64)
    reason = models.CharField(max_length=32, default="deleted")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "email_hash"], name="suppression_unique"),
        ]


class ImportFileChunk(models.Model):
    """An uploaded CSV, kept in PostgreSQL (the only state every host shares) until imported."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="file_chunks")
    seq = models.IntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="importfilechunk_unique"),
        ]
