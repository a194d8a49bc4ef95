"""Every write to a sequence: its settings, its emails (add, edit, publish, move, delete), pause
and resume, and subscribers entering or leaving it.

Each sequence email's message (a Broadcast of kind "sequence_email") is kept in step with the
email by _messages_sync: "sending" while the email is published and the sequence running (the
pipeline sends its deliveries), "paused" while the sequence is held, "cancelled" once the email
is unpublished or deleted: its waiting deliveries, queued or in a send task's hands, are
cancelled, and whoever waited for it moves on to the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, Max, Min
from django.utils import timezone

from automations.models import EventKind
from automations.outbox import events_insert_sql
from broadcasts.models import Broadcast, Delivery
from broadcasts.pipeline import batches_publish, deliveries_cancel
from broadcasts.rendering import RenderFailed
from broadcasts.services import content_problems, message_freeze
from convertkit.models import Account
from convertkit.tenancy import ids_not_owned
from sequences.models import MAX_DELAY_DAYS, Sequence, SequenceEmail, Subscription
from sequences.schedule import DAYS, HOURS, zone_named
from subscribers.models import Segment, Subscriber

SubState = Subscription.State
# Sort keys of new emails: far apart, so that emails inserted between two stay exact floats.
KEY_STEP = 1024.0


class SequenceInvalid(Exception):
    """A setting or an email is not valid; the message says why, for the creator, and
    `problems` lists an email's problems one by one (email_problems) when those are why."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class SubscribeRefused(Exception):
    """The subscriber cannot be added to a sequence; the message says why, for the creator."""


# Settings ------------------------------------------------------------------------------------


def sequence_create(*, account: Account, name: str) -> Sequence:
    name = name.strip()
    if not name:
        raise SequenceInvalid("Give the sequence a name.")
    return Sequence.objects.create(account=account, name=name[:255], time_zone=account.time_zone)


def own_ids(model, *, account_id: int, ids: list[int], what: str) -> list[int]:
    """`ids`, sorted and unique, if every one names a `model` row of the account;
    SequenceInvalid otherwise (another account's, a deleted one, or not an id at all)."""
    try:
        wanted, unknown = ids_not_owned(model, account_id=account_id, ids=ids)
    except (TypeError, ValueError):
        unknown = ["not an id"]
    if unknown:
        raise SequenceInvalid(f"Choose {what} of this account only.")
    return wanted


def _own_segment_ids(*, account_id: int, ids: list[int]) -> list[int]:
    return own_ids(Segment, account_id=account_id, ids=ids, what="segments")


def sequence_update(
    *,
    sequence: Sequence,
    name: str,
    send_days: list[int],
    send_hour: int,
    time_zone: str,
    subscriber_time_zone: bool = False,
    repeat: bool = False,
    hold: bool = False,
    exclude_tag_ids: list[int] = (),
    exclude_segment_ids: list[int] = (),
    exclude_sequence_ids: list[int] = (),
) -> Sequence:
    """Saves the settings; SequenceInvalid (nothing saved) for a bad value or another account's
    tag, segment or sequence. Waiting subscribers are looked at again where their next email
    may now be due sooner; when an evergreen sequence stops holding, those it held at its end
    are looked at again (and complete)."""
    from subscribers.models import Tag

    name = name.strip()
    if not name:
        raise SequenceInvalid("Give the sequence a name.")
    if not 0 <= int(send_hour) <= 23:
        raise SequenceInvalid("The send hour must be between 0 and 23.")
    days = sorted({int(day) for day in send_days})
    if any(day not in range(7) for day in days):
        raise SequenceInvalid("Send days are Monday to Sunday.")
    if zone_named(time_zone) is None:
        raise SequenceInvalid(f"“{time_zone}” is not a time zone name such as Europe/Paris.")
    account_id = sequence.account_id
    values = {
        "name": name[:255],
        "send_days": days,
        "send_hour": int(send_hour),
        "time_zone": time_zone,
        "subscriber_time_zone": bool(subscriber_time_zone),
        "repeat": bool(repeat),
        "hold": bool(hold),
        "exclude_tag_ids": own_ids(Tag, account_id=account_id, ids=exclude_tag_ids, what="tags"),
        "exclude_segment_ids": _own_segment_ids(account_id=account_id, ids=exclude_segment_ids),
        "exclude_sequence_ids": [
            pk
            for pk in own_ids(
                Sequence, account_id=account_id, ids=exclude_sequence_ids, what="sequences"
            )
            if pk != sequence.pk
        ],
    }
    with transaction.atomic():
        released = sequence.hold and not values["hold"]
        Sequence.objects.filter(pk=sequence.pk).update(**values, updated_at=timezone.now())
        for key, value in values.items():
            setattr(sequence, key, value)
        subscriptions_due_lower(sequence=sequence)
        if released:
            # Due since they passed their last email: the scheduler's next pass completes them.
            Subscription.objects.filter(
                sequence=sequence, state=SubState.ACTIVE, next_due_at__isnull=True
            ).update(next_due_at=F("anchor_at"))
        _messages_sync(sequence)
    return sequence


def sequence_pause(*, sequence: Sequence) -> bool:
    """Holds everyone where they are; emails already handed to the send queue wait too."""
    with transaction.atomic():
        changed = Sequence.objects.filter(pk=sequence.pk, state=Sequence.State.ACTIVE).update(
            state=Sequence.State.PAUSED, updated_at=timezone.now()
        )
        sequence.state = Sequence.State.PAUSED
        _messages_sync(sequence)
    return bool(changed)


def sequence_resume(*, sequence: Sequence) -> bool:
    """Everyone goes on from where they were held."""
    with transaction.atomic():
        changed = Sequence.objects.filter(pk=sequence.pk, state=Sequence.State.PAUSED).update(
            state=Sequence.State.ACTIVE, updated_at=timezone.now()
        )
        sequence.state = Sequence.State.ACTIVE
        _messages_sync(sequence)
    return bool(changed)


def _messages_sync(sequence: Sequence) -> None:
    """Each email's message state follows the email and the sequence (module docstring); the
    waiting deliveries of a message that starts sending again are published after commit."""
    running = sequence.is_running
    emails = list(SequenceEmail.objects.filter(sequence=sequence).select_related("message"))
    for email in emails:
        message = email.message
        if email.is_live and running:
            wanted = Broadcast.State.SENDING
        elif email.is_live:
            wanted = Broadcast.State.PAUSED
        elif message.frozen_html:
            # Unpublished or deleted once published: what a send task holds for it is handed
            # back cancelled, and the sweeper cancels what comes back to the queue later.
            wanted = Broadcast.State.CANCELLED
        else:
            wanted = Broadcast.State.DRAFT
        if message.state != wanted:
            Broadcast.objects.filter(pk=message.pk).update(
                state=wanted, progressed_at=timezone.now(), updated_at=timezone.now()
            )
            message.state = wanted
            if wanted == Broadcast.State.SENDING:
                message_id = message.pk
                transaction.on_commit(lambda pk=message_id: batches_publish(broadcast_id=pk))
        if not email.is_live:
            deliveries_cancel(broadcast_id=message.pk)


def subscriptions_due_lower(*, sequence: Sequence) -> int:
    """After an edit that may make a waiting subscriber's next email due sooner (an email
    inserted, published or given a shorter delay; other send days, hour or zone), lowers their
    next_due_at to the earliest their next email could now be due, so the scheduler looks at
    them in time and moves them to the exact time. That earliest time is the anchor plus the
    delay for hours; for days, the anchor plus the delay less 48 hours (the send hour on the
    delay's day can be up to a day before the anchor's time of day, plus a zone's offset). Touches only the
    rows it lowers; returns how many.

    An edit calls it before it writes any email's message row: a scheduler's batch holds its
    subscriptions and then writes their messages (counts), so an edit taking the two in the
    other order could deadlock with it, and PostgreSQL would fail one of them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH live AS (
                SELECT sort_key, CASE WHEN delay_unit = %(hours)s
                    THEN make_interval(hours => delay_amount)
                    ELSE make_interval(days => delay_amount) - interval '48 hours' END AS soonest
                FROM {SequenceEmail._meta.db_table}
                WHERE sequence_id = %(sequence)s AND published AND deleted_at IS NULL
            ), lowered AS (
                SELECT sub.id, sub.anchor_at + (
                    SELECT soonest FROM live
                    WHERE live.sort_key > coalesce(sub.position_key, '-Infinity'::float8)
                    ORDER BY live.sort_key LIMIT 1) AS soonest
                FROM {Subscription._meta.db_table} sub
                WHERE sub.sequence_id = %(sequence)s AND sub.state = %(active)s
            )
            UPDATE {Subscription._meta.db_table} sub SET next_due_at = lowered.soonest
            FROM lowered
            WHERE sub.id = lowered.id AND lowered.soonest IS NOT NULL
              AND (sub.next_due_at IS NULL OR sub.next_due_at > lowered.soonest)
            """,
            {"hours": HOURS, "sequence": sequence.pk, "active": int(SubState.ACTIVE)},
        )
        return cursor.rowcount


# Emails --------------------------------------------------------------------------------------


def email_create(
    *,
    sequence: Sequence,
    after: SequenceEmail | None = None,
    first: bool = False,
    body_format: str = Broadcast.BodyFormat.MARKDOWN,
) -> SequenceEmail:
    """A new draft email: at the end, right after `after`, or before all others (`first`).
    The first email of a sequence is immediate; later ones default to a day's delay."""
    with transaction.atomic():
        Sequence.objects.select_for_update().filter(pk=sequence.pk).first()
        siblings = SequenceEmail.objects.filter(sequence=sequence)
        if first or (after is None and not siblings.exists()):
            lowest = siblings.aggregate(Min("sort_key"))["sort_key__min"]
            sort_key = KEY_STEP if lowest is None else lowest - KEY_STEP
        elif after is None:
            sort_key = siblings.aggregate(Max("sort_key"))["sort_key__max"] + KEY_STEP
        else:
            following = (
                siblings.filter(sort_key__gt=after.sort_key)
                .order_by("sort_key")
                .values_list("sort_key", flat=True)
                .first()
            )
            sort_key = (
                after.sort_key + KEY_STEP
                if following is None
                else ((after.sort_key + following) / 2)
            )
            if sort_key in (after.sort_key, following):
                raise SequenceInvalid("No room left between these two emails; move one first.")
        is_first = not siblings.filter(sort_key__lt=sort_key).exists()
        message = Broadcast.objects.create(
            account_id=sequence.account_id,
            kind=Broadcast.Kind.SEQUENCE_EMAIL,
            body_format=body_format,
            email_template=sequence.account.default_email_template,
            # Never fanned out: its deliveries come from the scheduler, one by one.
            fanned_out_at=timezone.now(),
        )
        return SequenceEmail.objects.create(
            account_id=sequence.account_id,
            sequence=sequence,
            message=message,
            sort_key=sort_key,
            delay_amount=0 if is_first else 1,
            delay_unit=DAYS,
        )


@dataclass(frozen=True)
class EmailValues:
    subject: str
    preview_text: str
    body: str
    body_format: str
    delay_amount: int
    delay_unit: str
    send_days: list[int] | None = None
    # A design's key (content.email_templates); None keeps the email's.
    email_template: str | None = None


def _timing_check(values: EmailValues) -> None:
    if values.delay_unit not in (DAYS, HOURS):
        raise SequenceInvalid("The delay is in days or hours.")
    limit = MAX_DELAY_DAYS if values.delay_unit == DAYS else MAX_DELAY_DAYS * 24
    if not 0 <= values.delay_amount <= limit:
        raise SequenceInvalid(
            f"The delay must be between 0 and {limit:,} {values.delay_unit} "
            f"({MAX_DELAY_DAYS} days)."
        )
    if values.send_days is not None and (
        not values.send_days or any(day not in range(7) for day in values.send_days)
    ):
        raise SequenceInvalid("Choose at least one send day, Monday to Sunday, or the sequence's.")


def email_problems(email: SequenceEmail) -> list[str]:
    """Why the email cannot be published as it is, in the creator's words ([] when it can)."""
    return content_problems(message=email.message)


def _freeze(email: SequenceEmail) -> None:
    try:
        message_freeze(message=email.message)
    except RenderFailed as failed:
        raise SequenceInvalid(str(failed)) from None


def email_update(*, email: SequenceEmail, values: EmailValues) -> SequenceEmail:
    """Saves the email; a published one must stay publishable (SequenceInvalid, nothing saved)
    and is frozen again, so the next message sent is the edited one."""
    _timing_check(values)
    message = email.message
    with transaction.atomic():
        if values.email_template is not None:
            message.email_template = values.email_template
        for name in ("subject", "preview_text", "body", "body_format"):
            setattr(message, name, getattr(values, name))
        if email.published:
            problems = email_problems(email)
            if problems:
                raise SequenceInvalid(" ".join(problems))
        email.delay_amount, email.delay_unit = values.delay_amount, values.delay_unit
        email.send_days = sorted(set(values.send_days)) if values.send_days else None
        email.save(update_fields=["delay_amount", "delay_unit", "send_days", "updated_at"])
        if email.published:
            subscriptions_due_lower(sequence=email.sequence)
        Broadcast.objects.filter(pk=message.pk).update(
            subject=values.subject,
            preview_text=values.preview_text,
            body=values.body,
            body_format=values.body_format,
            email_template=message.email_template,
            updated_at=timezone.now(),
        )
        if email.published:
            _freeze(email)
    return email


def email_content_update(
    *,
    email: SequenceEmail,
    subject: str,
    preview_text: str,
    body: str,
    body_format: str,
    email_template: str,
) -> None:
    """Saves a draft email's content only (the editor's autosave); SequenceInvalid when it is
    published, whose edits change what subscribers get and are saved with Save. The UPDATE is
    conditional, so an autosave racing a Publish never changes a published email."""
    values = {
        "subject": subject,
        "preview_text": preview_text,
        "body": body,
        "body_format": body_format,
        "email_template": email_template,
    }
    updated = Broadcast.objects.filter(
        pk=email.message_id, sequence_email__published=False, sequence_email__deleted_at=None
    ).update(**values, updated_at=timezone.now())
    if not updated:
        raise SequenceInvalid("this email is published: press Save to update it.")
    for name, value in values.items():
        setattr(email.message, name, value)


def email_publish(*, email: SequenceEmail) -> None:
    """Publishes the email: SequenceInvalid with every problem when it cannot be sent."""
    if email.deleted_at is not None:
        raise SequenceInvalid("This email was deleted.")
    problems = email_problems(email)
    if problems:
        raise SequenceInvalid(" ".join(problems), problems=problems)
    with transaction.atomic():
        SequenceEmail.objects.filter(pk=email.pk).update(published=True, updated_at=timezone.now())
        email.published = True
        subscriptions_due_lower(sequence=email.sequence)
        _freeze(email)
        _messages_sync(email.sequence)


def email_unpublish(*, email: SequenceEmail) -> None:
    """Back to draft: skipped from now on; whoever waited for it moves on to the next email."""
    with transaction.atomic():
        SequenceEmail.objects.filter(pk=email.pk).update(published=False, updated_at=timezone.now())
        email.published = False
        subscriptions_due_lower(sequence=email.sequence)
        _messages_sync(email.sequence)


def email_delete(*, email: SequenceEmail) -> None:
    """Deletes the email from the sequence (its reports stay); whoever waited for it moves on."""
    with transaction.atomic():
        now = timezone.now()
        SequenceEmail.objects.filter(pk=email.pk).update(
            published=False, deleted_at=now, updated_at=now
        )
        email.published, email.deleted_at = False, now
        subscriptions_due_lower(sequence=email.sequence)
        _messages_sync(email.sequence)


def email_move(*, email: SequenceEmail, up: bool) -> None:
    """Moves the email one place up or down: it takes a new key between its new neighbours
    (keys are never reused), so nobody who passed its old place gets it again."""
    with transaction.atomic():
        Sequence.objects.select_for_update().filter(pk=email.sequence_id).first()
        keys = list(
            SequenceEmail.objects.filter(sequence_id=email.sequence_id, deleted_at__isnull=True)
            .order_by("sort_key")
            .values_list("sort_key", flat=True)
        )
        index = keys.index(email.sort_key)
        if up and index == 0 or not up and index == len(keys) - 1:
            return
        if up:
            low = keys[index - 2] if index >= 2 else keys[index - 1] - 2 * KEY_STEP
            high = keys[index - 1]
        else:
            low = keys[index + 1]
            high = keys[index + 2] if index + 2 < len(keys) else keys[index + 1] + 2 * KEY_STEP
        new_key = (low + high) / 2
        if new_key in (low, high):
            raise SequenceInvalid("No room left to move this email there.")
        SequenceEmail.objects.filter(pk=email.pk).update(
            sort_key=new_key, updated_at=timezone.now()
        )
        email.sort_key = new_key
        subscriptions_due_lower(sequence=email.sequence)


# Subscribers ---------------------------------------------------------------------------------


@dataclass
class EnrolResult:
    added: int = 0  # new, or back after being removed or stopped
    restarted: int = 0  # completed a repeating sequence: at its first email again
    refused: int = 0  # suppressed (unsubscribed, bounced, complained), or already in it


def _enrol_sql(sequence: Sequence, source_sql: str) -> str:
    """INSERT ... SELECT of the subscribers `source_sql` (SELECT id ...) names, as the
    sequence's subscriptions: new ones start before the first email (the active due at once,
    the unconfirmed waiting for their confirmation); removed or stopped ones go on from where
    they were; completed ones start again at the first email in a repeating sequence. Nobody
    suppressed is added; nobody in it already is moved. The same statement records a
    sequence_subscribed event for each active subscriber added or restarted (the unconfirmed
    get theirs when they confirm: subscriptions_confirmed)."""
    table = Subscription._meta.db_table
    events = events_insert_sql(
        kind=EventKind.SEQUENCE_SUBSCRIBED,
        rows_sql="""
            SELECT %(account)s::bigint, %(sequence)s::bigint, subscriber_id, ''
            FROM upserted WHERE state = %(active)s
        """,
    )
    return f"""
        WITH upserted AS (
            INSERT INTO {table} AS sub
                (account_id, sequence_id, subscriber_id, state, round, position_key, sent_count,
                 anchor_at, next_due_at, subscribed_at)
            SELECT %(account)s, %(sequence)s, s.id,
                   CASE WHEN s.state = %(active_subscriber)s THEN %(active)s
                        ELSE %(unconfirmed)s END,
                   0, NULL, 0, %(now)s,
                   CASE WHEN s.state = %(active_subscriber)s THEN %(now)s::timestamptz END,
                   %(now)s
            FROM {Subscriber._meta.db_table} s
            WHERE s.id IN ({source_sql}) AND s.account_id = %(account)s
              AND s.state IN (%(active_subscriber)s, %(unconfirmed_subscriber)s)
            ORDER BY s.id
            ON CONFLICT (sequence_id, subscriber_id) DO UPDATE SET
                state = EXCLUDED.state,
                round = CASE WHEN sub.state = %(completed)s THEN sub.round + 1 ELSE sub.round END,
                position_key = CASE WHEN sub.state = %(completed)s THEN NULL
                                    ELSE sub.position_key END,
                sent_count = CASE WHEN sub.state = %(completed)s THEN 0 ELSE sub.sent_count END,
                anchor_at = EXCLUDED.anchor_at,
                next_due_at = EXCLUDED.next_due_at,
                subscribed_at = CASE WHEN sub.state = %(completed)s THEN EXCLUDED.subscribed_at
                                     ELSE sub.subscribed_at END,
                completed_at = NULL
            WHERE sub.state IN (%(removed)s, %(stopped)s)
               OR (sub.state = %(completed)s AND %(repeat)s)
            RETURNING (xmax = 0) AS inserted, sub.subscribed_at = %(now)s AS fresh,
                      sub.subscriber_id, sub.state
        ), events AS ({events})
        SELECT count(*) FILTER (WHERE inserted OR NOT fresh),
               count(*) FILTER (WHERE NOT inserted AND fresh)
        FROM upserted
    """


def _enrol_params(sequence: Sequence, now: datetime) -> dict:
    return {
        "account": sequence.account_id,
        "sequence": sequence.pk,
        "now": now,
        "repeat": sequence.repeat,
        "active_subscriber": Subscriber.State.ACTIVE,
        "unconfirmed_subscriber": Subscriber.State.UNCONFIRMED,
        "active": int(SubState.ACTIVE),
        "unconfirmed": int(SubState.UNCONFIRMED),
        "completed": int(SubState.COMPLETED),
        "removed": int(SubState.REMOVED),
        "stopped": int(SubState.STOPPED),
    }


def subscribers_enrol(
    *,
    sequence: Sequence,
    source_sql: str,
    source_params: dict,
    now: datetime | None = None,
    total: int | None = None,
) -> EnrolResult:
    """Adds every subscriber of the account that `source_sql` (a SELECT of subscriber ids,
    with %(name)s parameters) names, in one statement: how a bulk action, an import or the
    command add thousands at once. `total`, when known, counts the refused."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _enrol_sql(sequence, source_sql), {**source_params, **_enrol_params(sequence, now)}
        )
        added, restarted = cursor.fetchone()
    refused = max(0, (total or 0) - added - restarted)
    return EnrolResult(added=added, restarted=restarted, refused=refused)


def subscriber_enrol(
    *, sequence: Sequence, subscriber: Subscriber, now: datetime | None = None
) -> EnrolResult:
    """Adds one subscriber (the subscriber page, a form, a tag); SubscribeRefused, with the
    reason, for a suppressed subscriber or another account's."""
    if subscriber.account_id != sequence.account_id:
        raise SubscribeRefused("That subscriber belongs to another account.")
    if subscriber.is_suppressed:
        raise SubscribeRefused(
            f"{subscriber.email} is {subscriber.get_state_display().lower()}: "
            "they cannot be added to a sequence."
        )
    return subscribers_enrol(
        sequence=sequence,
        source_sql="SELECT %(enrol_subscriber)s",
        source_params={"enrol_subscriber": subscriber.pk},
        now=now,
        total=1,
    )


def subscription_remove(*, sequence: Sequence, subscriber_id: int) -> bool:
    """Takes the subscriber out of the sequence (subscriptions_remove)."""
    return bool(subscriptions_remove(sequence=sequence, subscriber_ids=[subscriber_id]))


def subscriptions_remove(*, sequence: Sequence, subscriber_ids: list[int]) -> list[int]:
    """Takes the subscribers out of the sequence: nothing more is sent to them from it, not even
    an email already handed to the send queue (cancelled, and counted on its message). Returns
    those who were in it."""
    if not subscriber_ids:
        return []
    with transaction.atomic():
        removed = list(
            Subscription.objects.filter(
                sequence=sequence,
                subscriber_id__in=list(subscriber_ids),
                state__in=[SubState.ACTIVE, SubState.UNCONFIRMED],
            )
            .order_by("id")
            .values_list("subscriber_id", flat=True)
        )
        if removed:
            Subscription.objects.filter(sequence=sequence, subscriber_id__in=removed).update(
                state=SubState.REMOVED, next_due_at=None
            )
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    WITH moved AS (
                        UPDATE {Delivery._meta.db_table} SET state = %(cancelled)s
                        WHERE subscriber_id = ANY(%(subscribers)s::bigint[])
                          AND state = %(queued)s
                          AND broadcast_id IN (SELECT message_id
                                               FROM {SequenceEmail._meta.db_table}
                                               WHERE sequence_id = %(sequence)s)
                        RETURNING broadcast_id
                    )
                    UPDATE {Broadcast._meta.db_table} b
                    SET cancelled_count = b.cancelled_count + moved.n
                    FROM (SELECT broadcast_id, count(*) AS n FROM moved GROUP BY 1) moved
                    WHERE b.id = moved.broadcast_id
                    """,
                    {
                        "cancelled": int(Delivery.State.CANCELLED),
                        "queued": int(Delivery.State.QUEUED),
                        "subscribers": removed,
                        "sequence": sequence.pk,
                    },
                )
    return removed


def subscriptions_confirmed(*, subscriber_id: int, now: datetime | None = None) -> int:
    """A subscriber confirmed their address: the sequences they were waiting for start now,
    each with its sequence_subscribed event; returns how many."""
    now = now or timezone.now()
    events = events_insert_sql(
        kind=EventKind.SEQUENCE_SUBSCRIBED,
        rows_sql="SELECT account_id, sequence_id, subscriber_id, '' FROM confirmed",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH confirmed AS (
                UPDATE {Subscription._meta.db_table}
                SET state = %(active)s, anchor_at = %(now)s, next_due_at = %(now)s
                WHERE subscriber_id = %(subscriber)s AND state = %(unconfirmed)s
                RETURNING account_id, sequence_id, subscriber_id
            ), events AS ({events})
            SELECT count(*) FROM confirmed
            """,
            {
                "active": int(SubState.ACTIVE),
                "unconfirmed": int(SubState.UNCONFIRMED),
                "now": now,
                "subscriber": subscriber_id,
            },
        )
        return cursor.fetchone()[0]
