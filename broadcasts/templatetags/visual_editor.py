"""`{% visual_editor form %}`: an email's body field with the visual editor mounted beside it
(templates/broadcasts/partials/visual_editor.html, static/editor/editor.js)."""

from __future__ import annotations

import json

from django import template
from django.urls import reverse

from broadcasts.models import Broadcast
from subscribers.models import CustomField

register = template.Library()


@register.inclusion_tag("broadcasts/partials/visual_editor.html", takes_context=True)
def visual_editor(context, form) -> dict:
    account = context["request"].account
    return {
        "field": form["body"],
        "upload_url": reverse("image_upload"),
        "images_url": reverse("image_library_json"),
        "snippets_url": reverse("snippet_library"),
        "visual": form["body_format"].value() == Broadcast.BodyFormat.VISUAL,
        "fields_json": json.dumps(
            list(
                CustomField.objects.filter(account=account)
                .order_by("key")
                .values_list("key", flat=True)
            )
        ),
    }
