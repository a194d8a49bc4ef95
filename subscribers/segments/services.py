"""Segments: create, change, delete, count. Every value is checked here, whoever calls (the
pages, later the API): another account's tag, form or broadcast, an unknown custom field or
operator, a date that is not one, are refused with SegmentInvalid and nothing is saved."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from django.db import IntegrityError, transaction
from django.utils import timezone

from broadcasts.audience import audience_count
from broadcasts.models import Broadcast
from convertkit.models import Account
from convertkit.tenancy import ids_not_owned
from subscribers.models import (
    MAX_ENGAGEMENT_DAYS,
    CustomField,
    Engagement,
    Form,
    Segment,
    Tag,
    TagMatch,
)
from subscribers.validation import MAX_FIELD_VALUE_LENGTH, one_line_text_error

MAX_FIELD_CONDITIONS = 10
MAX_NAME_LENGTH = Segment._meta.get_field("name").max_length


class SegmentInvalid(Exception):
    """The segment cannot be saved as given; the message tells the creator why."""


class SegmentNameTaken(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def field_condition_clean(*, key: str, op: str, value: str, keys: Iterable[str]) -> dict:
    """One custom field condition as stored ({"key", "op", "value"}), or SegmentInvalid.

    `keys`: the custom fields it may name. The value of "is set" is dropped; that of "is
    before" and "is after" must be a date, stored as YYYY-MM-DD."""
    if key not in set(keys):
        raise SegmentInvalid("Choose one of your custom fields.")
    if op not in Segment.FieldOp.values:
        raise SegmentInvalid(
            "Choose how to compare: "
            + ", ".join(label for _, label in Segment.FieldOp.choices)
            + "."
        )
    value = (value or "").strip()
    if one_line_text_error(value, max_length=MAX_FIELD_VALUE_LENGTH):
        raise SegmentInvalid(
            f"Enter a value on one line, at most {MAX_FIELD_VALUE_LENGTH:,} characters."
        )
    if op == Segment.FieldOp.IS_SET:
        value = ""
    elif op in Segment.DATE_OPS:
        try:
            value = date.fromisoformat(value).isoformat()
        except ValueError:
            label = Segment.FieldOp(op).label
            raise SegmentInvalid(
                f"“{label}” compares dates: enter one such as 2025-03-31 (year-month-day)."
            ) from None
    elif not value:
        raise SegmentInvalid("Enter the value to compare with.")
    return {"key": key, "op": op, "value": value}


def _owned_ids(model, *, account: Account, ids: Iterable[int], saved: Iterable[int], what: str):
    """`ids` sorted, once each; SegmentInvalid unless each is the account's, or was already
    saved in the segment (a deleted one stays, matching nobody, until the creator removes it)."""
    wanted, unknown = ids_not_owned(model, account_id=account.id, ids=ids, kept=saved)
    if unknown:
        raise SegmentInvalid(f"Not one of your {what}: {', '.join(str(i) for i in unknown)}.")
    return wanted


def _segment_values(
    *,
    account: Account,
    saved: Segment | None,
    name: str,
    include_tag_ids: Iterable[int] = (),
    include_match: str = TagMatch.ANY,
    exclude_tag_ids: Iterable[int] = (),
    form_ids: Iterable[int] = (),
    field_conditions: Iterable[dict] = (),
    engagement: str = Engagement.ANYONE,
    engagement_days: int | None = None,
    not_opened_broadcast_id: int | None = None,
) -> dict:
    """The columns to save, checked and tidied; SegmentInvalid with the first problem."""
    name = (name or "").strip()
    if not name or one_line_text_error(name, max_length=MAX_NAME_LENGTH):
        raise SegmentInvalid(
            f"Give the segment a name on one line, up to {MAX_NAME_LENGTH} characters."
        )
    if include_match not in TagMatch.values:
        raise SegmentInvalid("Match any or all of the tags.")
    if engagement not in Engagement.values:
        raise SegmentInvalid("Choose an engagement filter among those offered.")
    if engagement and not (
        isinstance(engagement_days, int) and 1 <= engagement_days <= MAX_ENGAGEMENT_DAYS
    ):
        raise SegmentInvalid(f"Enter a number of days between 1 and {MAX_ENGAGEMENT_DAYS}.")
    tags_saved = (saved.include_tag_ids + saved.exclude_tag_ids) if saved else []
    include = _owned_ids(Tag, account=account, ids=include_tag_ids, saved=tags_saved, what="tags")
    exclude = _owned_ids(Tag, account=account, ids=exclude_tag_ids, saved=tags_saved, what="tags")
    both = set(include) & set(exclude)
    if both:
        raise SegmentInvalid("A tag cannot be both required and left out.")
    forms = _owned_ids(
        Form, account=account, ids=form_ids, saved=saved.form_ids if saved else (), what="forms"
    )
    if not_opened_broadcast_id is not None and not (
        (saved and saved.not_opened_broadcast_id == not_opened_broadcast_id)
        or Broadcast.objects.broadcasts()
        .filter(account=account, pk=not_opened_broadcast_id, state__in=Broadcast.STARTED_STATES)
        .exists()
    ):
        raise SegmentInvalid("Choose one of your broadcasts that was sent.")
    conditions = list(field_conditions)
    if not all(isinstance(condition, dict) for condition in conditions):
        raise SegmentInvalid("Give each field condition as a key, a comparison and a value.")
    if len(conditions) > MAX_FIELD_CONDITIONS:
        raise SegmentInvalid(f"A segment takes up to {MAX_FIELD_CONDITIONS} field conditions.")
    keys = set(CustomField.objects.filter(account=account).values_list("key", flat=True))
    keys |= {condition.get("key") for condition in (saved.field_conditions if saved else ())}
    conditions = [
        field_condition_clean(
            key=condition.get("key", ""),
            op=condition.get("op", ""),
            value=condition.get("value", ""),
            keys=keys,
        )
        for condition in conditions
    ]
    if not (include or exclude or forms or conditions or engagement) and (
        not_opened_broadcast_id is None
    ):
        raise SegmentInvalid(
            "Add at least one condition: without any, the segment would be your whole list."
        )
    return {
        "name": name,
        "include_tag_ids": include,
        "include_match": include_match,
        "exclude_tag_ids": exclude,
        "form_ids": forms,
        "field_conditions": conditions,
        "engagement": engagement,
        "engagement_days": engagement_days if engagement else None,
        "not_opened_broadcast_id": not_opened_broadcast_id,
    }


def segment_create(*, account: Account, name: str, **filters) -> Segment:
    """A new segment; SegmentInvalid (see _segment_values for the filters), SegmentNameTaken
    if the account has a segment of that name (case-insensitive)."""
    values = _segment_values(account=account, saved=None, name=name, **filters)
    try:
        with transaction.atomic():
            return Segment.objects.create(account=account, **values)
    except IntegrityError:
        raise SegmentNameTaken(values["name"]) from None


def segment_update(*, segment: Segment, name: str, **filters) -> Segment:
    """Saves the segment's new name and conditions, as segment_create checks them."""
    values = _segment_values(account=segment.account, saved=segment, name=name, **filters)
    try:
        with transaction.atomic():
            Segment.objects.filter(pk=segment.pk).update(**values, updated_at=timezone.now())
    except IntegrityError:
        raise SegmentNameTaken(values["name"]) from None
    for attribute, value in values.items():
        setattr(segment, attribute, value)
    return segment


def segment_delete(*, segment: Segment) -> None:
    """Deletes the segment. Broadcasts not yet sent that name it then go to nobody (a deleted
    segment never widens an audience) until the creator chooses another."""
    segment.delete()


def segment_count(*, segment: Segment) -> int:
    """The segment's members now: its active subscribers, as a broadcast to it would count
    them (the same query)."""
    return audience_count(audience=segment)


def segment_broadcasts_waiting(*, segment: Segment) -> int:
    """How many of the account's drafts and scheduled broadcasts name the segment."""
    return Broadcast.objects.filter(
        account_id=segment.account_id,
        segment_id=segment.pk,
        state__in=Broadcast.EDITABLE_STATES,
    ).count()
