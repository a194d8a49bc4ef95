"""`manage.py seed_demo`: realistic demo subscribers, by the million, for trying pages at scale."""

from __future__ import annotations

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from convertkit.commands import ProgressBar, account_find
from subscribers.seeding import (
    DEMO_ACCOUNT_NAME,
    DEMO_OWNER_EMAIL,
    demo_account_create,
    demo_data_seed,
)

MAX_TAGS = 1000


class Command(BaseCommand):
    help = (
        "Creates realistic demo data fast (generated inside PostgreSQL): subscribers with names, "
        "custom fields (city, company), states (mostly active, some unconfirmed, unsubscribed, "
        "bounced), sources and signup dates spread over the past two years, plus tags, each "
        "subscriber carrying 0 to 3 of them. Addresses are under reserved domains "
        "(gmail.example, example.com, ...), so no demo email can reach a real person. "
        f"Without --account, a new “{DEMO_ACCOUNT_NAME}” account is created, owned by "
        f"{DEMO_OWNER_EMAIL} (a new login gets a random password, printed at the end). "
        "Running it again on the same account adds more subscribers with new addresses and "
        "reuses the tags. Example: manage.py seed_demo --subscribers 1300000"
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--subscribers",
            type=int,
            default=10_000,
            metavar="N",
            help="how many subscribers to add (default 10,000; 2,000,000 take about a minute on 2 cores)",
        )
        parser.add_argument(
            "--account",
            metavar="ID_OR_NAME",
            help=f"add to this existing account (its id or exact name) instead of a new "
            f"“{DEMO_ACCOUNT_NAME}” account",
        )
        parser.add_argument(
            "--tags",
            type=int,
            default=10,
            metavar="K",
            help="how many tags to create or reuse (default 10; 0 for no tags)",
        )
        parser.add_argument(
            "--seed",
            type=int,
            metavar="S",
            help="random seed, to generate the same names, states and tags again",
        )
        parser.add_argument(
            "--owner",
            default=DEMO_OWNER_EMAIL,
            metavar="EMAIL",
            help=f"owner of a new account (default {DEMO_OWNER_EMAIL}); ignored with --account",
        )

    def handle(self, *args, **options):
        count, tags = options["subscribers"], options["tags"]
        if count < 0:
            raise CommandError("--subscribers cannot be negative.")
        if not 0 <= tags <= MAX_TAGS:
            raise CommandError(f"--tags must be between 0 and {MAX_TAGS}.")
        password = None
        try:
            validate_email(options["owner"])
        except ValidationError:
            raise CommandError(f"--owner “{options['owner']}” is not an email address.") from None
        if options["account"]:
            account = account_find(options["account"])
        else:
            account, password = demo_account_create(owner_email=options["owner"])
        # The plain stream: Django's stderr wrapper would add a newline and colour each update.
        bar = ProgressBar(getattr(self.stderr, "_out", self.stderr), unit="subscribers")
        started = time.perf_counter()
        result = demo_data_seed(
            account=account,
            subscribers=count,
            tags=tags,
            seed=options["seed"],
            progress=lambda done, total: bar.update(done, total, force=done >= total),
        )
        seconds = time.perf_counter() - started
        bar.finish()
        self.stdout.write(
            self.style.SUCCESS(
                f"Added {result.subscribers:,} subscribers and {result.taggings:,} taggings "
                f"({len(result.tags)} tags) to “{account.name}” (id {account.pk}) "
                f"in {seconds:.1f}s."
            )
        )
        if password:
            self.stdout.write(f"Log in as {options['owner']} with the password {password}")
