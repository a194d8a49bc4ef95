from __future__ import annotations

from django.urls import path

from automations.rules import views

urlpatterns = [
    path("", views.rule_list, name="rule_list"),
    path("new/", views.rule_create, name="rule_create"),
    path("<int:rule_id>/", views.rule_detail, name="rule_detail"),
    path("<int:rule_id>/edit/", views.rule_edit, name="rule_edit"),
    path("<int:rule_id>/toggle/", views.rule_toggle, name="rule_toggle"),
    path("<int:rule_id>/delete/", views.rule_delete, name="rule_delete"),
    path("<int:rule_id>/history/", views.rule_history, name="rule_history"),
]
