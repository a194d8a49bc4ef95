"""Kit's segments at /v4/segments: the list (segments are built in the app)."""

from __future__ import annotations

from ninja import Router

from api.pagination import page_of, page_request, paged, refuse_if
from api.shapes import timestamp
from api.views import json_answer
from subscribers.models import Segment

router = Router(tags=["Segments"])


@router.get("/segments", openapi_extra=paged())
def segment_list(request):
    problems: list[str] = []
    paging = page_request(request, list_name="segments", problems=problems)
    refuse_if(problems)
    items, pagination = page_of(Segment.objects.filter(account=request.account), paging)
    return json_answer(
        {
            "segments": [
                {"id": row.id, "name": row.name, "created_at": timestamp(row.created_at)}
                for row in items
            ],
            "pagination": pagination,
        }
    )
