from __future__ import annotations

from django.urls import path

from subscribers import form_views

urlpatterns = [
    path("", form_views.form_list, name="form_list"),
    path("new/", form_views.form_create, name="form_create"),
    path("<int:form_id>/", form_views.form_builder, name="form_builder"),
    path("<int:form_id>/preview/", form_views.form_preview, name="form_preview"),
    path(
        "<int:form_id>/incentive-file/",
        form_views.form_incentive_file,
        name="form_incentive_file",
    ),
    path("<int:form_id>/archive/", form_views.form_archive, name="form_archive"),
]
