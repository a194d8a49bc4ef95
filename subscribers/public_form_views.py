"""Public form endpoints (work in progress)."""

from __future__ import annotations

from django.http import Http404


def embed_script(request):
    raise Http404


def confirm(request, token: str):
    raise Http404


def incentive_download(request, token: str):
    raise Http404


def hosted(request, uid: str):
    raise Http404


def subscribe(request, uid: str):
    raise Http404


def view_pixel(request, uid: str):
    raise Http404
