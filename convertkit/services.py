"""Creator accounts: sign-up, account settings, and mail to creators."""

from __future__ import annotations

import re

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from convertkit.mail import TextNamesEmail, default_from_email
from convertkit.models import Account, Membership, User
from subscribers.models import Form


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


# A handle of 3 to 50 lower-case letters, digits and single hyphens, not at either end.
PUBLIC_SLUG_RE = re.compile(r"[a-z0-9](?:-?[a-z0-9])+")
PUBLIC_SLUG_MIN, PUBLIC_SLUG_MAX = 3, 50
_SLUG_BASE_LENGTH = 40


class ArchiveSettingsRefused(ValueError):
    """The archive's settings cannot be saved as given; the message says why, for the
    creator."""


def public_slug_problem(slug: str, *, account: Account) -> str | None:
    """Why `slug` cannot be the account's public handle, in the creator's words; None when it
    can (lower-cased by the caller)."""
    if not PUBLIC_SLUG_MIN <= len(slug) <= PUBLIC_SLUG_MAX:
        return f"Use {PUBLIC_SLUG_MIN} to {PUBLIC_SLUG_MAX} characters."
    if not PUBLIC_SLUG_RE.fullmatch(slug):
        return (
            "Use lower-case letters, digits and single hyphens only, starting and ending with "
            "a letter or a digit."
        )
    if Account.objects.filter(public_slug=slug).exclude(pk=account.pk).exists():
        return f"“{slug}” is taken. Choose another."
    return None


def public_slug_suggest(name: str) -> str:
    """A handle made from an account's name ("Ann's Kitchen" -> "anns-kitchen"), before any
    suffix that makes it unique."""
    base = re.sub(r"-{2,}", "-", slugify(name))[:_SLUG_BASE_LENGTH].strip("-")
    if len(base) < PUBLIC_SLUG_MIN:
        base = f"{base}-news" if base else "newsletter"
    return base


def account_public_slug_ensure(*, account: Account) -> str:
    """The account's public handle, given one from its name (with -2, -3 ... when taken) if it
    has none yet. The unique constraint decides between two accounts taking one at once."""
    if account.public_slug:
        return account.public_slug
    base = public_slug_suggest(account.name)
    taken = set(
        Account.objects.filter(public_slug__startswith=base).values_list("public_slug", flat=True)
    )
    number = 1
    while True:
        slug = base if number == 1 else f"{base}-{number}"
        number += 1
        if slug in taken:
            continue
        try:
            with transaction.atomic():
                updated = Account.objects.filter(pk=account.pk, public_slug=None).update(
                    public_slug=slug
                )
        except IntegrityError:
            continue
        if not updated:
            account.refresh_from_db(fields=["public_slug"])
            return account.public_slug
        account.public_slug = slug
        return slug


def account_archive_update(
    *, account: Account, public_slug: str, archive_form_id: int | None
) -> None:
    """Saves the archive's settings: the public handle and the signup form shown on its pages
    (one of the account's live forms, or None). ArchiveSettingsRefused when either cannot be
    used; nothing changes then."""
    slug = public_slug.strip().lower()
    problem = public_slug_problem(slug, account=account)
    if problem:
        raise ArchiveSettingsRefused(problem)
    if (
        archive_form_id is not None
        and not Form.objects.filter(account=account, pk=archive_form_id, archived_at=None).exists()
    ):
        raise ArchiveSettingsRefused("Choose one of your forms.")
    try:
        with transaction.atomic():
            Account.objects.filter(pk=account.pk).update(
                public_slug=slug, archive_form_id=archive_form_id
            )
    except IntegrityError:
        raise ArchiveSettingsRefused(f"“{slug}” is taken. Choose another.") from None
    account.public_slug, account.archive_form_id = slug, archive_form_id


def account_email_send(*, to: str, subject: str, body: str, html_body: str | None = None) -> None:
    """Mail to a creator at `to` (an address, no name), from DEFAULT_FROM_EMAIL."""
    message = TextNamesEmail(subject=subject, body=body, from_email=default_from_email(), to=[to])
    if html_body:
        message.attach_alternative(html_body, "text/html")
    message.send()
