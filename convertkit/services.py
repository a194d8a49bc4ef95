"""Creator accounts: sign-up, account settings, and mail to creators."""

from __future__ import annotations

from django.db import transaction

from convertkit.mail import TextNamesEmail, default_from_email
from convertkit.models import Account, Membership, User


@transaction.atomic
def user_signup(*, email: str, password: str, account_name: str) -> tuple[User, Account]:
    """Creates the creator's login and their first account, of which they are the owner."""
    user = User.objects.create_user(email=email, password=password)
    account = account_create(owner=user, name=account_name)
    return user, account


@transaction.atomic
def account_create(*, owner: User, name: str) -> Account:
    account = Account.objects.create(name=name, sender_email=owner.email)
    Membership.objects.create(user=owner, account=account, role=Membership.Role.OWNER)
    return account


def account_email_send(*, to: str, subject: str, body: str, html_body: str | None = None) -> None:
    """Mail to a creator at `to` (an address, no name), from DEFAULT_FROM_EMAIL."""
    message = TextNamesEmail(subject=subject, body=body, from_email=default_from_email(), to=[to])
    if html_body:
        message.attach_alternative(html_body, "text/html")
    message.send()
