"""The app's form for a webhook endpoint: its URL, a name, and the events it listens to. The
checks themselves (the target, the event names) are the service's, shared with the API."""

from __future__ import annotations

from django import forms

from webhooks.events import CATALOG_EVENTS
from webhooks.models import EventType


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="Endpoint URL",
        max_length=2000,
        help_text="Where each delivery is POSTed: an https:// address of yours.",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/kit-webhooks"}),
    )
    name = forms.CharField(max_length=255, required=False)
    description = forms.CharField(max_length=1000, required=False)
    events = forms.MultipleChoiceField(
        choices=[(name, f"{EventType(name).label} ({name})") for name in CATALOG_EVENTS],
        widget=forms.CheckboxSelectMultiple,
        help_text="Deliveries carry 1 to 100 events of one type, signed with the endpoint's secret.",
    )

    def __init__(self, *args, legacy: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if legacy:
            # A legacy webhook (made through /v4/webhooks) listens to the one event it was made
            # with; only its address and name change here.
            del self.fields["events"]
