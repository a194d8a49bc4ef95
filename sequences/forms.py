"""The forms of the sequence pages: a new sequence's name, the settings, and an email (its content
as broadcasts.forms.EmailForm holds it, plus when it goes out).

They validate what the creator typed, in Kit's words where Kit has them; the writes are
sequences.services', which check again (another account's tag, sequence or segment is refused
there too) and raise SequenceInvalid with the reason.
"""

from __future__ import annotations

from django import forms

from broadcasts.forms import EMAIL_FIELDS, EmailForm
from convertkit.forms import TIME_ZONE_CHOICES, TimeZoneSelect, ids_field
from sequences.models import MAX_DELAY_DAYS, WEEKDAYS, Sequence, SequenceEmail
from sequences.services import EmailValues
from subscribers.forms import one_line

DAY_CHOICES = [(day, name) for day, name in WEEKDAYS]
HOUR_CHOICES = [(hour, f"{hour:02d}:00") for hour in range(24)]
MAX_DELAY_HOURS = MAX_DELAY_DAYS * 24


def _name_field() -> forms.CharField:
    return forms.CharField(
        label="Sequence name",
        max_length=Sequence._meta.get_field("name").max_length,
        error_messages={"required": "Give the sequence a name."},
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


def _clean_name(form: forms.Form) -> str:
    name = one_line(form.cleaned_data["name"], "name")
    if not name:
        raise forms.ValidationError("Give the sequence a name.")
    return name


class SequenceCreateForm(forms.Form):
    name = _name_field()

    def clean_name(self) -> str:
        return _clean_name(self)


def _days_field(label: str, help_text: str = "") -> forms.TypedMultipleChoiceField:
    return forms.TypedMultipleChoiceField(
        label=label,
        required=False,
        coerce=int,
        choices=DAY_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        help_text=help_text,
        error_messages={"invalid_choice": "Send days are Monday to Sunday."},
    )


class SequenceSettingsForm(forms.Form):
    name = _name_field()
    send_days = _days_field(
        "Send emails on",
        "With no day chosen nobody gets anything: the sequence is paused until you choose one "
        "(as in Kit).",
    )
    send_hour = forms.TypedChoiceField(
        label="Send time",
        coerce=int,
        choices=HOUR_CHOICES,
        error_messages={
            "invalid_choice": "The send hour must be between 0 and 23.",
            "required": "Choose the send time.",
        },
    )
    time_zone = forms.ChoiceField(
        label="Time zone",
        choices=TIME_ZONE_CHOICES,
        widget=TimeZoneSelect(),
        error_messages={"invalid_choice": "Choose a time zone from the list."},
    )
    subscriber_time_zone = forms.BooleanField(
        label="Send at the send time in each subscriber's own time zone",
        required=False,
        help_text="Where their time zone is known (their browser's at signup, an import column "
        "or the time_zone custom field); the others get the time zone above.",
    )
    repeat = forms.BooleanField(
        label="Repeat: subscribers who completed the sequence start again when added again",
        required=False,
        help_text="Off: each subscriber receives the sequence once.",
    )
    hold = forms.BooleanField(
        label="Evergreen: subscribers who received every email stay in the sequence",
        required=False,
        help_text="They get the emails you publish later. Off: they complete after the last "
        "published email, and later ones do not reach them.",
    )
    exclude_tag_ids = ids_field(
        "Subscribers with any of these tags", invalid="Choose tags of this account only."
    )
    exclude_segment_ids = ids_field(
        "Subscribers in any of these segments", invalid="Choose segments of this account only."
    )
    exclude_sequence_ids = ids_field(
        "Subscribers in any of these sequences", invalid="Choose sequences of this account only."
    )

    def __init__(
        self,
        *args,
        tags: list[tuple[int, str]],
        segments: list[tuple[int, str]],
        sequences: list[tuple[int, str]],
        **kwargs,
    ):
        """The (id, name) choices of the account's tags, segments and other sequences."""
        super().__init__(*args, **kwargs)
        self.fields["exclude_tag_ids"].choices = tags
        self.fields["exclude_segment_ids"].choices = segments
        self.fields["exclude_sequence_ids"].choices = sequences

    @staticmethod
    def initial_for(sequence: Sequence) -> dict:
        return {
            name: getattr(sequence, name)
            for name in (
                "name",
                "send_days",
                "send_hour",
                "time_zone",
                "subscriber_time_zone",
                "repeat",
                "hold",
                "exclude_tag_ids",
                "exclude_segment_ids",
                "exclude_sequence_ids",
            )
        }

    def clean_name(self) -> str:
        return _clean_name(self)

    def values(self) -> dict:
        """The keyword arguments of services.sequence_update, once the form is valid."""
        return dict(self.cleaned_data)


class SequenceEmailForm(EmailForm):
    """A sequence email: its content (EmailForm, as a broadcast's) and when it goes out."""

    delay_amount = forms.IntegerField(
        label="Delay",
        min_value=0,
        widget=forms.NumberInput(attrs={"min": 0, "max": MAX_DELAY_HOURS}),
        error_messages={
            "required": "Enter the delay: 0 sends it immediately.",
            "invalid": "Enter a whole number of days or hours, such as 2.",
            "min_value": "The delay cannot be negative.",
        },
    )
    delay_unit = forms.ChoiceField(
        label="Unit",
        choices=SequenceEmail.DelayUnit.choices,
        error_messages={"invalid_choice": "The delay is in days or hours."},
    )
    own_send_days = forms.BooleanField(
        label="Send this email on its own days, not the sequence's",
        required=False,
    )
    send_days = _days_field("Its send days")

    @staticmethod
    def initial_for(email: SequenceEmail) -> dict:
        message = email.message
        return {
            **{name: getattr(message, name) for name in EMAIL_FIELDS},
            "delay_amount": email.delay_amount,
            "delay_unit": email.delay_unit,
            "own_send_days": email.send_days is not None,
            "send_days": email.send_days or [],
        }

    def clean(self):
        cleaned = super().clean()
        amount, unit = cleaned.get("delay_amount"), cleaned.get("delay_unit")
        if amount is not None and unit == SequenceEmail.DelayUnit.DAYS and amount > MAX_DELAY_DAYS:
            self.add_error("delay_amount", f"The delay can be at most {MAX_DELAY_DAYS} days.")
        if (
            amount is not None
            and unit == SequenceEmail.DelayUnit.HOURS
            and amount > MAX_DELAY_HOURS
        ):
            self.add_error(
                "delay_amount",
                f"The delay can be at most {MAX_DELAY_HOURS:,} hours ({MAX_DELAY_DAYS} days).",
            )
        if cleaned.get("own_send_days") and not cleaned.get("send_days"):
            self.add_error("send_days", "Choose at least one day, or use the sequence's days.")
        return cleaned

    def values(self) -> EmailValues:
        """What services.email_update takes, once the form is valid."""
        cleaned = self.cleaned_data
        return EmailValues(
            **{name: cleaned[name] for name in EMAIL_FIELDS},
            delay_amount=cleaned["delay_amount"],
            delay_unit=cleaned["delay_unit"],
            send_days=cleaned["send_days"] if cleaned["own_send_days"] else None,
        )
