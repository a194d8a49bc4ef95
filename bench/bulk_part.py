"""Bulk create speed: POST /v4/bulk/subscribers with many subscribers (first name and a custom
field each), through the whole stack in one process.

    DATABASE_URL=... REDIS_URL=... DEBUG=true python bench/bulk_part.py [--rows 100000]

1. A new account with an API key and the custom field (erased at the end).
2. After a first small request (a running server has loaded its code already), the request
   goes through Django's test client (middleware, key, rate limit, the body read and checked,
   the Job and its BulkBatch rows stored: 202); each task it queues (api.bulk_jobs.RUNNERS) then
   runs bulk_job_run in a thread of its own, as workers take them, until the job is done.
3. Prints rows/s from the POST's start to the job's end, the request's own share, and the same
   into an account that already holds half of the addresses (updates); one JSON object last.

bench/api.py calls `bulk_measure(context)` with its running production server (PartContext):
the same body is POSTed to that server over HTTP, a Celery worker of RUNNERS processes started
here (with the server's environment) runs the job, and rows/s is counted from the POST's start
until the job is done in the database; the subscribers it added are deleted afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from unittest import mock

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convertkit.settings")
    import django

    django.setup()

from django.db import connection  # noqa: E402

from bench.import_speed import CUSTOM_FIELD_KEY, _email, _existing_subscribers_copy  # noqa: E402
from bench.import_speed import account_erase as _account_erase  # noqa: E402

ROWS = 100_000
_FIRST_NAMES = ("Ada", "Ben", "Chloé", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivo", "Jun")


def bulk_body(rows: int, *, prefix: str = "") -> bytes:
    return json.dumps(
        {
            "subscribers": [
                {
                    "email_address": prefix + _email(number),
                    "first_name": _FIRST_NAMES[number % 10],
                    "fields": {CUSTOM_FIELD_KEY: f"Company {number % 1000}"},
                }
                for number in range(rows)
            ],
            "callback_url": None,
        }
    ).encode()


def account_erase(account_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM api_apikey WHERE account_id = %s", [account_id])
        cursor.execute(
            "DELETE FROM api_bulkbatch WHERE job_id IN "
            "(SELECT id FROM convertkit_job WHERE account_id = %s)",
            [account_id],
        )
    _account_erase(account_id)


def bulk_measure(
    context=None,
    *,
    rows: int = ROWS,
    existing_fraction: float = 0.0,
    runners: int | None = None,
) -> dict:
    """Times one POST /v4/bulk/subscribers of `rows` subscribers until its job is done.

    With `context` (bench/api.py's PartContext; its `bulk_rows` if it has one, else `rows`):
    against that server, {"bulk_rows_per_s"}. Without: in this process, in a new account
    (erased after), `existing_fraction` of the addresses there before, `runners` replacing
    api.bulk_jobs.RUNNERS; {"rows", "seconds", "rows_per_s", "request_s", "runners", "created",
    "failures"}."""
    if context is not None:
        return _live_measure(context, rows=getattr(context, "bulk_rows", rows))
    from django.test import Client, override_settings

    from api import bulk_jobs
    from api.keys import api_key_create
    from convertkit.models import Account, Job
    from subscribers.models import CustomField, Subscriber

    account = Account.objects.create(name=f"bulk bench {time.time():.0f}")
    try:
        CustomField.objects.create(account=account, key=CUSTOM_FIELD_KEY, label="Company")
        if existing_fraction:
            step = max(1, round(1 / existing_fraction))
            _existing_subscribers_copy(account_id=account.id, numbers=range(0, rows, step))
        _key, secret = api_key_create(account=account, name="bench", created_by=None)
        body = bulk_body(rows)
        client = Client()
        queued: list[int] = []
        with (
            override_settings(API_RATE_LIMIT=(1_000_000, 60)),
            mock.patch.object(bulk_jobs.run_bulk_request, "delay_on_commit", queued.append),
            mock.patch.object(bulk_jobs, "RUNNERS", runners or bulk_jobs.RUNNERS),
        ):
            # A first request loads what a running server has loaded already.
            client.post(
                "/v4/bulk/subscribers",
                {"subscribers": [{"email_address": "warm-up@example.net"}]},
                content_type="application/json",
                headers={"X-Kit-Api-Key": secret},
            )
            before = Subscriber.objects.filter(account=account).count()
            started = time.perf_counter()
            response = client.post(
                "/v4/bulk/subscribers",
                body,
                content_type="application/json",
                headers={"X-Kit-Api-Key": secret},
            )
            request_s = time.perf_counter() - started
            # Each queued task in a thread of its own, as the workers take them.
            runners = [
                threading.Thread(target=_job_run, args=(job_id,), daemon=True) for job_id in queued
            ]
            for runner in runners:
                runner.start()
            for runner in runners:
                runner.join()
            seconds = time.perf_counter() - started
        assert response.status_code == 202, response.content[:500]
        job = Job.objects.get(account=account, kind=Job.Kind.BULK_API)
        assert job.state == Job.State.DONE, job.message
        return {
            "rows": rows,
            "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds),
            "request_s": round(request_s, 2),
            "runners": len(queued),
            "created": Subscriber.objects.filter(account=account).count() - before,
            "failures": job.error_count,
        }
    finally:
        account_erase(account.id)


def _live_measure(context, *, rows: int) -> dict:
    """POSTs the body to the running server as a client would, with a Celery worker of RUNNERS
    processes started here; the job's end is read from the database."""
    from api.bulk_jobs import RUNNERS
    from bench.broadcast import process_stop, worker_start, worker_wait_ready
    from convertkit.celery import app as celery_app
    from convertkit.models import Job

    prefix = f"bulk-{uuid.uuid4().hex[:8]}-"
    body = bulk_body(rows, prefix=prefix)
    name = f"bulk-{prefix[5:-1]}@bench"
    context.say(f"bulk: starting a Celery worker ({RUNNERS} processes)")
    worker = worker_start(
        env=context.env,
        concurrency=RUNNERS,
        log_path=context.workdir / "bulk-worker.log",
        name=name,
        queues="default",
    )
    try:
        worker_wait_ready(celery_app, name, worker)
        context.say(f"bulk: POST /v4/bulk/subscribers with {rows:,} subscribers")
        client = http.client.HTTPConnection("127.0.0.1", context.port, timeout=300)
        started = time.perf_counter()
        client.request(
            "POST",
            "/v4/bulk/subscribers",
            body,
            {
                "Content-Type": "application/json",
                "X-Kit-Api-Key": context.api_key,
                # What the TLS-terminating proxy in front of the server adds.
                "X-Forwarded-Proto": "https",
            },
        )
        response = client.getresponse()
        answer = response.read()
        request_s = time.perf_counter() - started
        client.close()
        if response.status != 202:
            raise RuntimeError(f"bulk: the server answered {response.status}: {answer[:300]!r}")
        job = (
            Job.objects.filter(account_id=context.account_id, kind=Job.Kind.BULK_API)
            .order_by("-id")
            .first()
        )
        deadline = time.monotonic() + 600
        while job.state not in (Job.State.DONE, Job.State.FAILED):
            if time.monotonic() > deadline:
                raise RuntimeError("bulk: the job did not end within 600 s")
            time.sleep(0.02)
            job.refresh_from_db(fields=["state", "message"])
        seconds = time.perf_counter() - started
        if job.state != Job.State.DONE:
            raise RuntimeError(f"bulk: the job failed: {job.message}")
    finally:
        process_stop(worker, grace=30)
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM subscribers_subscriber WHERE account_id = %s AND email LIKE %s",
                [context.account_id, prefix + "%"],
            )
    context.say(
        f"bulk: {rows:,} rows in {seconds:.2f} s (the request {request_s:.2f} s): "
        f"{rows / seconds:,.0f} rows/s"
    )
    return {"bulk_rows_per_s": round(rows / seconds)}


def _job_run(job_id: int) -> None:
    from api.bulk_jobs import bulk_job_run

    try:
        bulk_job_run(job_id=job_id)
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--runners", type=int, default=None, help="workers taking the job")
    args = parser.parse_args()
    empty = bulk_measure(rows=args.rows, runners=args.runners)
    half = bulk_measure(rows=args.rows, existing_fraction=0.5, runners=args.runners)
    print(f"{'case':<34}{'rows':>10}{'seconds':>10}{'request s':>11}{'rows/s':>10}")
    for label, figures in (("new account", empty), ("half already subscribed", half)):
        print(
            f"{label:<34}{figures['rows']:>10,}{figures['seconds']:>10.2f}"
            f"{figures['request_s']:>11.2f}{figures['rows_per_s']:>10,}"
        )
    print(
        json.dumps(
            {
                "bench": "bulk",
                "rows": args.rows,
                "runners": empty["runners"],
                "bulk_rows_per_s": empty["rows_per_s"],
                "bulk_half_existing_rows_per_s": half["rows_per_s"],
            }
        )
    )


if __name__ == "__main__":
    main()
