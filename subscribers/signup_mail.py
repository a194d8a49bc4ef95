"""The confirmation and incentive emails of a form: the creator's subject and body with a few
placeholders filled in by plain substitution (no template language, so no template can run code
or loop), sent through the subscriber mail path on the default queue."""

from __future__ import annotations

import re

from subscribers.models import Form

PLACEHOLDER_RE = re.compile(r"\{\{\s*(first_name|confirmation_url|incentive_url)\s*\}\}")
CONFIRMATION_PLACEHOLDER = "{{ confirmation_url }}"
INCENTIVE_PLACEHOLDER = "{{ incentive_url }}"


def _fill(text: str, values: dict[str, str]) -> str:
    return PLACEHOLDER_RE.sub(lambda match: values.get(match[1], ""), text)


def confirmation_email_text(
    form: Form, *, first_name: str, confirmation_url: str
) -> tuple[str, str]:
    """(subject, body) of the confirmation email. The link is appended when the creator's body
    lost its placeholder: a confirmation email without it would be useless."""
    values = {"first_name": first_name or "there", "confirmation_url": confirmation_url}
    body = _fill(form.confirmation_body, values)
    if not PLACEHOLDER_RE.search(form.confirmation_body) or confirmation_url not in body:
        body = f"{body.rstrip()}\n\n{confirmation_url}"
    return _fill(form.confirmation_subject, values), body


def incentive_email_text(form: Form, *, first_name: str, incentive_url: str) -> tuple[str, str]:
    """(subject, body) of the incentive email, with the link appended if the body lacks it."""
    values = {"first_name": first_name or "there", "incentive_url": incentive_url}
    body = _fill(form.incentive_body, values)
    if incentive_url not in body:
        body = f"{body.rstrip()}\n\n{incentive_url}"
    return _fill(form.incentive_subject, values), body
