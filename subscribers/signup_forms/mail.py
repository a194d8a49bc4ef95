"""The confirmation and incentive emails of a form: the creator's subject and body with a few
placeholders filled in by plain substitution (no template language, so no template can run code
or loop), sent through the subscriber mail path on the default queue."""

from __future__ import annotations

import logging
import re

from subscribers.mail import MailRefused, subscriber_email_build
from subscribers.models import Form, Signup
from subscribers.signup_forms.signup import confirmation_url, incentive_url

logger = logging.getLogger(__name__)

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


def _signup_for_mail(signup_id: int) -> Signup | None:
    signup = (
        Signup.objects.select_related("form", "subscriber", "subscriber__account")
        .filter(pk=signup_id)
        .first()
    )
    if signup is None:
        logger.info("Signup %s no longer exists; no email sent", signup_id)
    return signup


def signup_confirmation_send(*, signup_id: int) -> None:
    """Sends the confirmation email of a pending signup. The state is read now: a signup
    confirmed meanwhile, or a subscriber who bounced or complained, gets nothing."""
    signup = _signup_for_mail(signup_id)
    if signup is None or signup.outcome != Signup.Outcome.PENDING:
        return
    subject, body = confirmation_email_text(
        signup.form,
        first_name=signup.data.get("first_name") or signup.subscriber.first_name,
        confirmation_url=confirmation_url(signup),
    )
    try:
        subscriber_email_build(
            subscriber=signup.subscriber, subject=subject, text_body=body, to_unsubscribed=True
        ).send()
    except MailRefused as refused:
        logger.info("Confirmation of signup %s not sent: %s", signup_id, refused)


def signup_incentive_send(*, signup_id: int) -> None:
    """Sends the form's incentive to a subscriber who confirmed or subscribed."""
    signup = _signup_for_mail(signup_id)
    if signup is None or signup.outcome == Signup.Outcome.PENDING or not signup.form.has_incentive:
        return
    subject, body = incentive_email_text(
        signup.form,
        first_name=signup.subscriber.first_name,
        incentive_url=incentive_url(signup),
    )
    try:
        subscriber_email_build(subscriber=signup.subscriber, subject=subject, text_body=body).send()
    except MailRefused as refused:
        logger.info("Incentive of signup %s not sent: %s", signup_id, refused)
