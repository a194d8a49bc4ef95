"""Creators, their accounts, and the background jobs they start."""

from __future__ import annotations

import zoneinfo
from functools import cache

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra):
        if not email:
            raise ValueError("A user needs an email address")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractUser):
    """A creator who logs in. Identified by email; works in one or more accounts."""

    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email


@cache
def time_zone_names() -> frozenset[str]:
    """The IANA zone names (read once per process: listing them walks the zone files)."""
    return frozenset(zoneinfo.available_timezones())


def is_time_zone(value: str) -> bool:
    """Whether `value` is an IANA zone name (Europe/Paris), as browsers and imports give them."""
    return value in time_zone_names()


def validate_time_zone(value: str) -> None:
    if not is_time_zone(value):
        raise ValidationError(f"“{value}” is not a time zone name such as Europe/Paris.")


class Account(models.Model):
    """The tenant: every subscriber, tag, form and broadcast belongs to exactly one account."""

    name = models.CharField(max_length=120)
    sender_name = models.CharField(max_length=120, blank=True)
    sender_email = models.EmailField(blank=True)
    # Required by CAN-SPAM in every commercial email's footer; a send is refused without it.
    postal_address = models.TextField(max_length=500, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    # The public archive's handle (/p/<public_slug>/): lower-case letters, digits and hyphens,
    # given from the name when the account first publishes (account_public_slug_ensure), then
    # the creator's to change (convertkit.forms.PUBLIC_SLUG_RE).
    public_slug = models.CharField(max_length=50, unique=True, null=True, blank=True)
    # The signup form at the bottom of the archive's pages (subscribers.Form). A plain id, as
    # Broadcast.segment_id: a deleted or archived form, or another account's, shows no form.
    archive_form_id = models.BigIntegerField(null=True, blank=True)
    # The email template new emails start with: a built-in's key or the id of one of the
    # account's own (content.models.EmailTemplate.key); deleting that one sets it back to
    # Classic.
    default_email_template = models.CharField(max_length=24, default="classic")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    @property
    def is_ready_to_send(self) -> bool:
        return bool(self.postal_address.strip() and self.sender_email)


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "account"], name="membership_unique_user_account"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.account} ({self.role})"


class Job(models.Model):
    """A background job a creator started (an import, a bulk action): what the progress bar reads.

    `processed` counts rows handled so far out of `total` (None while unknown); `summary` holds the
    figures shown when the job ends (created, updated, skipped, ...). Row-level problems are JobErrors.
    """

    class Kind(models.TextChoices):
        IMPORT = "import", "Import"
        BULK_TAG = "bulk_tag", "Tag subscribers"
        BULK_UNTAG = "bulk_untag", "Remove tag"
        BULK_SEQUENCE = "bulk_sequence", "Add to a sequence"
        BULK_UNSUBSCRIBE = "bulk_unsubscribe", "Unsubscribe subscribers"
        BULK_DELETE = "bulk_delete", "Delete subscribers"
        # A request to one of the API's /v4/bulk/ endpoints (api.bulk_jobs).
        BULK_API = "bulk_api", "API bulk request"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    title = models.CharField(max_length=255)
    params = models.JSONField(default=dict, blank=True)
    total = models.BigIntegerField(null=True, blank=True)
    processed = models.BigIntegerField(default=0)
    error_count = models.BigIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at"], name="job_account_recent")]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["queued", "running", "done", "failed"]),
                name="job_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)

    @property
    def awaits_creator(self) -> bool:
        """An uploaded import whose columns the creator has not mapped yet: no worker has it."""
        return (
            self.kind == self.Kind.IMPORT
            and self.state == self.State.QUEUED
            and not self.params.get("mapping")
        )

    @property
    def is_progressing(self) -> bool:
        """Queued for or running in a worker: the progress bar keeps polling."""
        return not self.is_finished and not self.awaits_creator

    @property
    def percent(self) -> int:
        if self.state == self.State.DONE:
            return 100
        if not self.total:
            return 0
        return min(99, int(self.processed * 100 / self.total))


class JobError(models.Model):
    """One row-level problem of a job (an import line that was rejected): the first ones are
    shown on the job's page, all of them are downloadable as CSV."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="errors")
    line = models.BigIntegerField(null=True, blank=True)
    # The file's name for the column at fault ("" when the problem is the row as a whole).
    column_name = models.TextField(blank=True, default="")
    value = models.TextField(blank=True)
    message = models.TextField()

    class Meta:
        indexes = [models.Index(fields=["job", "line"], name="joberror_job_line")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"
