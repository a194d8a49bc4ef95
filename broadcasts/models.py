"""Broadcasts and their deliveries: one Delivery row per (broadcast, subscriber) is the
per-recipient send job (a sequence email's message is a Broadcast row too, of its own kind, with
one Delivery per subscriber and time through the sequence), moved through Celery in batches (see "The send pipeline" in DESIGN.md).

A delivery's life:

    queued --claim--> claimed --send call starts--> sending --answer--> sent | failed
       ^                 |                             |
       +--- released ----+ (pause, retry, or the       +-- worker died mid-call: settled from
       |                    sweeper after a dead task)  |   its send journal: sent | failed,
       +------------------------------------------------+   or unknown when it was in flight
                              (never started)               (never sent again)
    claimed --subscriber no longer mailable when its call is marked sending--> skipped
    queued --broadcast cancelled--> cancelled

Only a conditional UPDATE moves a row, so two tasks can never both send one delivery.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from convertkit.models import Account
from subscribers.models import ENGAGEMENT_VALID, Engagement, Subscriber, TagMatch


class BroadcastQuerySet(models.QuerySet):
    def broadcasts(self) -> BroadcastQuerySet:
        """Broadcasts only: not the messages of sequence emails, which are Broadcast rows too
        but belong to their sequence's pages."""
        return self.filter(kind=Broadcast.Kind.BROADCAST)


class Broadcast(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        SENT = "sent", "Sent"
        CANCELLED = "cancelled", "Cancelled"

    class BodyFormat(models.TextChoices):
        MARKDOWN = "markdown", "Markdown"
        HTML = "html", "HTML"
        # The visual editor's document (TipTap JSON, broadcasts/rendering/document.py).
        VISUAL = "visual", "Visual"

    class Kind(models.TextChoices):
        BROADCAST = "broadcast", "Broadcast"
        # The message of a sequence email (sequences.SequenceEmail.message): it stays "sending"
        # while the email is published in a running sequence, and is never finished.
        SEQUENCE_EMAIL = "sequence_email", "Sequence email"
        # The message of an automation's "send one email" step (automations.Node.message).
        AUTOMATION_EMAIL = "automation_email", "Automation email"

    # The audience filters' vocabulary, shared with segments.
    TagMatch = TagMatch
    Engagement = Engagement

    EDITABLE_STATES = (State.DRAFT, State.SCHEDULED)
    # Broadcasts that may have reached people: what "did not open" can refer to.
    STARTED_STATES = (State.SENDING, State.PAUSED, State.SENT, State.CANCELLED)
    # Broadcasts whose unknown deliveries the creator may send again: not a cancelled one
    # (nobody else was to get it).
    UNKNOWN_RESEND_STATES = (State.SENDING, State.PAUSED, State.SENT)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    kind = models.CharField(
        max_length=16, choices=Kind.choices, default=Kind.BROADCAST, db_default=Kind.BROADCAST
    )
    # What only the creator sees, naming the broadcast on their pages (Kit's "description");
    # without it the pages show the subject as the sample subscriber gets it (see `name`).
    description = models.CharField(max_length=255, blank=True, default="")
    subject = models.CharField(max_length=255, blank=True, default="")
    preview_text = models.CharField(max_length=255, blank=True, default="")
    body = models.TextField(blank=True, default="")
    body_format = models.CharField(
        max_length=16, choices=BodyFormat.choices, default=BodyFormat.MARKDOWN
    )
    # The design around the content (content.email_templates): a built-in's key ("classic",
    # "modern", "plain") or the id of one of the account's EmailTemplate rows, as a plain id
    # like segment_id. One in use by an email still to go out cannot be deleted
    # (email_template_delete); a key that names nothing renders as Classic. A frozen email
    # holds its HTML, so sent ones never change.
    email_template = models.CharField(max_length=24, default="classic", db_default="classic")
    # Audience: active subscribers, narrowed to those with any/all of include_tag_ids (when
    # given), minus those with any of exclude_tag_ids. A deleted tag never widens it: required,
    # it matches nobody; left out, it leaves out nobody (broadcasts/audience.py).
    include_tag_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    include_match = models.CharField(max_length=3, choices=TagMatch.choices, default=TagMatch.ANY)
    exclude_tag_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # ... and, when engagement is set, to those who did (or did not) open or click any
    # broadcast, as a person, in the last engagement_days days.
    engagement = models.CharField(
        max_length=16, choices=Engagement.choices, blank=True, default=Engagement.ANYONE
    )
    engagement_days = models.PositiveIntegerField(null=True, blank=True)
    # ... and to those who were sent this broadcast and did not open it (as a person). A plain
    # id, as the tag ids: a broadcast deleted or of another account makes the audience empty,
    # where a foreign key set to NULL would widen it to everyone.
    not_opened_broadcast_id = models.BigIntegerField(null=True, blank=True)
    # ... and to the members of this segment (subscribers.Segment). A plain id too: a segment
    # deleted or of another account makes the audience empty.
    segment_id = models.BigIntegerField(null=True, blank=True)

    # Shown in the account's public archive (/p/<slug>/) once it has been sent.
    public = models.BooleanField(default=False, db_default=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # Why the broadcast paused itself (failures past the threshold), shown to the creator.
    paused_reason = models.CharField(max_length=500, blank=True, default="")
    # Set once the audience snapshot (Delivery rows) is complete; fan-out is then never redone.
    fanned_out_at = models.DateTimeField(null=True, blank=True)
    send_started_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Last time a send task recorded outcomes: the sweeper tells a stalled send by it.
    progressed_at = models.DateTimeField(null=True, blank=True)
    # What every worker renders from, frozen when sending starts (the creator's edits stop then):
    # the laid-out, CSS-inlined HTML and the text part, both still Liquid templates.
    frozen_html = models.TextField(blank=True, default="")
    frozen_text = models.TextField(blank=True, default="")
    frozen_subject = models.CharField(max_length=255, blank=True, default="")
    # Outcome counters, added to in bulk by each send batch (one UPDATE per batch), so progress
    # and list pages never count deliveries. Remaining = recipients minus all of them.
    recipient_count = models.IntegerField(default=0)
    sent_count = models.IntegerField(default=0)
    failed_count = models.IntegerField(default=0)
    unknown_count = models.IntegerField(default=0)
    skipped_count = models.IntegerField(default=0)
    cancelled_count = models.IntegerField(default=0)
    # The creator's choice about the unknown deliveries (broadcast_unknown_resend and
    # broadcast_unknown_leave): the choice is offered while unknown_count exceeds the number they
    # chose to leave as they are; resent counts those queued again at their request.
    unknown_left_count = models.IntegerField(default=0)
    unknown_resent_count = models.IntegerField(default=0)
    unknown_resent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BroadcastQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["account", "-id"], name="broadcast_account_id"),
            # The public archive's pages and feed, newest first.
            models.Index(
                fields=["account", "-id"], name="broadcast_public", condition=Q(public=True)
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    state__in=["draft", "scheduled", "sending", "paused", "sent", "cancelled"]
                ),
                name="broadcast_state_valid",
            ),
            models.CheckConstraint(condition=ENGAGEMENT_VALID, name="broadcast_engagement_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        """What the creator's pages call the broadcast: never Liquid source."""
        return self.name_of(
            description=self.description, subject=self.subject, account=self.account
        )

    @staticmethod
    def name_of(*, description: str, subject: str, account: Account) -> str:
        """The description the creator gave, else the subject as the sample subscriber gets
        it, else "Untitled"; for readers that have the columns without a Broadcast."""
        # Rendering imports tracking, whose models import this module.
        from broadcasts.rendering import sample_subject

        return description or sample_subject(subject, account=account) or "Untitled"

    @property
    def unknown_undecided(self) -> bool:
        """Whether the progress page asks the creator what to do with the unknown deliveries."""
        return (
            self.unknown_count > self.unknown_left_count
            and self.state in self.UNKNOWN_RESEND_STATES
        )

    @property
    def is_editable(self) -> bool:
        return self.state in self.EDITABLE_STATES

    @property
    def finished_count(self) -> int:
        return (
            self.sent_count
            + self.failed_count
            + self.unknown_count
            + self.skipped_count
            + self.cancelled_count
        )

    @property
    def remaining_count(self) -> int:
        return max(0, self.recipient_count - self.finished_count)


class Delivery(models.Model):
    class State(models.IntegerChoices):
        QUEUED = 0, "Queued"
        CLAIMED = 1, "Claimed"
        SENDING = 2, "Sending"
        SENT = 3, "Sent"
        FAILED = 4, "Failed"
        UNKNOWN = 5, "Unknown"
        SKIPPED = 6, "Skipped"
        CANCELLED = 7, "Cancelled"

    # Not yet finished: a broadcast with none of these left is sent (broadcast_finish_if_done).
    OPEN_STATES = (State.QUEUED, State.CLAIMED, State.SENDING)

    # No database foreign keys: checking two per row at COMMIT made the fan-out of a million
    # rows several times slower. Subscribers and broadcasts are deleted through the ORM, which
    # cascades to deliveries itself.
    broadcast = models.ForeignKey(
        Broadcast, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    # Which time through a sequence (a repeat starts another); 0 for a broadcast.
    round = models.SmallIntegerField(db_default=0)
    state = models.SmallIntegerField(choices=State.choices, default=State.QUEUED)
    attempts = models.SmallIntegerField(default=0)
    # Which claim owns a claimed row: a task that lost its claim (the sweeper released it and
    # another task took it) cannot move it any further.
    claim = models.BigIntegerField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Earliest time a retry may send it (transient errors back off).
    not_before = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    esp_message_id = models.CharField(max_length=255, blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        constraints = [
            # Also the index of a broadcast's deliveries in id order (batches are id ranges).
            models.UniqueConstraint(
                fields=["broadcast", "subscriber", "round"], name="delivery_unique_recipient"
            ),
        ]
        indexes = [
            # The unfinished ones: what send tasks claim and the sweeper looks for.
            models.Index(
                fields=["broadcast", "state", "id"],
                name="delivery_open",
                condition=Q(state__in=[0, 1, 2]),
            ),
            models.Index(fields=["subscriber"], name="delivery_subscriber"),
            # The creator's list of deliveries that were in flight when a worker died.
            models.Index(
                fields=["broadcast", "id"],
                name="delivery_unknown",
                condition=Q(state=5),
            ),
            models.Index(
                fields=["esp_message_id"],
                name="delivery_esp_message_id",
                condition=~Q(esp_message_id=""),
            ),
        ]

    def message_id(self, domain: str) -> str:
        """The Message-ID header: stable for a delivery, so a resend would be recognisable."""
        return f"<d{self.pk}.b{self.broadcast_id}@{domain}>"
