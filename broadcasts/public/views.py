"""The public pages of messages: a message's web version (/w/<token>/) and an account's
archive (/p/<slug>/: the list, each broadcast, the RSS feed). No login, no session; nothing here
knows or records who reads.

Every piece of an email shown here is the sanitiser's output (broadcasts.rendering), rendered
for nobody; titles, descriptions and attributes are autoescaped by the templates (and by the XML
writer in the feed). The pages forbid scripts altogether (Content-Security-Policy), so a
sanitiser miss still runs nothing."""

from __future__ import annotations

from functools import wraps

from django.contrib.syndication.views import Feed
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from broadcasts.models import Broadcast
from broadcasts.public import selectors
from broadcasts.public.links import archive_feed_url, archive_url, title_slug
from broadcasts.rendering import web_version
from convertkit.paging import page_cursor
from subscribers.signup_forms.embed import form_snippet_html
from tracking.tokens import web_view_token_verify

FEED_ITEMS = 20
# No script at all; images from anywhere over https (emails show them), styles inline (emails
# are styled so); forms may post anywhere, as a signup form's success may redirect off-site.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' https:; style-src 'self' 'unsafe-inline'; "
    "font-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def public_page(view):
    """The headers every public page of a message sends."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response["X-Content-Type-Options"] = "nosniff"
        response["Referrer-Policy"] = "strict-origin-when-cross-origin"
        return response

    return wrapper


@require_GET
@public_page
def web_view(request, token: str):
    """The message a "View in browser" link names, whatever its kind and state; 404 for a
    token that does not verify. Not indexed: only the archive publishes a message."""
    broadcast_id = web_view_token_verify(token)
    broadcast = (
        Broadcast.objects.select_related("account").filter(pk=broadcast_id).first()
        if broadcast_id
        else None
    )
    if broadcast is None:
        raise Http404
    version = web_version(broadcast, subscribe_url=selectors.subscribe_url(broadcast.account))
    response = HttpResponse(version.html)
    response["X-Robots-Tag"] = "noindex"
    return response


def _account(slug: str):
    account = selectors.archive_account(slug)
    if account is None:
        raise Http404
    return account


def _form_html(account) -> str:
    form = selectors.archive_form(account)
    return form_snippet_html(form) if form else ""


@require_GET
@public_page
def archive(request, slug: str):
    """The account's public broadcasts, newest first. An account that has published nothing
    has no archive (404): its handle is not disclosed."""
    account = _account(slug)
    page = selectors.archive_page(
        account=account,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
    )
    if not page.items and not page.paged:
        raise Http404
    return render(
        request,
        "broadcasts/public/archive.html",
        {
            "account": account,
            "page": page,
            "canonical_url": archive_url(account),
            "feed_url": archive_feed_url(account),
            "form_html": _form_html(account),
        },
    )


@require_GET
@public_page
def archive_entry(request, slug: str, broadcast_id: int, title: str = ""):
    """One archived broadcast; its URL with any other title (or none) redirects to its own."""
    account = _account(slug)
    broadcast = selectors.archived_broadcasts(account).filter(pk=broadcast_id).first()
    if broadcast is None:
        raise Http404
    broadcast.account = account
    entry = selectors.archive_entry(broadcast, account)
    if title != title_slug(entry.title):
        return redirect(entry.url, permanent=True)
    version = web_version(broadcast, subscribe_url=selectors.subscribe_url(account))
    return render(
        request,
        "broadcasts/public/archive_entry.html",
        {
            "account": account,
            "entry": entry,
            "version": version,
            "archive_url": archive_url(account),
            "feed_url": archive_feed_url(account),
            "form_html": _form_html(account),
        },
    )


class ArchiveFeed(Feed):
    """The archive as RSS 2.0: the newest FEED_ITEMS entries, each with its sanitised HTML
    (escaped by the XML writer, so no content can end the element)."""

    def get_object(self, request, slug: str):
        account = _account(slug)
        if not selectors.archived_broadcasts(account).exists():
            raise Http404
        # Read once per request; the feed object itself is shared between requests.
        account.subscribe_url = selectors.subscribe_url(account)
        return account

    def title(self, account) -> str:
        return account.name

    def link(self, account) -> str:
        return archive_url(account)

    def feed_url(self, account) -> str:
        return archive_feed_url(account)

    def description(self, account) -> str:
        return f"Emails from {account.name}"

    def items(self, account):
        broadcasts = list(selectors.archived_broadcasts(account).order_by("-id")[:FEED_ITEMS])
        for broadcast in broadcasts:
            broadcast.account = account
        return broadcasts

    def item_title(self, broadcast) -> str:
        return selectors.archive_entry(broadcast, broadcast.account).title

    def item_link(self, broadcast) -> str:
        return selectors.archive_entry(broadcast, broadcast.account).url

    def item_description(self, broadcast) -> str:
        return web_version(broadcast, subscribe_url=broadcast.account.subscribe_url).body_html

    def item_pubdate(self, broadcast):
        return broadcast.sent_at or broadcast.send_started_at


archive_feed = require_GET(public_page(ArchiveFeed()))
