"""What the public pages read: an account by its handle, its archived broadcasts, the signup
form its archive shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from broadcasts.models import Broadcast
from broadcasts.public.links import archive_entry_url
from broadcasts.rendering import public_subject
from convertkit.models import Account
from convertkit.paging import KeysetPage, keyset_page
from convertkit.services import PUBLIC_SLUG_MAX, PUBLIC_SLUG_RE
from subscribers.models import Form
from subscribers.signup_forms.embed import form_hosted_url

# A public broadcast is in the archive once it has gone out to anyone.
ARCHIVED_STATES = (Broadcast.State.SENDING, Broadcast.State.SENT)
ARCHIVE_PAGE_SIZE = 20


@dataclass(frozen=True)
class ArchiveEntry:
    id: int
    title: str
    date: datetime | None
    url: str


def archive_account(slug: str) -> Account | None:
    """The account whose public handle is `slug`, or None (a malformed slug is not looked up)."""
    if len(slug) > PUBLIC_SLUG_MAX or not PUBLIC_SLUG_RE.fullmatch(slug):
        return None
    return Account.objects.filter(public_slug=slug).first()


def archived_broadcasts(account: Account):
    """The account's broadcasts that the archive shows: public and sent (or sending); not a
    sequence's or an automation's emails, which belong to their own pages."""
    return Broadcast.objects.broadcasts().filter(
        account=account, public=True, state__in=ARCHIVED_STATES
    )


def archive_entry(broadcast: Broadcast, account: Account) -> ArchiveEntry:
    title = public_subject(broadcast.subject, account=account) or "Untitled"
    return ArchiveEntry(
        id=broadcast.id,
        title=title,
        date=broadcast.sent_at or broadcast.send_started_at,
        url=archive_entry_url(account=account, broadcast_id=broadcast.id, title=title),
    )


def archive_page(*, account: Account, after: int | None, before: int | None) -> KeysetPage:
    """One page of the archive, newest first (by id, the creator's list order), as entries."""
    page = keyset_page(
        archived_broadcasts(account).only("id", "subject", "sent_at", "send_started_at"),
        after=after,
        before=before,
        page_size=ARCHIVE_PAGE_SIZE,
    )
    return page.with_items([archive_entry(broadcast, account) for broadcast in page.items])


def archive_form(account: Account) -> Form | None:
    """The live signup form the account's archive shows, or None."""
    if account.archive_form_id is None:
        return None
    return Form.objects.filter(
        account=account, pk=account.archive_form_id, archived_at=None
    ).first()


def subscribe_url(account: Account) -> str:
    """Where a web version's footer sends a reader who wants to subscribe: the archive form's
    hosted page, or "" (no link) when the account chose none."""
    form = archive_form(account)
    return form_hosted_url(form) if form else ""
