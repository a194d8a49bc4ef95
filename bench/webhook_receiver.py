"""A fast webhook receiver for bench/webhooks_part.py, in a process of its own: asyncio,
HTTP/1.1 keep-alive, every signature checked (X-Kit-Signature with --secret), every event
counted once (an endpoint's by its event id, a legacy webhook's, one event per delivery,
by its X-Kit-Delivery).

    python -m bench.webhook_receiver --secret S [--port 0]

Prints "ready hooks=<url> control=<url>". The control port answers GET /stats (JSON counts),
POST /down (stop listening, drop open connections: the receiver is down) and POST /up.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import socket

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Receiver:
    def __init__(self, secret: str, port: int):
        self.secret = secret.encode()
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.posts = 0
        self.bad_signatures = 0
        self.event_ids: set[str] = set()
        self.legacy_deliveries: set[bytes] = set()
        self.events_received = 0

    def signature_ok(self, header: bytes, body: bytes) -> bool:
        parts = [part.split(b"=", 1) for part in header.split(b",") if b"=" in part]
        stamp = next((value for name, value in parts if name == b"t"), b"")
        digest = hmac.new(self.secret, stamp + b"." + body, hashlib.sha256).hexdigest().encode()
        return any(hmac.compare_digest(digest, value) for name, value in parts if name == b"v1")

    def record(self, body: bytes, delivery: bytes) -> None:
        payload = json.loads(body)
        if "events" in payload:
            self.events_received += len(payload["events"])
            self.event_ids.update(event["id"] for event in payload["events"])
        elif "subscriber" in payload:
            self.events_received += 1
            self.legacy_deliveries.add(delivery)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                self.posts += 1
                if self.signature_ok(headers.get(b"x-kit-signature", b""), body):
                    self.record(body, headers.get(b"x-kit-delivery", b""))
                else:
                    self.bad_signatures += 1
                writer.write(OK)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def up(self) -> None:
        if self.server is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            self.port = sock.getsockname()[1]
            self.server = await asyncio.start_server(self.handle, sock=sock, backlog=1024)

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self.writers):
                writer.transport.abort()
            await self.server.wait_closed()
            self.server = None

    def stats(self) -> dict:
        return {
            "posts": self.posts,
            "bad_signatures": self.bad_signatures,
            "events_received": self.events_received,
            "unique_event_ids": len(self.event_ids),
            "unique_legacy_deliveries": len(self.legacy_deliveries),
            "up": self.server is not None,
        }

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await reader.readuntil(b"\r\n\r\n")).split(b" ", 2)
            method, path = request[0], request[1]
            if method == b"POST" and path == b"/down":
                await self.down()
            elif method == b"POST" and path == b"/up":
                await self.up()
            data = json.dumps(self.stats()).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()


async def serve(secret: str, port: int) -> None:
    receiver = Receiver(secret, port)
    await receiver.up()
    control = await asyncio.start_server(receiver.control, "127.0.0.1", 0)
    control_port = control.sockets[0].getsockname()[1]
    print(
        f"ready hooks=http://127.0.0.1:{receiver.port}/hook "
        f"control=http://127.0.0.1:{control_port}",
        flush=True,
    )
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secret", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.secret, args.port))


if __name__ == "__main__":
    main()
