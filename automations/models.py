"""Rules, visual automations and the event outbox they consume. See "Automations" in
docs/architecture.md.

- Event: the outbox. Every change something may react to (a tag added, a form joined, a link
  clicked ...) writes one row in the transaction of the change; the engine deletes rows as it
  consumes them, in the transaction of their effects, so an event is acted on exactly once.
- Trigger: what an event is matched against, through one index: a rule's triggers, an
  automation's entry points, its goals ("events" in Kit's builder) and its sequence steps
  (waiting for "completes the sequence"). Only events something listens for are written.
- Rule: triggers (any fires it) and actions, in order.
- Automation: a tree of Nodes. Each node hangs under its parent (None: the first step) on a
  branch ("" after a step, "yes"/"no" under a condition); a Journey is one subscriber's place in
  one automation, due at a time (under an index, as a sequence's Subscription) or waiting for an
  event.
- History: what each rule and node did to whom. A node's row is unique per (automation,
  subscriber, node, visit): the key that makes a replayed event or batch change nothing.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from broadcasts.models import Broadcast
from convertkit.models import Account
from subscribers.models import Subscriber


class EventKind(models.TextChoices):
    TAG_ADDED = "tag_added", "Tag added"
    TAG_REMOVED = "tag_removed", "Tag removed"
    FORM_JOINED = "form_joined", "Subscribes to a form"
    FIELD_CHANGED = "field_changed", "Custom field changed"
    SEQUENCE_SUBSCRIBED = "sequence_subscribed", "Subscribes to a sequence"
    SEQUENCE_COMPLETED = "sequence_completed", "Completes a sequence"
    LINK_CLICKED = "link_clicked", "Clicks a link"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribes"
    # Written for outgoing webhooks (Kit's subscriber events); no rule or automation offers them.
    CREATED = "created", "Subscriber created"
    ACTIVATED = "activated", "Subscriber activated"
    BOUNCED = "bounced", "Bounces"
    COMPLAINED = "complained", "Complains"
    # Not a change: the hour a date field's day comes round (automation entry points only).
    DATE_OCCURS = "date_occurs", "Date occurs"


class Event(models.Model):
    """One change waiting for the engine (the outbox). Plain ids, no foreign keys: written in
    bulk by the change's own statement, and a subscriber deleted meanwhile is simply skipped."""

    account_id = models.BigIntegerField()
    subscriber_id = models.BigIntegerField()
    kind = models.CharField(max_length=24, choices=EventKind.choices)
    # The tag, form, sequence or link; None where the kind has no object (unsubscribed).
    object_id = models.BigIntegerField(null=True)
    # The custom field's key (field_changed).
    detail = models.CharField(max_length=100, db_default="", default="")
    # How many rule or automation effects led to this change: a chain deeper than
    # settings.AUTOMATION_MAX_DEPTH stops (rules that keep triggering each other).
    depth = models.SmallIntegerField(db_default=0, default=0)
    created_at = models.DateTimeField(db_default=Now())


class Trigger(models.Model):
    """An event a rule, an automation entry point or an automation goal waits for.

    object_id None matches any object of the kind (any form); `detail` is a field key, or the
    text a clicked link's URL must contain; `value` what a changed field must become ("" any).
    """

    class Role(models.TextChoices):
        RULE = "rule", "Rule trigger"
        ENTRY = "entry", "Entry point"
        GOAL = "goal", "Event"
        # A sequence step waiting for its sequence to be completed (the event must be written).
        WAIT = "wait", "Sequence step"
        # An outgoing webhook's event subscription (webhooks.WebhookSubscription).
        HOOK = "hook", "Webhook"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    role = models.CharField(max_length=5, choices=Role.choices)
    kind = models.CharField(max_length=24, choices=EventKind.choices)
    object_id = models.BigIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=2000, blank=True, default="")
    value = models.CharField(max_length=255, blank=True, default="")
    # Date entry points: the hour of the day (account's zone) the date's day starts them.
    hour = models.SmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(23)]
    )
    rule = models.ForeignKey(
        "Rule", on_delete=models.CASCADE, null=True, blank=True, related_name="triggers"
    )
    automation = models.ForeignKey(
        "Automation", on_delete=models.CASCADE, null=True, blank=True, related_name="triggers"
    )
    node = models.OneToOneField(
        "Node", on_delete=models.CASCADE, null=True, blank=True, related_name="goal"
    )
    webhook = models.ForeignKey(
        "webhooks.WebhookSubscription",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="triggers",
    )
    # Date entry points: the local day they last ran (claimed by a conditional UPDATE).
    last_fired_on = models.DateField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "kind", "object_id"], name="trigger_match")]
        constraints = [
            models.CheckConstraint(
                condition=Q(role="rule", rule__isnull=False, automation__isnull=True)
                | Q(role="entry", rule__isnull=True, automation__isnull=False, node__isnull=True)
                | Q(
                    role__in=["goal", "wait"],
                    rule__isnull=True,
                    automation__isnull=False,
                    node__isnull=False,
                )
                | Q(role="hook", rule__isnull=True, automation__isnull=True, webhook__isnull=False),
                name="trigger_owner_matches_role",
            ),
        ]


class Rule(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    name = models.CharField(max_length=255)
    enabled = models.BooleanField(default=True)
    # [{"kind": "add_tag", "object_id": 3}, {"kind": "set_field", "detail": "city",
    # "value": "Paris"}, ...] in order; see services.ACTION_KINDS.
    actions = models.JSONField(default=list)
    fired_count = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-id"], name="rule_account_id")]

    def __str__(self) -> str:
        return self.name


class Automation(models.Model):
    class State(models.TextChoices):
        # As Kit: active (people enter and move), paused (they enter and wait at the start),
        # inactive (nobody enters, nobody moves).
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        INACTIVE = "inactive", "Inactive"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    name = models.CharField(max_length=255)
    state = models.CharField(max_length=8, choices=State.choices, default=State.INACTIVE)
    # Whether someone who finished (or left) may enter again when an entry point fires.
    reentry = models.BooleanField(default=False)
    # The loop guard: at most this many entries per subscriber per day.
    daily_entry_limit = models.SmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-id"], name="automation_account_id")]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["active", "paused", "inactive"]),
                name="automation_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Node(models.Model):
    class Kind(models.TextChoices):
        SEQUENCE = "sequence", "Email sequence"
        EMAIL = "email", "Send one email"
        DELAY = "delay", "Delay"
        WAIT_UNTIL = "wait_until", "Wait until"
        ADD_TAG = "add_tag", "Add tag"
        REMOVE_TAG = "remove_tag", "Remove tag"
        SET_FIELD = "set_field", "Set custom field"
        MOVE = "move", "Move to automation"
        EXIT = "exit", "Exit"
        CONDITION = "condition", "Condition"
        GOAL = "goal", "Event"
        # A sequence step waiting for its sequence to be completed (the event must be written).
        WAIT = "wait", "Sequence step"
        # POSTs the subscriber to one of the account's webhook endpoints: {"endpoint": id}.
        WEBHOOK = "webhook", "Send a webhook"

    class Branch(models.TextChoices):
        NEXT = "", "Next"
        YES = "yes", "Yes"
        NO = "no", "No"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    automation = models.ForeignKey(Automation, on_delete=models.CASCADE, related_name="nodes")
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    branch = models.CharField(max_length=3, choices=Branch.choices, blank=True, default="")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # What the kind needs: {"tag_id": 3}, {"sequence_id": 2}, {"amount": 2, "unit": "days"},
    # {"key": "city", "value": "Paris"}, {"automation_id": 9}, a condition's test ...
    config = models.JSONField(default=dict)
    # A "send one email" node's message (kind "automation_email"), sent through the pipeline.
    message = models.OneToOneField(
        Broadcast, on_delete=models.PROTECT, null=True, blank=True, related_name="automation_node"
    )
    # Deleted nodes stay (their history stays); the tree skips them.
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One live step in each place of the tree.
            models.UniqueConstraint(
                fields=["automation", "parent", "branch"],
                name="node_one_per_place",
                condition=Q(deleted_at__isnull=True),
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return self.get_kind_display()


class Journey(models.Model):
    """One subscriber's place in one automation: the automation scheduler's unit of work."""

    class State(models.IntegerChoices):
        ACTIVE = 0, "Active"
        COMPLETED = 1, "Completed"
        # Left by an exit step, a move to another automation, or the loop guard.
        EXITED = 2, "Exited"

    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    automation = models.ForeignKey(
        Automation, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    state = models.SmallIntegerField(choices=State.choices, default=State.ACTIVE)
    # The step they stand at: about to run when due_at comes, or waiting (due_at None) for its
    # event or their sequence to finish. None once they left.
    # Indexed by journey_node (automation, node), which every lookup by step goes through.
    node = models.ForeignKey(
        Node, on_delete=models.SET_NULL, null=True, blank=True, db_constraint=False, db_index=False
    )
    due_at = models.DateTimeField(null=True, blank=True)
    # Which time through the automation: part of each History key and Delivery round.
    visit = models.IntegerField(default=1)
    # When they reached the current step (a delay counts from here).
    arrived_at = models.DateTimeField()
    entered_at = models.DateTimeField()
    # The loop guard's count: entries since day_started (the UTC day).
    day_entries = models.SmallIntegerField(default=1)
    day_started = models.DateField()

    class Meta:
        constraints = [
            # Subscriber first: also the index of a subscriber's journeys (their page, their
            # erasure), so a journey's every move updates one index fewer.
            models.UniqueConstraint(
                fields=["subscriber", "automation"], name="journey_unique_subscriber"
            ),
        ]
        indexes = [
            models.Index(
                fields=["automation", "due_at"],
                name="journey_due",
                condition=Q(due_at__isnull=False),
            ),
            models.Index(fields=["automation", "node"], name="journey_node"),
        ]


class History(models.Model):
    """What a rule or an automation step did to one subscriber."""

    account_id = models.BigIntegerField()
    subscriber_id = models.BigIntegerField()
    rule_id = models.BigIntegerField(null=True)
    automation_id = models.BigIntegerField(null=True)
    node_id = models.BigIntegerField(null=True)
    visit = models.IntegerField(null=True)
    # "tagged Customer", "waiting for Lesson course to finish", "stopped by the loop guard" ...
    note = models.CharField(max_length=255)
    at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["automation_id", "subscriber_id", "node_id", "visit"],
                name="history_step_once",
                condition=Q(node_id__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["subscriber_id", "-id"], name="history_subscriber"),
            models.Index(
                fields=["rule_id", "-id"], name="history_rule", condition=Q(rule_id__isnull=False)
            ),
        ]
