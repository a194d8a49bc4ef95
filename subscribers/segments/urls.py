from __future__ import annotations

from django.urls import path

from subscribers.segments import views

urlpatterns = [
    path("", views.segment_list, name="segment_list"),
    path("new/", views.segment_create, name="segment_create"),
    path("<int:segment_id>/", views.segment_detail, name="segment_detail"),
    path("<int:segment_id>/count/", views.segment_count, name="segment_count"),
    path("<int:segment_id>/edit/", views.segment_edit, name="segment_edit"),
    path("<int:segment_id>/delete/", views.segment_delete, name="segment_delete"),
]
