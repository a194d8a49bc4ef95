from __future__ import annotations

from django.apps import AppConfig
from django.core.checks import Tags, register

from convertkit.checks import site_url_https_check


class ConvertkitConfig(AppConfig):
    name = "convertkit"
    verbose_name = "Accounts"

    def ready(self) -> None:
        register(site_url_https_check, Tags.security, deploy=True)
