"""Every write to subscribers, tags and custom fields. Functions take keyword-only arguments."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from convertkit.models import Account
from subscribers.models import Tag

MAX_TAG_NAME_LENGTH = 100


def tag_get_or_create(*, account: Account, name: str) -> Tag:
    """The account's tag of that name (case-insensitive), created if missing; safe under races."""
    name = " ".join(name.split())[:MAX_TAG_NAME_LENGTH]
    if not name:
        raise ValueError("A tag needs a name")
    existing = Tag.objects.filter(account=account, name__iexact=name).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return Tag.objects.create(account=account, name=name)
    except IntegrityError:
        return Tag.objects.get(account=account, name__iexact=name)
