"""`manage.py tracking_partitions`: months created ahead, and an old month detached for
archiving without touching the rest."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from tracking.management.commands.tracking_partitions import Command
from tracking.models import Event
from tracking.partitions import partition_name, partitions_ensure, partitions_existing
from tracking.tasks import partitions_ensure as partitions_ensure_task


def _month(offset: int) -> dt.date:
    month = timezone.now().date().replace(day=1)
    for _ in range(abs(offset)):
        step = dt.timedelta(days=32) if offset > 0 else -dt.timedelta(days=1)
        month = (month + step).replace(day=1)
    return month


def _event_at(moment: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tracking_event (occurred_at, kind, account_id) VALUES (%s, 1, 1)",
            [moment],
        )


def test_the_command_creates_months_ahead_and_a_second_run_changes_nothing(db):
    out = StringIO()

    call_command("tracking_partitions", "--months-ahead", "6", stdout=out)
    again = StringIO()
    call_command("tracking_partitions", "--months-ahead", "6", stdout=again)

    names = partitions_existing()
    assert all(partition_name(_month(n)) in names for n in range(7))
    assert f"Created {partition_name(_month(6))}" in out.getvalue()
    assert "Created" not in again.getvalue()


def test_the_beat_task_creates_the_coming_months(db, eager_celery):
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {partition_name(_month(2))}")

    partitions_ensure_task.delay()

    assert partition_name(_month(2)) in partitions_existing()


def test_a_detached_past_month_keeps_its_rows_outside_the_event_table(db):
    old = dt.date(2025, 1, 1)
    _event_at(dt.datetime(2025, 1, 15, tzinfo=dt.UTC))
    partitions_ensure(today=old, months_ahead=0)  # moves the January row out of the default
    _event_at(timezone.now())
    out = StringIO()

    call_command("tracking_partitions", "--detach", "2025-01", stdout=out)

    assert "tracking_event_y2025m01" not in partitions_existing()
    assert Event.objects.count() == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tracking_event_y2025m01")
        assert cursor.fetchone()[0] == 1
    assert "pg_dump" in out.getvalue()


@pytest.mark.parametrize(
    ("month", "message"),
    [
        (lambda: f"{_month(0):%Y-%m}", "this month or later"),
        (lambda: f"{_month(1):%Y-%m}", "this month or later"),
        (lambda: "2019-07", "does not exist"),
        (lambda: "July", "use YYYY-MM"),
    ],
)
def test_detaching_refuses_current_future_missing_and_malformed_months(db, month, message):
    before = partitions_existing()

    with pytest.raises(CommandError, match=message):
        call_command("tracking_partitions", "--detach", month())

    assert partitions_existing() == before


def test_the_help_explains_archiving_with_pg_dump_then_drop():
    text = Command().create_parser("manage.py", "tracking_partitions").format_help()

    assert "--detach YYYY-MM" in text
    assert "pg_dump --format=custom --table=tracking_event_y2025m01" in text
    assert "DROP TABLE tracking_event_y2025m01" in text
