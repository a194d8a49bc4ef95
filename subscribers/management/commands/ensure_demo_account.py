"""`manage.py ensure_demo_account`: the demo login `make run` prints, created once, never twice."""

from __future__ import annotations

import random

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from convertkit import services
from convertkit.dev.devstack import DEMO_EMAIL, DEMO_PASSWORD
from convertkit.models import Account, Membership, User
from subscribers.models import Form, Subscriber, Tagging
from subscribers.services import tag_get_or_create
from subscribers.signup_forms.services import form_create

DEMO_ACCOUNT_NAME = "Demo Newsletter"
DEMO_TAGS = ("customer", "newsletter", "webinar-2024")
_FIRST_NAMES = ("Ada", "Ben", "Chloé", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivo", "Jun")


@transaction.atomic
def demo_account_ensure(
    *, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD, subscribers: int = 30
) -> tuple[User, Account, bool]:
    """The demo login and its account, created if missing; returns (user, account, created).

    1. The user is created with `password` only if missing: an existing one keeps its password.
    2. Its first account is created if it has none, and given a sender and a postal address, so a
       broadcast can be sent from it straight away.
    3. An account without subscribers gets `subscribers` demo ones, a few tags, and taggings.
    4. An account without forms gets a signup form (double opt-in, tagging "newsletter"), so its
       hosted page and embed code can be tried at once.
    """
    user = User.objects.filter(email__iexact=email).first()
    created = user is None
    if created:
        user = User.objects.create_user(email=email, password=password)
    membership = (
        Membership.objects.filter(user=user).select_related("account").order_by("id").first()
    )
    account = (
        membership.account
        if membership
        else services.account_create(owner=user, name=DEMO_ACCOUNT_NAME)
    )
    defaults = {
        "sender_name": "Demo Sender",
        "sender_email": email,
        "postal_address": "1 Demo Street, Springfield, USA",
    }
    changed = [field for field, value in defaults.items() if not getattr(account, field).strip()]
    for field in changed:
        setattr(account, field, defaults[field])
    if changed:
        account.save(update_fields=changed)
    if not Subscriber.objects.filter(account=account).exists():
        _demo_subscribers_create(account=account, count=subscribers)
    if not Form.objects.filter(account=account).exists():
        form_create(
            account=account,
            name="Newsletter signup",
            headline=f"Join {account.name}",
            description="One email a week with what we are working on. No spam, ever.",
            fields=[{"key": "email"}, {"key": "first_name"}],
            tag_names=["newsletter"],
        )
    return user, account, created


def _demo_subscribers_create(*, account: Account, count: int) -> None:
    rng = random.Random(account.id)
    states = [Subscriber.State.ACTIVE] * 8 + [
        Subscriber.State.UNCONFIRMED,
        Subscriber.State.UNSUBSCRIBED,
    ]
    people = Subscriber.objects.bulk_create(
        Subscriber(
            account=account,
            email=f"reader{number}@example.org",
            first_name=rng.choice(_FIRST_NAMES),
            state=rng.choice(states),
            source="demo",
        )
        for number in range(1, count + 1)
    )
    tags = [tag_get_or_create(account=account, name=name) for name in DEMO_TAGS]
    Tagging.objects.bulk_create(
        Tagging(account=account, tag=tag, subscriber=person)
        for person in people
        for tag in tags
        if rng.random() < 0.4
    )


class Command(BaseCommand):
    help = (
        "Creates the demo login and account that `make run` prints (only with DEBUG=true): "
        f"{DEMO_EMAIL} / {DEMO_PASSWORD}, with a postal address, some demo subscribers and "
        "tags, and a signup form. Safe to run again: nothing is created twice and an existing password is kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", default=DEMO_EMAIL, help=f"login email ({DEMO_EMAIL})")
        parser.add_argument(
            "--password", default=DEMO_PASSWORD, help=f"password for a new login ({DEMO_PASSWORD})"
        )
        parser.add_argument(
            "--subscribers",
            type=int,
            default=30,
            help="demo subscribers to create when the account has none (30)",
        )

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError(
                "ensure_demo_account creates a login whose password is published; "
                "it runs only with DEBUG=true."
            )
        if options["subscribers"] < 0:
            raise CommandError("--subscribers cannot be negative")
        user, account, created = demo_account_ensure(
            email=options["email"], password=options["password"], subscribers=options["subscribers"]
        )
        password = (
            options["password"] if created else f"{options['password']} (unless you changed it)"
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo login {'created' if created else 'ready'}: {user.email} / {password}"
                f"  (account: {account.name})"
            )
        )
