"""The WSGI application gunicorn serves: Django, with the tracking paths (/t/) answered in front
of it by tracking/endpoints.py, outside Django's middleware."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convertkit.settings")

django_application = get_wsgi_application()

from tracking.endpoints import tracking_wsgi  # noqa: E402 - needs the apps loaded above

application = tracking_wsgi(django_application)
