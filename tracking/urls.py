"""The creator's report pages (included at the site root: they live under their objects)."""

from __future__ import annotations

from django.urls import path

from tracking import views

urlpatterns = [
    path("broadcasts/<int:broadcast_id>/report/", views.broadcast_report, name="broadcast_report"),
    path(
        "broadcasts/<int:broadcast_id>/report/<slug:kind>/",
        views.broadcast_report_people,
        name="broadcast_report_people",
    ),
    path(
        "subscribers/<int:subscriber_id>/activity/",
        views.subscriber_activity,
        name="subscriber_activity",
    ),
]
