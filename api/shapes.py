"""Our objects in Kit's JSON shapes, and Kit's subscriber states in ours.

Kit's states and ours:
    Kit active     = active
    Kit inactive   = unconfirmed (has not confirmed a double opt-in yet)
    Kit cancelled  = unsubscribed
    Kit bounced    = bounced
    Kit complained = complained
"""

from __future__ import annotations

from datetime import UTC, datetime

from subscribers.models import Subscriber, Tag

State = Subscriber.State
KIT_STATES = {
    "active": (State.ACTIVE,),
    "inactive": (State.UNCONFIRMED,),
    "cancelled": (State.UNSUBSCRIBED,),
    "bounced": (State.BOUNCED,),
    "complained": (State.COMPLAINED,),
}
KIT_STATE_OF = {ours: kit for kit, (ours,) in KIT_STATES.items()}


KIT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def timestamp(value: datetime | None) -> str | None:
    """Kit's timestamps: UTC, to the second, "2023-02-17T11:43:55Z"."""
    return value.astimezone(UTC).strftime(KIT_TIME_FORMAT) if value else None


def subscriber_json(subscriber: Subscriber, *, tagged_at: datetime | None = None) -> dict:
    shape = {
        "id": subscriber.id,
        "first_name": subscriber.first_name or None,
        "email_address": subscriber.email,
        "state": KIT_STATE_OF[subscriber.state],
        "created_at": timestamp(subscriber.created_at),
    }
    if tagged_at is not None:
        shape["tagged_at"] = timestamp(tagged_at)
    shape["fields"] = dict(subscriber.fields)
    return shape


def tag_json(tag: Tag, *, with_count: bool = False) -> dict:
    shape = {"id": tag.id, "name": tag.name, "created_at": timestamp(tag.created_at)}
    if with_count:
        shape["subscriber_count"] = tag.subscriber_count
    return shape
