"""Every write to subscribers, tags and custom fields. Functions take keyword-only arguments."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone
from psycopg2.extras import Json

from automations.models import EventKind
from automations.outbox import events_add, events_add_rows, events_insert_sql
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


def _subscriber_insert_sql() -> str:
    """One statement for a new subscriber: the INSERT (nothing when the address is suppressed or
    the account has it already), and its events (created, activated, a field_changed per value)
    as CTEs of the same statement. Built per call: the events' depth is the caller's."""
    table = Subscriber._meta.db_table
    columns = ", ".join(field.column for field in Subscriber._meta.concrete_fields)
    new_rows = "SELECT %(account)s::bigint, NULL::bigint, new.id, ''::text FROM new"
    return f"""
        WITH new AS (
            INSERT INTO {table} (account_id, email, first_name, fields, state, source,
                                 time_zone, consent_at, consent_method, consent_ip, created_at,
                                 updated_at, confirmed_at)
            SELECT %(account)s, %(email)s, %(first_name)s, %(fields)s::jsonb, 'active', %(source)s,
                   '', %(now)s, %(consent_method)s, %(consent_ip)s::inet, %(now)s, %(now)s,
                   %(now)s
            WHERE NOT EXISTS (
                SELECT 1 FROM {Suppression._meta.db_table}
                WHERE account_id = %(account)s AND email_hash = %(hash)s)
            ON CONFLICT (account_id, email) DO NOTHING
            RETURNING {columns}
        ),
        created AS ({events_insert_sql(kind=EventKind.CREATED, rows_sql=new_rows)}),
        activated AS ({events_insert_sql(kind=EventKind.ACTIVATED, rows_sql=new_rows)}),
        changed AS ({
        events_insert_sql(
            kind=EventKind.FIELD_CHANGED,
            rows_sql="SELECT %(account)s::bigint, NULL::bigint, new.id, key "
            "FROM new, unnest(%(keys)s::text[]) AS key",
        )
    })
        SELECT * FROM new
    """


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

    The common case (an API or form signup) is one statement: the insert, the suppression
    check and the events together, with no savepoint; what went wrong is looked for only when
    nothing was inserted.
    """
    values = {key: value for key, value in (fields or {}).items() if value != ""}
    params = {
        "account": account.id,
        "email": email,
        "first_name": first_name,
        "fields": Json(values),
        "source": source,
        "now": timezone.now(),
        "consent_method": consent_method,
        "consent_ip": consent_ip,
        "hash": email_hash(email),
        "keys": sorted(values),
    }
    # One statement needs no transaction of its own; with a suppression to lift or tags to add
    # after it, they all commit together.
    with transaction.atomic() if readd or tag_names else nullcontext():
        if readd:
            Suppression.objects.filter(account=account, email_hash=params["hash"]).delete()
        with connection.cursor() as cursor:
            cursor.execute(_subscriber_insert_sql(), params)
            row = cursor.fetchone()
        if row is None:
            if _is_suppressed(account_id=account.id, email=email):
                raise SubscriberSuppressed(email)
            _raise_if_exists(account_id=account.id, email=email)
            # Neither: the address that was in the way went meanwhile; the caller may try again.
            raise IntegrityError(f"subscriber {email} could not be added")
        # RETURNING lists the concrete fields' columns in their order.
        subscriber = Subscriber.from_db(
            connection.alias, [field.attname for field in Subscriber._meta.concrete_fields], row
        )
        # A raw cursor leaves jsonb as text (JSONField parses it in its converter): the values
        # are the ones just stored.
        subscriber.fields = values
        subscriber.account = account
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


# Many changes of different kinds at once: a bulk API request's batch ----------------------------
# Each is a few statements whatever the batch's size, with the events of what changed.


@dataclass(frozen=True)
class UpsertRow:
    """One address of subscribers_upsert: `first_name` None keeps an existing subscriber's,
    a `fields` value "" clears it; `state` is a new subscriber's only."""

    email: str
    first_name: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    state: str = Subscriber.State.ACTIVE


@dataclass(frozen=True)
class Upserted:
    id: int
    email: str
    first_name: str
    state: str
    # Whole seconds since the epoch: what an answer shows, read without a datetime per row.
    created_second: int


@dataclass
class UpsertResult:
    subscribers: dict[str, Upserted]
    # New addresses erased at their owner's request: not added (SubscriberSuppressed).
    suppressed: set[str]
    created: int


def _upsert_input(rows: list[UpsertRow]) -> Json:
    data = []
    for row in rows:
        sets, clears = row.fields, []
        if sets and "" in sets.values():
            sets = {key: value for key, value in row.fields.items() if value != ""}
            clears = [key for key, value in row.fields.items() if value == ""]
        data.append(
            {
                "email": row.email,
                "first_name": row.first_name,
                "sets": sets,
                "clears": clears,
                "state": row.state,
            }
        )
    return Json(data)


_UPSERT_INPUT = """
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS r(email text, first_name text, sets jsonb, clears jsonb, state text)
"""


def subscribers_upsert(
    *,
    account_id: int,
    rows: list[UpsertRow],
    source: str,
    consent_method: str,
    now: datetime | None = None,
) -> UpsertResult:
    """Adds the addresses the account lacks and updates the name and fields of those it has
    (never their state: an unsubscribed, bounced or complained subscriber stays so), in one
    statement whatever the number of rows (each address once).

    1. The existing subscribers are locked, in id order, and updated where the name or a field
       differs; each field value set, changed or cleared is a field_changed event (not an
       unconfirmed subscriber's: theirs count when they confirm).
    2. New addresses whose hash is in Suppression are left out (only when the account has any).
    3. The other addresses are inserted, in email order, with the events of their fields.
    All in one statement, which reads the rows (one JSON document) once.
    """
    now = now or timezone.now()
    if not rows:
        return UpsertResult(subscribers={}, suppressed=set(), created=0)
    subscribers = Subscriber._meta.db_table
    params = {
        "rows": _upsert_input(rows),
        "account": account_id,
        "now": now,
        "unconfirmed": Subscriber.State.UNCONFIRMED.value,
    }
    field_events = events_insert_sql(
        kind=EventKind.FIELD_CHANGED,
        rows_sql="""
            SELECT %(account)s::bigint, NULL::bigint, m.id, k.key
            FROM matched AS m CROSS JOIN jsonb_object_keys(m.fields || m.old_fields) AS k(key)
            WHERE m.state <> %(unconfirmed)s
              AND (m.old_fields -> k.key) IS DISTINCT FROM (m.fields -> k.key)
        """,
    )
    new_field_events = events_insert_sql(
        kind=EventKind.FIELD_CHANGED,
        rows_sql="""
            SELECT %(account)s::bigint, NULL::bigint, c.id, k.key
            FROM created AS c CROSS JOIN jsonb_object_keys(c.fields) AS k(key)
            WHERE c.state <> %(unconfirmed)s
        """,
    )
    suppressed_sql = "SELECT NULL::text AS email WHERE false"
    if Suppression.objects.filter(account_id=account_id).exists():
        suppressed_sql = f"""
            SELECT r.email FROM input AS r
            JOIN {Suppression._meta.db_table} AS sp ON sp.account_id = %(account)s
             AND sp.email_hash = encode(sha256(convert_to(r.email, 'UTF8')), 'hex')
            WHERE NOT EXISTS (SELECT 1 FROM matched AS m WHERE m.email = r.email)
        """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH input AS MATERIALIZED ({_UPSERT_INPUT}), matched AS (
                SELECT s.id, s.email, s.state, s.created_at, s.first_name AS old_first_name,
                       s.fields AS old_fields, coalesce(r.first_name, s.first_name) AS first_name,
                       (s.fields || r.sets) - ARRAY(SELECT jsonb_array_elements_text(r.clears))
                           AS fields
                FROM {subscribers} AS s JOIN input AS r
                  ON s.account_id = %(account)s AND s.email = r.email
                ORDER BY s.id
                FOR UPDATE OF s
            ), changed AS (
                UPDATE {subscribers} AS s
                SET first_name = m.first_name, fields = m.fields, updated_at = %(now)s
                FROM matched AS m
                WHERE s.id = m.id AND (m.first_name <> m.old_first_name OR m.fields <> m.old_fields)
            ), events AS ({field_events}),
            suppressed AS ({suppressed_sql}),
            created AS (
                INSERT INTO {subscribers} (
                    account_id, email, first_name, fields, time_zone, state, source, consent_at,
                    consent_method, created_at, updated_at, confirmed_at, unsubscribed_at
                )
                SELECT %(account)s, r.email, coalesce(r.first_name, ''), r.sets, '', r.state,
                       %(source)s, %(now)s, %(consent_method)s, %(now)s, %(now)s,
                       CASE WHEN r.state = 'active' THEN %(now)s END,
                       CASE WHEN r.state = 'unsubscribed' THEN %(now)s END
                FROM input AS r
                WHERE NOT EXISTS (SELECT 1 FROM matched AS m WHERE m.email = r.email)
                  AND NOT EXISTS (SELECT 1 FROM suppressed AS x WHERE x.email = r.email)
                ORDER BY r.email
                ON CONFLICT (account_id, email) DO NOTHING
                RETURNING id, email, first_name, state, created_at, fields
            ), new_events AS ({new_field_events})
            SELECT 'matched', id, email, first_name, state,
                   floor(extract(epoch FROM created_at))::bigint FROM matched
            UNION ALL SELECT 'created', id, email, first_name, state,
                   floor(extract(epoch FROM created_at))::bigint FROM created
            UNION ALL SELECT 'suppressed', NULL, email, NULL, NULL, NULL FROM suppressed
            """,
            {**params, "source": source[:255], "consent_method": consent_method[:255]},
        )
        found: dict[str, Upserted] = {}
        suppressed: set[str] = set()
        created = 0
        for outcome, *row in cursor.fetchall():
            if outcome == "suppressed":
                suppressed.add(row[1])
                continue
            found[row[1]] = Upserted(*row)
            created += outcome == "created"
        # An address another transaction added meanwhile (its insert was skipped): as it is now.
        missing = [
            row.email for row in rows if row.email not in found and row.email not in suppressed
        ]
        for subscriber in Subscriber.objects.filter(account_id=account_id, email__in=missing):
            found[subscriber.email] = Upserted(
                subscriber.id,
                subscriber.email,
                subscriber.first_name,
                subscriber.state,
                int(subscriber.created_at.timestamp()),
            )
    return UpsertResult(subscribers=found, suppressed=suppressed, created=created)


def _pairs_sql(name: str) -> str:
    """(first, second) pairs passed as two arrays, %(<name>_1)s and %(<name>_2)s."""
    return f"SELECT * FROM unnest(%({name}_1)s::bigint[], %({name}_2)s::bigint[])"


def _pairs_params(name: str, pairs) -> dict[str, list[int]]:
    return {f"{name}_1": [pair[0] for pair in pairs], f"{name}_2": [pair[1] for pair in pairs]}


def taggings_add(
    *, account_id: int, pairs: list[tuple[int, int]], now: datetime | None = None
) -> list[tuple[int, int]]:
    """Tags each (tag_id, subscriber_id) of the account not tagged yet (a pair naming another
    account's tag or subscriber tags nobody); returns the pairs tagged now. Each is a
    tag_added event, and those newly given a tag enter the sequences it adds to.

    subscribers_tag, the one-tag case of a bulk action or a rule, keeps its own statement: one
    tag joined once tags about a fifth faster than pairs do."""
    pairs = sorted(set(pairs))
    if not pairs:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Tagging._meta.db_table} (account_id, tag_id, subscriber_id, created_at)
            SELECT %(account)s, t.id, s.id, coalesce(%(now)s, now())
            FROM ({_pairs_sql("pairs")}) AS p(tag_id, subscriber_id)
            JOIN {Tag._meta.db_table} AS t ON t.id = p.tag_id AND t.account_id = %(account)s
            JOIN {Subscriber._meta.db_table} AS s
              ON s.id = p.subscriber_id AND s.account_id = %(account)s
            ORDER BY t.id, s.id
            ON CONFLICT (tag_id, subscriber_id) DO NOTHING
            RETURNING tag_id, subscriber_id
            """,
            {"account": account_id, "now": now, **_pairs_params("pairs", pairs)},
        )
        added = sorted(cursor.fetchall())
        if added:
            params = {"added_account": account_id, **_pairs_params("added", added)}
            tags_added_enrol(
                tag_ids={tag_id for tag_id, _ in added},
                added_sql=_pairs_sql("added"),
                params=params,
                now=now,
            )
            events_add_rows(
                kind=EventKind.TAG_ADDED,
                rows_sql=f"SELECT %(added_account)s::bigint, p.tag_id, p.subscriber_id, '' "
                f"FROM ({_pairs_sql('added')}) AS p(tag_id, subscriber_id)",
                params=params,
            )
    return added


def taggings_remove(*, account_id: int, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Removes each (tag_id, subscriber_id) tagging of the account that exists; returns them,
    each a tag_removed event."""
    pairs = sorted(set(pairs))
    if not pairs:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            DELETE FROM {Tagging._meta.db_table} AS t
            USING ({_pairs_sql("pairs")}) AS p(tag_id, subscriber_id)
            WHERE t.tag_id = p.tag_id AND t.subscriber_id = p.subscriber_id
              AND t.account_id = %(account)s
            RETURNING t.tag_id, t.subscriber_id
            """,
            {"account": account_id, **_pairs_params("pairs", pairs)},
        )
        removed = sorted(cursor.fetchall())
        if removed:
            events_add_rows(
                kind=EventKind.TAG_REMOVED,
                rows_sql=f"SELECT %(removed_account)s::bigint, p.tag_id, p.subscriber_id, '' "
                f"FROM ({_pairs_sql('removed')}) AS p(tag_id, subscriber_id)",
                params={"removed_account": account_id, **_pairs_params("removed", removed)},
            )
    return removed


def subscribers_fields_values_set(
    *, account_id: int, values: list[tuple[int, str, str]]
) -> list[int]:
    """Sets each (subscriber_id, key, value) of the account's subscribers ("" clears the
    field; the last value given for a subscriber's key wins), in one statement; each value
    that changes is a field_changed event. Returns the subscribers whose fields changed.
    (subscribers_field_set, one key and value for many, is one plain UPDATE of its own.)"""
    latest = {(subscriber_id, key): value for subscriber_id, key, value in values}
    if not latest:
        return []
    subscribers = Subscriber._meta.db_table
    field_events = events_insert_sql(
        kind=EventKind.FIELD_CHANGED,
        rows_sql="""
            SELECT %(account)s::bigint, NULL::bigint, m.id, k.key
            FROM matched AS m CROSS JOIN jsonb_object_keys(m.fields || m.old_fields) AS k(key)
            WHERE (m.old_fields -> k.key) IS DISTINCT FROM (m.fields -> k.key)
        """,
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH given AS (
                SELECT v.subscriber_id,
                       coalesce(jsonb_object_agg(v.key, v.value) FILTER (WHERE v.value <> ''),
                                '{{}}'::jsonb) AS sets,
                       coalesce(array_agg(v.key) FILTER (WHERE v.value = ''), '{{}}') AS clears
                FROM jsonb_to_recordset(%(values)s::jsonb)
                    AS v(subscriber_id bigint, key text, value text)
                GROUP BY v.subscriber_id
            ), matched AS (
                SELECT s.id, s.fields AS old_fields, (s.fields || g.sets) - g.clears AS fields
                FROM {subscribers} AS s JOIN given AS g ON s.id = g.subscriber_id
                WHERE s.account_id = %(account)s
                ORDER BY s.id
                FOR UPDATE OF s
            ), changed AS (
                UPDATE {subscribers} AS s SET fields = m.fields, updated_at = now()
                FROM matched AS m WHERE s.id = m.id AND m.fields <> m.old_fields
                RETURNING s.id
            ), events AS ({field_events})
            SELECT id FROM changed ORDER BY id
            """,
            {
                "account": account_id,
                "values": Json(
                    [
                        {"subscriber_id": subscriber_id, "key": key, "value": value}
                        for (subscriber_id, key), value in latest.items()
                    ]
                ),
            },
        )
        return [row[0] for row in cursor.fetchall()]


def tags_ensure(*, account_id: int, names: list[str]) -> dict[str, Tag]:
    """The account's tag of each name (case-insensitive), created where missing, by lower-cased
    name, in two statements; names are taken as tag_get_or_create cleans them."""
    cleaned = [_tag_name_cleaned(name) for name in names]
    if not cleaned:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Tag._meta.db_table} (account_id, name, subscriber_count, created_at)
            SELECT DISTINCT ON (lower(n.name)) %(account)s, n.name, 0, now()
            FROM unnest(%(names)s::text[]) WITH ORDINALITY AS n(name, position)
            ORDER BY lower(n.name), n.position
            ON CONFLICT (account_id, lower(name)) DO NOTHING
            """,
            {"account": account_id, "names": cleaned},
        )
    tags = Tag.objects.annotate(lowered=Lower("name")).filter(
        account_id=account_id, lowered__in={name.lower() for name in cleaned}
    )
    return {tag.name.lower(): tag for tag in tags}
