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
from subscribers.models import Form

logger = logging.getLogger(__name__)

PENDING_KEY = "ck:form-views"
FLUSHING_KEY = "ck:form-views:flushing"
# Held by the running flush, so two workers never add the same flushing hash; it expires in case
# the worker holding it dies.
LOCK_KEY = "ck:form-views:lock"
LOCK_SECONDS = 300


def form_view_record(*, uid: str) -> None:
    """Counts one view of the form with this public uid, without touching the database (the
    flush ignores uids no form has). A Redis outage loses the view, never the page."""
    try:
        redis_client().hincrby(PENDING_KEY, uid, 1)
    except RedisError as error:
        logger.warning("View of form %s not counted: %s", uid, error)


def form_views_pending(*, forms: list[Form]) -> dict[int, int]:
    """Views counted in Redis and not yet flushed, by form id (one round trip for the page)."""
    if not forms:
        return {}
    uids = [form.uid for form in forms]
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.hmget(PENDING_KEY, uids)
        pipe.hmget(FLUSHING_KEY, uids)
        pending, flushing = pipe.execute()
    except RedisError:
        return {}
    return {
        form.id: int(a or 0) + int(b or 0)
        for form, a, b in zip(forms, pending, flushing, strict=True)
        if a or b
    }


def form_views_flush() -> int:
    """Adds the pending counts to Form.view_count; returns how many views were flushed.

    1. Take the lock (SET NX); if another flush holds it, leave the views to that one.
    2. RENAME the pending hash to the flushing key (atomic: new views start a fresh hash), unless
       a flushing hash is left over from a flush that died, which is finished first.
    3. One UPDATE ... FROM (VALUES ...) adds every form's count.
    4. DEL the flushing hash, then the lock.
    """
    client = redis_client()
    if not client.set(LOCK_KEY, "1", nx=True, ex=LOCK_SECONDS):
        return 0
    try:
        if not client.exists(FLUSHING_KEY):
            try:
                client.rename(PENDING_KEY, FLUSHING_KEY)
            except RedisError as error:
                if "no such key" in str(error).lower():
                    return 0
                raise
        counts = {uid: int(n) for uid, n in client.hgetall(FLUSHING_KEY).items()}
        if counts:
            with transaction.atomic(), connection.cursor() as cursor:
                values = ", ".join(["(%s, %s::bigint)"] * len(counts))
                cursor.execute(
                    f"UPDATE subscribers_form AS f SET view_count = f.view_count + v.n "
                    f"FROM (VALUES {values}) AS v(uid, n) WHERE f.uid = v.uid",
                    [number for pair in counts.items() for number in pair],
                )
        client.delete(FLUSHING_KEY)
    finally:
        client.delete(LOCK_KEY)
    return sum(counts.values())  # including views of uids no form has
