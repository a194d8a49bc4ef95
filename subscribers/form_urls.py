from __future__ import annotations

from django.urls import path

from subscribers import form_views

urlpatterns = [
    path("", form_views.form_list, name="form_list"),
]
