from __future__ import annotations

from django.apps import AppConfig


class ConvertkitConfig(AppConfig):
    name = "convertkit"
    verbose_name = "Accounts"
