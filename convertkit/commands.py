"""What every app's management commands share: finding the account an operator names, and a
text progress bar for long work (on stderr, so stdout stays clean for data)."""

from __future__ import annotations

import time

from django.core.management.base import CommandError

from convertkit.models import Account


def account_find(value: str) -> Account:
    """The account whose id is `value`, else the one account with that name (case-insensitive);
    CommandError saying what to give instead otherwise."""
    if value.isdigit():
        account = Account.objects.filter(pk=int(value)).first()
        if account is None:
            raise CommandError(f"No account has the id {value}.")
        return account
    matches = list(Account.objects.filter(name__iexact=value.strip()).order_by("id")[:5])
    if not matches:
        raise CommandError(f"No account is named “{value}”. Give its name or its id.")
    if len(matches) > 1:
        ids = ", ".join(str(account.pk) for account in matches)
        raise CommandError(f"Several accounts are named “{value}” (ids {ids}): give the id.")
    return matches[0]


class ProgressBar:
    """`[#####-----]  50%  500,000 of 1,000,000 rows` redrawn in place on a terminal.

    Off a terminal (a log file, CI) it prints a line at most every 10 seconds instead.
    """

    WIDTH = 30

    def __init__(self, stream, *, unit: str = "rows"):
        self.stream = stream
        self.unit = unit
        self.is_tty = hasattr(stream, "isatty") and stream.isatty()
        self.last_drawn = 0.0
        self.last_text = ""

    def update(self, done: int, total: int | None, note: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_drawn < (0.2 if self.is_tty else 10):
            return
        self.last_drawn = now
        if total:
            share = min(1.0, done / total)
            filled = int(share * self.WIDTH)
            text = (
                f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {share:4.0%}  "
                f"{done:,} of {total:,} {self.unit}"
            )
        else:
            text = f"{done:,} {self.unit}"
        if note:
            text += f"  {note}"
        if self.is_tty:
            self.stream.write("\r" + text.ljust(len(self.last_text)))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last_text = text

    def finish(self) -> None:
        if self.is_tty and self.last_text:
            self.stream.write("\n")
            self.stream.flush()
