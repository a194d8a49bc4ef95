"""An aiosmtpd sink that counts the copies each recipient gets, for tests and bench/broadcast.py.

It accepts every message and keeps nothing but the count per envelope recipient (RCPT TO),
so it costs as little as an SMTP server can. Faults, for tests:
    refuse             {address: reply} answered to RCPT TO, e.g. "450 4.2.1 Try later"
    drop_before_data   addresses whose RCPT TO closes the connection (once each)
    drop_after_data    addresses whose message's DATA closes the connection instead of
                       answering (once each; the copy is not counted)
    stall_data         seconds to wait before answering each DATA

    python -m bench.smtp_sink --port 2525 --counts-port 2526
The counts are served as JSON on http://127.0.0.1:COUNTS-PORT/_counts (see bench/fake_postmark.py).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading

from bench.fake_postmark import CopyCounter, FakePostmark


class CountingHandler:
    def __init__(
        self,
        counter: CopyCounter,
        *,
        refuse: dict[str, str] | None = None,
        drop_before_data: set[str] | None = None,
        drop_after_data: set[str] | None = None,
        stall_data: float = 0.0,
    ) -> None:
        self.counter = counter
        self.refuse = {address.lower(): reply for address, reply in (refuse or {}).items()}
        self.drop_before_data = {address.lower() for address in drop_before_data or ()}
        self.drop_after_data = {address.lower() for address in drop_after_data or ()}
        self.stall_data = stall_data
        # Connections greeted (EHLO), so a test can see that a batch used one.
        self.connections = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        self.connections += 1
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        key = address.lower()
        if key in self.refuse:
            return self.refuse[key]
        if key in self.drop_before_data:
            self.drop_before_data.discard(key)
            server.transport.close()
            return "421 4.3.0 Closing"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        recipients = [address.lower() for address in envelope.rcpt_tos]
        dropped = self.drop_after_data.intersection(recipients)
        if dropped:
            self.drop_after_data -= dropped
            server.transport.close()
            return "451 4.3.0 Dropped"
        if self.stall_data:
            await asyncio.sleep(self.stall_data)
        self.counter.add(recipients)
        return "250 OK"


class CountingSink:
    """The sink in a background thread: `with CountingSink() as sink: sink.port, sink.counter`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **faults) -> None:
        from aiosmtpd.controller import Controller

        from convertkit.dev.devstack import free_port

        self.counter = CopyCounter()
        self.handler = CountingHandler(self.counter, **faults)
        self.host = host
        self.port = port or free_port()
        self._controller = Controller(
            self.handler,
            hostname=host,
            port=self.port,
            enable_SMTPUTF8=True,
            ready_timeout=10,
        )

    def start(self) -> CountingSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> CountingSink:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.smtp_sink", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="SMTP port; 0 picks a free one")
    parser.add_argument("--counts-port", type=int, default=0, help="0 picks a free one")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sink = CountingSink(host=args.host, port=args.port).start()
    counts = FakePostmark(host=args.host, port=args.counts_port, counter=sink.counter).start()
    print(f"ready smtp={sink.port} counts={counts.url}", flush=True)
    stop.wait()
    counts.stop()
    sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
