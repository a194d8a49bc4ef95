"""Outgoing webhooks: signed deliveries per second to a local receiver, and none lost after
the receiver was down for a while. The webhooks part of bench/api.py, runnable alone:

    python -m convertkit.dev.devstack bench bench/webhooks_part.py --deliveries 20000
    python bench/webhooks_part.py --deliveries 20000     # with DATABASE_URL set

webhooks_measure (Django set up, the database migrated: bench/api.py's session, or this file's
own through bench.broadcast.bench_session):

1. An account with `deliveries` active subscribers and a tag; a legacy webhook
   (subscriber.tag_add of the tag: one delivery per event, Kit's bare body) and a webhook
   endpoint (subscriber.tag_added: up to a hundred events per delivery), both to the receiver,
   a process of its own (bench.webhook_receiver: asyncio, keep-alive, every signature checked,
   every event counted once: by event id for the endpoint, by X-Kit-Delivery for the legacy
   webhook, whose deliveries carry one event each).
2. Phase "up": every subscriber is tagged through the service (subscribers_tag, one outbox
   event each) and the engine turns the outbox into deliveries (events_consume until empty:
   deliveries + deliveries/100 of them) while `workers` worker processes, started before,
   run the delivery loop (webhooks.delivery.deliveries_send over and over, as the
   webhooks.deliver task does, with the production settings) until every delivery is
   delivered. webhook_deliveries_per_s: the deliveries / the seconds from the first one queued
   (its created_at) to the last one delivered (its completed_at).
3. Phase "down": the receiver stops listening (connections refused), everyone is untagged
   and tagged again (a second round of the same events), the workers keep trying for
   `down_seconds`, then the receiver comes back. The retry schedule's waits (30 s, then more)
   are skipped by making the retrying deliveries due now, as often as they fail again (what
   the tests' clock does); the workers run until nothing is pending or retrying.
4. webhooks_lost: the events of both rounds (2 x deliveries, for each of the two webhooks)
   that the receiver never counted; bad signatures are counted apart. Must be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.broadcast import (  # noqa: E402 - after the path
    _ready_line,
    _say,
    bench_session,
    process_stop,
    production_env,
    python_env,
)

TARGET_DELIVERIES_PER_S = 1000
SECRET = "bench-webhook-secret"
OWNER = "hooks-owner@bench.example"
# The longest the bench waits for the workers to finish a phase.
PHASE_TIMEOUT_S = 900.0


def _control(url: str, action: str = "stats") -> dict:
    method = "GET" if action == "stats" else "POST"
    request = urllib.request.Request(f"{url}/{action}", method=method, data=None)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _receiver_start() -> tuple[subprocess.Popen, str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook_receiver", "--secret", SECRET],
        cwd=ROOT,
        env=python_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    values = dict(part.split("=", 1) for part in _ready_line(process, "receiver").split()[1:])
    return process, values["hooks"], values["control"]


def _workers_start(count: int, concurrency: int) -> list[subprocess.Popen]:
    from django.conf import settings
    from django.db import connection

    from bench.pages import bench_database_url

    env = production_env(
        # The database this process works in (a test's own, under pytest).
        database_url=bench_database_url(settings.DATABASE_URL, connection.settings_dict["NAME"]),
        redis_url=settings.REDIS_URL,
        secret_key=settings.SECRET_KEY,
        WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
        WEBHOOK_CONCURRENCY=str(concurrency),
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.webhooks_part", "--worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    for worker in workers:
        _ready_line(worker, "webhook worker", timeout=60)
    return workers


def worker_loop() -> None:
    """One worker process: the delivery loop until SIGTERM."""
    import django

    django.setup()
    from django.db import InterfaceError, OperationalError

    from webhooks.delivery import deliveries_send

    stopping = []
    signal.signal(signal.SIGTERM, lambda *args: stopping.append(True))
    print("ready worker", flush=True)
    while not stopping:
        try:
            claimed = deliveries_send().claimed
        except (OperationalError, InterfaceError) as error:
            # What the task's retry policy does: try again (the batch's lease stands).
            _say(f"webhook worker: {error}")
            claimed = 0
        if not claimed:
            time.sleep(0.02)


def _waiting() -> tuple[int, int]:
    """(deliveries pending or retrying, delivered)."""
    from webhooks.models import WebhookDelivery

    Status = WebhookDelivery.Status
    waiting = WebhookDelivery.objects.filter(status__in=[Status.PENDING, Status.RETRYING]).count()
    return waiting, WebhookDelivery.objects.filter(status=Status.DELIVERED).count()


def _until_settled(say: Callable, what: str, *, skip_waits: bool = False) -> float:
    """Waits until no delivery is pending or retrying (with `skip_waits`, making the retrying
    ones due at once, over and over); returns when the last one completed."""
    from django.db import connection
    from django.db.models import Max
    from django.utils import timezone

    from webhooks.models import WebhookAttempt, WebhookDelivery

    deadline = time.monotonic() + PHASE_TIMEOUT_S
    shown = time.monotonic()
    while True:
        if skip_waits:
            # Only those waiting for a retry: not those a worker holds (claimed, their attempt
            # counted but not yet recorded), whose lease must stand.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    UPDATE {WebhookDelivery._meta.db_table} AS d SET next_attempt_at = %s
                    WHERE d.status = 'retrying' AND d.next_attempt_at > %s
                      AND d.attempt_count = (SELECT count(*) FROM {WebhookAttempt._meta.db_table}
                                             AS a WHERE a.delivery_id = d.id)
                    """,
                    [timezone.now(), timezone.now()],
                )
        waiting, delivered = _waiting()
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {waiting} deliveries still waiting")
        if time.monotonic() - shown > 5:
            say(f"  {what}: {delivered:,} delivered, {waiting:,} waiting")
            shown = time.monotonic()
        time.sleep(0.05)
    return WebhookDelivery.objects.aggregate(last=Max("completed_at"))["last"].timestamp()


def _webhooks_forget() -> None:
    """Forgets an earlier run's webhooks in a database kept between runs (bench/api.py keeps
    its own): the figures count every delivery of the tables. Its accounts and subscribers
    stay; this run seeds an account of its own."""
    from django.db import connection

    from automations.models import Trigger
    from webhooks.models import (
        WebhookAttempt,
        WebhookDelivery,
        WebhookEndpoint,
        WebhookSubscription,
    )

    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Trigger._meta.db_table} WHERE role = 'hook'")
        for model in (WebhookAttempt, WebhookDelivery, WebhookSubscription, WebhookEndpoint):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")


def _seed(deliveries: int):
    from convertkit.models import User
    from convertkit.services import account_create
    from subscribers.models import Subscriber, Tag

    owner = User.objects.filter(email=OWNER).first() or User.objects.create_user(
        email=OWNER, password=None
    )
    account = account_create(owner=owner, name="Webhooks bench")
    Subscriber.objects.bulk_create(
        (
            Subscriber(
                account=account,
                email=f"hook{n}@bench.example",
                first_name=f"Reader {n}",
                state=Subscriber.State.ACTIVE,
                source="bench",
            )
            for n in range(deliveries)
        ),
        batch_size=5000,
    )
    tag = Tag.objects.create(account=account, name="Customer")
    ids = list(Subscriber.objects.filter(account=account).values_list("id", flat=True))
    return account, tag, ids


def _round(account, tag, ids, *, untag_first: bool) -> None:
    """Everyone tagged (after an untag), and the outbox consumed into deliveries."""
    from automations.engine import events_consume
    from automations.models import Event
    from subscribers.services import subscribers_tag, subscribers_untag

    if untag_first:
        subscribers_untag(account_id=account.pk, tag_id=tag.pk, subscriber_ids=ids)
    for start in range(0, len(ids), 5000):
        subscribers_tag(
            account_id=account.pk, tag_id=tag.pk, subscriber_ids=ids[start : start + 5000]
        )
    while events_consume().events:
        pass
    assert not Event.objects.exists()


def webhooks_measure(
    *,
    deliveries: int,
    down_seconds: float,
    workers: int = 2,
    concurrency: int = 32,
    say: Callable = _say,
) -> dict:
    """Steps 1 to 4 of the module docstring; returns the figures."""
    from django.db.models import Min

    from webhooks.models import WebhookDelivery, WebhookEndpoint
    from webhooks.services import endpoint_create

    _webhooks_forget()
    receiver, hooks_url, control_url = _receiver_start()
    processes: list[subprocess.Popen] = []
    try:
        say(f"Seeding {deliveries:,} subscribers")
        account, tag, ids = _seed(deliveries)
        from django.conf import settings

        allowed = settings.WEBHOOK_ALLOW_PRIVATE_TARGETS
        settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
        try:
            endpoint_create(
                account=account,
                url=hooks_url,
                events={"name": "subscriber.tag_add", "tag_id": tag.pk},
                kind=WebhookEndpoint.Kind.LEGACY,
            )
            endpoint_create(account=account, url=hooks_url, events=["subscriber.tag_added"])
        finally:
            settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = allowed
        WebhookEndpoint.objects.filter(account=account).update(secret=SECRET)

        processes = _workers_start(workers, concurrency)
        say(f"Phase up: {workers} workers wait; everyone is tagged, the outbox consumed")
        started = time.monotonic()
        _round(account, tag, ids, untag_first=False)
        queue_seconds = time.monotonic() - started
        first_round = WebhookDelivery.objects.count()
        first_queued = WebhookDelivery.objects.aggregate(first=Min("created_at"))["first"]
        say(f"  {first_round:,} deliveries queued in {queue_seconds:.1f} s")
        last = _until_settled(say, "up")
        rate = first_round / max(last - first_queued.timestamp(), 1e-9)
        say(f"  {first_round:,} delivered at {rate:,.0f}/s")

        say(f"Phase down: the receiver stops for {down_seconds:.0f} s")
        _control(control_url, "down")
        down_started = time.monotonic()
        _round(account, tag, ids, untag_first=True)
        time.sleep(max(0.0, down_seconds - (time.monotonic() - down_started)))
        _control(control_url, "up")
        failed_attempts = WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.RETRYING
        ).count()
        _until_settled(say, "after the outage", skip_waits=True)
        stats = _control(control_url)
        expected_events = 2 * len(ids)
        lost = (expected_events - stats["unique_event_ids"]) + (
            expected_events - stats["unique_legacy_deliveries"]
        )
        return {
            "webhook_deliveries_per_s": round(rate, 1),
            "webhooks_lost": lost,
            "_details": {
                "deliveries_first_round": first_round,
                "queue_seconds": round(queue_seconds, 2),
                "retrying_after_outage": failed_attempts,
                "failed": WebhookDelivery.objects.filter(
                    status=WebhookDelivery.Status.FAILED
                ).count(),
                "receiver": stats,
                "workers": workers,
                "concurrency": concurrency,
            },
        }
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process_stop(process, grace=30)
        process_stop(receiver, grace=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--down-seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="POSTs in flight per worker")
    parser.add_argument("--redis-url", default="", help="use this Redis instead of a private one")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--database", default="convertkit_bench_webhooks")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_loop()
        return 0
    with bench_session(database=args.database, redis_url=args.redis_url, keep=args.keep):
        figures = webhooks_measure(
            deliveries=args.deliveries,
            down_seconds=args.down_seconds,
            workers=args.workers,
            concurrency=args.concurrency,
        )
    details = figures.pop("_details")
    _say(json.dumps(details, indent=1))
    ok = figures["webhooks_lost"] == 0 and details["receiver"]["bad_signatures"] == 0
    print(json.dumps({"bench": "webhooks", **figures}))
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convertkit.settings")
    sys.exit(main())
