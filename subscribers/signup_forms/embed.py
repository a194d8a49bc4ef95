"""The public HTML of a form: one template for the hosted page, the builder preview and the
snippet a creator pastes on their site, plus the embed code around it."""

from __future__ import annotations

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse

from subscribers.models import Form
from subscribers.validation import MAX_EMAIL_LENGTH, MAX_FIELD_VALUE_LENGTH

# Hidden from people (off-screen, not focusable, aria-hidden); bots that fill every input fill it.
HONEYPOT_FIELD = "ck_website"
# Hidden; ck-embed.js and the hosted page fill in the browser's IANA time zone.
TIME_ZONE_FIELD = "ck_time_zone"
MAX_FIRST_NAME_LENGTH = 255


def form_action_url(form: Form) -> str:
    return settings.SITE_URL + reverse("form_subscribe", kwargs={"uid": form.uid})


def form_hosted_url(form: Form) -> str:
    return settings.SITE_URL + reverse("form_hosted", kwargs={"uid": form.uid})


def embed_script_url() -> str:
    return settings.SITE_URL + reverse("form_embed_script")


def form_public_fields(
    form: Form, *, values: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> list[dict]:
    """The form's fields as the template shows them, with submitted values and errors."""
    values, errors = values or {}, errors or {}
    shown = []
    for field in form.fields:
        key = field["key"]
        shown.append(
            {
                **field,
                "input_type": "email" if key == "email" else "text",
                "autocomplete": {"email": "email", "first_name": "given-name"}.get(key, ""),
                "max_length": {
                    "email": MAX_EMAIL_LENGTH,
                    "first_name": MAX_FIRST_NAME_LENGTH,
                }.get(key, MAX_FIELD_VALUE_LENGTH),
                "value": values.get(key, ""),
                "error": errors.get(key, ""),
            }
        )
    return shown


def form_snippet_html(
    form: Form,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    count_view: bool = True,
) -> str:
    """The form's HTML. `count_view` adds the 1x1 image that counts a view where it is shown
    (not in the builder's preview, nor on the hosted page, which counts its own views)."""
    errors = errors or {}
    return render_to_string(
        "subscribers/signup_forms/public/form_snippet.html",
        {
            "form": form,
            "fields": form_public_fields(form, values=values, errors=errors),
            "non_field_error": errors.get("__all__", ""),
            "action_url": form_action_url(form),
            "view_url": settings.SITE_URL + reverse("form_view_pixel", kwargs={"uid": form.uid}),
            "honeypot_field": HONEYPOT_FIELD,
            "time_zone_field": TIME_ZONE_FIELD,
            "count_view": count_view,
        },
    )


def form_embed_code(form: Form) -> str:
    """What the creator pastes on their site: the plain HTML form, then the optional script
    (inline submission; needed for the modal and slide-in styles)."""
    return (
        form_snippet_html(form).strip() + f'\n<script src="{embed_script_url()}" async></script>\n'
    )
