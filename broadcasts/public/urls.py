"""The public pages of messages, at the site's root: /w/ (web versions) and /p/ (archives),
with or without the trailing slash (convertkit.routing)."""

from __future__ import annotations

from django.urls import path

from broadcasts.public import views
from convertkit.routing import slash_optional

urlpatterns = [
    *slash_optional(
        [
            path("w/<str:token>/", views.web_view, name="web_view"),
            path("p/<str:slug>/", views.archive, name="archive"),
            path("p/<str:slug>/<int:broadcast_id>/", views.archive_entry),
            path(
                "p/<str:slug>/<int:broadcast_id>/<str:title>/",
                views.archive_entry,
                name="archive_entry",
            ),
        ]
    ),
    path("p/<str:slug>/feed.xml", views.archive_feed, name="archive_feed"),
]
