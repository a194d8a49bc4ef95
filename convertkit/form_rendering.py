from __future__ import annotations

from django.forms.renderers import TemplatesSetting


class FormRenderer(TemplatesSetting):
    """Renders every form with the project's field markup: label, input, help, inline errors."""

    form_template_name = "includes/form.html"
    field_template_name = "includes/field.html"
