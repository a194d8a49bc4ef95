"""The public addresses of messages: a message's web version (/w/<token>/, what "View in
browser" links to) and an account's archive (/p/<slug>/ ...), absolute, from SITE_URL."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils.text import slugify

from tracking.tokens import web_view_token

# The last part of an archived broadcast's URL when its title gives no slug.
UNTITLED_SLUG = "email"
TITLE_SLUG_LENGTH = 80


def web_view_url(broadcast) -> str:
    """The message's web version: stable, and unguessable without SECRET_KEY (a signed id)."""
    token = web_view_token(broadcast_id=broadcast.pk)
    return settings.SITE_URL + reverse("web_view", kwargs={"token": token})


def title_slug(title: str) -> str:
    return slugify(title)[:TITLE_SLUG_LENGTH].strip("-") or UNTITLED_SLUG


def archive_url(account) -> str:
    return settings.SITE_URL + reverse("archive", kwargs={"slug": account.public_slug})


def archive_feed_url(account) -> str:
    return settings.SITE_URL + reverse("archive_feed", kwargs={"slug": account.public_slug})


def archive_entry_url(*, account, broadcast_id: int, title: str) -> str:
    """An archived broadcast's canonical URL; the title's slug is decoration (a wrong one
    redirects here), the id names it."""
    return settings.SITE_URL + reverse(
        "archive_entry",
        kwargs={
            "slug": account.public_slug,
            "broadcast_id": broadcast_id,
            "title": title_slug(title),
        },
    )
