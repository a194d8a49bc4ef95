"""A click is also an open (tracking/store.py now records one with every click): the same for
what was stored before. Every delivery clicked without an open gets its open, a person's when
a person clicked, dated by the click, and the Rollup unique counters gain what those rows add,
in the hour the store would have put them. Raw open counts (events) are not touched."""

from django.db import migrations

CLICKS_ARE_OPENS = """
WITH implied AS (
    INSERT INTO tracking_deliveryactivity AS a
        (delivery_id, kind, link_id, account_id, broadcast_id, subscriber_id, first_at,
         first_human_at)
    SELECT delivery_id, 1, 0, account_id, broadcast_id, subscriber_id, first_at, first_human_at
    FROM tracking_deliveryactivity
    WHERE kind = 2 AND link_id = 0
    ORDER BY delivery_id
    ON CONFLICT (delivery_id, kind, link_id) DO UPDATE
        SET first_human_at = EXCLUDED.first_human_at
        WHERE a.first_human_at IS NULL AND EXCLUDED.first_human_at IS NOT NULL
    RETURNING a.broadcast_id, (a.xmax = 0) AS inserted, a.first_at, a.first_human_at
), counts AS (
    SELECT broadcast_id, floor(extract(epoch FROM first_at) / 3600) AS hour,
           1 AS unique_opens, 0 AS human_unique_opens
    FROM implied WHERE inserted
    UNION ALL
    SELECT broadcast_id, floor(extract(epoch FROM first_human_at) / 3600), 0, 1
    FROM implied WHERE first_human_at IS NOT NULL
)
INSERT INTO tracking_rollup AS r
    (broadcast_id, link_id, hour, opens, human_opens, unique_opens, human_unique_opens, clicks,
     human_clicks, unique_clicks, human_unique_clicks, delivered, bounces, soft_bounces,
     complaints, unsubscribes)
SELECT broadcast_id, 0, to_timestamp(hour * 3600), 0, 0, sum(unique_opens),
       sum(human_unique_opens), 0, 0, 0, 0, 0, 0, 0, 0, 0
FROM counts
GROUP BY broadcast_id, hour
ORDER BY broadcast_id, hour
ON CONFLICT (broadcast_id, link_id, hour) DO UPDATE SET
    unique_opens = r.unique_opens + EXCLUDED.unique_opens,
    human_unique_opens = r.human_unique_opens + EXCLUDED.human_unique_opens
"""


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0001_links_events_rollups"),
    ]

    operations = [
        migrations.RunSQL(CLICKS_ARE_OPENS, reverse_sql=migrations.RunSQL.noop),
    ]
