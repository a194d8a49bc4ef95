"""Thin Celery tasks over webhook delivery, each naming its queue."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from convertkit.celery import DATABASE_RETRY
from convertkit.redis import run_alone

# At most WEBHOOK_DELIVERY_RUNS delivery runs at once, each holding one of these keys: a kick
# that finds them all taken returns at once (the runs going take the new deliveries before
# they stop; a kick lost in between waits for the next beat). Runs side by side are safe (each
# claim skips locked rows) and are how more worker processes deliver more.
_DELIVER_LOCK = "ck:webhooks:deliver:{slot}"
_LOCK_SECONDS = 60


@shared_task(name="webhooks.deliver", queue="send", ignore_result=True, **DATABASE_RETRY)
def deliver() -> None:
    """POSTs the due webhook deliveries (kicked when some are queued; celery beat, every 2 s)."""
    from webhooks.delivery import deliveries_run

    for slot in range(settings.WEBHOOK_DELIVERY_RUNS):
        with run_alone(_DELIVER_LOCK.format(slot=slot), seconds=_LOCK_SECONDS) as alone:
            if alone:
                deliveries_run()
                return


@shared_task(name="webhooks.prune", queue="default", ignore_result=True, **DATABASE_RETRY)
def prune() -> None:
    """Deletes webhook deliveries older than 30 days (celery beat, hourly)."""
    from webhooks.delivery import deliveries_prune

    deliveries_prune()
