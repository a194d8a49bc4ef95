"""A local stand-in for Postmark's send API that counts the copies each recipient gets.

For the transport tests and bench/broadcast.py. anymail's Postmark backend is pointed at it with
ANYMAIL_POSTMARK_API_URL=http://127.0.0.1:PORT/ (any server token is accepted).

    POST /email/batch   a JSON list of messages; answers one result per message, in order:
                        {"ErrorCode": 0, "Message": "OK", "MessageID": ..., "To": ...}
    POST /email         one message, one such result
    GET  /_counts       {"copies", "requests", "distinct", "first_at", "last_at",
                         "recipients": {addr: n}}
                        (?summary=1 leaves out the recipients)
    POST /_reset        forgets every count

Faults, for tests (attributes of FakePostmark, or command-line options):
    fail_status  answer every send with this HTTP status (500, 429, ...), accepting nothing
    stall        accept and count the messages, then wait this many seconds before answering
                 (the client's timeout fires after the messages were accepted)
    reject       addresses answered with ErrorCode 406 (inactive recipient), not counted
    slow_codes   {address: ErrorCode} for other per-message errors (e.g. 429), not counted

    python -m bench.fake_postmark --port 8025 [--fail-status 500] [--stall 5] [--reject a@x,b@y]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class CopyCounter:
    """Copies per recipient, thread-safe; the time of the first and the last accepted copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.recipients: Counter[str] = Counter()
            self.copies = 0
            self.requests = 0
            self.first_at: float | None = None
            self.last_at: float | None = None

    def add(self, addresses: list[str], *, requests: int = 1) -> None:
        now = time.time()
        with self._lock:
            self.recipients.update(addresses)
            self.copies += len(addresses)
            self.requests += requests
            if addresses:
                if self.first_at is None:
                    self.first_at = now
                self.last_at = now

    def snapshot(self, *, summary: bool = False) -> dict:
        with self._lock:
            result = {
                "copies": self.copies,
                "requests": self.requests,
                "distinct": len(self.recipients),
                "first_at": self.first_at,
                "last_at": self.last_at,
            }
            if not summary:
                result["recipients"] = dict(self.recipients)
        return result


def _addr_spec(header: str) -> str:
    addresses = getaddresses([header or ""])
    return addresses[0][1].lower() if addresses else ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def _answer(self, status: int, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        if url.path != "/_counts":
            self._answer(404, {"ErrorCode": 404, "Message": "Not found"})
            return
        summary = parse_qs(url.query).get("summary") == ["1"]
        self._answer(200, self.server.counter.snapshot(summary=summary))

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = urlparse(self.path).path
        if path == "/_reset":
            self.server.counter.reset()
            self._answer(200, {})
            return
        if path not in ("/email/batch", "/email"):
            self._answer(404, {"ErrorCode": 404, "Message": "Not found"})
            return
        if not self.headers.get("X-Postmark-Server-Token"):
            self._answer(401, {"ErrorCode": 10, "Message": "No Account or Server API tokens"})
            return
        fake = self.server.fake
        if fake.fail_status:
            self._answer(fake.fail_status, {"ErrorCode": 100, "Message": "Maintenance"})
            return
        try:
            data = json.loads(raw)
        except ValueError:
            self._answer(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
            return
        batch = path == "/email/batch"
        messages = data if batch else [data]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            self._answer(422, {"ErrorCode": 403, "Message": "Incompatible JSON input."})
            return
        if batch and len(messages) > 500:
            self._answer(422, {"ErrorCode": 410, "Message": "Too many batch messages."})
            return
        results, accepted = [], []
        submitted = datetime.now(UTC).isoformat()
        for message in messages:
            to = _addr_spec(message.get("To", ""))
            if not to or not message.get("From"):
                results.append({"ErrorCode": 300, "Message": "Invalid email request"})
            elif to in fake.reject:
                results.append(
                    {
                        "ErrorCode": 406,
                        "Message": "You tried to send to recipient(s) that have been marked as "
                        f"inactive. Found inactive addresses: {to}. Inactive recipients are ones "
                        "that have generated a hard bounce, a spam complaint, or a manual "
                        "suppression.",
                    }
                )
            elif to in fake.slow_codes:
                code = fake.slow_codes[to]
                results.append({"ErrorCode": code, "Message": f"Error {code}"})
            else:
                accepted.append(to)
                results.append(
                    {
                        "To": message["To"],
                        "SubmittedAt": submitted,
                        "MessageID": str(uuid.uuid4()),
                        "ErrorCode": 0,
                        "Message": "OK",
                    }
                )
        self.server.counter.add(accepted)
        if fake.keep:
            fake.received.append(messages)
        if fake.stall:
            time.sleep(fake.stall)
        if batch:
            self._answer(200, results)
        elif results[0]["ErrorCode"] == 0:
            self._answer(200, results[0])
        else:
            self._answer(422, results[0])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many workers may connect at once.
    request_queue_size = 128
    counter: CopyCounter
    fake: FakePostmark


class FakePostmark:
    """The fake API in a background thread: `with FakePostmark() as fake: fake.url ...`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fail_status: int | None = None,
        stall: float = 0.0,
        reject: set[str] | None = None,
        slow_codes: dict[str, int] | None = None,
        counter: CopyCounter | None = None,
        keep: bool = False,
    ) -> None:
        self.fail_status = fail_status
        self.stall = stall
        self.reject = {address.lower() for address in reject or ()}
        self.slow_codes = {address.lower(): code for address, code in (slow_codes or {}).items()}
        # Another receiver's counter (the SMTP sink's) is served the same way through /_counts.
        self.counter = counter if counter is not None else CopyCounter()
        # With keep, every request's messages (parsed JSON), for tests to read.
        self.keep = keep
        self.received: list[list[dict]] = []
        self._server = _Server((host, port), _Handler)
        self._server.counter = self.counter
        self._server.fake = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}/"

    def start(self) -> FakePostmark:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-postmark", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakePostmark:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def counts_fetch(url: str, *, summary: bool = False, timeout: float = 120) -> dict:
    """The counts of a fake (or of an SMTP sink's counts server) at `url` (http://host:port/)."""
    from urllib.request import urlopen

    with urlopen(
        f"{url.rstrip('/')}/_counts{'?summary=1' if summary else ''}", timeout=timeout
    ) as r:
        return json.loads(r.read())


def counts_reset(url: str, *, timeout: float = 30) -> None:
    from urllib.request import Request, urlopen

    with urlopen(Request(f"{url.rstrip('/')}/_reset", data=b"", method="POST"), timeout=timeout):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fake_postmark", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--fail-status", type=int, default=None)
    parser.add_argument("--stall", type=float, default=0.0)
    parser.add_argument("--reject", default="", help="comma-separated addresses")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    fake = FakePostmark(
        host=args.host,
        port=args.port,
        fail_status=args.fail_status,
        stall=args.stall,
        reject={a.strip() for a in args.reject.split(",") if a.strip()},
    ).start()
    print(f"ready {fake.url}", flush=True)
    stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
