"""Kit's API v4 at /v4/: thin views over the services the app already has.

Every view runs as the account of the X-Kit-Api-Key it was called with (api.auth), looks its
objects up through convertkit.tenancy (another account's id is a 404) and answers errors as
{"errors": [...]} (api.errors)."""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.http import HttpResponse, JsonResponse
from django.utils.dateparse import parse_date, parse_datetime
from ninja import NinjaAPI, Schema

from api.auth import KitApiKey, KitOAuthToken
from api.errors import NOT_JSON, ApiError, install_handlers
from api.pagination import page_of, page_request, paged, query_parameter, refuse_if
from api.shapes import KIT_STATES, State, subscriber_json, tag_json, timestamp
from convertkit.models import Membership
from convertkit.tenancy import get_for_account
from subscribers import services
from subscribers.models import CustomField, Subscriber, Tag, Tagging
from subscribers.validation import MAX_FIELD_VALUE_LENGTH, normalize_email

api = NinjaAPI(
    title="Kit-compatible API",
    version="4.0",
    urls_namespace="api_v4",
    auth=[KitApiKey(), KitOAuthToken()],
    docs_url=None,
)
install_handlers(api)

INVALID_EMAIL = "Email address is invalid"
# Creating in these Kit states is supported; "inactive" (unconfirmed) is not: an unconfirmed
# subscriber is one a confirmation email went to, which the API does not send.
CREATE_STATES = ("active", "cancelled", "bounced", "complained")


def json_answer(data: dict, status: int = 200) -> JsonResponse:
    """Every endpoint's JSON answer (the resource modules of api/ share it)."""
    return JsonResponse(data, status=status)


def _email(raw) -> str:
    try:
        return normalize_email(raw if isinstance(raw, str) else "")
    except ValidationError:
        raise ApiError(422, [INVALID_EMAIL]) from None


def moments(name: str) -> tuple[dict, dict]:
    """The query parameters `name`_after and `name`_before, for the OpenAPI document."""
    return tuple(
        query_parameter(f"{name}_{side}", "A date (yyyy-mm-dd, midnight UTC) or an ISO 8601 time")
        for side in ("after", "before")
    )


SUBSCRIBER_FILTERS = (
    query_parameter(
        "status", "active (the default), inactive, cancelled, bounced, complained or all"
    ),
    query_parameter("email_address", "One address, or several separated by commas, in any case"),
    *moments("created"),
    *moments("updated"),
)


def moment_param(params, name: str, problems: list[str]) -> datetime | None:
    """A ?created_after= style parameter: a date (yyyy-mm-dd, midnight UTC) or an ISO 8601
    time."""
    raw = params.get(name, "")
    if not raw:
        return None
    try:
        moment = parse_datetime(raw)
        if moment is None and (day := parse_date(raw)) is not None:
            moment = datetime(day.year, day.month, day.day)
    except ValueError:
        moment = None
    if moment is None:
        problems.append(f"{name} must be a date (yyyy-mm-dd) or a time (ISO 8601)")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def subscribers_filtered(request, queryset, problems: list[str]):
    """Kit's subscriber filters: status (default active), email_address (comma-separated),
    created_after/before, updated_after/before."""
    params = request.GET
    status = params.get("status", "active") or "active"
    if status in KIT_STATES:
        queryset = queryset.filter(state__in=KIT_STATES[status])
    elif status != "all":
        problems.append(
            "status must be one of active, inactive, cancelled, bounced, complained, all"
        )
    emails = [part.strip().lower() for part in params.get("email_address", "").split(",")]
    if any(emails):
        queryset = queryset.filter(email__in=[email for email in emails if email])
    for name, lookup in (
        ("created_after", "created_at__gte"),
        ("created_before", "created_at__lte"),
        ("updated_after", "updated_at__gte"),
        ("updated_before", "updated_at__lte"),
    ):
        moment = moment_param(params, name, problems)
        if moment is not None:
            queryset = queryset.filter(**{lookup: moment})
    return queryset


def fields_known(account, fields: dict[str, str | None] | None) -> tuple[dict, list[str]]:
    """The custom field values given for keys the account defines (None clears one, as "" does)
    and a warning for each unknown key, which is ignored (as Kit does)."""
    if not fields:
        return {}, []
    # A plain query: every create with fields runs it, and the ORM's building of it cost
    # more than PostgreSQL's answer.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT key FROM {CustomField._meta.db_table} "
            "WHERE account_id = %s AND key = ANY(%s::text[])",
            [account.id, list(fields)],
        )
        known = {key for (key,) in cursor.fetchall()}
    too_long = [key for key, value in fields.items() if len(value or "") > MAX_FIELD_VALUE_LENGTH]
    if too_long:
        raise ApiError(
            422,
            [
                f"Custom field {key} is longer than {MAX_FIELD_VALUE_LENGTH} characters"
                for key in too_long
            ],
        )
    values = {key: value or "" for key, value in fields.items() if key in known}
    warnings = [f"Custom field {key} does not exist" for key in fields if key not in known]
    return values, warnings


# Account ------------------------------------------------------------------------------------


@api.get("/account")
def account_get(request):
    account = request.account
    owner = (
        Membership.objects.filter(account=account, role=Membership.Role.OWNER)
        .select_related("user")
        .order_by("id")
        .first()
    )
    return json_answer(
        {
            "user": {"id": owner.user.id, "email": owner.user.email}
            if owner
            else {"id": None, "email": None},
            "account": {
                "id": account.id,
                "name": account.name,
                "plan_type": "self_hosted",
                "primary_email_address": account.sender_email
                or (owner.user.email if owner else ""),
                "created_at": timestamp(account.created_at),
            },
        }
    )


# Subscribers --------------------------------------------------------------------------------


class SubscriberIn(Schema):
    email_address: str
    first_name: str | None = None
    state: str | None = None
    fields: dict[str, str | None] | None = None


@api.get("/subscribers", openapi_extra=paged(*SUBSCRIBER_FILTERS))
def subscriber_list(request):
    problems: list[str] = []
    paging = page_request(request, list_name="subscribers", problems=problems)
    queryset = subscribers_filtered(
        request, Subscriber.objects.filter(account=request.account), problems
    )
    refuse_if(problems)
    items, pagination = page_of(queryset, paging)
    return json_answer(
        {"subscribers": [subscriber_json(row) for row in items], "pagination": pagination}
    )


@api.post("/subscribers")
def subscriber_upsert(request, payload: SubscriberIn):
    """Kit's create, an upsert by address: 201 with a new subscriber, 200 with the one the
    address already had, whose name and fields are updated but never its state, so an
    unsubscribed, bounced or complained address stays so."""
    email = _email(payload.email_address)
    state = payload.state or "active"
    if state not in CREATE_STATES:
        raise ApiError(422, [f"state must be one of {', '.join(CREATE_STATES)}"])
    fields, warnings = fields_known(request.account, payload.fields)
    try:
        # An active subscriber is one statement; another state is a second change that must
        # commit with it.
        with transaction.atomic() if state != "active" else nullcontext():
            subscriber = services.subscriber_create(
                account=request.account,
                email=email,
                first_name=payload.first_name or "",
                fields=fields,
                source="api",
            )
            if state == "cancelled":
                services.subscriber_unsubscribe(subscriber=subscriber, reason="API")
            elif state != "active":
                services.subscriber_suppress(
                    subscriber=subscriber, state=KIT_STATES[state][0], reason="API"
                )
        status = 201
    except services.SubscriberExists as exists:
        subscriber = services.subscriber_update(
            subscriber=exists.subscriber,
            email=exists.subscriber.email,
            first_name=exists.subscriber.first_name
            if payload.first_name is None
            else payload.first_name,
            fields=fields,
        )
        status = 200
    except services.SubscriberSuppressed:
        raise ApiError(
            422, ["This address was removed at the subscriber's request and cannot be added back"]
        ) from None
    body = {"subscriber": subscriber_json(subscriber)}
    if warnings:
        body["warnings"] = warnings
    return json_answer(body, status)


@api.get("/subscribers/{int:subscriber_id}")
def subscriber_get(request, subscriber_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    shape = subscriber_json(subscriber)
    shape["canceled_at"] = (
        timestamp(subscriber.unsubscribed_at) if subscriber.state == State.UNSUBSCRIBED else None
    )
    return json_answer({"subscriber": shape})


def subscriber_change(
    *, subscriber: Subscriber, email: str, first_name: str | None, fields: dict
) -> Subscriber:
    """A subscriber's new address, first name (None keeps it) and fields, for v4 and v3 alike;
    422 when the address is another subscriber's or was erased at its owner's request."""
    try:
        return services.subscriber_update(
            subscriber=subscriber,
            email=email,
            first_name=subscriber.first_name if first_name is None else first_name,
            fields=fields,
        )
    except services.SubscriberExists:
        raise ApiError(422, ["Email address has already been taken"]) from None
    except services.SubscriberSuppressed:
        raise ApiError(
            422, ["This address was removed at the subscriber's request and cannot be used"]
        ) from None


@api.put("/subscribers/{int:subscriber_id}")
def subscriber_put(request, subscriber_id: int, payload: SubscriberIn):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    email = _email(payload.email_address)
    fields, warnings = fields_known(request.account, payload.fields)
    subscriber = subscriber_change(
        subscriber=subscriber, email=email, first_name=payload.first_name, fields=fields
    )
    body = {"subscriber": subscriber_json(subscriber)}
    if warnings:
        body["warnings"] = warnings
    return json_answer(body)


@api.post("/subscribers/{int:subscriber_id}/unsubscribe")
def subscriber_unsubscribe(request, subscriber_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    services.subscriber_unsubscribe(subscriber=subscriber, reason="API")
    return HttpResponse(status=204)


@api.get("/subscribers/{int:subscriber_id}/tags", openapi_extra=paged())
def subscriber_tag_list(request, subscriber_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    problems: list[str] = []
    paging = page_request(request, list_name=f"subscriber{subscriber.id}.tags", problems=problems)
    refuse_if(problems)
    queryset = Tag.objects.filter(account=request.account, taggings__subscriber=subscriber)
    items, pagination = page_of(queryset.annotate(tagged_at=F("taggings__created_at")), paging)
    return json_answer(
        {
            "tags": [
                {"id": tag.id, "name": tag.name, "tagged_at": timestamp(tag.tagged_at)}
                for tag in items
            ],
            "pagination": pagination,
        }
    )


# Tags ---------------------------------------------------------------------------------------


class TagIn(Schema):
    name: str


class EmailIn(Schema):
    email_address: str | None = None


def _tag_name(name: str) -> str:
    if not name.strip():
        raise ApiError(422, ["Name can't be blank"])
    return name


@api.get("/tags", openapi_extra=paged())
def tag_list(request):
    problems: list[str] = []
    paging = page_request(request, list_name="tags", problems=problems)
    refuse_if(problems)
    items, pagination = page_of(Tag.objects.filter(account=request.account), paging)
    return json_answer(
        {"tags": [tag_json(tag, with_count=True) for tag in items], "pagination": pagination}
    )


@api.post("/tags")
def tag_create(request, payload: TagIn):
    """201 with a new tag, 200 with the account's tag of that name (case-insensitive)."""
    try:
        tag = services.tag_create(account=request.account, name=_tag_name(payload.name))
    except services.TagExists as exists:
        return json_answer({"tag": tag_json(exists.tag)})
    return json_answer({"tag": tag_json(tag)}, 201)


@api.put("/tags/{int:tag_id}")
def tag_update(request, tag_id: int, payload: TagIn):
    tag = get_for_account(request, Tag, pk=tag_id)
    try:
        services.tag_rename(tag=tag, name=_tag_name(payload.name))
    except services.TagExists:
        raise ApiError(422, ["Name has already been taken"]) from None
    return json_answer({"tag": tag_json(tag)})


def _tagged(tag: Tag, subscriber: Subscriber) -> JsonResponse:
    """Tags the subscriber: 201 when the tag is new to them, 200 when they had it."""
    added = services.subscriber_tags_add(subscriber=subscriber, tag_ids=[tag.id])
    tagged_at = (
        Tagging.objects.filter(tag=tag, subscriber=subscriber)
        .values_list("created_at", flat=True)
        .get()
    )
    return json_answer(
        {"subscriber": subscriber_json(subscriber, tagged_at=tagged_at)}, 201 if added else 200
    )


def subscriber_by_email(request, email_address: str | None, *, missing: str) -> Subscriber:
    if not email_address:
        raise ApiError(422, [missing])
    return get_for_account(request, Subscriber, email=_email(email_address))


@api.post("/tags/{int:tag_id}/subscribers/{int:subscriber_id}")
def tag_subscriber(request, tag_id: int, subscriber_id: int):
    tag = get_for_account(request, Tag, pk=tag_id)
    return _tagged(tag, get_for_account(request, Subscriber, pk=subscriber_id))


@api.post("/tags/{int:tag_id}/subscribers")
def tag_subscriber_by_email(request, tag_id: int, payload: EmailIn):
    tag = get_for_account(request, Tag, pk=tag_id)
    subscriber = subscriber_by_email(
        request,
        payload.email_address,
        missing="Either subscriber id or email address is required to tag subscriber",
    )
    return _tagged(tag, subscriber)


@api.delete("/tags/{int:tag_id}/subscribers/{int:subscriber_id}")
def untag_subscriber(request, tag_id: int, subscriber_id: int):
    tag = get_for_account(request, Tag, pk=tag_id)
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    services.subscriber_untag(subscriber=subscriber, tag=tag)
    return HttpResponse(status=204)


@api.delete(
    "/tags/{int:tag_id}/subscribers",
    openapi_extra={
        "parameters": [
            query_parameter("email_address", "Here, or in a JSON body as Kit's clients send it")
        ]
    },
)
def untag_subscriber_by_email(request, tag_id: int):
    """The address comes in a JSON body, as Kit's clients send it, or in ?email_address=."""
    tag = get_for_account(request, Tag, pk=tag_id)
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise ApiError(422, [NOT_JSON]) from None
    email_address = (body.get("email_address") if isinstance(body, dict) else None) or (
        request.GET.get("email_address")
    )
    subscriber = subscriber_by_email(
        request,
        email_address,
        missing="Either subscriber id or email address is required to remove tag from subscriber",
    )
    services.subscriber_untag(subscriber=subscriber, tag=tag)
    return HttpResponse(status=204)


@api.get(
    "/tags/{int:tag_id}/subscribers",
    openapi_extra=paged(*SUBSCRIBER_FILTERS, *moments("tagged")),
)
def tag_subscriber_list(request, tag_id: int):
    tag = get_for_account(request, Tag, pk=tag_id)
    problems: list[str] = []
    paging = page_request(request, list_name=f"tag{tag.id}.subscribers", problems=problems)
    # The tag and the tagging times in one filter() call: one join, on this tag's taggings (a
    # second call would join the subscriber's taggings of any tag again).
    taggings = {"taggings__tag": tag}
    for name, lookup in (
        ("tagged_after", "taggings__created_at__gte"),
        ("tagged_before", "taggings__created_at__lte"),
    ):
        moment = moment_param(request.GET, name, problems)
        if moment is not None:
            taggings[lookup] = moment
    queryset = subscribers_filtered(
        request, Subscriber.objects.filter(account=request.account, **taggings), problems
    )
    refuse_if(problems)
    items, pagination = page_of(queryset.annotate(tagged_at=F("taggings__created_at")), paging)
    return json_answer(
        {
            "subscribers": [subscriber_json(row, tagged_at=row.tagged_at) for row in items],
            "pagination": pagination,
        }
    )
