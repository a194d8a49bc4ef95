"""Form view counts: one Redis HINCRBY per view on the request path, flushed to Form.view_count by a
periodic task, so a popular form never makes its row a hot spot.

Views are analytics, not data we promise to keep: a Redis flush loses the views since the last
flush, and a worker killed between the UPDATE and the DEL counts one batch twice.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from redis.exceptions import RedisError

from convertkit.redis import redis_client

logger = logging.getLogger(__name__)

PENDING_KEY = "ck:form-views"
FLUSHING_KEY = "ck:form-views:flushing"


def form_view_record(*, form_id: int) -> None:
    """Counts one view; a Redis outage loses the view, never the page."""
    try:
        redis_client().hincrby(PENDING_KEY, str(form_id), 1)
    except RedisError as error:
        logger.warning("Form view of form %s not counted: %s", form_id, error)


def form_views_pending(*, form_ids: list[int]) -> dict[int, int]:
    """Views counted in Redis and not yet flushed, for the given forms (one round trip)."""
    if not form_ids:
        return {}
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.hmget(PENDING_KEY, [str(i) for i in form_ids])
        pipe.hmget(FLUSHING_KEY, [str(i) for i in form_ids])
        pending, flushing = pipe.execute()
    except RedisError:
        return {}
    return {
        form_id: int(a or 0) + int(b or 0)
        for form_id, a, b in zip(form_ids, pending, flushing, strict=True)
        if a or b
    }


def form_views_flush() -> int:
    """Adds the pending counts to Form.view_count; returns how many views were flushed.

    1. RENAME the pending hash to the flushing key (atomic: new views start a fresh hash), unless
       a flushing hash is left over from a flush that died, which is finished first.
    2. One UPDATE ... FROM (VALUES ...) adds every form's count.
    3. DEL the flushing hash.
    """
    client = redis_client()
    if not client.exists(FLUSHING_KEY):
        try:
            client.rename(PENDING_KEY, FLUSHING_KEY)
        except RedisError as error:
            if "no such key" in str(error).lower():
                return 0
            raise
    counts = {int(k): int(v) for k, v in client.hgetall(FLUSHING_KEY).items()}
    if counts:
        with transaction.atomic(), connection.cursor() as cursor:
            values = ", ".join(["(%s::bigint, %s::bigint)"] * len(counts))
            cursor.execute(
                f"UPDATE subscribers_form AS f SET view_count = f.view_count + v.n "
                f"FROM (VALUES {values}) AS v(id, n) WHERE f.id = v.id",
                [number for pair in counts.items() for number in pair],
            )
    client.delete(FLUSHING_KEY)
    return sum(counts.values())
