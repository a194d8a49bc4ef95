"""System checks of the deployment (`manage.py check --deploy`), registered in apps.py."""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.core.checks import Warning


def site_url_https_check(app_configs, **kwargs) -> list[Warning]:
    """SITE_URL is where every List-Unsubscribe link points: RFC 8058 one-click unsubscribe
    needs an https URL, and mailbox providers ignore (or hold against the sender) one that is
    not."""
    if settings.DEBUG or urlparse(settings.SITE_URL).scheme == "https":
        return []
    return [
        Warning(
            f"SITE_URL is {settings.SITE_URL}, not https: the List-Unsubscribe links of every "
            "email point there, and RFC 8058 one-click unsubscribe needs an https URL.",
            hint="Serve the site over https and set SITE_URL=https://your.host.",
            id="convertkit.W001",
        )
    ]
