from __future__ import annotations

from celery import shared_task

from convertkit import services


@shared_task(
    name="convertkit.send_account_email",
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def send_account_email(*, to: str, subject: str, body: str, html_body: str | None = None) -> None:
    """Sends a message to a creator (password reset, notices); retried on connection errors."""
    services.account_email_send(to=to, subject=subject, body=body, html_body=html_body)
