"""Display names are text on every path a message takes: a sender name or first name that looks
like an RFC 2047 encoded word reaches the reader as the characters typed, never decoded into the
line break and header it hides. Every message goes through a real SMTP server and is read back
from the bytes it received."""

from __future__ import annotations

import re
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.utils import getaddresses

import pytest

from broadcasts.models import Broadcast
from broadcasts.rendering import BroadcastRenderer, frozen_parts, test_message_build
from convertkit.dev.devstack import free_port
from convertkit.dev.mailsink import sink_start
from convertkit.services import account_email_send
from subscribers.mail import subscriber_email_build
from tests.broadcasts.conftest import smtp_settings
from tests.factories import AccountFactory, SubscriberFactory

# Decodes to "Eve", CR LF, "Bcc: injected@evil.example".
ENCODED_BCC = "=?utf-8?b?RXZlDQpCY2M6IGluamVjdGVkQGV2aWwuZXhhbXBsZQ==?="
NAMES = [
    ENCODED_BCC,
    "Ann =?iso-8859-1?q?=E9?= Example",
    "Zoë =?utf-8?q?x?=",
    'Ann "The Boss", <Example>',
    "Zoë, Jr.",
]


@pytest.fixture
def mailbox(settings, tmp_path):
    """A real SMTP server (the development mail sink) with the site's mail pointed at it;
    returns a function giving each message it received as (raw bytes, parsed)."""
    port = free_port()
    controller = sink_start(port=port, mailbox_dir=tmp_path)
    smtp_settings(settings, port)

    def received() -> list[tuple[bytes, object]]:
        raws = [path.read_bytes() for path in sorted(tmp_path.glob("*.eml"))]
        return [(raw, BytesParser(policy=policy.default).parsebytes(raw)) for raw in raws]

    yield received
    controller.stop()


@pytest.fixture
def account(db, settings):
    settings.SITE_URL = "https://mail.example.com"
    return AccountFactory(sender_email="ann@news.example.com", postal_address="1 Main Street")


def _one(received) -> tuple[bytes, object]:
    (message,) = received()
    return message


def _head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]


def _assert_no_injection(raw: bytes, parsed, *, recipient: str) -> None:
    assert parsed["X-RcptTo"] == recipient  # the envelope: nobody else
    assert parsed["Bcc"] is None
    assert re.findall(rb"^Bcc:", _head(raw), flags=re.MULTILINE | re.IGNORECASE) == []
    assert _head(raw).isascii()
    for header in ("From", "To"):
        for address in parsed[header].addresses:
            assert "\r" not in address.display_name and "\n" not in address.display_name


def _addresses(raw: bytes, header: str) -> list[tuple[str, str]]:
    """(display name, address) of each address in the header, the name decoded as RFC 2047
    says: whitespace between two encoded words is dropped (Python's address parser keeps it,
    so a long name split into two words would read with a space in the middle)."""
    value = BytesParser(policy=policy.compat32).parsebytes(raw)[header]
    return [
        (str(make_header(decode_header(name))), address) for name, address in getaddresses([value])
    ]


@pytest.mark.parametrize("name", NAMES)
def test_subscriber_mail_names_arrive_as_typed(account, mailbox, name):
    account.sender_name = name
    account.save()
    reader = SubscriberFactory(account=account, email="reader@example.org", first_name=name)

    subscriber_email_build(subscriber=reader, subject="Hi", text_body="Hello").send()

    raw, received = _one(mailbox)
    _assert_no_injection(raw, received, recipient="reader@example.org")
    assert _addresses(raw, "From") == [(name, "ann@news.example.com")]
    assert _addresses(raw, "To") == [(name, "reader@example.org")]


@pytest.mark.parametrize("built_by", ["skeleton", "django"])
@pytest.mark.parametrize("name", NAMES)
def test_broadcast_names_arrive_as_typed(account, mailbox, name, built_by):
    account.sender_name = name
    account.save()
    reader = SubscriberFactory(account=account, email="reader@example.org", first_name=name)
    broadcast = Broadcast.objects.create(account=account, subject="Soup", body="Soup is back.")
    frozen = frozen_parts(broadcast)
    broadcast.frozen_subject, broadcast.frozen_html, broadcast.frozen_text = frozen[:3]
    message = BroadcastRenderer(broadcast).message(delivery_id=1, subscriber=reader)
    if built_by == "django":
        message.reply_to = ["help@news.example.com"]  # a shape only Django's message() writes

    message.send()

    raw, received = _one(mailbox)
    _assert_no_injection(raw, received, recipient="reader@example.org")
    assert _addresses(raw, "From") == [(name, "ann@news.example.com")]
    assert _addresses(raw, "To") == [(name, "reader@example.org")]


@pytest.mark.parametrize("name", NAMES)
def test_test_message_names_arrive_as_typed(account, mailbox, name):
    account.sender_name = name
    account.save()
    broadcast = Broadcast.objects.create(account=account, subject="Soup", body="Soup is back.")

    test_message_build(broadcast=broadcast, to_email="ann@example.com").send()

    raw, received = _one(mailbox)
    _assert_no_injection(raw, received, recipient="ann@example.com")
    assert _addresses(raw, "From") == [(name, "ann@news.example.com")]


@pytest.mark.parametrize("name", NAMES)
def test_account_mail_names_arrive_as_typed(mailbox, settings, name):
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    settings.DEFAULT_FROM_EMAIL = f'"{quoted}" <noreply@mail.example.com>'

    account_email_send(to="ann@example.com", subject="Reset your password", body="Follow me.")

    raw, received = _one(mailbox)
    _assert_no_injection(raw, received, recipient="ann@example.com")
    assert _addresses(raw, "From") == [(name, "noreply@mail.example.com")]
