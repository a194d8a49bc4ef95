from __future__ import annotations

from django.urls import path

from broadcasts import views

urlpatterns = [
    path("", views.broadcast_list, name="broadcast_list"),
]
