"""Thin Celery tasks over the automations engine, each naming its queue."""

from __future__ import annotations

from celery import shared_task

from convertkit.celery import DATABASE_RETRY
from convertkit.redis import run_alone

# While a run of one half of the engine holds its key, the beat's next ticks of that half
# return at once instead of queueing up behind it. Two runs at once would still be safe (every
# claim skips locked rows), only slower: the second scans past the first's locked rows, and one
# consumer keeps the outbox in order. A key outlives a run's time budget
# (engine.RUN_TIME_BUDGET) a little.
_CONSUME_LOCK = "ck:automations:consume"
_ADVANCE_LOCK = "ck:automations:advance"
_LOCK_SECONDS = 35


@shared_task(name="automations.consume", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def consume() -> None:
    """Acts on the event outbox: rules, entry points, events (celery beat, every second)."""
    from automations.engine import outbox_run

    with run_alone(_CONSUME_LOCK, seconds=_LOCK_SECONDS) as alone:
        if alone:
            outbox_run()


@shared_task(name="automations.advance", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def advance() -> None:
    """Moves the journeys whose step is due (celery beat, every second)."""
    from automations.engine import journeys_run

    with run_alone(_ADVANCE_LOCK, seconds=_LOCK_SECONDS) as alone:
        if alone:
            journeys_run()


@shared_task(name="automations.dates", queue="fanout", ignore_result=True, **DATABASE_RETRY)
def dates() -> None:
    """Enters whoever's date comes round this hour (celery beat, every five minutes)."""
    from automations.engine import date_entries_run

    date_entries_run()
