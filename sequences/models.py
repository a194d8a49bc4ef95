"""Sequences: email courses that send themselves. See "Sequences" in docs/architecture.md.

A Sequence holds its emails in order (SequenceEmail.sort_key) and one Subscription per
(sequence, subscriber): where the subscriber stands (the sort key of the last email they passed)
and when their next email is due. Each email's content, frozen templates, links and counters
live in a Broadcast row of kind "sequence_email" (its `message`), so a sequence email is sent by
the same pipeline, Delivery rows, tracking and reports as a broadcast.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from broadcasts.models import Broadcast
from convertkit.models import Account, validate_time_zone
from subscribers.models import Form, Subscriber, Tag

# Monday is 0, as datetime.weekday() counts.
WEEKDAYS = ((0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun"))
ALL_DAYS = [day for day, _ in WEEKDAYS]
# The longest delay an email may have after the previous one.
MAX_DELAY_DAYS = 365


def all_days() -> list[int]:
    return list(ALL_DAYS)


class Sequence(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    name = models.CharField(max_length=255)
    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    # The days emails may go out on; none at all holds everyone, as a pause does (as in Kit).
    send_days = ArrayField(models.SmallIntegerField(), default=all_days, blank=True)
    send_hour = models.SmallIntegerField(
        default=9, validators=[MinValueValidator(0), MaxValueValidator(23)]
    )
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    # Send at send_hour in each subscriber's own zone where it is known (Subscriber.time_zone).
    subscriber_time_zone = models.BooleanField(default=False)
    # Adding a subscriber who completed the sequence starts them again at the first email.
    repeat = models.BooleanField(default=False)
    # Evergreen (Kit's "hold"): whoever has received every published email stays active and
    # gets the emails published later, instead of completing.
    hold = models.BooleanField(default=False, db_default=False)
    # Subscribers with any of these tags, in any of these segments or in any of these other
    # sequences (still active there) get nothing while excluded, and move past what falls due
    # meanwhile. Plain ids, as a broadcast's tags: a deleted one excludes nobody.
    exclude_tag_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    exclude_segment_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    exclude_sequence_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-id"], name="sequence_account_id")]
        constraints = [
            models.CheckConstraint(
                condition=Q(send_hour__gte=0, send_hour__lte=23), name="sequence_send_hour_valid"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["active", "paused"]), name="sequence_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_running(self) -> bool:
        """Whether anyone moves: active, with at least one send day."""
        return self.state == self.State.ACTIVE and bool(self.send_days)

    @property
    def has_exclusions(self) -> bool:
        return bool(self.exclude_tag_ids or self.exclude_segment_ids or self.exclude_sequence_ids)


class SequenceEmail(models.Model):
    class DelayUnit(models.TextChoices):
        DAYS = "days", "days"
        HOURS = "hours", "hours"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="emails")
    # Subject, preview text, body, frozen templates, links and counters: the pipeline's message.
    message = models.OneToOneField(
        Broadcast, on_delete=models.PROTECT, related_name="sequence_email"
    )
    # Order in the sequence. Subscribers remember the key of the last email they passed, so an
    # email inserted later (a key between two others) reaches those who have not passed its
    # place yet, never those who have; keys are never reused.
    sort_key = models.FloatField()
    delay_amount = models.PositiveIntegerField(default=0)
    delay_unit = models.CharField(max_length=5, choices=DelayUnit.choices, default=DelayUnit.DAYS)
    # The days this email may go out on, instead of the sequence's (None: the sequence's).
    send_days = ArrayField(models.SmallIntegerField(), null=True, blank=True)
    published = models.BooleanField(default=False)
    # Deleted emails stay (their deliveries and reports stay); the engine passes over them.
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sequence", "sort_key"], name="sequence_email_order"),
            models.CheckConstraint(
                condition=Q(delay_unit="days", delay_amount__lte=MAX_DELAY_DAYS)
                | Q(delay_unit="hours", delay_amount__lte=MAX_DELAY_DAYS * 24),
                name="sequence_email_delay_valid",
            ),
        ]
        ordering = ["sort_key"]

    def __str__(self) -> str:
        return self.message.name

    @property
    def is_live(self) -> bool:
        return self.published and self.deleted_at is None


class Subscription(models.Model):
    """One subscriber's place in one sequence: the scheduler's unit of work.

    `next_due_at` is never later than the moment the next email is due (edits that can make an
    email due sooner lower it), so the scheduler finds all due work through its index; a row
    found early is moved to its exact time without sending.
    """

    class State(models.IntegerChoices):
        ACTIVE = 0, "Active"
        UNCONFIRMED = 1, "Unconfirmed"
        COMPLETED = 2, "Completed"
        # Unsubscribed, bounced or complained: stopped for good (no email left to wait for).
        STOPPED = 3, "Stopped"
        REMOVED = 4, "Removed"

    # No database foreign keys, as on Delivery: a million-row enrolment checks none per row.
    # Deletes go through the ORM, which cascades.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    sequence = models.ForeignKey(
        Sequence, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    state = models.SmallIntegerField(choices=State.choices, default=State.ACTIVE)
    # Which time through the sequence (a repeat starts another): part of each Delivery's key.
    round = models.SmallIntegerField(default=0)
    # The sort key of the last email passed (sent or skipped); None before the first.
    position_key = models.FloatField(null=True, blank=True)
    # How many emails were sent to them in this round, and when the last one was handed on.
    sent_count = models.SmallIntegerField(default=0)
    # Delays count from here: when they entered (or confirmed), then when each email was passed.
    anchor_at = models.DateTimeField()
    next_due_at = models.DateTimeField(null=True, blank=True)
    subscribed_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sequence", "subscriber"], name="subscription_unique_subscriber"
            ),
        ]
        indexes = [
            # The scheduler's only way in: due rows of one sequence, soonest first.
            models.Index(
                fields=["sequence", "next_due_at"],
                name="subscription_due",
                condition=Q(next_due_at__isnull=False),
            ),
            models.Index(fields=["subscriber"], name="subscription_subscriber"),
            # The sequence page's and sequence_status's counts: per state, and the active by
            # position, read from the index alone.
            models.Index(
                fields=["sequence", "state", "position_key"], name="subscription_state_position"
            ),
        ]


class SequenceTrigger(models.Model):
    """A built-in "when this happens, add to the sequence": a form joined or a tag added."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="triggers")
    form = models.ForeignKey(Form, on_delete=models.CASCADE, null=True, blank=True)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(form__isnull=False, tag__isnull=True)
                | Q(form__isnull=True, tag__isnull=False),
                name="sequence_trigger_one_source",
            ),
            models.UniqueConstraint(
                fields=["sequence", "form"],
                name="sequence_trigger_unique_form",
                condition=Q(form__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["sequence", "tag"],
                name="sequence_trigger_unique_tag",
                condition=Q(tag__isnull=False),
            ),
        ]
