"""Thin Celery tasks over broadcasts.pipeline, each naming its queue. Every task is safe to run
twice (acks_late redelivers a task whose worker died)."""

from __future__ import annotations

import logging

from celery import shared_task

from convertkit.celery import DATABASE_RETRY, MAIL_RETRY

logger = logging.getLogger(__name__)


@shared_task(name="broadcasts.fan_out", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def fan_out(broadcast_id: int) -> None:
    """Snapshots the audience into deliveries (once) and publishes the send batches."""
    from broadcasts.pipeline import fan_out as fan_out_run

    fan_out_run(broadcast_id=broadcast_id)


@shared_task(name="broadcasts.send_batch", queue="send", ignore_result=True, **DATABASE_RETRY)
def send_batch(broadcast_id: int, first_id: int, last_id: int) -> None:
    """Sends one id range of a broadcast's deliveries; queues itself again (with a countdown)
    for what must wait: retries backing off, a rate limit, the task's time budget, Redis."""
    from broadcasts.pipeline import send_batch as send_batch_run

    again = send_batch_run(broadcast_id=broadcast_id, first_id=first_id, last_id=last_id)
    if again is not None:
        send_batch.apply_async((broadcast_id, first_id, last_id), countdown=again)


@shared_task(
    name="broadcasts.cancel_deliveries", queue="default", ignore_result=True, **DATABASE_RETRY
)
def cancel_deliveries(broadcast_id: int) -> None:
    from broadcasts.pipeline import deliveries_cancel

    deliveries_cancel(broadcast_id=broadcast_id)


@shared_task(name="broadcasts.sweep", queue="default", ignore_result=True)
def sweep() -> None:
    """Settles the claims of dead send tasks and republishes lost ones (celery beat, every ten
    seconds)."""
    from broadcasts.pipeline import sweep as sweep_run

    report = sweep_run()
    if report.unknown or report.released or report.republished or report.finished:
        logger.warning("Broadcast sweep: %s", report)


@shared_task(name="broadcasts.start_scheduled", queue="default", ignore_result=True)
def start_scheduled() -> None:
    """Starts the scheduled broadcasts whose time has come (celery beat, every minute)."""
    from broadcasts.services import broadcasts_due_send

    broadcasts_due_send()


@shared_task(name="broadcasts.send_test", queue="default", ignore_result=True, **MAIL_RETRY)
def send_test(broadcast_id: int, to_email: str, subscriber_id: int | None = None) -> None:
    """Sends a test copy of the broadcast as saved to `to_email` (the creator), with the data
    of the subscriber `subscriber_id` of the same account (sample data when None)."""
    from broadcasts.models import Broadcast
    from broadcasts.rendering import RenderFailed, test_message_build
    from subscribers.models import Subscriber

    broadcast = Broadcast.objects.select_related("account").filter(pk=broadcast_id).first()
    if broadcast is None:
        return
    subscriber = (
        Subscriber.objects.filter(pk=subscriber_id, account_id=broadcast.account_id).first()
        if subscriber_id
        else None
    )
    try:
        message = test_message_build(broadcast=broadcast, to_email=to_email, subscriber=subscriber)
    except RenderFailed as failed:
        logger.info("Test of broadcast %s not sent: %s", broadcast_id, failed)
        return
    message.send()
