"""The unsubscribe link every email carries, and its header values.

A token names (account id, subscriber id) and carries a truncated HMAC-SHA256 of both under a key
derived from SECRET_KEY and a purpose string. It never expires: CAN-SPAM wants an opt-out to work
for at least 30 days after a send, and a subscriber may click a year-old email. Everything in it is
lower-case letters and digits, so the copy in a mailto: local part survives mail servers that
change the case of addresses.

A test message (a creator's "send a test to me") carries a test token instead: `test-`, the
account id and an HMAC under another purpose. It names no subscriber, so its links unsubscribe
nobody, whoever's data the test was written with; the page it leads to says so.
"""

from __future__ import annotations

import base64
import re
from functools import cache

from django.conf import settings
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.http import int_to_base36

from convertkit.models import Account
from subscribers.models import Subscriber

PURPOSE = "subscribers.unsubscribe"
TEST_PURPOSE = "subscribers.unsubscribe.test"
# 128 bits of the HMAC: far beyond guessing, and short enough for a URL and an address.
SIGNATURE_BYTES = 16
# Canonical form only (no leading zeros, no other characters int() would accept), so each
# subscriber has exactly one token; 13 base-36 digits hold any bigint id.
TOKEN_RE = re.compile(r"([1-9a-z][0-9a-z]{0,12})-([1-9a-z][0-9a-z]{0,12})-([a-z2-7]{26})")
TEST_TOKEN_RE = re.compile(r"test-([1-9a-z][0-9a-z]{0,12})-([a-z2-7]{26})")
MAX_ID = 2**63 - 1  # PostgreSQL bigint: a larger id would make the lookup fail, not miss

LINK_REASON = "unsubscribed through the link in an email"
ONE_CLICK_REASON = "unsubscribed with one click in the email client (RFC 8058)"
RESUBSCRIBE_REASON = "resubscribed through the link in an email"


def _signature(value: str, *, purpose: str = PURPOSE, secret: str) -> str:
    digest = salted_hmac(purpose, value, secret=secret, algorithm="sha256").digest()
    return base64.b32encode(digest[:SIGNATURE_BYTES]).decode("ascii").rstrip("=").lower()


def _signed(value: str, signature: str, *, purpose: str = PURPOSE) -> bool:
    """Whether `signature` signs `value` under SECRET_KEY or one of SECRET_KEY_FALLBACKS, so
    that rotating the key does not break the links in emails already sent."""
    return any(
        constant_time_compare(signature, _signature(value, purpose=purpose, secret=secret))
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    )


def _id(digits: str) -> int | None:
    number = int(digits, 36)
    return number if 0 < number <= MAX_ID else None


def unsubscribe_token(*, subscriber: Subscriber) -> str:
    account_id, subscriber_id = subscriber.account_id, subscriber.pk
    signature = _signature(f"{account_id}:{subscriber_id}", secret=settings.SECRET_KEY)
    return f"{int_to_base36(account_id)}-{int_to_base36(subscriber_id)}-{signature}"


def unsubscribe_test_token(*, account) -> str:
    signature = _signature(str(account.pk), purpose=TEST_PURPOSE, secret=settings.SECRET_KEY)
    return f"test-{int_to_base36(account.pk)}-{signature}"


def _token_ids(token: str) -> tuple[int, int] | None:
    """The (account id, subscriber id) a well-signed token names, or None."""
    match = TOKEN_RE.fullmatch(token.lower())
    if match is None:
        return None
    account_id, subscriber_id = _id(match[1]), _id(match[2])
    if account_id is None or subscriber_id is None:
        return None
    if not _signed(f"{account_id}:{subscriber_id}", match[3]):
        return None
    return account_id, subscriber_id


def account_id_from_token(token: str) -> int | None:
    """The id of the account a well-signed token names (no query), or None."""
    ids = _token_ids(token)
    return ids[0] if ids else None


def subscriber_from_token(token: str) -> Subscriber | None:
    """The subscriber the token names, with their account; None if the token is forged,
    damaged, or names a subscriber who no longer exists in that account."""
    ids = _token_ids(token)
    if ids is None:
        return None
    account_id, subscriber_id = ids
    return (
        Subscriber.objects.select_related("account")
        .filter(pk=subscriber_id, account_id=account_id)
        .first()
    )


def account_from_test_token(token: str) -> Account | None:
    """The account a well-signed test token names (see the module docstring), or None."""
    match = TEST_TOKEN_RE.fullmatch(token.lower())
    if match is None:
        return None
    account_id = _id(match[1])
    if account_id is None or not _signed(str(account_id), match[2], purpose=TEST_PURPOSE):
        return None
    return Account.objects.filter(pk=account_id).first()


@cache
def _unsubscribe_path_prefix() -> str:
    """'/u/' (the page's path without its token), resolved once: reverse() would weigh on a
    broadcast's per-recipient rendering, and the URLconf never changes while running."""
    return reverse("unsubscribe", kwargs={"token": "t"}).removesuffix("t/")


def _url(token: str) -> str:
    return f"{settings.SITE_URL}{_unsubscribe_path_prefix()}{token}/"


def _mailto(token: str) -> str:
    """UNSUBSCRIBE_MAILTO with the token as a +suffix of its local part (unsubscribe+TOKEN@host),
    so that inbound processing can tell who wrote without trusting the From header."""
    local, _, domain = settings.UNSUBSCRIBE_MAILTO.rpartition("@")
    return f"{local}+{token}@{domain}"


def unsubscribe_url(*, subscriber: Subscriber) -> str:
    return _url(unsubscribe_token(subscriber=subscriber))


def _links(token: str) -> tuple[str, dict[str, str]]:
    url = _url(token)
    return url, {
        "List-Unsubscribe": f"<{url}>, <mailto:{_mailto(token)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def unsubscribe_links(*, subscriber: Subscriber) -> tuple[str, dict[str, str]]:
    """The unsubscribe page's URL, and List-Unsubscribe (RFC 2369) with List-Unsubscribe-Post
    (RFC 8058) for an outgoing email. The token is signed once for all three addresses: this
    runs for every recipient of a broadcast."""
    return _links(unsubscribe_token(subscriber=subscriber))


def unsubscribe_test_links(*, account) -> tuple[str, dict[str, str]]:
    """unsubscribe_links for a test message of `account`: they unsubscribe nobody."""
    return _links(unsubscribe_test_token(account=account))


def unsubscribe_headers(*, subscriber: Subscriber) -> dict[str, str]:
    """The unsubscribe headers of an outgoing email (see unsubscribe_links)."""
    return unsubscribe_links(subscriber=subscriber)[1]
