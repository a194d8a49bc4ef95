"""The subscribers of a form or a sequence in Kit's shape: each with `added_at` (when they
joined it), listed with Kit's subscriber filters and added_after/added_before."""

from __future__ import annotations

from datetime import datetime

from api.pagination import page_of, page_request, paged, refuse_if
from api.shapes import subscriber_json, timestamp
from api.views import SUBSCRIBER_FILTERS, json_answer, moment_param, moments, subscribers_filtered
from subscribers.models import Subscriber

# The query parameters of a members list, for the OpenAPI document.
MEMBERS_PARAMETERS = paged(*SUBSCRIBER_FILTERS, *moments("added"))


def member_json(subscriber: Subscriber, *, added_at: datetime) -> dict:
    shape = subscriber_json(subscriber)
    shape["added_at"] = timestamp(added_at)
    return shape


def members_list(request, queryset, *, list_name: str, shape):
    """A page of `queryset` (subscribers annotated with `added_at`), filtered by Kit's
    parameters; `shape(subscriber)` gives each one's JSON."""
    problems: list[str] = []
    paging = page_request(request, list_name=list_name, problems=problems)
    for name, lookup in (("added_after", "added_at__gte"), ("added_before", "added_at__lte")):
        moment = moment_param(request.GET, name, problems)
        if moment is not None:
            queryset = queryset.filter(**{lookup: moment})
    queryset = subscribers_filtered(request, queryset, problems)
    refuse_if(problems)
    items, pagination = page_of(queryset, paging)
    return json_answer({"subscribers": [shape(row) for row in items], "pagination": pagination})
