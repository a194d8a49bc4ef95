"""The Django forms of the broadcast editor: the email and its audience, and the schedule.

They validate what the creator typed; the writes are broadcasts.services'. EmailForm (the
email's content, which a sequence email's editor shares) never saves: `draft(broadcast)` is an
unsaved copy with the valid values applied, which is what the live preview renders and the
recipient count counts.
"""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.utils import timezone

from broadcasts.models import Broadcast
from broadcasts.rendering import DocumentInvalid, body_html_problem
from broadcasts.rendering.document import MAX_DOCUMENT_LENGTH, document_parse
from content.email_templates.designs import design_choices
from convertkit.forms import DraftForm
from subscribers.forms import one_line
from subscribers.segments.forms import FILTER_FIELDS, AudienceFilterForm

# Far more than any email needs (Gmail clips messages past 102 KB), small enough for a request;
# the visual document's own limit.
MAX_BODY_LENGTH = MAX_DOCUMENT_LENGTH
AUDIENCE_FIELDS = (*FILTER_FIELDS, "segment_id")
# The email itself, as EmailForm holds it; a broadcast adds its description.
EMAIL_FIELDS = ("subject", "preview_text", "email_template", "body_format", "body")
CONTENT_FIELDS = ("description", *EMAIL_FIELDS)


class EmailForm(DraftForm):
    """An email's content (subject, preview text, template, body), validated: what the
    broadcast editor and a sequence email's editor share, with the live preview of `draft`.
    `account`: whose templates may be chosen (the built-ins and its own)."""

    subject = forms.CharField(
        label="Subject",
        required=False,
        max_length=Broadcast._meta.get_field("subject").max_length,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    preview_text = forms.CharField(
        label="Preview text",
        required=False,
        max_length=Broadcast._meta.get_field("preview_text").max_length,
        help_text="Shown after the subject in most inboxes, not in the email itself.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    # Left out of a post (an older page): the email keeps its template.
    email_template = forms.ChoiceField(
        label="Template",
        required=False,
        help_text="The design around your content: colours, font, header and footer.",
        error_messages={"invalid_choice": "Choose one of your templates."},
    )
    body_format = forms.ChoiceField(
        label="Write in",
        # The visual editor first: new emails start in it; Markdown and HTML for those who prefer.
        choices=sorted(
            Broadcast.BodyFormat.choices,
            key=lambda choice: choice[0] != Broadcast.BodyFormat.VISUAL,
        ),
        initial=Broadcast.BodyFormat.MARKDOWN,
        widget=forms.RadioSelect,
    )
    body = forms.CharField(
        label="Body",
        required=False,
        strip=False,
        max_length=MAX_BODY_LENGTH,
        widget=forms.Textarea(attrs={"rows": 18, "class": "code", "spellcheck": "true"}),
        help_text='Personalise with Liquid: {{ subscriber.first_name | default: "friend" }}, '
        "your custom fields as {{ subscriber.<em>key</em> }}, {{ unsubscribe_url }}. "
        "The footer with your postal address and the unsubscribe link is added for you.",
    )

    def __init__(self, *args, account, **kwargs):
        super().__init__(*args, **kwargs)
        choices = design_choices(account=account)
        chosen = self.initial.get("email_template")
        if chosen and chosen not in {key for key, _name in choices}:
            choices.append((chosen, "A deleted template (Classic)"))
        field = self.fields["email_template"]
        field.choices = choices
        field.initial = account.default_email_template

    def clean_email_template(self) -> str:
        return self.cleaned_data["email_template"] or self.initial.get(
            "email_template", self.fields["email_template"].initial
        )

    def clean_subject(self) -> str:
        return one_line(self.cleaned_data["subject"], "subject")

    def clean_preview_text(self) -> str:
        return one_line(self.cleaned_data["preview_text"], "preview text")

    def clean_body(self) -> str:
        """A body the renderers cannot take (too large, or nested too deep), or a visual
        document that breaks its schema, is not saved."""
        body = self.cleaned_data["body"]
        body_format = self.cleaned_data.get("body_format") or Broadcast.BodyFormat.MARKDOWN
        return body_clean(body, body_format=body_format)


def body_clean(body: str, *, body_format: str) -> str:
    """`body` when it can be rendered; else ValidationError, each of a visual document's
    problems a message of its own ("Block 3 (image): src must be an http or https URL")."""
    if body_format == Broadcast.BodyFormat.VISUAL:
        try:
            document_parse(body)
        except DocumentInvalid as invalid:
            raise forms.ValidationError(invalid.problems) from None
    problem = body_html_problem(body=body, body_format=body_format)
    if problem:
        raise forms.ValidationError(problem)
    return body


class BroadcastForm(EmailForm, AudienceFilterForm):
    """The broadcast editor: the email, its description, and its audience: the filters every
    audience has (AudienceFilterForm) and the segment it may be narrowed to. `segments`:
    (id, name) of the account's segments."""

    field_order = [*CONTENT_FIELDS, "segment_id"]
    # Broadcast fields saved as they are, beside the email and its audience.
    OTHER_FIELDS = ("public",)

    description = forms.CharField(
        label="Description",
        required=False,
        max_length=Broadcast._meta.get_field("description").max_length,
        help_text="Only you see it: it names the broadcast in your lists and reports. Empty: "
        "the subject, as a sample subscriber gets it.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    segment_id = forms.TypedChoiceField(
        label="Segment",
        required=False,
        coerce=int,
        empty_value=None,
        error_messages={"invalid_choice": "Choose one of your segments."},
        help_text="Only the segment's members, narrowed further by the filters below.",
    )
    public = forms.BooleanField(
        label="Publish to the archive",
        required=False,
        help_text="Once sent, anyone can read it on your public archive page, without "
        "anyone's personal data.",
    )

    def __init__(self, *args, segments: list[tuple[int, str]], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "All subscribers"), *segments]
        chosen = self.initial.get("segment_id")
        if chosen is not None and chosen not in {segment_id for segment_id, _name in segments}:
            choices.append((chosen, "A deleted segment: nobody"))
        self.fields["segment_id"].choices = choices

    @staticmethod
    def initial_for(broadcast: Broadcast) -> dict:
        return {
            name: getattr(broadcast, name)
            for name in CONTENT_FIELDS + AUDIENCE_FIELDS + BroadcastForm.OTHER_FIELDS
        }

    def clean_description(self) -> str:
        return one_line(self.cleaned_data["description"], "description")

    def values(self) -> dict:
        """The keyword arguments of services.broadcast_update, once the form is valid."""
        return {
            name: self.cleaned_data[name]
            for name in CONTENT_FIELDS + AUDIENCE_FIELDS + self.OTHER_FIELDS
        }


class ScheduleForm(forms.Form):
    """When to send, typed in the account's time zone (the active one for the request)."""

    # Not marked required: the editor shows it beside fields that Save needs without it.
    send_at = forms.DateTimeField(
        label="Send at",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        error_messages={"invalid": "Enter a date and a time, such as 2030-05-01 09:30."},
    )

    def __init__(self, *args, now: datetime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = now or timezone.now()
        zone = timezone.get_current_timezone_name()
        self.fields["send_at"].help_text = f"In your account's time zone, {zone}."

    def clean_send_at(self) -> datetime:
        send_at = self.cleaned_data["send_at"]
        if send_at is None:
            raise forms.ValidationError("Choose the date and time to send at.")
        if send_at <= self.now:
            shown = f"{timezone.localtime(send_at):%-d %b %Y, %H:%M}"
            raise forms.ValidationError(
                f"{shown} ({timezone.get_current_timezone_name()}) has already passed. "
                "Choose a later time, or send now."
            )
        return send_at
