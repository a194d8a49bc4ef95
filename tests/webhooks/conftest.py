"""A real HTTP receiver on 127.0.0.1 that checks every signature, and the clock and endpoints
the webhook tests share."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.api.conftest import api_a, api_b  # noqa: F401 - the same fixtures
from tests.sequences.conftest import make_sequence  # noqa: F401 - the same fixture
from tests.tracking.conftest import sent_broadcast  # noqa: F401 - the same fixture

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with the next of `answers` ((status, headers, body); 200 once they
    run out) and keeps what it got; `stop()` and `start()` take it down and bring it back on
    the same port."""

    secret: str = ""
    answers: deque = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def signature_valid(self, header: str, body: bytes) -> bool:
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        expected = hmac.new(
            self.secret.encode(), parts.get("t", "").encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(expected, parts.get("v1", ""))

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(
                    Received(
                        path=self.path,
                        headers=dict(self.headers),
                        body=body,
                        signature_ok=receiver.signature_valid(
                            self.headers.get("X-Kit-Signature", ""), body
                        ),
                    )
                )
                status, headers, text = (
                    receiver.answers.popleft() if receiver.answers else (200, {}, "ok")
                )
                data = text.encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def event_ids(self) -> list[str]:
        ids = []
        for request in self.received:
            payload = request.json
            ids += [event["id"] for event in payload.get("events", [])]
        return ids


@pytest.fixture
def receiver():
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(autouse=True)
def _private_targets_allowed(settings):
    """The receivers listen on 127.0.0.1; the SSRF tests turn this back off."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_CONCURRENCY = 4
