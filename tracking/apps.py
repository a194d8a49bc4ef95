from __future__ import annotations

from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"

    def ready(self) -> None:
        from anymail.signals import tracking

        from tracking.webhooks import esp_event_received

        tracking.connect(esp_event_received, dispatch_uid="tracking.esp_event_received")
