"""Subscribers, tags, custom fields, and what suppression and history need.

Totals shown on list pages come from SubscriberCount and Tag.subscriber_count, kept exact by
statement-level triggers (migration 0002), so no page ever runs COUNT(*) over millions of rows.
"""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.postgres.fields import ArrayField
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
    # The subscriber's own IANA time zone where known (their browser's at signup, an import
    # column, or the "time_zone" custom field); "" when unknown.
    time_zone = models.CharField(max_length=64, blank=True, default="", db_default="")
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
    """Exact number of subscribers per (account, state), maintained by database triggers: the
    sum of the key's shards. A key is split in 16 rows, one chosen by the writing connection
    (migration 0009), so that signups at once into one account do not wait for each other's
    commit on one counter row; a shard alone may be negative."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    state = models.CharField(max_length=16, choices=Subscriber.State.choices)
    shard = models.SmallIntegerField(default=0, db_default=0)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "state", "shard"], name="subscribercount_unique_shard"
            ),
        ]


class ListGrowth(models.Model):
    """Subscribers gained and lost per account and hour (UTC), kept by statement-level triggers
    (migration 0006) so the dashboard's growth chart never counts subscribers. By the hour, so
    the dashboard can sum them into days of the account's own time zone.

    Gained: added in a subscribed state (active, unconfirmed), or back from unsubscribed. Lost:
    moved from a subscribed state to unsubscribed, bounced or complained. Deleting a subscriber
    leaves the history as it was."""

    # No database constraint, as on Tagging: set-based account erasure (the benchmarks) deletes
    # accounts without going through the ORM.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, db_index=False, db_constraint=False
    )
    hour = models.DateTimeField()
    # As SubscriberCount's: readers sum an hour's shards.
    shard = models.SmallIntegerField(default=0, db_default=0)
    subscribed = models.IntegerField(default=0)
    unsubscribed = models.IntegerField(default=0)
    bounced = models.IntegerField(default=0)
    complained = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "hour", "shard"], name="listgrowth_unique_hour_shard"
            ),
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
    """An erased address, hashed, so that no import or form brings it back unasked.

    `reason` keeps why mail stopped when that matters after erasure: "bounced" and "complained"
    addresses stay unmailable (no form may even send them a confirmation); "deleted" ones may
    come back by confirming a signup.
    """

    UNMAILABLE_REASONS = ("bounced", "complained")

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


def form_uid_new() -> str:
    """The public name of a form in its URLs: random, so forms cannot be enumerated."""
    return secrets.token_hex(6)


class Form(models.Model):
    """A signup form: its hosted page, its embed snippet, and what a signup through it does.

    Forms are archived, never deleted, so the consent records (Signup) that name a form and its
    wording version stay demonstrable.
    """

    class Style(models.TextChoices):
        INLINE = "inline", "Inline"
        MODAL = "modal", "Modal (pops up)"
        SLIDEIN = "slidein", "Slide-in (from the corner)"

    class SuccessAction(models.TextChoices):
        MESSAGE = "message", "Show a message"
        REDIRECT = "redirect", "Redirect to a URL"

    # The fields a form may ask for besides custom fields; email is always first and required.
    STANDARD_FIELDS = ("email", "first_name")

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    uid = models.CharField(max_length=16, unique=True, default=form_uid_new, editable=False)
    name = models.CharField(max_length=100)
    # [{"key": "email", "label": "Email address", "required": true}, {"key": "first_name", ...},
    #  {"key": "<CustomField.key>", ...}] in display order.
    fields = models.JSONField(default=list)
    headline = models.CharField(max_length=200, blank=True, default="Join the newsletter")
    description = models.TextField(
        max_length=2000, blank=True, default="Subscribe to get our latest posts by email."
    )
    button_text = models.CharField(max_length=60, default="Subscribe")
    consent_text = models.CharField(
        max_length=500,
        blank=True,
        default="We respect your privacy. Unsubscribe at any time.",
    )
    style = models.CharField(max_length=16, choices=Style.choices, default=Style.INLINE)
    success_action = models.CharField(
        max_length=16, choices=SuccessAction.choices, default=SuccessAction.MESSAGE
    )
    success_message = models.CharField(
        max_length=500, blank=True, default="Thanks! Now check your email to confirm."
    )
    redirect_url = models.URLField(max_length=1000, blank=True, default="")
    tags = models.ManyToManyField(Tag, blank=True, related_name="forms")
    double_opt_in = models.BooleanField(default=True)
    confirmation_subject = models.CharField(
        max_length=200, default="Please confirm your subscription"
    )
    confirmation_body = models.TextField(
        max_length=5000,
        default=(
            "Hi {{ first_name }},\n\n"
            "Please confirm that you want to receive our emails by following this link:\n\n"
            "{{ confirmation_url }}\n\n"
            "If you did not sign up, ignore this email and you will hear nothing more from us."
        ),
    )
    incentive_url = models.URLField(max_length=1000, blank=True, default="")
    incentive_subject = models.CharField(max_length=200, default="Here is your download")
    incentive_body = models.TextField(
        max_length=5000,
        default="Thanks for confirming! Here is what we promised:\n\n{{ incentive_url }}",
    )
    # Bumped whenever the words a subscriber agrees to change (headline, description, button,
    # consent text); FormWording keeps each version's text.
    wording_version = models.PositiveIntegerField(default=1)
    # Counters for the form list: views flushed from Redis by a periodic task, signups and
    # subscribers gained updated in the signup's own transaction.
    view_count = models.BigIntegerField(default=0)
    signup_count = models.BigIntegerField(default=0)
    subscriber_count = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The form list: the account's live forms, newest first, keyset-paged.
            models.Index(
                fields=["account", "-id"],
                name="form_account_live",
                condition=Q(archived_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_incentive(self) -> bool:
        if self.incentive_url:
            return True
        if Form.incentive_file.is_cached(self):
            return hasattr(self, "incentive_file")
        # Not `hasattr`, which would load the file's bytes (up to 20 MB) to answer yes or no.
        return FormIncentiveFile.objects.filter(form_id=self.pk).exists()


class FormWording(models.Model):
    """The exact words a form showed in one wording version: what a consent record points to."""

    form = models.ForeignKey(Form, on_delete=models.CASCADE, related_name="wordings")
    version = models.PositiveIntegerField()
    headline = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    button_text = models.CharField(max_length=60)
    consent_text = models.CharField(max_length=500, blank=True)
    double_opt_in = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["form", "version"], name="formwording_unique"),
        ]


class FormIncentiveFile(models.Model):
    """An uploaded incentive (a PDF, an ebook), kept in PostgreSQL so every web host can serve it."""

    form = models.OneToOneField(Form, on_delete=models.CASCADE, related_name="incentive_file")
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)


class Signup(models.Model):
    """One signup through a form: the consent record (GDPR Art. 7) and the pending confirmation.

    What was submitted (name, custom fields) waits in `data` until it may be applied: at once for a
    new or unconfirmed subscriber, only on confirmation for one who had unsubscribed.
    """

    class Outcome(models.TextChoices):
        PENDING = "pending", "Waiting for confirmation"
        CONFIRMED = "confirmed", "Confirmed by email (double opt-in)"
        SUBSCRIBED = "subscribed", "Subscribed (single opt-in)"
        TAGGED = "tagged", "Already subscribed: tags added"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    form = models.ForeignKey(Form, on_delete=models.PROTECT, related_name="signups")
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, db_index=False, related_name="signups"
    )
    wording_version = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True, default="")
    page_url = models.CharField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # When this signup's email (confirmation or incentive) was queued; none when the hourly cap
    # held it back or there was nothing to send.
    email_sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["subscriber", "-id"], name="signup_subscriber"),
            models.Index(fields=["form", "-id"], name="signup_form"),
        ]


class TagMatch(models.TextChoices):
    """How an audience's "tagged with" list matches (broadcasts and segments alike)."""

    ANY = "any", "any of"
    ALL = "all", "all of"


class Engagement(models.TextChoices):
    """An audience's engagement filter: opened or clicked lately, or not (broadcasts and
    segments alike)."""

    ANYONE = "", "Anyone"
    ENGAGED = "engaged", "Opened or clicked"
    NOT_ENGAGED = "not_engaged", "Has not opened or clicked"


# The longest "in the last N days": longer than any list's history, far from overflowing a date.
MAX_ENGAGEMENT_DAYS = 3650
# A check constraint of both audiences: engagement and its days go together.
ENGAGEMENT_VALID = Q(engagement="", engagement_days__isnull=True) | Q(
    engagement__in=["engaged", "not_engaged"], engagement_days__gte=1
)


class Segment(models.Model):
    """A saved, named audience filter (Kit's Segment): the subscribers matching every one of
    its conditions, worked out each time it is used, never stored as a list of members.

    Its conditions are a broadcast's audience filters (tags, engagement, "did not open") plus
    "joined through any of these forms" and conditions on custom fields; broadcasts/audience.py
    turns them into SQL. Tags, forms and the broadcast are plain ids, as on Broadcast: one that is
    deleted (or of another account) makes its condition match nobody, where a foreign key set to
    NULL, or an id dropped, would widen the segment.
    """

    class FieldOp(models.TextChoices):
        EQUALS = "equals", "is"
        CONTAINS = "contains", "contains"
        IS_SET = "is_set", "is set"
        BEFORE = "before", "is before"
        AFTER = "after", "is after"

    # The operators that compare dates (YYYY-MM-DD) rather than text.
    DATE_OPS = (FieldOp.BEFORE, FieldOp.AFTER)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    name = models.CharField(max_length=100)
    include_tag_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    include_match = models.CharField(max_length=3, choices=TagMatch.choices, default=TagMatch.ANY)
    exclude_tag_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # Subscribed through any of these forms (a signup that was confirmed, or needed no
    # confirmation).
    form_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # [{"key": "<CustomField.key>", "op": "<FieldOp>", "value": "..."}], all of them to match;
    # checked by subscribers.segments.filters.field_conditions_clean before they are saved.
    field_conditions = models.JSONField(default=list, blank=True)
    engagement = models.CharField(
        max_length=16, choices=Engagement.choices, blank=True, default=Engagement.ANYONE
    )
    engagement_days = models.PositiveIntegerField(null=True, blank=True)
    not_opened_broadcast_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                F("account"), Lower("name"), name="segment_unique_name_per_account"
            ),
            models.CheckConstraint(condition=ENGAGEMENT_VALID, name="segment_engagement_valid"),
        ]
        # The segment list: newest first, keyset-paged.
        indexes = [models.Index(fields=["account", "-id"], name="segment_account_id")]

    def __str__(self) -> str:
        return self.name
