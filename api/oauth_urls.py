"""Kit's OAuth endpoints, under /v4/oauth/ as on api.kit.com."""

from __future__ import annotations

from django.urls import path
from oauth2_provider import views as oauth_views

from api.oauth import ConsentView, KitTokenView

urlpatterns = [
    path("authorize", ConsentView.as_view(), name="oauth_authorize"),
    path("token", KitTokenView.as_view(), name="oauth_token"),
    path("revoke", oauth_views.RevokeTokenView.as_view(), name="oauth_revoke"),
]
