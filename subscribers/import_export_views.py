from __future__ import annotations

from django.http import HttpResponse

# Placeholder views, replaced as the work lands.


def import_upload(request, **kwargs):
    return HttpResponse("todo")


def import_map(request, **kwargs):
    return HttpResponse("todo")


def export_csv(request, **kwargs):
    return HttpResponse("todo")
