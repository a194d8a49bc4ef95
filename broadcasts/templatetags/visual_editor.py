"""`{% visual_editor form %}`: a form's body field with the visual editor mounted beside it
(templates/broadcasts/partials/visual_editor.html, static/editor/editor.js).

The form has a `body` field; with a `body_format` field too (an EmailForm) the editor shows
while that format is "visual", else (a snippet's form) the body is always a visual document.
`snippet_key`: the key of the snippet being edited, which its own snippet menu leaves out
(with the snippets that include it), so it cannot be put inside itself. `label`: the editable
area's accessible name."""

from __future__ import annotations

import json

from django import template
from django.urls import reverse

from broadcasts.models import Broadcast
from subscribers.models import CustomField

register = template.Library()


@register.inclusion_tag("broadcasts/partials/visual_editor.html", takes_context=True)
def visual_editor(context, form, snippet_key: str = "", label: str = "Email content") -> dict:
    account = context["request"].account
    always_visual = "body_format" not in form.fields
    return {
        "field": form["body"],
        "upload_url": reverse("image_upload"),
        "images_url": reverse("image_library_json"),
        "snippets_url": reverse("snippet_library"),
        "snippet_key": snippet_key,
        "label": label,
        "visual": always_visual or form["body_format"].value() == Broadcast.BodyFormat.VISUAL,
        "fields_json": json.dumps(
            list(
                CustomField.objects.filter(account=account)
                .order_by("key")
                .values_list("key", flat=True)
            )
        ),
    }
