"""The snippet editor's form: a name and the body, a visual document as JSON (the visual editor
mounts beside the body's textarea, `{% visual_editor form %}`; without JavaScript the textarea
is the editor)."""

from __future__ import annotations

from django import forms

from broadcasts.forms import MAX_BODY_LENGTH
from content.models import Snippet
from subscribers.forms import one_line

EMPTY_DOCUMENT = '{"type": "doc", "attrs": {"layout": "center"}, "content": []}'


class SnippetForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=Snippet._meta.get_field("name").max_length,
        help_text="Its key, used in emails as {{ snippet.<em>key</em> }}, is made from the name "
        "when the snippet is created and stays the same after.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    body = forms.CharField(
        label="Content",
        strip=False,
        max_length=MAX_BODY_LENGTH,
        initial=EMPTY_DOCUMENT,
        widget=forms.Textarea(attrs={"rows": 18, "class": "code", "spellcheck": "false"}),
        help_text="The snippet's content: text, images, buttons, even other snippets.",
    )

    def clean_name(self) -> str:
        return one_line(self.cleaned_data["name"], "name")
