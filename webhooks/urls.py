from __future__ import annotations

from django.urls import path

from webhooks import views

urlpatterns = [
    path("", views.endpoint_list, name="webhook_endpoint_list"),
    path("new/", views.endpoint_create_page, name="webhook_endpoint_create"),
    path("<int:endpoint_id>/", views.endpoint_detail, name="webhook_endpoint_detail"),
    path("<int:endpoint_id>/edit/", views.endpoint_edit, name="webhook_endpoint_edit"),
    path("<int:endpoint_id>/enabled/", views.endpoint_enabled_set, name="webhook_endpoint_enabled"),
    path(
        "<int:endpoint_id>/delete/", views.endpoint_delete_confirm, name="webhook_endpoint_delete"
    ),
    path(
        "<int:endpoint_id>/deliveries/<int:delivery_id>/",
        views.delivery_detail,
        name="webhook_delivery_detail",
    ),
    path(
        "<int:endpoint_id>/deliveries/<int:delivery_id>/resend/",
        views.delivery_resend_page,
        name="webhook_delivery_resend",
    ),
]
