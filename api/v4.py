"""Kit's API v4, every resource on the one NinjaAPI (api.views.api), served at /v4/.

Each resource's module has a Router; they are all added here, and the catch-all 404 last of
all (a route added after it would never be reached)."""

from __future__ import annotations

from django.http import Http404
from ninja import Router

from api import broadcasts, bulk, custom_fields, segments, sequences, signup_forms, webhooks
from api.views import api

for resource in (custom_fields, signup_forms, sequences, segments, broadcasts, webhooks, bulk):
    api.add_router("", resource.router)

fallback = Router()


@fallback.api_operation(
    ["GET", "POST", "PUT", "PATCH", "DELETE"], "/{path:rest}", include_in_schema=False
)
def not_found(request, rest: str):
    """Any other path under /v4/ (an endpoint not built yet, an id that is not a number): Kit's
    404, not the site's HTML page."""
    raise Http404


api.add_router("", fallback)
