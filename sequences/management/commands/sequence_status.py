"""`manage.py sequence_status ID [--watch]`: where a sequence's subscribers stand and what each
of its emails sent, as the sequence page shows them (sequences.selectors.sequence_status)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sequences.models import Sequence
from sequences.selectors import SequenceStatus, send_time_label, sequence_status, state_label


def _when(moment) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}" if moment else "nobody waiting"


def status_lines(status: SequenceStatus) -> list[str]:
    sequence, counts = status.sequence, status.counts
    excluded = "" if counts.excluded is None else f", excluded now {counts.excluded:,}"
    lines = [
        f"Sequence {sequence.pk}: “{sequence.name}” ({sequence.account.name})",
        f"State:        {state_label(sequence)[1]}; sends {send_time_label(sequence)}",
        f"Subscribers:  active {counts.active:,}{excluded}, unconfirmed {counts.unconfirmed:,}, "
        f"completed {counts.completed:,}, stopped {counts.stopped:,}, removed {counts.removed:,}",
        f"Next due:     {_when(status.due.next_at)}; due now {status.due.now:,}",
        "",
        f"{'#':>3}  {'state':<9} {'sent':>10} {'queued':>10} {'failed':>8} {'unknown':>8}  email",
    ]
    for row in status.emails:
        message = row.message
        lines.append(
            f"{row.position:>3}  {'published' if row.email.published else 'draft':<9} "
            f"{message.sent_count:>10,} {row.queued:>10,} {message.failed_count:>8,} "
            f"{message.unknown_count:>8,}  {row.name} ({row.delay.lower()})"
        )
    if not status.emails:
        lines.append("     (no email yet)")
    return lines


class Command(BaseCommand):
    help = (
        "Shows sequence ID: its state and send time; its subscribers by state (active, "
        "excluded now by its exclusions, unconfirmed, completed, stopped by an unsubscribe, "
        "bounce or complaint, removed); when the next email is due and how many are due now "
        "(a number that keeps growing means the scheduler or the send workers are behind); "
        "and per email, in order, sent, queued, failed and unknown (in flight when a worker "
        "died; never re-sent). With --watch, again every --interval seconds until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("sequence_id", type=int, help="the sequence's id (in its URL)")
        parser.add_argument("--watch", action="store_true", help="repeat until Ctrl-C")
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between readings (2)"
        )

    def handle(self, *args, **options):
        sequence = (
            Sequence.objects.select_related("account").filter(pk=options["sequence_id"]).first()
        )
        if sequence is None:
            raise CommandError(f"There is no sequence {options['sequence_id']}.")
        timezone.activate(sequence.account.time_zone)
        try:
            while True:
                status = sequence_status(sequence=sequence)
                self.stdout.write("\n".join(status_lines(status)))
                if not options["watch"]:
                    return
                self.stdout.flush()
                time.sleep(max(0.2, options["interval"]))
                sequence.refresh_from_db()
                self.stdout.write("")
        except KeyboardInterrupt:
            return
