"""Every write to subscribers, tags and custom fields. Functions take keyword-only arguments."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from automations.models import EventKind
from automations.outbox import events_add, events_add_rows
from convertkit.models import Account
from sequences.entry import tags_added_enrol
from subscribers.models import (
    CustomField,
    StateChange,
    Subscriber,
    Suppression,
    Tag,
    Tagging,
    email_hash,
)
from subscribers.validation import MAX_TAG_NAME_LENGTH

# States a creator may move to unsubscribed; the suppressed ones stay as they are.
UNSUBSCRIBABLE_STATES = (Subscriber.State.ACTIVE, Subscriber.State.UNCONFIRMED)


class SubscriberExists(Exception):
    """The account already has a subscriber with this address."""

    def __init__(self, subscriber: Subscriber):
        super().__init__(subscriber.email)
        self.subscriber = subscriber


class SubscriberSuppressed(Exception):
    """The address was erased at the subscriber's request and may only come back if they ask."""


class TagExists(Exception):
    def __init__(self, tag: Tag):
        super().__init__(tag.name)
        self.tag = tag


class CustomFieldExists(Exception):
    pass


def _tag_name_cleaned(name: str) -> str:
    """Spaces collapsed, at most MAX_TAG_NAME_LENGTH characters; ValueError if nothing is left."""
    name = " ".join(name.split())[:MAX_TAG_NAME_LENGTH]
    if not name:
        raise ValueError("A tag needs a name")
    return name


def tag_get_or_create(*, account: Account, name: str) -> Tag:
    """The account's tag of that name (case-insensitive), created if missing; safe under races."""
    name = _tag_name_cleaned(name)
    existing = Tag.objects.filter(account=account, name__iexact=name).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return Tag.objects.create(account=account, name=name)
    except IntegrityError:
        return Tag.objects.get(account=account, name__iexact=name)


def tag_create(*, account: Account, name: str) -> Tag:
    """A new tag; TagExists if the account has one of that name (case-insensitive)."""
    name = _tag_name_cleaned(name)
    try:
        with transaction.atomic():
            return Tag.objects.create(account=account, name=name)
    except IntegrityError:
        raise TagExists(Tag.objects.get(account=account, name__iexact=name)) from None


def tag_rename(*, tag: Tag, name: str) -> Tag:
    """Renames the tag; TagExists if another of the account's tags has that name
    (case-insensitive), ValueError for a blank name."""
    name = _tag_name_cleaned(name)
    try:
        with transaction.atomic():
            Tag.objects.filter(pk=tag.pk).update(name=name)
    except IntegrityError:
        raise TagExists(Tag.objects.get(account_id=tag.account_id, name__iexact=name)) from None
    tag.name = name
    return tag


def tag_delete(*, tag: Tag) -> None:
    """Deletes the tag and its taggings; the subscribers stay."""
    tag.delete()


def custom_field_create(*, account: Account, key: str, label: str) -> CustomField:
    try:
        with transaction.atomic():
            return CustomField.objects.create(account=account, key=key, label=label)
    except IntegrityError:
        raise CustomFieldExists(key) from None


def custom_field_relabel(*, custom_field: CustomField, label: str) -> CustomField:
    """A new label; the key stays, as the values stored under it and merge tags naming it do."""
    custom_field.label = label
    custom_field.save(update_fields=["label"])
    return custom_field


def custom_field_delete(*, custom_field: CustomField) -> None:
    """Removes the definition only: values stay in Subscriber.fields, hidden, and come back if a
    field with the same key is defined again (rewriting millions of JSON values is not worth it)."""
    custom_field.delete()


def _is_suppressed(*, account_id: int, email: str) -> bool:
    return Suppression.objects.filter(account_id=account_id, email_hash=email_hash(email)).exists()


def _raise_if_exists(*, account_id: int, email: str) -> None:
    """SubscriberExists if the account has this address (what a unique violation most likely was)."""
    existing = Subscriber.objects.filter(account_id=account_id, email=email).first()
    if existing is not None:
        raise SubscriberExists(existing) from None


def field_changes_record(
    *, account_id: int, subscriber_id: int, before: dict, after: dict
) -> list[str]:
    """One field_changed event per custom field key whose value differs between `before` and
    `after` (set, changed or cleared), in one statement; returns those keys."""
    keys = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    if keys:
        events_add_rows(
            kind=EventKind.FIELD_CHANGED,
            rows_sql="SELECT %(account)s::bigint, NULL::bigint, %(subscriber)s::bigint, "
            "unnest(%(keys)s::text[])",
            params={"account": account_id, "subscriber": subscriber_id, "keys": keys},
        )
    return keys


def subscriber_create(
    *,
    account: Account,
    email: str,
    first_name: str = "",
    fields: dict[str, str] | None = None,
    tag_names: list[str] | tuple[str, ...] = (),
    source: str = "manual",
    consent_method: str = "",
    consent_ip: str | None = None,
    readd: bool = False,
) -> Subscriber:
    """Adds an active subscriber with an already normalised `email`.

    Raises SubscriberExists for an address the account has, and SubscriberSuppressed for one that
    was erased unless `readd` says the person asked to be added again (the suppression then goes).
    Each custom field given a value is an event (field_changed), as each tag added is.
    """
    with transaction.atomic():
        if readd:
            Suppression.objects.filter(account=account, email_hash=email_hash(email)).delete()
        elif _is_suppressed(account_id=account.id, email=email):
            raise SubscriberSuppressed(email)
        now = timezone.now()
        try:
            with transaction.atomic():
                subscriber = Subscriber.objects.create(
                    account=account,
                    email=email,
                    first_name=first_name,
                    fields={key: value for key, value in (fields or {}).items() if value != ""},
                    state=Subscriber.State.ACTIVE,
                    source=source,
                    consent_at=now,
                    consent_method=consent_method,
                    consent_ip=consent_ip,
                    confirmed_at=now,
                )
        except IntegrityError:
            _raise_if_exists(account_id=account.id, email=email)
            raise
        for kind in (EventKind.CREATED, EventKind.ACTIVATED):
            events_add(account_id=account.id, kind=kind, subscriber_ids=[subscriber.pk])
        field_changes_record(
            account_id=account.id, subscriber_id=subscriber.pk, before={}, after=subscriber.fields
        )
        for name in tag_names:
            subscriber_tag(subscriber=subscriber, name=name)
    return subscriber


def subscriber_update(
    *, subscriber: Subscriber, email: str, first_name: str, fields: dict[str, str]
) -> Subscriber:
    """Edits the address, name and the given custom field values (blank clears one).

    Values of fields not given (such as those of deleted definitions) are kept. The state is never
    touched here, so an edit cannot reactivate an unsubscribed, bounced or complained subscriber.
    """
    values = dict(subscriber.fields)
    for key, value in fields.items():
        if value == "":
            values.pop(key, None)
        else:
            values[key] = value
    with transaction.atomic():
        if email != subscriber.email and _is_suppressed(
            account_id=subscriber.account_id, email=email
        ):
            raise SubscriberSuppressed(email)
        try:
            with transaction.atomic():
                Subscriber.objects.filter(pk=subscriber.pk).update(
                    email=email, first_name=first_name, fields=values, updated_at=timezone.now()
                )
        except IntegrityError:
            _raise_if_exists(account_id=subscriber.account_id, email=email)
            raise
        field_changes_record(
            account_id=subscriber.account_id,
            subscriber_id=subscriber.pk,
            before=subscriber.fields,
            after=values,
        )
    subscriber.email, subscriber.first_name, subscriber.fields = email, first_name, values
    return subscriber


# The outbox event of reaching each state (outgoing webhooks listen for all of them).
STATE_EVENTS = {
    Subscriber.State.ACTIVE: EventKind.ACTIVATED,
    Subscriber.State.UNSUBSCRIBED: EventKind.UNSUBSCRIBED,
    Subscriber.State.BOUNCED: EventKind.BOUNCED,
    Subscriber.State.COMPLAINED: EventKind.COMPLAINED,
}


def _subscriber_move(
    *,
    subscriber: Subscriber,
    from_states: tuple[str, ...],
    to_state: str,
    reason: str,
    now: datetime,
    **changes,
) -> bool:
    """Moves the subscriber from one of `from_states` to `to_state`, with a history row; the
    same UPDATE sets updated_at to `now` and `changes` (further columns).

    The state is read under a row lock and only one of `from_states` moves, so a double submit
    or a replayed report writes one history row; returns whether the state changed.
    """
    with transaction.atomic():
        from_state = (
            Subscriber.objects.select_for_update()
            .filter(pk=subscriber.pk, state__in=from_states)
            .values_list("state", flat=True)
            .first()
        )
        if from_state is None:
            return False
        Subscriber.objects.filter(pk=subscriber.pk).update(
            state=to_state, updated_at=now, **changes
        )
        StateChange.objects.create(
            account_id=subscriber.account_id,
            subscriber=subscriber,
            from_state=from_state,
            to_state=to_state,
            reason=reason[:255],
        )
        events_add(
            account_id=subscriber.account_id,
            kind=STATE_EVENTS[to_state],
            subscriber_ids=[subscriber.pk],
        )
    return True


def subscriber_unsubscribe(*, subscriber: Subscriber, reason: str) -> bool:
    """Moves an active or unconfirmed subscriber to unsubscribed, with a history row.

    The state is read under a row lock and only a subscribable one moves, so a double submit
    writes one history row; returns whether the state changed.
    """
    now = timezone.now()
    moved = _subscriber_move(
        subscriber=subscriber,
        from_states=UNSUBSCRIBABLE_STATES,
        to_state=Subscriber.State.UNSUBSCRIBED,
        reason=reason,
        now=now,
        unsubscribed_at=now,
    )
    if moved:
        subscriber.state, subscriber.unsubscribed_at = Subscriber.State.UNSUBSCRIBED, now
    return moved


# What each suppressing state may be reached from. A complaint outranks a bounce, and both outrank
# an unsubscribe, which the subscriber could undo through their link: an address that bounces or
# complains must never be mailed again, whatever the subscriber's state said before.
_SUPPRESSIBLE_FROM = {
    Subscriber.State.BOUNCED: (*UNSUBSCRIBABLE_STATES, Subscriber.State.UNSUBSCRIBED),
    Subscriber.State.COMPLAINED: (
        *UNSUBSCRIBABLE_STATES,
        Subscriber.State.UNSUBSCRIBED,
        Subscriber.State.BOUNCED,
    ),
}


def subscriber_suppress(*, subscriber: Subscriber, state: str, reason: str) -> bool:
    """Moves the subscriber to bounced or complained (`state`), with a history row.

    Broadcast audiences take active subscribers only, forms refuse these states and the
    resubscribe link only undoes an unsubscribe, so nothing mails them again. The state is read
    under a row lock and only a state that `state` outranks moves, so a replayed or concurrent
    report writes one history row; returns whether the state changed.
    """
    from_states = _SUPPRESSIBLE_FROM.get(state)
    if from_states is None:
        raise ValueError(f"{state!r} is not a suppressing state")
    moved = _subscriber_move(
        subscriber=subscriber,
        from_states=from_states,
        to_state=state,
        reason=reason,
        now=timezone.now(),
    )
    if moved:
        subscriber.state = state
    return moved


def subscriber_resubscribe(*, subscriber: Subscriber, reason: str) -> bool:
    """Makes an unsubscribed subscriber active again at their own request, with a history row.

    Only the unsubscribed state qualifies: bounced and complained addresses are never
    reactivated. Callers act on proof the address is theirs (the unsubscribe link only ever
    reached their mailbox, as a confirmation link would). The state is read under a row lock,
    so a double submit writes one history row; returns whether the state changed.
    """
    now = timezone.now()
    moved = _subscriber_move(
        subscriber=subscriber,
        from_states=(Subscriber.State.UNSUBSCRIBED,),
        to_state=Subscriber.State.ACTIVE,
        reason=reason,
        now=now,
        unsubscribed_at=None,
        confirmed_at=Coalesce("confirmed_at", now),
    )
    if moved:
        subscriber.refresh_from_db(
            fields=["state", "unsubscribed_at", "confirmed_at", "updated_at"]
        )
    return moved


def subscriber_delete(*, subscriber: Subscriber) -> None:
    """Erases the subscriber with their taggings and history, keeping only the hash of the
    address in Suppression, so that no import or form brings them back unasked."""
    with transaction.atomic():
        Suppression.objects.bulk_create(
            [
                Suppression(
                    account_id=subscriber.account_id,
                    email_hash=email_hash(subscriber.email),
                    reason=subscriber.state
                    if subscriber.state in Suppression.UNMAILABLE_REASONS
                    else "deleted",
                )
            ],
            ignore_conflicts=True,
        )
        subscriber.delete()


def subscriber_tags_add(*, subscriber: Subscriber, tag_ids: list[int]) -> list[int]:
    """Gives the subscriber these tags of their account and returns the ones they did not have
    yet; a tag that adds to a sequence enrols them, in the same transaction."""
    if not tag_ids:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Tagging._meta.db_table} (account_id, tag_id, subscriber_id, created_at)
            SELECT %(account)s, t.id, %(subscriber)s, now() FROM {Tag._meta.db_table} t
            WHERE t.account_id = %(account)s AND t.id = ANY(%(tags)s::bigint[])
            ORDER BY t.id
            ON CONFLICT (tag_id, subscriber_id) DO NOTHING
            RETURNING tag_id
            """,
            {"account": subscriber.account_id, "subscriber": subscriber.pk, "tags": list(tag_ids)},
        )
        added = [row[0] for row in cursor.fetchall()]
        if added:
            tags_added_enrol(
                tag_ids=added,
                added_sql="SELECT unnest(%(added_tags)s::bigint[]), %(tagged)s::bigint",
                params={"added_tags": added, "tagged": subscriber.pk},
            )
            for tag_id in added:
                events_add(
                    account_id=subscriber.account_id,
                    kind=EventKind.TAG_ADDED,
                    subscriber_ids=[subscriber.pk],
                    object_id=tag_id,
                )
    return added


def subscriber_tag(*, subscriber: Subscriber, name: str) -> Tag:
    """Tags the subscriber with the account's tag of that name, creating the tag if needed."""
    tag = tag_get_or_create(account=subscriber.account, name=name)
    subscriber_tags_add(subscriber=subscriber, tag_ids=[tag.id])
    return tag


def subscriber_untag(*, subscriber: Subscriber, tag: Tag) -> bool:
    return bool(
        subscribers_untag(
            account_id=subscriber.account_id, tag_id=tag.pk, subscriber_ids=[subscriber.pk]
        )
    )


# Many subscribers at once: a bulk action's batch, a rule's or an automation's step ------------
# One statement each, whatever the number of subscribers, with the events of what changed.


def subscribers_tag(*, account_id: int, tag_id: int, subscriber_ids: list[int]) -> list[int]:
    """Tags those of the account's subscribers not tagged yet (a tag of another account tags
    nobody); returns them. They enter the sequences the tag adds to."""
    if not subscriber_ids:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Tagging._meta.db_table} (account_id, tag_id, subscriber_id, created_at)
            SELECT s.account_id, t.id, s.id, now()
            FROM {Subscriber._meta.db_table} s JOIN {Tag._meta.db_table} t ON t.id = %(tag)s
            WHERE s.account_id = %(account)s AND t.account_id = %(account)s
              AND s.id = ANY(%(ids)s::bigint[])
            ORDER BY s.id
            ON CONFLICT (tag_id, subscriber_id) DO NOTHING
            RETURNING subscriber_id
            """,
            {"tag": tag_id, "account": account_id, "ids": list(subscriber_ids)},
        )
        tagged = [row[0] for row in cursor.fetchall()]
        if tagged:
            tags_added_enrol(
                tag_ids=[tag_id],
                added_sql="SELECT %(added_tag)s::bigint, unnest(%(added_subscribers)s::bigint[])",
                params={"added_tag": tag_id, "added_subscribers": tagged},
            )
            events_add(
                account_id=account_id,
                kind=EventKind.TAG_ADDED,
                subscriber_ids=tagged,
                object_id=tag_id,
            )
    return tagged


def subscribers_untag(*, account_id: int, tag_id: int, subscriber_ids: list[int]) -> list[int]:
    """Removes the tag from those who have it; returns them.

    The id range bounds the index scan on tagging_unique to the given ids; with the array
    alone the planner may scan the whole tag for every batch.
    """
    ids = sorted(set(subscriber_ids))
    if not ids:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            DELETE FROM {Tagging._meta.db_table}
            WHERE tag_id = %s AND account_id = %s
              AND subscriber_id BETWEEN %s AND %s AND subscriber_id = ANY(%s::bigint[])
            RETURNING subscriber_id
            """,
            [tag_id, account_id, ids[0], ids[-1], ids],
        )
        untagged = [row[0] for row in cursor.fetchall()]
        events_add(
            account_id=account_id,
            kind=EventKind.TAG_REMOVED,
            subscriber_ids=untagged,
            object_id=tag_id,
        )
    return untagged


def subscribers_unsubscribe(
    *, account_id: int, subscriber_ids: list[int], reason: str
) -> list[int]:
    """Moves those still subscribed (active or unconfirmed) to unsubscribed, with their history
    rows and events, in one statement; returns them."""
    if not subscriber_ids:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH before AS (
              SELECT id, state FROM {Subscriber._meta.db_table}
              WHERE account_id = %(account)s AND id = ANY(%(ids)s::bigint[])
                AND state IN %(states)s
              ORDER BY id
              FOR UPDATE
            ), changed AS (
              UPDATE {Subscriber._meta.db_table} AS s
              SET state = %(to_state)s, unsubscribed_at = now(), updated_at = now()
              FROM before WHERE s.id = before.id
              RETURNING s.id, before.state AS from_state
            ), history AS (
              INSERT INTO {StateChange._meta.db_table}
                (account_id, subscriber_id, from_state, to_state, reason, created_at)
              SELECT %(account)s, id, from_state, %(to_state)s, %(reason)s, now() FROM changed
            )
            SELECT id FROM changed
            """,
            {
                "account": account_id,
                "ids": list(subscriber_ids),
                "states": tuple(state.value for state in UNSUBSCRIBABLE_STATES),
                "to_state": Subscriber.State.UNSUBSCRIBED.value,
                "reason": reason[:255],
            },
        )
        moved = [row[0] for row in cursor.fetchall()]
        events_add(account_id=account_id, kind=EventKind.UNSUBSCRIBED, subscriber_ids=moved)
    return moved


def subscribers_field_set(
    *, account_id: int, key: str, value: str, subscriber_ids: list[int]
) -> list[int]:
    """Sets the custom field `key` to `value` ("" clears it) where it differs; returns whose
    value changed."""
    if not subscriber_ids:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Subscriber._meta.db_table}
            SET fields = CASE WHEN %(value)s = '' THEN fields - %(key)s
                              ELSE fields || jsonb_build_object(%(key)s::text, %(value)s::text) END,
                updated_at = now()
            WHERE account_id = %(account)s AND id = ANY(%(ids)s::bigint[])
              AND (fields ->> %(key)s) IS DISTINCT FROM NULLIF(%(value)s, '')
            RETURNING id
            """,
            {"account": account_id, "ids": list(subscriber_ids), "key": key, "value": value},
        )
        changed = [row[0] for row in cursor.fetchall()]
        events_add(
            account_id=account_id,
            kind=EventKind.FIELD_CHANGED,
            subscriber_ids=changed,
            detail=key,
        )
    return changed
