"""Bulk actions (tag, untag, add to a sequence, unsubscribe, delete) over a filtered set of
subscribers, as Jobs.

The creator confirms in the page (`bulk_job_create`); a worker runs `bulk_job_run`. The set is
walked by id in batches; each batch is one set-based statement and moves the job's cursor in the
same transaction, so a crash and a re-run redo nothing and the progress bar always tells the truth.
Tagging a batch enrols, in the same statement's transaction, those it newly tagged in the
sequences the tag adds to (sequences.entry).
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from convertkit.models import Job, User
from sequences.entry import subscriber_ids_enrol
from sequences.models import Sequence
from subscribers.models import Subscriber, Suppression, Tag
from subscribers.selectors import (
    SubscriberFilter,
    Total,
    subscriber_batch_ids,
    subscriber_counts,
    subscriber_queryset,
)
from subscribers.services import subscribers_tag, subscribers_unsubscribe, subscribers_untag
from subscribers.tasks import run_bulk_action

logger = logging.getLogger(__name__)

BATCH_SIZE = 5000
SUBSCRIBER_TABLE = Subscriber._meta.db_table
SUPPRESSION_TABLE = Suppression._meta.db_table

KIND_BY_ACTION = {
    "tag": Job.Kind.BULK_TAG,
    "untag": Job.Kind.BULK_UNTAG,
    "sequence": Job.Kind.BULK_SEQUENCE,
    "unsubscribe": Job.Kind.BULK_UNSUBSCRIBE,
    "delete": Job.Kind.BULK_DELETE,
}
BULK_KINDS = tuple(KIND_BY_ACTION.values())


class BulkJobError(Exception):
    """A reason the job cannot go on, in words for the creator."""


def bulk_title(
    *, action: str, total: Total, tag: Tag | None, sequence: Sequence | None = None
) -> str:
    """The job's title, e.g. "Tag 12,345 subscribers with 'vip'"."""
    number = f"{total.count:,}{'+' if total.capped else ''}"
    noun = "subscriber" if total.count == 1 and not total.capped else "subscribers"
    if action == "tag":
        return f"Tag {number} {noun} with '{tag.name}'"
    if action == "untag":
        return f"Remove '{tag.name}' from {number} {noun}"
    if action == "sequence":
        return f"Add {number} {noun} to the sequence '{sequence.name}'"
    if action == "unsubscribe":
        return f"Unsubscribe {number} {noun}"
    return f"Delete {number} {noun}"


def bulk_job_create(
    *,
    account,
    user: User,
    action: str,
    filters: SubscriberFilter,
    tag: Tag | None,
    total: Total,
    sequence: Sequence | None = None,
) -> Job:
    """Records the job and queues it once the transaction commits."""
    job = Job.objects.create(
        account=account,
        created_by=user,
        kind=KIND_BY_ACTION[action],
        title=bulk_title(action=action, total=total, tag=tag, sequence=sequence),
        params={
            **filters.as_params(),
            "target_tag": tag.id if tag else None,
            "target_tag_name": tag.name if tag else "",
            "target_sequence": sequence.id if sequence else None,
            "target_sequence_name": sequence.name if sequence else "",
            "user_email": user.email,
        },
    )
    run_bulk_action.delay_on_commit(job.id)
    return job


def bulk_job_run(*, job_id: int) -> None:
    """Runs a bulk job to the end; safe to call again, concurrently or after a crash.

    1. Claim: a conditional UPDATE moves a queued or running job to running; a finished job is
       left alone, so a second run changes nothing.
    2. On the first run, fix the set: the highest id at that moment bounds the walk (subscribers
       added later are not touched) and its size is the total.
    3. Each batch, in one transaction: lock the job row (a second runner waits, then continues
       from the cursor instead of redoing the batch), read the next BATCH_SIZE ids after the cursor,
       apply the action in one statement, and save the cursor, processed and the counts of
       what it did (affected; or added, restarted and refused for a sequence).
    4. No ids left: done. A reason to stop (the tag or sequence was deleted): failed, with the
       reason.
    """
    claimed = Job.objects.filter(
        pk=job_id, kind__in=BULK_KINDS, state__in=[Job.State.QUEUED, Job.State.RUNNING]
    ).update(state=Job.State.RUNNING)
    if not claimed:
        return
    try:
        _prepare(job_id)
        while _run_batch(job_id):
            pass
    except BulkJobError as error:
        Job.objects.filter(pk=job_id).update(
            state=Job.State.FAILED, message=str(error), finished_at=timezone.now()
        )
    except Exception:
        logger.exception("bulk job %s failed", job_id)
        Job.objects.filter(pk=job_id).update(
            state=Job.State.FAILED,
            message="Something went wrong on our side; no batch was half-done. "
            "Start the action again to finish it.",
            finished_at=timezone.now(),
        )


def _filtered(job: Job):
    return subscriber_queryset(
        account=job.account, filters=SubscriberFilter.from_params(job.params)
    )


def _target_tag(job: Job) -> Tag | None:
    if job.kind not in (Job.Kind.BULK_TAG, Job.Kind.BULK_UNTAG):
        return None
    tag = Tag.objects.filter(account_id=job.account_id, pk=job.params.get("target_tag")).first()
    if tag is None:
        name = job.params.get("target_tag_name") or "?"
        raise BulkJobError(f"The tag '{name}' was deleted, so the job stopped.")
    return tag


def _target_sequence(job: Job) -> Sequence | None:
    if job.kind != Job.Kind.BULK_SEQUENCE:
        return None
    sequence = Sequence.objects.filter(
        account_id=job.account_id, pk=job.params.get("target_sequence")
    ).first()
    if sequence is None:
        name = job.params.get("target_sequence_name") or "?"
        raise BulkJobError(f"The sequence '{name}' was deleted, so the job stopped.")
    return sequence


def _summary_start(job: Job) -> dict[str, int]:
    if job.kind == Job.Kind.BULK_SEQUENCE:
        return {"added": 0, "restarted": 0, "refused": 0}
    return {"affected": 0}


def _prepare(job_id: int) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("account").get(pk=job_id)
        if "max_id" in job.params:
            return
        _target_tag(job)
        _target_sequence(job)
        filtered = _filtered(job)
        max_id = filtered.aggregate(max_id=Max("id"))["max_id"] or 0
        job.params = {**job.params, "max_id": max_id, "cursor": 0}
        job.total = filtered.filter(id__lte=max_id).order_by().count()
        job.started_at = timezone.now()
        job.summary = _summary_start(job)
        job.save(update_fields=["params", "total", "started_at", "summary"])


def _run_batch(job_id: int) -> bool:
    """Applies the next batch; False once the job has ended."""
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("account").get(pk=job_id)
        if job.state != Job.State.RUNNING:
            return False
        tag = _target_tag(job)
        sequence = _target_sequence(job)
        filters = SubscriberFilter.from_params(job.params)
        ids = subscriber_batch_ids(
            account=job.account,
            filters=filters,
            after_id=job.params["cursor"],
            up_to_id=job.params["max_id"],
            limit=BATCH_SIZE,
            counts=subscriber_counts(account=job.account),
            tag=Tag.objects.filter(account_id=job.account_id, pk=filters.tag_id).first()
            if filters.tag_id
            else None,
        )
        summary = {**_summary_start(job), **job.summary}
        if not ids:
            job.state = Job.State.DONE
            job.finished_at = timezone.now()
            job.message = _done_message(job, summary)
            job.save(update_fields=["state", "finished_at", "message"])
            return False
        counts = APPLY[job.kind](job=job, ids=ids, tag=tag, sequence=sequence)
        job.params = {**job.params, "cursor": ids[-1]}
        job.processed += len(ids)
        job.summary = {name: summary[name] + counts.get(name, 0) for name in summary}
        job.save(update_fields=["params", "processed", "summary"])
    return True


def _done_message(job: Job, summary: dict[str, int]) -> str:
    if job.kind == Job.Kind.BULK_SEQUENCE:
        name = job.params.get("target_sequence_name") or "?"
        return (
            f"{summary['added']:,} added to '{name}', {summary['restarted']:,} restarted at its "
            f"first email, {summary['refused']:,} refused (unsubscribed, bounced or complained, "
            "or already in it)"
        )
    affected = summary["affected"]
    verb = {
        Job.Kind.BULK_TAG: "tagged",
        Job.Kind.BULK_UNTAG: "untagged",
        Job.Kind.BULK_UNSUBSCRIBE: "unsubscribed",
        Job.Kind.BULK_DELETE: "deleted",
    }[job.kind]
    noun = "subscriber" if affected == 1 else "subscribers"
    return f"{affected:,} {noun} {verb}"


def _apply_tag(*, job: Job, ids: list[int], tag: Tag, **_) -> dict[str, int]:
    """Tags the batch; those it newly tagged enter the sequences the tag adds to."""
    tagged = subscribers_tag(account_id=job.account_id, tag_id=tag.id, subscriber_ids=ids)
    return {"affected": len(tagged)}


def _apply_sequence(*, job: Job, ids: list[int], sequence: Sequence, **_) -> dict[str, int]:
    result = subscriber_ids_enrol(sequence=sequence, subscriber_ids=ids)
    return {"added": result.added, "restarted": result.restarted, "refused": result.refused}


def _apply_untag(*, job: Job, ids: list[int], tag: Tag, **_) -> dict[str, int]:
    untagged = subscribers_untag(account_id=job.account_id, tag_id=tag.id, subscriber_ids=ids)
    return {"affected": len(untagged)}


def _apply_unsubscribe(*, job: Job, ids: list[int], **_) -> dict[str, int]:
    reason = f"unsubscribed in bulk by {job.params.get('user_email') or 'a team member'}"
    moved = subscribers_unsubscribe(account_id=job.account_id, subscriber_ids=ids, reason=reason)
    return {"affected": len(moved)}


def _apply_delete(*, job: Job, ids: list[int], **_) -> dict[str, int]:
    """Suppression first (the SQL hash is subscribers.models.email_hash, the reason as in
    services.subscriber_delete), then erasure.

    The delete goes through the ORM so that every table referring to a subscriber (taggings,
    history, and those later apps add) is cleared with it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {SUPPRESSION_TABLE} (account_id, email_hash, reason, created_at)
            SELECT account_id, encode(sha256(convert_to(lower(btrim(email)), 'UTF8')), 'hex'),
                   CASE WHEN state = ANY(%s) THEN state ELSE 'deleted' END, now()
            FROM {SUBSCRIBER_TABLE} WHERE account_id = %s AND id = ANY(%s)
            ON CONFLICT (account_id, email_hash) DO NOTHING
            """,
            [list(Suppression.UNMAILABLE_REASONS), job.account_id, ids],
        )
    _, deleted = Subscriber.objects.filter(account_id=job.account_id, id__in=ids).delete()
    return {"affected": deleted.get(Subscriber._meta.label, 0)}


APPLY = {
    Job.Kind.BULK_TAG: _apply_tag,
    Job.Kind.BULK_UNTAG: _apply_untag,
    Job.Kind.BULK_SEQUENCE: _apply_sequence,
    Job.Kind.BULK_UNSUBSCRIBE: _apply_unsubscribe,
    Job.Kind.BULK_DELETE: _apply_delete,
}
