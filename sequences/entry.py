"""The ways subscribers enter sequences besides one at a time (services.subscriber_enrol): a
form's "add to sequence" setting, the built-in "when tag X is added, add to sequence Y", a bulk
action, an import and `manage.py sequence_add`; and what the subscriber page shows of theirs.

Every path goes through services.subscribers_enrol: one INSERT ... SELECT per sequence, never a
statement per subscriber, in the transaction of the change that caused it (the signup, the
tagging, the batch, the import's merge), so a change rolled back enrols nobody. Enrolling is
idempotent: whoever is in a sequence already stays where they are, and only a repeating sequence
starts again for someone who completed it.

The tag trigger is kept small and in this one place (tags_added_enrol): the rules engine will
take over "when a tag is added" with the event outbox.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from sequences.models import Sequence, SequenceEmail, SequenceTrigger, Subscription
from sequences.services import EnrolResult, own_ids, subscribers_enrol
from subscribers.models import Form, Subscriber, Tag
from subscribers.selectors import SubscriberFilter, subscriber_batch_ids, subscriber_counts

SubState = Subscription.State
# Subscribers enrolled per statement (and transaction) by filtered_subscribers_enrol.
ENROL_BATCH = 10_000


def account_sequences(*, account_id: int) -> list[Sequence]:
    """The account's sequences by name: what every "add to sequence" picker offers."""
    return list(Sequence.objects.filter(account_id=account_id).order_by("name", "id"))


# Triggers: a form joined, a tag added ---------------------------------------------------------


def _triggers_set(*, account_id: int, sequence_ids: Iterable[int], **source) -> None:
    ids = own_ids(Sequence, account_id=account_id, ids=list(sequence_ids), what="sequences")
    with transaction.atomic():
        SequenceTrigger.objects.filter(**source).exclude(sequence_id__in=ids).delete()
        SequenceTrigger.objects.bulk_create(
            [SequenceTrigger(account_id=account_id, sequence_id=pk, **source) for pk in ids],
            ignore_conflicts=True,
        )


def form_sequences_set(*, form: Form, sequence_ids: Iterable[int]) -> None:
    """The sequences a signup through the form adds to; SequenceInvalid (nothing changed) for
    another account's sequence."""
    _triggers_set(account_id=form.account_id, sequence_ids=sequence_ids, form=form)


def tag_sequences_set(*, tag: Tag, sequence_ids: Iterable[int]) -> None:
    """The sequences adding the tag adds to; SequenceInvalid (nothing changed) for another
    account's sequence."""
    _triggers_set(account_id=tag.account_id, sequence_ids=sequence_ids, tag=tag)


def form_sequence_ids(*, form: Form) -> list[int]:
    return list(SequenceTrigger.objects.filter(form=form).values_list("sequence_id", flat=True))


def tag_sequence_ids(*, tag: Tag) -> list[int]:
    return list(SequenceTrigger.objects.filter(tag=tag).values_list("sequence_id", flat=True))


def tag_trigger_names(*, tag_ids: Iterable[int]) -> dict[int, list[str]]:
    """The names of the sequences each tag adds to, for the tag list: one query."""
    names: dict[int, list[str]] = defaultdict(list)
    for tag_id, name in (
        SequenceTrigger.objects.filter(tag_id__in=list(tag_ids))
        .order_by("sequence__name", "sequence_id")
        .values_list("tag_id", "sequence__name")
    ):
        names[tag_id].append(name)
    return names


def triggered_tag_ids(*, account_id: int) -> list[int]:
    """The account's tags that add to a sequence (an import captures its new taggings only
    when there are some)."""
    return list(
        SequenceTrigger.objects.filter(account_id=account_id, tag__isnull=False)
        .values_list("tag_id", flat=True)
        .distinct()
    )


def form_joined_enrol(*, form_id: int, subscriber_id: int, now: datetime | None = None) -> None:
    """A signup through the form: the subscriber enters each sequence the form adds to, active
    or (double opt-in) unconfirmed; the suppressed enter nothing."""
    for sequence in Sequence.objects.filter(triggers__form_id=form_id):
        subscriber_ids_enrol(sequence=sequence, subscriber_ids=[subscriber_id], now=now)


def tags_added_enrol(
    *, tag_ids: Iterable[int], added_sql: str, params: dict, now: datetime | None = None
) -> None:
    """The built-in "when tag X is added, add to sequence Y": whoever `added_sql` names (a
    SELECT of (tag_id, subscriber_id) pairs of taggings just made, with %(name)s parameters)
    enters every sequence one of their new tags adds to. One statement per such sequence;
    nothing at all when none of `tag_ids` (the tags that may have been added) has a trigger."""
    tags_by_sequence: dict[int, list[int]] = defaultdict(list)
    for sequence_id, tag_id in SequenceTrigger.objects.filter(tag_id__in=list(tag_ids)).values_list(
        "sequence_id", "tag_id"
    ):
        tags_by_sequence[sequence_id].append(tag_id)
    for sequence in Sequence.objects.filter(pk__in=list(tags_by_sequence)).order_by("id"):
        subscribers_enrol(
            sequence=sequence,
            source_sql=f"""
                SELECT added.subscriber_id FROM ({added_sql}) AS added(tag_id, subscriber_id)
                WHERE added.tag_id = ANY(%(trigger_tag_ids)s::bigint[])
            """,
            source_params={**params, "trigger_tag_ids": tags_by_sequence[sequence.pk]},
            now=now,
        )


def tag_added_enrol(*, tag_id: int, subscriber_ids: list[int], now: datetime | None = None) -> None:
    """tags_added_enrol for subscribers just given one tag (a bulk action's batch)."""
    if not subscriber_ids:
        return
    tags_added_enrol(
        tag_ids=[tag_id],
        added_sql="SELECT %(added_tag)s::bigint, unnest(%(added_subscribers)s::bigint[])",
        params={"added_tag": tag_id, "added_subscribers": list(subscriber_ids)},
        now=now,
    )


# Many at once: a bulk action's batch, the command ----------------------------------------------


def subscriber_ids_enrol(
    *, sequence: Sequence, subscriber_ids: list[int], now: datetime | None = None
) -> EnrolResult:
    """Adds these subscribers of the sequence's account in one statement; the suppressed and
    those already in it (or who completed it, unless it repeats) are counted as refused."""
    ids = sorted(set(subscriber_ids))
    if not ids:
        return EnrolResult()
    return subscribers_enrol(
        sequence=sequence,
        source_sql="SELECT unnest(%(enrol_ids)s::bigint[])",
        source_params={"enrol_ids": ids},
        now=now,
        total=len(ids),
    )


def filtered_subscribers_enrol(
    *,
    sequence: Sequence,
    filters: SubscriberFilter,
    on_progress: Callable[[int, EnrolResult], None] | None = None,
) -> EnrolResult:
    """Adds every subscriber of the sequence's account that `filters` matches (read as the list
    and bulk actions read them, through the same indexes) and who is there when it starts: in
    id order, ENROL_BATCH at a time, each batch one statement in its own
    transaction, so a run stopped halfway keeps what it did and a second run adds nobody twice.
    `on_progress(done, result so far)` follows each batch."""
    account = sequence.account
    tag = (
        Tag.objects.filter(account_id=account.id, pk=filters.tag_id).first()
        if filters.tag_id
        else None
    )
    counts = subscriber_counts(account=account)
    up_to_id = Subscriber.objects.filter(account_id=account.id).aggregate(Max("id"))["id__max"]
    total, done, after_id = EnrolResult(), 0, 0
    while up_to_id is not None:
        ids = subscriber_batch_ids(
            account=account,
            filters=filters,
            after_id=after_id,
            up_to_id=up_to_id,
            limit=ENROL_BATCH,
            counts=counts,
            tag=tag,
        )
        if not ids:
            break
        with transaction.atomic():
            result = subscriber_ids_enrol(sequence=sequence, subscriber_ids=ids)
        total.added += result.added
        total.restarted += result.restarted
        total.refused += result.refused
        done += len(ids)
        after_id = ids[-1]
        if on_progress is not None:
            on_progress(done, total)
    return total


# The subscriber page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionRow:
    """One sequence on a subscriber's page."""

    sequence: Sequence
    state_label: str
    # Where they stand, e.g. "after email 2 of 5".
    place: str
    # When their next email is due (None: nothing waits; `due_now`: the scheduler's next pass);
    # `held` says why nothing moves now.
    next_due_at: datetime | None
    due_now: bool
    held: str
    subscribed_at: datetime
    removable: bool


def _place(*, position_key: float | None, keys: list[float]) -> str:
    if not keys:
        return "no published emails yet"
    passed = sum(1 for key in keys if position_key is not None and key <= position_key)
    if passed == 0:
        return f"before email 1 of {len(keys)}"
    return f"after email {passed} of {len(keys)}"


def subscriber_sequences(*, subscriber: Subscriber) -> list[SubscriptionRow]:
    """Every sequence the subscriber was ever added to, newest first, with their place among
    its published emails and their next email's due time: two queries."""
    subscriptions = list(
        Subscription.objects.filter(subscriber_id=subscriber.pk, account_id=subscriber.account_id)
        .select_related("sequence")
        .order_by("-subscribed_at", "-id")
    )
    keys: dict[int, list[float]] = defaultdict(list)
    for sequence_id, sort_key in (
        SequenceEmail.objects.filter(
            sequence_id__in={row.sequence_id for row in subscriptions},
            published=True,
            deleted_at__isnull=True,
        )
        .order_by("sort_key")
        .values_list("sequence_id", "sort_key")
    ):
        keys[sequence_id].append(sort_key)
    now = timezone.now()
    rows = []
    for subscription in subscriptions:
        sequence = subscription.sequence
        waiting = subscription.state == SubState.ACTIVE
        held = ""
        if waiting and not sequence.is_running:
            held = "held while the sequence is paused"
        elif subscription.state == SubState.UNCONFIRMED:
            held = "starts when they confirm their address"
        next_due_at = subscription.next_due_at if waiting else None
        rows.append(
            SubscriptionRow(
                sequence=sequence,
                state_label=SubState(subscription.state).label,
                place=_place(position_key=subscription.position_key, keys=keys[sequence.pk]),
                next_due_at=next_due_at,
                due_now=next_due_at is not None and next_due_at <= now,
                held=held,
                subscribed_at=subscription.subscribed_at,
                removable=subscription.state in (SubState.ACTIVE, SubState.UNCONFIRMED),
            )
        )
    return rows
