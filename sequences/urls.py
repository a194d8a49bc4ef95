from __future__ import annotations

from django.urls import path

from sequences import views

EMAIL = "<int:sequence_id>/emails/<int:email_id>/"

urlpatterns = [
    path("", views.sequence_list, name="sequence_list"),
    path("new/", views.sequence_create, name="sequence_create"),
    path("counts/", views.sequence_list_counts, name="sequence_list_counts"),
    path("<int:sequence_id>/", views.sequence_detail, name="sequence_detail"),
    path("<int:sequence_id>/subscribers/", views.sequence_subscribers, name="sequence_subscribers"),
    path("<int:sequence_id>/settings/", views.sequence_settings, name="sequence_settings"),
    path("<int:sequence_id>/pause/", views.sequence_pause, name="sequence_pause"),
    path("<int:sequence_id>/resume/", views.sequence_resume, name="sequence_resume"),
    path("<int:sequence_id>/emails/new/", views.email_create, name="sequence_email_create"),
    path(EMAIL, views.email_edit, name="sequence_email_edit"),
    path(f"{EMAIL}autosave/", views.email_autosave, name="sequence_email_autosave"),
    path(f"{EMAIL}preview/", views.email_preview, name="sequence_email_preview"),
    path(f"{EMAIL}test/", views.email_test, name="sequence_email_test"),
    path(f"{EMAIL}publish/", views.email_publish, name="sequence_email_publish"),
    path(f"{EMAIL}unpublish/", views.email_unpublish, name="sequence_email_unpublish"),
    path(f"{EMAIL}move/", views.email_move, name="sequence_email_move"),
    path(f"{EMAIL}delete/", views.email_delete, name="sequence_email_delete"),
    path(f"{EMAIL}report/", views.email_report, name="sequence_email_report"),
    path(
        f"{EMAIL}report/<slug:kind>/",
        views.email_report_people,
        name="sequence_email_report_people",
    ),
]
