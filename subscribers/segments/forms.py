"""The audience filters' form fields (shared by the broadcast editor and the segment editor) and
the segment editor's form, with its custom field conditions.

The choices offered are the account's own tags, forms, custom fields and sent broadcasts, so an
id of another account's is refused with a clear message and nothing is saved; ids already saved
that were deleted since stay offered, named as deleted, so that saving something else never
drops one silently (which would widen an "all of" audience).
"""

from __future__ import annotations

from django import forms

from convertkit.forms import DraftForm, ids_field
from subscribers.forms import one_line
from subscribers.models import (
    MAX_ENGAGEMENT_DAYS,
    CustomField,
    Engagement,
    Form,
    Segment,
    Tag,
    TagMatch,
)
from subscribers.segments import services

MACHINE_OPENS_NOTE = (
    "Only a person's opens and clicks count: the opens Apple Mail Privacy Protection makes by "
    "fetching every image, and the clicks of link scanners, do not."
)
# The audience filters both editors save, as their models name them.
FILTER_FIELDS = (
    "include_tag_ids",
    "include_match",
    "exclude_tag_ids",
    "engagement",
    "engagement_days",
    "not_opened_broadcast_id",
)
# Blank custom field conditions offered below the saved ones.
BLANK_FIELD_CONDITIONS = 2


def _deleted_choices(saved: list[int], existing: set[int], label: str) -> list[tuple[int, str]]:
    return [(item_id, label) for item_id in dict.fromkeys(saved) if item_id not in existing]


class AudienceFilterForm(DraftForm):
    """Tags (any or all of, and left out) and engagement filters: what a broadcast's and a
    segment's audience both have. `tags`: the account's; `sent_broadcasts`: (id, label) of
    those "did not open" may name (broadcasts.selectors.sent_broadcast_choices)."""

    include_tag_ids = ids_field(
        "Only subscribers tagged with",
        invalid="Choose among your tags: %(value)s is not one of them.",
    )
    include_match = forms.ChoiceField(
        label="Match",
        required=False,
        choices=TagMatch.choices,
        initial=TagMatch.ANY,
        widget=forms.RadioSelect,
    )
    exclude_tag_ids = ids_field(
        "Leave out subscribers tagged with any of",
        invalid="Choose among your tags: %(value)s is not one of them.",
    )
    engagement = forms.ChoiceField(
        label="Engagement",
        required=False,
        choices=Engagement.choices,
        initial=Engagement.ANYONE,
        widget=forms.RadioSelect,
    )
    engagement_days = forms.IntegerField(
        label="In the last (days)",
        required=False,
        min_value=1,
        max_value=MAX_ENGAGEMENT_DAYS,
        widget=forms.NumberInput(attrs={"min": 1, "max": MAX_ENGAGEMENT_DAYS}),
        error_messages={
            "invalid": "Enter a number of days, such as 30.",
            "min_value": "Enter at least 1 day.",
        },
        help_text=MACHINE_OPENS_NOTE,
    )
    not_opened_broadcast_id = forms.TypedChoiceField(
        label="Only those who did not open",
        required=False,
        coerce=int,
        empty_value=None,
        error_messages={"invalid_choice": "Choose one of your broadcasts that was sent."},
        help_text="People who were sent that broadcast and have not opened it: a resend to "
        "non-openers. An open by Apple Mail Privacy Protection or a scanner is not an open.",
    )

    def __init__(self, *args, tags: list[Tag], sent_broadcasts: list[tuple[int, str]], **kwargs):
        super().__init__(*args, **kwargs)
        saved = list(self.initial.get("include_tag_ids") or ()) + list(
            self.initial.get("exclude_tag_ids") or ()
        )
        choices = [(tag.id, tag.name) for tag in tags] + _deleted_choices(
            saved, {tag.id for tag in tags}, "A deleted tag"
        )
        self.fields["include_tag_ids"].choices = choices
        self.fields["exclude_tag_ids"].choices = choices
        self.tag_names = dict(choices)
        self.fields["not_opened_broadcast_id"].choices = [("", "Anyone, opened or not")] + list(
            sent_broadcasts
        )

    def clean_include_match(self) -> str:
        # Not shown (so not posted) while the account has no tags.
        return self.cleaned_data["include_match"] or TagMatch.ANY

    def clean(self):
        cleaned = super().clean()
        both = set(cleaned.get("include_tag_ids") or ()) & set(cleaned.get("exclude_tag_ids") or ())
        if both:
            names = ", ".join(sorted(self.tag_names[tag_id] for tag_id in both))
            self.add_error(
                "exclude_tag_ids", f"A tag cannot be both required and left out: {names}."
            )
        self._clean_engagement_pair(cleaned)
        return cleaned

    def _clean_engagement_pair(self, cleaned: dict) -> None:
        """Engagement and its days go together: without engagement the days are dropped (even
        unreadable ones: the creator chose anyone); with it they are required. When either is
        invalid both leave cleaned_data, so a draft keeps the saved pair rather than mixing a
        new kind with the old days."""
        engagement = cleaned.get("engagement")
        if engagement == Engagement.ANYONE:
            self.errors.pop("engagement_days", None)
            cleaned["engagement_days"] = None
            return
        if engagement and "engagement_days" not in self.errors and not cleaned["engagement_days"]:
            self.add_error("engagement_days", "Enter the number of days, such as 30.")
        if "engagement" in self.errors or "engagement_days" in self.errors:
            cleaned.pop("engagement", None)
            cleaned.pop("engagement_days", None)


class FieldConditionForm(forms.Form):
    """One custom field condition; a row left blank is no condition."""

    key = forms.ChoiceField(label="Custom field", required=False)
    op = forms.ChoiceField(
        label="Comparison",
        required=False,
        choices=Segment.FieldOp.choices,
        error_messages={"invalid_choice": "Choose how to compare among those offered."},
    )
    value = forms.CharField(
        label="Value",
        required=False,
        max_length=services.MAX_FIELD_VALUE_LENGTH,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args, custom_fields: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = [("", "Choose a field")] + custom_fields
        self.fields["key"].error_messages["invalid_choice"] = (
            "Choose one of your custom fields: “%(value)s” is not one of them."
        )

    def clean(self):
        cleaned = super().clean()
        if self.errors or not cleaned.get("key"):
            if not self.errors and cleaned.get("value"):
                self.add_error("key", "Choose the custom field to compare.")
            return cleaned
        try:
            cleaned["condition"] = services.field_condition_clean(
                key=cleaned["key"],
                op=cleaned.get("op") or "",
                value=cleaned.get("value") or "",
                keys=[key for key, _label in self.fields["key"].choices if key],
            )
        except services.SegmentInvalid as invalid:
            self.add_error("op" if not cleaned.get("op") else "value", str(invalid))
        return cleaned


FieldConditionFormSet = forms.formset_factory(
    FieldConditionForm,
    extra=0,
    max_num=services.MAX_FIELD_CONDITIONS,
    absolute_max=services.MAX_FIELD_CONDITIONS,
    validate_max=True,
)


class SegmentForm(AudienceFilterForm):
    """The segment editor: its name, the audience filters, the forms joined through, and the
    custom field conditions (a formset, `conditions`, which is_valid() checks too). What needs
    the database (at least one condition, a name not yet taken) is segment_create's and
    segment_update's to check."""

    name = forms.CharField(label="Name", max_length=services.MAX_NAME_LENGTH)
    form_ids = ids_field(
        "Subscribed through any of these forms",
        invalid="Choose among your forms: %(value)s is not one of them.",
    )

    field_order = ["name"]

    def __init__(
        self,
        *args,
        signup_forms: list[Form],
        custom_fields: list[CustomField],
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.fields["include_tag_ids"].label = "Tagged with"
        self.fields["exclude_tag_ids"].label = "Not tagged with any of"
        self.fields["not_opened_broadcast_id"].label = "Did not open"
        self.fields["not_opened_broadcast_id"].help_text = (
            "Those who were sent that broadcast and have not opened it. An open by Apple Mail "
            "Privacy Protection or a scanner is not an open."
        )
        form_choices = [
            (form.id, form.name + (" (archived)" if form.archived_at else ""))
            for form in signup_forms
        ]
        self.fields["form_ids"].choices = form_choices + _deleted_choices(
            list(self.initial.get("form_ids") or ()),
            {form.id for form in signup_forms},
            "A deleted form",
        )
        saved_conditions = list(self.initial.get("field_conditions") or ())
        field_choices = [(field.key, field.label) for field in custom_fields]
        defined = {field.key for field in custom_fields}
        field_choices += [
            (key, f"{key} (deleted field)")
            for key in dict.fromkeys(condition.get("key") for condition in saved_conditions)
            if key and key not in defined
        ]
        self.conditions = FieldConditionFormSet(
            self.data if self.is_bound else None,
            initial=saved_conditions,
            prefix="field",
            form_kwargs={"custom_fields": field_choices},
        )
        if not self.is_bound:
            self.conditions.extra = BLANK_FIELD_CONDITIONS
        self.has_custom_fields = bool(field_choices)

    @staticmethod
    def initial_for(segment: Segment) -> dict:
        return {
            name: getattr(segment, name)
            for name in ("name", "form_ids", "field_conditions", *FILTER_FIELDS)
        }

    def clean_name(self) -> str:
        return " ".join(one_line(self.cleaned_data["name"], "name").split())

    def is_valid(self) -> bool:
        form_valid = super().is_valid()
        return self.conditions.is_valid() and form_valid

    @property
    def has_errors(self) -> bool:
        return bool(self.errors or any(self.conditions.errors) or self.conditions.non_form_errors())

    def field_conditions(self) -> list[dict]:
        return [row["condition"] for row in self.conditions.cleaned_data if row.get("condition")]

    def values(self) -> dict:
        """The keyword arguments of segment_create and segment_update, once valid."""
        return {
            "name": self.cleaned_data["name"],
            "form_ids": self.cleaned_data["form_ids"],
            "field_conditions": self.field_conditions(),
            **{name: self.cleaned_data[name] for name in FILTER_FIELDS},
        }
