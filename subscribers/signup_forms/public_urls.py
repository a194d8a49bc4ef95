"""The public side of forms at /f/: no login, no session; reached from creators' sites and emails
(with or without the trailing slash, see convertkit.routing)."""

from __future__ import annotations

from django.urls import path

from convertkit.routing import slash_optional
from subscribers.signup_forms import public_views

urlpatterns = slash_optional(
    [
        path("embed.js", public_views.embed_script, name="form_embed_script"),
        path("confirm/<str:token>/", public_views.confirm, name="form_confirm"),
        path("download/<str:token>/", public_views.incentive_download, name="form_incentive"),
        path("<str:uid>/", public_views.hosted, name="form_hosted"),
        path("<str:uid>/subscribe", public_views.subscribe, name="form_subscribe"),
        path("<str:uid>/view.gif", public_views.view_pixel, name="form_view_pixel"),
    ]
)
