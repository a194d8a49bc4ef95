"""A local SMTP server that keeps every message it receives as a .eml file; for development only.

`make run` starts it on 127.0.0.1:1025 and points Django's SMTP backend at it, so password resets
and broadcasts sent on a developer's machine land in MAILBOX_DIR instead of anyone's inbox. The
DEBUG-only mailbox page (/dev/mailbox/) reads the same files through `mailbox_list` and
`mailbox_read`. Nothing is ever relayed.

    python -m convertkit.dev.mailsink --port 1025 --dir .local/mail
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

# A message id is its file name without ".eml": UTC time to the microsecond, then random hex, so
# names sort by arrival and never collide. Anything else is refused before it reaches the disk.
MESSAGE_ID_RE = re.compile(r"\A[0-9]{8}T[0-9]{12}-[0-9a-f]{8}\Z")
SUFFIX = ".eml"


def message_id_new(*, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


def message_path(*, mailbox_dir: Path, message_id: str) -> Path:
    """The file of a message, or ValueError for anything that is not a well-formed id."""
    if not isinstance(message_id, str) or not MESSAGE_ID_RE.match(message_id):
        raise ValueError(f"Not a message id: {message_id!r}")
    return Path(mailbox_dir) / f"{message_id}{SUFFIX}"


def message_store(
    *, mailbox_dir: Path, mail_from: str, rcpt_tos: list[str], content: bytes, peer: str = ""
) -> str:
    """Writes one received message (envelope first, as X- headers) and returns its id.

    The file appears under its final name only once complete, so the mailbox page never reads
    half a message.
    """
    mailbox_dir = Path(mailbox_dir)
    mailbox_dir.mkdir(parents=True, exist_ok=True)
    message_id = message_id_new()
    envelope = (
        f"X-Peer: {peer}\r\nX-MailFrom: {mail_from}\r\nX-RcptTo: {', '.join(rcpt_tos)}\r\n"
    ).encode("utf-8", "replace")
    final = message_path(mailbox_dir=mailbox_dir, message_id=message_id)
    partial = mailbox_dir / f".{message_id}.partial"
    partial.write_bytes(envelope + content)
    os.replace(partial, final)
    return message_id


@dataclass(frozen=True)
class Envelope:
    """Who a captured message was for: what the mailbox page decides visibility by."""

    recipients: frozenset[str]  # the SMTP envelope's RCPT TO addresses, lower-case
    list_unsubscribe: str  # the List-Unsubscribe header, "" if none


@dataclass(frozen=True)
class MailboxEntry:
    id: str
    sender: str
    to: str
    subject: str
    date: datetime | None
    envelope: Envelope


@dataclass(frozen=True)
class MailboxMessage:
    id: str
    headers: list[tuple[str, str]]
    subject: str
    text: str | None
    html: str | None
    attachments: list[tuple[str, str, int]]
    raw: bytes
    envelope: Envelope


def _message_ids(mailbox_dir: Path) -> list[str]:
    try:
        names = os.listdir(mailbox_dir)
    except FileNotFoundError:
        return []
    return sorted(
        (
            name[: -len(SUFFIX)]
            for name in names
            if name.endswith(SUFFIX) and MESSAGE_ID_RE.match(name[: -len(SUFFIX)])
        ),
        reverse=True,
    )


def _date(message: EmailMessage, message_id: str) -> datetime | None:
    try:
        return parsedate_to_datetime(str(message["Date"]))
    except (TypeError, ValueError):
        try:
            return datetime.strptime(message_id[:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
        except ValueError:
            return None


def _envelope(message: EmailMessage) -> Envelope:
    recipients = str(message.get("X-RcptTo", "")).split(",")
    return Envelope(
        recipients=frozenset(address.strip().lower() for address in recipients if address.strip()),
        list_unsubscribe=str(message.get("List-Unsubscribe", "")),
    )


def mailbox_list(
    *,
    mailbox_dir: Path,
    keep: Callable[[Envelope], bool],
    limit: int = 200,
    scan: int = 2000,
) -> tuple[list[MailboxEntry], bool]:
    """The newest `limit` messages whose envelope `keep` accepts (headers only), among the newest
    `scan` messages; and whether older messages were left unread."""
    ids = _message_ids(Path(mailbox_dir))
    entries = []
    for message_id in ids[:scan]:
        path = message_path(mailbox_dir=mailbox_dir, message_id=message_id)
        try:
            with path.open("rb") as fp:
                message = BytesParser(policy=policy.default).parse(fp, headersonly=True)
        except FileNotFoundError:
            continue
        envelope = _envelope(message)
        if not keep(envelope):
            continue
        entries.append(
            MailboxEntry(
                id=message_id,
                sender=str(message.get("From", "")),
                to=str(message.get("To", "") or message.get("X-RcptTo", "")),
                subject=str(message.get("Subject", "")),
                date=_date(message, message_id),
                envelope=envelope,
            )
        )
        if len(entries) == limit:
            return entries, message_id != ids[-1]
    return entries, len(ids) > scan


def _decoded(part) -> str:
    try:
        text = part.get_content()
    except (LookupError, UnicodeError):
        text = part.get_payload(decode=True).decode("utf-8", "replace")
    # SMTP carries CRLF line ends; the page shows lines, not carriage returns.
    return text.replace("\r\n", "\n")


def mailbox_read(*, mailbox_dir: Path, message_id: str) -> MailboxMessage:
    """One message, parsed; ValueError for a malformed id, FileNotFoundError if it is not there."""
    raw = message_path(mailbox_dir=mailbox_dir, message_id=message_id).read_bytes()
    message = BytesParser(policy=policy.default).parsebytes(raw)
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    attachments = [
        (
            part.get_filename() or "(no name)",
            part.get_content_type(),
            len(part.get_payload(decode=True) or b""),
        )
        for part in message.iter_attachments()
    ]
    return MailboxMessage(
        id=message_id,
        headers=[(name, str(value)) for name, value in message.items()],
        subject=str(message.get("Subject", "")),
        text=_decoded(text_part) if text_part is not None else None,
        html=_decoded(html_part) if html_part is not None else None,
        attachments=attachments,
        raw=raw,
        envelope=_envelope(message),
    )


class MailboxHandler:
    """aiosmtpd handler: accepts every message and stores it in `mailbox_dir`."""

    def __init__(self, mailbox_dir: Path) -> None:
        self.mailbox_dir = Path(mailbox_dir)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        message_id = message_store(
            mailbox_dir=self.mailbox_dir,
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            content=envelope.original_content or b"",
            peer=peer,
        )
        print(
            f"captured {message_id}: {envelope.mail_from} -> {', '.join(envelope.rcpt_tos)}",
            flush=True,
        )
        return "250 Message accepted for delivery"


def sink_start(*, host: str = "127.0.0.1", port: int = 1025, mailbox_dir: Path):
    """Starts the SMTP server in a background thread and returns its aiosmtpd Controller."""
    from aiosmtpd.controller import Controller

    controller = Controller(
        MailboxHandler(mailbox_dir),
        hostname=host,
        port=port,
        enable_SMTPUTF8=True,
        ready_timeout=10,
    )
    controller.start()
    return controller


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m convertkit.dev.mailsink",
        description="Capture every message sent over SMTP as a .eml file (development only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=1025, help="port to listen on (1025)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("MAILBOX_DIR") or Path(".local") / "mail"),
        help="where to write the .eml files ($MAILBOX_DIR or .local/mail)",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        controller = sink_start(host=args.host, port=args.port, mailbox_dir=args.dir)
    except (OSError, RuntimeError) as exc:
        print(f"mail sink cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"listening on {args.host}:{args.port}, writing to {args.dir.resolve()}", flush=True)
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
