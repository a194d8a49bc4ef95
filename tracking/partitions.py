"""Monthly partitions of tracking_event.

Each month is its own table (tracking_event_y2026m11), so an old month is archived or dropped by
detaching one table, never by a DELETE over billions of rows. A DEFAULT partition takes whatever
no month holds (an ESP event stamped long ago), so no event is ever refused for want of a
partition. `partitions_ensure` (beat, every six hours; also the migration and `manage.py
tracking_partitions`) creates the current month and the next ones ahead of time. Should a month
be created late, after rows for it landed in the default partition, those rows are moved into it
in the same transaction.
"""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction
from django.utils import timezone

DEFAULT_PARTITION = "tracking_event_default"


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def partition_name(month: dt.date) -> str:
    return f"tracking_event_y{month.year:04d}m{month.month:02d}"


def partitions_existing() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = 'tracking_event' ORDER BY c.relname
            """
        )
        return [row[0] for row in cursor.fetchall()]


def partitions_ensure(*, months_ahead: int = 3, today: dt.date | None = None) -> list[str]:
    """Creates the month partitions from this month to `months_ahead` months on that are
    missing; returns the names created."""
    month = _month_start(today or timezone.now().date())
    existing = set(partitions_existing())
    created = []
    for _ in range(months_ahead + 1):
        name = partition_name(month)
        if name not in existing:
            _partition_create(name, month, _next_month(month))
            created.append(name)
        month = _next_month(month)
    return created


def _partition_create(name: str, start: dt.date, end: dt.date) -> None:
    bounds = (f"{start.isoformat()} 00:00:00+00", f"{end.isoformat()} 00:00:00+00")
    with transaction.atomic(), connection.cursor() as cursor:
        # A standalone table, filled with any rows the default partition holds for the month,
        # then attached: attaching checks the default partition holds none of them any more.
        cursor.execute(f"CREATE TABLE {name} (LIKE tracking_event INCLUDING DEFAULTS)")
        cursor.execute(
            f"""
            WITH moved AS (
                DELETE FROM {DEFAULT_PARTITION}
                WHERE occurred_at >= %s AND occurred_at < %s RETURNING *
            )
            INSERT INTO {name} SELECT * FROM moved
            """,
            bounds,
        )
        cursor.execute(
            f"ALTER TABLE tracking_event ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
            bounds,
        )


def partition_detach(month: dt.date) -> str:
    """Detaches a month's partition: its table stays, outside tracking_event, to be dumped
    (pg_dump -t) and dropped by the operator. Reports keep their rollups."""
    name = partition_name(_month_start(month))
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE tracking_event DETACH PARTITION {name}")
    return name
