"""How far the recording of events is behind: what `manage.py tracking_status` shows."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import connection
from redis.exceptions import RedisError

from convertkit.redis import redis_client
from tracking.buffer import QUEUE_KEY, WAITING_KEY
from tracking.drain import CLAIMS_KEY, DRAINED_PREFIX
from tracking.partitions import partitions_existing

RATE_WINDOW_S = 60


@dataclass
class TrackingStatus:
    waiting_events: int  # in Redis, not yet claimed by a drain
    waiting_chunks: int
    claimed_batches: int  # claimed by a drain, not yet released (in flight, or its drain died)
    oldest_claim_age_s: float | None
    spooled_rows: int  # written to PostgreSQL while Redis was unreachable, not yet drained
    spooled_events: int
    drain_lag_s: float  # age of the oldest event waiting in Redis or the spool; 0 when none
    drained_per_s: float  # events drained per second, mean of the last minute
    partitions: list[str]
    redis_error: str | None = None  # the Redis figures are 0 when it cannot be reached


def tracking_status_read(*, now: float | None = None) -> TrackingStatus:
    now = time.time() if now is None else now
    oldest: list[float] = []
    redis_error = None
    waiting_events = waiting_chunks = claimed = drained = 0
    oldest_claim_age = None
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.get(WAITING_KEY)
        pipe.llen(QUEUE_KEY)
        pipe.lindex(QUEUE_KEY, 0)
        pipe.zcard(CLAIMS_KEY)
        pipe.zrange(CLAIMS_KEY, 0, 0, withscores=True)
        seconds = range(int(now) - RATE_WINDOW_S, int(now))
        pipe.mget([f"{DRAINED_PREFIX}{second}" for second in seconds])
        counter, waiting_chunks, head, claimed, oldest_claim, per_second = pipe.execute()
    except RedisError as error:
        redis_error = str(error) or error.__class__.__name__
    else:
        waiting_events = max(0, int(counter or 0))
        if head and (head_at := _line_time(head.split("\n", 1)[0])) is not None:
            oldest.append(head_at)
        if oldest_claim:
            oldest_claim_age = max(0.0, now - oldest_claim[0][1])
        drained = sum(int(count) for count in per_second if count)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), "
            "coalesce(sum(length(chunk) - length(replace(chunk, E'\\n', '')) + 1), 0), "
            "extract(epoch FROM min(created_at)) FROM tracking_spooledevents"
        )
        spooled_rows, spooled_events, oldest_spooled = cursor.fetchone()
    if oldest_spooled is not None:
        oldest.append(float(oldest_spooled))
    return TrackingStatus(
        waiting_events=waiting_events,
        waiting_chunks=waiting_chunks,
        claimed_batches=claimed,
        oldest_claim_age_s=oldest_claim_age,
        spooled_rows=spooled_rows,
        spooled_events=int(spooled_events),
        drain_lag_s=max(0.0, now - min(oldest)) if oldest else 0.0,
        drained_per_s=drained / RATE_WINDOW_S,
        partitions=partitions_existing(),
        redis_error=redis_error,
    )


def _line_time(line: str) -> float | None:
    try:
        return int(line.split(" ")[2]) / 1000
    except (IndexError, ValueError):
        return None
