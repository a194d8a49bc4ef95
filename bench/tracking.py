"""Opens and clicks through the production web server beside the limit of the same server, then
the drain of those events into PostgreSQL.

    python -m convertkit.dev.devstack bench bench/tracking.py [--duration 10] [--tool wrk|python]
    (or: DATABASE_URL=... python bench/tracking.py ...)

1. Works in its own database (convertkit_bench_tracking beside the one in DATABASE_URL, created
   and migrated if missing, kept afterwards: `--fresh` recreates it, `--drop` drops it at the
   end) and starts its own Redis (redis-server on a free port, nothing on disk; `--redis-url`
   uses another, whose tracking keys it then clears). Seeds, once per size, an account with a
   broadcast sent an hour ago to --deliveries subscribers (SENT deliveries, set-based SQL) and
   --links links, and writes the open and click paths of every delivery, with valid tokens, to
   files (clicks spread over the links, deliveries in a shuffled order).
2. Clears what earlier runs recorded for the broadcast (events, activity, rollups, drained-batch
   markers, Redis queue), then starts the production server command: gunicorn
   convertkit.wsgi:application with the project's config (convertkit/gunicorn_conf.py), 2 sync
   workers, DEBUG off, on a free loopback port.
3. Loads it with 32 connections for --duration seconds each, in this order: the do-nothing GIF
   (/t/ping.gif, the limit), the open pixel, the click redirect. Every request names the next
   delivery of the file (a browser's user agent, so events are people's). The load generator is
   wrk (bench/wrk_paths.lua, 2 threads) or, without wrk, a Python asyncio one (weaker: one
   process sharing the cores, so it may be the bottleneck; the ratio stays comparable because
   the limit is measured with the same tool in the same run).
4. Stops gunicorn gracefully (SIGTERM: each worker hands its buffered events to Redis on the
   way out) and notes the queue depth. A real Celery worker (`celery -A convertkit worker -Q
   tracking -c 2`), started and warmed up before the load and idle since, gets tracking.drain
   for each of its processes; the drain is timed from there until Redis holds no event and no
   claim: every event is committed in PostgreSQL.
5. Checks that every acknowledged event (opens answered 200, clicks answered 302) is an Event
   row, that no request became two rows, and that the Rollup sums equal the Event counts.
6. Prints a table and, as its last line, one JSON object.

Targets: ratio >= 0.7 (the slower endpoint's req/s over the limit's), p99 no more than
twice the limit's p99, drain >= 20,000 events/s, lost = double_counted = 0.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = ROOT / "bench" / "wrk_paths.lua"
CONNECTIONS = 32
WRK_THREADS = 2
WEB_WORKERS = 2
DRAIN_CONCURRENCY = 2
TARGET_RATIO = 0.7
TARGET_P99_FACTOR = 2.0
TARGET_DRAIN_EVENTS_PER_S = 20_000
# A drain task finished, in the Celery worker's log.
DRAIN_DONE_RE = re.compile(r"tracking\.drain\[[^\]]+\] succeeded in")
OWNER_EMAIL = "owner@tracking-bench.example"
SUBJECT = "Soup season is here"
# Safari on a Mac: a person's client, neither a link scanner nor Apple's privacy proxy.
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the data -----------------------------------------------------------------------------------


def broadcast_seed(*, deliveries: int, links: int, say: Callable = _say) -> int:
    """The id of a sent broadcast with `deliveries` SENT deliveries and `links` links, seeded in
    one transaction the first time this size is asked for and found again afterwards."""
    from django.db import connection, transaction
    from django.utils import timezone

    from broadcasts.models import Broadcast, Delivery
    from convertkit.models import User
    from convertkit.services import account_create
    from subscribers.seeding import demo_data_seed
    from tracking.models import Link

    name = f"Tracking bench: {deliveries:,} deliveries, {links} links"
    found = Broadcast.objects.filter(account__name=name, subject=SUBJECT).first()
    if found is not None:
        say(f"Reusing the seeded broadcast {found.pk} ({name})")
        return found.pk
    say(f"Seeding {deliveries:,} subscribers, a broadcast sent to all of them and {links} links")
    started = time.perf_counter()
    sent_at = timezone.now() - dt.timedelta(hours=1)
    with transaction.atomic():
        owner = User.objects.filter(email=OWNER_EMAIL).first()
        if owner is None:
            owner = User.objects.create_user(email=OWNER_EMAIL, password=None)
        account = account_create(owner=owner, name=name)
        demo_data_seed(account=account, subscribers=deliveries, tags=0, seed=1)
        broadcast = Broadcast.objects.create(
            account=account,
            subject=SUBJECT,
            body="Five soups for cold evenings.",
            state=Broadcast.State.SENT,
            recipient_count=deliveries,
            sent_count=deliveries,
            fanned_out_at=sent_at,
            send_started_at=sent_at,
            sent_at=sent_at,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO broadcasts_delivery (broadcast_id, account_id, subscriber_id, state,"
                " attempts, sent_at, esp_message_id, error)"
                " SELECT %s, account_id, id, %s, 1, %s, '', '' FROM subscribers_subscriber"
                " WHERE account_id = %s ORDER BY id",
                [broadcast.pk, Delivery.State.SENT, sent_at, account.pk],
            )
        Link.objects.bulk_create(
            Link(
                account=account,
                broadcast=broadcast,
                url=f"https://soup.example.com/recipes/{position + 1}?utm_source=newsletter",
                position=position,
            )
            for position in range(links)
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE broadcasts_delivery")
    say(f"  in {time.perf_counter() - started:.1f}s")
    return broadcast.pk


def paths_write(*, broadcast_id: int, directory: Path) -> dict[str, Path]:
    """Files of request paths, one a line: "ping" (the one do-nothing path), "open" (every
    delivery's pixel) and "click" (every delivery's click on one of the links, in turn), the
    deliveries in a shuffled order."""
    from broadcasts.models import Delivery
    from tracking.endpoints import CLICK_PREFIX, OPEN_PREFIX, PING_PATH
    from tracking.models import Link
    from tracking.tokens import click_token, open_token

    delivery_ids = list(
        Delivery.objects.filter(broadcast_id=broadcast_id)
        .order_by("id")
        .values_list("id", flat=True)
    )
    link_ids = list(
        Link.objects.filter(broadcast_id=broadcast_id)
        .order_by("position")
        .values_list("id", flat=True)
    )
    random.Random(1).shuffle(delivery_ids)
    lines = {
        "ping": [PING_PATH],
        "open": [
            OPEN_PREFIX + open_token(broadcast_id=broadcast_id, delivery_id=delivery_id)
            for delivery_id in delivery_ids
        ],
        "click": [
            CLICK_PREFIX
            + click_token(
                broadcast_id=broadcast_id,
                delivery_id=delivery_id,
                link_id=link_ids[index % len(link_ids)],
            )
            for index, delivery_id in enumerate(delivery_ids)
        ],
    }
    files = {}
    for name, paths in lines.items():
        files[name] = directory / f"{name}.txt"
        files[name].write_text("\n".join(paths) + "\n")
    return files


def tracking_clear(*, broadcast_id: int) -> None:
    """Forgets what earlier runs recorded for the broadcast, and the buffered events, so that
    this run's rows can be compared with this run's requests."""
    from django.db import connection

    from convertkit.redis import redis_client
    from tracking.buffer import QUEUE_KEY, WAITING_KEY
    from tracking.drain import CLAIM_PREFIX, CLAIMS_KEY

    with connection.cursor() as cursor:
        for table in ("tracking_event", "tracking_deliveryactivity", "tracking_rollup"):
            cursor.execute(f"DELETE FROM {table} WHERE broadcast_id = %s", [broadcast_id])
        # Batch keys are fresh for every drain: the markers of earlier runs only take room.
        cursor.execute("DELETE FROM tracking_drainedbatch")
        cursor.execute("DELETE FROM tracking_spooledevents")
        # What autovacuum would do before long: the deleted rows' index entries (the same
        # deliveries' keys) would otherwise slow every insert of this run.
        cursor.execute(
            "VACUUM ANALYZE tracking_event, tracking_deliveryactivity, tracking_rollup, "
            "tracking_drainedbatch"
        )
    client = redis_client()
    claims = list(client.scan_iter(match=CLAIM_PREFIX + "*"))
    client.delete(QUEUE_KEY, WAITING_KEY, CLAIMS_KEY, *claims)


# --- the web server -----------------------------------------------------------------------------


@dataclass
class WebServer:
    process: subprocess.Popen
    port: int
    log_path: Path


def web_start(*, env: dict[str, str], log_path: Path, workers: int) -> WebServer:
    """The production server command on a free loopback port; returns once it answers."""
    from bench.broadcast import log_tail, logged_process_start, process_stop
    from convertkit.dev.devstack import free_port, gunicorn_quiet
    from tracking.endpoints import PING_PATH

    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:convertkit.gunicorn_conf"]
    argv += ["convertkit.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    argv += ["--workers", str(workers), "--worker-class", "sync", *gunicorn_quiet()]
    process = logged_process_start(argv, env=env, log_path=log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({process.returncode})\n" + log_tail(log_path))
        with contextlib.suppress(OSError, http.client.HTTPException):
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                client.request("GET", PING_PATH)
                if client.getresponse().status == 200:
                    return WebServer(process, port, log_path)
            finally:
                client.close()
        time.sleep(0.1)
    process_stop(process, grace=10)
    raise RuntimeError("gunicorn did not answer within 60 s\n" + log_tail(log_path))


def web_workers_peak_mb(server: WebServer) -> float:
    """The largest peak RSS (VmHWM) among gunicorn's workers (the master excluded)."""
    from bench.broadcast import process_tree, vm_hwm_kb

    peaks = [vm_hwm_kb(pid) or 0 for pid in process_tree(server.process.pid)[1:]]
    return round(max(peaks, default=0) / 1024, 1)


def web_workers_cpu_s(server: WebServer) -> float:
    """CPU seconds (user and system) spent so far by gunicorn's workers (the master excluded):
    per request, a figure that other work on the machine barely moves."""
    from bench.broadcast import process_tree

    total = 0
    for pid in process_tree(server.process.pid)[1:]:
        with contextlib.suppress(OSError):
            # The command name may hold spaces: the fields follow the last ")".
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


# --- the load -----------------------------------------------------------------------------------


@dataclass
class Load:
    """What one load run got back: req/s counts every response; `acknowledged` those with the
    expected status; `sent` requests written (an upper bound of what the server may have
    recorded: wrk drops the responses still in flight when its time is up)."""

    expected: int
    seconds: float
    responses: int
    sent: int
    wrapped: bool
    statuses: dict[int, int]
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def req_per_s(self) -> float:
        return round(self.responses / self.seconds, 1) if self.seconds else 0.0

    @property
    def acknowledged(self) -> int:
        return self.statuses.get(self.expected, 0)

    @property
    def unexpected(self) -> int:
        return self.responses - self.acknowledged


def wrk_load(
    *, port: int, paths: Path, expected: int, duration: int, connections: int, wrk: str
) -> Load:
    argv = [wrk, "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{duration}s"]
    argv += ["--timeout", "10s", "-H", f"User-Agent: {USER_AGENT}", "-s", str(WRK_SCRIPT)]
    argv += [f"http://127.0.0.1:{port}", "--", str(paths), str(WRK_THREADS)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    lines = [line for line in run.stdout.splitlines() if line.startswith("WRKJSON ")]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    report = json.loads(lines[-1].removeprefix("WRKJSON "))
    return Load(
        expected=expected,
        seconds=report["duration_us"] / 1e6,
        responses=report["requests"],
        sent=report["sent"],
        wrapped=report["wrapped"],
        statuses={int(status): count for status, count in report["statuses"].items()},
        socket_errors=sum(report["errors"].values()),
        p50_ms=round(report["p50_us"] / 1000, 2),
        p99_ms=round(report["p99_us"] / 1000, 2),
        max_ms=round(report["max_us"] / 1000, 2),
    )


def python_load(*, port: int, paths: Path, expected: int, duration: int, connections: int) -> Load:
    """The fallback load generator: a GET of each path of the file in turn (raw_load)."""
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {USER_AGENT}\r\n\r\n".encode()
        for path in paths.read_text().split()
    ]
    return raw_load(
        port=port, requests=requests, expected=expected, duration=duration, connections=connections
    )


def raw_load(
    *, port: int, requests: list[bytes], expected: int, duration: float, connections: int
) -> Load:
    """`connections` asyncio connections in this process, each sending the next of `requests`
    (whole HTTP/1.1 requests, in turn) as soon as its previous answer is in (reconnecting when
    the server closes, as gunicorn's sync workers do after every response). Requests in flight
    at the end are waited for, so every request sent is answered or counted as an error."""
    from bench.pages import percentile

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counts = {"next": 0, "errors": 0}

    async def one_connection(deadline: float) -> None:
        reader = writer = None
        while time.perf_counter() < deadline:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    counts["errors"] += 1
                    await asyncio.sleep(0.01)
                    continue
            request = requests[counts["next"] % len(requests)]
            counts["next"] += 1
            started = time.perf_counter()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                status = int(lines[0].split()[1])
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                counts["errors"] += 1
                writer.close()
                writer = None
                continue
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    async def run() -> float:
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(*(one_connection(deadline) for _ in range(connections)))
        return time.perf_counter() - started

    # In a thread of its own: the caller's thread may already run an event loop (Playwright's,
    # when the smoke test shares a pytest session with the browser tests).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        seconds = pool.submit(asyncio.run, run()).result()
    return Load(
        expected=expected,
        seconds=seconds,
        responses=len(latencies),
        sent=counts["next"],
        wrapped=counts["next"] > len(requests),
        statuses=dict(statuses),
        socket_errors=counts["errors"],
        p50_ms=percentile(latencies, 0.5) if latencies else 0.0,
        p99_ms=percentile(latencies, 0.99) if latencies else 0.0,
        max_ms=round(max(latencies, default=0) * 1000, 2),
    )


def load_run(*, tool: str, **kwargs) -> Load:
    if tool == "python":
        return python_load(**kwargs)
    return wrk_load(wrk=tool, **kwargs)


# --- the drain ----------------------------------------------------------------------------------


@dataclass
class DrainWorker:
    process: subprocess.Popen
    log_path: Path


def drain_worker_start(*, env: dict[str, str], log_path: Path) -> DrainWorker:
    """`celery -A convertkit worker -Q tracking -c 2`, warmed up: each process has run a drain
    (of nothing yet), so the measured drain does not pay for imports and first connections."""
    from bench.broadcast import log_tail, process_stop, worker_start, worker_wait_ready
    from convertkit.celery import app

    name = f"bench-tracking-{os.getpid()}@localhost"
    process = worker_start(
        env=env, concurrency=DRAIN_CONCURRENCY, log_path=log_path, name=name, queues="tracking"
    )
    try:
        worker_wait_ready(app, name, process)
        for _ in range(DRAIN_CONCURRENCY):
            app.send_task("tracking.drain", queue="tracking")
        deadline = time.monotonic() + 60
        while len(DRAIN_DONE_RE.findall(log_path.read_text(errors="replace"))) < DRAIN_CONCURRENCY:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("The Celery worker did not run its first drains")
            time.sleep(0.05)
    except RuntimeError as error:
        process_stop(process)
        raise RuntimeError(f"{error}\n{log_tail(log_path)}") from None
    return DrainWorker(process, log_path)


def drain_measure(*, worker: DrainWorker, stall_timeout: float, say: Callable) -> dict:
    """Times tracking.drain from being queued (one per worker process) until Redis holds no
    event and no claim, and the spool no row: a claim is released only after its transaction
    committed. The queue depth before is what `manage.py tracking_status` shows."""
    from bench.broadcast import log_tail
    from convertkit.celery import app
    from convertkit.redis import redis_client
    from tracking.buffer import QUEUE_KEY
    from tracking.drain import CLAIMS_KEY, DRAIN_BUDGET_S
    from tracking.models import SpooledEvents
    from tracking.status import tracking_status_read

    depth = tracking_status_read()
    events = depth.waiting_events + depth.spooled_events
    say(f"Draining {events:,} events ({depth.waiting_chunks:,} chunks)")
    client = redis_client()
    started = last_progress = time.perf_counter()
    last_queued, last_left = None, None
    while True:
        now = time.perf_counter()
        if last_queued is None or now - last_queued >= DRAIN_BUDGET_S:
            # A drain stops after its time budget; then, as beat would, the next ones are queued.
            for _ in range(DRAIN_CONCURRENCY):
                app.send_task("tracking.drain", queue="tracking")
            last_queued = now
        pipe = client.pipeline(transaction=False)
        pipe.llen(QUEUE_KEY)
        pipe.zcard(CLAIMS_KEY)
        chunks, claims = pipe.execute()
        spooled = SpooledEvents.objects.count() if depth.spooled_rows else 0
        if not chunks and not claims and not spooled:
            seconds = time.perf_counter() - started
            break
        if (chunks, claims, spooled) != last_left:
            last_left, last_progress = (chunks, claims, spooled), now
        if worker.process.poll() is not None:
            raise RuntimeError(
                f"The worker exited ({worker.process.returncode})\n" + log_tail(worker.log_path)
            )
        if now - last_progress > stall_timeout:
            raise RuntimeError(
                f"No drain progress for {stall_timeout:.0f}s ({chunks} chunks, {claims} claims"
                " left)\n" + log_tail(worker.log_path)
            )
        time.sleep(0.005)
    return {
        "depth_events": events,
        "depth_chunks": depth.waiting_chunks,
        "spooled_rows": depth.spooled_rows,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1) if events else 0.0,
    }


# --- the checks ---------------------------------------------------------------------------------


def events_check(*, broadcast_id: int, opens: Load, clicks: Load) -> dict:
    """lost: acknowledged events with no Event row; double_counted: rows beyond the requests
    (beyond one per delivery while no delivery was requested twice), plus every difference
    between the Rollup sums and the Event rows (raw counts, and unique ones: a click is also an
    open, so unique opens are the deliveries opened or clicked)."""
    from django.db import connection

    from tracking.models import EventKind

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, count(*), count(DISTINCT delivery_id),"
            " count(DISTINCT (delivery_id, link_id))"
            " FROM tracking_event WHERE broadcast_id = %s GROUP BY kind",
            [broadcast_id],
        )
        rows = {kind: (count, deliveries, pairs) for kind, count, deliveries, pairs in cursor}
        cursor.execute(
            "SELECT count(DISTINCT delivery_id) FROM tracking_event"
            " WHERE broadcast_id = %s AND kind IN (%s, %s)",
            [broadcast_id, EventKind.OPEN, EventKind.CLICK],
        )
        opened_or_clicked = cursor.fetchone()[0]
        cursor.execute(
            "SELECT link_id = 0, coalesce(sum(opens), 0), coalesce(sum(clicks), 0),"
            " coalesce(sum(unique_opens), 0), coalesce(sum(unique_clicks), 0)"
            " FROM tracking_rollup WHERE broadcast_id = %s GROUP BY link_id = 0",
            [broadcast_id],
        )
        rollups = {whole: sums for whole, *sums in cursor}
    per_kind = {}
    for name, kind, load in (("open", EventKind.OPEN, opens), ("click", EventKind.CLICK, clicks)):
        count, deliveries, pairs = rows.get(kind, (0, 0, 0))
        duplicates = 0 if load.wrapped else count - pairs
        per_kind[name] = {
            "acknowledged": load.acknowledged,
            "sent": load.sent,
            "rows": count,
            "deliveries": deliveries,
            "lost": max(0, load.acknowledged - (count if load.wrapped else pairs)),
            "double_counted": max(0, count - load.sent, duplicates),
        }
    whole = rollups.get(True, [0, 0, 0, 0])
    per_link = rollups.get(False, [0, 0, 0, 0])
    opened, clicked = per_kind["open"], per_kind["click"]
    click_pairs = rows.get(EventKind.CLICK, (0, 0, 0))[2]
    rollup_mismatch = {
        "opens": abs(whole[0] - opened["rows"]),
        "clicks": abs(whole[1] - clicked["rows"]),
        "link_clicks": abs(per_link[1] - clicked["rows"]),
        "unique_opens": abs(whole[2] - opened_or_clicked),
        "unique_clicks": abs(whole[3] - clicked["deliveries"]),
        "link_unique_clicks": abs(per_link[3] - click_pairs),
    }
    return {
        "lost": opened["lost"] + clicked["lost"],
        "double_counted": opened["double_counted"]
        + clicked["double_counted"]
        + sum(rollup_mismatch.values()),
        "open": opened,
        "click": clicked,
        "rollup_mismatch": rollup_mismatch,
    }


# --- the whole run ------------------------------------------------------------------------------


def bench_run(
    *,
    deliveries: int,
    links: int,
    duration: int,
    tool: str,
    database_url: str,
    redis_url: str,
    connections: int = CONNECTIONS,
    stall_timeout: float = 120.0,
    say: Callable = _say,
) -> dict:
    """Runs the benchmark on the current (migrated) database; returns the figures.

    `tool` is "python" or the path of wrk. The server and the worker get `database_url` and
    `redis_url`, which must be this process's own database and Celery broker.
    """
    from django.conf import settings

    from bench.broadcast import process_stop, production_env

    workdir = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    server = worker = None
    try:
        broadcast_id = broadcast_seed(deliveries=deliveries, links=links, say=say)
        files = paths_write(broadcast_id=broadcast_id, directory=workdir)
        tracking_clear(broadcast_id=broadcast_id)
        # This process's key: the tokens in the path files are signed with it.
        env = production_env(
            database_url=database_url,
            redis_url=redis_url,
            secret_key=settings.SECRET_KEY,
            ALLOWED_HOSTS="127.0.0.1",
        )
        # Started (and warmed up) now, idle until the drain is measured: nothing queues a drain
        # before then.
        say(f"Starting the Celery worker (-Q tracking -c {DRAIN_CONCURRENCY})")
        worker = drain_worker_start(env=env, log_path=workdir / "drain-worker.log")
        say(f"Starting gunicorn ({WEB_WORKERS} sync workers)")
        server = web_start(env=env, log_path=workdir / "web.log", workers=WEB_WORKERS)
        common = {"port": server.port, "connections": connections, "tool": tool}
        # Both workers answering, with their connections open, before anything is measured.
        load_run(paths=files["ping"], expected=200, duration=1, **common)
        loads, cpu_us = {}, {}
        for phase, expected in (("ping", 200), ("open", 200), ("click", 302)):
            say(f"Loading {phase} for {duration}s ({'python' if tool == 'python' else 'wrk'})")
            cpu_before = web_workers_cpu_s(server)
            loads[phase] = load_run(
                paths=files[phase], expected=expected, duration=duration, **common
            )
            cpu_s = web_workers_cpu_s(server) - cpu_before
            responses = loads[phase].responses
            cpu_us[phase] = round(cpu_s / responses * 1e6, 1) if responses else 0.0
            say(f"  {loads[phase].req_per_s:,.0f} req/s, p99 {loads[phase].p99_ms} ms")
        web_peak_mb = web_workers_peak_mb(server)
        say("Stopping gunicorn (SIGTERM: the workers hand their buffers over)")
        process_stop(server.process, grace=60)
        web_exit = server.process.returncode
        server = None
        drain = drain_measure(worker=worker, stall_timeout=stall_timeout, say=say)
        say(f"  {drain['events_per_s']:,.0f} events/s")
        checked = events_check(
            broadcast_id=broadcast_id, opens=loads["open"], clicks=loads["click"]
        )
    finally:
        if server is not None:
            process_stop(server.process, grace=10)
        if worker is not None:
            process_stop(worker.process)
        shutil.rmtree(workdir, ignore_errors=True)
    ping, opened, clicked = loads["ping"], loads["open"], loads["click"]
    limit = ping.req_per_s
    slower = min(opened.req_per_s, clicked.req_per_s)
    return {
        "bench": "tracking",
        "connections": connections,
        "open_req_per_s": opened.req_per_s,
        "click_req_per_s": clicked.req_per_s,
        "limit_req_per_s": limit,
        "ratio": round(slower / limit, 3) if limit else 0.0,
        "p99_ms": max(opened.p99_ms, clicked.p99_ms),
        "limit_p99_ms": ping.p99_ms,
        "drain_events_per_s": drain["events_per_s"],
        "lost": checked["lost"],
        "double_counted": checked["double_counted"],
        "_details": {
            "tool": "python" if tool == "python" else "wrk",
            "duration_s": duration,
            "deliveries": deliveries,
            "links": links,
            "broadcast_id": broadcast_id,
            "loads": {
                phase: asdict(load) | {"req_per_s": load.req_per_s} for phase, load in loads.items()
            },
            "unexpected": {phase: load.unexpected for phase, load in loads.items()},
            "socket_errors": {phase: load.socket_errors for phase, load in loads.items()},
            "web_cpu_us_per_request": cpu_us,
            "web_worker_peak_rss_mb": web_peak_mb,
            "web_exit_status": web_exit,
            "drain": drain,
            "events": checked,
        },
    }


def table_print(figures: dict, *, out=sys.stdout) -> None:
    details = figures["_details"]
    loads, drain, events = details["loads"], details["drain"], details["events"]
    limit_p99 = figures["limit_p99_ms"]
    cpu_us = details["web_cpu_us_per_request"]
    print(
        f"{'':<8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'CPU us':>9}   responses",
        file=out,
    )
    for phase in ("ping", "open", "click"):
        load = loads[phase]
        statuses = ", ".join(
            f"{count:,} x {status}" for status, count in sorted(load["statuses"].items())
        )
        errors = f"; {load['socket_errors']} socket errors" if load["socket_errors"] else ""
        wrapped = ""
        if load["wrapped"] and phase != "ping":
            wrapped = "; some deliveries requested twice"
        print(
            f"{phase:<8}{load['req_per_s']:>10,.0f}{load['p50_ms']:>9.2f}{load['p99_ms']:>9.2f}"
            f"{load['max_ms']:>9.1f}{cpu_us[phase]:>9.0f}   {statuses or 'none'}{errors}{wrapped}",
            file=out,
        )
    p99_factor = figures["p99_ms"] / limit_p99 if limit_p99 else 0.0
    rows = [
        (
            "ratio",
            f"{figures['ratio']:.2f}",
            f"slower endpoint / ping; {'ok' if figures['ratio'] >= TARGET_RATIO else 'MISSED'}"
            f" (target >= {TARGET_RATIO})",
        ),
        (
            "p99",
            f"{figures['p99_ms']:.2f} ms",
            f"{p99_factor:.2f}x ping's {limit_p99:.2f} ms;"
            f" {'ok' if p99_factor <= TARGET_P99_FACTOR else 'MISSED'}"
            f" (target <= {TARGET_P99_FACTOR:g}x)",
        ),
        (
            "queue",
            f"{drain['depth_events']:,} events",
            f"waiting before the drain: {drain['depth_chunks']:,} chunks in Redis,"
            f" {drain['spooled_rows']} spooled rows",
        ),
        (
            "drain",
            f"{figures['drain_events_per_s']:,.0f} events/s",
            f"{drain['seconds']:.2f} s, celery -Q tracking -c {DRAIN_CONCURRENCY};"
            f" {'ok' if figures['drain_events_per_s'] >= TARGET_DRAIN_EVENTS_PER_S else 'MISSED'}"
            f" (target >= {TARGET_DRAIN_EVENTS_PER_S:,})",
        ),
    ]
    for name in ("open", "click"):
        kind = events[name]
        rows.append(
            (
                f"{name}s",
                f"{kind['rows']:,} rows",
                f"{kind['acknowledged']:,} acknowledged, {kind['sent']:,} sent,"
                f" {kind['deliveries']:,} deliveries",
            )
        )
    mismatch = sum(events["rollup_mismatch"].values())
    rows += [
        (
            "lost",
            f"{figures['lost']}",
            "acknowledged events without a row; must be 0",
        ),
        (
            "double",
            f"{figures['double_counted']}",
            f"rows beyond the requests, and Rollup differences ({mismatch}); must be 0",
        ),
        (
            "web CPU",
            f"{cpu_us['open'] - cpu_us['ping']:+.0f}/{cpu_us['click'] - cpu_us['ping']:+.0f} us",
            "CPU per open / click beyond the ping's (CPU us: gunicorn workers' time / responses)",
        ),
        (
            "web RSS",
            f"{details['web_worker_peak_rss_mb']:.0f} MB",
            "peak of one gunicorn worker (VmHWM)",
        ),
    ]
    for name, value, note in rows:
        print(f"{name:<8}{value:>19}   {note}", file=out)
    print(
        f"{details['tool']}, {figures['connections']} connections, {details['duration_s']} s per"
        f" phase, {details['deliveries']:,} deliveries, {details['links']} links.",
        file=out,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of each load phase")
    parser.add_argument("--tool", choices=["wrk", "python"], help="load generator (wrk if found)")
    parser.add_argument("--deliveries", type=int, default=50_000)
    parser.add_argument("--links", type=int, default=5)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--redis-url", default="", help="use this Redis instead of a private one")
    parser.add_argument("--database", default="convertkit_bench_tracking")
    parser.add_argument("--fresh", action="store_true", help="recreate the bench database first")
    parser.add_argument("--drop", action="store_true", help="drop the bench database afterwards")
    args = parser.parse_args(argv)
    if min(args.duration, args.deliveries, args.links, args.connections) < 1:
        parser.error("--duration, --deliveries, --links and --connections must be positive")
    wrk = shutil.which("wrk")
    if args.tool == "wrk" and wrk is None:
        parser.error("wrk is not installed (apt-get install wrk), or use --tool python")
    tool = wrk if args.tool != "python" and wrk else "python"

    sys.path.insert(0, str(ROOT))
    from bench.broadcast import bench_session

    with bench_session(
        database=args.database,
        redis_url=args.redis_url,
        keep=not args.drop,
        fresh=args.fresh,
        ALLOWED_HOSTS="127.0.0.1",
    ) as (database_url, redis_url, _private):
        from tracking.partitions import partitions_ensure

        partitions_ensure()
        figures = bench_run(
            deliveries=args.deliveries,
            links=args.links,
            duration=args.duration,
            tool=tool,
            database_url=database_url,
            redis_url=redis_url,
            connections=args.connections,
        )
    table_print(figures)
    print(json.dumps({key: value for key, value in figures.items() if key != "_details"}))
    details = figures["_details"]
    wrong = figures["lost"] or figures["double_counted"] or any(details["unexpected"].values())
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
