"""`manage.py tracking_partitions [--months-ahead N] [--detach YYYY-MM]`."""

from __future__ import annotations

import datetime as dt
from argparse import RawDescriptionHelpFormatter

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter
from django.db import DatabaseError, transaction
from django.utils import timezone

from tracking.partitions import partition_detach, partitions_ensure, partitions_existing

ARCHIVING = """
Archiving an old month (reports keep their figures: they read rollups, not events):

  1. manage.py tracking_partitions --detach 2025-01
     The month's table (tracking_event_y2025m01) leaves the event table; it still exists.
  2. pg_dump --format=custom --table=tracking_event_y2025m01 --file=events-2025-01.dump "$DATABASE_URL"
     Keep the dump wherever archives live. pg_restore --table=... brings it back.
  3. psql "$DATABASE_URL" -c 'DROP TABLE tracking_event_y2025m01'
     Frees the disk space at once (no DELETE, no vacuum).

The subscribers' activity timelines no longer show that month's opens and clicks; unique
opens and clicks (DeliveryActivity) and the rollups are kept.
"""


class _HelpFormatter(DjangoHelpFormatter, RawDescriptionHelpFormatter):
    """Django's (its own options last), keeping the line breaks of the archiving steps."""


def _month(value: str) -> dt.date:
    try:
        return dt.datetime.strptime(value, "%Y-%m").date()
    except ValueError as error:
        raise CommandError(f"Unexpected month {value!r}, use YYYY-MM such as 2025-01") from error


class Command(BaseCommand):
    help = """\
Creates the monthly partitions of the event table from this month to
--months-ahead months on (beat does this every six hours; running it again
changes nothing), then lists them. With --detach YYYY-MM, detaches that past
month's partition instead: the first step of archiving it (see below)."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = ARCHIVING
        parser.formatter_class = _HelpFormatter
        return parser

    def add_arguments(self, parser):
        parser.add_argument(
            "--months-ahead", type=int, default=3, help="months after this one to create (3)"
        )
        parser.add_argument("--detach", metavar="YYYY-MM", help="a past month to detach")

    def handle(self, *args, **options):
        if options["detach"]:
            self._detach(_month(options["detach"]))
            return
        if options["months_ahead"] < 0:
            raise CommandError("--months-ahead cannot be negative")
        for name in partitions_ensure(months_ahead=options["months_ahead"]):
            self.stdout.write(f"Created {name}")
        self.stdout.write("Partitions: " + ", ".join(partitions_existing()))

    def _detach(self, month: dt.date) -> None:
        if month >= timezone.now().date().replace(day=1):
            raise CommandError(
                f"{month:%Y-%m} is this month or later: its events are still arriving. "
                "Only past months can be detached."
            )
        try:
            with transaction.atomic():
                name = partition_detach(month)
        except DatabaseError as error:
            raise CommandError(f"Cannot detach {month:%Y-%m}: {error}".strip()) from error
        self.stdout.write(
            f"Detached {name}. Next: pg_dump --format=custom --table={name} "
            f'--file={name}.dump "$DATABASE_URL", then DROP TABLE {name} (see --help).'
        )
