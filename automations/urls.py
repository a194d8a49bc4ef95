from __future__ import annotations

from django.urls import path

from automations import views

AUTOMATION = "<int:automation_id>/"
STEP = f"{AUTOMATION}steps/<int:node_id>/"

urlpatterns = [
    path("", views.automation_list, name="automation_list"),
    path("new/", views.automation_create, name="automation_create"),
    path(AUTOMATION, views.automation_detail, name="automation_detail"),
    path(f"{AUTOMATION}settings/", views.automation_settings, name="automation_settings"),
    path(f"{AUTOMATION}state/", views.automation_state, name="automation_state"),
    path(f"{AUTOMATION}delete/", views.automation_delete, name="automation_delete"),
    path(f"{AUTOMATION}entries/new/", views.entry_add, name="automation_entry_add"),
    path(
        f"{AUTOMATION}entries/<int:trigger_id>/delete/",
        views.entry_delete,
        name="automation_entry_delete",
    ),
    path(f"{AUTOMATION}steps/new/", views.step_add, name="automation_step_add"),
    path(STEP, views.step_edit, name="automation_step_edit"),
    path(f"{STEP}delete/", views.step_delete, name="automation_step_delete"),
    path(f"{STEP}email/", views.email_edit, name="automation_email_edit"),
    path(f"{STEP}email/preview/", views.email_preview, name="automation_email_preview"),
    path(f"{STEP}email/test/", views.email_test, name="automation_email_test"),
]
