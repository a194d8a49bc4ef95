from __future__ import annotations

from django import forms
from django.core.validators import RegexValidator
from django.urls import reverse
from django.utils.html import format_html

from sequences.models import Sequence
from subscribers.models import CustomField, Subscriber, Tag
from subscribers.selectors import SubscriberFilter
from subscribers.signup_forms.embed import HONEYPOT_FIELD, TIME_ZONE_FIELD
from subscribers.validation import (
    CONTROL_CHARACTERS_RE,
    MAX_EMAIL_LENGTH,
    MAX_FIELD_VALUE_LENGTH,
    MAX_TAG_NAME_LENGTH,
    normalize_email,
    tag_names_parse,
)

# Keys a custom field may not take: the subscriber's own attributes use them in merge tags, and
# public forms post hidden inputs under HONEYPOT_FIELD and TIME_ZONE_FIELD.
RESERVED_FIELD_KEYS = {
    "email",
    "first_name",
    "id",
    "state",
    "tags",
    "source",
    HONEYPOT_FIELD,
    TIME_ZONE_FIELD,
}


def one_line(value: str, what: str) -> str:
    """The value stripped; ValidationError if it holds a line break or control character."""
    if CONTROL_CHARACTERS_RE.search(value):
        raise forms.ValidationError(f"The {what} must be on one line, without control characters.")
    return value.strip()


def _tag_choices(tags: list[Tag], empty_label: str) -> list[tuple[str, str]]:
    return [("", empty_label)] + [(str(tag.id), tag.name) for tag in tags]


class SubscriberFilterForm(forms.Form):
    """The list's search and filters. `tags` is the account's tag list, read once by the view."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=MAX_EMAIL_LENGTH,
        help_text="The start of an email address or a first name.",
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}),
    )
    state = forms.ChoiceField(
        label="State", required=False, choices=[("", "All states"), *Subscriber.State.choices]
    )
    tag = forms.TypedChoiceField(label="Tag", required=False, coerce=int, empty_value=None)

    def __init__(self, *args, tags: list[Tag], **kwargs):
        super().__init__(*args, **kwargs)
        self.tags_by_id = {tag.id: tag for tag in tags}
        self.fields["tag"].choices = _tag_choices(tags, "All tags")

    def clean_q(self) -> str:
        return " ".join(self.cleaned_data["q"].split())

    def filters(self) -> SubscriberFilter:
        """The valid part of the filter (an invalid field is left out and shows its error)."""
        data = getattr(self, "cleaned_data", {})
        return SubscriberFilter(
            state=data.get("state") or "", tag_id=data.get("tag"), q=data.get("q") or ""
        )

    @property
    def filter_tag(self) -> Tag | None:
        """The tag filtered on, with its counter; None without a valid one."""
        return self.tags_by_id.get(self.filters().tag_id)


class SubscriberForm(forms.Form):
    """Edit a subscriber: address, first name and one input per custom field of the account."""

    email = forms.CharField(
        label="Email address",
        max_length=MAX_EMAIL_LENGTH + 66,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    first_name = forms.CharField(label="First name", required=False, max_length=255, strip=False)

    def __init__(self, *args, custom_fields: list[CustomField], **kwargs):
        super().__init__(*args, **kwargs)
        self.custom_fields = custom_fields
        for custom_field in custom_fields:
            self.fields[self.custom_field_name(custom_field)] = forms.CharField(
                label=custom_field.label,
                required=False,
                max_length=MAX_FIELD_VALUE_LENGTH,
                help_text="Leave empty to clear.",
            )
        self.order_fields(
            ["email", "first_name", *(self.custom_field_name(field) for field in custom_fields)]
        )

    @staticmethod
    def custom_field_name(custom_field: CustomField) -> str:
        return f"field_{custom_field.key}"

    @classmethod
    def initial_for(cls, subscriber: Subscriber, custom_fields: list[CustomField]) -> dict:
        initial = {"email": subscriber.email, "first_name": subscriber.first_name}
        for custom_field in custom_fields:
            value = subscriber.fields.get(custom_field.key, "")
            initial[cls.custom_field_name(custom_field)] = "" if value is None else str(value)
        return initial

    def clean_email(self) -> str:
        return normalize_email(self.cleaned_data["email"])

    def clean_first_name(self) -> str:
        return one_line(self.cleaned_data["first_name"], "first name")

    def clean(self):
        cleaned = super().clean()
        for custom_field in self.custom_fields:
            name = self.custom_field_name(custom_field)
            if name in cleaned:
                try:
                    cleaned[name] = one_line(cleaned[name], custom_field.label)
                except forms.ValidationError as error:
                    self.add_error(name, error)
        return cleaned

    def custom_field_values(self) -> dict[str, str]:
        return {
            custom_field.key: self.cleaned_data[self.custom_field_name(custom_field)]
            for custom_field in self.custom_fields
        }

    def add_duplicate_error(self, existing: Subscriber) -> None:
        self.add_error(
            "email",
            forms.ValidationError(
                format_html(
                    '{} is already on your list: <a href="{}">see this subscriber</a>.',
                    existing.email,
                    reverse("subscriber_detail", args=[existing.id]),
                ),
                code="duplicate",
            ),
        )

    def add_suppressed_error(self) -> None:
        self.add_error(
            "email",
            forms.ValidationError(
                "This address was deleted from your list at its owner's request and cannot be "
                "used again unasked. Add it from “Add subscriber” if they asked to come back.",
                code="suppressed",
            ),
        )


class SubscriberCreateForm(SubscriberForm):
    tags = forms.CharField(
        label="Tags",
        required=False,
        max_length=2000,
        help_text="Separate tags with commas. New tags are created.",
        widget=forms.TextInput(attrs={"list": "tag-names", "autocomplete": "off"}),
    )
    readd = forms.BooleanField(
        label="This person asked to be added again",
        required=False,
        help_text="Only if this address was deleted before and its owner asked to come back.",
    )

    def clean_tags(self) -> list[str]:
        return tag_names_parse(one_line(self.cleaned_data["tags"], "tag list"))

    def add_suppressed_error(self) -> None:
        self.add_error(
            "email",
            forms.ValidationError(
                "This address was deleted from your list, so it cannot be added back unasked. "
                "If its owner asked to be added again, tick “This person asked to be added "
                "again”.",
                code="suppressed",
            ),
        )


class TagNameForm(forms.Form):
    name = forms.CharField(
        label="Tag name",
        max_length=MAX_TAG_NAME_LENGTH,
        widget=forms.TextInput(attrs={"list": "tag-names", "autocomplete": "off"}),
    )

    def clean_name(self) -> str:
        name = " ".join(one_line(self.cleaned_data["name"], "tag name").split())
        if not name:
            raise forms.ValidationError("A tag needs a name.")
        return name


class CustomFieldForm(forms.Form):
    label = forms.CharField(label="Label", max_length=100, help_text="Shown on forms and pages.")
    key = forms.CharField(
        label="Key",
        max_length=50,
        help_text="Used in imports and merge tags: lower-case letters, digits and underscores, "
        "starting with a letter, e.g. company_name.",
        validators=[
            RegexValidator(
                r"^[a-z][a-z0-9_]*\Z",
                "Use lower-case letters, digits and underscores, starting with a letter.",
            )
        ],
    )

    def clean_label(self) -> str:
        return one_line(self.cleaned_data["label"], "label")

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        if key in RESERVED_FIELD_KEYS:
            raise forms.ValidationError(f"“{key}” is a built-in field; choose another key.")
        return key


class BulkActionForm(forms.Form):
    ACTION_CHOICES = [
        ("tag", "Add a tag"),
        ("untag", "Remove a tag"),
        ("sequence", "Add to a sequence"),
        ("unsubscribe", "Unsubscribe"),
        ("delete", "Delete"),
    ]
    NEEDS_TAG = {"tag", "untag"}
    NEEDS_SEQUENCE = {"sequence"}

    action = forms.ChoiceField(label="Action", choices=ACTION_CHOICES)
    target_tag = forms.TypedChoiceField(
        label="Tag to add or remove", required=False, coerce=int, empty_value=None
    )
    target_sequence = forms.TypedChoiceField(
        label="Sequence to add them to", required=False, coerce=int, empty_value=None
    )

    def __init__(self, *args, tags: list[Tag], sequences: list[Sequence], **kwargs):
        super().__init__(*args, **kwargs)
        self.tags_by_id = {tag.id: tag for tag in tags}
        self.fields["target_tag"].choices = _tag_choices(tags, "Choose a tag")
        self.sequences_by_id = {sequence.id: sequence for sequence in sequences}
        self.fields["target_sequence"].choices = [("", "Choose a sequence")] + [
            (str(sequence.id), sequence.name) for sequence in sequences
        ]

    def clean(self):
        cleaned = super().clean()
        if (
            cleaned.get("action") in self.NEEDS_TAG
            and not cleaned.get("target_tag")
            and "target_tag" not in self.errors
        ):
            self.add_error("target_tag", "Choose the tag to add or remove.")
        if (
            cleaned.get("action") in self.NEEDS_SEQUENCE
            and not cleaned.get("target_sequence")
            and "target_sequence" not in self.errors
        ):
            self.add_error("target_sequence", "Choose the sequence to add them to.")
        return cleaned

    @property
    def tag(self) -> Tag | None:
        if self.cleaned_data.get("action") not in self.NEEDS_TAG:
            return None
        return self.tags_by_id.get(self.cleaned_data.get("target_tag"))

    @property
    def sequence(self) -> Sequence | None:
        if self.cleaned_data.get("action") not in self.NEEDS_SEQUENCE:
            return None
        return self.sequences_by_id.get(self.cleaned_data.get("target_sequence"))


def account_sequences_field(field: forms.ModelChoiceField, account_id: int) -> None:
    """Offers the account's own sequences only: another account's id is "not one of the
    available choices", a form error."""
    field.queryset = Sequence.objects.filter(account_id=account_id).order_by("name", "id")


class TagSequencesForm(forms.Form):
    """The built-in "when this tag is added, add to these sequences"."""

    sequences = forms.ModelMultipleChoiceField(
        label="When this tag is added to a subscriber, add them to",
        queryset=Sequence.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="However the tag is added: on a subscriber's page, by a form, a bulk action or "
        "an import. Someone already in a sequence stays where they are.",
    )

    def __init__(self, *args, account_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        account_sequences_field(self.fields["sequences"], account_id)


class SubscriberSequenceForm(forms.Form):
    """The subscriber page's "Add to sequence"; `sequences` are the account's, read once by the
    view (another account's id is not one of the choices)."""

    sequence = forms.TypedChoiceField(label="Sequence", coerce=int)

    def __init__(self, *args, sequences: list[Sequence], **kwargs):
        super().__init__(*args, **kwargs)
        self.sequences_by_id = {sequence.id: sequence for sequence in sequences}
        self.fields["sequence"].choices = [("", "Choose a sequence")] + [
            (str(sequence.id), sequence.name) for sequence in sequences
        ]

    @property
    def chosen(self) -> Sequence:
        return self.sequences_by_id[self.cleaned_data["sequence"]]
