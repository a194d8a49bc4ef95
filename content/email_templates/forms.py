"""The forms of the email template pages: a new template, its design settings, its HTML.

They validate what the creator typed; the writes are services'. A design form's values go
through designs.design_settings_check, so a colour, font or URL a layout cannot take is an
error on its field, whatever was posted."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from broadcasts.rendering import RenderFailed
from content.email_templates.builtins import BUILTINS
from content.email_templates.designs import (
    ALIGNMENTS,
    ALT_LENGTH,
    FONT_SIZES,
    FONTS,
    FOOTER_PLACEMENTS,
    HEADER_TEXT_LENGTH,
    HEADERS,
    SETTINGS,
    URL_LENGTH,
    WIDTHS,
    Design,
    design_settings_check,
)
from content.email_templates.samples import sample_email_check
from content.email_templates.services import BLANK_HTML
from content.models import EmailTemplate

NAME_LENGTH = EmailTemplate._meta.get_field("name").max_length


def _name_field() -> forms.CharField:
    return forms.CharField(
        label="Name",
        max_length=NAME_LENGTH,
        error_messages={"required": "Name the template."},
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


def _colour(label: str) -> forms.CharField:
    return forms.CharField(
        label=label, max_length=7, widget=forms.TextInput(attrs={"type": "color"})
    )


class EmailTemplateCreateForm(forms.Form):
    name = _name_field()
    start = forms.ChoiceField(
        label="Start from",
        choices=[
            *(
                (key, f"{builtin.name}: change its colours, font, header and footer")
                for key, builtin in BUILTINS.items()
            ),
            (BLANK_HTML, "HTML: write the whole template yourself"),
        ],
        initial="classic",
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": "Choose a template to start from."},
    )


class EmailTemplateDesignForm(forms.Form):
    """A template's name and design settings. `design()` is the Design of the valid values
    (the saved ones where a field is invalid), for the live preview."""

    name = _name_field()
    background_color = _colour("Background")
    content_color = _colour("Content background")
    text_color = _colour("Text")
    link_color = _colour("Links")
    muted_color = _colour("Footer text")
    font = forms.ChoiceField(
        label="Font", choices=[(key, label) for key, (label, _stack) in FONTS.items()]
    )
    font_size = forms.IntegerField(
        label="Text size (px)", min_value=FONT_SIZES[0], max_value=FONT_SIZES[1]
    )
    content_width = forms.IntegerField(
        label="Content width (px)",
        min_value=WIDTHS[0],
        max_value=WIDTHS[1],
        widget=forms.NumberInput(attrs={"step": 10}),
    )
    card = forms.BooleanField(
        label="Content on a card (padding and rounded corners)", required=False
    )
    header = forms.ChoiceField(label="Header", choices=HEADERS.items(), widget=forms.RadioSelect)
    header_text = forms.CharField(
        label="Header text",
        required=False,
        max_length=HEADER_TEXT_LENGTH,
        help_text="Empty: your account's name.",
    )
    header_image_url = forms.CharField(
        label="Header image address",
        required=False,
        max_length=URL_LENGTH,
        help_text="An https:// address of the image.",
    )
    header_image_alt = forms.CharField(
        label="Header image description (alt text)", required=False, max_length=ALT_LENGTH
    )
    header_color = _colour("Header background")
    header_text_color = _colour("Header text")
    footer_placement = forms.ChoiceField(
        label="Footer", choices=FOOTER_PLACEMENTS.items(), widget=forms.RadioSelect
    )
    footer_align = forms.ChoiceField(
        label="Header and footer alignment", choices=ALIGNMENTS.items(), widget=forms.RadioSelect
    )
    web_view_link = forms.BooleanField(
        label="Show a “View in browser” link at the top", required=False
    )

    def __init__(self, *args, template: EmailTemplate, **kwargs):
        self.template = template
        super().__init__(*args, initial={"name": template.name, **template.settings}, **kwargs)

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            try:
                design_settings_check({name: cleaned[name] for name in SETTINGS})
            except ValidationError as invalid:
                for name, errors in invalid.message_dict.items():
                    self.add_error(name if name in self.fields else None, errors)
        return cleaned

    def settings(self) -> dict:
        return {name: self.cleaned_data[name] for name in SETTINGS}

    def design(self) -> Design:
        values = dict(self.template.settings)
        if self.is_bound:
            self.is_valid()
            values.update(
                {name: value for name, value in self.cleaned_data.items() if name in SETTINGS}
            )
        try:
            return Design(**design_settings_check(values))
        except ValidationError:
            return Design(**design_settings_check(self.template.settings))


class EmailTemplateHtmlForm(forms.Form):
    """A template's name and its own HTML, which must hold {{ message_content }} once."""

    name = _name_field()
    html = forms.CharField(
        label="HTML",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 24, "class": "code", "spellcheck": "false"}),
        help_text="Put {{ message_content }} where the email's content goes, once. You may use "
        "{{ unsubscribe_url }}, {{ web_view_url }}, {{ account.name }} and "
        "{{ account.postal_address }}; without both the unsubscribe link and your postal address, "
        "the standard footer is added below. <style> is applied to your HTML and removed; "
        "scripts, forms and event handlers are removed.",
    )

    def __init__(self, *args, template: EmailTemplate, **kwargs):
        self.template = template
        super().__init__(*args, initial={"name": template.name, "html": template.html}, **kwargs)

    def clean_html(self) -> str:
        """The HTML, when it is a template and lays out the sample email (where
        {{ message_content }} stands, how large its CSS makes it)."""
        html = self.cleaned_data["html"]
        try:
            sample_email_check(account=self.template.account, design=Design(custom_html=html))
        except ValueError as invalid:
            raise ValidationError(str(invalid).removeprefix("custom_html: ")) from None
        except RenderFailed as failed:
            raise ValidationError(str(failed)) from None
        return html

    def design(self) -> Design:
        if self.is_bound and self.is_valid():
            return Design(custom_html=self.cleaned_data["html"])
        try:
            return Design(custom_html=self.template.html)
        except ValueError:
            return BUILTINS["classic"].design
