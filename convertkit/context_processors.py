from __future__ import annotations

NAVIGATION = [
    ("dashboard", "Dashboard"),
    ("subscriber_list", "Subscribers"),
    ("form_list", "Forms"),
    ("broadcast_list", "Broadcasts"),
    ("sequence_list", "Sequences"),
    # Email templates, snippets and images: one entry, the pages linked by their own section nav.
    ("email_template_list", "Content"),
    ("automation_list", "Automations"),
    ("rule_list", "Rules"),
    ("account_settings", "Settings"),
]

# The navigation entry a page belongs to, by the prefix of its URL name.
_SECTION_BY_PREFIX = [
    ("subscriber", "subscriber_list"),
    ("tag", "subscriber_list"),
    ("segment", "subscriber_list"),
    ("custom_field", "subscriber_list"),
    ("job", "subscriber_list"),
    ("form", "form_list"),
    ("broadcast", "broadcast_list"),
    ("email_template", "email_template_list"),
    ("sequence", "sequence_list"),
    ("snippet", "email_template_list"),
    ("automation", "automation_list"),
    ("rule", "rule_list"),
    ("image", "email_template_list"),
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
        "other_accounts": getattr(request, "other_accounts", []),
    }
