"""Statement-level triggers that keep SubscriberCount and Tag.subscriber_count exact.

They read the statement's transition tables, so a COPY-fed upsert of a million rows costs one
aggregate per statement, not a trigger call per row. PostgreSQL allows transition tables only on
single-event triggers, hence one trigger per event. Rows are aggregated in a fixed order so two
concurrent statements lock counter rows in the same order and cannot deadlock.
"""

from __future__ import annotations

from django.db import migrations

SUBSCRIBER_COUNT_DELTA = """
CREATE FUNCTION subscribers_count_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO subscribers_subscribercount AS c (account_id, state, count)
    SELECT account_id, state, count(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, state) DO UPDATE SET count = c.count + EXCLUDED.count;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO subscribers_subscribercount AS c (account_id, state, count)
    SELECT account_id, state, -count(*) FROM old_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, state) DO UPDATE SET count = c.count + EXCLUDED.count;
  ELSE
    INSERT INTO subscribers_subscribercount AS c (account_id, state, count)
    SELECT account_id, state, sum(delta) FROM (
      SELECT account_id, state, 1 AS delta FROM new_rows
      UNION ALL
      SELECT account_id, state, -1 AS delta FROM old_rows
    ) AS changes
    GROUP BY 1, 2 HAVING sum(delta) <> 0 ORDER BY 1, 2
    ON CONFLICT (account_id, state) DO UPDATE SET count = c.count + EXCLUDED.count;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER subscribers_count_insert AFTER INSERT ON subscribers_subscriber
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION subscribers_count_apply();
CREATE TRIGGER subscribers_count_update AFTER UPDATE ON subscribers_subscriber
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION subscribers_count_apply();
CREATE TRIGGER subscribers_count_delete AFTER DELETE ON subscribers_subscriber
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION subscribers_count_apply();
"""

TAG_COUNT_DELTA = """
CREATE FUNCTION subscribers_tag_count_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE subscribers_tag AS t SET subscriber_count = t.subscriber_count + d.n
    FROM (SELECT tag_id, count(*) AS n FROM new_rows GROUP BY 1 ORDER BY 1) AS d
    WHERE t.id = d.tag_id;
  ELSE
    UPDATE subscribers_tag AS t SET subscriber_count = t.subscriber_count - d.n
    FROM (SELECT tag_id, count(*) AS n FROM old_rows GROUP BY 1 ORDER BY 1) AS d
    WHERE t.id = d.tag_id;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER subscribers_tag_count_insert AFTER INSERT ON subscribers_tagging
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION subscribers_tag_count_apply();
CREATE TRIGGER subscribers_tag_count_delete AFTER DELETE ON subscribers_tagging
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION subscribers_tag_count_apply();
"""

DROP = """
DROP TRIGGER IF EXISTS subscribers_count_insert ON subscribers_subscriber;
DROP TRIGGER IF EXISTS subscribers_count_update ON subscribers_subscriber;
DROP TRIGGER IF EXISTS subscribers_count_delete ON subscribers_subscriber;
DROP FUNCTION IF EXISTS subscribers_count_apply();
DROP TRIGGER IF EXISTS subscribers_tag_count_insert ON subscribers_tagging;
DROP TRIGGER IF EXISTS subscribers_tag_count_delete ON subscribers_tagging;
DROP FUNCTION IF EXISTS subscribers_tag_count_apply();
"""


class Migration(migrations.Migration):
    dependencies = [("subscribers", "0001_initial")]

    operations = [
        migrations.RunSQL(SUBSCRIBER_COUNT_DELTA + TAG_COUNT_DELTA, reverse_sql=DROP),
    ]
