"""DEBUG-only pages for developers: the mailbox of messages captured by the local SMTP sink.

convertkit/urls.py routes these only when DEBUG is true; each view checks again, so that a
production process can never serve files from MAILBOX_DIR even if the routing changes.

A logged-in user sees only the messages that are theirs (`_visible_to`): those the sink received
for their login address (the SMTP envelope's recipients: password resets, sign-up mail, tests
sent to themselves), and those sent to a subscriber of an account they are a member of, known by
the signed unsubscribe token every such message carries in List-Unsubscribe (it names the
account, read without a query). Nothing else reveals an account: From addresses and subscriber
addresses can be shared between accounts.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render

from convertkit.dev.mailsink import Envelope, mailbox_list, mailbox_read
from convertkit.models import Membership
from subscribers.unsubscribe import account_id_from_token

MAILBOX_PAGE_SIZE = 200
# The token in List-Unsubscribe's page URL (<SITE_URL/u/<token>/>).
_UNSUBSCRIBE_TOKEN = re.compile(r"<https?://[^>]*/u/([^/>]+)/?>")


def _require_debug() -> None:
    if not settings.DEBUG:
        raise Http404


def _mail_route() -> dict[str, object]:
    """Where the app sends mail, to tell a developer why nothing arrives (MAILERS on Django 6.1+,
    EMAIL_* before)."""
    mailers = getattr(settings, "MAILERS", None)
    if mailers:
        backend = mailers["default"]["BACKEND"]
        options = mailers["default"].get("OPTIONS", {})
        host, port = options.get("host"), options.get("port")
    else:
        backend, host, port = settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT
    return {
        "backend": backend,
        "host": host,
        "port": port,
        "smtp": backend == "django.core.mail.backends.smtp.EmailBackend",
    }


def _visible_to(user) -> Callable[[Envelope], bool]:
    """Whether a captured message is the user's (see the module's docstring)."""
    own_address = user.email.lower()
    account_ids = set(Membership.objects.filter(user=user).values_list("account_id", flat=True))

    def visible(envelope: Envelope) -> bool:
        if own_address in envelope.recipients:
            return True
        found = _UNSUBSCRIBE_TOKEN.search(envelope.list_unsubscribe)
        return found is not None and account_id_from_token(found[1]) in account_ids

    return visible


@login_required
def mailbox(request):
    _require_debug()
    entries, truncated = mailbox_list(
        mailbox_dir=settings.MAILBOX_DIR, keep=_visible_to(request.user), limit=MAILBOX_PAGE_SIZE
    )
    return render(
        request,
        "convertkit/dev/mailbox.html",
        {
            "entries": entries,
            "truncated": truncated,
            "mailbox_dir": settings.MAILBOX_DIR,
            "mail_route": _mail_route(),
        },
    )


@login_required
def mailbox_message(request, message_id: str):
    _require_debug()
    try:
        message = mailbox_read(mailbox_dir=settings.MAILBOX_DIR, message_id=message_id)
    except (ValueError, FileNotFoundError):
        raise Http404("No such message") from None
    if not _visible_to(request.user)(message.envelope):
        raise Http404("No such message")
    if request.GET.get("raw"):
        response = HttpResponse(
            message.raw.decode("utf-8", "replace"), content_type="text/plain; charset=utf-8"
        )
        response["Content-Disposition"] = f'inline; filename="{message.id}.eml"'
        return response
    # Links in the HTML part open in a new tab: the sandboxed frame may not navigate itself.
    html = f'<base target="_blank">{message.html}' if message.html is not None else None
    return render(
        request,
        "convertkit/dev/mailbox_message.html",
        {"message": message, "html_srcdoc": html},
    )
