from __future__ import annotations

from django.http import HttpResponse

# Placeholder views, replaced as the work lands.


def subscriber_list(request, **kwargs):
    return HttpResponse("todo")


def subscriber_create(request, **kwargs):
    return HttpResponse("todo")


def subscriber_bulk(request, **kwargs):
    return HttpResponse("todo")


def subscriber_detail(request, **kwargs):
    return HttpResponse("todo")


def subscriber_edit(request, **kwargs):
    return HttpResponse("todo")


def subscriber_tag(request, **kwargs):
    return HttpResponse("todo")


def subscriber_untag(request, **kwargs):
    return HttpResponse("todo")


def subscriber_unsubscribe(request, **kwargs):
    return HttpResponse("todo")


def subscriber_delete(request, **kwargs):
    return HttpResponse("todo")


def tag_list(request, **kwargs):
    return HttpResponse("todo")


def tag_delete(request, **kwargs):
    return HttpResponse("todo")


def custom_field_list(request, **kwargs):
    return HttpResponse("todo")


def custom_field_delete(request, **kwargs):
    return HttpResponse("todo")
