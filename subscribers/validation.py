"""Email address rules shared by the subscriber form, the import and (later) the public forms."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

MAX_EMAIL_LENGTH = 254
MAX_TAG_NAME_LENGTH = 100
# Longest value of a custom field, whether typed in a form or imported from a CSV.
MAX_FIELD_VALUE_LENGTH = 2000
_validator = EmailValidator()
# Addresses this simple are accepted by normalize_email (EmailValidator's dot-atom and host name
# rules are supersets of it); everything else goes through normalize_email itself. Explicit ASCII
# classes, never IGNORECASE: that would let the Kelvin sign match [a-z].
SIMPLE_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def normalize_email(raw: str) -> str:
    """The address as we store it (trimmed, lower-cased, IDN domain in ASCII), or ValidationError.

    Each message says what is wrong in words a creator can act on.
    """
    email = (raw or "").strip()
    if not email:
        raise ValidationError("The email address is empty.", code="empty")
    if any(ch in email for ch in "\r\n\0"):
        raise ValidationError("The email address contains a line break.", code="control")
    if any(ch.isspace() for ch in email):
        raise ValidationError("The email address contains a space.", code="space")
    if email.count("@") != 1:
        raise ValidationError(f"“{email[:80]}” is not an email address.", code="invalid")
    local, domain = email.rsplit("@", 1)
    if not local.isascii():
        raise ValidationError(
            "Letters with accents or other non-ASCII characters before the @ are not supported.",
            code="unicode",
        )
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValidationError(
                f"“{domain[:80]}” is not a valid domain.", code="invalid"
            ) from None
    email = f"{local}@{domain}".lower()
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValidationError(
            f"The email address is longer than {MAX_EMAIL_LENGTH} characters.", code="too_long"
        )
    try:
        _validator(email)
    except ValidationError:
        raise ValidationError(
            f"“{email[:80]}” is not a valid email address.", code="invalid"
        ) from None
    return email


def normalize_email_quick(raw: str) -> str:
    """normalize_email, with a regular expression first: a plain address (nearly all of them)
    is only trimmed and lower-cased, which a bulk request of many thousands notices."""
    email = raw.strip()
    if len(email) <= MAX_EMAIL_LENGTH and SIMPLE_EMAIL.fullmatch(email):
        return email.lower()
    return normalize_email(raw)


def tag_names_parse(text: str) -> list[str]:
    """Comma-separated tag names as a creator types them: spaces collapsed, empty names and
    case-insensitive repeats dropped; ValidationError for a name that is too long."""
    names: list[str] = []
    seen: set[str] = set()
    for raw in text.split(","):
        name = " ".join(raw.split())
        if not name or name.lower() in seen:
            continue
        if len(name) > MAX_TAG_NAME_LENGTH:
            raise ValidationError(
                f"“{name[:40]}…” is too long: a tag name is at most {MAX_TAG_NAME_LENGTH} "
                "characters long.",
                code="tag_too_long",
            )
        seen.add(name.lower())
        names.append(name)
    return names


# Throwaway-mailbox services: a signup from one is almost always a bot or someone who will never
# read the confirmation. A short list of the common ones, not a blocklist service.
DISPOSABLE_DOMAINS = frozenset(
    [
        "10minutemail.com",
        "20minutemail.com",
        "33mail.com",
        "dispostable.com",
        "discard.email",
        "dropmail.me",
        "emailondeck.com",
        "fakeinbox.com",
        "getairmail.com",
        "getnada.com",
        "guerrillamail.biz",
        "guerrillamail.com",
        "guerrillamail.de",
        "guerrillamail.info",
        "guerrillamail.net",
        "guerrillamail.org",
        "guerrillamailblock.com",
        "harakirimail.com",
        "incognitomail.org",
        "mailcatch.com",
        "maildrop.cc",
        "mailinator.com",
        "mailinator.net",
        "mailnesia.com",
        "mintemail.com",
        "mohmal.com",
        "mytemp.email",
        "sharklasers.com",
        "spam4.me",
        "spamgourmet.com",
        "temp-mail.io",
        "temp-mail.org",
        "tempail.com",
        "tempmail.com",
        "tempmail.net",
        "tempmailo.com",
        "throwawaymail.com",
        "trashmail.com",
        "trashmail.de",
        "trashmail.net",
        "yopmail.com",
        "yopmail.fr",
        "yopmail.net",
    ]
)


def is_disposable(email: str) -> bool:
    """Whether a normalised address is at a throwaway-mailbox service (or a subdomain of one)."""
    domain = email.rpartition("@")[2]
    parts = domain.split(".")
    return any(".".join(parts[i:]) in DISPOSABLE_DOMAINS for i in range(len(parts) - 1))


# Line breaks and other control characters: never part of a one-line value such as a name, and
# the way a header injection would start.
CONTROL_CHARACTERS_RE = re.compile(r"[\x00-\x1f\x7f]")


def one_line_text_error(value: str, *, max_length: int) -> str | None:
    """Why a value typed into a one-line input cannot be stored, or None."""
    if CONTROL_CHARACTERS_RE.search(value):
        return "Must be on one line, without control characters."
    if len(value) > max_length:
        return f"Must be at most {max_length} characters long."
    return None
