from __future__ import annotations

from django.urls import path

from content.email_templates import views

urlpatterns = [
    path("", views.email_template_list, name="email_template_list"),
    path("new/", views.email_template_create, name="email_template_create"),
    path("default/", views.email_template_default, name="email_template_default"),
    path("<int:template_id>/", views.email_template_edit, name="email_template_edit"),
    path("<int:template_id>/preview/", views.email_template_preview, name="email_template_preview"),
    path("<int:template_id>/delete/", views.email_template_delete, name="email_template_delete"),
]
