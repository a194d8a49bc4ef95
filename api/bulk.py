"""Kit's bulk endpoints at /v4/bulk/: many subscribers, tags, taggings, custom field values or
form additions in one request.

Each endpoint reads the body itself (a bulk body may be larger than a form's), checks it as a
whole (413 past the size limit, 422 for a body that is not an object with a non-empty list or
whose callback_url may not be called), then answers at once up to SYNC_LIMIT items and 202 `{}`
beyond, the result going to callback_url when the worker is done (api.bulk_jobs)."""

from __future__ import annotations

import json

from django.conf import settings
from ninja import Router

from api.bulk_jobs import (
    ACTIONS,
    QUEUE_FULL,
    SYNC_LIMIT,
    BulkAction,
    BulkQueueFull,
    bulk_apply,
    bulk_job_create,
    callback_url_refusal,
)
from api.errors import NOT_JSON, ApiError
from api.views import json_answer

router = Router(tags=["Bulk"])

_ID = {"type": "integer", "nullable": True}
_TEXT = {"type": "string", "nullable": True}


def _documented(list_key: str, item: dict) -> dict:
    """The OpenAPI description of a bulk body (read by the view itself, not by ninja)."""
    schema = {
        "type": "object",
        "required": [list_key],
        "properties": {
            list_key: {"type": "array", "items": {"type": "object", "properties": item}},
            "callback_url": _TEXT,
        },
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_TAGGING = {"tag_id": _ID, "subscriber_id": _ID, "email_address": _TEXT}


def _bulk_body(request, action: BulkAction) -> tuple[list, str | None, int]:
    """The items, the callback URL and the body's size in bytes, or the 413 or 422 saying why
    the request as a whole cannot be taken."""
    limit = settings.API_BULK_QUEUED_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise ApiError(413, [QUEUE_FULL])
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, [QUEUE_FULL])
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise ApiError(422, [NOT_JSON]) from None
    if not isinstance(body, dict):
        raise ApiError(422, ["The request body must be a JSON object"])
    problems = []
    items = body.get(action.items)
    if not isinstance(items, list) or not items:
        problems.append(action.empty)
    callback_url = body.get("callback_url")
    if callback_url is not None:
        refusal = (
            callback_url_refusal(callback_url)
            if isinstance(callback_url, str)
            else "callback_url must be an http or https URL"
        )
        if refusal:
            problems.append(refusal)
    if problems:
        raise ApiError(422, problems)
    return items, callback_url or None, len(raw)


def _bulk_answer(request, name: str):
    action = ACTIONS[name]
    items, callback_url, size = _bulk_body(request, action)
    if len(items) <= SYNC_LIMIT:
        return json_answer(bulk_apply(action=action, account=request.account, items=items))
    try:
        bulk_job_create(
            account=request.account,
            action=action,
            items=items,
            callback_url=callback_url,
            size=size,
        )
    except BulkQueueFull:
        raise ApiError(413, [QUEUE_FULL]) from None
    return json_answer({}, 202)


@router.post(
    "/bulk/subscribers",
    openapi_extra=_documented(
        "subscribers",
        {
            "email_address": _TEXT,
            "first_name": _TEXT,
            "state": _TEXT,
            "fields": {"type": "object", "additionalProperties": _TEXT},
        },
    ),
)
def bulk_subscribers_create(request):
    """Kit's bulk create subscribers: {"subscribers": [{email_address, first_name, state,
    fields}], "callback_url"}."""
    return _bulk_answer(request, "subscribers")


@router.post("/bulk/tags", openapi_extra=_documented("tags", {"name": _TEXT}))
def bulk_tags_create(request):
    """{"tags": [{name}], "callback_url"}: each name's tag, created if missing."""
    return _bulk_answer(request, "tags")


@router.post("/bulk/tags/subscribers", openapi_extra=_documented("taggings", _TAGGING))
def bulk_tags_add(request):
    """{"taggings": [{tag_id, subscriber_id or email_address}], "callback_url"}."""
    return _bulk_answer(request, "taggings_add")


@router.delete("/bulk/tags/subscribers", openapi_extra=_documented("taggings", _TAGGING))
def bulk_tags_remove(request):
    """{"taggings": [{tag_id, subscriber_id or email_address}], "callback_url"}."""
    return _bulk_answer(request, "taggings_remove")


@router.post(
    "/bulk/custom_fields/subscribers",
    openapi_extra=_documented(
        "custom_field_values",
        {"subscriber_id": _ID, "subscriber_custom_field_id": _ID, "value": _TEXT},
    ),
)
def bulk_field_values_set(request):
    """{"custom_field_values": [{subscriber_id, subscriber_custom_field_id, value}],
    "callback_url"}."""
    return _bulk_answer(request, "field_values")


@router.post(
    "/bulk/forms/subscribers",
    openapi_extra=_documented(
        "additions", {"form_id": _ID, "subscriber_id": _ID, "referrer": _TEXT}
    ),
)
def bulk_forms_add(request):
    """{"additions": [{form_id, subscriber_id, referrer}], "callback_url"}."""
    return _bulk_answer(request, "form_additions")
