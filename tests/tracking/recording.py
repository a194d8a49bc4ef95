"""Helpers of the recording tests: calling the web process's WSGI application as a server
would, and reading what it buffered."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from convertkit.redis import redis_client
from convertkit.wsgi import application
from tracking import endpoints
from tracking.buffer import QUEUE_KEY, WAITING_KEY, buffer_flush
from tracking.tokens import click_token, open_token

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def wsgi_call(
    path: str,
    *,
    method: str = "GET",
    agent: str | None = CHROME,
    address: str = "203.0.113.7",
    **extra: str,
) -> Answer:
    """Calls convertkit.wsgi.application with the environ gunicorn would build."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": address,
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        **extra,
    }
    if agent is not None:
        environ["HTTP_USER_AGENT"] = agent
    answered = {}

    def start_response(status, headers, exc_info=None):
        answered["status"] = int(status.split(" ", 1)[0])
        answered["headers"] = dict(headers)

    chunks = application(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return Answer(answered["status"], answered["headers"], body)


def open_path(delivery) -> str:
    return "/t/o/" + open_token(broadcast_id=delivery.broadcast_id, delivery_id=delivery.pk)


def click_path(delivery, link) -> str:
    return "/t/c/" + click_token(
        broadcast_id=delivery.broadcast_id, delivery_id=delivery.pk, link_id=link.pk
    )


def queued_lines() -> list[list[str]]:
    """Each chunk waiting in Redis, as its lines split in fields (strings)."""
    return [
        [line.split(" ") for line in chunk.split("\n")]
        for chunk in redis_client().lrange(QUEUE_KEY, 0, -1)
    ]


def recorded() -> list[list[str]]:
    """Everything the requests so far buffered, flushed to Redis: one field list per event."""
    buffer_flush()
    return [line for chunk in queued_lines() for line in chunk]


@pytest.fixture(autouse=True)
def empty_recording():
    """Nothing buffered, queued or cached from an earlier test."""
    buffer_flush()
    redis_client().delete(QUEUE_KEY, WAITING_KEY)
    endpoints.links.clear()
    yield
