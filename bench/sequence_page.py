"""The sequence page and `manage.py sequence_status` at scale: their time with a million
subscriptions in one sequence, and the time of each report query.

    python -m convertkit.dev.devstack bench bench/sequence_page.py [--subscriptions N] [--repeat R]
    (or: DATABASE_URL=... REDIS_URL=... DEBUG=true python bench/sequence_page.py ...)

1. Creates its own database (convertkit_sequence_page_bench beside the one in DATABASE_URL;
   dropped and recreated if it exists) and migrates it. No other database is touched.
2. Seeds one account with --subscriptions active subscribers (one INSERT ... SELECT), a tag on
   a tenth of them and a second sequence holding a twentieth, and a sequence of five published
   emails with every subscriber in it (subscribers_enrol, one statement), spread over the
   states (80% active, 5% unconfirmed, 10% completed, 5% stopped) and the positions, each
   email's message with counters and a day of hourly rollups. The sequence excludes the tag
   and the second sequence. VACUUM ANALYZE, as autovacuum would.
3. Measures through Django's test client, logged in as the owner: the sequence page, where
   its subscribers stand (the part htmx fetches once the page has shown), the sequence list
   and its counts (fetched the same way), and `sequence_status` (its selector); and each report
   query alone: the counts by state and position (one scan), the excluded count, the next due,
   the emails' figures.
4. Drops its database (unless --keep), prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pages import WARMUP, bench_database_url, database_recreate, percentile  # noqa: E402

EMAILS = 5


def _timed(function: Callable, repeat: int) -> tuple[float, float]:
    """p50 and p95 of `function` in milliseconds, after a warm-up."""
    for _ in range(WARMUP):
        function()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return percentile(samples, 0.5), percentile(samples, 0.95)


def seed(*, subscriptions: int, say: Callable):
    """The account, its owner, the measured sequence (see the module docstring, step 2)."""
    from django.db import connection
    from django.utils import timezone

    from broadcasts.models import Broadcast
    from convertkit.models import User
    from convertkit.services import account_create
    from sequences.models import Sequence, Subscription
    from sequences.services import (
        EmailValues,
        email_create,
        email_publish,
        email_update,
        sequence_create,
        subscribers_enrol,
    )
    from subscribers.models import Tag
    from tracking.models import Rollup

    owner = User.objects.create_user(email="owner@example.com", password=None)
    account = account_create(owner=owner, name="Bench newsletter")
    account.postal_address = "1 Main Street, Springfield"
    account.save()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO subscribers_subscriber (account_id, email, first_name, fields, state,
                source, consent_method, time_zone, created_at, updated_at)
            SELECT %s, 'reader' || n || '@example.org', 'Reader', '{}', 'active', 'bench', '',
                   '', now(), now()
            FROM generate_series(1, %s) AS n
            """,
            [account.pk, subscriptions],
        )
    tag = Tag.objects.create(account=account, name="paused-for-now")
    other = sequence_create(account=account, name="Another course")
    measured = sequence_create(account=account, name="Welcome course")
    for n in range(EMAILS):
        email = email_create(sequence=measured)
        email_update(
            email=email,
            values=EmailValues(
                subject=f"Lesson {n + 1}",
                preview_text="",
                body="Hello {{ subscriber.first_name }}, [a link](https://example.org/).",
                body_format="markdown",
                delay_amount=0 if n == 0 else 1,
                delay_unit="days",
            ),
        )
        email_publish(email=email)
    source = "SELECT id FROM subscribers_subscriber WHERE account_id = %(bench_account)s"
    subscribers_enrol(
        sequence=measured, source_sql=source, source_params={"bench_account": account.pk}
    )
    keys = list(measured.emails.order_by("sort_key").values_list("sort_key", flat=True))
    S = Subscription.State
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO subscribers_tagging (account_id, tag_id, subscriber_id, created_at)
            SELECT %s, %s, id, now() FROM subscribers_subscriber
            WHERE account_id = %s AND id %% 10 = 0
            """,
            [account.pk, tag.pk, account.pk],
        )
        cursor.execute(
            """
            INSERT INTO sequences_subscription (account_id, sequence_id, subscriber_id, state,
                round, sent_count, anchor_at, subscribed_at)
            SELECT %s, %s, id, 0, 0, 0, now(), now() FROM subscribers_subscriber
            WHERE account_id = %s AND id %% 20 = 0
            """,
            [account.pk, other.pk, account.pk],
        )
        cursor.execute(
            """
            UPDATE sequences_subscription SET
                state = CASE WHEN r < 0.80 THEN %s WHEN r < 0.85 THEN %s WHEN r < 0.95 THEN %s
                             ELSE %s END,
                position_key = (%s::float8[])[1 + floor(r2 * %s)::int],
                next_due_at = now() + (r2 * interval '3 days')
            FROM (SELECT id AS sid, random() AS r, random() AS r2 FROM sequences_subscription
                  WHERE sequence_id = %s) AS picks
            WHERE id = picks.sid
            """,
            [S.ACTIVE, S.UNCONFIRMED, S.COMPLETED, S.STOPPED, keys, len(keys), measured.pk],
        )
    Sequence.objects.filter(pk=measured.pk).update(
        exclude_tag_ids=[tag.pk], exclude_sequence_ids=[other.pk]
    )
    measured.refresh_from_db()
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for index, email in enumerate(measured.emails.order_by("sort_key")):
        sent = subscriptions // (index + 1)
        Broadcast.objects.filter(pk=email.message_id).update(recipient_count=sent, sent_count=sent)
        Rollup.objects.bulk_create(
            Rollup(
                broadcast_id=email.message_id,
                hour=hour - timedelta(hours=h),
                opens=sent // 100,
                human_opens=sent // 150,
                unique_opens=sent // 120,
                human_unique_opens=sent // 180,
                clicks=sent // 500,
                unique_clicks=sent // 600,
                human_unique_clicks=sent // 700,
                unsubscribes=sent // 5000,
                bounces=sent // 8000,
            )
            for h in range(24)
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM (ANALYZE) subscribers_subscriber, subscribers_tagging, "
            "sequences_subscription, sequences_sequence, sequences_sequenceemail, "
            "broadcasts_broadcast, tracking_rollup"
        )
    say(f"  seeded {subscriptions:,} subscriptions in {time.perf_counter() - started:.1f}s")
    return account, owner, measured


def bench_run(*, subscriptions: int, repeat: int, say: Callable) -> dict:
    from django.test import Client

    from sequences import selectors

    account, owner, sequence = seed(subscriptions=subscriptions, say=say)
    client = Client()
    client.force_login(owner)
    page = f"/sequences/{sequence.id}/"
    response = client.get(page)
    assert response.status_code == 200 and "Lesson 5" in response.content.decode(), page
    counts = selectors.subscriber_counts(sequence=sequence)
    say(
        f"  active {counts.active:,}, excluded {counts.excluded:,}, unconfirmed "
        f"{counts.unconfirmed:,}, completed {counts.completed:,}"
    )
    htmx = {"HTTP_HX_REQUEST": "true"}
    measured = {
        "page": lambda: client.get(page),
        "figures": lambda: client.get(f"{page}subscribers/", **htmx),
        "list": lambda: client.get("/sequences/"),
        "list_counts": lambda: client.get(f"/sequences/counts/?ids={sequence.id}", **htmx),
        "status": lambda: selectors.sequence_status(sequence=sequence),
        "counts": lambda: selectors.subscriber_counts(sequence=sequence, excluded=False),
        "excluded": lambda: selectors.excluded_count(sequence=sequence),
        "due": lambda: selectors.due(sequence=sequence),
        "emails": lambda: selectors.email_rows(sequence=sequence),
    }
    figures = {}
    for name, function in measured.items():
        p50, p95 = _timed(function, repeat)
        figures[name] = {"p50_ms": p50, "p95_ms": p95}
        say(f"  {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    return {"bench": "sequence_page", "subscriptions": subscriptions, "ms": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20, help="fetches per figure, after warm-up")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument(
        "--database", default="convertkit_sequence_page_bench", help="bench database name"
    )
    args = parser.parse_args(argv)
    base_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/convertkit"
    database_recreate(base_url, args.database)
    os.environ["DATABASE_URL"] = bench_database_url(base_url, args.database)
    os.environ["DATABASE_CONN_MAX_AGE"] = "86400"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convertkit.settings")
    import django

    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        say(f"Migrating {args.database}")
        call_command("migrate", verbosity=0)
        settings.DEBUG = False
        figures = bench_run(subscriptions=args.subscriptions, repeat=args.repeat, say=say)
    finally:
        connections.close_all()
        if not args.keep:
            database_recreate(base_url, args.database, drop_only=True)
    print(f"{'':<10}{'p50 ms':>10}{'p95 ms':>10}   at {args.subscriptions:,} subscriptions")
    for name, values in figures["ms"].items():
        print(f"{name:<10}{values['p50_ms']:>10.1f}{values['p95_ms']:>10.1f}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
