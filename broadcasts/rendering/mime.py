"""The MIME bytes of a broadcast message, written from a skeleton built once per broadcast.

Django's EmailMultiAlternatives.message() builds a tree of email.message objects per message and
serialises it through the email package's policy machinery, which costs several times what
rendering the message does (a non-ASCII subject's encoding alone is a good part of that). A
broadcast's messages differ only in a few headers and their two bodies, so
BroadcastEmail.message() writes the bytes itself:

- once per broadcast (MessageSkeleton): the From header, the MIME headers of the message and of
  both parts, the boundary;
- per message: To, Subject, Date, Message-ID and List-Unsubscribe (ASCII, folded at spaces; a
  non-ASCII subject as RFC 2047 base64 words, remembered for the next recipient; From and To
  exactly as convertkit.mail.address_format wrote them, display names as text), and the two
  bodies: as they are (7bit, or 8bit UTF-8 as Django sends it) when no line passes the 998
  bytes of RFC 5322, else quoted-printable (which costs more than all the rest). The boundary
  holds "=_" and a random part: quoted-printable text can never contain "=_", and the random
  part is checked against 7bit and 8bit bodies, so no body can end a part early.

message() returns a real email.message.EmailMessage (PrebuiltMessage) whose as_bytes() returns
those bytes as they are; it parses them only if someone looks inside (anymail's SES backend
walks the parts, for instance). A message changed after rendering into something the skeleton
does not cover (attachments, Cc, other address headers, a non-ASCII address) is built by
Django's own message() instead (through TextNamesEmail, which keeps From and To as written), so
the result is always right, only slower.
"""

from __future__ import annotations

import binascii
import email.message
import email.policy
import secrets
import time
from email.parser import BytesParser
from email.utils import formatdate

from django.core.mail import EmailMultiAlternatives

from convertkit.mail import (
    LINE_LIMIT,
    TextNamesEmail,
    address_line,
    encoded_words,
    header_check,
    header_folded,
    header_plain,
)

# Headers the skeleton writes itself; any other extra header is written as given.
_OWN_HEADERS = {
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}
_SUBJECT_CACHE_SIZE = 256
# RFC 5322: at most 998 bytes in a line, without its line break.
_LINE_BYTES = 998


def header_line(name: str, value: str, linesep: str) -> str | None:
    """`name: value` as an ASCII header line, or None when only the email package can write it
    (non-ASCII, a word too long for any line, or text that looks like an RFC 2047 encoded word).
    ValueError for a line break."""
    header_check(name, value)
    if not header_plain(value):
        return None
    if len(name) + 2 + len(value) <= LINE_LIMIT:
        return f"{name}: {value}{linesep}"
    words = value.split(" ")
    if max(len(word) for word in words) > 900:
        return None
    return header_folded(name, words, linesep)


def subject_line(subject: str, linesep: str) -> str:
    subject = str(subject)
    line = header_line("Subject", subject, linesep)
    if line is not None:
        return line
    # Non-ASCII (or "=?"-like) text: every word encoded, so that nothing is misread.
    return header_folded("Subject", encoded_words(subject), linesep)


class MessageSkeleton:
    """What every message of one broadcast shares (see the module docstring)."""

    def __init__(self, *, from_email: str) -> None:
        self.from_email = from_email
        self._boundary = f"=_ck{secrets.token_hex(12)}"
        self._boundary_bytes = self._boundary.encode("ascii")
        self._part_heads: dict[tuple, bytes] = {}
        self._from_lines: dict[tuple[str, str], str | None] = {}
        self._subject_lines: dict[tuple[str, str], str] = {}
        self._date = (0, "")

    def _from_line(self, from_email: str, linesep: str) -> str | None:
        key = (from_email, linesep)
        if key not in self._from_lines:
            self._from_lines[key] = address_line("From", from_email, linesep)
        return self._from_lines[key]

    def _subject_line(self, subject: str, linesep: str) -> str:
        key = (subject, linesep)
        line = self._subject_lines.get(key)
        if line is None:
            if len(self._subject_lines) >= _SUBJECT_CACHE_SIZE:
                self._subject_lines.clear()
            line = self._subject_lines[key] = subject_line(subject, linesep)
        return line

    def _date_line(self, linesep: str) -> str:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return f"Date: {self._date[1]}{linesep}"

    def serialise(self, message: EmailMultiAlternatives, policy) -> bytes | None:
        """The message's bytes, or None when its shape is not one the skeleton covers."""
        if (
            message.cc
            or message.bcc
            or message.reply_to
            or message.attachments
            or len(message.to) != 1
            or len(message.alternatives) != 1
            or message.alternatives[0][1] != "text/html"
            or any(name.lower() in _OWN_HEADERS for name in message.extra_headers)
        ):
            return None
        linesep = policy.linesep
        sender = self._from_line(message.from_email, linesep)
        to = address_line("To", message.to[0], linesep)
        if sender is None or to is None:
            return None
        head = [
            sender,
            to,
            self._subject_line(message.subject, linesep),
            self._date_line(linesep),
        ]
        for name, value in message.extra_headers.items():
            line = header_line(name, str(value), linesep)
            head.append(line if line is not None else policy.fold(name, str(value)))
        head.append(
            f"MIME-Version: 1.0{linesep}Content-Type: multipart/alternative;"
            f' boundary="{self._boundary}"{linesep}{linesep}'
        )
        text, text_encoding = self._body(message.body, linesep)
        html, html_encoding = self._body(message.alternatives[0][0], linesep)
        return b"".join(
            [
                "".join(head).encode("ascii"),
                self._part_head("plain", text_encoding, linesep),
                text,
                self._part_head("html", html_encoding, linesep, first=False),
                html,
                f"{linesep}--{self._boundary}--{linesep}".encode("ascii"),
            ]
        )

    def _part_head(self, subtype: str, encoding: str, linesep: str, first: bool = True) -> bytes:
        key = (subtype, encoding, linesep, first)
        head = self._part_heads.get(key)
        if head is None:
            head = self._part_heads[key] = (
                f"{'' if first else linesep}--{self._boundary}{linesep}"
                f'Content-Type: text/{subtype}; charset="utf-8"{linesep}'
                f"Content-Transfer-Encoding: {encoding}{linesep}{linesep}"
            ).encode("ascii")
        return head

    def _body(self, text: str, linesep: str) -> tuple[bytes, str]:
        data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
        if (
            max(map(len, data.split(b"\n"))) <= _LINE_BYTES
            and b"\0" not in data
            and self._boundary_bytes not in data
        ):
            encoding = "7bit" if data.isascii() else "8bit"
        else:
            data = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
            encoding = "quoted-printable"
        return (data.replace(b"\n", b"\r\n") if linesep == "\r\n" else data), encoding


class PrebuiltMessage(email.message.EmailMessage):
    """A message already serialised: as_bytes() returns the bytes as they are. Anything else
    asked of it parses them first, after which it is an ordinary EmailMessage."""

    def __init__(self, data: bytes, policy) -> None:
        # Message.__init__ is not called: its state comes from parsing, when first needed.
        self.policy = policy
        self._prebuilt = data

    def __getattr__(self, name: str):
        # Reached only for attributes not yet set, i.e. the parsed state of the message.
        data = self.__dict__.get("_prebuilt")
        if data is None or name.startswith("__"):
            raise AttributeError(name)
        parsed = BytesParser(policy=self.policy).parsebytes(data)
        del self.__dict__["_prebuilt"]
        self.__dict__.update(parsed.__dict__)
        return getattr(self, name)

    def _with_linesep(self, data: bytes, linesep: str) -> bytes:
        if linesep == self.policy.linesep:
            return data
        return data.replace(self.policy.linesep.encode(), linesep.encode())

    def as_bytes(self, unixfrom: bool = False, policy=None, linesep: str | None = None) -> bytes:
        data = self.__dict__.get("_prebuilt")
        wanted = linesep or (policy or self.policy).linesep
        if data is None or unixfrom:
            policy = (policy or self.policy).clone(linesep=wanted)
            return super().as_bytes(unixfrom=unixfrom, policy=policy)
        return self._with_linesep(data, wanted)

    def __bytes__(self) -> bytes:
        return self.as_bytes()

    def as_string(self, unixfrom: bool = False, maxheaderlen=None, policy=None) -> str:
        if "_prebuilt" in self.__dict__ and not unixfrom:
            return self.as_bytes(policy=policy).decode("utf-8")
        return super().as_string(unixfrom=unixfrom, maxheaderlen=maxheaderlen, policy=policy)

    def __str__(self) -> str:
        return self.as_string()


class BroadcastEmail(TextNamesEmail):
    """An EmailMultiAlternatives whose message() is written from the broadcast's skeleton.

    Every backend sees an ordinary EmailMultiAlternatives (anymail reads subject, body,
    alternatives, to, from_email and extra_headers); only the MIME serialisation is faster."""

    def __init__(
        self,
        *,
        skeleton: MessageSkeleton,
        subject: str,
        text: str,
        html: str,
        to: str,
        headers: dict[str, str],
    ) -> None:
        super().__init__(
            subject=subject,
            body=text,
            from_email=skeleton.from_email,
            to=[to],
            headers=headers,
            alternatives=[(html, "text/html")],
        )
        self.skeleton = skeleton

    def message(self, *, policy=email.policy.default):
        data = self.skeleton.serialise(self, policy)
        if data is not None:
            return PrebuiltMessage(data, policy)
        return super().message(policy=policy)
