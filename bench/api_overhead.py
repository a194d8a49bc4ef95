"""What an API library costs per request: a do-nothing JSON view written with Django REST
Framework and with django-ninja, beside the same view in plain Django, in one process.

    DATABASE_URL=... REDIS_URL=... DEBUG=true python bench/api_overhead.py [--requests N]

1. Routes the three views from this module (ROOT_URLCONF is overridden; no database is touched:
   the views read nothing and the requests carry no session).
2. Warms each up, then sends --requests GETs to each through Django's test client (the whole
   middleware stack, as a real request gets), three rounds in turn, keeping each view's best.
3. Prints req/s and microseconds per request for each, and the ratio to plain Django, then one
   JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convertkit.settings")

import django  # noqa: E402

django.setup()

from django.http import JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from ninja import NinjaAPI  # noqa: E402
from rest_framework.decorators import (  # noqa: E402
    api_view,
    authentication_classes,
    permission_classes,
    renderer_classes,
)
from rest_framework.permissions import AllowAny  # noqa: E402
from rest_framework.renderers import JSONRenderer  # noqa: E402
from rest_framework.response import Response  # noqa: E402

PAYLOAD = {"ok": True}


def plain_view(request):
    return JsonResponse(PAYLOAD)


@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
@renderer_classes([JSONRenderer])
def drf_view(request):
    return Response(PAYLOAD)


ninja_api = NinjaAPI(urls_namespace="bench_ninja", docs_url=None)


@ninja_api.get("/nothing")
def ninja_view(request):
    return PAYLOAD


urlpatterns = [
    path("plain/", plain_view),
    path("drf/", drf_view),
    path("ninja/", ninja_api.urls),
]

PATHS = {"django": "/plain/", "drf": "/drf/", "ninja": "/ninja/nothing"}


def requests_per_second(client: Client, url: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        client.get(url)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per view per round")
    args = parser.parse_args()
    best = dict.fromkeys(PATHS, 0.0)
    with override_settings(ROOT_URLCONF=__name__):
        client = Client()
        for name, url in PATHS.items():
            response = client.get(url)
            assert response.status_code == 200 and response.json() == PAYLOAD, (name, response)
            requests_per_second(client, url, 200)
        for _round in range(3):
            for name, url in PATHS.items():
                best[name] = max(best[name], requests_per_second(client, url, args.requests))
    print(f"{'view':8} {'req/s':>9} {'µs/req':>8} {'vs django':>10}")
    for name, rate in best.items():
        print(f"{name:8} {rate:9.0f} {1e6 / rate:8.1f} {rate / best['django']:10.2f}")
    print(
        json.dumps(
            {
                "bench": "api_overhead",
                "requests": args.requests,
                **{f"{name}_req_per_s": round(rate) for name, rate in best.items()},
                "drf_ratio": round(best["drf"] / best["django"], 3),
                "ninja_ratio": round(best["ninja"] / best["django"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
