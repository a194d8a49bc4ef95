"""The rule editor: its name, its triggers (any of them fires it) and its actions (in order),
each trigger and action a row of a formset.

Rows are added, removed and moved by submit buttons that post the whole form back: the server
answers with the rows rearranged and nothing saved (htmx swaps just the rows in; without
JavaScript the page comes back whole). A row's fields all stay in the page; the stylesheet
shows only those its kind uses.

The pickers offer the account's own tags, forms, sequences, links and fields, so another
account's id is refused here with a clear message; rule_save checks everything again and its
AutomationInvalid is shown above the form.
"""

from __future__ import annotations

from django import forms

from automations.models import EventKind, Rule, Trigger
from automations.rules.selectors import Pickers
from automations.services import RULE_TRIGGER_KINDS, ActionKind, TriggerSpec
from subscribers.forms import one_line

MAX_TRIGGERS = 10
MAX_ACTIONS = 10

TRIGGER_CHOICES = [("", "Choose a trigger")] + [
    (kind.value, kind.label) for kind in RULE_TRIGGER_KINDS
]
ACTION_CHOICES = [("", "Choose an action"), *ActionKind.LABELS.items()]

# The row field that holds each kind's object (the trigger's object_id, the action's).
_TRIGGER_OBJECT = {
    EventKind.TAG_ADDED: "tag",
    EventKind.TAG_REMOVED: "tag",
    EventKind.FORM_JOINED: "signup_form",
    EventKind.SEQUENCE_SUBSCRIBED: "sequence",
    EventKind.SEQUENCE_COMPLETED: "sequence",
    EventKind.LINK_CLICKED: "link",
}
_ACTION_OBJECT = {
    ActionKind.ADD_TAG: "tag",
    ActionKind.REMOVE_TAG: "tag",
    ActionKind.SUBSCRIBE_SEQUENCE: "sequence",
    ActionKind.REMOVE_SEQUENCE: "sequence",
    ActionKind.SEND_WEBHOOK: "webhook",
}
# The row fields each kind uses besides its object (the others are ignored, errors included).
_TRIGGER_TEXT = {
    EventKind.LINK_CLICKED: ("contains",),
    EventKind.FIELD_CHANGED: ("custom_field", "value"),
}
_ACTION_TEXT = {ActionKind.SET_FIELD: ("custom_field", "value")}


def _id_field(label: str, what: str) -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        label=label,
        required=False,
        coerce=int,
        empty_value=None,
        error_messages={
            "invalid_choice": f"Choose one of your {what}s: that {what} does not exist."
        },
    )


def _blank(choices: list, what: str) -> list:
    """`choices` after a blank one that asks for one, or says there is none yet."""
    return [("", f"Choose a {what}" if choices else f"You have no {what}s yet"), *choices]


def _text_field(label: str, max_length: int, help_text: str = "", **attrs) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=max_length,
        help_text=help_text,
        widget=forms.TextInput(attrs={"autocomplete": "off", **attrs}),
    )


class _RowForm(forms.Form):
    """A trigger or an action: its kind, and the fields of every kind. The fields a kind does
    not use are hidden by the stylesheet, so they are neither checked nor kept."""

    # The field that holds each kind's object, and the other fields each kind uses.
    OBJECT: dict = {}
    TEXT: dict = {}
    # Kinds whose object may be left out (any form; a link given by its URL's text).
    OPTIONAL_OBJECT: tuple = ()

    tag = _id_field("Tag", "tag")
    sequence = _id_field("Sequence", "sequence")
    custom_field = forms.ChoiceField(
        label="Custom field",
        required=False,
        error_messages={
            "invalid_choice": "Choose one of your custom fields: “%(value)s” does not exist."
        },
    )

    def __init__(self, *args, pickers: Pickers, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tag"].choices = _blank(pickers.tags, "tag")
        self.fields["sequence"].choices = _blank(pickers.sequences, "sequence")
        self.fields["custom_field"].choices = _blank(pickers.fields, "custom field")

    def _used(self, kind: str) -> set[str]:
        return {"kind", *filter(None, [self.OBJECT.get(kind)]), *self.TEXT.get(kind, ())}

    def clean_value(self) -> str:
        return one_line(self.cleaned_data["value"], "value")

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind") or ""
        for name in list(self.errors):
            if name in self.fields and name not in self._used(kind):
                del self.errors[name]
                cleaned.pop(name, None)
        if kind and not self.errors:
            name = self.OBJECT.get(kind)
            if name and cleaned.get(name) is None and kind not in self.OPTIONAL_OBJECT:
                self.add_error(name, f"Choose the {self.fields[name].label.lower()}.")
            if "custom_field" in self._used(kind) and not cleaned.get("custom_field"):
                self.add_error("custom_field", "Choose the custom field.")
        return cleaned


class TriggerForm(_RowForm):
    OBJECT = _TRIGGER_OBJECT
    TEXT = _TRIGGER_TEXT
    OPTIONAL_OBJECT = (EventKind.FORM_JOINED, EventKind.LINK_CLICKED)

    kind = forms.ChoiceField(
        label="When",
        required=False,
        choices=TRIGGER_CHOICES,
        error_messages={"invalid_choice": "Choose one of the triggers offered."},
    )
    signup_form = _id_field("Form", "form")
    link = _id_field("Link", "link")
    contains = _text_field(
        "Or any link whose URL contains",
        Trigger._meta.get_field("detail").max_length,
        placeholder="e.g. /pricing",
    )
    value = _text_field(
        "Changes to (optional)",
        Trigger._meta.get_field("value").max_length,
        "Leave empty for any change.",
    )

    def __init__(self, *args, pickers: Pickers, **kwargs):
        super().__init__(*args, pickers=pickers, **kwargs)
        self.fields["signup_form"].choices = [("", "Any form"), *pickers.forms]
        self.fields["link"].choices = [("", "No particular link"), *pickers.links]

    def clean_contains(self) -> str:
        return one_line(self.cleaned_data["contains"], "text")

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        cleaned["spec"] = None
        if not kind or self.errors:
            return cleaned
        object_id = cleaned.get(self.OBJECT[kind]) if kind in self.OBJECT else None
        detail = value = ""
        if kind == EventKind.LINK_CLICKED and object_id is None:
            detail = cleaned.get("contains", "")
            if not detail:
                self.add_error("contains", "Choose a link, or give the text its URL contains.")
                return cleaned
        elif kind == EventKind.FIELD_CHANGED:
            detail, value = cleaned["custom_field"], cleaned.get("value", "")
        cleaned["spec"] = TriggerSpec(kind=kind, object_id=object_id, detail=detail, value=value)
        return cleaned

    @staticmethod
    def row_of(trigger: Trigger) -> dict:
        """A saved trigger as the row's initial values."""
        row = {"kind": trigger.kind}
        if trigger.kind in _TRIGGER_OBJECT:
            row[_TRIGGER_OBJECT[trigger.kind]] = trigger.object_id
        if trigger.kind == EventKind.LINK_CLICKED:
            row["contains"] = trigger.detail
        elif trigger.kind == EventKind.FIELD_CHANGED:
            row["custom_field"], row["value"] = trigger.detail, trigger.value
        return row


class ActionForm(_RowForm):
    OBJECT = _ACTION_OBJECT
    TEXT = _ACTION_TEXT

    kind = forms.ChoiceField(
        label="Then",
        required=False,
        choices=ACTION_CHOICES,
        error_messages={"invalid_choice": "Choose one of the actions offered."},
    )
    value = _text_field("Value", 2000, "Leave empty to clear the field.")
    webhook = _id_field("Webhook", "webhook")

    def __init__(self, *args, pickers: Pickers, **kwargs):
        super().__init__(*args, pickers=pickers, **kwargs)
        self.fields["webhook"].choices = _blank(pickers.webhooks, "webhook")

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        cleaned["action"] = None
        if not kind or self.errors:
            return cleaned
        action: dict = {"kind": kind}
        if kind in self.OBJECT:
            action["object_id"] = cleaned[self.OBJECT[kind]]
        elif kind == ActionKind.SET_FIELD:
            action["detail"], action["value"] = cleaned["custom_field"], cleaned.get("value", "")
        cleaned["action"] = action
        return cleaned

    @staticmethod
    def row_of(action: dict) -> dict:
        row = {"kind": action.get("kind", "")}
        if row["kind"] in _ACTION_OBJECT:
            row[_ACTION_OBJECT[row["kind"]]] = action.get("object_id")
        elif row["kind"] == ActionKind.SET_FIELD:
            row["custom_field"], row["value"] = action.get("detail", ""), action.get("value", "")
        return row


class _Rows(forms.BaseFormSet):
    """Rows of which at least one must say something (rows without a kind are skipped)."""

    key = ""
    nothing = ""

    def clean(self):
        if any(self.errors):
            return
        if not any(form.cleaned_data.get(self.key) for form in self.forms):
            raise forms.ValidationError(self.nothing)


class _TriggerRows(_Rows):
    key, nothing = "spec", "Add at least one trigger."


class _ActionRows(_Rows):
    key, nothing = "action", "Add at least one action."


def _formset(form, rows, most: int):
    return forms.formset_factory(
        form, formset=rows, extra=0, max_num=most, absolute_max=most, validate_max=True
    )


TriggerFormSet = _formset(TriggerForm, _TriggerRows, MAX_TRIGGERS)
ActionFormSet = _formset(ActionForm, _ActionRows, MAX_ACTIONS)


class RuleForm(forms.Form):
    name = forms.CharField(
        label="Rule name",
        max_length=Rule._meta.get_field("name").max_length,
        error_messages={"required": "Give the rule a name."},
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    enabled = forms.BooleanField(
        label="Enabled",
        required=False,
        help_text="A disabled rule does nothing until you enable it.",
    )

    def clean_name(self) -> str:
        name = one_line(self.cleaned_data["name"], "name")
        if not name:
            raise forms.ValidationError("Give the rule a name.")
        return name


def _posted_rows(data, prefix: str, names, most: int) -> list[dict]:
    """The rows of a posted formset, as they were typed (nothing checked)."""
    total = data.get(f"{prefix}-TOTAL_FORMS", "")
    total = min(int(total), most) if total.isdigit() and len(total) < 4 else 0
    return [{name: data.get(f"{prefix}-{i}-{name}", "") for name in names} for i in range(total)]


def _posted_index(data, key: str) -> int | None:
    value = data.get(key, "")
    return int(value) if value.isdigit() and len(value) < 4 else None


class RuleEditor:
    """The editor's name form and its trigger and action formsets, together.

    `focus`: ("trigger" or "action", row index) of the kind select to focus, or ("add_trigger"
    or "add_action", None) for that button: where a keyboard user's focus belongs after a row
    was added, moved or removed.
    """

    BLANK = {"name": "", "enabled": True, "triggers": [{}], "actions": [{}]}

    def __init__(self, *, pickers: Pickers, data=None, initial: dict | None = None, focus=None):
        initial = initial or self.BLANK
        self.form = RuleForm(data, initial={"name": initial["name"], "enabled": initial["enabled"]})
        self.triggers = TriggerFormSet(
            data, initial=initial["triggers"], prefix="trigger", form_kwargs={"pickers": pickers}
        )
        self.actions = ActionFormSet(
            data, initial=initial["actions"], prefix="action", form_kwargs={"pickers": pickers}
        )
        self.focus = focus or (None, None)
        kind, index = self.focus
        rows = {"trigger": self.triggers, "action": self.actions}.get(kind)
        if rows is not None and index is not None and index < len(rows.forms):
            rows.forms[index].fields["kind"].widget.attrs["autofocus"] = True
        self.can_add_trigger = len(self.triggers.forms) < MAX_TRIGGERS
        self.can_add_action = len(self.actions.forms) < MAX_ACTIONS

    @classmethod
    def of_rule(cls, rule: Rule, *, pickers: Pickers) -> RuleEditor:
        """`rule`'s triggers prefetched in order (selectors.rule_with_triggers)."""
        initial = {
            "name": rule.name,
            "enabled": rule.enabled,
            "triggers": [TriggerForm.row_of(trigger) for trigger in rule.triggers.all()],
            "actions": [ActionForm.row_of(action) for action in rule.actions],
        }
        return cls(pickers=pickers, initial=initial)

    @classmethod
    def rearranged(cls, data, *, pickers: Pickers) -> RuleEditor | None:
        """The posted editor with a row added, removed or moved up, unchecked and unsaved; None
        when the post is no such request (a save)."""
        triggers = _posted_rows(data, "trigger", TriggerForm.base_fields, MAX_TRIGGERS)
        actions = _posted_rows(data, "action", ActionForm.base_fields, MAX_ACTIONS)
        focus = None
        if "add_trigger" in data:
            triggers += [{}] if len(triggers) < MAX_TRIGGERS else []
            focus = ("trigger", len(triggers) - 1)
        elif "add_action" in data:
            actions += [{}] if len(actions) < MAX_ACTIONS else []
            focus = ("action", len(actions) - 1)
        elif (index := _posted_index(data, "remove_trigger")) is not None:
            del triggers[index : index + 1]
            focus = ("add_trigger", None)
        elif (index := _posted_index(data, "remove_action")) is not None:
            del actions[index : index + 1]
            focus = ("add_action", None)
        elif (index := _posted_index(data, "up_action")) is not None:
            if 0 < index < len(actions):
                actions[index - 1], actions[index] = actions[index], actions[index - 1]
                index -= 1
            focus = ("action", index)
        else:
            return None
        initial = {
            "name": data.get("name", ""),
            "enabled": "enabled" in data,
            "triggers": triggers,
            "actions": actions,
        }
        return cls(pickers=pickers, initial=initial, focus=focus)

    def is_valid(self) -> bool:
        valid = [part.is_valid() for part in (self.form, self.triggers, self.actions)]
        return all(valid)

    @property
    def has_errors(self) -> bool:
        return bool(
            self.form.errors
            or any(self.triggers.errors)
            or any(self.actions.errors)
            or self.triggers.non_form_errors()
            or self.actions.non_form_errors()
        )

    def values(self) -> dict:
        """rule_save's keyword arguments (but account and rule), once valid: the rows left
        without a kind are no trigger, no action."""
        return {
            "name": self.form.cleaned_data["name"],
            "enabled": self.form.cleaned_data["enabled"],
            "triggers": [row["spec"] for row in self.triggers.cleaned_data if row.get("spec")],
            "actions": [row["action"] for row in self.actions.cleaned_data if row.get("action")],
        }
