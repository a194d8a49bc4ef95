from __future__ import annotations

from django.urls import include, path

from subscribers import views
from subscribers.csv import views as csv_views

urlpatterns = [
    path("", views.subscriber_list, name="subscriber_list"),
    path("new/", views.subscriber_create, name="subscriber_create"),
    path("bulk/", views.subscriber_bulk, name="subscriber_bulk"),
    path("<int:subscriber_id>/", views.subscriber_detail, name="subscriber_detail"),
    path("<int:subscriber_id>/edit/", views.subscriber_edit, name="subscriber_edit"),
    path("<int:subscriber_id>/tags/", views.subscriber_tag, name="subscriber_tag"),
    path(
        "<int:subscriber_id>/tags/<int:tag_id>/remove/",
        views.subscriber_untag,
        name="subscriber_untag",
    ),
    path(
        "<int:subscriber_id>/sequences/",
        views.subscriber_sequence_add,
        name="subscriber_sequence_add",
    ),
    path(
        "<int:subscriber_id>/sequences/<int:sequence_id>/remove/",
        views.subscriber_sequence_remove,
        name="subscriber_sequence_remove",
    ),
    path(
        "<int:subscriber_id>/unsubscribe/",
        views.subscriber_unsubscribe,
        name="subscriber_unsubscribe",
    ),
    path("<int:subscriber_id>/delete/", views.subscriber_delete, name="subscriber_delete"),
    path("tags/", views.tag_list, name="tag_list"),
    path("tags/<int:tag_id>/", views.tag_detail, name="tag_detail"),
    path("tags/<int:tag_id>/delete/", views.tag_delete, name="tag_delete"),
    path("segments/", include("subscribers.segments.urls")),
    path("fields/", views.custom_field_list, name="custom_field_list"),
    path("fields/<int:field_id>/delete/", views.custom_field_delete, name="custom_field_delete"),
    path("import/", csv_views.import_upload, name="subscriber_import"),
    path("import/<int:job_id>/map/", csv_views.import_map, name="subscriber_import_map"),
    path("export.csv", csv_views.export_csv, name="subscriber_export"),
]
