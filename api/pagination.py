"""Kit's cursor pagination: ?after=, ?before=, ?per_page= (default 500, at most 1000) and
?include_total_count=true, answered with a `pagination` object.

A cursor is the id of a page's first or last row, signed with SECRET_KEY and bound to the list
and order it came from, so that it cannot be forged or carried to another list: a tampered one
is a 422. Pages are keyset pages on id (convertkit.paging), so page 10,000 costs what page 1
does."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from django.core import signing

from api.errors import ApiError
from convertkit.paging import keyset_page

DEFAULT_PER_PAGE = 500
MAX_PER_PAGE = 1000
_signer = signing.Signer(salt="api.v4.cursor")


def cursor_encode(*, scope: str, row_id: int) -> str:
    return base64.urlsafe_b64encode(_signer.sign(f"{scope}|{row_id}").encode()).decode()


def cursor_decode(cursor: str, *, scope: str) -> int | None:
    """The row id in a cursor made for `scope`, or None for anything else."""
    try:
        value = _signer.unsign(base64.urlsafe_b64decode(cursor.encode()).decode())
    except (binascii.Error, UnicodeError, ValueError, signing.BadSignature):
        return None
    cursor_scope, _, row_id = value.rpartition("|")
    return int(row_id) if cursor_scope == scope and row_id.isdigit() else None


@dataclass(frozen=True)
class PageRequest:
    after: int | None
    before: int | None
    per_page: int
    include_total_count: bool
    oldest_first: bool
    scope: str


def page_request(request, *, list_name: str, problems: list[str]) -> PageRequest:
    """The paging parameters of `request` for the list `list_name`; each bad one is added to
    `problems` (the caller answers 422 with them and any of its own)."""
    params = request.GET
    per_page = DEFAULT_PER_PAGE
    raw = params.get("per_page", "")
    if raw:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PER_PAGE:
            problems.append(f"per_page must be a number from 1 to {MAX_PER_PAGE}")
        else:
            per_page = int(raw)
    sort_order = params.get("sort_order", "desc") or "desc"
    if sort_order not in ("asc", "desc"):
        problems.append("sort_order must be asc or desc")
    sort_field = params.get("sort_field", "id") or "id"
    if sort_field not in ("id", "created_at"):
        problems.append("sort_field must be id or created_at")
    scope = f"{list_name}:{sort_order}"
    cursors = {}
    for name in ("after", "before"):
        raw = params.get(name, "")
        if raw:
            cursors[name] = cursor_decode(raw, scope=scope)
            if cursors[name] is None:
                problems.append(f"The {name} cursor is invalid")
    if "after" in cursors and "before" in cursors:
        problems.append("Give after or before, not both")
    return PageRequest(
        after=cursors.get("after"),
        before=cursors.get("before"),
        per_page=per_page,
        include_total_count=params.get("include_total_count", "").lower() == "true",
        oldest_first=sort_order == "asc",
        scope=scope,
    )


def query_parameter(name: str, description: str, kind: str = "string") -> dict:
    """One query parameter as the OpenAPI document declares it."""
    return {
        "in": "query",
        "name": name,
        "required": False,
        "schema": {"type": kind},
        "description": description,
    }


PAGING_PARAMETERS = (
    query_parameter(
        "per_page",
        f"Rows per page: {DEFAULT_PER_PAGE} by default, at most {MAX_PER_PAGE}",
        "integer",
    ),
    query_parameter("after", "The end_cursor of a page: the page after it"),
    query_parameter("before", "The start_cursor of a page: the page before it"),
    query_parameter(
        "include_total_count",
        "true adds total_count to the pagination object (it counts every row: slower)",
        "boolean",
    ),
    query_parameter("sort_order", "desc (newest first, the default) or asc"),
    query_parameter("sort_field", "id (the default) or created_at"),
)


def paged(*filters: dict) -> dict:
    """A list endpoint's query parameters for the OpenAPI document (its `openapi_extra`): the
    views read them from request.GET, so ninja cannot see them. Kit's paging, then `filters`."""
    return {"parameters": [*PAGING_PARAMETERS, *filters]}


def refuse_if(problems: list[str]) -> None:
    if problems:
        raise ApiError(422, problems)


def page_of(queryset, paging: PageRequest) -> tuple[list, dict]:
    """The page's rows and Kit's `pagination` object for them."""
    page = keyset_page(
        queryset,
        after=paging.after,
        before=paging.before,
        page_size=paging.per_page,
        oldest_first=paging.oldest_first,
    )
    items = page.items
    pagination = {
        "has_previous_page": page.newer_before is not None,
        "has_next_page": page.older_after is not None,
        "start_cursor": cursor_encode(scope=paging.scope, row_id=items[0].id) if items else None,
        "end_cursor": cursor_encode(scope=paging.scope, row_id=items[-1].id) if items else None,
        "per_page": paging.per_page,
    }
    if paging.include_total_count:
        pagination["total_count"] = queryset.count()
    return items, pagination
