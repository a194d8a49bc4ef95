"""`{% visual_editor form %}`: an email's body field with the visual editor mounted beside it
(templates/broadcasts/partials/visual_editor.html, static/editor/editor.js).

The editor's image upload, image library and snippets appear only where their URLs resolve, so
a page renders whether or not the apps serving them are installed."""

from __future__ import annotations

import json

from django import template
from django.urls import NoReverseMatch, reverse

from broadcasts.models import Broadcast
from subscribers.models import CustomField

register = template.Library()


def url_or_empty(name: str) -> str:
    """The URL named `name`, or "" when no such URL exists (the editor hides what needs it)."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


@register.inclusion_tag("broadcasts/partials/visual_editor.html", takes_context=True)
def visual_editor(context, form) -> dict:
    account = context["request"].account
    return {
        "field": form["body"],
        "upload_url": url_or_empty("image_upload"),
        "images_url": url_or_empty("image_library_json"),
        "snippets_url": url_or_empty("snippet_library_json"),
        "visual": form["body_format"].value() == Broadcast.BodyFormat.VISUAL,
        "fields_json": json.dumps(
            list(
                CustomField.objects.filter(account=account)
                .order_by("key")
                .values_list("key", flat=True)
            )
        ),
    }
