"""Kit's bulk requests (/v4/bulk/...): what each one does to a batch of items, and the Job that
runs a large one in the background and posts its result to the request's callback_url.

A request of at most SYNC_LIMIT items is applied at once and answered (api.bulk); a larger one is
stored as BulkBatch rows of a Job, in one transaction with the check of the account's queued bytes,
and a worker applies the batches one by one (`bulk_job_run`). Each batch is applied and its result
saved in one transaction, so a re-run after a crash redoes nothing; once every batch has a result,
their results are joined into Kit's answer and posted to callback_url (`bulk_callback_post`).

Every item is checked on its own: a bad one is a failure, with its errors, and the good ones are
still applied, as Kit does. Every lookup is scoped to the request's account: another account's
tag, form, custom field or subscriber is one that "does not exist".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from api.errors import ApiError
from api.models import BulkBatch
from api.shapes import KIT_STATE_OF, KIT_STATES, KIT_TIME_FORMAT, timestamp
from api.signup_forms import form_join
from api.tasks import run_bulk_request
from api.views import CREATE_STATES, INVALID_EMAIL
from convertkit.models import Account, Job, JobError
from subscribers import services
from subscribers.models import CustomField, Form, Subscriber, Tag, Tagging
from subscribers.validation import (
    MAX_FIELD_VALUE_LENGTH,
    MAX_TAG_NAME_LENGTH,
    normalize_email_quick,
)
from webhooks.targets import target_post, target_url_errors

logger = logging.getLogger(__name__)

# Kit answers at once up to this many items, and in the background beyond.
SYNC_LIMIT = 100
QUEUE_FULL = (
    "This request exceeds your queued bulk requests limit. Please wait while we process your "
    "existing requests and try again later."
)
SUPPRESSED = "This address was removed at the subscriber's request and cannot be added back"
MAX_FIRST_NAME_LENGTH = Subscriber._meta.get_field("first_name").max_length
NO_SUBSCRIBER = "Subscriber does not exist"
NO_TAG = "Tag does not exist"
# Workers that take a large request's batches at once: while one waits for PostgreSQL, another
# checks its items, so both of a small machine's cores are busy.
RUNNERS = 2
# Deadlock detected and serialization failure: a batch rolled back for these is applied again.
RETRIED_PGCODES = ("40P01", "40001")
MAX_CONFLICTS = 5
# Failures kept as JobErrors for the job's page, and how much of each item.
MAX_STORED_FAILURES = 10_000
MAX_FAILURE_VALUE_LENGTH = 200
# The callback (timeouts are the webhooks' settings): its User-Agent, and the pauses before
# trying again.
CALLBACK_USER_AGENT = "ConvertKit-Bulk-Callback/1.0"
CALLBACK_RETRY_PAUSES = (1, 5)


class BulkQueueFull(Exception):
    """The account's queued bulk requests and this one would pass API_BULK_QUEUED_BYTES."""


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _id(value) -> int | None:
    """An id as JSON gives it (a whole number, not a boolean), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _email(raw) -> str | None:
    """The address as stored, or None for what is not one."""
    if not isinstance(raw, str):
        return None
    try:
        return normalize_email_quick(raw)
    except ValidationError:
        return None


def _object(item) -> dict:
    return item if isinstance(item, dict) else {}


# Subscribers ---------------------------------------------------------------------------------


def _subscriber_failure(item: dict, errors: list[str]) -> dict:
    return {
        "subscriber": {
            "first_name": _text(item.get("first_name")),
            "email_address": _text(item.get("email_address")),
            "state": _text(item.get("state")) or "active",
            "created_at": None,
        },
        "errors": errors,
    }


def _subscriber_row(item: dict, known_keys: set[str]) -> services.UpsertRow | None:
    """The upsert of one item, or None when something is wrong with it (_subscriber_errors)."""
    email = _email(item.get("email_address"))
    first_name = item.get("first_name")
    state = item.get("state") or "active"
    fields = item.get("fields") or {}
    if (
        email is None
        or not (first_name is None or _short_text(first_name, MAX_FIRST_NAME_LENGTH))
        or state not in CREATE_STATES
        or not isinstance(fields, dict)
        or not all(
            value is None or _short_text(value, MAX_FIELD_VALUE_LENGTH) for value in fields.values()
        )
    ):
        return None
    return services.UpsertRow(
        email=email,
        first_name=first_name,
        # Keys the account does not define are ignored, as the single create does.
        fields={key: value or "" for key, value in fields.items() if key in known_keys},
        state=KIT_STATES[state][0],
    )


def _short_text(value, max_length: int) -> bool:
    return isinstance(value, str) and len(value) <= max_length


def _subscriber_errors(item: dict) -> list[str]:
    """What is wrong with an item _subscriber_row refused, each problem in words."""
    errors = []
    if _email(item.get("email_address")) is None:
        errors.append(INVALID_EMAIL)
    first_name = item.get("first_name")
    if first_name is not None and not isinstance(first_name, str):
        errors.append("First name must be a string")
    elif first_name is not None and len(first_name) > MAX_FIRST_NAME_LENGTH:
        errors.append(f"First name is longer than {MAX_FIRST_NAME_LENGTH} characters")
    if (item.get("state") or "active") not in CREATE_STATES:
        errors.append(f"state must be one of {', '.join(CREATE_STATES)}")
    fields = item.get("fields") or {}
    if not isinstance(fields, dict):
        errors.append("fields must be an object")
        fields = {}
    for key, value in fields.items():
        if value is not None and not isinstance(value, str):
            errors.append(f"Custom field {key} must be a string")
        elif len(value or "") > MAX_FIELD_VALUE_LENGTH:
            errors.append(f"Custom field {key} is longer than {MAX_FIELD_VALUE_LENGTH} characters")
    return errors


def subscribers_apply(account: Account, items: list) -> tuple[list, list]:
    """Kit's bulk create: an upsert by address of each item (the single create's rules: the
    name and fields of an existing subscriber are updated, never their state). An address given
    twice is one subscriber, with the later item's values."""
    failures = []
    rows: dict[str, services.UpsertRow] = {}
    given: dict[str, dict] = {}
    named_keys = {
        key for item in items if isinstance(item, dict) for key in item.get("fields") or {}
    }
    known_keys = (
        set(
            CustomField.objects.filter(account=account, key__in=named_keys).values_list(
                "key", flat=True
            )
        )
        if named_keys
        else set()
    )
    for item in items:
        if not isinstance(item, dict):
            failures.append(_subscriber_failure({}, ["Subscriber must be an object"]))
            continue
        row = _subscriber_row(item, known_keys)
        if row is None:
            failures.append(_subscriber_failure(item, _subscriber_errors(item)))
            continue
        earlier = rows.get(row.email)
        if earlier is not None:
            row = services.UpsertRow(
                email=row.email,
                first_name=earlier.first_name if row.first_name is None else row.first_name,
                fields={**earlier.fields, **row.fields},
                state=row.state,
            )
        rows[row.email] = row
        given[row.email] = item
    result = services.subscribers_upsert(
        account_id=account.id,
        rows=list(rows.values()),
        source="API",
        consent_method="API bulk request",
    )
    subscribers = []
    # Those created share one time: each distinct second is written once.
    times: dict[int, str] = {}
    for email in rows:
        if email in result.suppressed:
            failures.append(_subscriber_failure(given[email], [SUPPRESSED]))
            continue
        row = result.subscribers[email]
        created_at = times.get(row.created_second)
        if created_at is None:
            created_at = times[row.created_second] = time.strftime(
                KIT_TIME_FORMAT, time.gmtime(row.created_second)
            )
        subscribers.append(
            {
                "id": row.id,
                "first_name": row.first_name or None,
                "email_address": row.email,
                "state": KIT_STATE_OF[row.state],
                "created_at": created_at,
            }
        )
    return subscribers, failures


# Tags ----------------------------------------------------------------------------------------


def tags_apply(account: Account, items: list) -> tuple[list, list]:
    """Kit's bulk create of tags: each name's tag, created if the account has none of that name
    (case-insensitive), once per name."""
    failures = []
    names: dict[str, str] = {}
    for item in items:
        raw = _object(item).get("name")
        name = " ".join(raw.split())[:MAX_TAG_NAME_LENGTH] if isinstance(raw, str) else ""
        if not name:
            failures.append({"tag": {"name": _text(raw)}, "errors": ["Name can't be blank"]})
            continue
        names.setdefault(name.lower(), name)
    tags = services.tags_ensure(account_id=account.id, names=list(names.values()))
    created = []
    for lowered, name in names.items():
        tag = tags.get(lowered)
        if tag is None:
            failures.append({"tag": {"name": name}, "errors": ["Name is invalid"]})
            continue
        created.append({"id": tag.id, "name": tag.name, "created_at": timestamp(tag.created_at)})
    return created, failures


# Taggings, custom field values and form additions: pairs of ids -----------------------------


def _subscribers_found(account: Account, ids: set[int], emails: set[str]) -> tuple[dict, dict]:
    """The account's subscribers among `ids` and `emails`, by id and by address."""
    found = Subscriber.objects.filter(Q(pk__in=ids) | Q(email__in=emails), account=account)
    by_id = {row.id: row for row in found.only("id", "email", "first_name", "created_at", "state")}
    return by_id, {row.email: row for row in by_id.values()}


def _subscriber_of(item: dict, by_id: dict, by_email: dict) -> Subscriber | None:
    subscriber_id = _id(item.get("subscriber_id"))
    if subscriber_id is not None:
        return by_id.get(subscriber_id)
    return by_email.get(_email(item.get("email_address")))


def _item_subscribers(account: Account, items: list) -> tuple[dict, dict]:
    """The subscribers the items name, by `subscriber_id` or (beyond Kit) `email_address`."""
    ids, emails = set(), set()
    for item in items:
        item = _object(item)
        if _id(item.get("subscriber_id")) is not None:
            ids.add(item["subscriber_id"])
        elif (email := _email(item.get("email_address"))) is not None:
            emails.add(email)
    return _subscribers_found(account, ids, emails)


def _owned_ids(model, account: Account, items: list, key: str, **lookup) -> dict:
    wanted = {_id(_object(item).get(key)) for item in items} - {None}
    return {row.id: row for row in model.objects.filter(account=account, pk__in=wanted, **lookup)}


def _taggings(account: Account, items: list) -> tuple[list, list]:
    """(tag, subscriber) of each item whose tag and subscriber the account has, and the
    failures of the others (the missing one's id null in the echo, as Kit shows it)."""
    tags = _owned_ids(Tag, account, items, "tag_id")
    by_id, by_email = _item_subscribers(account, items)
    found, failures = [], []
    for item in items:
        item = _object(item)
        tag = tags.get(_id(item.get("tag_id")))
        subscriber = _subscriber_of(item, by_id, by_email)
        errors = ([] if tag else [NO_TAG]) + ([] if subscriber else [NO_SUBSCRIBER])
        if errors:
            echo = {
                "tag_id": tag.id if tag else None,
                "subscriber_id": subscriber.id if subscriber else None,
            }
            failures.append({"errors": errors, "tagging": echo})
            continue
        found.append((tag, subscriber))
    return found, failures


def taggings_add_apply(account: Account, items: list) -> tuple[list, list]:
    """Kit's bulk tag: each subscriber (by id, or by address) given the tag; those newly tagged
    enter the sequences the tag adds to and are tag_added events."""
    found, failures = _taggings(account, items)
    pairs = [(tag.id, subscriber.id) for tag, subscriber in found]
    services.taggings_add(account_id=account.id, pairs=pairs)
    tagged_at = _tagged_at(pairs)
    return [
        {
            "id": subscriber.id,
            "first_name": subscriber.first_name or None,
            "email_address": subscriber.email,
            "created_at": timestamp(subscriber.created_at),
            "tagged_at": timestamp(tagged_at.get((tag.id, subscriber.id))),
        }
        for tag, subscriber in found
    ], failures


def _tagged_at(pairs: list[tuple[int, int]]) -> dict:
    if not pairs:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT t.tag_id, t.subscriber_id, t.created_at
            FROM unnest(%s::bigint[], %s::bigint[]) AS p(tag_id, subscriber_id)
            JOIN {Tagging._meta.db_table} AS t
              ON t.tag_id = p.tag_id AND t.subscriber_id = p.subscriber_id
            """,
            [[pair[0] for pair in pairs], [pair[1] for pair in pairs]],
        )
        return {(tag_id, subscriber_id): at for tag_id, subscriber_id, at in cursor.fetchall()}


def taggings_remove_apply(account: Account, items: list) -> tuple[None, list]:
    """Kit's bulk untag: the answer is the failures only."""
    found, failures = _taggings(account, items)
    services.taggings_remove(
        account_id=account.id, pairs=[(tag.id, subscriber.id) for tag, subscriber in found]
    )
    return None, failures


def field_values_apply(account: Account, items: list) -> tuple[list, list]:
    """Kit's bulk custom field values: each (subscriber, custom field, value) set ("" clears
    it), each change a field_changed event."""
    custom_fields = _owned_ids(CustomField, account, items, "subscriber_custom_field_id")
    by_id, by_email = _item_subscribers(account, items)
    applied, failures, values = [], [], []
    for item in items:
        item = _object(item)
        custom_field = custom_fields.get(_id(item.get("subscriber_custom_field_id")))
        subscriber = _subscriber_of(item, by_id, by_email)
        value = item.get("value")
        errors = ([] if subscriber else [NO_SUBSCRIBER]) + (
            [] if custom_field else ["Custom field does not exist"]
        )
        if value is not None and not isinstance(value, str):
            errors.append("Value must be a string")
        elif len(value or "") > MAX_FIELD_VALUE_LENGTH:
            errors.append(f"Value is longer than {MAX_FIELD_VALUE_LENGTH} characters")
        echo = {
            "subscriber_id": subscriber.id if subscriber else None,
            "subscriber_custom_field_id": item.get("subscriber_custom_field_id"),
            "value": value,
        }
        if errors:
            failures.append({"errors": errors, "custom_field_value": echo})
            continue
        values.append((subscriber.id, custom_field.key, value or ""))
        applied.append({**echo, "value": value or ""})
    services.subscribers_fields_values_set(account_id=account.id, values=values)
    return applied, failures


BULK_FORM_KEYS = (
    "id",
    "first_name",
    "email_address",
    "created_at",
    "added_at",
    "referrer",
    "referrer_utm_parameters",
)


def form_additions_apply(account: Account, items: list) -> tuple[list, list]:
    """Kit's bulk add to forms: each a signup through the form, as the single add is (its
    tags, sequences, incentive email and double opt-in follow), one at a time."""
    forms = _owned_ids(Form, account, items, "form_id", archived_at__isnull=True)
    by_id, by_email = _item_subscribers(account, items)
    added, failures = [], []
    for item in items:
        item = _object(item)
        form = forms.get(_id(item.get("form_id")))
        subscriber = _subscriber_of(item, by_id, by_email)
        referrer = item.get("referrer")
        errors = ([] if subscriber else [NO_SUBSCRIBER]) + ([] if form else ["Form does not exist"])
        if referrer is not None and not isinstance(referrer, str):
            errors.append("Referrer must be a string")
        if not errors:
            try:
                shape, _first_time = form_join(form, subscriber, referrer)
            except ApiError as refused:
                errors = refused.errors
            else:
                added.append({key: shape[key] for key in BULK_FORM_KEYS})
                continue
        echo = {
            "form_id": form.id if form else None,
            "subscriber_id": subscriber.id if subscriber else None,
            "referrer": _text(referrer),
        }
        failures.append({"errors": errors, "subscription": echo})
    return added, failures


# The actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkAction:
    """One bulk endpoint: the body's list (`items`), Kit's 422 when it is empty, the answer's
    list (`results`, None when Kit answers the failures only), and what applies a batch."""

    name: str
    items: str
    empty: str
    results: str | None
    title: str
    apply: Callable[[Account, list], tuple[list | None, list]]
    batch_size: int


ACTIONS = {
    action.name: action
    for action in (
        BulkAction(
            "subscribers",
            "subscribers",
            "No subscribers included for processing",
            "subscribers",
            "create {count} subscribers",
            subscribers_apply,
            10_000,
        ),
        BulkAction(
            "tags",
            "tags",
            "No tags included for processing",
            "tags",
            "create {count} tags",
            tags_apply,
            5000,
        ),
        BulkAction(
            "taggings_add",
            "taggings",
            "No taggings included for processing",
            "subscribers",
            "tag {count} subscribers",
            taggings_add_apply,
            5000,
        ),
        BulkAction(
            "taggings_remove",
            "taggings",
            "No taggings included for processing",
            None,
            "remove {count} tags from subscribers",
            taggings_remove_apply,
            5000,
        ),
        BulkAction(
            "field_values",
            "custom_field_values",
            "No custom field values included for processing",
            "custom_field_values",
            "set {count} custom field values",
            field_values_apply,
            5000,
        ),
        BulkAction(
            "form_additions",
            "additions",
            "No additions included for processing",
            "subscribers",
            "add {count} subscribers to forms",
            form_additions_apply,
            # One signup at a time: small batches keep each transaction short.
            200,
        ),
    )
}


def bulk_apply(*, action: BulkAction, account: Account, items: list) -> dict:
    """Applies one batch in one transaction: Kit's answer for it."""
    with transaction.atomic():
        results, failures = action.apply(account, items)
    answer = {} if action.results is None else {action.results: results}
    answer["failures"] = failures
    return answer


# Callbacks -----------------------------------------------------------------------------------


def callback_url_refusal(url: str) -> str | None:
    """Why `url` may not be called back (None when it may): the checks of every URL of a
    creator's that the platform POSTs to (webhooks.targets): http or https only, and a host
    whose every address is public, unless WEBHOOK_ALLOW_PRIVATE_TARGETS."""
    errors = target_url_errors(url, field="callback_url")
    return errors[0] if errors else None


def bulk_callback_post(url: str, payload: dict, *, pause=time.sleep) -> str | None:
    """POSTs `payload` as JSON to `url` through webhooks.targets (the address connected to is
    checked again: its host may resolve elsewhere now; timeouts; no redirects); a connection
    failure, a 429 or a 5xx is tried again after each of CALLBACK_RETRY_PAUSES. None once the
    receiver answered 2xx, else why not."""
    refusal = callback_url_refusal(url)
    if refusal:
        return refusal
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": CALLBACK_USER_AGENT}
    problem = None
    for attempt, wait in enumerate((0, *CALLBACK_RETRY_PAUSES)):
        if attempt:
            pause(wait)
        answer = target_post(url, body=body, headers=headers)
        if answer.status is None:
            problem = f"callback failed: {answer.error}"
            continue
        if 200 <= answer.status < 300:
            return None
        problem = f"callback answered {answer.status}"
        if answer.status != 429 and answer.status < 500:
            break
    return problem


# Jobs ----------------------------------------------------------------------------------------


def bulk_job_create(
    *, account: Account, action: BulkAction, items: list, callback_url: str | None, size: int
) -> Job:
    """Stores a large request as a queued Job of BulkBatch rows and queues it (for RUNNERS
    workers) on commit;
    BulkQueueFull (nothing stored) when the account's queued requests and this one's `size`
    bytes would pass API_BULK_QUEUED_BYTES."""
    with transaction.atomic():
        # One creation at a time per account, so that two requests cannot both fit the limit.
        Account.objects.select_for_update().filter(pk=account.pk).first()
        queued = sum(
            params.get("bytes", 0)
            for params in Job.objects.filter(
                account=account,
                kind=Job.Kind.BULK_API,
                state__in=[Job.State.QUEUED, Job.State.RUNNING],
            ).values_list("params", flat=True)
        )
        if queued + size > settings.API_BULK_QUEUED_BYTES:
            raise BulkQueueFull
        job = Job.objects.create(
            account=account,
            kind=Job.Kind.BULK_API,
            title=f"API: {action.title.format(count=f'{len(items):,}')}",
            params={"action": action.name, "callback_url": callback_url, "bytes": size},
            total=len(items),
        )
        BulkBatch.objects.bulk_create(
            BulkBatch(job=job, seq=seq, items=json.dumps(items[start : start + action.batch_size]))
            for seq, start in enumerate(range(0, len(items), action.batch_size))
        )
        for _ in range(min(RUNNERS, len(items) // action.batch_size + 1)):
            run_bulk_request.delay_on_commit(job.id)
    return job


def bulk_job_run(*, job_id: int) -> None:
    """Runs a bulk request's Job to the end; safe to call again, after a crash or at once.

    1. Claim: a queued or running job becomes running; a finished one is left alone.
    2. Each batch without a result, in order, in one transaction: locked (a second runner
       takes the next one), applied, its result saved and the job's counts moved. A batch
       rolled back by a deadlock between runners is applied again.
    3. With every batch done, under the job's lock: the results joined in order are posted to
       callback_url, the job marked done with what happened, and the batches deleted.
    """
    claimed = Job.objects.filter(
        pk=job_id, kind=Job.Kind.BULK_API, state__in=[Job.State.QUEUED, Job.State.RUNNING]
    ).update(state=Job.State.RUNNING, started_at=timezone.now())
    if not claimed:
        return
    try:
        conflicts = 0
        while True:
            try:
                if not _batch_run(job_id):
                    break
            except OperationalError as error:
                # Two runners' batches may wait on each other (the same address in both): the
                # batch that PostgreSQL rolled back is simply applied again.
                code = getattr(error.__cause__, "pgcode", None)
                if code not in RETRIED_PGCODES or conflicts >= MAX_CONFLICTS:
                    raise
                conflicts += 1
        _finish(job_id)
    except Exception:
        logger.exception("bulk request job %s failed", job_id)
        Job.objects.filter(pk=job_id).exclude(state=Job.State.DONE).update(
            state=Job.State.FAILED,
            message="Something went wrong on our side: the batches applied before it are kept, "
            "the others were not applied and no result was posted. Send their items again.",
            finished_at=timezone.now(),
        )


def _batch_run(job_id: int) -> bool:
    """Applies the next batch; False when none is left for this runner."""
    with transaction.atomic():
        batch = (
            BulkBatch.objects.select_for_update(skip_locked=True)
            .filter(job_id=job_id, result__isnull=True)
            .order_by("seq")
            .first()
        )
        if batch is None:
            return False
        job = Job.objects.select_related("account").get(pk=job_id)
        items = json.loads(batch.items)
        answer = bulk_apply(action=ACTIONS[job.params["action"]], account=job.account, items=items)
        # Without a callback nobody reads the answers: an empty one marks the batch done.
        kept = answer if job.params.get("callback_url") else {}
        BulkBatch.objects.filter(pk=batch.pk).update(result=kept, items="")
        failures = answer["failures"]
        room = MAX_STORED_FAILURES - job.error_count
        # The job's page lists them (the item as given, and why): the first ones only.
        JobError.objects.bulk_create(
            JobError(
                job=job,
                value=json.dumps(next(value for key, value in failure.items() if key != "errors"))[
                    :MAX_FAILURE_VALUE_LENGTH
                ],
                message="; ".join(failure["errors"]),
            )
            for failure in failures[: max(room, 0)]
        )
        Job.objects.filter(pk=job_id).update(
            processed=F("processed") + len(items), error_count=F("error_count") + len(failures)
        )
    return True


def _finish(job_id: int) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, state=Job.State.RUNNING).first()
        if job is None or BulkBatch.objects.filter(job=job, result__isnull=True).exists():
            return
        action = ACTIONS[job.params["action"]]
        url = job.params.get("callback_url")
        problem = bulk_callback_post(url, _payload(job, action)) if url else None
        done = job.processed - job.error_count
        message = f"{done:,} done, {job.error_count:,} failed"
        if url:
            message += f"; {problem}" if problem else "; result posted to the callback URL"
        Job.objects.filter(pk=job_id).update(
            state=Job.State.DONE,
            message=message,
            summary={"done": done, "failures": job.error_count, "callback": problem or ""},
            finished_at=timezone.now(),
        )
        BulkBatch.objects.filter(job=job).delete()


def _payload(job: Job, action: BulkAction) -> dict:
    """Kit's answer to the whole request: the batches' answers joined in order."""
    payload: dict[str, list] = {} if action.results is None else {action.results: []}
    payload["failures"] = []
    results = BulkBatch.objects.filter(job=job).order_by("seq").values_list("result", flat=True)
    for result in results.iterator(chunk_size=10):
        for key, rows in result.items():
            payload[key].extend(rows)
    return payload
