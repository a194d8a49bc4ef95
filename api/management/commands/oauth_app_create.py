"""`manage.py oauth_app_create --name NAME --redirect-uri URI`: register a third-party app for
the API's OAuth (api.oauth) and print its client id and secret."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from api.oauth import oauth_application_create


class Command(BaseCommand):
    help = (
        "Registers a third-party app that creators can connect to their account through "
        "/v4/oauth/authorize (authorization code with PKCE, refresh tokens). Prints the client "
        "id and the client secret; the secret is stored hashed and shown this once."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--name", required=True, help="the app's name, shown on the consent page"
        )
        parser.add_argument(
            "--redirect-uri",
            action="append",
            required=True,
            dest="redirect_uris",
            help="where the creator is sent back with the code (exact match); repeat for several",
        )
        parser.add_argument(
            "--public",
            action="store_true",
            help="a public client (a single-page or mobile app that cannot keep a secret): "
            "the token endpoint then asks for no client secret, only the PKCE verifier",
        )

    def handle(self, *args, **options):
        try:
            application, secret = oauth_application_create(
                name=options["name"],
                redirect_uris=options["redirect_uris"],
                confidential=not options["public"],
            )
        except ValidationError as error:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
            )
            raise CommandError(f"The app was not created: {problems}") from None
        self.stdout.write(self.style.SUCCESS(f"App “{application.name}” registered."))
        self.stdout.write(f"client_id: {application.client_id}")
        if not options["public"]:
            self.stdout.write(f"client_secret: {secret}")
            self.stdout.write("Copy the secret now: it is stored hashed and cannot be shown again.")
