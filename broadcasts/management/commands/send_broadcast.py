"""`manage.py send_broadcast ID`: start sending a broadcast now, as the Send button does."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from broadcasts.management.commands._broadcast import broadcast_get
from broadcasts.services import SendRefused, broadcast_send


class Command(BaseCommand):
    help = (
        "Starts sending broadcast ID now (the Send button): checks it can be sent, freezes it, "
        "and queues the fan-out for the workers. Running it again for a broadcast already "
        "sending changes nothing. Follow it with `manage.py broadcast_status ID --watch`."
    )

    def add_arguments(self, parser):
        parser.add_argument("broadcast_id", type=int, help="the broadcast's id (in its URL)")

    def handle(self, *args, **options):
        broadcast = broadcast_get(options["broadcast_id"])
        try:
            started = broadcast_send(broadcast=broadcast)
        except SendRefused as refused:
            raise CommandError(f"Broadcast {broadcast.pk} cannot be sent: {refused}") from None
        if started:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Broadcast {broadcast.pk} “{broadcast.name}” is sending; the workers "
                    "take it from here."
                )
            )
        else:
            self.stdout.write(
                f"Broadcast {broadcast.pk} is already {broadcast.state}: nothing done."
            )
