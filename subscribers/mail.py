"""The one way a message reaches a subscriber: confirmation, incentive, and test sends.

Every message carries the account's sender, the unsubscribe headers (RFC 2369 and RFC 8058) and
a footer with the account's postal address and the unsubscribe link. A suppressed subscriber or an
account without a postal address gets no message at all: the build refuses, so no caller can
forget the check.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from django.conf import settings
from django.core.mail import make_msgid
from django.utils.html import escape, linebreaks

from convertkit.mail import TextNamesEmail, address_format, default_from_email, header_check
from subscribers.models import Subscriber
from subscribers.unsubscribe import unsubscribe_links

_BODY_CLOSE_RE = re.compile(r"</body\s*>", re.IGNORECASE)


class MailRefused(Exception):
    """The message must not be sent; the reason says why."""


class SubscriberNotMailable(MailRefused):
    """The subscriber is unsubscribed, bounced or complained: suppression is never bypassed."""


class PostalAddressMissing(MailRefused):
    """CAN-SPAM: the account needs a postal address before any send."""


def postal_address_check(account) -> None:
    if not account.postal_address.strip():
        raise PostalAddressMissing(
            f"Account {account.pk} has no postal address; add one before sending any email."
        )


def account_from_email(account) -> str:
    """The From of every message of the account: its sender, else the site's default, the
    name written as text (a CR/LF typed into it becomes a space, never a header)."""
    if account.sender_email:
        return address_format(name=account.sender_name, address=account.sender_email)
    return default_from_email()


def subscriber_to_email(subscriber: Subscriber) -> str:
    return address_format(name=subscriber.first_name, address=subscriber.email)


def footer_text(*, account, url: str) -> str:
    return f"\n\n--\n{account.name}\n{account.postal_address.strip()}\n\nUnsubscribe: {url}\n"


def footer_html(
    *, account, url: str, link_text: str = "Unsubscribe", color: str = "#666666"
) -> str:
    """The footer: the account's name and postal address, and the link to `url` (the
    unsubscribe link; a web version's is a signup link, or none when its `url` is ""), in
    `color` (a checked #rrggbb: an email's design gives its own, readable on its background)."""
    link = f'<p><a href="{escape(url)}">{escape(link_text)}</a></p>' if url else ""
    return (
        f'<div class="footer" style="margin-top:2em;font-size:12px;color:{escape(color)}">'
        f"<p>{escape(account.name)}</p>"
        f"{linebreaks(account.postal_address.strip(), autoescape=True)}"
        f"{link}"
        "</div>"
    )


def _with_html_footer(html_body: str, footer: str) -> str:
    closing = list(_BODY_CLOSE_RE.finditer(html_body))
    if not closing:
        return html_body + footer
    at = closing[-1].start()
    return html_body[:at] + footer + html_body[at:]


def subscriber_email_build(
    *,
    subscriber: Subscriber,
    subject: str,
    text_body: str,
    html_body: str | None = None,
    message_id: str | None = None,
    to_unsubscribed: bool = False,
) -> TextNamesEmail:
    """A message from the subscriber's account to the subscriber, ready for any mail backend.

    Raises SubscriberNotMailable for a suppressed subscriber, PostalAddressMissing for an account
    without a postal address, and ValueError for a subject or header with a line break.
    `to_unsubscribed` lets one message reach an unsubscribed subscriber: the confirmation they
    asked for by signing up again. Bounced and complained addresses are refused regardless.
    """
    account = subscriber.account
    if subscriber.is_suppressed and not (
        to_unsubscribed and subscriber.state == Subscriber.State.UNSUBSCRIBED
    ):
        raise SubscriberNotMailable(
            f"Subscriber {subscriber.pk} is {subscriber.state}: no email may be sent to them."
        )
    postal_address_check(account)

    from_email = account_from_email(account)
    to = subscriber_to_email(subscriber)
    url, unsubscribe = unsubscribe_links(subscriber=subscriber)
    headers = {
        **unsubscribe,
        "Message-ID": message_id or make_msgid(domain=urlparse(settings.SITE_URL).hostname),
    }
    for name, value in [("Subject", subject), ("From", from_email), ("To", to), *headers.items()]:
        header_check(name, value)

    message = TextNamesEmail(
        subject=subject,
        body=text_body + footer_text(account=account, url=url),
        from_email=from_email,
        to=[to],
        headers=headers,
    )
    if html_body is not None:
        message.attach_alternative(
            _with_html_footer(html_body, footer_html(account=account, url=url)), "text/html"
        )
    return message
