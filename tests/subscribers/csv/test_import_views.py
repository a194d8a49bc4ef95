"""The browser import: upload, map columns and tags, start; what other accounts can reach."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from convertkit.models import Job, JobError
from convertkit.views import JOB_PROBLEMS_SHOWN
from subscribers.csv import importer
from subscribers.models import ImportFileChunk, Subscriber
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory

UPLOAD_URL = reverse("subscriber_import")

SIX_ROWS = (
    "Email Address,Name,Company,Phone\n"
    + "".join(f"reader{n}@example.com,Reader {n},Firm {n},555-{n}\n" for n in range(1, 7))
).encode()


def upload(client, data: bytes, name: str = "list.csv"):
    return client.post(UPLOAD_URL, {"file": SimpleUploadedFile(name, data, "text/csv")})


def map_url(job: Job) -> str:
    return reverse("subscriber_import_map", args=[job.id])


def test_the_upload_page_explains_the_expected_file(alice_client):
    response = alice_client.get(UPLOAD_URL)
    body = response.content.decode()
    assert response.status_code == 200
    assert 'enctype="multipart/form-data"' in body
    assert "header row naming the columns" in body
    assert "Up to 256 MB" in body


def test_an_upload_stores_the_file_and_shows_the_header_and_first_five_rows(
    alice_client, alice, account_a
):
    CustomFieldFactory(account=account_a, key="company", label="Company")
    response = upload(alice_client, SIX_ROWS)
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == map_url(job)
    assert job.kind == Job.Kind.IMPORT and job.state == Job.State.QUEUED
    assert job.account == account_a and job.created_by == alice
    assert job.params["file_name"] == "list.csv"
    assert job.params["columns"] == ["Email Address", "Name", "Company", "Phone"]
    assert (
        b"".join(bytes(chunk.data) for chunk in ImportFileChunk.objects.filter(job=job)) == SIX_ROWS
    )

    body = alice_client.get(map_url(job)).content.decode()
    assert "reader5@example.com" in body and "reader6@example.com" not in body
    assert "First 5 rows" in body
    # Pre-selected from the header names.
    assert '<option value="email" selected>' in body
    assert '<option value="first_name" selected>' in body
    assert '<option value="field:company" selected>' in body
    assert "No column of this file looks like an email" not in body


def test_mapping_the_columns_starts_the_import_and_shows_its_progress(
    alice_client, account_a, django_capture_on_commit_callbacks
):
    TagFactory(account=account_a, name="Customers")
    upload(alice_client, SIX_ROWS)
    job = Job.objects.get()
    data = {
        "column_0": "email",
        "column_1": "first_name",
        "column_2": "",
        "column_3": "",
        "tags": "customers, Spring sale,,",
        "encoding": "utf-8",
    }
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = alice_client.post(map_url(job), data)
    assert response.status_code == 302
    assert response["Location"] == reverse("job_detail", args=[job.id])
    assert len(callbacks) == 1  # run_import.delay_on_commit
    job.refresh_from_db()
    assert job.params["mapping"] == ["email", "first_name", "", ""]
    assert job.params["tags"] == ["customers", "Spring sale"]
    assert job.params["consent_by"] == "alice@example.com"

    # What the worker does, then what the creator sees.
    importer.import_job_run(job_id=job.id)
    body = alice_client.get(response["Location"]).content.decode()
    assert "6 rows read: 6 new, 0 updated." in body
    assert Subscriber.objects.get(email="reader1@example.com").first_name == "Reader 1"

    # Submitting the form again queues nothing and goes to the job page.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        again = alice_client.post(map_url(job), data)
    assert again.status_code == 302 and not callbacks


def test_a_file_without_an_email_column_gets_a_clear_message(alice_client):
    upload(alice_client, b"name,phone\nAnn,555\n")
    job = Job.objects.get()
    body = alice_client.get(map_url(job)).content.decode()
    assert "No column of this file looks like an email address column." in body
    response = alice_client.post(
        map_url(job), {"column_0": "first_name", "column_1": "", "encoding": "utf-8"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "No column is mapped to the email address." in body
    job.refresh_from_db()
    assert "mapping" not in job.params


def test_two_columns_cannot_both_be_the_email(alice_client):
    upload(alice_client, b"email,other\na@example.com,b@example.com\n")
    job = Job.objects.get()
    response = alice_client.post(
        map_url(job), {"column_0": "email", "column_1": "email", "encoding": "utf-8"}
    )
    assert "Each kind of value can come from one column only." in response.content.decode()


def test_the_preview_follows_the_chosen_encoding(alice_client):
    upload(alice_client, "email,first_name\nzoe@example.com,Zoé\n".encode("cp1252"))
    job = Job.objects.get()
    assert job.params["suggested_encoding"] == "cp1252"
    body = alice_client.get(map_url(job)).content.decode()
    assert "Zoé" in body
    assert '<option value="cp1252" selected>' in body
    body = alice_client.get(map_url(job) + "?encoding=utf-8&column_1=").content.decode()
    assert "Zo\ufffd" in body
    assert '<option value="first_name" selected>' not in body  # the creator's choice is kept


@override_settings(IMPORT_MAX_BYTES=2048)
def test_a_file_over_the_size_limit_is_refused_with_a_message(alice_client):
    data = b"email\n" + b"reader@example.com\n" * 200
    response = upload(alice_client, data)
    assert response.status_code == 413
    assert "The file is larger than" in response.content.decode()
    assert not Job.objects.exists()
    assert not ImportFileChunk.objects.exists()


@override_settings(IMPORT_MAX_BYTES=2048)
def test_a_declared_size_over_the_limit_is_refused_before_reading_the_body(alice_client):
    response = alice_client.post(
        UPLOAD_URL,
        data=b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(10 * 1024 * 1024),
    )
    assert response.status_code == 413
    assert "The file is larger than" in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("list.csv", b"", "The submitted file is empty."),
        ("list.xlsx", b"PK\x03\x04rest", "Choose a .csv file."),
        ("list.csv", b"PK\x03\x04rest", "This looks like a spreadsheet, PDF or archive"),
        ("list.csv", "email\n".encode("utf-16"), "This file is not plain text"),
    ],
)
def test_empty_and_non_csv_files_are_refused_with_a_message(alice_client, name, data, message):
    response = upload(alice_client, data, name)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Job.objects.exists()


def test_charlie_cannot_see_or_start_an_import_of_account_a(
    alice_client, charlie_client, django_capture_on_commit_callbacks
):
    upload(alice_client, SIX_ROWS)
    job = Job.objects.get()
    assert charlie_client.get(map_url(job)).status_code == 404
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = charlie_client.post(
            map_url(job),
            {
                "column_0": "email",
                "column_1": "",
                "column_2": "",
                "column_3": "",
                "encoding": "utf-8",
            },
        )
    assert response.status_code == 404 and not callbacks
    assert charlie_client.get(reverse("job_detail", args=[job.id])).status_code == 404
    assert charlie_client.get(reverse("job_errors_csv", args=[job.id])).status_code == 404
    job.refresh_from_db()
    assert "mapping" not in job.params


def test_bob_a_member_of_the_account_can_run_an_import(bob_client, alice_client):
    upload(alice_client, SIX_ROWS)
    job = Job.objects.get()
    response = bob_client.get(map_url(job))
    assert response.status_code == 200
    assert "reader1@example.com" in response.content.decode()


def test_the_import_pages_need_a_login(client, db):
    response = client.get(UPLOAD_URL)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_error_file_lists_the_rejected_rows_with_their_line_numbers(alice_client, account_a):
    SubscriberFactory(account=account_a, email="dup@example.com")
    upload(
        alice_client, b"email\nok@example.com\nnot an address\ndup@example.com\nok@example.com\n"
    )
    job = Job.objects.get()
    importer.import_job_start(
        job=job, mapping=["email"], tag_names=[], encoding="utf-8", consent_by="x", enqueue=False
    )
    importer.import_job_run(job_id=job.id)
    response = alice_client.get(reverse("job_errors_csv", args=[job.id]))
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines == [
        "line,column,value,error",
        "3,email,not an address,The email address contains a space.",
        "5,email,ok@example.com,Duplicate of line 2 (the first one was imported).",
    ]


def test_uploads_left_unmapped_for_a_day_are_deleted_at_the_next_upload(alice_client):
    upload(alice_client, SIX_ROWS)
    upload(alice_client, SIX_ROWS)
    abandoned, started = Job.objects.order_by("id")
    importer.import_job_start(
        job=started,
        mapping=["email", "", "", ""],
        tag_names=[],
        encoding="utf-8",
        consent_by="x",
        enqueue=False,
    )
    Job.objects.update(created_at=timezone.now() - timedelta(days=2))
    upload(alice_client, SIX_ROWS)
    assert not Job.objects.filter(pk=abandoned.pk).exists()
    assert not ImportFileChunk.objects.filter(job_id=abandoned.pk).exists()
    assert Job.objects.filter(pk=started.pk).exists()
    assert Job.objects.count() == 2


def _run_through_the_pages(client, data: bytes, mapping: list[str], capture) -> str:
    """Upload, map and start as the creator does, the worker's run done at once; the page the
    creator lands on."""
    upload(client, data)
    job = Job.objects.get()
    form = {f"column_{n}": target for n, target in enumerate(mapping)}
    with capture(execute=True):
        response = client.post(map_url(job), {**form, "encoding": "utf-8"})
    assert response["Location"] == reverse("job_detail", args=[job.id])
    return client.get(response["Location"]).content.decode()


def test_the_page_of_a_finished_import_says_it_is_done_not_that_it_started(
    alice_client, eager_celery, django_capture_on_commit_callbacks
):
    body = _run_through_the_pages(
        alice_client, SIX_ROWS, ["email", "first_name", "", ""], django_capture_on_commit_callbacks
    )

    assert "Done: 6 rows read: 6 new, 0 updated." in body
    assert "started" not in body
    assert "Rows with problems" not in body


def _problem_rows(body: str) -> list[tuple[str, str, str]]:
    return re.findall(
        r'<td data-label="Line" class="nowrap">(\d*)</td><td data-label="Column">([^<]*)</td>'
        r'<td data-label="Problem">([^<]*)</td>',
        body,
    )


def test_a_finished_import_lists_its_problems_by_line_with_column_and_reason(
    alice_client, eager_celery, django_capture_on_commit_callbacks
):
    data = (
        b"Email Address,Name\n"
        b"ann@example.com,Ann\n"
        b"not an address,Bob\n"
        b"cid@example.com\n"
        b"ann@example.com,Ann\n"
    )
    body = _run_through_the_pages(
        alice_client, data, ["email", "first_name"], django_capture_on_commit_callbacks
    )

    assert "1 new, 0 updated, 3 with problems." in body
    assert "All 3, by line." in body
    assert _problem_rows(body) == [
        ("3", "Email Address", "The email address contains a space."),
        (
            "4",
            "(whole row)",
            "This row has fewer values than the header has columns (1 instead of 2); check for "
            "a missing or extra delimiter.",
        ),
        ("5", "Email Address", "Duplicate of line 2 (the first one was imported)."),
    ]
    job = Job.objects.get()
    assert f'href="{reverse("job_errors_csv", args=[job.id])}" download' in body


def test_the_page_shows_the_first_problems_by_index_without_counting_or_loading_them_all(
    alice_client, account_a
):
    job = Job.objects.create(
        account=account_a,
        kind=Job.Kind.IMPORT,
        state=Job.State.DONE,
        title="Import big.csv",
        error_count=1_000_000,
        summary={"rows": 1_000_000, "errors": 1_000_000},
    )
    JobError.objects.bulk_create(
        JobError(job=job, line=line, column_name="email", message=f"Problem {line}")
        for line in range(JOB_PROBLEMS_SHOWN + 50, 1, -1)
    )

    with CaptureQueriesContext(connection) as queries:
        body = alice_client.get(reverse("job_detail", args=[job.id])).content.decode()

    assert f"The first {JOB_PROBLEMS_SHOWN} of 1,000,000, by line." in body
    rows = _problem_rows(body)
    assert len(rows) == JOB_PROBLEMS_SHOWN
    assert rows[0] == ("2", "email", "Problem 2")
    assert rows[-1][0] == str(JOB_PROBLEMS_SHOWN + 1)
    error_queries = [q["sql"] for q in queries if JobError._meta.db_table in q["sql"]]
    assert len(error_queries) == 1
    assert "COUNT(" not in error_queries[0].upper()
    assert error_queries[0].endswith(f"LIMIT {JOB_PROBLEMS_SHOWN}")


def test_the_progress_of_a_running_import_reads_no_problems(alice_client, account_a):
    job = Job.objects.create(
        account=account_a,
        kind=Job.Kind.IMPORT,
        state=Job.State.RUNNING,
        title="Import big.csv",
        params={"mapping": ["email"]},
        error_count=3,
    )
    JobError.objects.create(job=job, line=2, message="Problem")

    with CaptureQueriesContext(connection) as queries:
        fragment = alice_client.get(reverse("job_progress", args=[job.id])).content.decode()

    assert 'hx-trigger="every 1s"' in fragment
    assert not [q for q in queries if JobError._meta.db_table in q["sql"]]
