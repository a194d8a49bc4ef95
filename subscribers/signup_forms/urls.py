from __future__ import annotations

from django.urls import path

from subscribers.signup_forms import views

urlpatterns = [
    path("", views.form_list, name="form_list"),
    path("new/", views.form_create, name="form_create"),
    path("<int:form_id>/", views.form_builder, name="form_builder"),
    path("<int:form_id>/preview/", views.form_preview, name="form_preview"),
    path(
        "<int:form_id>/incentive-file/",
        views.form_incentive_file,
        name="form_incentive_file",
    ),
    path("<int:form_id>/archive/", views.form_archive, name="form_archive"),
]
