"""Every write a creator makes to a broadcast: edit, schedule, send, pause, resume, cancel, and
the choice about deliveries whose outcome is unknown."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from broadcasts import tasks
from broadcasts.audience import audience_count
from broadcasts.models import Broadcast, Delivery
from broadcasts.rendering import RenderFailed, broadcast_problems, frozen_parts
from convertkit.models import Account
from convertkit.services import account_public_slug_ensure
from subscribers.models import Subscriber
from tracking.links import links_create, links_store

logger = logging.getLogger(__name__)


class BroadcastNotEditable(Exception):
    """Only drafts and scheduled broadcasts can change."""


class SendRefused(Exception):
    """The broadcast cannot be sent (or scheduled) as it is; the message says why, for the
    creator."""


class ResendRefused(Exception):
    """Only a sent broadcast can be resent to those who did not open it (and only a broadcast
    that has not been cancelled can send its unknown deliveries again); the message says why,
    for the creator."""


def broadcast_create(
    *, account: Account, body_format: str = Broadcast.BodyFormat.MARKDOWN
) -> Broadcast:
    return Broadcast.objects.create(
        account=account, body_format=body_format, email_template=account.default_email_template
    )


def broadcast_update(
    *,
    broadcast: Broadcast,
    subject: str,
    preview_text: str,
    body: str,
    body_format: str,
    include_tag_ids: list[int],
    include_match: str,
    exclude_tag_ids: list[int],
    engagement: str = Broadcast.Engagement.ANYONE,
    engagement_days: int | None = None,
    not_opened_broadcast_id: int | None = None,
    segment_id: int | None = None,
    description: str = "",
    public: bool = False,
    email_template: str | None = None,
) -> Broadcast:
    """Saves the creator's edits; BroadcastNotEditable once sending has started. `email_template`
    (a design's key, checked by EmailForm against the account's) is kept when None."""
    values = {
        "description": description,
        "subject": subject,
        "preview_text": preview_text,
        "body": body,
        "body_format": body_format,
        "include_tag_ids": sorted(set(include_tag_ids)),
        "include_match": include_match,
        "exclude_tag_ids": sorted(set(exclude_tag_ids)),
        "engagement": engagement,
        "engagement_days": engagement_days if engagement else None,
        "not_opened_broadcast_id": not_opened_broadcast_id,
        "segment_id": segment_id,
        "public": public,
    }
    if email_template is not None:
        values["email_template"] = email_template
    _editable_update(broadcast, values)
    if public:
        account_public_slug_ensure(account=broadcast.account)
    return broadcast


def broadcast_content_update(
    *,
    broadcast: Broadcast,
    subject: str,
    preview_text: str,
    body: str,
    body_format: str,
    email_template: str,
    description: str = "",
) -> Broadcast:
    """Saves the email's content only (the editor's autosave): never its audience or schedule;
    BroadcastNotEditable once sending has started."""
    values = {
        "description": description,
        "subject": subject,
        "preview_text": preview_text,
        "body": body,
        "body_format": body_format,
        "email_template": email_template,
    }
    return _editable_update(broadcast, values)


def _editable_update(broadcast: Broadcast, values: dict) -> Broadcast:
    """`values` written to the broadcast while it is a draft or scheduled, else
    BroadcastNotEditable: the conditional UPDATE decides, so an edit racing a Send never
    changes what is being sent."""
    # A refusal noted when a schedule fired no longer applies to the edited broadcast.
    values = {**values, "paused_reason": ""}
    updated = Broadcast.objects.filter(pk=broadcast.pk, state__in=Broadcast.EDITABLE_STATES).update(
        **values, updated_at=timezone.now()
    )
    if not updated:
        raise BroadcastNotEditable(f"Broadcast {broadcast.pk} is {broadcast.state}")
    for name, value in values.items():
        setattr(broadcast, name, value)
    return broadcast


def broadcast_publish(*, broadcast: Broadcast, public: bool) -> None:
    """Shows the broadcast in the account's public archive (once it has been sent), or takes it
    out; whatever its state. Publishing gives the account its public handle if it has none."""
    Broadcast.objects.filter(pk=broadcast.pk).update(public=public, updated_at=timezone.now())
    broadcast.public = public
    if public:
        account_public_slug_ensure(account=broadcast.account)


def broadcast_resend_unopened(*, broadcast: Broadcast) -> Broadcast:
    """A new draft for those who were sent `broadcast` and have not opened it: the same
    subject (the creator may change it before sending), preview text, body, tags and segment,
    with "did not open" this broadcast. ResendRefused unless the broadcast is sent."""
    if broadcast.state != Broadcast.State.SENT:
        raise ResendRefused(
            "Only a sent broadcast can be resent to those who did not open it; this one is "
            f"{broadcast.get_state_display().lower()}."
        )
    return Broadcast.objects.create(
        account_id=broadcast.account_id,
        subject=broadcast.subject,
        preview_text=broadcast.preview_text,
        body=broadcast.body,
        body_format=broadcast.body_format,
        email_template=broadcast.email_template,
        include_tag_ids=broadcast.include_tag_ids,
        include_match=broadcast.include_match,
        exclude_tag_ids=broadcast.exclude_tag_ids,
        segment_id=broadcast.segment_id,
        not_opened_broadcast_id=broadcast.pk,
    )


def broadcast_delete(*, broadcast: Broadcast) -> None:
    """Deletes a draft or scheduled broadcast (one that never started sending)."""
    deleted, _ = Broadcast.objects.filter(
        pk=broadcast.pk, state__in=Broadcast.EDITABLE_STATES
    ).delete()
    if not deleted:
        raise BroadcastNotEditable(f"Broadcast {broadcast.pk} is {broadcast.state}")


def content_problems(*, message: Broadcast) -> list[str]:
    """Why the email (a broadcast, or a sequence email's message) cannot go out as written, in
    the creator's words ([] when it can): a postal address, a subject, a body, and Liquid that
    renders (line-numbered)."""
    problems = []
    if not message.account.postal_address.strip():
        problems.append(
            "Add your postal address in Settings first: the law (CAN-SPAM) requires it in "
            "every email."
        )
    if not message.subject.strip():
        problems.append("Write a subject.")
    if not message.body.strip():
        problems.append("Write the email's body.")
    for problem in broadcast_problems(message):
        where = f" (line {problem.line})" if problem.line else ""
        problems.append(f"{problem.part.replace('_', ' ').capitalize()}{where}: {problem.message}")
    return problems


def message_freeze(*, message: Broadcast) -> None:
    """Freezes a message that goes out again and again (a sequence email's, an automation
    email's) for the pipeline, after an edit: what every worker renders from, with its links at
    stable positions (links_store), so a send task still holding the previous version tracks each
    link to the right URL. RenderFailed when it cannot render (content_problems says why first).
    Call it in the transaction that saves the content."""
    frozen = frozen_parts(message)
    Broadcast.objects.select_for_update().filter(pk=message.pk).first()
    frozen = links_store(broadcast=message, frozen=frozen)
    Broadcast.objects.filter(pk=message.pk).update(
        frozen_subject=frozen.subject,
        frozen_html=frozen.html,
        frozen_text=frozen.text,
        updated_at=timezone.now(),
    )
    message.frozen_subject, message.frozen_html, message.frozen_text = frozen[:3]


def live_messages_refreeze(*, account_id: int, affected: Callable[[Broadcast], bool]) -> list[int]:
    """Freezes again the account's messages that go out again and again and are live (sequence
    and automation emails frozen for the pipeline, not cancelled) for which `affected(message)`
    holds: a change around their content (a snippet they show, their template) reaches the next
    copy sent, as it reaches a broadcast not sent yet. One that no longer renders keeps its
    frozen version, logged (its editor lists why). Returns the ids frozen again. Call it in the
    transaction of the change."""
    messages = (
        Broadcast.objects.filter(
            account_id=account_id,
            kind__in=[Broadcast.Kind.SEQUENCE_EMAIL, Broadcast.Kind.AUTOMATION_EMAIL],
        )
        .exclude(frozen_html="")
        .exclude(state=Broadcast.State.CANCELLED)
        .select_related("account")
        .order_by("id")
    )
    refrozen = []
    for message in messages:
        if not affected(message):
            continue
        try:
            with transaction.atomic():
                message_freeze(message=message)
        except RenderFailed as failed:
            logger.warning("Message %s kept its frozen version: %s", message.pk, failed)
            continue
        refrozen.append(message.pk)
    return refrozen


def send_problems(*, broadcast: Broadcast, recipient_count: int | None = None) -> list[str]:
    """Why the broadcast cannot be sent now, in the creator's words; [] when it can: its
    content_problems, or nobody in its audience. `recipient_count`, when the caller has just
    counted the audience, saves counting it again."""
    problems = content_problems(message=broadcast)
    if recipient_count is None and not problems:
        recipient_count = audience_count(audience=broadcast)
    if not problems and recipient_count == 0:
        problems.append(
            "Nobody is in the audience: no active subscriber matches these tags and filters."
        )
    return problems


def broadcast_schedule(*, broadcast: Broadcast, at: datetime) -> None:
    """Schedules the broadcast; SendRefused for a time in the past or an unsendable broadcast."""
    if at <= timezone.now():
        raise SendRefused("Choose a time in the future.")
    problems = send_problems(broadcast=broadcast)
    if problems:
        raise SendRefused(" ".join(problems))
    updated = Broadcast.objects.filter(pk=broadcast.pk, state__in=Broadcast.EDITABLE_STATES).update(
        state=Broadcast.State.SCHEDULED, scheduled_at=at, updated_at=timezone.now()
    )
    if not updated:
        raise BroadcastNotEditable(f"Broadcast {broadcast.pk} is {broadcast.state}")
    broadcast.state, broadcast.scheduled_at = Broadcast.State.SCHEDULED, at


def broadcast_unschedule(*, broadcast: Broadcast) -> bool:
    """Back to draft, unless the schedule already fired; returns whether it changed."""
    updated = Broadcast.objects.filter(pk=broadcast.pk, state=Broadcast.State.SCHEDULED).update(
        state=Broadcast.State.DRAFT, scheduled_at=None, updated_at=timezone.now()
    )
    if updated:
        broadcast.state, broadcast.scheduled_at = Broadcast.State.DRAFT, None
    return bool(updated)


def broadcast_send(*, broadcast: Broadcast) -> bool:
    """Starts sending now: freezes what every worker will render (and stores its tracked links,
    in the same transaction), moves the broadcast to sending and queues the fan-out. A broadcast
    already sending (a second click, a second beat
    process) is left alone: returns whether this call started it. SendRefused when it cannot
    be sent."""
    if broadcast.state not in Broadcast.EDITABLE_STATES:
        if broadcast.state in (Broadcast.State.SENDING, Broadcast.State.SENT):
            return False
        raise SendRefused(f"A {broadcast.get_state_display().lower()} broadcast cannot be sent.")
    problems = send_problems(broadcast=broadcast)
    if problems:
        raise SendRefused(" ".join(problems))
    try:
        frozen = frozen_parts(broadcast)
    except RenderFailed as failed:
        raise SendRefused(str(failed)) from None
    now = timezone.now()
    with transaction.atomic():
        started = Broadcast.objects.filter(
            pk=broadcast.pk, state__in=Broadcast.EDITABLE_STATES
        ).update(
            state=Broadcast.State.SENDING,
            paused_reason="",
            frozen_subject=frozen.subject,
            frozen_html=frozen.html,
            frozen_text=frozen.text,
            send_started_at=now,
            progressed_at=now,
            updated_at=now,
        )
        if started:
            links_create(broadcast=broadcast, urls=frozen.links)
            tasks.fan_out.delay_on_commit(broadcast.pk)
    broadcast.refresh_from_db()
    return bool(started)


def broadcasts_due_send(*, now: datetime | None = None) -> list[int]:
    """Starts every scheduled broadcast whose time has come. Each is moved to sending by the
    conditional UPDATE inside broadcast_send, so two beat processes never send one twice."""
    due = Broadcast.objects.filter(
        state=Broadcast.State.SCHEDULED, scheduled_at__lte=now or timezone.now()
    ).select_related("account")
    started = []
    for broadcast in due:
        try:
            if broadcast_send(broadcast=broadcast):
                started.append(broadcast.pk)
        except SendRefused as refused:
            # Something changed since scheduling (the postal address was removed, every tag
            # deleted): back to draft, with the reason, rather than retrying every minute.
            Broadcast.objects.filter(pk=broadcast.pk, state=Broadcast.State.SCHEDULED).update(
                state=Broadcast.State.DRAFT, paused_reason=str(refused)[:500]
            )
            logger.warning("Scheduled broadcast %s not sent: %s", broadcast.pk, refused)
        except Exception:
            # Whatever one broadcast trips over must not keep the others due now from starting;
            # it stays scheduled and is tried again at the next run.
            logger.exception("Scheduled broadcast %s could not be started", broadcast.pk)
    return started


def broadcast_pause(*, broadcast: Broadcast, reason: str = "") -> bool:
    """Pauses a sending broadcast: send tasks stop between batches, handing back what they had
    not sent. Returns whether it changed."""
    updated = Broadcast.objects.filter(pk=broadcast.pk, state=Broadcast.State.SENDING).update(
        state=Broadcast.State.PAUSED, paused_reason=reason[:500], updated_at=timezone.now()
    )
    broadcast.refresh_from_db()
    return bool(updated)


def broadcast_resume(*, broadcast: Broadcast) -> bool:
    """Resumes a paused broadcast: the deliveries still queued get send tasks again."""
    now = timezone.now()
    with transaction.atomic():
        updated = Broadcast.objects.filter(pk=broadcast.pk, state=Broadcast.State.PAUSED).update(
            state=Broadcast.State.SENDING, paused_reason="", progressed_at=now, updated_at=now
        )
        if updated:
            # fan_out publishes the batches of whatever is still queued (and snapshots the
            # audience first if the pause came before it had).
            tasks.fan_out.delay_on_commit(broadcast.pk)
    broadcast.refresh_from_db()
    return bool(updated)


def broadcast_cancel(*, broadcast: Broadcast) -> bool:
    """Cancels a scheduled, sending or paused broadcast: nothing more goes out. Deliveries not
    yet sent are marked cancelled by a task (there may be a million)."""
    with transaction.atomic():
        updated = Broadcast.objects.filter(
            pk=broadcast.pk,
            state__in=[Broadcast.State.SCHEDULED, Broadcast.State.SENDING, Broadcast.State.PAUSED],
        ).update(state=Broadcast.State.CANCELLED, updated_at=timezone.now())
        if updated:
            tasks.cancel_deliveries.delay_on_commit(broadcast.pk)
    broadcast.refresh_from_db()
    return bool(updated)


def broadcast_send_test(
    *, broadcast: Broadcast, to_email: str, subscriber: Subscriber | None = None
) -> None:
    """Queues a test copy of the broadcast as it stands (saved, not frozen) to `to_email`,
    with `subscriber`'s data (sample data when None)."""
    tasks.send_test.delay_on_commit(broadcast.pk, to_email, subscriber.pk if subscriber else None)


def unknown_deliveries(*, broadcast: Broadcast, limit: int = 100):
    """Deliveries whose send call was in flight when a worker died: never re-sent."""
    return (
        Delivery.objects.filter(broadcast=broadcast, state=Delivery.State.UNKNOWN)
        .select_related("subscriber")
        .order_by("id")[:limit]
    )


def broadcast_unknown_resend(*, broadcast: Broadcast) -> int:
    """The creator's choice to send the unknown deliveries again, knowing that those the mail
    server did accept get a second copy: moves them back to queued and takes them off the unknown
    counter in one statement, records the choice, and publishes their send tasks once it is
    committed. A sent broadcast is sending again until they are done; a paused one sends them on
    resume. Returns how many were queued: 0 for a second click, whose statement finds none left.
    ResendRefused for a cancelled broadcast.

    The broadcast row is locked first, so a pause, cancel or sweep in between waits rather
    than acting on a state this statement is changing."""
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT state FROM broadcasts_broadcast WHERE id = %s FOR UPDATE", [broadcast.pk]
        )
        row = cursor.fetchone()
        if row is None or row[0] not in Broadcast.UNKNOWN_RESEND_STATES:
            broadcast.refresh_from_db()
            raise ResendRefused(
                f"A {broadcast.get_state_display().lower()} broadcast sends nothing more."
            )
        cursor.execute(
            """
            WITH moved AS (
                UPDATE broadcasts_delivery SET state = %(queued)s, claim = NULL,
                    claimed_at = NULL, not_before = NULL
                WHERE broadcast_id = %(id)s AND state = %(unknown)s
                RETURNING 1
            )
            UPDATE broadcasts_broadcast SET
                unknown_count = unknown_count - (SELECT count(*) FROM moved),
                unknown_resent_count = unknown_resent_count + (SELECT count(*) FROM moved),
                unknown_resent_at = %(now)s,
                unknown_left_count = 0,
                state = CASE WHEN state = %(sent)s THEN %(sending)s ELSE state END,
                sent_at = CASE WHEN state = %(sent)s THEN NULL ELSE sent_at END,
                progressed_at = %(now)s,
                updated_at = %(now)s
            WHERE id = %(id)s AND EXISTS (SELECT 1 FROM moved)
            RETURNING (SELECT count(*) FROM moved), state
            """,
            {
                "id": broadcast.pk,
                "queued": int(Delivery.State.QUEUED),
                "unknown": int(Delivery.State.UNKNOWN),
                "sent": Broadcast.State.SENT,
                "sending": Broadcast.State.SENDING,
                "now": now,
            },
        )
        row = cursor.fetchone()
        queued = row[0] if row else 0
        if queued and row[1] == Broadcast.State.SENDING:
            # fan_out publishes the batches of what is queued, in the background.
            tasks.fan_out.delay_on_commit(broadcast.pk)
    if queued:
        logger.info("Broadcast %s: %s unknown deliveries queued again", broadcast.pk, queued)
    broadcast.refresh_from_db()
    return queued


def broadcast_unknown_leave(*, broadcast: Broadcast) -> bool:
    """The creator's choice to leave the unknown deliveries as they are: the progress page stops
    asking until more become unknown. Returns whether it changed anything."""
    updated = Broadcast.objects.filter(
        pk=broadcast.pk, unknown_count__gt=F("unknown_left_count")
    ).update(unknown_left_count=F("unknown_count"), updated_at=timezone.now())
    broadcast.refresh_from_db()
    return bool(updated)
