from __future__ import annotations

from django.apps import AppConfig


class BroadcastsConfig(AppConfig):
    name = "broadcasts"
