from __future__ import annotations

from django.urls import path

from broadcasts import views

urlpatterns = [
    path("", views.broadcast_list, name="broadcast_list"),
    path("new/", views.broadcast_create, name="broadcast_create"),
    path("<int:broadcast_id>/", views.broadcast_edit, name="broadcast_edit"),
    path("<int:broadcast_id>/autosave/", views.broadcast_autosave, name="broadcast_autosave"),
    path("<int:broadcast_id>/preview/", views.broadcast_preview, name="broadcast_preview"),
    path("<int:broadcast_id>/count/", views.broadcast_count, name="broadcast_count"),
    path("<int:broadcast_id>/test/", views.broadcast_test, name="broadcast_test"),
    path("<int:broadcast_id>/schedule/", views.broadcast_schedule, name="broadcast_schedule"),
    path("<int:broadcast_id>/unschedule/", views.broadcast_unschedule, name="broadcast_unschedule"),
    path("<int:broadcast_id>/send/", views.broadcast_send, name="broadcast_send"),
    path("<int:broadcast_id>/delete/", views.broadcast_delete, name="broadcast_delete"),
    path("<int:broadcast_id>/progress/", views.broadcast_progress, name="broadcast_progress"),
    path(
        "<int:broadcast_id>/progress/live/",
        views.broadcast_progress_live,
        name="broadcast_progress_live",
    ),
    path("<int:broadcast_id>/public/", views.broadcast_public, name="broadcast_public"),
    path("<int:broadcast_id>/pause/", views.broadcast_pause, name="broadcast_pause"),
    path("<int:broadcast_id>/resume/", views.broadcast_resume, name="broadcast_resume"),
    path("<int:broadcast_id>/cancel/", views.broadcast_cancel, name="broadcast_cancel"),
    path(
        "<int:broadcast_id>/unknown/resend/",
        views.broadcast_unknown_resend,
        name="broadcast_unknown_resend",
    ),
    path(
        "<int:broadcast_id>/unknown/leave/",
        views.broadcast_unknown_leave,
        name="broadcast_unknown_leave",
    ),
    path(
        "<int:pk>/resend-unopened/",
        views.broadcast_resend_unopened,
        name="broadcast_resend_unopened",
    ),
]
