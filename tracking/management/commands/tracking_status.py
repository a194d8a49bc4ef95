"""`manage.py tracking_status [--json] [--watch]`: how far the recording of events is behind."""

from __future__ import annotations

import dataclasses
import json
import time

from django.core.management.base import BaseCommand

from tracking.status import TrackingStatus, tracking_status_read


def status_lines(status: TrackingStatus) -> list[str]:
    claims = f"{status.claimed_batches:,}"
    if status.oldest_claim_age_s is not None:
        claims += f" (oldest claimed {status.oldest_claim_age_s:.1f} s ago)"
    lines = [
        f"Waiting in Redis:     {status.waiting_events:,} events "
        f"({status.waiting_chunks:,} chunks)",
        f"Drain lag:            {status.drain_lag_s:.1f} s (age of the oldest waiting event)",
        f"Claimed batches:      {claims}",
        f"Spooled in Postgres:  {status.spooled_rows:,} rows, {status.spooled_events:,} events",
        f"Drained:              {status.drained_per_s:,.0f} events/s (mean of the last minute)",
        f"Partitions:           {', '.join(status.partitions) or 'none'}",
    ]
    if status.redis_error:
        lines.insert(0, f"REDIS UNREACHABLE: {status.redis_error} (its figures show 0)")
    return lines


class Command(BaseCommand):
    help = (
        "Shows the recording of opens and clicks: events waiting in Redis for a drain, batches "
        "claimed by drains (an old claim means a drain died; the next drains redo it after two "
        "minutes), events spooled to PostgreSQL while Redis was unreachable, the drain lag "
        "(age of the oldest waiting event), events drained per second over the last minute, "
        "and the monthly partitions of the event table. A lag that keeps growing means the "
        "tracking queue needs more workers (celery worker -Q tracking)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="one JSON object per reading")
        parser.add_argument("--watch", action="store_true", help="repeat until Ctrl-C")
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between readings (2)"
        )

    def handle(self, *args, **options):
        try:
            while True:
                status = tracking_status_read()
                if options["json"]:
                    self.stdout.write(json.dumps(dataclasses.asdict(status)))
                else:
                    self.stdout.write("\n".join(status_lines(status)))
                if not options["watch"]:
                    return
                self.stdout.flush()
                time.sleep(max(0.2, options["interval"]))
                if not options["json"]:
                    self.stdout.write("")
        except KeyboardInterrupt:
            return
