from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from convertkit.tenancy import current_account


class CurrentAccountMiddleware:
    """Sets request.account: the account the logged-in creator is working in (None if none)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.account = SimpleLazyObject(lambda: current_account(request))
        return self.get_response(request)
