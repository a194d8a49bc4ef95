"""Reads of broadcasts that more than one page needs."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from broadcasts.models import Broadcast
from convertkit.models import Account

# Sent broadcasts offered for "did not open" (the report page's Resend names any other).
SENT_CHOICES = 100


def moment_label(moment: datetime | None) -> str:
    """A moment as the creator's pages show it, in the account's time zone (the active one)."""
    return f"{timezone.localtime(moment):%-d %b %Y, %H:%M}" if moment else ""


def _sent_label(broadcast: Broadcast) -> str:
    when = moment_label(broadcast.sent_at or broadcast.send_started_at)
    return broadcast.name + (f" ({when})" if when else "")


def sent_broadcast_choices(*, account: Account, chosen_id: int | None) -> list[tuple[int, str]]:
    """(id, label) of the account's latest broadcasts that went out, for an audience's "did not
    open", newest first; and the one `chosen_id` names if it is not among them, so that saving
    keeps it, even if it was deleted (which leaves the audience empty, as a deleted tag does)."""
    started = list(
        Broadcast.objects.broadcasts()
        .filter(account=account, state__in=Broadcast.STARTED_STATES)
        .order_by("-id")
        .only("id", "description", "subject", "sent_at", "send_started_at")[:SENT_CHOICES]
    )
    for sent in started:
        sent.account = account
    choices = [(sent.id, _sent_label(sent)) for sent in started]
    if chosen_id is not None and chosen_id not in {sent.id for sent in started}:
        named = (
            Broadcast.objects.broadcasts()
            .filter(account=account, pk=chosen_id, state__in=Broadcast.STARTED_STATES)
            .select_related("account")
            .first()
        )
        choices.append((chosen_id, _sent_label(named) if named else "A deleted broadcast: nobody"))
    return choices
