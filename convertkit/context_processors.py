from __future__ import annotations

NAVIGATION = [
    ("dashboard", "Dashboard"),
    ("subscriber_list", "Subscribers"),
    ("form_list", "Forms"),
    ("broadcast_list", "Broadcasts"),
    ("account_settings", "Settings"),
]

# The navigation entry a page belongs to, by the prefix of its URL name.
_SECTION_BY_PREFIX = [
    ("subscriber", "subscriber_list"),
    ("tag", "subscriber_list"),
    ("custom_field", "subscriber_list"),
    ("job", "subscriber_list"),
    ("form", "form_list"),
    ("broadcast", "broadcast_list"),
    ("account", "account_settings"),
    ("dashboard", "dashboard"),
]


def navigation(request):
    match = getattr(request, "resolver_match", None)
    url_name = (match.url_name or "") if match else ""
    section = next((s for prefix, s in _SECTION_BY_PREFIX if url_name.startswith(prefix)), "")
    return {
        "navigation": NAVIGATION,
        "section": section,
        "other_accounts": _other_accounts(request),
    }


def _other_accounts(request):
    """The other accounts the creator belongs to, for the account menu (evaluated only if shown)."""
    from convertkit.models import Account

    user = getattr(request, "user", None)
    account = getattr(request, "account", None)
    if not (user and user.is_authenticated and account):
        return Account.objects.none()
    return Account.objects.filter(memberships__user=user).exclude(pk=account.pk).order_by("name")
