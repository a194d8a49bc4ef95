"""Thin Celery tasks of tracking, all on the "tracking" queue."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


# Beat queues one every second: a message not started within 10 s is dropped rather than
# piling up behind a stopped worker (the next one drains everything anyway).
@shared_task(name="tracking.drain", queue="tracking", ignore_result=True, expires=10)
def drain() -> None:
    """Moves buffered open and click events from Redis (and the PostgreSQL spool) into the
    Event table and the rollups, for up to about 10 seconds."""
    from tracking.drain import tracking_drain

    report = tracking_drain()
    if report.taken_over or report.malformed:
        logger.warning("Tracking drain: %s", report)


@shared_task(name="tracking.partitions_ensure", queue="tracking", ignore_result=True)
def partitions_ensure() -> None:
    """Creates the monthly partitions of tracking_event ahead of time."""
    from tracking.partitions import partitions_ensure as ensure

    created = ensure()
    if created:
        logger.info("Created event partitions: %s", ", ".join(created))


@shared_task(name="tracking.drained_batches_prune", queue="tracking", ignore_result=True)
def drained_batches_prune() -> None:
    """Deletes the markers of batches drained long ago (tracking.drain.drained_batches_prune)."""
    from tracking.drain import drained_batches_prune as prune

    prune()
