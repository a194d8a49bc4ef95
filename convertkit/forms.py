from __future__ import annotations

import copy
from zoneinfo import available_timezones

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.forms.utils import flatatt
from django.template import loader
from django.utils.html import escape
from django.utils.safestring import mark_safe

from convertkit.models import Account, User
from convertkit.ratelimit import LimitExceeded, address_and_network_hit
from convertkit.services import PUBLIC_SLUG_MAX, PUBLIC_SLUG_MIN, public_slug_problem
from convertkit.tasks import send_account_email

# Every IANA time zone, by name: what an account's or a sequence's time zone may be.
TIME_ZONE_CHOICES = [(zone, zone) for zone in sorted(available_timezones())]


class TimeZoneSelect(forms.Select):
    """The select of every IANA time zone, written from one string built once: Django renders
    each of its ~600 options through a template, which took most of the time of a page that
    shows one (bench/README.md, bench/sequence_page.py)."""

    _options = "".join(
        f'<option value="{escape(zone)}">{escape(zone)}</option>' for zone, _ in TIME_ZONE_CHOICES
    )

    def __init__(self, attrs=None):
        super().__init__(attrs, choices=TIME_ZONE_CHOICES)

    def render(self, name, value, attrs=None, renderer=None):
        option = f'<option value="{escape(value or "")}">'
        options = self._options.replace(option, option[:-1] + " selected>", 1) if value else ""
        final = self.build_attrs(self.attrs, {**(attrs or {}), "name": name})
        return mark_safe(f"<select{flatatt(final)}>{options or self._options}</select>")  # noqa: S308


def ids_field(label: str, *, invalid: str) -> forms.TypedMultipleChoiceField:
    """Checkboxes of ids among the account's objects (the form gives the choices); `invalid`
    is the error for an id that is not among them (%(value)s names it)."""
    return forms.TypedMultipleChoiceField(
        label=label,
        required=False,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": invalid},
    )


class DraftForm(forms.Form):
    """A form whose page previews what it would save: `draft(obj)` is an unsaved copy of `obj`
    with every valid value of the form applied (an invalid field keeps the saved value)."""

    def draft(self, obj):
        draft = copy.copy(obj)
        if self.is_bound:
            self.is_valid()
            for name, value in self.cleaned_data.items():
                setattr(draft, name, value)
        return draft

    @property
    def invalid_labels(self) -> list[str]:
        return [self.fields[name].label for name in self.errors if name in self.fields]


class SignupForm(forms.Form):
    """Step one of signing up: the address only. The answer is the same for any address
    (convertkit.signup)."""

    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class SignupFinishForm(forms.Form):
    """Step two, from the link in the email: the password and the first account's name."""

    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    account_name = forms.CharField(
        max_length=120,
        label="Name of your newsletter or business",
        help_text="Shown to your subscribers; you can change it later.",
    )

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        password_validation.validate_password(password, User(email=self.email))
        return password


class LoginForm(AuthenticationForm):
    """Django's login form, counting every attempt per address and per network first
    (LOGIN_LIMIT_PER_ADDRESS, LOGIN_LIMIT_PER_IP): past a limit it refuses without checking the
    password, until the limit's window ends."""

    limit_exceeded: LimitExceeded | None = None

    def clean(self):
        self.limit_exceeded = address_and_network_hit(
            self.request,
            scope="login",
            email=self.cleaned_data.get("username"),
            per_address=settings.LOGIN_LIMIT_PER_ADDRESS,
            per_ip=settings.LOGIN_LIMIT_PER_IP,
        )
        if self.limit_exceeded:
            raise forms.ValidationError(
                "Too many login attempts for this address or from your network. Try again in "
                f"{self.limit_exceeded.wait_text}.",
                code="throttled",
            )
        return super().clean()


class AccountCreateForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ["name"]
        labels = {"name": "Name of your newsletter or business"}


class AccountSettingsForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ["name", "sender_name", "sender_email", "postal_address", "time_zone"]
        labels = {
            "name": "Account name",
            "sender_name": "From name",
            "sender_email": "From address",
            "postal_address": "Postal address",
            "time_zone": "Time zone",
        }
        help_texts = {
            "sender_name": "Who your emails come from, e.g. “Ann from Ann's Kitchen”.",
            "sender_email": "Must be an address on a domain your email provider lets you send from.",
            "postal_address": "Required by anti-spam law; shown in the footer of every email. "
            "Broadcasts cannot be sent until it is set.",
            "time_zone": "Scheduled broadcasts and reports use this time zone.",
        }
        widgets = {
            "postal_address": forms.Textarea(attrs={"rows": 3}),
            "time_zone": TimeZoneSelect(),
        }

    def clean_sender_name(self) -> str:
        value = self.cleaned_data["sender_name"]
        if "\r" in value or "\n" in value:
            raise forms.ValidationError("The From name must be on one line.")
        return value.strip()


class AccountArchiveForm(forms.Form):
    """The public archive's settings: its handle and the signup form its pages show.
    `forms`: (id, name) of the account's live forms."""

    public_slug = forms.CharField(
        label="Public address",
        max_length=PUBLIC_SLUG_MAX,
        help_text=f"Your archive's address ends with it: {PUBLIC_SLUG_MIN} to "
        f"{PUBLIC_SLUG_MAX} lower-case letters, digits and hyphens.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    archive_form_id = forms.TypedChoiceField(
        label="Signup form",
        required=False,
        coerce=int,
        empty_value=None,
        error_messages={"invalid_choice": "Choose one of your forms."},
        help_text="Shown at the bottom of your archive's pages, so readers can subscribe.",
    )

    def __init__(self, *args, account: Account, forms: list[tuple[int, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.account = account
        self.fields["archive_form_id"].choices = [("", "No form"), *forms]

    def clean_public_slug(self) -> str:
        slug = self.cleaned_data["public_slug"].strip().lower()
        problem = public_slug_problem(slug, account=self.account)
        if problem:
            raise forms.ValidationError(problem)
        return slug


class QueuedPasswordResetForm(PasswordResetForm):
    """Password reset whose email goes through the worker, like every other message we send."""

    def send_mail(
        self,
        subject_template_name,
        email_template_name,
        context,
        from_email,
        to_email,
        html_email_template_name=None,
    ):
        subject = "".join(loader.render_to_string(subject_template_name, context).splitlines())
        body = loader.render_to_string(email_template_name, context)
        send_account_email.delay_on_commit(to=to_email, subject=subject, body=body)
