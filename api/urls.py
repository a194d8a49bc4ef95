from __future__ import annotations

from django.urls import path

from api import pages

urlpatterns = [
    path("", pages.api_key_list, name="api_key_list"),
    path("<int:key_id>/revoke/", pages.api_key_revoke_confirm, name="api_key_revoke"),
    path(
        "apps/<int:application_id>/disconnect/",
        pages.oauth_app_disconnect,
        name="oauth_app_disconnect",
    ),
]
