from __future__ import annotations

from django import forms


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Key name",
        max_length=100,
        help_text="What uses it, so you know which to revoke: “Shop”, “WordPress site”.",
    )
