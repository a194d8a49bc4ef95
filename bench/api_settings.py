"""The production settings with one more route (bench/api_urls.py): what bench/api.py's
gunicorn runs with (DJANGO_SETTINGS_MODULE=bench.api_settings), nothing else changed."""

from __future__ import annotations

from convertkit.settings import *  # noqa: F403

ROOT_URLCONF = "bench.api_urls"
