"""The web process's event buffer: requests append, one background thread hands over.

A request appends one text line per event and returns; it never waits on Redis or PostgreSQL.
The line format, shared with the drain (tracking/drain.py):

    kind machine ts_ms broadcast_id delivery_id link_id       e.g. "2 0 1764450000123 7 912 31"

A daemon thread, started lazily by the first event of each process (so after gunicorn's fork),
hands the buffer over every TRACKING_FLUSH_MS, or as soon as TRACKING_BUFFER_EVENTS are waiting:

1. All buffered lines become ONE element of the Redis list QUEUE_KEY (lines joined by "\\n"),
   pushed with the waiting-events counter in one MULTI, so the counter never disagrees with
   the list.
2. If Redis cannot be reached, the chunk is written to SpooledEvents in PostgreSQL instead (the
   thread's own connection) and drained from there. (Should Redis time out after it did write
   the chunk, the chunk arrives twice: losing nothing is worth that rare double count.)
3. If both fail, the chunks are held and retried at the next flush; past HOLD_MAX_EVENTS the
   oldest are dropped, logged as errors.

A graceful exit flushes synchronously (atexit, and gunicorn's worker_exit hook in
convertkit/gunicorn_conf.py): only a hard kill loses what the buffer held, at most one flush
interval of one process.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from redis.exceptions import RedisError

from convertkit.redis import redis_client
from tracking.models import SpooledEvents

logger = logging.getLogger(__name__)

QUEUE_KEY = "ck:trk:events"
WAITING_KEY = "ck:trk:waiting"
# About 5 MB of text, 10 MB in memory: minutes of one busy process's events while Redis and
# PostgreSQL are away.
HOLD_MAX_EVENTS = 100_000


class EventBuffer:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []
        # One flush at a time (the thread's, or the exit's); held chunks are only touched here.
        self._flush_lock = threading.Lock()
        self._held: deque[list[str]] = deque()
        self._held_events = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._redis_down = False

    def append(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            waiting = len(self._lines)
            if self._thread is None:
                self._thread_start()
        if waiting >= settings.TRACKING_BUFFER_EVENTS:
            self._wake.set()

    def _thread_start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tracking-flush", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(settings.TRACKING_FLUSH_MS / 1000)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must outlive any surprise; the events stay held
                logger.exception("Tracking buffer flush failed")

    def after_fork(self) -> None:
        """In a forked child: the parent's lines are the parent's to flush, and its thread and
        locks did not come along."""
        self._reset()

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                lines, self._lines = self._lines, []
            if lines:
                self._held.append(lines)
                self._held_events += len(lines)
            use_redis = True
            while self._held:
                chunk = self._held[0]
                text = "\n".join(chunk)
                if use_redis:
                    use_redis = self._push(text, len(chunk))
                if not use_redis and not self._spool(text):
                    break
                self._held.popleft()
                self._held_events -= len(chunk)
            self._held_trim()

    def _push(self, text: str, events: int) -> bool:
        try:
            chunk_push(text=text, events=events)
        except RedisError as error:
            if not self._redis_down:
                logger.warning("Tracking events go to PostgreSQL, Redis unreachable: %s", error)
            self._redis_down = True
            return False
        if self._redis_down:
            logger.warning("Tracking events go to Redis again")
            self._redis_down = False
        return True

    def _spool(self, text: str) -> bool:
        if not connection.in_atomic_block:
            close_old_connections()  # this thread's connection may have died since last time
        try:
            SpooledEvents.objects.create(chunk=text)
        except DatabaseError as error:
            logger.error("Tracking events held in memory, Redis and PostgreSQL failed: %s", error)
            return False
        return True

    def _held_trim(self) -> None:
        dropped = 0
        while self._held_events > HOLD_MAX_EVENTS:
            chunk = self._held.popleft()
            self._held_events -= len(chunk)
            dropped += len(chunk)
        if dropped:
            logger.error(
                "Tracking events LOST: dropped the %d oldest of this process's held events "
                "(Redis and PostgreSQL unreachable for too long)",
                dropped,
            )


def chunk_push(*, text: str, events: int) -> None:
    """Queues one chunk of `events` lines for the drain, with the waiting counter, at once."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.rpush(QUEUE_KEY, text)
    pipe.incrby(WAITING_KEY, events)
    pipe.execute()


_buffer = EventBuffer()
os.register_at_fork(after_in_child=_buffer.after_fork)


def event_buffer(
    *, kind: int, machine: int, broadcast_id: int, delivery_id: int, link_id: int = 0
) -> None:
    """Buffers one event, stamped now (the request path: no I/O)."""
    _buffer.append(
        f"{kind} {machine} {int(time.time() * 1000)} {broadcast_id} {delivery_id} {link_id}"
    )


def buffer_flush() -> None:
    """Hands whatever is buffered to Redis (or PostgreSQL) now, in the caller's thread."""
    _buffer.flush()
