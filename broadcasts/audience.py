"""Who a broadcast goes to: the account's active subscribers, narrowed by tags and by
engagement (opened or clicked lately, or not; did not open a given broadcast).

One SQL fragment serves the recipient count shown before sending and the fan-out's
INSERT ... SELECT, so the count a creator saw is the audience that gets the email.

Engagement is read from tracking's DeliveryActivity, and only a person's opens and clicks count
(first_human_at): Apple Mail Privacy Protection fetches every image of every message, so its
"opens" would make everyone look engaged and nobody a non-opener.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from broadcasts.models import Broadcast, Delivery
from subscribers.models import Subscriber, Tag
from tracking.models import EventKind


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
    conditions += _engagement_conditions(broadcast, params)
    sql = "SELECT s.id FROM subscribers_subscriber s WHERE " + " AND ".join(conditions)
    return sql, params


def _engagement_conditions(broadcast: Broadcast, params: dict) -> list[str]:
    """The engagement filters' conditions (adding their parameters to `params`).

    "Engaged": a person's open or click (the "clicked anything" row, link 0) of any delivery
    to the subscriber, first made within the last engagement_days days; found through the
    activity index on (subscriber_id, kind).

    "Did not open X": a delivery of X to the subscriber that was sent, with no human open (a
    click counts as an open: a reader with images blocked clicks without a pixel). The
    activity's broadcast_id is implied by its delivery; stating it lets PostgreSQL read X's
    opens alone (index activity_list) rather than every open of every broadcast. Another
    account's broadcast has no deliveries to this account's subscribers, and a deleted one has
    none left, so either matches nobody: never everyone.
    """
    conditions = []
    if broadcast.engagement:
        params["engaged_kinds"] = [int(EventKind.OPEN), int(EventKind.CLICK)]
        params["engaged_since"] = timezone.now() - timedelta(days=broadcast.engagement_days)
        negation = "NOT " if broadcast.engagement == Broadcast.Engagement.NOT_ENGAGED else ""
        conditions.append(
            f"{negation}EXISTS (SELECT 1 FROM tracking_deliveryactivity a "
            "WHERE a.subscriber_id = s.id AND a.kind = ANY(%(engaged_kinds)s) "
            "AND a.link_id = 0 AND a.first_human_at >= %(engaged_since)s)"
        )
    if broadcast.not_opened_broadcast_id is not None:
        params["not_opened"] = broadcast.not_opened_broadcast_id
        params["sent"] = int(Delivery.State.SENT)
        params["opened_kinds"] = [int(EventKind.OPEN), int(EventKind.CLICK)]
        conditions.append(
            "EXISTS (SELECT 1 FROM broadcasts_delivery d WHERE d.broadcast_id = %(not_opened)s "
            "AND d.subscriber_id = s.id AND d.state = %(sent)s "
            "AND NOT EXISTS (SELECT 1 FROM tracking_deliveryactivity a WHERE a.delivery_id = d.id "
            "AND a.broadcast_id = %(not_opened)s AND a.kind = ANY(%(opened_kinds)s) "
            "AND a.link_id = 0 "
            "AND a.first_human_at IS NOT NULL))"
        )
    return conditions


def audience_count(*, broadcast: Broadcast) -> int:
    """How many subscribers the broadcast would go to now."""
    sql, params = audience_sql(broadcast)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS audience", params)
        return cursor.fetchone()[0]
