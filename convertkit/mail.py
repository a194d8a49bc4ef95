"""The address headers of outgoing mail, with display names written as the text they are.

A display name is text someone typed (a sender name, a subscriber's first name, the name in
DEFAULT_FROM_EMAIL), never header syntax. Text that merely looks like an RFC 2047 encoded word
(`=?utf-8?b?...?=`) must reach the reader as those characters: passed through, the receiving
client would decode it into whatever it hides, a line break and a Bcc header included. So:

- `address_format` writes a plain ASCII name as it is (quoted where RFC 5322 needs it), and any
  other name (non-ASCII, or holding "=?") as encoded words of its own text, which every decoder
  turns back into exactly that text.
- The email package cannot be trusted with the result: it decodes the name when it parses the
  header and, the decoded text being ASCII, writes it back out as is, so an encoded word typed as
  text would come back to life. `TextNamesEmail.message()` therefore writes From and To itself,
  as `address_format` made them; so does the broadcast MIME writer (broadcasts/rendering/mime.py).
"""

from __future__ import annotations

import base64
import email.policy
import inspect
import re
from email.utils import formataddr, parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives

# Django 6 passes the policy to message(); Django 5.2 has no such argument.
MESSAGE_TAKES_POLICY = "policy" in inspect.signature(EmailMultiAlternatives.message).parameters
LINE_LIMIT = 78
# 42 bytes of UTF-8 are 56 characters of base64, 68 with "=?utf-8?b?" and "?=": the first word
# fits after "Subject: " within 78 characters (RFC 2047 allows 75 per word).
_WORD_BYTES = 42
# Text a header carries as it is: printable ASCII (RFC 2047 words aside, see header_plain).
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def header_check(name: str, value: str) -> None:
    """ValueError for a header value with a line break: it would start another header."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name} must not contain a line break: {value!r}")


def header_plain(value: str) -> bool:
    """Whether `value` can stand in a header as it is: printable ASCII that no decoder would
    read as an RFC 2047 encoded word."""
    return bool(_PRINTABLE_ASCII.fullmatch(value)) and "=?" not in value


def encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 base64 encoded words, never splitting a character."""
    data = text.encode("utf-8")
    words, start = [], 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        start = end
    return words


def header_folded(name: str, words: list[str], linesep: str) -> str:
    """A header line from `words` (joined by spaces), folded before a word where it would pass
    78 characters (also right after the colon, as the email package does); a single longer word
    stays whole (RFC 5322 allows 998)."""
    lines, line = [], f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > LINE_LIMIT and line:
            lines.append(line)
            line = ""
        line = f"{line} {word}"
    lines.append(line)
    return linesep.join(lines) + linesep


def address_format(*, name: str, address: str) -> str:
    """`name <address>` for a From or To header, the name written as text (see the module
    docstring); a line break in it becomes a space. The address must be ASCII."""
    name = " ".join(name.split())
    if header_plain(name):
        return formataddr((name, address))
    return " ".join([*encoded_words(name), f"<{formataddr(('', address))}>"])


def address_line(name: str, value: str, linesep: str) -> str | None:
    """`name: value` for an address header `value` made by address_format, folded at its
    spaces; None when only the email package can write it (a non-ASCII address). ValueError
    for a line break."""
    header_check(name, value)
    if not value.isascii():
        return None
    if len(name) + 2 + len(value) <= LINE_LIMIT:
        return f"{name}: {value}{linesep}"
    return header_folded(name, value.split(" "), linesep)


def default_from_email() -> str:
    """DEFAULT_FROM_EMAIL with its display name written as text."""
    name, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    return address_format(name=name, address=address)


class _WrittenHeader(str):
    """An address header written by address_format, which the email package keeps as it is
    (its folding calls fold(); Django 5.2's compat32 policy folds it at spaces as plain ASCII)
    instead of parsing and writing it again."""

    def __new__(cls, name: str, value: str) -> _WrittenHeader:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy) -> str:
        return address_line(self.name, str(self), policy.linesep)


class TextNamesEmail(EmailMultiAlternatives):
    """An EmailMultiAlternatives whose MIME message carries From and To exactly as
    address_format wrote them (see the module docstring). Backends that read the addresses
    rather than the MIME message (anymail's ESPs) get the same strings."""

    def message(self, *, policy=email.policy.default):
        message = super().message(policy=policy) if MESSAGE_TAKES_POLICY else super().message()
        given = {name.lower() for name in self.extra_headers}
        for name, value in (("From", self.from_email), ("To", ", ".join(map(str, self.to)))):
            if name.lower() not in given and name in message and value.isascii():
                del message[name]
                message.set_raw(name, _WrittenHeader(name, value))
        return message
