from __future__ import annotations

from zoneinfo import available_timezones

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import PasswordResetForm

from convertkit.models import Account, User


class SignupForm(forms.Form):
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    account_name = forms.CharField(
        max_length=120,
        label="Name of your newsletter or business",
        help_text="Shown to your subscribers; you can change it later.",
    )

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(
                "An account with this email already exists. Log in instead."
            )
        return email

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            try:
                password_validation.validate_password(
                    password, User(email=cleaned.get("email", ""))
                )
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


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
            "time_zone": forms.Select(choices=[(tz, tz) for tz in sorted(available_timezones())]),
        }

    def clean_sender_name(self) -> str:
        value = self.cleaned_data["sender_name"]
        if "\r" in value or "\n" in value:
            raise forms.ValidationError("The From name must be on one line.")
        return value.strip()


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
        from django.template import loader

        from convertkit.tasks import send_account_email

        subject = "".join(loader.render_to_string(subject_template_name, context).splitlines())
        body = loader.render_to_string(email_template_name, context)
        send_account_email.delay_on_commit(to=to_email, subject=subject, body=body)
