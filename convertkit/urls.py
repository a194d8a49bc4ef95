from __future__ import annotations

from anymail import urls as anymail_urls
from django.conf import settings
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from api import pages as api_pages
from api.v3 import api as api_v3
from api.v4 import api as api_v4
from content.images import views as image_views
from convertkit import views
from convertkit.routing import slash_optional
from subscribers import unsubscribe_views
from tracking.endpoints import tracking_view

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("health/", views.health, name="health"),
    path("signup/", views.signup, name="signup"),
    path("signup/sent/", views.signup_sent, name="signup_sent"),
    path("signup/finish/<str:token>/", views.signup_finish, name="signup_finish"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/complete/",
        views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("accounts/new/", views.account_create, name="account_create"),
    path("accounts/switch/<int:account_id>/", views.account_switch, name="account_switch"),
    path("settings/", views.account_settings, name="account_settings"),
    path("settings/archive/", views.account_archive_settings, name="account_archive_settings"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/progress/", views.job_progress, name="job_progress"),
    path("jobs/<int:job_id>/errors.csv", views.job_errors_csv, name="job_errors_csv"),
    path("settings/api-keys/", include("api.urls")),
    path("settings/webhooks/", include("webhooks.urls")),
    # Kit's OAuth endpoints (api.oauth), before the API's catch-all 404 under /v4/.
    path("v4/oauth/", include("api.oauth_urls")),
    path("oauth/", include(("api.oauth_urls", "oauth_kit"))),
    # The API's reference page (api.pages), public as Kit's is.
    path("api/reference/", api_pages.api_reference_page, name="api_reference"),
    # Kit's API v4 (api.v4), where Kit's clients expect it.
    path("v4/", api_v4.urls),
    # Kit's legacy API v3 subset (api.v3), for the client libraries that still call it.
    path("v3/", api_v3.urls),
    path("subscribers/", include("subscribers.urls")),
    path("forms/", include("subscribers.signup_forms.urls")),
    path("broadcasts/", include("broadcasts.urls")),
    path("templates/", include("content.email_templates.urls")),
    path("sequences/", include("sequences.urls")),
    path("automations/rules/", include("automations.rules.urls")),
    path("automations/", include("automations.urls")),
    path("snippets/", include("content.snippets.urls")),
    path("images/", include("content.images.urls")),
    # Reports, under the broadcasts and subscribers they are about.
    path("", include("tracking.urls")),
    path("f/", include("subscribers.signup_forms.public_urls")),
    path("", include("broadcasts.public.urls")),
    # The image library's files where they live on the filesystem (IMAGE_STORAGE=filesystem).
    path("media/<path:name>", image_views.image_file, name="image_file"),
    *slash_optional([path("u/<str:token>/", unsubscribe_views.unsubscribe, name="unsubscribe")]),
    # Served by convertkit.wsgi ahead of Django; this route only answers where that wrapper is
    # not the server's application (the test live server).
    path("t/<path:rest>", csrf_exempt(tracking_view)),
    # anymail's ESP webhooks (/webhooks/postmark/tracking/ ...); tracking.webhooks receives them.
    path(
        "webhooks/",
        include((slash_optional(anymail_urls.urlpatterns), anymail_urls.app_name)),
    ),
]

if settings.DEBUG:
    from convertkit.dev import views as dev_views

    urlpatterns += [
        path("dev/mailbox/", dev_views.mailbox, name="dev_mailbox"),
        path(
            "dev/mailbox/<str:message_id>/", dev_views.mailbox_message, name="dev_mailbox_message"
        ),
    ]
