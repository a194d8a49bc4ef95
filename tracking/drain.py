"""Draining buffered events into PostgreSQL (task tracking.drain, every second, queue tracking).

Web processes push chunks of event lines onto the Redis list QUEUE_KEY (tracking/buffer.py).
A drain moves them into the store in batches, so that nothing acknowledged is lost and nothing
is counted twice, with any number of drains running at once and any of them killed at any time:

1. Claim: a Lua script moves chunks (up to TRACKING_DRAIN_BATCH events) from the list into a
   claim list named by a fresh batch key, records the key in the CLAIMS_KEY sorted set with the
   claim time, and takes the events off the waiting counter, all at once.
2. Store: the lines become TrackedEvents and `events_store(events, batch_key=key)` writes them
   in one transaction, which also inserts the DrainedBatch(key) marker.
3. Release: the claim list and its CLAIMS_KEY entry are deleted.

A drain killed (or failing) before its COMMIT leaves its claim behind; once older than
CLAIM_TIMEOUT_S (far longer than any drain transaction) a later drain takes it over and drains
it under the same key. One killed after its COMMIT but before the release leaves a claim whose
key is already in DrainedBatch: draining it again writes nothing. Chunks the web processes
spooled to PostgreSQL while Redis was away (SpooledEvents) are drained too, each row stored and
deleted in one transaction.

A drain runs until there is nothing left or its time budget is spent. Malformed lines are
counted, logged and skipped: they never fail the rest of their batch.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

from convertkit.redis import redis_client
from tracking.buffer import QUEUE_KEY, WAITING_KEY
from tracking.models import DrainedBatch, EventKind, Machine, SpooledEvents
from tracking.store import TrackedEvent, events_store

logger = logging.getLogger(__name__)

CLAIMS_KEY = "ck:trk:claims"
CLAIM_PREFIX = "ck:trk:claim:"
# Events drained per second, one short-lived counter per second, for tracking_status.
DRAINED_PREFIX = "ck:trk:drained:"
DRAINED_TTL_S = 120
CLAIM_TIMEOUT_S = 120
# How long DrainedBatch markers are kept at least (see drained_batches_prune).
DRAINED_BATCH_KEEP_S = 24 * 3600
DRAIN_BUDGET_S = 10.0

_CLAIM_SCRIPT = """
local limit = tonumber(ARGV[1])
local events = 0
while events < limit do
    local chunk = redis.call('LPOP', KEYS[1])
    if not chunk then break end
    redis.call('RPUSH', KEYS[4], chunk)
    local _, newlines = string.gsub(chunk, '\\n', '')
    events = events + newlines + 1
end
if events > 0 then
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
    redis.call('DECRBY', KEYS[2], events)
end
return events
"""
# Takes over the oldest claim older than the cutoff: its time becomes now, so that no other
# drain takes it over too while this one works on it.
_TAKE_OVER_SCRIPT = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #stale == 0 then return false end
redis.call('ZADD', KEYS[1], ARGV[2], stale[1])
return stale[1]
"""

_KINDS = frozenset(EventKind.values)
_MACHINES = frozenset(Machine.values)
_BIGINT = 2**63


@dataclass
class DrainReport:
    batches: int = 0
    stored: int = 0
    orphaned: int = 0  # events of deliveries deleted since
    malformed: int = 0  # lines skipped
    already_drained: int = 0  # batches found in DrainedBatch: written before, not again
    taken_over: int = 0  # stale claims of drains that died
    spooled_rows: int = 0


@cache
def _scripts():
    """The Lua scripts, loaded by their SHA on first use; called with the current client."""
    client = redis_client()
    return client.register_script(_CLAIM_SCRIPT), client.register_script(_TAKE_OVER_SCRIPT)


def events_parse(chunks: Iterable[str], report: DrainReport) -> list[TrackedEvent]:
    """The events of chunks of buffer lines (see tracking/buffer.py); malformed lines are
    counted in report.malformed and skipped."""
    events = []
    bad: list[str] = []
    from_timestamp, utc = dt.datetime.fromtimestamp, dt.UTC
    for chunk in chunks:
        for line in chunk.split("\n"):
            try:
                kind, machine, ts_ms, _broadcast_id, delivery_id, link_id = map(
                    int, line.split(" ")
                )
                if kind not in _KINDS or machine not in _MACHINES:
                    raise ValueError(line)
                if not 0 < delivery_id < _BIGINT or not 0 <= link_id < _BIGINT:
                    raise ValueError(line)
                if link_id and kind != EventKind.CLICK:
                    raise ValueError(line)
                occurred_at = from_timestamp(ts_ms / 1000, utc)
            except (ValueError, OverflowError, OSError):
                bad.append(line)
                continue
            events.append(TrackedEvent(kind, occurred_at, delivery_id, link_id, machine))
    if bad:
        report.malformed += len(bad)
        logger.warning("Tracking drain skipped %d malformed lines, first: %r", len(bad), bad[0])
    return events


def tracking_drain(*, budget_s: float = DRAIN_BUDGET_S, now: float | None = None) -> DrainReport:
    """Drains until Redis and the spool are empty or `budget_s` is spent. `now` (a Unix time)
    decides which claims are stale; tests pass a later one instead of waiting."""
    deadline = time.monotonic() + budget_s
    report = DrainReport()
    try:
        while time.monotonic() < deadline and _stale_claim_drain(report, now=now):
            pass
    except RedisError as error:
        logger.warning("Tracking drain cannot reach Redis: %s", error)
    while time.monotonic() < deadline and _spooled_row_drain(report):
        pass
    try:
        while time.monotonic() < deadline and _fresh_claim_drain(report):
            pass
    except RedisError as error:
        logger.warning("Tracking drain cannot reach Redis: %s", error)
    return report


def batch_claim() -> str | None:
    """Claims the oldest waiting chunks, up to TRACKING_DRAIN_BATCH events, under a fresh
    batch key; None when nothing waits."""
    batch_key = f"r:{uuid.uuid4().hex}"
    claim, _take_over = _scripts()
    events = claim(
        keys=[QUEUE_KEY, WAITING_KEY, CLAIMS_KEY, CLAIM_PREFIX + batch_key],
        args=[settings.TRACKING_DRAIN_BATCH, time.time(), batch_key],
        client=redis_client(),
    )
    return batch_key if events else None


def _fresh_claim_drain(report: DrainReport) -> bool:
    batch_key = batch_claim()
    if batch_key is None:
        return False
    claim_drain(batch_key, report)
    return True


def _stale_claim_drain(report: DrainReport, *, now: float | None) -> bool:
    now = time.time() if now is None else now
    _claim, take_over = _scripts()
    batch_key = take_over(
        keys=[CLAIMS_KEY], args=[now - CLAIM_TIMEOUT_S, now], client=redis_client()
    )
    if batch_key is None:
        return False
    report.taken_over += 1
    logger.warning("Tracking drain takes over the stale claim %s of a drain that died", batch_key)
    claim_drain(batch_key, report)
    return True


def drained_batches_prune(*, keep_s: float = DRAINED_BATCH_KEEP_S) -> int:
    """Deletes the DrainedBatch markers no claim can need any more; returns how many. A marker
    matters only while its claim may still be drained again, and every claim still in Redis was
    made before its marker: markers older than both `keep_s` and the oldest live claim go."""
    cutoff = time.time() - keep_s
    oldest = redis_client().zrange(CLAIMS_KEY, 0, 0, withscores=True)
    if oldest:
        cutoff = min(cutoff, oldest[0][1] - CLAIM_TIMEOUT_S)
    deleted, _ = DrainedBatch.objects.filter(
        drained_at__lt=dt.datetime.fromtimestamp(cutoff, dt.UTC)
    ).delete()
    return deleted


def claim_events(batch_key: str, report: DrainReport) -> list[TrackedEvent]:
    return events_parse(redis_client().lrange(CLAIM_PREFIX + batch_key, 0, -1), report)


def claim_drain(batch_key: str, report: DrainReport) -> None:
    """Stores a claimed batch under its key, then releases the claim."""
    events = claim_events(batch_key, report)
    # Should this fail (PostgreSQL away), the claim stays and is taken over once stale, under
    # the same key: safe even if the COMMIT went through before the error.
    result = events_store(events, batch_key=batch_key) if events else None
    pipe = redis_client().pipeline(transaction=True)
    pipe.delete(CLAIM_PREFIX + batch_key)
    pipe.zrem(CLAIMS_KEY, batch_key)
    pipe.execute()
    _report_add(report, result)


def _spooled_row_drain(report: DrainReport) -> bool:
    with transaction.atomic():
        row = SpooledEvents.objects.select_for_update(skip_locked=True).order_by("id").first()
        if row is None:
            return False
        events = events_parse([row.chunk], report)
        result = events_store(events, batch_key=f"spool:{row.pk}") if events else None
        row.delete()
    report.spooled_rows += 1
    _report_add(report, result)
    return True


def _report_add(report: DrainReport, result) -> None:
    report.batches += 1
    if result is None:
        return
    if result.already_drained:
        report.already_drained += 1
        return
    report.stored += result.stored
    report.orphaned += result.orphaned
    drained = result.stored + result.orphaned
    second_key = f"{DRAINED_PREFIX}{int(time.time())}"
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.incrby(second_key, drained)
        pipe.expire(second_key, DRAINED_TTL_S)
        pipe.execute()
    except RedisError:
        pass  # a rate figure of tracking_status, not worth failing a drain for
