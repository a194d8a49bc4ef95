"""Fixtures of the broadcast tests: a counting SMTP sink, a ready-to-send broadcast, and a
proxy in front of PostgreSQL that a test can cut to stage a database outage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
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
    slows each message down (seconds), so a test can act while a broadcast is under way.
    `on_data(recipient)` is called when a message's DATA has arrived, before it is accepted: a
    fault can be injected there; when it returns a reply, that is the answer and the message is
    not counted."""

    def __init__(
        self, delay: float = 0.0, on_data: Callable[[str], str | None] | None = None
    ) -> None:
        self.delay = delay
        self.on_data = on_data
        self.copies: Counter[str] = Counter()
        self.messages: list = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.on_data is not None:
            # In a thread of its own: Django refuses database work in an event loop's thread.
            reply = await asyncio.to_thread(self.on_data, envelope.rcpt_tos[0].lower())
            if reply is not None:
                return reply
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


class DatabaseProxy:
    """A TCP forwarder to the test database's server, for the processes a test starts: `cut()`
    drops every connection and closes new ones at once (a PostgreSQL restart, as a client sees
    it), `restore()` lets them through again; `refused` counts the connections closed while cut.
    The server itself is shared with other work and never stopped."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refused = 0
        self._up = True
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._up:
                    self.refused += 1
                    client.close()
                    continue
                server = socket.create_connection(self.target)
                self._open |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            self._drop(end)

    def _drop(self, end: socket.socket) -> None:
        with self._lock:
            self._open.discard(end)
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()

    def cut(self) -> None:
        with self._lock:
            self._up = False
            ends = list(self._open)
        for end in ends:
            self._drop(end)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()

    def url(self) -> str:
        database = connection.settings_dict
        return f"postgres://{database['USER']}@127.0.0.1:{self.port}/{database['NAME']}"


@pytest.fixture
def database_proxy(transactional_db):
    database = connection.settings_dict
    proxy = DatabaseProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))
    yield proxy
    proxy.close()
