"""Kit's forms at /v4/forms: the list, adding a subscriber to a form (by id or by address, with
the page they came from) and a form's subscribers.

Adding someone to a form is a signup through it (subscribers.signup_forms.signup.signup_submit),
as Kit's "add subscriber to form" is: the Signup row records the join, the form's tags,
sequences, incentive email, rules and automations follow, and the form's double opt-in holds
(an unconfirmed or unsubscribed subscriber is sent the confirmation email)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from django.db.models import OuterRef, Subquery
from django.http import JsonResponse
from ninja import Router, Schema

from api.errors import ApiError
from api.members import MEMBERS_PARAMETERS, member_json, members_list
from api.pagination import page_of, page_request, paged, query_parameter, refuse_if
from api.shapes import KIT_STATE_OF, timestamp
from api.views import json_answer, subscriber_by_email
from convertkit.tenancy import get_for_account
from subscribers.models import Form, Signup, Subscriber
from subscribers.signup_forms.embed import embed_script_url, form_hosted_url
from subscribers.signup_forms.signup import signup_submit

router = Router(tags=["Forms"])

FORM_STATUSES = ("active", "archived", "trashed", "all")
FORM_TYPES = ("embed", "hosted")
# Kit's format of a form, from our style.
KIT_FORMAT = {
    Form.Style.INLINE: "inline",
    Form.Style.MODAL: "modal",
    Form.Style.SLIDEIN: "slide in",
}
MAX_REFERRER_LENGTH = Signup._meta.get_field("page_url").max_length
UTM_PARAMETERS = ("source", "medium", "campaign", "term", "content")


class FormSubscriberIn(Schema):
    email_address: str | None = None
    referrer: str | None = None


def form_json(form: Form) -> dict:
    return {
        "id": form.id,
        "name": form.name,
        "created_at": timestamp(form.created_at),
        # Every form here is an embeddable form with a hosted page; Kit's "hosted" type is a
        # landing page, which this platform does not have.
        "type": "embed",
        "format": KIT_FORMAT.get(form.style),
        "embed_js": embed_script_url(),
        "embed_url": form_hosted_url(form),
        "archived": form.archived_at is not None,
        "uid": form.uid,
        "subscriber_count": form.subscriber_count,
    }


@router.get(
    "/forms",
    openapi_extra=paged(
        query_parameter("status", "active (the default), archived, trashed or all"),
        query_parameter("type", "embed or hosted"),
    ),
)
def form_list(request):
    """Kit's filters: status (active by default, archived, trashed, all) and type (embed,
    hosted)."""
    problems: list[str] = []
    paging = page_request(request, list_name="forms", problems=problems)
    queryset = Form.objects.filter(account=request.account)
    status = request.GET.get("status", "") or "active"
    if status not in FORM_STATUSES:
        problems.append(f"status must be one of {', '.join(FORM_STATUSES)}")
    elif status == "active":
        queryset = queryset.filter(archived_at__isnull=True)
    elif status == "archived":
        queryset = queryset.filter(archived_at__isnull=False)
    elif status == "trashed":
        # Forms are archived, never trashed (their consent records name them).
        queryset = queryset.none()
    form_type = request.GET.get("type", "")
    if form_type and form_type not in FORM_TYPES:
        problems.append(f"type must be one of {', '.join(FORM_TYPES)}")
    elif form_type == "hosted":
        queryset = queryset.none()
    refuse_if(problems)
    items, pagination = page_of(queryset, paging)
    return json_answer({"forms": [form_json(row) for row in items], "pagination": pagination})


def referrer_json(referrer: str) -> dict:
    query = parse_qs(urlsplit(referrer).query)
    return {
        "referrer": referrer or None,
        "referrer_utm_parameters": {
            name: query.get(f"utm_{name}", [""])[0] for name in UTM_PARAMETERS
        },
    }


def form_join(form: Form, subscriber: Subscriber, referrer: str | None) -> tuple[dict, bool]:
    """Signs the subscriber up through the form: their JSON (with when and from where they first
    joined it) and whether this was the first time; 422 (nothing changed) for a bounced or
    complained subscriber or a referrer too long. The one path of the single and bulk adds."""
    referrer = referrer or ""
    if len(referrer) > MAX_REFERRER_LENGTH:
        raise ApiError(422, [f"Referrer is longer than {MAX_REFERRER_LENGTH} characters"])
    first = Signup.objects.filter(form=form, subscriber=subscriber).order_by("id").first()
    result = signup_submit(form=form, email=subscriber.email, data={}, page_url=referrer)
    if result.signup is None:
        state = KIT_STATE_OF[subscriber.state]
        raise ApiError(422, [f"A {state} subscriber cannot be added to a form"])
    subscriber.refresh_from_db()
    joined = first or result.signup
    shape = member_json(subscriber, added_at=joined.created_at)
    shape.update(referrer_json(joined.page_url))
    return shape, first is None


def _joined(form: Form, subscriber: Subscriber, referrer: str | None) -> JsonResponse:
    """201 the first time, 200 when they had joined the form before."""
    shape, first_time = form_join(form, subscriber, referrer)
    return json_answer({"subscriber": shape}, 201 if first_time else 200)


def _live_form(request, form_id: int) -> Form:
    return get_for_account(request, Form, pk=form_id, archived_at__isnull=True)


@router.post("/forms/{int:form_id}/subscribers/{int:subscriber_id}")
def form_subscriber_add(request, form_id: int, subscriber_id: int, payload: FormSubscriberIn):
    form = _live_form(request, form_id)
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    return _joined(form, subscriber, payload.referrer)


@router.post("/forms/{int:form_id}/subscribers")
def form_subscriber_add_by_email(request, form_id: int, payload: FormSubscriberIn):
    """The subscriber must exist already, as in Kit (404 otherwise)."""
    form = _live_form(request, form_id)
    subscriber = subscriber_by_email(
        request, payload.email_address, missing="Email address can't be blank"
    )
    return _joined(form, subscriber, payload.referrer)


@router.get("/forms/{int:form_id}/subscribers", openapi_extra=MEMBERS_PARAMETERS)
def form_subscriber_list(request, form_id: int):
    """Whoever signed up through the form (pending confirmation too, as Kit's inactive), with
    their first signup's time and page."""
    form = get_for_account(request, Form, pk=form_id)
    first_signup = Signup.objects.filter(form=form, subscriber=OuterRef("pk")).order_by("id")
    # The form's signups (through their index) pick the subscribers; the first one's time and
    # page are read for the rows of the page only.
    queryset = Subscriber.objects.filter(
        account=request.account,
        pk__in=Signup.objects.filter(form=form).values("subscriber_id"),
    ).annotate(
        added_at=Subquery(first_signup.values("created_at")[:1]),
        referrer=Subquery(first_signup.values("page_url")[:1]),
    )

    def shape(row):
        return {**member_json(row, added_at=row.added_at), **referrer_json(row.referrer)}

    return members_list(request, queryset, list_name=f"form{form.id}.subscribers", shape=shape)
