"""The forms of the automation builder: an automation's name and settings, and the settings of
a step or an entry point.

A step is chosen in two moves, as in Kit: its kind first (STEP_CHOICES: an action, a wait, a
condition's test or a goal's event), then its settings, a SettingsForm holding only the fields
that choice uses. The forms read what the creator typed and offer the account's own objects
only; automations.services checks everything again (another account's tag, a move that makes a
loop, an impossible date) and its AutomationInvalid problems are shown beside the form.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django import forms

from automations.models import Automation, EventKind, Node
from automations.rules.selectors import webhook_label
from automations.services import DELAY_UNITS, MAX_DELAY_SECONDS, TriggerSpec
from broadcasts.models import Broadcast
from sequences.models import Sequence
from subscribers.forms import one_line
from subscribers.models import CustomField, Form, Segment, Tag
from tracking.models import Link
from webhooks.models import WebhookEndpoint

Kind = Node.Kind
HOUR_CHOICES = [(hour, f"{hour:02d}:00") for hour in range(24)]
DAY_CHOICES = list(
    enumerate(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"))
)
UNIT_CHOICES = [(unit, unit) for unit in DELAY_UNITS]
FIELD_OP_CHOICES = [
    ("equals", "is"),
    ("contains", "contains"),
    ("is_set", "is set"),
    ("is_not_set", "is not set"),
]
# The emails a condition may ask about: the newest sent or ready ones (any more are typed in
# the API, not picked from a list).
EMAILS_OFFERED = 200

ACTIONS, WAITS, CONDITIONS, EVENTS = "Actions", "Waiting", "Conditions", "Events"


@dataclass(frozen=True)
class StepChoice:
    """One thing the "+" of the builder offers: a kind of step (with the condition's test, the
    goal's event or the wait's mode as `variant`) and the settings fields it asks for."""

    kind: str
    variant: str
    label: str
    group: str
    fields: tuple[str, ...]
    help: str = ""

    @property
    def title(self) -> str:
        """The choice on its own: "Condition: Has a tag", "Event: Tag added", "Delay"."""
        prefix = {CONDITIONS: "Condition: ", EVENTS: "Event: "}.get(self.group, "")
        return f"{prefix}{self.label}"

    @property
    def ends(self) -> bool:
        """An exit or a move ends its branch: it can only be added at the end of one."""
        return self.kind in (Kind.EXIT, Kind.MOVE)


STEP_CHOICES = (
    StepChoice(
        Kind.SEQUENCE,
        "",
        "Email sequence",
        ACTIONS,
        ("sequence_id",),
        "Subscribe them to a sequence; they move on when they finish it.",
    ),
    StepChoice(Kind.EMAIL, "", "Send one email", ACTIONS, (), "You write it next."),
    StepChoice(Kind.ADD_TAG, "", "Add tag", ACTIONS, ("tag_id",)),
    StepChoice(Kind.REMOVE_TAG, "", "Remove tag", ACTIONS, ("tag_id",)),
    StepChoice(Kind.SET_FIELD, "", "Set custom field", ACTIONS, ("key", "value")),
    StepChoice(
        Kind.MOVE,
        "",
        "Move to another automation",
        ACTIONS,
        ("automation_id",),
        "They leave this one and start the other. It ends this branch.",
    ),
    StepChoice(
        Kind.EXIT, "", "Exit", ACTIONS, (), "They leave the automation. It ends this branch."
    ),
    StepChoice(
        Kind.WEBHOOK,
        "",
        "Send a webhook",
        ACTIONS,
        ("endpoint",),
        "POST them to one of your webhooks (Settings, Webhooks), signed.",
    ),
    StepChoice(Kind.DELAY, "", "Delay", WAITS, ("amount", "unit")),
    StepChoice(Kind.WAIT_UNTIL, "date", "Wait until a date", WAITS, ("date", "hour")),
    StepChoice(Kind.WAIT_UNTIL, "weekday", "Wait until a day of the week", WAITS, ("days", "hour")),
    StepChoice(Kind.WAIT_UNTIL, "hour", "Wait until an hour of the day", WAITS, ("hour",)),
    StepChoice(Kind.CONDITION, "has_tag", "Has a tag", CONDITIONS, ("tag_id",)),
    StepChoice(Kind.CONDITION, "field", "Custom field", CONDITIONS, ("key", "op", "value")),
    StepChoice(Kind.CONDITION, "segment", "In a segment", CONDITIONS, ("segment_id",)),
    StepChoice(Kind.CONDITION, "opened", "Opened an email", CONDITIONS, ("message_id",)),
    StepChoice(
        Kind.CONDITION, "clicked", "Clicked in an email", CONDITIONS, ("message_id", "link_id")
    ),
    StepChoice(Kind.GOAL, EventKind.TAG_ADDED, "Tag added", EVENTS, ("tag_id",)),
    StepChoice(Kind.GOAL, EventKind.TAG_REMOVED, "Tag removed", EVENTS, ("tag_id",)),
    StepChoice(
        Kind.GOAL, EventKind.FIELD_CHANGED, "Custom field changes", EVENTS, ("key", "value")
    ),
    StepChoice(Kind.GOAL, EventKind.LINK_CLICKED, "Link clicked", EVENTS, ("link_id", "url")),
)
STEP_GROUP_HELP = {
    ACTIONS: "",
    WAITS: "",
    CONDITIONS: "A yes/no split: the steps under “Yes” and under “No” run side by side.",
    EVENTS: "A goal: whoever it happens to jumps forward to this step (never back), wherever "
    "they are above it.",
}

# Entry points: the event that starts the automation, and the fields each asks for.
ENTRY_CHOICES = {
    EventKind.FORM_JOINED: ("Joins a form", ("form_id",)),
    EventKind.TAG_ADDED: ("Tag added", ("tag_id",)),
    EventKind.FIELD_CHANGED: ("Custom field set", ("key", "value")),
    EventKind.DATE_OCCURS: ("Date occurs", ("key", "hour")),
    EventKind.SEQUENCE_SUBSCRIBED: ("Subscribes to a sequence", ("sequence_id",)),
}
ENTRY_HELP = {
    EventKind.DATE_OCCURS: "Every year, on the day and month of the date in that custom field "
    "(YYYY-MM-DD: a birthday, an anniversary), at the hour chosen, in your account's time zone.",
    EventKind.FIELD_CHANGED: "Whenever the field is given a value; with a value below, only when "
    "it becomes that value.",
}


def step_choice(kind: str, variant: str) -> StepChoice | None:
    return next(
        (choice for choice in STEP_CHOICES if choice.kind == kind and choice.variant == variant),
        None,
    )


def step_variant(node: Node) -> str:
    """The choice a saved step was made with (the wait's mode, the test, the event)."""
    config = node.config or {}
    return {
        Kind.WAIT_UNTIL: config.get("mode", ""),
        Kind.CONDITION: config.get("test", ""),
        Kind.GOAL: config.get("kind", ""),
    }.get(node.kind, "")


# The account's objects ----------------------------------------------------------------------


class Choices:
    """What the pickers offer: the account's own objects, each read when a form first asks."""

    def __init__(self, *, account, automation: Automation | None = None) -> None:
        self.account = account
        self.automation = automation

    def _named(self, model, column: str = "name") -> list[tuple[int, str]]:
        return list(
            model.objects.filter(account=self.account)
            .order_by(column, "id")
            .values_list("id", column)
        )

    @cached_property
    def tags(self) -> list[tuple[int, str]]:
        return self._named(Tag)

    @cached_property
    def sequences(self) -> list[tuple[int, str]]:
        return self._named(Sequence)

    @cached_property
    def segments(self) -> list[tuple[int, str]]:
        return self._named(Segment)

    @cached_property
    def forms(self) -> list[tuple[int, str]]:
        return list(
            Form.objects.filter(account=self.account, archived_at__isnull=True)
            .order_by("name", "id")
            .values_list("id", "name")
        )

    @cached_property
    def automations(self) -> list[tuple[int, str]]:
        others = Automation.objects.filter(account=self.account)
        if self.automation is not None:
            others = others.exclude(pk=self.automation.pk)
        return list(others.order_by("name", "id").values_list("id", "name"))

    @cached_property
    def fields(self) -> list[tuple[str, str]]:
        return [
            (key, f"{label} ({key})")
            for key, label in CustomField.objects.filter(account=self.account)
            .order_by("label", "id")
            .values_list("key", "label")
        ]

    @cached_property
    def webhooks(self) -> list[tuple[int, str]]:
        return [
            (endpoint.pk, webhook_label(endpoint))
            for endpoint in WebhookEndpoint.objects.filter(account=self.account).order_by("-id")
        ]

    @cached_property
    def emails(self) -> list[tuple[int, str]]:
        """The newest emails that went out or are ready to (frozen): broadcasts, sequence
        emails and automation emails."""
        kinds = {
            Broadcast.Kind.SEQUENCE_EMAIL: " (sequence email)",
            Broadcast.Kind.AUTOMATION_EMAIL: " (automation email)",
        }
        rows = (
            Broadcast.objects.filter(account=self.account)
            .exclude(frozen_subject="")
            .order_by("-id")
            .values_list("id", "kind", "description", "subject")[:EMAILS_OFFERED]
        )
        return [
            (
                pk,
                Broadcast.name_of(description=description, subject=subject, account=self.account)
                + kinds.get(kind, ""),
            )
            for pk, kind, description, subject in rows
        ]

    @cached_property
    def links(self) -> list:
        """The links of those emails, grouped under each email's name."""
        names = dict(self.emails)
        grouped: dict[int, list] = {}
        for pk, broadcast_id, url in (
            Link.objects.filter(account=self.account, broadcast_id__in=names)
            .order_by("broadcast_id", "position")
            .values_list("id", "broadcast_id", "url")
        ):
            grouped.setdefault(broadcast_id, []).append((pk, url))
        return [(names[broadcast_id], links) for broadcast_id, links in grouped.items()]


# Where each picker's choices come from, and what it says before a choice is made.
_PICKERS = {
    "tag_id": ("tags", "Choose a tag…"),
    "sequence_id": ("sequences", "Choose a sequence…"),
    "segment_id": ("segments", "Choose a segment…"),
    "automation_id": ("automations", "Choose an automation…"),
    "form_id": ("forms", "Any form"),
    "message_id": ("emails", "Choose an email…"),
    "link_id": ("links", "Any link"),
    "key": ("fields", "Choose a custom field…"),
    "endpoint": ("webhooks", "Choose a webhook…"),
}


def _pick(label: str, what: str, *, required: bool = True, coerce=int) -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        label=label,
        required=required,
        coerce=coerce,
        empty_value=None,
        error_messages={
            "required": f"Choose the {what}.",
            "invalid_choice": f"Choose one of your {what}s.",
        },
    )


class SettingsForm(forms.Form):
    """The settings of one step or entry point: of the fields below, only those `keep` names
    (its StepChoice's or ENTRY_CHOICES' fields), each picker offering the account's objects
    (`choices`). `labels` renames a field where the kind reads better another way."""

    tag_id = _pick("Tag", "tag")
    sequence_id = _pick("Sequence", "sequence")
    segment_id = _pick("Segment", "segment")
    automation_id = _pick("Automation", "automation")
    form_id = _pick("Form", "form", required=False)
    message_id = _pick("Email", "email")
    link_id = _pick("Link", "link", required=False)
    key = _pick("Custom field", "custom field", coerce=str)
    endpoint = _pick("Webhook", "webhook")
    op = forms.ChoiceField(
        label="Comparison",
        choices=FIELD_OP_CHOICES,
        error_messages={"invalid_choice": "Choose how the field is compared."},
    )
    value = forms.CharField(label="Value", required=False, max_length=2000)
    amount = forms.IntegerField(
        label="Wait",
        min_value=1,
        # The service says what the longest delay is; this only keeps the number sane.
        max_value=MAX_DELAY_SECONDS // 60,
        error_messages={
            "required": "Enter how long to wait, such as 2.",
            "invalid": "Enter a whole number, such as 2.",
            "min_value": "Wait at least 1.",
            "max_value": "A delay is at least one minute and at most a year.",
        },
    )
    unit = forms.ChoiceField(
        label="Unit",
        choices=UNIT_CHOICES,
        initial="days",
        error_messages={"invalid_choice": "The delay is in minutes, hours, days or weeks."},
    )
    date = forms.CharField(
        label="Date",
        max_length=10,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"required": "Choose the date."},
    )
    days = forms.TypedMultipleChoiceField(
        label="Days",
        coerce=int,
        choices=DAY_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        error_messages={
            "required": "Choose at least one day of the week.",
            "invalid_choice": "Days of the week are Monday to Sunday.",
        },
    )
    hour = forms.TypedChoiceField(
        label="At",
        coerce=int,
        choices=HOUR_CHOICES,
        initial=9,
        help_text="In your account's time zone.",
        error_messages={
            "required": "Choose the hour.",
            "invalid_choice": "Choose an hour from 00:00 to 23:00.",
        },
    )
    url = forms.CharField(
        label="Or any link whose address contains",
        required=False,
        max_length=2000,
        help_text="Such as “/pricing”: for links of any email, also those you write later.",
    )

    def __init__(
        self,
        data=None,
        *,
        keep: tuple[str, ...],
        choices: Choices,
        labels: dict[str, str] | None = None,
        initial: dict | None = None,
    ) -> None:
        # Its ids stay apart from the settings form's on the same page.
        super().__init__(data, initial=initial, auto_id="flow_%s")
        for name in list(self.fields):
            if name not in keep:
                del self.fields[name]
        for name, label in (labels or {}).items():
            if name in self.fields:
                self.fields[name].label = label
        for name, field in self.fields.items():
            if name in _PICKERS:
                source, empty = _PICKERS[name]
                field.choices = [("", empty), *getattr(choices, source)]

    def clean_value(self) -> str:
        return one_line(self.cleaned_data["value"], "value")

    def clean_url(self) -> str:
        return one_line(self.cleaned_data["url"], "address")


# Labels where the kind reads better another way.
_STEP_LABELS = {
    Kind.SET_FIELD: {"value": "Set to", "key": "Custom field"},
    Kind.GOAL: {"value": "Only when it changes to (optional)"},
    Kind.CONDITION: {"link_id": "Which link"},
}


def step_form(
    choice: StepChoice, *, choices: Choices, data=None, config: dict | None = None
) -> SettingsForm:
    """The settings form of `choice`, empty or holding a saved step's `config`."""
    return SettingsForm(
        data,
        keep=choice.fields,
        choices=choices,
        labels=_STEP_LABELS.get(choice.kind),
        initial=_step_initial(choice.kind, config) if config else None,
    )


def _step_initial(kind: str, config: dict) -> dict:
    if kind != Kind.GOAL:
        return dict(config)
    event, object_id, detail = config.get("kind"), config.get("object_id"), config.get("detail")
    if event == EventKind.LINK_CLICKED:
        return {"link_id": object_id, "url": "" if object_id is not None else detail}
    if event == EventKind.FIELD_CHANGED:
        return {"key": detail, "value": config.get("value", "")}
    return {"tag_id": object_id}


def step_config(choice: StepChoice, cleaned: dict) -> dict:
    """The node config (automations.services._config_check's shape) of a valid form."""
    if choice.kind == Kind.WAIT_UNTIL:
        return {"mode": choice.variant, **cleaned}
    if choice.kind == Kind.CONDITION:
        return {"test": choice.variant, **cleaned}
    if choice.kind == Kind.GOAL:
        return {
            "kind": choice.variant,
            "object_id": cleaned.get("tag_id", cleaned.get("link_id")),
            "detail": cleaned.get("key") or cleaned.get("url") or "",
            "value": cleaned.get("value", ""),
        }
    return dict(cleaned)


def entry_form(kind: str, *, choices: Choices, data=None) -> SettingsForm:
    labels = {"value": "Only when set to (optional)"}
    if kind == EventKind.DATE_OCCURS:
        labels = {"key": "Date field"}
    return SettingsForm(data, keep=ENTRY_CHOICES[kind][1], choices=choices, labels=labels)


def entry_spec(kind: str, cleaned: dict) -> TriggerSpec:
    return TriggerSpec(
        kind=kind,
        object_id=cleaned.get("form_id", cleaned.get("tag_id", cleaned.get("sequence_id"))),
        detail=cleaned.get("key") or "",
        value=cleaned.get("value") or "",
        hour=cleaned.get("hour"),
    )


# The automation itself ----------------------------------------------------------------------


def _name_field() -> forms.CharField:
    return forms.CharField(
        label="Name",
        max_length=Automation._meta.get_field("name").max_length,
        error_messages={"required": "Give the automation a name."},
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text="Only you see it.",
    )


class AutomationCreateForm(forms.Form):
    name = _name_field()

    def clean_name(self) -> str:
        name = one_line(self.cleaned_data["name"], "name")
        if not name:
            raise forms.ValidationError("Give the automation a name.")
        return name


class AutomationSettingsForm(AutomationCreateForm):
    reentry = forms.BooleanField(
        label="Re-entry: whoever finished or left may enter again when an entry point fires",
        required=False,
        help_text="Off: each subscriber goes through it once. Someone in it never enters twice "
        "at the same time.",
    )
    daily_entry_limit = forms.IntegerField(
        label="Loop guard: entries per subscriber per day, at most",
        min_value=1,
        max_value=100,
        widget=forms.NumberInput(attrs={"min": 1, "max": 100}),
        help_text="Someone sent round more often than this in a day stops, and their history "
        "says so.",
        error_messages={
            "required": "Enter the daily entry limit, 1 to 100.",
            "invalid": "Enter a whole number from 1 to 100.",
            "min_value": "The daily entry limit is between 1 and 100.",
            "max_value": "The daily entry limit is between 1 and 100.",
        },
    )

    @staticmethod
    def initial_for(automation: Automation) -> dict:
        return {
            "name": automation.name,
            "reentry": automation.reentry,
            "daily_entry_limit": automation.daily_entry_limit,
        }
