"""Kit's OAuth endpoints: under /v4/oauth/ as Kit's reference documents them, and under /oauth/
where Kit's own client libraries call them (api.kit.com/oauth/token, app.kit.com/oauth/authorize).
"""

from __future__ import annotations

from django.urls import path

from api.oauth import ConsentView, KitRevokeTokenView, KitTokenView

urlpatterns = [
    path("authorize", ConsentView.as_view(), name="oauth_authorize"),
    path("token", KitTokenView.as_view(), name="oauth_token"),
    path("revoke", KitRevokeTokenView.as_view(), name="oauth_revoke"),
]
