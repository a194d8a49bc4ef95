from __future__ import annotations

import zoneinfo
from functools import cache, partial

from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from convertkit.tenancy import creator_accounts


class CurrentAccountMiddleware:
    """Sets request.account (the account the logged-in creator works in, or None) and
    request.other_accounts (their other accounts, for the account menu), and shows every time
    in the account's time zone."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        accounts = cache(partial(creator_accounts, request))
        request.account = SimpleLazyObject(lambda: accounts()[0])
        request.other_accounts = SimpleLazyObject(lambda: accounts()[1])
        if request.account:
            try:
                timezone.activate(zoneinfo.ZoneInfo(request.account.time_zone))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
