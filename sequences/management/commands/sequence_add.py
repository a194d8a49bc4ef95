"""`manage.py sequence_add SEQUENCE_ID (--email ADDR ... | --tag TAG_ID | --all-active)`: add
subscribers to a sequence, as the subscriber page and the bulk action do."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from convertkit.commands import ProgressBar
from sequences.entry import filtered_subscribers_enrol, subscriber_ids_enrol
from sequences.models import Sequence
from sequences.services import EnrolResult
from subscribers.models import Subscriber, Tag
from subscribers.selectors import SubscriberFilter, subscriber_counts
from subscribers.validation import normalize_email


class Command(BaseCommand):
    help = (
        "Adds subscribers of the sequence's account to sequence SEQUENCE_ID (its id is in its "
        "URL): the addresses given, everyone with a tag, or every active subscriber. Active "
        "subscribers start at its first email; unconfirmed ones once they confirm. Unsubscribed, "
        "bounced and complained subscribers are refused, and anyone already in the sequence "
        "stays where they are (someone who completed it starts again only if it repeats), so "
        "running it twice adds nobody twice. Prints how many were added, restarted and refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("sequence_id", type=int, help="the sequence's id (in its URL)")
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument(
            "--email",
            action="append",
            metavar="ADDR",
            help="a subscriber's address; repeat the option for several",
        )
        who.add_argument(
            "--tag",
            type=int,
            metavar="TAG_ID",
            help="everyone with this tag of the account (its id is in the subscriber list's "
            "URL when filtered by it)",
        )
        who.add_argument(
            "--all-active",
            action="store_true",
            help="every active subscriber of the account",
        )

    def handle(self, *args, **options):
        sequence = Sequence.objects.select_related("account").filter(pk=options["sequence_id"])
        sequence = sequence.first()
        if sequence is None:
            raise CommandError(f"There is no sequence {options['sequence_id']}.")
        if options["email"]:
            result = self._by_email(sequence, options["email"])
        else:
            result = self._filtered(sequence, options)
        self.stdout.write(
            self.style.SUCCESS(
                f"“{sequence.name}”: {result.added:,} added, {result.restarted:,} restarted at "
                f"its first email, {result.refused:,} refused (unsubscribed, bounced or "
                "complained, or already in it)."
            )
        )
        if not sequence.is_running:
            self.stdout.write(
                "The sequence is paused (or has no send days): they wait until it runs."
            )

    def _by_email(self, sequence: Sequence, addresses: list[str]) -> EnrolResult:
        emails = []
        for address in addresses:
            try:
                emails.append(normalize_email(address))
            except ValidationError as error:
                raise CommandError(f"--email {address}: {error.messages[0]}") from None
        found = dict(
            Subscriber.objects.filter(account=sequence.account, email__in=emails).values_list(
                "email", "id"
            )
        )
        missing = sorted(set(emails) - set(found))
        if missing:
            self.stderr.write(
                f"Not on the account's list, so not added: {', '.join(missing)}", self.style.WARNING
            )
        return subscriber_ids_enrol(sequence=sequence, subscriber_ids=list(found.values()))

    def _filtered(self, sequence: Sequence, options) -> EnrolResult:
        account = sequence.account
        if options["tag"] is not None:
            tag = Tag.objects.filter(account=account, pk=options["tag"]).first()
            if tag is None:
                raise CommandError(
                    f"The account of sequence {sequence.pk} has no tag {options['tag']}."
                )
            filters, expected = SubscriberFilter(tag_id=tag.pk), tag.subscriber_count
        else:
            filters = SubscriberFilter(state=Subscriber.State.ACTIVE)
            expected = subscriber_counts(account=account)[Subscriber.State.ACTIVE]
        # The plain stream: Django's stderr wrapper would add a newline and colour each update.
        bar = ProgressBar(getattr(self.stderr, "_out", self.stderr), unit="subscribers")
        result = filtered_subscribers_enrol(
            sequence=sequence,
            filters=filters,
            on_progress=lambda done, so_far: bar.update(
                done, max(done, expected), f"{so_far.added:,} added"
            ),
        )
        done = result.added + result.restarted + result.refused
        bar.update(done, done, force=True)
        bar.finish()
        return result
