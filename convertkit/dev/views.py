"""DEBUG-only pages for developers: the mailbox of messages captured by the local SMTP sink.

convertkit/urls.py routes these only when DEBUG is true; each view checks again, so that a
production process can never serve files from MAILBOX_DIR even if the routing changes.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render

from convertkit.dev.mailsink import mailbox_list, mailbox_read

MAILBOX_PAGE_SIZE = 200


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


@login_required
def mailbox(request):
    _require_debug()
    entries, total = mailbox_list(mailbox_dir=settings.MAILBOX_DIR, limit=MAILBOX_PAGE_SIZE)
    return render(
        request,
        "convertkit/dev/mailbox.html",
        {
            "entries": entries,
            "total": total,
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
