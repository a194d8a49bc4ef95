"""Kit's sequences at /v4/sequences: the list, adding a subscriber (by id or by address) and a
sequence's subscribers. Adding goes through sequences.services.subscriber_enrol, as the
subscriber page does: the suppressed are refused, the unconfirmed wait for their confirmation,
and the sequence_subscribed event is recorded for rules and automations."""

from __future__ import annotations

from django.db.models import F
from django.http import JsonResponse
from ninja import Router

from api.errors import ApiError
from api.members import MEMBERS_PARAMETERS, member_json, members_list
from api.pagination import page_of, page_request, paged, refuse_if
from api.shapes import timestamp
from api.views import EmailIn, json_answer, subscriber_by_email
from convertkit.tenancy import get_for_account
from sequences.models import Sequence, Subscription
from sequences.services import SubscribeRefused, subscriber_enrol
from subscribers.models import Subscriber

router = Router(tags=["Sequences"])

# Taken out of the sequence: no longer one of its subscribers.
LISTED_STATES = [
    state for state in Subscription.State.values if state != Subscription.State.REMOVED
]


def sequence_json(sequence: Sequence) -> dict:
    return {
        "id": sequence.id,
        "name": sequence.name,
        "hold": sequence.hold,
        "repeat": sequence.repeat,
        "created_at": timestamp(sequence.created_at),
    }


@router.get("/sequences", openapi_extra=paged())
def sequence_list(request):
    problems: list[str] = []
    paging = page_request(request, list_name="sequences", problems=problems)
    refuse_if(problems)
    items, pagination = page_of(Sequence.objects.filter(account=request.account), paging)
    return json_answer(
        {"sequences": [sequence_json(row) for row in items], "pagination": pagination}
    )


def _enrolled(sequence: Sequence, subscriber: Subscriber) -> JsonResponse:
    """201 when the subscriber is added (or starts a repeating sequence again), 200 when they
    were in it already; 422 for a suppressed subscriber, nothing changed."""
    try:
        result = subscriber_enrol(sequence=sequence, subscriber=subscriber)
    except SubscribeRefused as refused:
        raise ApiError(422, [str(refused)]) from None
    added_at = (
        Subscription.objects.filter(sequence=sequence, subscriber=subscriber)
        .values_list("subscribed_at", flat=True)
        .get()
    )
    return json_answer(
        {"subscriber": member_json(subscriber, added_at=added_at)},
        201 if result.added or result.restarted else 200,
    )


@router.post("/sequences/{int:sequence_id}/subscribers/{int:subscriber_id}")
def sequence_subscriber_add(request, sequence_id: int, subscriber_id: int):
    sequence = get_for_account(request, Sequence, pk=sequence_id)
    return _enrolled(sequence, get_for_account(request, Subscriber, pk=subscriber_id))


@router.post("/sequences/{int:sequence_id}/subscribers")
def sequence_subscriber_add_by_email(request, sequence_id: int, payload: EmailIn):
    """The subscriber must exist already, as in Kit (404 otherwise)."""
    sequence = get_for_account(request, Sequence, pk=sequence_id)
    subscriber = subscriber_by_email(
        request, payload.email_address, missing="Email address can't be blank"
    )
    return _enrolled(sequence, subscriber)


@router.get("/sequences/{int:sequence_id}/subscribers", openapi_extra=MEMBERS_PARAMETERS)
def sequence_subscriber_list(request, sequence_id: int):
    sequence = get_for_account(request, Sequence, pk=sequence_id)
    # One filter() call: one join, on this sequence's subscriptions.
    queryset = Subscriber.objects.filter(
        account=request.account,
        subscription__sequence=sequence,
        subscription__state__in=LISTED_STATES,
    ).annotate(added_at=F("subscription__subscribed_at"))
    return members_list(
        request,
        queryset,
        list_name=f"sequence{sequence.id}.subscribers",
        shape=lambda row: member_json(row, added_at=row.added_at),
    )
