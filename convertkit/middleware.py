from __future__ import annotations

import zoneinfo

from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from convertkit.tenancy import current_account


class CurrentAccountMiddleware:
    """Sets request.account (the account the logged-in creator works in, or None) and shows
    every time in that account's time zone."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.account = SimpleLazyObject(lambda: current_account(request))
        if request.user.is_authenticated and request.account:
            try:
                timezone.activate(zoneinfo.ZoneInfo(request.account.time_zone))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
