from __future__ import annotations

import logging

from celery import shared_task

from convertkit.celery import MAIL_RETRY

logger = logging.getLogger(__name__)

# run_import and run_bulk_action never retry: an error marks the Job failed with a message for the
# creator. What protects them is acks_late (settings): a worker killed mid-run leaves the message
# on the queue, and the next worker runs the job again (both are safe to run twice).


@shared_task(name="subscribers.run_import", queue="default", ignore_result=True)
def run_import(job_id: int) -> None:
    """Imports the CSV of an import Job (safe to run again: the merge is an upsert)."""
    from subscribers.csv import importer

    importer.import_job_run(job_id=job_id)


@shared_task(name="subscribers.run_bulk_action", queue="default", ignore_result=True)
def run_bulk_action(job_id: int) -> None:
    """Applies a bulk action Job (tag, untag, unsubscribe, delete) to its filtered set, in batches."""
    from subscribers import bulk

    bulk.bulk_job_run(job_id=job_id)


@shared_task(
    name="subscribers.send_subscriber_email", queue="default", ignore_result=True, **MAIL_RETRY
)
def send_subscriber_email(
    subscriber_id: int,
    subject: str,
    text_body: str,
    html_body: str | None = None,
    message_id: str | None = None,
) -> None:
    """Sends one message to a subscriber; their state is read now, not when it was queued, so
    whoever unsubscribed in between gets nothing."""
    from subscribers.mail import MailRefused, subscriber_email_build
    from subscribers.models import Subscriber

    subscriber = Subscriber.objects.select_related("account").filter(pk=subscriber_id).first()
    if subscriber is None:
        logger.info("Subscriber %s no longer exists; email %r not sent", subscriber_id, subject)
        return
    try:
        subscriber_email_build(
            subscriber=subscriber,
            subject=subject,
            text_body=text_body,
            html_body=html_body,
            message_id=message_id,
        ).send()
    except MailRefused as refused:
        logger.info("Email %r not sent: %s", subject, refused)


@shared_task(
    name="subscribers.send_form_confirmation", queue="default", ignore_result=True, **MAIL_RETRY
)
def send_form_confirmation(signup_id: int) -> None:
    """Sends a signup's confirmation email, unless it was confirmed in the meantime."""
    from subscribers.signup_forms.mail import signup_confirmation_send

    signup_confirmation_send(signup_id=signup_id)


@shared_task(
    name="subscribers.send_form_incentive", queue="default", ignore_result=True, **MAIL_RETRY
)
def send_form_incentive(signup_id: int) -> None:
    """Sends the form's incentive to a confirmed or subscribed signup."""
    from subscribers.signup_forms.mail import signup_incentive_send

    signup_incentive_send(signup_id=signup_id)


@shared_task(name="subscribers.flush_form_views", queue="default", ignore_result=True)
def flush_form_views() -> None:
    """Moves form view counts from Redis to the database (celery beat, every minute)."""
    from subscribers.signup_forms.counters import form_views_flush

    form_views_flush()
