"""The site's URLs and, for bench/api.py's limit, /bench/v4/nothing: a view that does nothing
behind the same credentials as /v4/ (an API key or an OAuth token, and its rate limit), on the
same middleware, in the same server."""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import path
from ninja import NinjaAPI

from api.auth import KitApiKey, KitOAuthToken
from convertkit.urls import urlpatterns as site_urlpatterns

nothing_api = NinjaAPI(
    urls_namespace="bench_nothing", auth=[KitApiKey(), KitOAuthToken()], docs_url=None
)


@nothing_api.post("/nothing")
def nothing(request):
    """Reads no body and writes nothing: what any authenticated API request costs."""
    return JsonResponse({"account": request.account.id}, status=201)


urlpatterns = [path("bench/v4/", nothing_api.urls), *site_urlpatterns]
