"""List pages at scale: p95 of the subscriber, form and broadcast lists, and of a segment's page
and member count, at 20,000 and 2,000,000 subscribers.

    python -m convertkit.dev.devstack bench bench/pages.py [--subscribers N] [--repeat R] [--keep]
    (or: DATABASE_URL=... REDIS_URL=... DEBUG=true python bench/pages.py ...)

1. Creates its own database (convertkit_bench beside the one in DATABASE_URL; dropped and
   recreated if it exists) and migrates it. No other database is touched.
2. Seeds an account with 20,000 subscribers (seed_demo's service), VACUUM ANALYZEs (the state
   autovacuum keeps a table in), and measures eight pages through Django's test client, logged in
   as the owner: "first" (/subscribers/), "deep" (?after= an id 90% down the list), "tag"
   (?tag= the median-sized tag), "search" (?q= one subscriber's address up to the @), and the
   form list "forms" (/forms/, over 100 forms), the broadcast list "broadcasts" (/broadcasts/,
   over 200 broadcasts), a segment's page "segment" (/subscribers/segments/<id>/: the median tag
   and a custom field set) and its member count "members" (the htmx fragment the page loads: the
   same count query as a broadcast's recipient count).
   Beside each, the limit: the page's list SELECT (for the segment page its lookup of the
   segment, for the member count the count itself), captured from the page and run raw through
   psycopg2 on the same connection.
3. Seeds a second account with --subscribers, --forms (5,000) forms, --broadcasts (10,000)
   broadcasts and a segment, and measures the same pages again.
4. Imports a generated --import-rows CSV through the importer (bench/import_speed.py), beside the
   limit: COPY of the same rows into a table with a unique (account, email) index.
5. Drops its database (unless --keep), prints a table and, as its last line, one JSON object.

Targets: each page (the subscriber pages, the form list, the broadcast list and the segment page)
p95 < 50 ms at 2,000,000 subscribers and at most 1.5 times its 20,000 figure; import >= 50,000
rows/s. The member count has none: it reads every member, so it grows with the segment, which
is why the segment page (like the broadcast editor) leaves it to a request of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
SMALL_SUBSCRIBERS = 20_000
PAGES = ("first", "deep", "tag", "search", "forms", "broadcasts", "segment", "members")
# The table each page reads, whose SELECT (ordered and limited, for a list) is that page's limit.
PAGE_TABLES = {page: "subscribers_subscriber" for page in PAGES} | {
    "forms": "subscribers_form",
    "broadcasts": "broadcasts_broadcast",
    "segment": "subscribers_segment",
}
# Pages that are not lists: their limit is their one SELECT of the table, ordered or not.
SINGLE_ROW_PAGES = {"segment"}
# The member count's limit: the count query itself (broadcasts.audience.audience_count's).
COUNT_SQL_START = "SELECT count(*) FROM (SELECT s.id FROM subscribers_subscriber s WHERE"
# Pages without a target (see the targets above).
UNTARGETED = {"members"}
# Request headers of a page: the member count is an htmx fragment.
PAGE_HEADERS = {"members": {"HTTP_HX_REQUEST": "true"}}
SMALL_FORMS = 100
SMALL_BROADCASTS = 200
TARGET_MS = 50.0
TARGET_GROWTH = 1.5
TARGET_IMPORT_ROWS_PER_S = 50_000
WARMUP = 3


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile, in milliseconds (samples are in seconds)."""
    ordered = sorted(samples)
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000, 2)


@dataclass
class PageFigures:
    p95_ms: float
    # Medians beside the p95: on a shared machine one preempted fetch in twenty moves a p95.
    p50_ms: float
    limit_p95_ms: float
    limit_p50_ms: float
    queries: int
    rows_sql: str


@dataclass
class AccountFixture:
    """A seeded account, its owner, and the parameters of its pages."""

    account: object
    owner: object
    seed_seconds: float
    urls: dict[str, str]
    # An address each page must show, so that a page answering with an empty list is noticed.
    expect: dict[str, str]


def forms_seed(*, account, count: int) -> str:
    """`count` forms with made-up counters, as bulk as an import; returns the newest one's name."""
    from subscribers.models import Form

    Form.objects.bulk_create(
        [
            Form(
                account=account,
                name=f"Bench form {n}",
                fields=[{"key": "email", "label": "Email address", "required": True}],
                view_count=1000 + n % 997,
                signup_count=n % 211,
                subscriber_count=n % 199,
            )
            for n in range(count)
        ],
        batch_size=1000,
    )
    return f"Bench form {count - 1}"


def broadcasts_seed(*, account, count: int) -> str:
    """`count` sent broadcasts with made-up figures; returns the newest one's subject."""
    from django.utils import timezone

    from broadcasts.models import Broadcast

    sent_at = timezone.now()
    Broadcast.objects.bulk_create(
        [
            Broadcast(
                account=account,
                subject=f"Bench issue {n}",
                state=Broadcast.State.SENT,
                sent_at=sent_at,
                recipient_count=10_000 + n,
                sent_count=10_000 + n,
            )
            for n in range(count)
        ],
        batch_size=1000,
    )
    return f"Bench issue {count - 1}"


def segment_seed(*, account, tag) -> tuple[str, str]:
    """A segment of `tag`'s subscribers with a city; returns the URLs of its page and of its
    member count."""
    from subscribers.segments.services import segment_create

    segment = segment_create(
        account=account,
        name=f"Bench segment: {tag.name} with a city",
        include_tag_ids=[tag.id],
        field_conditions=[{"key": "city", "op": "is_set", "value": ""}],
    )
    return f"/subscribers/segments/{segment.id}/", f"/subscribers/segments/{segment.id}/count/"


def account_seed(
    *,
    name: str,
    owner_email: str,
    subscribers: int,
    forms: int,
    broadcasts: int,
    say: Callable,
) -> AccountFixture:
    """An account of `subscribers` demo subscribers, `forms` forms and `broadcasts` broadcasts,
    and the URLs of the pages to measure."""
    from convertkit.models import User
    from convertkit.services import account_create
    from subscribers.models import Subscriber
    from subscribers.seeding import demo_data_seed

    owner = User.objects.create_user(email=owner_email, password=None)
    account = account_create(owner=owner, name=name)
    started = time.perf_counter()
    result = demo_data_seed(
        account=account,
        subscribers=subscribers,
        tags=10,
        seed=1,
        progress=lambda done, total: say(f"  seeded {done:,} / {total:,}", end="\r"),
    )
    seconds = time.perf_counter() - started
    say(f"  seeded {subscribers:,} subscribers, {result.taggings:,} taggings in {seconds:.1f}s")
    ids = Subscriber.objects.filter(account=account).order_by("id").values_list("id", flat=True)
    lowest, highest = ids.first(), ids.last()
    deep_id = lowest + (highest - lowest) // 10
    middle = Subscriber.objects.filter(account=account, id__gte=(lowest + highest) // 2).order_by(
        "id"
    )[0]
    newest = Subscriber.objects.filter(account=account).latest("id")
    below_deep = Subscriber.objects.filter(account=account, id__lt=deep_id).latest("id")
    tags = sorted(result.tags, key=lambda tag: (tag.subscriber_count, tag.id))
    median_tag = tags[len(tags) // 2]
    newest_form = forms_seed(account=account, count=forms)
    newest_broadcast = broadcasts_seed(account=account, count=broadcasts)
    segment_url, count_url = segment_seed(account=account, tag=median_tag)
    say(f"  and {forms:,} forms, {broadcasts:,} broadcasts, a segment")
    return AccountFixture(
        account=account,
        owner=owner,
        seed_seconds=seconds,
        urls={
            "first": "/subscribers/",
            "deep": f"/subscribers/?after={deep_id}",
            "tag": f"/subscribers/?tag={median_tag.id}",
            "search": "/subscribers/?" + urlencode({"q": middle.email.split("@")[0]}),
            "forms": "/forms/",
            "broadcasts": "/broadcasts/",
            "segment": segment_url,
            "members": count_url,
        },
        expect={
            "first": newest.email,
            "deep": below_deep.email,
            "tag": Subscriber.objects.filter(taggings__tag=median_tag).latest("id").email,
            "search": middle.email,
            "forms": newest_form,
            "broadcasts": newest_broadcast,
            "segment": "with a city",
            "members": "in this segment right now",
        },
    )


def rows_query(captured: list[dict], page: str) -> str:
    """The page's limit query: the SELECT that orders and limits rows of its table (for a list),
    its SELECT of the table (for a single row), or the count."""
    table = PAGE_TABLES[page]
    for query in captured:
        sql = query["sql"]
        if page == "members":
            if sql.startswith(COUNT_SQL_START):
                return sql
        elif (
            sql.startswith("SELECT")
            and f'FROM "{table}"' in sql
            and "LIMIT" in sql
            and ("ORDER BY" in sql or page in SINGLE_ROW_PAGES)
        ):
            return sql
    raise RuntimeError(f"The page {page} ran no {table} query to measure: " + repr(captured))


def pages_measure(fixtures: list[AccountFixture], *, repeat: int) -> list[dict[str, PageFigures]]:
    """Each page of each account: p95 and median of `repeat` fetches after a warm-up, and of its
    list query run raw through psycopg2 on the same connection.

    With several accounts their fetches alternate, so that a burst of load from elsewhere on the
    machine weighs on each account alike and their figures can be compared.
    """
    from django.test import Client

    clients = []
    for fixture in fixtures:
        client = Client()
        client.force_login(fixture.owner)
        clients.append(client)
    results: list[dict[str, PageFigures]] = [{} for _ in fixtures]
    for page in PAGES:
        targets = [
            (client, fixture.urls[page], fixture.expect[page])
            for client, fixture in zip(clients, fixtures, strict=True)
        ]
        measured = _page_measure(targets, page=page, repeat=repeat)
        for result, figures in zip(results, measured, strict=True):
            result[page] = figures
    return results


def _page_measure(targets: list[tuple], *, page: str, repeat: int) -> list[PageFigures]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    headers = PAGE_HEADERS.get(page, {})
    captured = []
    for client, url, expect in targets:
        for _ in range(WARMUP):
            response = client.get(url, **headers)
            if response.status_code != 200 or expect not in response.content.decode():
                raise RuntimeError(f"{url} answered {response.status_code} without {expect}")
        with CaptureQueriesContext(connection) as capture:
            client.get(url, **headers)
        # Copied now: the next request resets the connection's query log.
        captured.append(list(capture.captured_queries))
    sqls = [rows_query(queries, page) for queries in captured]
    timings: list[list[float]] = [[] for _ in targets]
    for _ in range(repeat):
        for samples, (client, url, _expect) in zip(timings, targets, strict=True):
            started = time.perf_counter()
            response = client.get(url, **headers)
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code)
    raw_timings: list[list[float]] = [[] for _ in targets]
    with connection.connection.cursor() as raw:
        for round_number in range(WARMUP + repeat):
            for samples, sql in zip(raw_timings, sqls, strict=True):
                started = time.perf_counter()
                raw.execute(sql)
                raw.fetchall()
                if round_number >= WARMUP:
                    samples.append(time.perf_counter() - started)
    return [
        PageFigures(
            p95_ms=percentile(samples, 0.95),
            p50_ms=percentile(samples, 0.5),
            limit_p95_ms=percentile(raw_samples, 0.95),
            limit_p50_ms=percentile(raw_samples, 0.5),
            queries=len(queries),
            rows_sql=sql,
        )
        for samples, raw_samples, queries, sql in zip(
            timings, raw_timings, captured, sqls, strict=True
        )
    ]


def tables_settle(*, say: Callable) -> None:
    """The state a database is in some minutes after a bulk load, so that is what gets measured.

    VACUUM ANALYZE does what autovacuum would (visibility map, statistics); CHECKPOINT writes the
    load's dirty pages now rather than in the middle of the measurement (skipped without the
    privilege to run it). Skipped inside a transaction, where VACUUM cannot run.
    """
    from django.db import DatabaseError, connection

    if connection.in_atomic_block:
        return
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM (ANALYZE) subscribers_subscriber, subscribers_tagging, subscribers_form, "
            "broadcasts_broadcast, subscribers_segment"
        )
        with contextlib.suppress(DatabaseError):
            cursor.execute("CHECKPOINT")
    say(f"  VACUUM (ANALYZE) and CHECKPOINT in {time.perf_counter() - started:.1f}s")


def bench_run(
    *,
    subscribers: int,
    small: int = SMALL_SUBSCRIBERS,
    forms: int = 5_000,
    small_forms: int = SMALL_FORMS,
    broadcasts: int = 10_000,
    small_broadcasts: int = SMALL_BROADCASTS,
    import_rows: int = 1_000_000,
    repeat: int = 30,
    skip_import: bool = False,
    say: Callable = print,
) -> dict:
    """Runs the whole benchmark on the current database; returns the figures (see the JSON line)."""
    say(f"Seeding the small account ({small:,} subscribers)")
    small_fixture = account_seed(
        name="Bench small",
        owner_email="small@bench.example",
        subscribers=small,
        forms=small_forms,
        broadcasts=small_broadcasts,
        say=say,
    )
    tables_settle(say=say)
    say("Measuring its pages")
    [small_pages] = pages_measure([small_fixture], repeat=repeat)
    say(f"Seeding the large account ({subscribers:,} subscribers)")
    large_fixture = account_seed(
        name="Bench large",
        owner_email="large@bench.example",
        subscribers=subscribers,
        forms=forms,
        broadcasts=broadcasts,
        say=say,
    )
    tables_settle(say=say)
    say("Measuring its pages (and the small account's again, alternating with them)")
    large_pages, small_again = pages_measure([large_fixture, small_fixture], repeat=repeat)
    imported = limit_copy = None
    if not skip_import:
        from bench import import_speed

        say(f"Importing {import_rows:,} rows through the importer")
        imported = import_speed.import_speed_measure(rows=import_rows)
        say(f"  {imported}")
        say(f"COPY of the same {import_rows:,} rows (the limit)")
        limit_copy = import_speed.copy_limit_measure(rows=import_rows)
        say(f"  {limit_copy}")
    return {
        "bench": "pages",
        "subscribers": subscribers,
        "forms": forms,
        "broadcasts": broadcasts,
        "p95_ms": {page: large_pages[page].p95_ms for page in PAGES},
        "small_p95_ms": {page: small_pages[page].p95_ms for page in PAGES},
        "limit_p95_ms": {page: large_pages[page].limit_p95_ms for page in PAGES},
        "import_rows_per_s": imported["rows_per_s"] if imported else None,
        "limit_copy_rows_per_s": limit_copy["rows_per_s"] if limit_copy else None,
        "_details": {
            "small": small,
            "seed_seconds": round(large_fixture.seed_seconds, 1),
            "urls": large_fixture.urls,
            "queries": {page: large_pages[page].queries for page in PAGES},
            "small_limit_p95_ms": {page: small_pages[page].limit_p95_ms for page in PAGES},
            "p50_ms": {page: large_pages[page].p50_ms for page in PAGES},
            "small_again_p95_ms": {page: small_again[page].p95_ms for page in PAGES},
            "small_again_p50_ms": {page: small_again[page].p50_ms for page in PAGES},
            "limit_p50_ms": {page: large_pages[page].limit_p50_ms for page in PAGES},
            "rows_sql": {page: large_pages[page].rows_sql for page in PAGES},
            "import": imported,
        },
    }


def table_print(figures: dict, *, show_sql: bool = False, out=sys.stdout) -> None:
    details = figures["_details"]
    small, large = _size(details["small"]), _size(figures["subscribers"])
    columns = (
        ("page", 8),
        (f"p95 {small}", 10),
        (f"p95 {large}", 10),
        ("growth", 8),
        (f"p95 {small}*", 10),
        ("growth*", 9),
        (f"p50 {small}*", 10),
        (f"p50 {large}", 10),
        ("SQL p95", 9),
        ("SQL p50", 9),
        ("queries", 9),
        ("target", 8),
    )
    lines = [
        "".join(
            title.rjust(width) if i else title.ljust(width)
            for i, (title, width) in enumerate(columns)
        )
    ]
    lines.append("-" * len(lines[0]))
    for page in PAGES:
        at_small, at_large = figures["small_p95_ms"][page], figures["p95_ms"][page]
        beside = details["small_again_p95_ms"][page]
        ok = at_large < TARGET_MS and at_large <= TARGET_GROWTH * at_small
        verdict = "-" if page in UNTARGETED else "ok" if ok else "MISSED"
        cells = (
            page,
            f"{at_small:.2f}",
            f"{at_large:.2f}",
            _ratio(at_large, at_small),
            f"{beside:.2f}",
            _ratio(at_large, beside),
            f"{details['small_again_p50_ms'][page]:.2f}",
            f"{details['p50_ms'][page]:.2f}",
            f"{figures['limit_p95_ms'][page]:.2f}",
            f"{details['limit_p50_ms'][page]:.2f}",
            str(details["queries"][page]),
            verdict,
        )
        lines.append(
            "".join(
                cell.rjust(width) if i else cell.ljust(width)
                for i, (cell, (_title, width)) in enumerate(zip(cells, columns, strict=True))
            )
        )
    lines += [
        f"Milliseconds per page through the test client. Targets: p95 < {TARGET_MS:.0f} ms at "
        f"{large}, and at most {TARGET_GROWTH}x the p95 at {small}.",
        f"* the {small} account measured again beside the {large} one, their fetches alternating "
        "(on a shared machine, load from elsewhere then weighs on both alike).",
        f"SQL: the page's list query (subscribers, forms or broadcasts; the segment's lookup; the "
        f"count itself) at {large}, run raw through psycopg2 (the limit). The member count has no "
        "target: it grows with the segment.",
    ]
    print("\n".join(lines), file=out)
    if figures["import_rows_per_s"] is not None:
        rate = figures["import_rows_per_s"]
        print(
            f"import  {rate:>12,} rows/s   limit (COPY, unique index) "
            f"{figures['limit_copy_rows_per_s']:,} rows/s   "
            f"{'ok' if rate >= TARGET_IMPORT_ROWS_PER_S else 'MISSED'} "
            f"(target >= {TARGET_IMPORT_ROWS_PER_S:,})",
            file=out,
        )
    print(
        f"Seeding {figures['subscribers']:,} subscribers took {details['seed_seconds']:.1f}s.",
        file=out,
    )
    if show_sql:
        for page in PAGES:
            print(f"\n{page}: {details['urls'][page]}\n{details['rows_sql'][page]}", file=out)


def _size(count: int) -> str:
    return (
        f"{count / 1e6:g}M" if count >= 1e6 else f"{count / 1e3:g}k" if count >= 1e3 else str(count)
    )


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def bench_database_url(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + name))


@contextlib.contextmanager
def _database_admin(url: str, name: str) -> Iterator:
    """An autocommit cursor on the server's postgres database, to create or drop the bench
    database `name` (refused unless its name says bench: it is ours)."""
    import psycopg2

    if "bench" not in name:
        raise SystemExit(f"--database {name}: the bench only uses a database named *bench*")
    admin = psycopg2.connect(bench_database_url(url, "postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            yield cursor
    finally:
        admin.close()


def database_recreate(url: str, name: str, *, drop_only: bool = False) -> None:
    """Drops the bench database and creates it afresh."""
    from psycopg2 import sql

    with _database_admin(url, name) as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if not drop_only:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_ensure(url: str, name: str) -> None:
    """Creates the bench database if it is missing."""
    from psycopg2 import sql

    with _database_admin(url, name) as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=2_000_000, help="large account size")
    parser.add_argument("--forms", type=int, default=5_000, help="forms of the large account")
    parser.add_argument(
        "--broadcasts", type=int, default=10_000, help="broadcasts of the large account"
    )
    parser.add_argument("--import-rows", type=int, default=1_000_000, help="rows of the CSV")
    parser.add_argument("--repeat", type=int, default=30, help="fetches per page, after warm-up")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--skip-import", action="store_true", help="measure the pages only")
    parser.add_argument("--show-sql", action="store_true", help="print each page's list query")
    parser.add_argument("--database", default="convertkit_bench", help="bench database name")
    args = parser.parse_args(argv)
    if args.subscribers < 1 or args.repeat < 1 or args.import_rows < 1:
        parser.error("--subscribers, --repeat and --import-rows must be positive")

    base_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/convertkit"
    database_recreate(base_url, args.database)
    os.environ["DATABASE_URL"] = bench_database_url(base_url, args.database)
    # Keep one connection for the whole run, as a web process does between requests.
    os.environ["DATABASE_CONN_MAX_AGE"] = "86400"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convertkit.settings")
    sys.path.insert(0, str(ROOT))
    import django

    # With DEBUG off below, WhiteNoise notes the missing collectstatic output: pages need none.
    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    def say(message: str, end: str = "\n") -> None:
        print(message, end=end, file=sys.stderr, flush=True)

    try:
        say(f"Migrating {args.database}")
        call_command("migrate", verbosity=0)
        # Production behaviour for templates and query logging; the query capture forces its own.
        settings.DEBUG = False
        figures = bench_run(
            subscribers=args.subscribers,
            forms=args.forms,
            broadcasts=args.broadcasts,
            import_rows=args.import_rows,
            repeat=args.repeat,
            skip_import=args.skip_import,
            say=say,
        )
    finally:
        connections.close_all()
        if not args.keep:
            database_recreate(base_url, args.database, drop_only=True)
    table_print(figures, show_sql=args.show_sql)
    print(json.dumps({key: value for key, value in figures.items() if key != "_details"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
