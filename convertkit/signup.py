"""Creating a creator's login, through a link sent to their address.

The sign-up form answers the same whether or not an address has a login, so it cannot be used to
find out who has an account: it takes only the address and sends one message either way. A new
address gets a link to finish signing up; an address that has a login gets a note saying so,
with links to log in and to reset the password. The link carries the address, signed and
timestamped; the login and its first account are created only when the holder of the address
opens it and chooses a password (so nobody can sign up with someone else's address and a
password of their own choosing).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import IntegrityError
from django.template.loader import render_to_string
from django.urls import reverse

from convertkit import services
from convertkit.models import Account, User
from convertkit.tasks import send_account_email

SALT = "convertkit.signup"
LINK_MAX_AGE = timedelta(days=3)


class SignupLinkInvalid(Exception):
    """A sign-up link that was damaged or forged (`expired` False) or is too old (True)."""

    def __init__(self, *, expired: bool) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


class SignupLinkUsed(Exception):
    """The address of a sign-up link has a login already (the link was used, or the address
    signed up again in the meantime)."""


def signup_email_send(*, email: str) -> None:
    """Queues the one message a sign-up sends to `email`: the link to finish signing up, or,
    when the address has a login already, a note saying so."""
    email = email.strip().lower()
    context = {"email": email, "site_url": settings.SITE_URL, "days": LINK_MAX_AGE.days}
    if User.objects.filter(email__iexact=email).exists():
        subject = "You already have a ConvertKit login"
        body = render_to_string("registration/signup_email_existing.txt", context)
    else:
        subject = "Finish creating your ConvertKit account"
        token = signing.dumps(email, salt=SALT)
        context["link"] = settings.SITE_URL + reverse("signup_finish", kwargs={"token": token})
        body = render_to_string("registration/signup_email.txt", context)
    send_account_email.delay_on_commit(to=email, subject=subject, body=body)


def signup_email_from_token(token: str) -> str:
    """The address a sign-up link was sent to: SignupLinkInvalid if the link is damaged or too
    old, SignupLinkUsed if the address has a login already."""
    try:
        email = signing.loads(token, salt=SALT, max_age=LINK_MAX_AGE)
    except signing.SignatureExpired:
        raise SignupLinkInvalid(expired=True) from None
    except signing.BadSignature:
        raise SignupLinkInvalid(expired=False) from None
    if User.objects.filter(email__iexact=email).exists():
        raise SignupLinkUsed
    return email


def signup_complete(*, email: str, password: str, account_name: str) -> tuple[User, Account]:
    """Creates the login and its first account; SignupLinkUsed if the address has a login."""
    try:
        return services.user_signup(email=email, password=password, account_name=account_name)
    except IntegrityError:
        # The unique address decides, so two tabs finishing at once create one login.
        if User.objects.filter(email__iexact=email).exists():
            raise SignupLinkUsed from None
        raise
