"""Kit's legacy API v3, the subset common client libraries still call, served at /v3/.

Credentials: Kit's v3 sends a public `api_key` (subscribing) or a private `api_secret` (reads,
unsubscribing) as a query or body parameter. This platform has one kind of key: a live API key
(api.keys) is accepted under either name on every v3 endpoint, and counts against the same
API_RATE_LIMIT as on /v4/. Parameters are read from the query string, a JSON body or a
form-encoded body, as Kit's clients send them all three ways.

The writes go through the services /v4/ uses: a form subscribe is a signup through the form
(signup_submit: its double opt-in, tags and sequences hold, suppression wins), a sequence
subscribe is sequences.services.subscriber_enrol. Errors answer as v3 does:
{"error": "...", "message": "..."}."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, JsonResponse, QueryDict
from django.utils.dateparse import parse_date
from ninja import NinjaAPI
from ninja.errors import AuthenticationError

from api.auth import api_key_admit
from api.custom_fields import custom_field_json
from api.errors import ApiError
from api.keys import api_key_authenticate
from api.shapes import KIT_STATE_OF, State, subscriber_json, tag_json, timestamp
from api.views import fields_known, subscriber_change
from convertkit.tenancy import get_for_account, ids_not_owned
from sequences.models import Sequence, Subscription
from sequences.services import SubscribeRefused, subscriber_enrol
from subscribers import services
from subscribers.models import CustomField, Form, Subscriber, Tag, Tagging
from subscribers.signup_forms.embed import MAX_FIRST_NAME_LENGTH
from subscribers.signup_forms.signup import signup_submit
from subscribers.validation import normalize_email, one_line_text_error

PER_PAGE = 50
SORT_ORDERS = ("asc", "desc")
# Kit's v3 wordings, so that clients matching on them keep working.
NOT_FOUND_MESSAGE = "The entity you were trying to find doesn't exist"


class V3Credentials:
    """`api_key` or `api_secret` (query or body): a live key sets request.account and counts
    one request against API_RATE_LIMIT for that key, the budget /v4/ counts against too."""

    def __call__(self, request):
        params = _params(request)
        secret = params.get("api_secret") or params.get("api_key")
        api_key = api_key_authenticate(secret if isinstance(secret, str) else None)
        if api_key is None:
            return None
        api_key_admit(request, api_key)
        return api_key


api = NinjaAPI(
    title="Kit-compatible API v3",
    version="3.0",
    urls_namespace="api_v3",
    auth=V3Credentials(),
    docs_url=None,
    openapi_url=None,
)


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None):
    response = JsonResponse({"error": error, "message": message}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _authorization_failed(request, exc):
    params = _params(request)
    which = "API Secret" if "api_secret" in params else "API Key"
    return _error(401, "Authorization Failed", f"{which} not valid")


def _api_error(request, exc: ApiError):
    error = {401: "Authorization Failed", 404: "Not Found", 429: "Too Many Requests"}.get(
        exc.status, "Invalid parameters"
    )
    return _error(exc.status, error, "; ".join(exc.errors), exc.headers)


api.add_exception_handler(AuthenticationError, _authorization_failed)
api.add_exception_handler(ApiError, _api_error)
api.add_exception_handler(Http404, lambda request, exc: _error(404, "Not Found", NOT_FOUND_MESSAGE))


# Parameters ----------------------------------------------------------------------------------


def _form_encoded(data: QueryDict) -> dict:
    """A form-encoded body or query as v3's clients write it: `fields[last_name]=…`,
    `tags[]=1&tags[]=2` or `tags=1,2`."""
    params: dict = {}
    for name in data:
        if name.startswith("fields[") and name.endswith("]"):
            params.setdefault("fields", {})[name[len("fields[") : -1]] = data[name]
        elif name in ("tags[]", "tags"):
            params["tags"] = [
                part for value in data.getlist(name) for part in value.split(",") if part.strip()
            ]
        else:
            params[name] = data[name]
    return params


def _params(request) -> dict:
    """The query string's parameters, then the body's (JSON or form-encoded), read once."""
    cached = getattr(request, "_v3_params", None)
    if cached is not None:
        return cached
    params = _form_encoded(request.GET)
    if request.body:
        if request.content_type == "application/json":
            try:
                body = json.loads(request.body)
            except ValueError:
                raise ApiError(422, ["The request body is not valid JSON"]) from None
            if not isinstance(body, dict):
                raise ApiError(422, ["The request body must be a JSON object"])
            params.update(body)
        elif request.content_type == "application/x-www-form-urlencoded":
            params.update(_form_encoded(QueryDict(request.body)))
    request._v3_params = params
    return params


def _email(request, name: str) -> str:
    raw = _params(request).get(name)
    if not raw:
        raise ApiError(422, [f"{name} is required"])
    try:
        return normalize_email(raw if isinstance(raw, str) else "")
    except ValidationError:
        raise ApiError(422, ["Email address is invalid"]) from None


def _first_name(request) -> str | None:
    first_name = _params(request).get("first_name")
    if first_name is None:
        return None
    if not isinstance(first_name, str):
        raise ApiError(422, ["first_name must be a string"])
    problem = one_line_text_error(first_name.strip(), max_length=MAX_FIRST_NAME_LENGTH)
    if problem:
        raise ApiError(422, [f"first_name: {problem}"])
    return first_name.strip()


def _fields(request) -> dict[str, str]:
    """The values given for the account's custom fields; unknown keys are ignored, as v4's."""
    fields = _params(request).get("fields") or {}
    if not isinstance(fields, dict) or not all(
        isinstance(value, str | None) for value in fields.values()
    ):
        raise ApiError(422, ["fields must be an object of strings"])
    known, _warnings = fields_known(request.account, fields)
    return known


def _tag_ids(request) -> list[int]:
    """`tags`: ids of the account's tags (another account's or an unknown one is a 422)."""
    raw = _params(request).get("tags") or []
    if isinstance(raw, str | int):
        raw = str(raw).split(",")
    try:
        wanted, unknown = ids_not_owned(Tag, account_id=request.account.id, ids=raw)
    except (TypeError, ValueError):
        raise ApiError(422, ["tags must be a list of tag ids"]) from None
    if unknown:
        raise ApiError(422, [f"Tag {', '.join(map(str, unknown))} does not exist"])
    return wanted


def _subscription_json(
    *, id: int, subscriber: Subscriber, kind: str, of: int, created_at, referrer: str = ""
) -> dict:
    return {
        "subscription": {
            "id": id,
            "state": KIT_STATE_OF[subscriber.state],
            "created_at": timestamp(created_at),
            "source": "API",
            "referrer": referrer or None,
            "subscribable_id": of,
            "subscribable_type": kind,
            "subscriber": {"id": subscriber.id},
        }
    }


def _subscriber_upserted(request) -> Subscriber:
    """The account's subscriber with the `email` given (name and fields updated when given,
    state never), or a new active one: how v3's tag and sequence subscribes add people."""
    email = _email(request, "email")
    first_name, fields, tag_ids = _first_name(request), _fields(request), _tag_ids(request)
    with transaction.atomic():
        try:
            subscriber = services.subscriber_create(
                account=request.account,
                email=email,
                first_name=first_name or "",
                fields=fields,
                source="api",
            )
        except services.SubscriberExists as exists:
            subscriber = exists.subscriber
            if first_name is not None or fields:
                subscriber = services.subscriber_update(
                    subscriber=subscriber,
                    email=subscriber.email,
                    first_name=subscriber.first_name if first_name is None else first_name,
                    fields=fields,
                )
        except services.SubscriberSuppressed:
            raise ApiError(
                422,
                ["This address was removed at the subscriber's request and cannot be added back"],
            ) from None
        if tag_ids:
            services.subscriber_tags_add(subscriber=subscriber, tag_ids=tag_ids)
    return subscriber


def _by_email(request, name: str) -> Subscriber:
    return get_for_account(request, Subscriber, email=_email(request, name))


# Forms ---------------------------------------------------------------------------------------


@api.post("/forms/{int:form_id}/subscribe")
def form_subscribe(request, form_id: int):
    """A signup through the form: its double opt-in, tags, sequences and incentive email
    apply; an unsubscribed address is sent a confirmation email and stays unsubscribed until
    it confirms; a bounced, complained or erased one is refused (422). `tags` are added to a
    subscriber who is not suppressed."""
    form = get_for_account(request, Form, pk=form_id, archived_at__isnull=True)
    email = _email(request, "email")
    first_name, fields, tag_ids = _first_name(request), _fields(request), _tag_ids(request)
    data: dict = {"fields": fields} if fields else {}
    if first_name:
        data["first_name"] = first_name
    with transaction.atomic():
        result = signup_submit(
            form=form, email=email, data=data, page_url=str(_params(request).get("referrer", ""))
        )
        if result.signup is None:
            raise ApiError(422, ["This address cannot be subscribed"])
        subscriber = Subscriber.objects.get(pk=result.signup.subscriber_id)
        if tag_ids and not subscriber.is_suppressed:
            services.subscriber_tags_add(subscriber=subscriber, tag_ids=tag_ids)
    signup = result.signup
    return _subscription_json(
        id=signup.id,
        subscriber=subscriber,
        kind="form",
        of=form.id,
        created_at=signup.created_at,
        referrer=signup.page_url,
    )


# Tags ----------------------------------------------------------------------------------------


@api.get("/tags")
def tag_list(request):
    tags = Tag.objects.filter(account=request.account).order_by("id")
    return {"tags": [tag_json(tag) for tag in tags]}


@api.post("/tags/{int:tag_id}/subscribe")
def tag_subscribe(request, tag_id: int):
    """Tags the subscriber with that `email`, created (active) when the account has none."""
    tag = get_for_account(request, Tag, pk=tag_id)
    subscriber = _subscriber_upserted(request)
    services.subscriber_tags_add(subscriber=subscriber, tag_ids=[tag.id])
    tagging = Tagging.objects.get(tag=tag, subscriber=subscriber)
    return _subscription_json(
        id=tagging.id, subscriber=subscriber, kind="tag", of=tag.id, created_at=tagging.created_at
    )


@api.post("/tags/{int:tag_id}/unsubscribe")
def tag_unsubscribe(request, tag_id: int):
    """Removes the tag from the subscriber with that `email`; answers the tag, as v3 does."""
    tag = get_for_account(request, Tag, pk=tag_id)
    services.subscriber_untag(subscriber=_by_email(request, "email"), tag=tag)
    return tag_json(tag)


# Subscribers ---------------------------------------------------------------------------------


def _day(request, name: str):
    raw = _params(request).get(name)
    if not raw:
        return None
    try:
        day = parse_date(str(raw)) if len(str(raw)) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise ApiError(422, [f"{name} must be a date (yyyy-mm-dd)"])
    return day


def _page(request) -> int:
    raw = str(_params(request).get("page", "1") or "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(422, ["page must be a positive whole number"])
    return int(raw)


@api.get("/subscribers")
def subscriber_list(request):
    """Active subscribers, 50 a page (`page`, from 1), oldest first unless `sort_order=desc`;
    `sort_field=cancelled_at` lists the unsubscribed by when they left. Filters: `from`/`to`
    (created, dates, inclusive), `updated_from`/`updated_to`, `email_address`."""
    params = _params(request)
    page = _page(request)
    sort_order = params.get("sort_order") or "asc"
    if sort_order not in SORT_ORDERS:
        raise ApiError(422, ["sort_order must be asc or desc"])
    sort_field = params.get("sort_field") or ""
    if sort_field not in ("", "cancelled_at"):
        raise ApiError(422, ["sort_field can only be cancelled_at"])
    state, order = (
        (State.UNSUBSCRIBED, "unsubscribed_at") if sort_field else (State.ACTIVE, "created_at")
    )
    queryset = Subscriber.objects.filter(account=request.account, state=state)
    for name, lookup in (
        ("from", "created_at__date__gte"),
        ("to", "created_at__date__lte"),
        ("updated_from", "updated_at__date__gte"),
        ("updated_to", "updated_at__date__lte"),
    ):
        day = _day(request, name)
        if day is not None:
            queryset = queryset.filter(**{lookup: day})
    if params.get("email_address"):
        queryset = queryset.filter(email=str(params["email_address"]).strip().lower())
    sign = "-" if sort_order == "desc" else ""
    total = queryset.count()
    rows = queryset.order_by(f"{sign}{order}", f"{sign}id")[(page - 1) * PER_PAGE : page * PER_PAGE]
    return {
        "total_subscribers": total,
        "page": page,
        "total_pages": max(1, -(-total // PER_PAGE)),
        "subscribers": [subscriber_json(row) for row in rows],
    }


@api.get("/subscribers/{int:subscriber_id}")
def subscriber_get(request, subscriber_id: int):
    return {"subscriber": subscriber_json(get_for_account(request, Subscriber, pk=subscriber_id))}


@api.put("/subscribers/{int:subscriber_id}")
def subscriber_put(request, subscriber_id: int):
    """Changes `email_address`, `first_name` and `fields` (those given); never the state."""
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    email = (
        _email(request, "email_address")
        if "email_address" in _params(request)
        else subscriber.email
    )
    subscriber = subscriber_change(
        subscriber=subscriber,
        email=email,
        first_name=_first_name(request),
        fields=_fields(request),
    )
    return {"subscriber": subscriber_json(subscriber)}


@api.put("/unsubscribe")
def unsubscribe(request):
    """Unsubscribes the subscriber with that `email`, as their unsubscribe link would."""
    subscriber = _by_email(request, "email")
    services.subscriber_unsubscribe(subscriber=subscriber, reason="API")
    return {"subscriber": subscriber_json(subscriber)}


# Custom fields and sequences -----------------------------------------------------------------


@api.get("/custom_fields")
def custom_field_list(request):
    fields = CustomField.objects.filter(account=request.account).order_by("id")
    return {"custom_fields": [custom_field_json(field) for field in fields]}


@api.post("/sequences/{int:sequence_id}/subscribe")
def sequence_subscribe(request, sequence_id: int):
    """Adds the subscriber with that `email` (created, active, when the account has none) to
    the sequence; a suppressed subscriber is refused (422) and nothing changes."""
    sequence = get_for_account(request, Sequence, pk=sequence_id)
    try:
        with transaction.atomic():
            subscriber = _subscriber_upserted(request)
            subscriber_enrol(sequence=sequence, subscriber=subscriber)
    except SubscribeRefused as refused:
        raise ApiError(422, [str(refused)]) from None
    subscription = Subscription.objects.get(sequence=sequence, subscriber=subscriber)
    return _subscription_json(
        id=subscription.id,
        subscriber=subscriber,
        kind="course",
        of=sequence.id,
        created_at=subscription.subscribed_at,
    )


@api.api_operation(["GET", "POST", "PUT", "DELETE"], "/{path:rest}", include_in_schema=False)
def not_found(request, rest: str):
    """Any other path under /v3/ (one not served, an id that is not a number): v3's 404."""
    raise Http404
