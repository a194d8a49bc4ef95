"""A million subscribers through a two-email sequence, beside a broadcast of the same size.

    python -m convertkit.dev.devstack bench bench/sequences.py --subscribers 1000000
    (make bench-sequences ARGS="--subscribers 20000" for a quick look)

1. Creates its own database (convertkit_bench_sequences) and Redis, as bench/broadcast.py does,
   and seeds an account with --subscribers active subscribers and a broadcast to all of them.
2. Starts the fake Postmark (bench/fake_postmark.py) and a real Celery worker with production
   settings (-c 2), and sends the broadcast: its end-to-end msgs/s is the yardstick.
3. Creates a sequence of two published emails (the broadcast's content): email 1 immediate,
   email 2 a day later. Enrols every subscriber at once as the bulk action does
   (sequences.services.subscribers_enrol, one INSERT ... SELECT): subscriptions/s.
4. Times the due query of one claimed batch (engine._claim_rows, SEQUENCE_CLAIM_BATCH rows,
   rolled back) against this sequence's 1M due subscriptions and against a second sequence of
   10,000: the scheduler's index must keep it flat.
5. Email 1: runs the scheduler (sequences.engine.sequences_advance, what the beat task runs) in
   this process while the worker sends: msgs/s from the scheduler's start to the last message
   accepted by the receiver. Then the clock moves to email 2's time (the scheduler takes `now`)
   and email 2 goes the same way.
6. Checks every subscriber got each email exactly once (duplicates and missing, both 0), prints
   a table and, last, one JSON line.

Targets: enrolment of 1M under 60 s; email 1 at >= 0.8 of the broadcast's msgs/s; the due
query at 1M within 1.5x of the one at 10k.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.broadcast import (  # noqa: E402 - after the path is set
    BENCH_SECRET_KEY,
    BODY,
    PREVIEW_TEXT,
    SUBJECT,
    MemoryWatch,
    _say,
    bench_session,
    copies_check,
    log_tail,
    pipeline_send,
    process_stop,
    production_env,
    receiver_start,
    worker_start,
    worker_wait_ready,
)

TARGET_ENROL_S = 60.0
TARGET_RATIO = 0.8
TARGET_CLAIM_GROWTH = 1.5
SMALL_SEQUENCE = 10_000


def sequence_build(*, account, name: str):
    """A running sequence of two published emails with the broadcast's content: email 1
    immediate, email 2 a day after it; every day allowed, send hour 9, UTC."""
    from sequences.models import Sequence
    from sequences.services import EmailValues, email_create, email_publish, email_update

    sequence = Sequence.objects.create(account=account, name=name, time_zone="UTC")
    for subject, delay in ((SUBJECT, 0), ("Day two: " + SUBJECT, 1)):
        email = email_create(sequence=sequence)
        email_update(
            email=email,
            values=EmailValues(
                subject=subject,
                preview_text=PREVIEW_TEXT,
                body=BODY,
                body_format="markdown",
                delay_amount=delay,
                delay_unit="days",
            ),
        )
        email_publish(email=email)
    return sequence


def enrol(*, sequence, subscriber_sql: str, params: dict) -> tuple[int, float]:
    from sequences.services import subscribers_enrol

    started = time.perf_counter()
    result = subscribers_enrol(sequence=sequence, source_sql=subscriber_sql, source_params=params)
    return result.added, time.perf_counter() - started


def claim_ms(*, sequence, now, repeats: int = 7) -> float:
    """Median milliseconds of one claimed batch's due query, in a transaction rolled back."""
    from django.db import transaction

    from sequences.engine import _claim_rows

    timings = []
    for _ in range(repeats):
        with transaction.atomic():
            started = time.perf_counter()
            rows = _claim_rows(sequence_id=sequence.pk, now=now, limit=_batch())
            timings.append(1000 * (time.perf_counter() - started))
            if not rows:
                raise RuntimeError(f"Nothing due in sequence {sequence.pk}")
            transaction.set_rollback(True)
    return round(statistics.median(timings), 2)


def _batch() -> int:
    from django.conf import settings

    return settings.SEQUENCE_CLAIM_BATCH


def email_send(
    *, sequence, message, now, receiver, worker, worker_log: Path, expected: set[str], say
) -> dict:
    """Runs the scheduler at `now` until nothing is due, then waits for the worker to finish
    the message; returns its figures."""
    from bench.fake_postmark import counts_fetch, counts_reset
    from broadcasts.models import Broadcast
    from sequences.engine import sequences_advance, sequences_due

    counts_reset(receiver.counts_url)
    started = time.time()
    scheduled = 0
    while sequences_due(now=now):
        report = sequences_advance(now=now, budget=5.0)
        scheduled += report.sent
        say(f"  scheduler: {scheduled:,} handed to the send queue")
        if worker.poll() is not None:
            raise RuntimeError("The worker exited\n" + log_tail(worker_log))
    scheduler_s = time.time() - started
    rows = Broadcast.objects.filter(pk=message.pk)
    last_report, last_done, last_change = 0.0, -1, time.monotonic()
    while True:
        row = rows.values(
            "recipient_count", "sent_count", "failed_count", "unknown_count", "skipped_count"
        )[0]
        done = sum(row[k] for k in ("sent_count", "failed_count", "unknown_count", "skipped_count"))
        if done >= row["recipient_count"] >= len(expected):
            break
        now_mono = time.monotonic()
        if done != last_done:
            last_done, last_change = done, now_mono
        if now_mono - last_change > 180:
            raise RuntimeError(f"No progress for 180 s ({done:,} done)\n" + log_tail(worker_log))
        if now_mono - last_report >= 5:
            say(f"  {done:,} / {row['recipient_count']:,} sent")
            last_report = now_mono
        if worker.poll() is not None:
            raise RuntimeError("The worker exited\n" + log_tail(worker_log))
        time.sleep(0.05)
    counts = counts_fetch(receiver.counts_url)
    elapsed = (counts["last_at"] or time.time()) - started
    message.refresh_from_db()
    return {
        "seconds": round(elapsed, 2),
        "scheduler_s": round(scheduler_s, 2),
        "copies": counts["copies"],
        "msgs_per_s": round(counts["copies"] / elapsed, 1) if elapsed > 0 else 0.0,
        "sent": message.sent_count,
        "unknown": message.unknown_count,
        **copies_check(expected, counts["recipients"]),
    }


def bench_run(
    *,
    subscribers: int,
    database_url: str,
    redis_url: str,
    private_redis: bool,
    concurrency: int,
    say: Callable = _say,
) -> dict:
    from django.db import connection

    from bench.broadcast import audience_seed
    from convertkit.celery import app
    from sequences.models import Subscription

    workdir = Path(tempfile.mkdtemp(prefix="bench-sequences-"))
    receiver = worker = None
    try:
        say(f"Seeding {subscribers:,} subscribers")
        broadcast, seed_seconds = audience_seed(recipients=subscribers, say=say)
        account = broadcast.account
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT lower(email) FROM subscribers_subscriber WHERE account_id = %s",
                [account.pk],
            )
            expected = {row[0] for row in cursor.fetchall()}
        receiver = receiver_start("esp")
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
        watch = MemoryWatch(worker.pid, redis_url, private_redis)

        say(f"Broadcast to {subscribers:,} (the yardstick)")
        sent = pipeline_send(
            broadcast=broadcast,
            receiver=receiver,
            watch=watch,
            worker=worker,
            worker_log=worker_log,
            stall_timeout=180.0,
            say=say,
        )
        say(f"  {sent['msgs_per_s']:,.0f} msgs/s")

        sequence = sequence_build(account=account, name="Soup school")
        small = sequence_build(account=account, name="Soup school (10k)")
        email_one, email_two = (email.message for email in sequence.emails.order_by("sort_key"))
        all_subscribers = "SELECT id FROM subscribers_subscriber WHERE account_id = %(acc)s"
        say(f"Enrolling {subscribers:,} subscribers at once")
        added, enrol_s = enrol(
            sequence=sequence, subscriber_sql=all_subscribers, params={"acc": account.pk}
        )
        say(f"  {added:,} in {enrol_s:.1f} s")
        enrol(
            sequence=small,
            subscriber_sql=all_subscribers + " ORDER BY id LIMIT %(n)s",
            params={"acc": account.pk, "n": min(SMALL_SEQUENCE, subscribers)},
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE sequences_subscription")
        # The small sequence only measures its claim (which reads the index whatever the
        # sequence's state): paused, so the scheduler leaves it alone.
        small.state = small.State.PAUSED
        small.save(update_fields=["state"])
        from django.utils import timezone

        now = timezone.now()
        claim_big = claim_ms(sequence=sequence, now=now)
        claim_small = claim_ms(sequence=small, now=now)
        say(f"  due query per batch: {claim_small} ms at 10k, {claim_big} ms at {subscribers:,}")

        say("Email 1 (immediate)")
        first = email_send(
            sequence=sequence,
            message=email_one,
            now=now,
            receiver=receiver,
            worker=worker,
            worker_log=worker_log,
            expected=expected,
            say=say,
        )
        say(f"  {first}")
        later = Subscription.objects.filter(sequence=sequence).order_by("-next_due_at").first()
        clock = later.next_due_at
        say(f"Email 2: the clock moves to {clock:%Y-%m-%d %H:%M} UTC")
        second = email_send(
            sequence=sequence,
            message=email_two,
            now=clock,
            receiver=receiver,
            worker=worker,
            worker_log=worker_log,
            expected=expected,
            say=say,
        )
        say(f"  {second}")
    finally:
        process_stop(worker)
        if receiver is not None:
            process_stop(receiver.process, grace=10)
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = round(first["msgs_per_s"] / sent["msgs_per_s"], 3) if sent["msgs_per_s"] else 0.0
    return {
        "bench": "sequences",
        "subscribers": subscribers,
        "enrol_s": round(enrol_s, 2),
        "email1_msgs_per_s": first["msgs_per_s"],
        "broadcast_msgs_per_s": sent["msgs_per_s"],
        "ratio": ratio,
        "email2_msgs_per_s": second["msgs_per_s"],
        "claim_ms_10k": claim_small,
        "claim_ms_1m": claim_big,
        "duplicates": first["duplicates"] + second["duplicates"],
        "missing": first["missing"] + second["missing"],
        "_details": {
            "seed_seconds": round(seed_seconds, 1),
            "broadcast": sent,
            "email1": first,
            "email2": second,
            "concurrency": concurrency,
        },
    }


def table_print(figures: dict, *, out=sys.stdout) -> None:
    details = figures["_details"]
    n = figures["subscribers"]
    enrol_rate = n / figures["enrol_s"] if figures["enrol_s"] else 0
    growth = figures["claim_ms_1m"] / figures["claim_ms_10k"] if figures["claim_ms_10k"] else 0
    rows = [
        ("subscribers", f"{n:,}", ""),
        (
            "enrolment",
            f"{figures['enrol_s']:.1f} s",
            f"{enrol_rate:,.0f} subscriptions/s, one INSERT ... SELECT"
            f" ({'ok' if figures['enrol_s'] < TARGET_ENROL_S else 'MISSED'}: < {TARGET_ENROL_S:.0f} s)",
        ),
        (
            "broadcast",
            f"{figures['broadcast_msgs_per_s']:,.0f} msgs/s",
            "the same audience as a broadcast, Send to last accepted (the yardstick)",
        ),
        (
            "email 1",
            f"{figures['email1_msgs_per_s']:,.0f} msgs/s",
            f"scheduler start to last accepted; scheduler done in"
            f" {details['email1']['scheduler_s']:.1f} s",
        ),
        (
            "ratio",
            f"{figures['ratio']:.2f}",
            f"email 1 / broadcast ({'ok' if figures['ratio'] >= TARGET_RATIO else 'MISSED'}:"
            f" >= {TARGET_RATIO})",
        ),
        (
            "email 2",
            f"{figures['email2_msgs_per_s']:,.0f} msgs/s",
            f"a day later by the scheduler's clock; scheduler done in"
            f" {details['email2']['scheduler_s']:.1f} s",
        ),
        (
            "due query",
            f"{figures['claim_ms_10k']:.1f} / {figures['claim_ms_1m']:.1f} ms",
            f"one claimed batch at 10k / at {n:,} subscriptions: x{growth:.2f}"
            f" ({'ok' if growth <= TARGET_CLAIM_GROWTH else 'MISSED'}: <= {TARGET_CLAIM_GROWTH})",
        ),
        (
            "copies",
            f"{figures['duplicates']} dup, {figures['missing']} missing",
            "over both emails; must be 0",
        ),
    ]
    for name, value, note in rows:
        print(f"{name:<12}{value:>22}   {note}", file=out)
    print(f"Seeding took {details['seed_seconds']:.1f} s.", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (-c)")
    parser.add_argument("--redis-url", default="", help="use this Redis instead of a private one")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--database", default="convertkit_bench_sequences")
    args = parser.parse_args(argv)
    if args.subscribers < 1 or args.concurrency < 1:
        parser.error("--subscribers and --concurrency must be positive")

    with bench_session(database=args.database, redis_url=args.redis_url, keep=args.keep) as (
        database_url,
        redis_url,
        private_redis,
    ):
        figures = bench_run(
            subscribers=args.subscribers,
            database_url=database_url,
            redis_url=redis_url,
            private_redis=private_redis,
            concurrency=args.concurrency,
        )
    table_print(figures)
    print(json.dumps({key: value for key, value in figures.items() if key != "_details"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
