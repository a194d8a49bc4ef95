"""What a send task keeps in Redis while it works, so that the sweeper can tell a dead task from
a live one, and settle what a dead one left "sending" without a second copy to anyone.

The heartbeat: while a send task holds a claim, a thread of its process writes the time under
the claim's HEARTBEAT_KEY every fifth of BROADCAST_HEARTBEAT_TIMEOUT. The sweeper takes a claim
whose beat is older than that (or gone) for dead.

The send journal: one Redis hash per claim (JOURNAL_KEY), begun again for each send call:

    open     "1" while the call may go on; "0" once the sweeper has settled the claim (a fence)
    call     the ids of the call's deliveries
    flight   the ids whose message is on its way (one for SMTP, a whole request for Postmark)
    d<id>    what came back for a message: [status, ESP message id, error] as JSON

Before each start the transport takes a step, which records what came back since the last step
and what is about to go, in one round trip (a Lua script) that overlaps the SMTP dialogue; it
refuses, and the message is not sent, once the journal is fenced or gone. The sweeper fences
and reads the journal in one script too, so every start is either recorded before the sweeper
reads (that delivery is then settled as in flight: unknown) or refused: a delivery is never
both sent and queued again.

The sweeper settles a dead claim's "sending" deliveries from the journal it read:
    an outcome came back       -> that outcome (sent, failed, retry)
    in flight                  -> unknown: it may or may not have been accepted
    in the call, never started -> queued again
    no journal (Redis lost it), or not in the journal's call -> unknown, never sent again
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from redis.exceptions import NoScriptError, RedisError

from broadcasts.transport import Journal, Outcome, OutcomeStatus
from convertkit.redis import redis_client

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "ck:send:beat:{claim}"
JOURNAL_KEY = "ck:send:journal:{claim}"
# Set once and never removed: its absence tells the sweeper that Redis lost its data (a flush, a
# restart without persistence) and with it every queued send task (see redis_data_lost).
KEPT_KEY = "ck:send:kept"
# A journal outlives any database outage the sweeper must wait out before it can settle.
JOURNAL_TTL_S = 24 * 3600

_BEGIN = """
if redis.call('HGET', KEYS[1], 'open') == '0' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'open', '1', 'call', ARGV[1], 'flight', '')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
_STEP = """
if redis.call('HGET', KEYS[1], 'open') ~= '1' then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'flight', ARGV[1])
return 1
"""
_END = """
if redis.call('HGET', KEYS[1], 'open') == '1' then redis.call('DEL', KEYS[1]) end
return 1
"""
# A missing journal is fenced too, so that a worker still alive cannot begin a new one.
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('HSET', KEYS[1], 'open', '0')
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    return false
end
redis.call('HSET', KEYS[1], 'open', '0')
return redis.call('HGETALL', KEYS[1])
"""


_SCRIPTS = {"begin": _BEGIN, "step": _STEP, "end": _END, "settle": _SETTLE}


@cache
def _script(name: str):
    return redis_client().register_script(_SCRIPTS[name])


def _ids(text: str) -> set[int]:
    return {int(part) for part in text.split(",") if part}


class SendJournal(Journal):
    """The journal of one claim's send calls, one call after another: begin, steps, end; used
    as a context manager, on a Redis connection of its own for the claim's life.

    Any Redis error counts as a refusal: a message whose start could not be recorded is not
    sent, and the batch stops (what it had not sent goes back to the queue).
    """

    def __init__(self, claim: int) -> None:
        self.key = JOURNAL_KEY.format(claim=claim)
        self.refused = False
        self._told: set[int] = set()
        self._connection = None
        self._unread: Callable[[], object] | None = None

    def __enter__(self) -> SendJournal:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._unread is not None:
            with contextlib.suppress(RedisError):
                self._unread()
        if self._connection is not None:
            redis_client().connection_pool.release(self._connection)
            self._connection = None

    def _evalsha(self, script: str, args: Sequence) -> Callable[[], object]:
        """Sends one of the scripts on the journal's connection without waiting for its answer
        (a step per message is the journal's whole cost, so its round trip overlaps the work);
        returns the function reading the answer, once. RedisError from either."""
        if self._unread is not None:
            with contextlib.suppress(RedisError):  # a broken connection is replaced below
                self._unread()
        source = _script(script)
        if self._connection is None:
            self._connection = redis_client().connection_pool.get_connection()
        connection = self._connection
        try:
            connection.send_command("EVALSHA", source.sha, 1, self.key, *args)
        except RedisError:
            self._drop()
            raise
        answers: list = []

        def read() -> object:
            if not answers:
                self._unread = None
                try:
                    answers.append(connection.read_response())
                except NoScriptError:  # Redis restarted since the script was loaded
                    answers.append(source(keys=[self.key], args=list(args)))
                except RedisError:
                    self._drop()
                    raise
            return answers[0]

        self._unread = read
        return read

    def _drop(self) -> None:
        connection, self._connection, self._unread = self._connection, None, None
        if connection is not None:
            connection.disconnect()
            redis_client().connection_pool.release(connection)

    def begin(self, delivery_ids: Sequence[int]) -> Callable[[], bool]:
        """Opens the journal of a new call of `delivery_ids`; returns the function that says
        whether it was opened (False when it is fenced), so that the caller may do its own
        work meanwhile."""
        self._told = set()
        self.refused = False
        return self._asked("begin", [",".join(map(str, delivery_ids)), JOURNAL_TTL_S])

    def step_ahead(self, *, done: Sequence[Outcome], starting: Sequence[int]) -> Callable[[], bool]:
        if self.refused:
            return self._answer
        new = [outcome for outcome in done if outcome.delivery_id not in self._told]
        if not new and not starting:
            return self._answer
        args: list = [",".join(map(str, starting))]
        for outcome in new:
            args += [
                f"d{outcome.delivery_id}",
                json.dumps([outcome.status, outcome.esp_message_id, outcome.error]),
            ]
        self._told.update(outcome.delivery_id for outcome in new)
        return self._asked("step", args)

    def _asked(self, script: str, args: list) -> Callable[[], bool]:
        """Sends a script that answers 1 or 0; returns the function that reads the answer
        (once) and says whether the journal is still open."""
        try:
            read = self._evalsha(script, args)
        except RedisError as error:
            return self._refuse(error)

        def answer() -> bool:
            if not self.refused:
                try:
                    self.refused = not read()
                except RedisError as error:
                    self._refuse(error)
            return not self.refused

        return answer

    def _answer(self) -> bool:
        return not self.refused

    def _refuse(self, error: RedisError) -> Callable[[], bool]:
        logger.warning("Send journal unavailable, the batch stops: %s", error)
        self.refused = True
        return self._answer

    def end(self) -> None:
        """The call's outcomes are in the database: its journal is no longer needed (the
        answer is read with the next command)."""
        try:
            self._evalsha("end", [])
        except RedisError:
            logger.debug("Send journal not removed (it expires)", exc_info=True)


@dataclass(frozen=True)
class JournalRead:
    call: set[int]
    flight: set[int]
    done: dict[int, Outcome]


def journal_settle(claim: int) -> JournalRead | None:
    """Fences the claim's journal (no start of its task is recorded after this) and reads it;
    None when there was none. RedisError when Redis cannot be reached."""
    raw = _script("settle")(keys=[JOURNAL_KEY.format(claim=claim)], args=[JOURNAL_TTL_S])
    if raw is None:
        return None
    fields = dict(zip(raw[::2], raw[1::2], strict=True))
    done = {}
    for name, value in fields.items():
        if name.startswith("d"):
            status, esp_message_id, error = json.loads(value)
            delivery_id = int(name[1:])
            done[delivery_id] = Outcome(delivery_id, OutcomeStatus(status), esp_message_id, error)
    return JournalRead(
        call=_ids(fields.get("call", "")), flight=_ids(fields.get("flight", "")), done=done
    )


class ClaimHeartbeat:
    """`with ClaimHeartbeat(claim) as beating:` the claim's heartbeat for the block, from a
    thread of this process; `beating` is False when Redis could not be reached (then no journal
    can be kept either, and nothing may be sent)."""

    def __init__(self, claim: int) -> None:
        self.key = HEARTBEAT_KEY.format(claim=claim)
        self.timeout = settings.BROADCAST_HEARTBEAT_TIMEOUT
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        redis_client().set(self.key, f"{time.time():.3f}", ex=self.timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.timeout / 5):
            try:
                self._beat()
            except RedisError as error:
                logger.warning("Send heartbeat not written: %s", error)

    def __enter__(self) -> bool:
        try:
            self._beat()
        except RedisError as error:
            logger.warning("Send heartbeat unavailable, nothing is claimed: %s", error)
            return False
        self._thread = threading.Thread(target=self._run, name=self.key, daemon=True)
        self._thread.start()
        return True

    def __exit__(self, *exc_info) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        try:
            redis_client().delete(self.key)
        except RedisError:
            logger.debug("Send heartbeat not removed (it expires)", exc_info=True)


def claims_beating(claims: Iterable[int], *, now: float) -> set[int]:
    """The claims whose heartbeat is younger than BROADCAST_HEARTBEAT_TIMEOUT at `now` (a Unix
    time). RedisError when Redis cannot be reached."""
    claims = list(claims)
    if not claims:
        return set()
    beats = redis_client().mget([HEARTBEAT_KEY.format(claim=claim) for claim in claims])
    oldest = now - settings.BROADCAST_HEARTBEAT_TIMEOUT
    return {
        claim for claim, beat in zip(claims, beats, strict=True) if beat and float(beat) > oldest
    }


def redis_data_lost() -> bool:
    """Whether Redis has lost its data since this was last asked (or is new): the marker key is
    then set again. RedisError when Redis cannot be reached."""
    return bool(redis_client().set(KEPT_KEY, "1", nx=True))
