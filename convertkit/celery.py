"""The Celery app. Its configuration is the CELERY_* block of convertkit/settings.py."""

from __future__ import annotations

import os
from smtplib import SMTPException

from celery import Celery
from django.db import InterfaceError, OperationalError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convertkit.settings")

app = Celery("convertkit")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The one retry policy of every task that sends an email outside the send pipeline (account
# mail, subscriber mail, broadcast tests): a mail server or ESP briefly out of reach is tried
# again with backoff, a bounded number of times, so an outage is not amplified.
MAIL_RETRY = {
    "autoretry_for": (OSError, SMTPException),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "max_retries": 5,
}

# The retry policy of tasks whose every step is safe to run again (the send pipeline's, whose
# claims decide who sends what): one that meets a database outage (a restart, a failover, a
# killed backend) is tried again with backoff, a bounded number of times, rather than
# acknowledged and lost.
DATABASE_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": 10,
}
