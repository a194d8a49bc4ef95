"""Kit's API v4 through the production web server: the subscriber list walked deep at two
million subscribers beside twenty thousand, and subscribers created by 32 connections beside a
do-nothing API view of the same server; then the bulk and webhook parts.

    make bench-api                                                # 2,000,000 and 20,000
    make bench-api ARGS="--subscribers 200000 --parts list"       # a quick look
    (or: python -m convertkit.dev.devstack bench bench/api.py [options])

1. Works in its own database (convertkit_bench_api beside the one in DATABASE_URL, created and
   migrated if missing, kept afterwards so that a second run seeds nothing: `--fresh` recreates
   it, `--drop` drops it at the end) and its own Redis (a redis-server on a free port, nothing
   on disk; `--redis-url` uses another). Seeds, once per size, an account of --subscribers demo
   subscribers and one of --small (subscribers.seeding: set-based, in PostgreSQL), then VACUUM
   ANALYZE; each account gets a new API key every run.
2. Starts the production server command (gunicorn convertkit.wsgi:application with
   convertkit/gunicorn_conf.py, --web-workers sync workers (4), DEBUG off, on a free loopback port)
   with bench.api_settings: the production settings plus one route, POST /bench/v4/nothing, a
   view that does nothing behind the same credentials as /v4/ (the key's lookup and its rate
   limit). API_RATE_LIMIT is raised so that the load is counted, never refused.
3. list: GET /v4/subscribers?per_page=1000 (Kit's default status, active), following
   end_cursor --pages deep, --walks times; each page of the large account is followed by the
   next page of the small one (which starts again from its first page when its list ends, as
   20,000 subscribers make fewer than 50 pages): on a shared machine a burst of load elsewhere
   weighs on both alike. p95 per page of each; `--explain` prints the plan of the deepest page's
   query.
4. create: POST /v4/subscribers, each request a new address with a first name and a custom field,
   into the large account, from 32 connections, and POST /bench/v4/nothing with the same bodies
   (the limit), in turn: --rounds rounds of (nothing, create) and a last nothing, --duration
   seconds of each kind in all, so that drift in the machine's load weighs on both alike. ratio
   = create / limit. The load generator (asyncio in this process, bench.tracking.raw_load) is
   also run against a do-nothing asyncio server in a process of its own: its ceiling.
5. bulk and webhooks: bench/bulk_part.py's bulk_measure and bench/webhooks_part.py's
   webhooks_measure, called with the running server (see PartContext).
6. Prints a table and, as its last line, one JSON object.

Targets: list_p95_ms < 150 and <= 1.5x list_small_p95_ms; ratio >= 0.5; bulk_rows_per_s >=
20,000; webhook_deliveries_per_s >= 1,000 with webhooks_lost 0.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("list", "create", "bulk", "webhooks")
CONNECTIONS = 32
# Two per core: a sync worker waits while PostgreSQL works and flushes a create's commit, and
# gunicorn's own advice is two to four workers per core. --web-workers 2 is one per core.
WEB_WORKERS = 4
TARGET_LIST_MS = 150.0
TARGET_LIST_GROWTH = 1.5
TARGET_RATIO = 0.5
TARGET_BULK_ROWS_PER_S = 20_000
TARGET_WEBHOOK_DELIVERIES_PER_S = 1_000
# High enough that no request of the bench is ever refused with a 429.
RATE_LIMIT = "1000000000/60"
NOTHING_PATH = "/bench/v4/nothing"
# What the TLS-terminating proxy in front of the production server adds (SECURE_SSL_REDIRECT).
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}
OWNER_EMAIL = "owner+{size}@api-bench.example"
ACCOUNT_NAME = "API bench: {size:,} subscribers"
# An account keeps this suffix until its seeding has finished: an interrupted seed is redone.
SEEDING = " (seeding)"
# The addresses the create phases make start so.
CREATED_PREFIX = "created+"
# Bodies prepared for the create phases, per second of --duration: more than the server answers.
BODIES_PER_SECOND = 4_000


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the data -----------------------------------------------------------------------------------


def account_seed(*, subscribers: int, say: Callable = _say):
    """The account of `subscribers` demo subscribers (no tags; the demo custom fields), seeded
    the first time this size is asked for and found again afterwards."""
    from convertkit.models import Account
    from subscribers.seeding import demo_account_create, demo_data_seed

    name = ACCOUNT_NAME.format(size=subscribers)
    found = Account.objects.filter(name=name).first()
    if found is not None:
        say(f"Reusing {name}")
        return found
    Account.objects.filter(name=name + SEEDING).delete()
    say(f"Seeding {name}")
    started = time.perf_counter()
    account, _password = demo_account_create(
        name=name + SEEDING, owner_email=OWNER_EMAIL.format(size=subscribers)
    )
    demo_data_seed(account=account, subscribers=subscribers, tags=0, seed=1)
    account.name = name
    account.save(update_fields=["name"])
    say(f"  in {time.perf_counter() - started:.1f}s")
    return account


def api_key_for(account) -> str:
    """A new API key of the account (its secret is shown once, so every run makes one)."""
    from api.keys import api_key_create

    _key, secret = api_key_create(account=account, name="API bench", created_by=None)
    return secret


# --- the list walk ------------------------------------------------------------------------------


@dataclass
class Walk:
    """Pages of one account's list: the time of each GET (connect to last byte), the rows seen."""

    seconds: list[float]
    rows: int
    restarts: int


def _get(port: int, path: str, key: str) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        client.request("GET", path, headers={"X-Kit-Api-Key": key, **PROXY_HEADERS})
        response = client.getresponse()
        body = response.read()
    finally:
        client.close()
    return time.perf_counter() - started, response.status, body


def list_walk(
    *, port: int, accounts: list[tuple[str, str]], pages: int, per_page: int, walks: int
) -> dict[str, Walk]:
    """`walks` times, `pages` pages of each account's subscriber list (name, key), following
    end_cursor; the accounts' pages alternate. A list that ends starts again from page one."""
    results = {name: Walk([], 0, 0) for name, _key in accounts}
    first = f"/v4/subscribers?per_page={per_page}"
    for _walk in range(walks):
        paths = dict.fromkeys(results, first)
        for _page in range(pages):
            for name, key in accounts:
                seconds, status, body = _get(port, paths[name], key)
                if status != 200:
                    raise RuntimeError(f"{paths[name]} answered {status}: {body[:300]!r}")
                answer = json.loads(body)
                walk = results[name]
                walk.seconds.append(seconds)
                walk.rows += len(answer["subscribers"])
                pagination = answer["pagination"]
                if pagination["has_next_page"]:
                    paths[name] = f"{first}&after={pagination['end_cursor']}"
                else:
                    paths[name] = first
                    walk.restarts += 1
    return results


def list_plan(*, account, pages: int, per_page: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the list's query at the deepest page walked, as
    api.views.subscriber_list builds it: Kit's default status (active), newest first, keyset
    after the cursor of the page before."""
    from django.http import QueryDict

    from api.views import subscribers_filtered
    from subscribers.models import Subscriber

    request = SimpleNamespace(GET=QueryDict())
    queryset = subscribers_filtered(request, Subscriber.objects.filter(account=account), [])
    skipped = (pages - 1) * per_page
    if skipped:
        cursor = list(queryset.order_by("-id").values_list("id", flat=True)[skipped - 1 : skipped])
        if cursor:
            queryset = queryset.filter(id__lt=cursor[0])
    return queryset.order_by("-id")[: per_page + 1].explain(analyze=True, buffers=True)


# --- the creates and their limit ----------------------------------------------------------------


def post_requests(*, port: int, key: str, path: str, count: int, token: str) -> list[bytes]:
    """`count` whole POST requests to `path`, each creating a new address, as an integration
    sends them: a first name and a custom field of the demo account."""
    requests = []
    for n in range(count):
        body = json.dumps(
            {
                "email_address": f"{CREATED_PREFIX}{token}-{n}@api-bench.example",
                "first_name": "Ada",
                "fields": {"city": "Lisbon"},
            }
        ).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Kit-Api-Key: {key}\r\n"
            "X-Forwarded-Proto: https\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def generator_ceiling(*, requests: list[bytes], duration: float, connections: int) -> float:
    """req/s of the load generator against bench/nothing_server.py (a process of its own that
    answers at once): above what it can send, the server's figures would be the generator's."""
    from bench.broadcast import _ready_line, process_stop, python_env
    from bench.tracking import raw_load

    process = subprocess.Popen(
        [sys.executable, "-m", "bench.nothing_server", "--port", "0"],
        cwd=ROOT,
        env=python_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        port = int(_ready_line(process, "bench.nothing_server").split()[1])
        load = raw_load(
            port=port, requests=requests, expected=201, duration=duration, connections=connections
        )
    finally:
        process_stop(process, grace=5)
    return load.req_per_s


def create_measure(
    *,
    server,
    key: str,
    duration: float,
    connections: int,
    rounds: int = 3,
    say: Callable = _say,
) -> dict:
    """POST /v4/subscribers (a new address each time) and the do-nothing view with the same
    bodies, in turn: `rounds` of (nothing, create) and a last nothing, `duration` seconds of
    each kind in all, so that drift in the machine's load weighs on both alike. req/s, the
    server's CPU per request and the statuses of each kind, and each phase's load."""
    from bench.tracking import raw_load, web_workers_cpu_s
    from subscribers.models import Subscriber

    # What earlier runs created goes first, so the account keeps its size from run to run.
    Subscriber.objects.filter(email__startswith=CREATED_PREFIX).delete()
    count = max(1000, int(BODIES_PER_SECOND * (duration + 1)))
    token = uuid.uuid4().hex[:8]
    creates = post_requests(
        port=server.port, key=key, path="/v4/subscribers", count=count, token=token
    )
    nothings = post_requests(port=server.port, key=key, path=NOTHING_PATH, count=1000, token=token)
    common = {"port": server.port, "connections": connections}
    # Every worker up, connected to PostgreSQL and Redis, each path run once, before anything is
    # measured (the warm-up's creates are new addresses too: the bodies go on from there).
    warmup = raw_load(requests=creates, expected=201, duration=min(1.0, duration), **common)
    raw_load(requests=nothings, expected=201, duration=min(1.0, duration), **common)
    creates = creates[warmup.sent :]
    phases = [("limit", duration / (rounds + 1)), ("create", duration / rounds)] * rounds
    phases.append(("limit", duration / (rounds + 1)))
    loads: list[tuple[str, object, float]] = []
    say(f"Loading nothing and create in turn, {duration:g}s of each ({connections} connections)")
    for kind, seconds in phases:
        cpu_before = web_workers_cpu_s(server)
        requests = nothings if kind == "limit" else creates
        load = raw_load(requests=requests, expected=201, duration=seconds, **common)
        if kind == "create":
            creates = creates[load.sent :]
        loads.append((kind, load, web_workers_cpu_s(server) - cpu_before))
        say(f"  {kind}: {load.req_per_s:,.0f} req/s, p99 {load.p99_ms} ms")
    say("The load generator alone, against a do-nothing server")
    ceiling = generator_ceiling(
        requests=nothings, duration=min(duration, max(1.0, duration / 2)), connections=connections
    )
    say(f"  {ceiling:,.0f} req/s")
    kinds = {}
    for kind in ("limit", "create"):
        mine = [(load, cpu_s) for name, load, cpu_s in loads if name == kind]
        responses = sum(load.responses for load, _cpu in mine)
        statuses: dict[int, int] = {}
        for load, _cpu in mine:
            for status, n in load.statuses.items():
                statuses[status] = statuses.get(status, 0) + n
        kinds[kind] = {
            "req_per_s": round(responses / sum(load.seconds for load, _cpu in mine), 1),
            "cpu_us_per_request": round(sum(c for _l, c in mine) / responses * 1e6, 1)
            if responses
            else 0.0,
            "p99_ms": max(load.p99_ms for load, _cpu in mine),
            "statuses": statuses,
            "unexpected": sum(load.unexpected for load, _cpu in mine),
            "socket_errors": sum(load.socket_errors for load, _cpu in mine),
        }
    limit, create = kinds["limit"], kinds["create"]
    return {
        "create_req_per_s": create["req_per_s"],
        "limit_req_per_s": limit["req_per_s"],
        "ratio": round(create["req_per_s"] / limit["req_per_s"], 3) if limit["req_per_s"] else 0.0,
        # Steadier than req/s on a machine shared with other work: server CPU per request.
        "cpu_ratio": round(limit["cpu_us_per_request"] / create["cpu_us_per_request"], 3)
        if create["cpu_us_per_request"]
        else 0.0,
        "generator_ceiling_req_per_s": ceiling,
        "warmup_created": warmup.acknowledged,
        "rounds": rounds,
        "kinds": kinds,
        "unexpected": {kind: figures["unexpected"] for kind, figures in kinds.items()},
        "phases": [
            {"kind": kind, "req_per_s": load.req_per_s, **asdict(load)}
            for kind, load, _cpu in loads
        ],
    }


# --- the bulk and webhook parts: their helpers' modules, wired here at merge --------------------


@dataclass(frozen=True)
class PartContext:
    """What a part gets: the running server (its port; `env` is the environment it runs with,
    for any worker a part starts), the large account and a live API key of it, the bench's
    database and Redis, a directory of its own, and how to report progress."""

    port: int
    api_key: str
    account_id: int
    database_url: str
    redis_url: str
    env: dict[str, str]
    workdir: Path
    say: Callable
    bulk_rows: int = 100_000
    webhook_deliveries: int = 20_000
    webhook_down_seconds: float = 5.0


def bulk_part(context: PartContext) -> dict:
    """/v4/bulk/subscribers with 100,000 subscribers against the running server, a Celery
    worker running the job: {"bulk_rows_per_s": ...} (bench/bulk_part.py)."""
    from bench.bulk_part import bulk_measure

    return bulk_measure(context)


def webhooks_part(context: PartContext) -> dict:
    """Signed webhooks to a local receiver, down for a while then up (bench/webhooks_part.py):
    {"webhook_deliveries_per_s": ..., "webhooks_lost": ...}, its details printed."""
    from bench.webhooks_part import webhooks_measure

    figures = webhooks_measure(
        deliveries=context.webhook_deliveries,
        down_seconds=context.webhook_down_seconds,
        say=context.say,
    )
    context.say(f"  webhooks: {json.dumps(figures.pop('_details'))}")
    return figures


def bench_run(
    *,
    parts: tuple[str, ...] = PARTS,
    subscribers: int,
    small: int,
    pages: int = 50,
    per_page: int = 1000,
    walks: int = 3,
    duration: float = 10,
    rounds: int = 3,
    connections: int = CONNECTIONS,
    web_workers: int = WEB_WORKERS,
    database_url: str,
    redis_url: str,
    explain: bool = False,
    bulk_rows: int = 100_000,
    webhook_deliveries: int = 20_000,
    webhook_down_seconds: float = 5.0,
    say: Callable = _say,
) -> dict:
    """Runs the chosen parts on the current (migrated) database; returns the figures. The server
    gets `database_url` and `redis_url`, which must be this process's own."""
    from django.conf import settings

    from bench.broadcast import process_stop, production_env
    from bench.pages import percentile, tables_settle
    from bench.tracking import web_start

    started = time.perf_counter()
    large = account_seed(subscribers=subscribers, say=say)
    small_account = account_seed(subscribers=small, say=say) if "list" in parts else None
    tables_settle(say=say)
    large_key = api_key_for(large)
    small_key = api_key_for(small_account) if small_account else None
    env = production_env(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=settings.SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1",
        API_RATE_LIMIT=RATE_LIMIT,
    )
    env["DJANGO_SETTINGS_MODULE"] = "bench.api_settings"
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    say(f"Starting gunicorn ({web_workers} sync workers)")
    server = web_start(env=env, log_path=workdir / "web.log", workers=web_workers)
    figures: dict = dict.fromkeys(
        (
            "list_p95_ms",
            "list_small_p95_ms",
            "create_req_per_s",
            "limit_req_per_s",
            "ratio",
            "bulk_rows_per_s",
            "webhook_deliveries_per_s",
            "webhooks_lost",
        )
    )
    details: dict = {
        "parts": list(parts),
        "subscribers": subscribers,
        "small": small,
        "web_workers": web_workers,
        "connections": connections,
    }
    try:
        if "list" in parts:
            say(f"Walking {pages} pages of {per_page} deep, {walks} times, both accounts in turn")
            accounts = [("large", large_key), ("small", small_key)]
            list_walk(port=server.port, accounts=accounts, pages=2, per_page=per_page, walks=1)
            walked = list_walk(
                port=server.port, accounts=accounts, pages=pages, per_page=per_page, walks=walks
            )
            large_walk, small_walk = walked["large"], walked["small"]
            figures["list_p95_ms"] = percentile(large_walk.seconds, 0.95)
            figures["list_small_p95_ms"] = percentile(small_walk.seconds, 0.95)
            details["list"] = {
                "pages": pages,
                "per_page": per_page,
                "walks": walks,
                "p50_ms": percentile(large_walk.seconds, 0.5),
                "max_ms": round(max(large_walk.seconds) * 1000, 2),
                "small_p50_ms": percentile(small_walk.seconds, 0.5),
                "small_max_ms": round(max(small_walk.seconds) * 1000, 2),
                "rows": large_walk.rows,
                "small_rows": small_walk.rows,
                "small_restarts": small_walk.restarts,
                "plan": list_plan(account=large, pages=pages, per_page=per_page)
                if explain
                else None,
            }
            say(f"  p95 {figures['list_p95_ms']} ms (small: {figures['list_small_p95_ms']} ms)")
        if "create" in parts:
            created = create_measure(
                server=server,
                key=large_key,
                duration=duration,
                connections=connections,
                rounds=rounds,
                say=say,
            )
            for name in ("create_req_per_s", "limit_req_per_s", "ratio"):
                figures[name] = created.pop(name)
            details["create"] = created
        context = PartContext(
            port=server.port,
            api_key=large_key,
            account_id=large.id,
            database_url=database_url,
            redis_url=redis_url,
            env=env,
            workdir=workdir,
            say=say,
            bulk_rows=bulk_rows,
            webhook_deliveries=webhook_deliveries,
            webhook_down_seconds=webhook_down_seconds,
        )
        if "bulk" in parts:
            figures.update(bulk_part(context))
        if "webhooks" in parts:
            figures.update(webhooks_part(context))
    finally:
        process_stop(server.process, grace=10)
        shutil.rmtree(workdir, ignore_errors=True)
    details["seconds"] = round(time.perf_counter() - started, 1)
    return {"bench": "api", **figures, "_details": details}


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def table_print(figures: dict, *, out=sys.stdout) -> None:
    details = figures["_details"]
    rows = []
    if figures["list_p95_ms"] is not None:
        walk = details["list"]
        p95, small = figures["list_p95_ms"], figures["list_small_p95_ms"]
        growth = p95 / small if small else 0.0
        rows += [
            (
                "list",
                f"{p95:.2f} ms",
                f"p95 per page at {details['subscribers']:,} (p50 {walk['p50_ms']:.2f}, max"
                f" {walk['max_ms']:.1f}); {_verdict(p95 < TARGET_LIST_MS)} (target <"
                f" {TARGET_LIST_MS:g} ms)",
            ),
            (
                "list small",
                f"{small:.2f} ms",
                f"p95 per page at {details['small']:,} (p50 {walk['small_p50_ms']:.2f});"
                f" large / small {growth:.2f}x, {_verdict(growth <= TARGET_LIST_GROWTH)}"
                f" (target <= {TARGET_LIST_GROWTH:g}x)",
            ),
            (
                "rows",
                f"{walk['rows']:,}",
                f"read from the large list ({walk['pages']} pages of {walk['per_page']},"
                f" {walk['walks']} walks); {walk['small_rows']:,} from the small one, which"
                f" started again {walk['small_restarts']} times",
            ),
        ]
    if figures["create_req_per_s"] is not None:
        created = details["create"]
        for kind, label in (("limit", "nothing"), ("create", "create")):
            figures_of = created["kinds"][kind]
            statuses = ", ".join(
                f"{n:,} x {status}" for status, n in sorted(figures_of["statuses"].items())
            )
            each = ", ".join(
                f"{phase['req_per_s']:,.0f}" for phase in created["phases"] if phase["kind"] == kind
            )
            rows.append(
                (
                    label,
                    f"{figures_of['req_per_s']:,.0f} req/s",
                    f"phases {each}; p99 {figures_of['p99_ms']:.1f} ms, server CPU"
                    f" {figures_of['cpu_us_per_request']:,.0f} us/request; {statuses or 'none'}",
                )
            )
        rows += [
            (
                "ratio",
                f"{figures['ratio']:.2f}",
                f"create / nothing, {created['rounds']} rounds in turn;"
                f" {_verdict(figures['ratio'] >= TARGET_RATIO)} (target >= {TARGET_RATIO:g})",
            ),
            (
                "CPU ratio",
                f"{created['cpu_ratio']:.2f}",
                "server CPU per request: the do-nothing view's / create's",
            ),
            (
                "generator",
                f"{created['generator_ceiling_req_per_s']:,.0f} req/s",
                "the load generator against a do-nothing asyncio server (its ceiling)",
            ),
        ]
    if figures["bulk_rows_per_s"] is not None:
        rows.append(
            (
                "bulk",
                f"{figures['bulk_rows_per_s']:,.0f} rows/s",
                f"{_verdict(figures['bulk_rows_per_s'] >= TARGET_BULK_ROWS_PER_S)} (target >="
                f" {TARGET_BULK_ROWS_PER_S:,})",
            )
        )
    if figures["webhook_deliveries_per_s"] is not None:
        rows.append(
            (
                "webhooks",
                f"{figures['webhook_deliveries_per_s']:,.0f} /s",
                f"{figures['webhooks_lost']} lost;"
                f" {_verdict(figures['webhook_deliveries_per_s'] >= TARGET_WEBHOOK_DELIVERIES_PER_S and not figures['webhooks_lost'])}"
                f" (target >= {TARGET_WEBHOOK_DELIVERIES_PER_S:,}, 0 lost)",
            )
        )
    for name, value, note in rows:
        print(f"{name:<11}{value:>16}   {note}", file=out)
    plan = details.get("list", {}).get("plan")
    if plan:
        print("Plan of the deepest page's query:\n" + plan, file=out)
    print(
        f"{details['web_workers']} gunicorn sync workers, {details['connections']} connections;"
        f" parts {', '.join(details['parts'])}; {details['seconds']:.0f} s in all.",
        file=out,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated, of {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument("--subscribers", type=int, default=2_000_000, help="the large account")
    parser.add_argument("--small", type=int, default=20_000, help="the small account")
    parser.add_argument("--pages", type=int, default=50, help="pages deep of each walk")
    parser.add_argument("--per-page", type=int, default=1000)
    parser.add_argument("--walks", type=int, default=3)
    parser.add_argument(
        "--duration", type=float, default=10, help="seconds of load of each kind (nothing, create)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="(nothing, create) rounds in turn")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--web-workers", type=int, default=WEB_WORKERS)
    parser.add_argument("--explain", action="store_true", help="print the deepest page's plan")
    parser.add_argument("--bulk-rows", type=int, default=100_000, help="subscribers in one bulk")
    parser.add_argument(
        "--webhook-deliveries", type=int, default=20_000, help="subscribers tagged per round"
    )
    parser.add_argument(
        "--webhook-down-seconds", type=float, default=5.0, help="how long the receiver is down"
    )
    parser.add_argument("--redis-url", default="", help="use this Redis instead of a private one")
    parser.add_argument("--database", default="convertkit_bench_api")
    parser.add_argument("--fresh", action="store_true", help="recreate the bench database first")
    parser.add_argument("--drop", action="store_true", help="drop the bench database afterwards")
    args = parser.parse_args(argv)
    parts = tuple(part.strip() for part in args.parts.split(",") if part.strip())
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--parts takes some of {', '.join(PARTS)}")
    numbers = (args.subscribers, args.small, args.pages, args.per_page, args.walks)
    if min(*numbers, args.duration, args.rounds, args.connections, args.web_workers) <= 0:
        parser.error("sizes, --duration, --connections and --web-workers must be positive")
    if args.per_page > 1000:
        parser.error("--per-page is at most 1000, as Kit's")

    sys.path.insert(0, str(ROOT))
    from bench.broadcast import bench_session

    with bench_session(
        database=args.database,
        redis_url=args.redis_url,
        keep=not args.drop,
        fresh=args.fresh,
        ALLOWED_HOSTS="127.0.0.1",
    ) as (database_url, redis_url, _private):
        figures = bench_run(
            parts=parts,
            subscribers=args.subscribers,
            small=args.small,
            pages=args.pages,
            per_page=args.per_page,
            walks=args.walks,
            duration=args.duration,
            rounds=args.rounds,
            connections=args.connections,
            web_workers=args.web_workers,
            database_url=database_url,
            redis_url=redis_url,
            explain=args.explain,
            bulk_rows=args.bulk_rows,
            webhook_deliveries=args.webhook_deliveries,
            webhook_down_seconds=args.webhook_down_seconds,
        )
    table_print(figures)
    print(json.dumps({key: value for key, value in figures.items() if key != "_details"}))
    unexpected = figures["_details"].get("create", {}).get("unexpected", {})
    return 1 if any(unexpected.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
