"""`manage.py broadcast_status ID [--watch]`: a broadcast's progress, as its page shows it."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from broadcasts.management.commands._broadcast import broadcast_get, progress_note
from broadcasts.models import Broadcast
from broadcasts.progress import broadcast_progress
from convertkit.commands import ProgressBar

# Where --watch stops: nothing more will go out until someone acts.
STOP_STATES = (
    Broadcast.State.SENT,
    Broadcast.State.CANCELLED,
    Broadcast.State.DRAFT,
    Broadcast.State.PAUSED,
)


class Command(BaseCommand):
    help = (
        "Shows broadcast ID's progress: sent, failed, unknown (in flight when a worker died; "
        "never re-sent), skipped (unsubscribed since), remaining, rate and ETA. With --watch, "
        "a progress bar updated every --interval seconds until the broadcast is sent, "
        "cancelled or paused."
    )

    def add_arguments(self, parser):
        parser.add_argument("broadcast_id", type=int, help="the broadcast's id (in its URL)")
        parser.add_argument("--watch", action="store_true", help="follow until it is done")
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between updates (2)"
        )

    def handle(self, *args, **options):
        broadcast = broadcast_get(options["broadcast_id"])
        self.stdout.write(f"Broadcast {broadcast.pk}: “{broadcast.name}”")
        bar = ProgressBar(getattr(self.stderr, "_out", self.stderr), unit="recipients")
        while True:
            progress = broadcast_progress(broadcast=broadcast)
            finished = progress.total - progress.remaining
            done = broadcast.state in STOP_STATES
            if options["watch"]:
                bar.update(finished, progress.total, progress_note(progress), force=done)
            if not options["watch"] or done:
                break
            time.sleep(max(0.2, options["interval"]))
            broadcast.refresh_from_db()
        bar.finish()
        self.stdout.write(progress_note(progress))
        if broadcast.paused_reason:
            self.stdout.write(broadcast.paused_reason)
