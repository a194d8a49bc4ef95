from __future__ import annotations

from django.urls import path

from content.snippets import views

urlpatterns = [
    path("", views.snippet_list, name="snippet_list"),
    path("new/", views.snippet_create, name="snippet_create"),
    path("library.json", views.snippet_library, name="snippet_library"),
    path("<int:snippet_id>/", views.snippet_edit, name="snippet_edit"),
    path("<int:snippet_id>/delete/", views.snippet_delete, name="snippet_delete"),
]
