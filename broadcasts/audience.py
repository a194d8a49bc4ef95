"""Who a broadcast goes to: the account's active subscribers, narrowed by tags.

One SQL fragment serves the recipient count shown before sending and the fan-out's
INSERT ... SELECT, so the count a creator saw is the audience that gets the email.
"""

from __future__ import annotations

from django.db import connection

from broadcasts.models import Broadcast
from subscribers.models import Subscriber, Tag


def audience_sql(broadcast: Broadcast) -> tuple[str, dict]:
    """SELECT s.id FROM ... for the broadcast's audience, and its parameters.

    Ids of tags that no longer exist (or belong to another account) are dropped; if that leaves
    an "any of" list empty, or removes one tag of an "all of" list, nobody matches: a deleted
    tag must never widen an audience to the whole list.
    """
    include = list(broadcast.include_tag_ids or [])
    exclude = list(broadcast.exclude_tag_ids or [])
    wanted = set(include) | set(exclude)
    existing = (
        set(
            Tag.objects.filter(account_id=broadcast.account_id, id__in=wanted).values_list(
                "id", flat=True
            )
        )
        if wanted
        else set()
    )
    params: dict = {"account_id": broadcast.account_id, "active": Subscriber.State.ACTIVE}
    conditions = ["s.account_id = %(account_id)s", "s.state = %(active)s"]
    if include:
        kept = [tag_id for tag_id in include if tag_id in existing]
        if not kept or (
            broadcast.include_match == Broadcast.TagMatch.ALL and len(kept) < len(set(include))
        ):
            conditions.append("FALSE")
        elif broadcast.include_match == Broadcast.TagMatch.ALL:
            params["include"], params["include_count"] = kept, len(set(kept))
            conditions.append(
                "(SELECT count(*) FROM subscribers_tagging t WHERE t.subscriber_id = s.id "
                "AND t.tag_id = ANY(%(include)s)) = %(include_count)s"
            )
        else:
            params["include"] = kept
            conditions.append(
                "EXISTS (SELECT 1 FROM subscribers_tagging t WHERE t.subscriber_id = s.id "
                "AND t.tag_id = ANY(%(include)s))"
            )
    exclude = [tag_id for tag_id in exclude if tag_id in existing]
    if exclude:
        params["exclude"] = exclude
        conditions.append(
            "NOT EXISTS (SELECT 1 FROM subscribers_tagging t WHERE t.subscriber_id = s.id "
            "AND t.tag_id = ANY(%(exclude)s))"
        )
    sql = "SELECT s.id FROM subscribers_subscriber s WHERE " + " AND ".join(conditions)
    return sql, params


def audience_count(*, broadcast: Broadcast) -> int:
    """How many subscribers the broadcast would go to now."""
    sql, params = audience_sql(broadcast)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS audience", params)
        return cursor.fetchone()[0]
