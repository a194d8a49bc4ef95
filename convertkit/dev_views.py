from __future__ import annotations

from django.http import HttpResponse

# Placeholder views, replaced as the work lands.


def mailbox(request, **kwargs):
    return HttpResponse("todo")


def mailbox_message(request, **kwargs):
    return HttpResponse("todo")
