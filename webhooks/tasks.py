"""Thin Celery tasks over webhook delivery, each naming its queue."""

from __future__ import annotations

from celery import shared_task

from convertkit.celery import DATABASE_RETRY
from convertkit.redis import run_alone

# One delivery run at a time per key: a kick that finds a run going returns at once (that run
# takes the new deliveries before it stops; a kick lost in between waits for the next beat).
_DELIVER_LOCK = "ck:webhooks:deliver"
_LOCK_SECONDS = 60


@shared_task(name="webhooks.deliver", queue="send", ignore_result=True, **DATABASE_RETRY)
def deliver() -> None:
    """POSTs the due webhook deliveries (kicked when some are queued; celery beat, every 2 s)."""
    from webhooks.delivery import deliveries_run

    with run_alone(_DELIVER_LOCK, seconds=_LOCK_SECONDS) as alone:
        if alone:
            deliveries_run()


@shared_task(name="webhooks.prune", queue="default", ignore_result=True, **DATABASE_RETRY)
def prune() -> None:
    """Deletes webhook deliveries older than 30 days (celery beat, hourly)."""
    from webhooks.delivery import deliveries_prune

    deliveries_prune()
