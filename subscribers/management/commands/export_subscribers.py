"""`manage.py export_subscribers --account ...`: the browser export, from the command line."""

from __future__ import annotations

import csv

from django.core.management.base import BaseCommand, CommandError

from convertkit.commands import ProgressBar, account_find
from subscribers import selectors
from subscribers.csv import exporter
from subscribers.models import Subscriber, Tag
from subscribers.selectors import SubscriberFilter


class Command(BaseCommand):
    help = (
        "Export an account's subscribers as CSV (email, first_name, state, tags, one column "
        "per custom field, source, created_at, confirmed_at, unsubscribed_at), oldest first. "
        "Cells that a spreadsheet would run as a formula are prefixed with an apostrophe. "
        "Writes to stdout unless -o is given; progress goes to stderr."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, help="Id or name of the account.")
        parser.add_argument(
            "--state", choices=Subscriber.State.values, help="Only subscribers in this state."
        )
        parser.add_argument("--tag", metavar="NAME", help="Only subscribers with this tag.")
        parser.add_argument(
            "--search",
            metavar="TEXT",
            default="",
            help="Only subscribers whose email or first name starts with TEXT (as in the list).",
        )
        parser.add_argument(
            "-o", "--output", metavar="FILE", help="Write to FILE instead of stdout."
        )

    def handle(self, *args, **options):
        account = account_find(options["account"])
        tag = None
        if options["tag"]:
            tag = Tag.objects.filter(account=account, name__iexact=options["tag"].strip()).first()
            if tag is None:
                raise CommandError(f"The account has no tag “{options['tag']}”.")
        filters = SubscriberFilter(
            state=options["state"] or "", tag_id=tag.id if tag else None, q=options["search"]
        )
        counts = selectors.subscriber_counts(account=account)
        estimate = selectors.subscriber_total(
            account=account, filters=filters, counts=counts, tag=tag
        )
        bar = ProgressBar(getattr(self.stderr, "_out", self.stderr), unit="subscribers")
        total = None if estimate.capped else estimate.count

        def on_batch(done: int) -> None:
            bar.update(done, max(total, done) if total is not None else None)

        try:
            out = (
                open(options["output"], "w", newline="", encoding="utf-8")  # noqa: SIM115
                if options["output"]
                else getattr(self.stdout, "_out", self.stdout)
            )
        except OSError as exc:
            raise CommandError(f"Cannot write {options['output']}: {exc.strerror}") from None
        exported = 0
        try:
            writer = csv.writer(out)
            rows = exporter.export_rows(account=account, filters=filters, on_batch=on_batch)
            writer.writerow(next(rows))
            for row in rows:
                writer.writerow(row)
                exported += 1
        finally:
            if options["output"]:
                out.close()
        bar.update(exported, exported, force=True)
        bar.finish()
        if options["output"]:
            self.stderr.write(f"{exported:,} subscribers written to {options['output']}.")
