"""ListGrowth: subscribers gained and lost per account and hour, kept by statement-level triggers.

As with the counters of 0002, the triggers read the statement's transition tables, so an import
of a million rows adds one aggregate per statement. An INSERT counts its rows added subscribed
(active, unconfirmed) by the hour of created_at, grouping equal times first (an import's rows
share one). An UPDATE finds the rows whose state crossed between subscribed and suppressed
(unsubscribed, bounced, complained) without joining its old rows to its new ones: a row crossed
when exactly one of its two versions is suppressed, so only suppressed versions are read and
grouped by id. An import's UPDATE, which never changes a state, reads no row past that filter;
and there is no join whose plan, cached by plpgsql for an earlier statement of a few rows, could
turn into a nested loop over a million. Rows are upserted in key order, so concurrent statements
cannot deadlock on them.

The backfill rebuilds the history that can be known: gains from subscribers' created_at (those
added in a suppressed state, e.g. imported as unsubscribed, never counted as gained), losses and
resubscriptions from StateChange.
"""

from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models

GROWTH_TRIGGERS = """
CREATE FUNCTION subscribers_growth_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO subscribers_listgrowth AS g
      (account_id, hour, subscribed, unsubscribed, bounced, complained)
    SELECT account_id, date_trunc('hour', created_at, 'UTC'), sum(added), 0, 0, 0
    FROM (
      SELECT account_id, created_at, count(*) AS added FROM new_rows
      WHERE state IN ('active', 'unconfirmed') GROUP BY 1, 2
    ) AS per_moment
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, hour) DO UPDATE SET subscribed = g.subscribed + EXCLUDED.subscribed;
  ELSE
    INSERT INTO subscribers_listgrowth AS g
      (account_id, hour, subscribed, unsubscribed, bounced, complained)
    SELECT account_id, date_trunc('hour', now(), 'UTC'),
           count(*) FILTER (WHERE side = 'old'),
           count(*) FILTER (WHERE side = 'new' AND state = 'unsubscribed'),
           count(*) FILTER (WHERE side = 'new' AND state = 'bounced'),
           count(*) FILTER (WHERE side = 'new' AND state = 'complained')
    FROM (
      SELECT min(account_id) AS account_id, min(state) AS state, min(side) AS side
      FROM (
        SELECT id, account_id, state, 'new' AS side FROM new_rows
        WHERE state NOT IN ('active', 'unconfirmed')
        UNION ALL
        SELECT id, account_id, state, 'old' AS side FROM old_rows
        WHERE state NOT IN ('active', 'unconfirmed')
      ) AS suppressed
      GROUP BY id HAVING count(*) = 1
    ) AS crossed
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, hour) DO UPDATE SET
      subscribed = g.subscribed + EXCLUDED.subscribed,
      unsubscribed = g.unsubscribed + EXCLUDED.unsubscribed,
      bounced = g.bounced + EXCLUDED.bounced,
      complained = g.complained + EXCLUDED.complained;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER subscribers_growth_insert AFTER INSERT ON subscribers_subscriber
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION subscribers_growth_apply();
CREATE TRIGGER subscribers_growth_update AFTER UPDATE ON subscribers_subscriber
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION subscribers_growth_apply();
"""

BACKFILL = """
LOCK TABLE subscribers_subscriber, subscribers_statechange IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO subscribers_listgrowth (account_id, hour, subscribed, unsubscribed, bounced, complained)
SELECT account_id, hour, sum(subscribed), sum(unsubscribed), sum(bounced), sum(complained)
FROM (
  SELECT s.account_id, date_trunc('hour', s.created_at, 'UTC') AS hour,
         1 AS subscribed, 0 AS unsubscribed, 0 AS bounced, 0 AS complained
  FROM subscribers_subscriber AS s
  WHERE s.state IN ('active', 'unconfirmed') OR EXISTS (
    SELECT 1 FROM subscribers_statechange AS c
    WHERE c.subscriber_id = s.id AND c.from_state IN ('active', 'unconfirmed')
  )
  UNION ALL
  SELECT c.account_id, date_trunc('hour', c.created_at, 'UTC'),
         (c.to_state IN ('active', 'unconfirmed'))::int,
         (c.to_state = 'unsubscribed')::int,
         (c.to_state = 'bounced')::int,
         (c.to_state = 'complained')::int
  FROM subscribers_statechange AS c
  WHERE (c.from_state IN ('active', 'unconfirmed')) <> (c.to_state IN ('active', 'unconfirmed'))
    AND c.from_state <> ''
) AS changes
GROUP BY 1, 2;
"""

DROP = """
DROP TRIGGER IF EXISTS subscribers_growth_insert ON subscribers_subscriber;
DROP TRIGGER IF EXISTS subscribers_growth_update ON subscribers_subscriber;
DROP FUNCTION IF EXISTS subscribers_growth_apply();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("convertkit", "0001_initial"),
        ("subscribers", "0005_forms"),
    ]

    operations = [
        migrations.CreateModel(
            name="ListGrowth",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("hour", models.DateTimeField()),
                ("subscribed", models.IntegerField(default=0)),
                ("unsubscribed", models.IntegerField(default=0)),
                ("bounced", models.IntegerField(default=0)),
                ("complained", models.IntegerField(default=0)),
                (
                    "account",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="convertkit.account",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("account", "hour"), name="listgrowth_unique_hour"
                    )
                ],
            },
        ),
        # Writes wait while the history is rebuilt and the triggers created, in one transaction:
        # no change is missed or counted twice.
        migrations.RunSQL(BACKFILL + GROWTH_TRIGGERS, reverse_sql=DROP),
    ]
