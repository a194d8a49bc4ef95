from __future__ import annotations

from django.urls import path

from content.images import views

urlpatterns = [
    path("", views.image_library, name="image_library"),
    path("upload/", views.image_upload, name="image_upload"),
    path("library.json", views.image_library_json, name="image_library_json"),
    path("<int:image_id>/delete/", views.image_delete, name="image_delete"),
]
