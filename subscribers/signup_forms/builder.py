"""The Django forms of the creator's form builder: create a form, and edit every part of it.

They validate what the creator typed; the writes are form_services' (form_create, form_update,
form_incentive_file_set/remove). FormBuilderForm never saves: its `instance` is the unsaved form
with the valid values applied, which is what the live preview shows.
"""

from __future__ import annotations

from django import forms
from django.core.validators import URLValidator
from django.template.defaultfilters import filesizeformat

from convertkit.models import Account
from sequences.models import Sequence
from subscribers.forms import account_sequences_field, one_line
from subscribers.models import CustomField, Form
from subscribers.signup_forms.mail import CONFIRMATION_PLACEHOLDER, PLACEHOLDER_RE
from subscribers.signup_forms.services import (
    EDITABLE_ATTRIBUTES,
    MAX_FIELD_LABEL_LENGTH,
    MAX_INCENTIVE_FILE_BYTES,
    STANDARD_FIELD_LABELS,
    FormFieldsInvalid,
    form_fields_clean,
)
from subscribers.validation import tag_names_parse

MAX_TAG_LIST_LENGTH = 2000
# Attributes typed on one line: a line break in a subject would be a header injection, and
# elsewhere it would be lost by the one-line places they are shown in.
ONE_LINE_ATTRIBUTES = {
    "name": "form name",
    "headline": "headline",
    "button_text": "button text",
    "consent_text": "consent text",
    "success_message": "message",
    "confirmation_subject": "subject",
    "incentive_subject": "subject",
}
MULTI_LINE_ATTRIBUTES = ("description", "confirmation_body", "incentive_body")


class WebURLField(forms.URLField):
    """An http(s) address only: no javascript:, data: or ftp: links on a subscriber's screen."""

    default_validators = [URLValidator(schemes=["http", "https"])]
    default_error_messages = {"invalid": "Enter a web address starting with http:// or https://."}


class FormCreateForm(forms.Form):
    name = forms.CharField(
        label="Form name",
        max_length=Form._meta.get_field("name").max_length,
        help_text="For you only, e.g. “Homepage sign-up” or “Free guide”. Subscribers do not see it.",
    )
    style = forms.ChoiceField(
        label="Style",
        choices=Form.Style.choices,
        initial=Form.Style.INLINE,
        widget=forms.RadioSelect,
    )

    def clean_name(self) -> str:
        return one_line(self.cleaned_data["name"], "form name")


class FieldRowForm(forms.Form):
    """One row of the builder's field list: a field the form may ask for."""

    key = forms.CharField(max_length=50, widget=forms.HiddenInput)
    shown = forms.BooleanField(label="Ask for it", required=False)
    label = forms.CharField(label="Label", max_length=MAX_FIELD_LABEL_LENGTH, required=False)
    required = forms.BooleanField(label="Required", required=False)
    position = forms.IntegerField(label="Position", min_value=1, max_value=999)

    def clean_label(self) -> str:
        return one_line(self.cleaned_data["label"], "label")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("key") == "email":
            cleaned["shown"] = cleaned["required"] = True
        return cleaned


class BaseFieldRowFormSet(forms.BaseFormSet):
    """The field list; `cleaned_fields` after validation is the list form_update stores."""

    def __init__(self, *args, account: Account, names: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.account = account
        self.cleaned_fields: list[dict] = []
        for row in self.forms:
            key = str(row["key"].value() or "")
            row.is_email = key == "email"
            row.field_name = names.get(key) or f"{key[:50]} (not a field of this account)"
            row.missing = key not in names
            for name, aria_label in (
                ("label", f"Label for {row.field_name}"),
                ("required", f"{row.field_name} required"),
                ("position", f"Position of {row.field_name}"),
            ):
                row.fields[name].widget.attrs["aria-label"] = aria_label

    def clean(self):
        if any(self.errors):
            return
        shown = sorted(
            (row.cleaned_data["position"], index, row.cleaned_data)
            for index, row in enumerate(self.forms)
            if row.cleaned_data.get("shown")
        )
        try:
            self.cleaned_fields = form_fields_clean(
                account=self.account,
                fields=[
                    {"key": data["key"], "label": data["label"], "required": data["required"]}
                    for _, _, data in shown
                ],
            )
        except FormFieldsInvalid as error:
            raise forms.ValidationError(
                f"{error} It may have been deleted: untick it, or create the field again."
            ) from None


def field_rows_initial(fields: list[dict], custom_fields: list[CustomField]) -> list[dict]:
    """The rows the builder shows: the form's fields in their order, then every other field the
    account has (first name, custom fields), not asked for."""
    rows = [{**field, "shown": True} for field in fields]
    asked = {field["key"] for field in fields}
    rows += [
        {"key": key, "label": label, "required": False, "shown": False}
        for key, label in [
            ("first_name", STANDARD_FIELD_LABELS["first_name"]),
            *((custom_field.key, custom_field.label) for custom_field in custom_fields),
        ]
        if key not in asked
    ]
    return [{**row, "position": number} for number, row in enumerate(rows, start=1)]


class FormBuilderForm(forms.ModelForm):
    """Every editable part of a form. Pass an unsaved copy of the form as `instance`: validation
    applies the valid values to it (Django's ModelForm does), and nothing here saves it."""

    tag_names = forms.CharField(
        label="Tags",
        required=False,
        max_length=MAX_TAG_LIST_LENGTH,
        help_text="Separate tags with commas. New tags are created when you save.",
        widget=forms.TextInput(attrs={"list": "tag-names", "autocomplete": "off"}),
    )
    redirect_url = WebURLField(
        label="Redirect to",
        required=False,
        max_length=Form._meta.get_field("redirect_url").max_length,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/thank-you"}),
    )
    incentive_url = WebURLField(
        label="Link to the incentive",
        required=False,
        max_length=Form._meta.get_field("incentive_url").max_length,
        help_text="A page or file hosted elsewhere, e.g. https://example.com/guide.pdf.",
        widget=forms.URLInput(attrs={"placeholder": "https://"}),
    )
    incentive_file = forms.FileField(
        label="Or upload a file",
        required=False,
        help_text=f"Up to {filesizeformat(MAX_INCENTIVE_FILE_BYTES)}, e.g. a PDF. Uploaded when you "
        "save.",
    )
    incentive_file_remove = forms.BooleanField(label="Remove the file", required=False)
    sequences = forms.ModelMultipleChoiceField(
        label="Add subscribers to sequences",
        queryset=Sequence.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Everyone who signs up enters these sequences: at once, or once they confirm "
        "when double opt-in is on. Someone already in a sequence stays where they are.",
    )

    class Meta:
        model = Form
        fields = list(EDITABLE_ATTRIBUTES)
        labels = {
            "name": "Form name",
            "headline": "Headline",
            "description": "Description",
            "button_text": "Button text",
            "consent_text": "Consent text",
            "style": "Style",
            "success_action": "After someone signs up",
            "success_message": "Message",
            "double_opt_in": "Double opt-in: ask new subscribers to confirm by email",
            "confirmation_subject": "Confirmation email subject",
            "confirmation_body": "Confirmation email body",
            "incentive_subject": "Incentive email subject",
            "incentive_body": "Incentive email body",
        }
        help_texts = {
            "name": "For you only; subscribers do not see it.",
            "consent_text": "Shown under the button: what subscribers agree to.",
            "double_opt_in": "Recommended: only people who can read the address get on your list.",
            "confirmation_body": "Must contain {{ confirmation_url }}, the link that confirms. "
            "{{ first_name }} is replaced by the subscriber's first name.",
            "incentive_body": "{{ incentive_url }} is replaced by the download link "
            "(added at the end if missing); {{ first_name }} by the first name.",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "style": forms.RadioSelect,
            "success_action": forms.RadioSelect,
            "confirmation_body": forms.Textarea(attrs={"rows": 7}),
            "incentive_body": forms.Textarea(attrs={"rows": 5}),
        }

    def __init__(
        self,
        data=None,
        files=None,
        *,
        instance: Form,
        custom_fields: list[CustomField],
        tag_names: list[str],
        sequence_ids: tuple[int, ...] | list[int] = (),
    ):
        super().__init__(
            data,
            files,
            instance=instance,
            initial={"tag_names": ", ".join(tag_names), "sequences": list(sequence_ids)},
        )
        account_sequences_field(self.fields["sequences"], instance.account_id)
        self.has_incentive_file = hasattr(instance, "incentive_file")
        names = {
            **STANDARD_FIELD_LABELS,
            **{custom_field.key: custom_field.label for custom_field in custom_fields},
        }
        rows = field_rows_initial(instance.fields, custom_fields)
        # Room for every field of the account and every stale one the form still names.
        room = len(names) + len(instance.fields)
        FieldRowFormSet = forms.formset_factory(
            FieldRowForm,
            formset=BaseFieldRowFormSet,
            extra=0,
            max_num=room,
            absolute_max=room,
            validate_max=True,
        )
        self.field_rows = FieldRowFormSet(
            data, initial=rows, prefix="fields", account=instance.account, names=names
        )

    def is_valid(self) -> bool:
        rows_valid = self.field_rows.is_valid()
        return super().is_valid() and rows_valid

    @property
    def has_errors(self) -> bool:
        return self.is_bound and not self.is_valid()

    @property
    def error_labels(self) -> list[str]:
        """The labels of the invalid parts, for the preview's "not shown until fixed" note."""
        labels = [self[name].label for name in self.errors if name in self.fields]
        if any(self.field_rows.errors) or self.field_rows.non_form_errors():
            labels.insert(0, "Fields")
        return labels

    def clean(self):
        cleaned = super().clean()
        for name, what in ONE_LINE_ATTRIBUTES.items():
            if cleaned.get(name):
                try:
                    cleaned[name] = one_line(cleaned[name], what)
                except forms.ValidationError as error:
                    self.add_error(name, error)
        # The browser sends line breaks as CRLF: stored as LF, an unchanged text compares equal.
        for name in MULTI_LINE_ATTRIBUTES:
            if name in cleaned:
                cleaned[name] = cleaned[name].replace("\r\n", "\n").replace("\r", "\n")
        if cleaned.get("success_action") == Form.SuccessAction.REDIRECT:
            if not cleaned.get("redirect_url") and "redirect_url" not in self.errors:
                self.add_error("redirect_url", "Enter the address to send new subscribers to.")
        elif "success_message" in cleaned and not cleaned["success_message"]:
            self.add_error("success_message", "Write the message new subscribers see.")
        body = cleaned.get("confirmation_body")
        if body is not None and not any(
            match[1] == "confirmation_url" for match in PLACEHOLDER_RE.finditer(body)
        ):
            self.add_error(
                "confirmation_body",
                f"Put {CONFIRMATION_PLACEHOLDER} in the body: it becomes the link new "
                "subscribers follow to confirm.",
            )
        keeps_file = self.has_incentive_file and not cleaned.get("incentive_file_remove")
        if cleaned.get("incentive_url") and (cleaned.get("incentive_file") or keeps_file):
            self.add_error(
                "incentive_url",
                "Give either a link or a file, not both: clear the link, or remove the file.",
            )
        return cleaned

    def clean_tag_names(self) -> list[str]:
        return tag_names_parse(one_line(self.cleaned_data["tag_names"], "tag list"))

    def clean_incentive_file(self):
        upload = self.cleaned_data["incentive_file"]
        if upload is not None and upload.size > MAX_INCENTIVE_FILE_BYTES:
            raise forms.ValidationError(
                f"The file is too large: an incentive file can be at most "
                f"{filesizeformat(MAX_INCENTIVE_FILE_BYTES)}."
            )
        return upload

    def values(self) -> dict:
        """The attributes for form_update."""
        return {name: self.cleaned_data[name] for name in EDITABLE_ATTRIBUTES}
