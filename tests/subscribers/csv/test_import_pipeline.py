"""The import end to end with a real Celery worker on real Redis: the browser and the command."""

from __future__ import annotations

import io
import threading
import time

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from convertkit.models import Job
from subscribers.models import ImportFileChunk, Subscriber, Tag
from tests.factories import SubscriberFactory

ROWS = 1200


def wait_for(job: Job, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_finished:
            return job
        time.sleep(0.1)
    raise AssertionError(f"import job still {job.state} after {timeout}s: {job.message}")


def people(rows: int = ROWS) -> bytes:
    lines = "".join(f"reader{n}@example.com,Reader {n}\n" for n in range(rows))
    return ("email,first_name\n" + lines + "not an address,Nobody\n").encode()


def test_an_upload_in_the_browser_is_imported_by_the_worker(celery_worker, alice_client, account_a):
    SubscriberFactory(account=account_a, email="reader0@example.com", state="unsubscribed")
    response = alice_client.post(
        reverse("subscriber_import"), {"file": SimpleUploadedFile("people.csv", people())}
    )
    job = Job.objects.get()
    assert response["Location"] == reverse("subscriber_import_map", args=[job.id])
    response = alice_client.post(
        response["Location"],
        {"column_0": "email", "column_1": "first_name", "tags": "webinar", "encoding": "utf-8"},
    )
    assert response["Location"] == reverse("job_detail", args=[job.id])

    job = wait_for(job)
    assert job.state == Job.State.DONE, job.message
    assert job.summary == {
        "rows": ROWS + 1,
        "created": ROWS - 1,
        "updated": 1,
        "unchanged": 0,
        "kept unsubscribed, bounced or complained": 1,
        "errors": 1,
    }
    assert Subscriber.objects.get(email="reader0@example.com").state == "unsubscribed"
    assert Subscriber.objects.filter(account=account_a).count() == ROWS
    assert Tag.objects.get(account=account_a, name="webinar").subscriber_count == ROWS
    assert not ImportFileChunk.objects.exists()

    fragment = alice_client.get(reverse("job_progress", args=[job.id])).content.decode()
    assert "Done: 1,201 rows read: 1,199 new, 1 updated" in fragment
    assert "Rows with problems" in fragment and "All 1, by line." in fragment


def test_the_command_queues_the_import_and_follows_the_worker(celery_worker, account_a, tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes(people())
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "import_subscribers", str(path), "--account", str(account_a.id), stdout=out, stderr=err
    )
    assert "Storing" in err.getvalue()
    assert f"{ROWS + 1:,} of {ROWS + 1:,} rows" in err.getvalue()
    assert f"{ROWS + 1:,} rows read: {ROWS:,} new, 0 updated, 1 with problems" in out.getvalue()
    assert Subscriber.objects.filter(account=account_a).count() == ROWS
    assert Job.objects.get().state == Job.State.DONE


def test_two_workers_running_the_same_job_import_it_once(transactional_db, account_a):
    """acks_late can hand a task to a second worker while the first still runs it."""
    from subscribers.csv import importer

    job = importer.import_job_create(
        account=account_a, created_by=None, file_name="people.csv", chunks=[people(300)]
    )
    importer.import_job_start(
        job=job,
        mapping=["email", "first_name"],
        tag_names=["t"],
        encoding="utf-8",
        consent_by="x",
        enqueue=False,
    )
    problems = []

    def run():
        try:
            importer.import_job_run(job_id=job.id)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            problems.append(exc)
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert problems == []
    job.refresh_from_db()
    assert job.state == Job.State.DONE
    assert job.summary["created"] == 300 and job.errors.count() == 1
    assert Tag.objects.get(name="t").subscriber_count == 300
