"""Fixtures of the broadcast tests: a counting SMTP sink and a ready-to-send broadcast."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from email import policy
from email.parser import BytesParser

import django
import pytest
from django.conf import settings as django_settings
from django.db import connection

from broadcasts.models import Broadcast
from convertkit.dev.devstack import free_port
from tests.factories import AccountFactory, SubscriberFactory


class CountingHandler:
    """aiosmtpd handler keeping every message and counting copies per recipient; `delay`
    slows each message down (seconds), so a test can act while a broadcast is under way."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.copies: Counter[str] = Counter()
        self.messages: list = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        if self.delay:
            await asyncio.sleep(self.delay)
        parsed = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.copies[recipient.lower()] += 1
            self.messages.append(parsed)
        return "250 OK"


def wait_until(condition, timeout: float = 30.0) -> None:
    """Returns once condition() is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts (a Celery worker, gunicorn): this one's, on
    the test database and Redis, DEBUG on, and `extra`."""
    database = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "REDIS_URL": django_settings.REDIS_URL,
        "DEBUG": "true",
        **extra,
    }


def smtp_settings(settings, port: int) -> None:
    """Points the site's mail at an SMTP server on 127.0.0.1:port (Django 6.1+ and older)."""
    backend = "django.core.mail.backends.smtp.EmailBackend"
    if django.VERSION >= (6, 1):
        settings.MAILERS = {
            "default": {"BACKEND": backend, "OPTIONS": {"host": "127.0.0.1", "port": port}}
        }
    else:
        settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT = (
            backend,
            "127.0.0.1",
            port,
        )


@pytest.fixture
def smtp_sink(settings):
    """A real SMTP server counting copies per recipient, with the site's mail pointed at it."""
    from aiosmtpd.controller import Controller

    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    handler.port = port
    smtp_settings(settings, port)
    yield handler
    controller.stop()


@pytest.fixture
def make_broadcast():
    """make_broadcast(recipients=N, **fields): an account with N active subscribers and a
    sendable draft broadcast to all of them."""

    def make(*, recipients: int = 3, account=None, **fields) -> Broadcast:
        account = account or AccountFactory(name="Ann's Kitchen")
        for n in range(recipients):
            SubscriberFactory(account=account, email=f"reader{n}@example.org", first_name=f"R{n}")
        values = {
            "subject": "Soup season, {{ subscriber.first_name | default: 'friend' }}",
            "preview_text": "Five soups for cold evenings",
            "body": "Hello {{ subscriber.first_name | default: 'friend' }},\n\nSoup is back.",
            **fields,
        }
        return Broadcast.objects.create(account=account, **values)

    return make
