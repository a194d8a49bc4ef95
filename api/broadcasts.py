"""Kit's broadcasts endpoints (/v4/broadcasts): list, create (a draft, or scheduled with
send_at), get, update and delete a draft or scheduled one, its stats and its link clicks.

Thin views over broadcasts.services, as the editor's pages: only broadcasts of kind "broadcast"
are seen here (a sequence or automation email's message id is a 404). Kit's `content` is HTML:
it is stored as body_format "html". Kit's `subscriber_filter` is mapped onto the broadcast's
audience (segment_id, include_tag_ids and include_match, exclude_tag_ids); what it cannot say
is a 422. Stats (of one broadcast, or of a page of them) and clicks are read from the Rollup
counters (tracking.reports), never by counting events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.db import transaction
from django.db.models import Sum
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from ninja import Router, Schema

from api.errors import ApiError
from api.pagination import page_of, page_request, paged, query_parameter, refuse_if
from api.shapes import timestamp
from api.views import json_answer, moment_param, moments
from broadcasts import services
from broadcasts.forms import MAX_BODY_LENGTH, body_clean
from broadcasts.models import Broadcast
from broadcasts.public.selectors import archive_entry
from content.email_templates.designs import design_choices
from convertkit.tenancy import get_for_account, ids_not_owned
from subscribers.forms import one_line
from subscribers.models import Segment, Tag, TagMatch
from tracking.models import Link, Rollup
from tracking.reports import BroadcastFigures, broadcast_figures, broadcasts_figures

router = Router()

NOT_EDITABLE = "Broadcasts that have started sending cannot be updated"
NOT_DELETABLE = "Broadcasts that have started sending cannot be deleted"
# Kit's status of a broadcast's send, in its stats.
KIT_STATUS = {
    Broadcast.State.DRAFT: "draft",
    Broadcast.State.SCHEDULED: "scheduled",
    Broadcast.State.SENDING: "sending",
    Broadcast.State.PAUSED: "paused",
    Broadcast.State.SENT: "completed",
    Broadcast.State.CANCELLED: "cancelled",
}
STATES_OF_KIT_STATUS = {kit: ours for ours, kit in KIT_STATUS.items()}
# Accepted for Kit's clients' sake, not stored: reported back as warnings when not null.
IGNORED_FIELDS = ("published_at", "thumbnail_url", "thumbnail_alt", "email_address")
TEXT_FIELDS = ("subject", "preview_text", "description")


class BroadcastIn(Schema):
    subject: str | None = None
    preview_text: str | None = None
    description: str | None = None
    content: str | None = None
    public: bool | None = None
    published_at: str | None = None
    send_at: str | None = None
    thumbnail_alt: str | None = None
    thumbnail_url: str | None = None
    email_address: str | None = None
    # Our template keys: a built-in's ("classic", "modern", "plain") or an own template's id.
    email_template_id: int | str | None = None
    subscriber_filter: list[dict[str, Any]] | None = None


def _broadcasts(request):
    return Broadcast.objects.broadcasts().filter(account=request.account)


def _broadcast(request, broadcast_id: int) -> Broadcast:
    return get_for_account(
        request, Broadcast.objects.broadcasts().select_related("account"), pk=broadcast_id
    )


# Shapes -------------------------------------------------------------------------------------


def _subscriber_filter(broadcast: Broadcast) -> list[dict]:
    """The audience in Kit's terms: one group, its segment and required tags under "all" (or
    the tags under "any"), its excluded tags under "none"; everyone is "all_subscribers"."""
    group: dict[str, list] = {}
    required = []
    if broadcast.segment_id is not None:
        required.append({"type": "segment", "ids": [broadcast.segment_id]})
    if broadcast.include_tag_ids:
        tags = {"type": "tag", "ids": list(broadcast.include_tag_ids)}
        if broadcast.include_match == TagMatch.ALL:
            required.append(tags)
        else:
            group["any"] = [tags]
    if required:
        group["all"] = required
    if broadcast.exclude_tag_ids:
        group["none"] = [{"type": "tag", "ids": list(broadcast.exclude_tag_ids)}]
    return [group or {"all": [{"type": "all_subscribers"}]}]


def broadcast_json(broadcast: Broadcast, *, templates: dict[str, str]) -> dict:
    """A broadcast in Kit's shape. `templates`: the account's design names by key."""
    account = broadcast.account
    public_url = None
    if broadcast.public and account.public_slug:
        public_url = archive_entry(broadcast, account).url
    html = broadcast.body_format == Broadcast.BodyFormat.HTML
    return {
        "id": broadcast.id,
        "publication_id": broadcast.id,
        "created_at": timestamp(broadcast.created_at),
        "subject": broadcast.subject,
        "preview_text": broadcast.preview_text or None,
        "description": broadcast.description or None,
        "content": (broadcast.body or None) if html else None,
        "public": broadcast.public,
        "published_at": timestamp(broadcast.sent_at) if broadcast.public else None,
        "send_at": timestamp(broadcast.scheduled_at),
        "thumbnail_alt": None,
        "thumbnail_url": None,
        "public_url": public_url,
        "email_address": account.sender_email or None,
        "email_template": {
            "id": broadcast.email_template,
            "name": templates.get(broadcast.email_template, "Classic"),
        },
        "subscriber_filter": _subscriber_filter(broadcast),
    }


def _templates(account) -> dict[str, str]:
    return dict(design_choices(account=account))


# Input --------------------------------------------------------------------------------------


def _send_at(raw: str, problems: list[str]) -> datetime | None:
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None:
        problems.append("send_at must be a time (ISO 8601)")
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment <= timezone.now():
        problems.append("send_at must be in the future")
        return None
    return moment


def _ids(condition: dict, problems: list[str]) -> list[int]:
    ids = condition.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
        problems.append(f"subscriber_filter: {condition.get('type')} needs a list of ids")
        return []
    return ids


def _audience(account, groups: list[dict], problems: list[str]) -> dict:
    """Kit's subscriber_filter as the broadcast's audience fields; what they cannot express
    (several groups, several segments, a segment under "any" or "none", tags under both "all"
    and "any", an unknown type) is added to `problems`, as is an id of no tag or segment of
    the account."""
    audience = {
        "segment_id": None,
        "include_tag_ids": [],
        "include_match": TagMatch.ANY,
        "exclude_tag_ids": [],
    }
    if len(groups) > 1:
        problems.append("subscriber_filter: only one group of conditions is supported")
        return audience
    group = groups[0] if groups else {}
    unknown_keys = set(group) - {"all", "any", "none"}
    if unknown_keys:
        problems.append(f"subscriber_filter: unknown key {', '.join(sorted(unknown_keys))}")
    for where in ("all", "any", "none"):
        conditions = group.get(where) or []
        if not isinstance(conditions, list):
            problems.append(f"subscriber_filter: {where} must be a list")
            continue
        for condition in conditions:
            kind = condition.get("type") if isinstance(condition, dict) else None
            if kind == "all_subscribers" and where == "all":
                continue
            if kind == "segment" and where == "all":
                ids = _ids(condition, problems)
                if len(ids) > 1 or (ids and audience["segment_id"] is not None):
                    problems.append("subscriber_filter: only one segment is supported")
                elif ids:
                    audience["segment_id"] = ids[0]
            elif kind == "tag" and where in ("all", "any"):
                match = TagMatch.ALL if where == "all" else TagMatch.ANY
                if audience["include_tag_ids"] and audience["include_match"] != match:
                    problems.append(
                        'subscriber_filter: tags are supported under "all" or "any", not both'
                    )
                audience["include_tag_ids"] += _ids(condition, problems)
                audience["include_match"] = match
            elif kind == "tag" and where == "none":
                audience["exclude_tag_ids"] += _ids(condition, problems)
            else:
                problems.append(
                    f'subscriber_filter: a {kind} condition under "{where}" is not supported'
                )
    tag_ids = audience["include_tag_ids"] + audience["exclude_tag_ids"]
    for tag_id in ids_not_owned(Tag, account_id=account.id, ids=tag_ids)[1]:
        problems.append(f"subscriber_filter: tag {tag_id} does not exist")
    if audience["segment_id"] is not None:
        _, unknown = ids_not_owned(Segment, account_id=account.id, ids=[audience["segment_id"]])
        if unknown:
            problems.append(f"subscriber_filter: segment {unknown[0]} does not exist")
    return audience


def _values(request, payload: BroadcastIn) -> tuple[dict, datetime | None, list[str]]:
    """The given fields as broadcast_update's keyword arguments (only those given), the
    send_at given (None: none or null; see `fields_set`) and the warnings; 422 with every
    problem."""
    given = payload.model_fields_set
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        if name in given:
            value = getattr(payload, name) or ""
            try:
                value = one_line(value, name.replace("_", " "))
            except forms.ValidationError as invalid:
                problems.extend(invalid.messages)
            if len(value) > Broadcast._meta.get_field(name).max_length:
                problems.append(f"{name} is longer than 255 characters")
            values[name] = value
    if "content" in given:
        content = payload.content or ""
        if len(content) > MAX_BODY_LENGTH:
            problems.append(f"content is longer than {MAX_BODY_LENGTH} characters")
        else:
            try:
                values["body"] = body_clean(content, body_format=Broadcast.BodyFormat.HTML)
            except forms.ValidationError as invalid:
                problems.extend(f"content: {message}" for message in invalid.messages)
        values["body_format"] = Broadcast.BodyFormat.HTML
    if payload.public is not None:
        values["public"] = payload.public
    if payload.email_template_id is not None:
        key = str(payload.email_template_id)
        if key not in _templates(request.account):
            problems.append(f"email_template_id {key} is not one of your templates")
        values["email_template"] = key
    if "subscriber_filter" in given:
        values.update(_audience(request.account, payload.subscriber_filter or [], problems))
    send_at = _send_at(payload.send_at, problems) if payload.send_at else None
    refuse_if(problems)
    warnings = [
        f"{name} is not supported and was ignored"
        for name in IGNORED_FIELDS
        if getattr(payload, name) is not None
    ]
    return values, send_at, warnings


def _update_kwargs(broadcast: Broadcast, values: dict) -> dict:
    """broadcast_update's arguments: the broadcast's current values, then `values`."""
    current = {
        name: getattr(broadcast, name)
        for name in (
            "subject",
            "preview_text",
            "body",
            "body_format",
            "include_tag_ids",
            "include_match",
            "exclude_tag_ids",
            "engagement",
            "engagement_days",
            "not_opened_broadcast_id",
            "segment_id",
            "description",
            "public",
            "email_template",
        )
    }
    return {**current, **values}


def _save(broadcast: Broadcast, values: dict, send_at: datetime | None, schedule: bool) -> None:
    """Writes `values`, then schedules at send_at or (send_at None) leaves or makes it a
    draft, when `schedule`; in the caller's transaction. 422 when it cannot be scheduled or
    has started sending."""
    try:
        services.broadcast_update(broadcast=broadcast, **_update_kwargs(broadcast, values))
        if schedule and send_at is not None:
            services.broadcast_schedule(broadcast=broadcast, at=send_at)
        elif schedule:
            services.broadcast_unschedule(broadcast=broadcast)
    except services.BroadcastNotEditable:
        raise ApiError(422, [NOT_EDITABLE]) from None
    except services.SendRefused as refused:
        raise ApiError(422, [f"The broadcast cannot be scheduled: {refused}"]) from None


def _answer(broadcast: Broadcast, warnings: list[str], status: int = 200) -> JsonResponse:
    broadcast.refresh_from_db()
    body: dict[str, Any] = {
        "broadcast": broadcast_json(broadcast, templates=_templates(broadcast.account))
    }
    if warnings:
        body["warnings"] = warnings
    return json_answer(body, status)


# Endpoints ----------------------------------------------------------------------------------


@router.get("/broadcasts", openapi_extra=paged())
def broadcast_list(request):
    problems: list[str] = []
    paging = page_request(request, list_name="broadcasts", problems=problems)
    refuse_if(problems)
    items, pagination = page_of(_broadcasts(request).select_related("account"), paging)
    templates = _templates(request.account)
    return json_answer(
        {
            "broadcasts": [broadcast_json(item, templates=templates) for item in items],
            "pagination": pagination,
        }
    )


@router.post("/broadcasts")
def broadcast_create(request, payload: BroadcastIn):
    """201 with a draft, or a scheduled broadcast when send_at is a time in the future."""
    values, send_at, warnings = _values(request, payload)
    with transaction.atomic():
        broadcast = services.broadcast_create(
            account=request.account, body_format=Broadcast.BodyFormat.HTML
        )
        _save(broadcast, values, send_at, schedule=send_at is not None)
    return _answer(broadcast, warnings, 201)


@router.get("/broadcasts/{int:broadcast_id}")
def broadcast_get(request, broadcast_id: int):
    broadcast = _broadcast(request, broadcast_id)
    return json_answer(
        {"broadcast": broadcast_json(broadcast, templates=_templates(request.account))}
    )


@router.put("/broadcasts/{int:broadcast_id}")
def broadcast_update(request, broadcast_id: int, payload: BroadcastIn):
    """Changes the fields given (the others are kept) of a draft or scheduled broadcast; a
    send_at given schedules it (null: back to a draft)."""
    broadcast = _broadcast(request, broadcast_id)
    if not broadcast.is_editable:
        raise ApiError(422, [NOT_EDITABLE])
    values, send_at, warnings = _values(request, payload)
    with transaction.atomic():
        _save(broadcast, values, send_at, schedule="send_at" in payload.model_fields_set)
    return _answer(broadcast, warnings)


@router.delete("/broadcasts/{int:broadcast_id}")
def broadcast_delete(request, broadcast_id: int):
    broadcast = _broadcast(request, broadcast_id)
    try:
        services.broadcast_delete(broadcast=broadcast)
    except services.BroadcastNotEditable:
        raise ApiError(422, [NOT_DELETABLE]) from None
    return HttpResponse(status=204)


def _percent(part: int, base: int) -> float:
    return round(part * 100 / base, 2) if base else 0.0


def _stats_json(broadcast: Broadcast, figures: BroadcastFigures) -> dict:
    """Kit's stats from the report's figures (Rollup sums, people only, as the report's
    rates): rates in percent of the delivered (else sent) emails."""
    base = figures.rates.base
    if broadcast.state == Broadcast.State.SENT:
        progress = 100.0
    elif broadcast.recipient_count:
        progress = round(broadcast.finished_count * 100 / broadcast.recipient_count, 2)
    else:
        progress = 0.0
    return {
        "recipients": figures.recipients,
        "open_rate": _percent(figures.rates.human_unique_opens, base),
        "emails_opened": figures.rates.human_unique_opens,
        "click_rate": _percent(figures.rates.human_unique_clicks, base),
        "unsubscribe_rate": _percent(figures.unsubscribes, base),
        "unsubscribes": figures.unsubscribes,
        "total_clicks": figures.human_clicks,
        "show_total_clicks": True,
        "status": KIT_STATUS[broadcast.state],
        "progress": progress,
        "open_tracking_disabled": False,
        "click_tracking_disabled": False,
    }


@router.get(
    "/broadcasts/stats",
    openapi_extra=paged(
        query_parameter("status", ", ".join(STATES_OF_KIT_STATUS)), *moments("sent")
    ),
)
def broadcast_stats_list(request):
    """Kit's stats of a page of broadcasts, newest first, filtered by Kit's status (draft,
    scheduled, sending, paused, completed, cancelled) and by sent_after/sent_before: the page's
    figures come from one aggregate over their rollups, whatever the page's size."""
    problems: list[str] = []
    paging = page_request(request, list_name="broadcasts.stats", problems=problems)
    queryset = _broadcasts(request)
    status = request.GET.get("status", "")
    if status:
        if status in STATES_OF_KIT_STATUS:
            queryset = queryset.filter(state=STATES_OF_KIT_STATUS[status])
        else:
            problems.append(f"status must be one of {', '.join(STATES_OF_KIT_STATUS)}")
    for name, lookup in (("sent_after", "sent_at__gte"), ("sent_before", "sent_at__lte")):
        moment = moment_param(request.GET, name, problems)
        if moment is not None:
            queryset = queryset.filter(**{lookup: moment})
    refuse_if(problems)
    items, pagination = page_of(queryset, paging)
    figures = broadcasts_figures(broadcasts=items)
    return json_answer(
        {
            "broadcasts": [
                {"id": item.id, "stats": _stats_json(item, figures[item.id])} for item in items
            ],
            "pagination": pagination,
        }
    )


@router.get("/broadcasts/{int:broadcast_id}/stats")
def broadcast_stats(request, broadcast_id: int):
    broadcast = _broadcast(request, broadcast_id)
    figures = broadcast_figures(broadcast=broadcast)
    return json_answer(
        {"broadcast": {"id": broadcast.id, "stats": _stats_json(broadcast, figures)}}
    )


@router.get("/broadcasts/{int:broadcast_id}/clicks", openapi_extra=paged())
def broadcast_clicks(request, broadcast_id: int):
    """The broadcast's links (a page of them, by id), each with its people's unique clicks
    summed from the per-link rollups, as fractions of the delivered (else sent) emails and of
    the unique openers."""
    broadcast = _broadcast(request, broadcast_id)
    problems: list[str] = []
    paging = page_request(request, list_name=f"broadcast{broadcast.id}.clicks", problems=problems)
    refuse_if(problems)
    links, pagination = page_of(Link.objects.filter(broadcast=broadcast), paging)
    clicks = dict(
        Rollup.objects.filter(broadcast_id=broadcast.id, link_id__in=[link.id for link in links])
        .values("link_id")
        .annotate(unique=Sum("human_unique_clicks"))
        .order_by()
        .values_list("link_id", "unique")
    )
    rates = broadcast_figures(broadcast=broadcast).rates
    rows = []
    for link in links:
        unique = clicks.get(link.id) or 0
        rows.append(
            {
                "url": link.url,
                "unique_clicks": unique,
                "click_to_delivery_rate": round(unique / rates.base, 4) if rates.base else 0.0,
                "click_to_open_rate": round(unique / rates.human_unique_opens, 4)
                if rates.human_unique_opens
                else 0.0,
            }
        )
    return json_answer(
        {"broadcast": {"id": broadcast.id, "clicks": rows}, "pagination": pagination}
    )
