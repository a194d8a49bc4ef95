"""The Django forms of the broadcast editor: the email and its audience, and the schedule.

They validate what the creator typed; the writes are broadcasts.services'. EmailForm (the
email's content, which a sequence email's editor shares) never saves: `draft(broadcast)` is an
unsaved copy with the valid values applied, which is what the live preview renders and the
recipient count counts.
"""

from __future__ import annotations

import copy
from datetime import datetime

from django import forms
from django.utils import timezone

from broadcasts.models import Broadcast
from broadcasts.rendering import body_html_problem
from subscribers.forms import one_line
from subscribers.models import Tag

# Far more than any email needs (Gmail clips messages past 102 KB), small enough for a request.
MAX_BODY_LENGTH = 200_000
AUDIENCE_FIELDS = (
    "include_tag_ids",
    "include_match",
    "exclude_tag_ids",
    "engagement",
    "engagement_days",
    "not_opened_broadcast_id",
)
# Ten years: longer than any list's history, and far from overflowing a date.
MAX_ENGAGEMENT_DAYS = 3650
MACHINE_OPENS_NOTE = (
    "Only a person's opens and clicks count: the opens Apple Mail Privacy Protection makes by "
    "fetching every image, and the clicks of link scanners, do not."
)
# The email itself, as EmailForm holds it; a broadcast adds its description.
EMAIL_FIELDS = ("subject", "preview_text", "body_format", "body")
CONTENT_FIELDS = ("description", *EMAIL_FIELDS)


class EmailForm(forms.Form):
    """An email's content (subject, preview text, body), validated: what the broadcast editor
    and a sequence email's editor share, with the live preview of `draft`."""

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
    body_format = forms.ChoiceField(
        label="Write in",
        choices=Broadcast.BodyFormat.choices,
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

    def clean_subject(self) -> str:
        return one_line(self.cleaned_data["subject"], "subject")

    def clean_preview_text(self) -> str:
        return one_line(self.cleaned_data["preview_text"], "preview text")

    def clean_body(self) -> str:
        """A body the renderers cannot take (too large, or nested too deep) is not saved."""
        body = self.cleaned_data["body"]
        body_format = self.cleaned_data.get("body_format") or Broadcast.BodyFormat.MARKDOWN
        problem = body_html_problem(body=body, body_format=body_format)
        if problem:
            raise forms.ValidationError(problem)
        return body

    def draft(self, broadcast: Broadcast) -> Broadcast:
        """An unsaved copy of `broadcast` with every valid value of the form applied; an
        invalid field keeps the saved value."""
        draft = copy.copy(broadcast)
        if self.is_bound:
            self.is_valid()
            for name, value in self.cleaned_data.items():
                setattr(draft, name, value)
        return draft

    @property
    def invalid_labels(self) -> list[str]:
        return [self.fields[name].label for name in self.errors if name in self.fields]


class BroadcastForm(EmailForm):
    """The broadcast editor: the email, its description, and its audience."""

    field_order = [*CONTENT_FIELDS, *AUDIENCE_FIELDS]

    description = forms.CharField(
        label="Description",
        required=False,
        max_length=Broadcast._meta.get_field("description").max_length,
        help_text="Only you see it: it names the broadcast in your lists and reports. Empty: "
        "the subject, as a sample subscriber gets it.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    include_tag_ids = forms.TypedMultipleChoiceField(
        label="Only subscribers tagged with",
        required=False,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
    )
    include_match = forms.ChoiceField(
        label="Match",
        required=False,
        choices=Broadcast.TagMatch.choices,
        initial=Broadcast.TagMatch.ANY,
        widget=forms.RadioSelect,
    )
    exclude_tag_ids = forms.TypedMultipleChoiceField(
        label="Leave out subscribers tagged with any of",
        required=False,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
    )

    engagement = forms.ChoiceField(
        label="Engagement",
        required=False,
        choices=Broadcast.Engagement.choices,
        initial=Broadcast.Engagement.ANYONE,
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
        """`sent_broadcasts`: (id, label) of the account's broadcasts that "did not open" may
        name, newest first."""
        super().__init__(*args, **kwargs)
        choices = [(tag.id, tag.name) for tag in tags]
        self.fields["include_tag_ids"].choices = choices
        self.fields["exclude_tag_ids"].choices = choices
        self.tag_names = {tag.id: tag.name for tag in tags}
        self.fields["not_opened_broadcast_id"].choices = [("", "Anyone, opened or not")] + list(
            sent_broadcasts
        )

    @staticmethod
    def initial_for(broadcast: Broadcast) -> dict:
        return {name: getattr(broadcast, name) for name in CONTENT_FIELDS + AUDIENCE_FIELDS}

    def clean_description(self) -> str:
        return one_line(self.cleaned_data["description"], "description")

    def clean_include_match(self) -> str:
        # Not shown (so not posted) while the account has no tags.
        return self.cleaned_data["include_match"] or Broadcast.TagMatch.ANY

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
        if engagement == Broadcast.Engagement.ANYONE:
            self.errors.pop("engagement_days", None)
            cleaned["engagement_days"] = None
            return
        if engagement and "engagement_days" not in self.errors and not cleaned["engagement_days"]:
            self.add_error("engagement_days", "Enter the number of days, such as 30.")
        if "engagement" in self.errors or "engagement_days" in self.errors:
            cleaned.pop("engagement", None)
            cleaned.pop("engagement_days", None)

    def values(self) -> dict:
        """The keyword arguments of services.broadcast_update, once the form is valid."""
        return {name: self.cleaned_data[name] for name in CONTENT_FIELDS + AUDIENCE_FIELDS}


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
