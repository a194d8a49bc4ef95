from __future__ import annotations

from celery import shared_task

from convertkit.celery import MAIL_RETRY


@shared_task(
    name="convertkit.send_account_email", queue="default", ignore_result=True, **MAIL_RETRY
)
def send_account_email(*, to: str, subject: str, body: str, html_body: str | None = None) -> None:
    """Sends a message to a creator (password reset, notices); retried on connection errors."""
    from convertkit.services import account_email_send

    account_email_send(to=to, subject=subject, body=body, html_body=html_body)
