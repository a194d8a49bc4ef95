"""The CSV export: columns, filters, formula injection, tenancy, query count, the round trip."""

from __future__ import annotations

import csv
import io

from django.core.management import call_command
from django.urls import reverse

from convertkit.models import Job
from subscribers.csv import exporter, importer
from subscribers.models import CustomField, Subscriber, Tagging
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory, TaggingFactory

EXPORT_URL = reverse("subscriber_export")


def export(client, **params) -> list[dict]:
    response = client.get(EXPORT_URL, params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="subscribers-')
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_export_has_every_column_and_the_tags_of_each_subscriber(alice_client, account_a):
    CustomFieldFactory(account=account_a, key="company", label="Company")
    ann = SubscriberFactory(
        account=account_a, email="ann@example.com", first_name="Ann", fields={"company": "Acme"}
    )
    SubscriberFactory(account=account_a, email="ben@example.com", first_name="Ben", fields={})
    for name in ("vip", "Alpha"):
        TaggingFactory(tag=TagFactory(account=account_a, name=name), subscriber=ann)
    rows = export(alice_client)
    assert list(rows[0]) == [
        "email",
        "first_name",
        "state",
        "tags",
        "company",
        "source",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
    ]
    assert [(r["email"], r["first_name"], r["tags"], r["company"]) for r in rows] == [
        ("ann@example.com", "Ann", "Alpha, vip", "Acme"),
        ("ben@example.com", "Ben", "", ""),
    ]
    assert rows[0]["state"] == "active" and rows[0]["source"] == "manual"
    assert rows[0]["created_at"].startswith(str(ann.created_at.year))


def test_cells_that_a_spreadsheet_would_run_are_neutralised(alice_client, account_a):
    CustomFieldFactory(account=account_a, key="note", label="Note")
    SubscriberFactory(
        account=account_a,
        email="-x@example.com",
        first_name='=HYPERLINK("http://evil")',
        fields={"note": "@SUM(A1)"},
    )
    TaggingFactory(tag=TagFactory(account=account_a, name="+tag"))
    SubscriberFactory(account=account_a, email="tab@example.com", first_name="\tTab")
    rows = export(alice_client)
    assert rows[0]["email"] == "'-x@example.com"
    assert rows[0]["first_name"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["note"] == "'@SUM(A1)"
    assert rows[1]["tags"] == "'+tag"
    assert rows[2]["first_name"] == "'\tTab"


def test_the_export_honours_the_list_filters(alice_client, account_a):
    vip = TagFactory(account=account_a, name="vip")
    ann = SubscriberFactory(account=account_a, email="ann@example.com", first_name="Ann")
    SubscriberFactory(account=account_a, email="anna@example.com", first_name="Zed")
    SubscriberFactory(
        account=account_a, email="bob@example.com", first_name="Annette", state="unsubscribed"
    )
    TaggingFactory(tag=vip, subscriber=ann)

    def exported(**params):
        return [row["email"] for row in export(alice_client, **params)]

    assert exported(state="unsubscribed") == ["bob@example.com"]
    assert exported(tag=vip.id) == ["ann@example.com"]
    assert exported(q="ann") == ["ann@example.com", "anna@example.com", "bob@example.com"]
    assert exported(q="ANN@") == ["ann@example.com"]
    assert exported(q="anna@") == ["anna@example.com"]
    assert exported(q="ann", state="active", tag=vip.id) == ["ann@example.com"]


def test_bad_filters_get_a_clear_answer(alice_client, charlie_client, account_a):
    vip = TagFactory(account=account_a, name="vip")
    assert alice_client.get(EXPORT_URL, {"state": "gone"}).status_code == 400
    assert alice_client.get(EXPORT_URL, {"tag": "x1"}).status_code == 404
    assert charlie_client.get(EXPORT_URL, {"tag": vip.id}).status_code == 404


def test_charlie_exports_only_his_own_subscribers(charlie_client, account_a, account_b):
    SubscriberFactory(account=account_a, email="ann@example.com")
    SubscriberFactory(account=account_b, email="carl@example.com")
    assert [row["email"] for row in export(charlie_client)] == ["carl@example.com"]


def test_the_export_makes_no_query_per_row(alice_client, account_a, django_assert_max_num_queries):
    tags = [TagFactory(account=account_a, name=f"t{n}") for n in range(3)]
    for n in range(30):
        subscriber = SubscriberFactory(account=account_a, email=f"r{n}@example.com")
        for tag in tags:
            TaggingFactory(tag=tag, subscriber=subscriber)
    with django_assert_max_num_queries(8):
        rows = export(alice_client)
    assert len(rows) == 30 and rows[0]["tags"] == "t0, t1, t2"


def test_the_export_walks_the_list_in_batches_by_id(account_a):
    for n in range(7):
        SubscriberFactory(account=account_a, email=f"r{n}@example.com")
    seen = []
    rows = list(
        exporter.export_rows(
            account=account_a,
            filters=exporter.SubscriberFilter(),
            batch_size=3,
            on_batch=seen.append,
        )
    )
    assert [row[0] for row in rows[1:]] == [f"r{n}@example.com" for n in range(7)]
    assert seen == [3, 6, 7]


def test_export_then_import_into_another_account_gives_the_same_subscribers(
    alice_client, account_a, account_b
):
    for account in (account_a, account_b):
        CustomFieldFactory(account=account, key="company", label="Company")
        CustomFieldFactory(account=account, key="city", label="City")
    vip, spring = (
        TagFactory(account=account_a, name="VIP"),
        TagFactory(account=account_a, name="Spring sale"),
    )
    ann = SubscriberFactory(
        account=account_a,
        email="ann@example.com",
        first_name="Ann",
        fields={"company": "=Acme", "city": "Paris"},
    )
    ben = SubscriberFactory(
        account=account_a, email="-ben@example.com", first_name="", state="unsubscribed"
    )
    SubscriberFactory(account=account_a, email="cid@example.com", first_name="Cid", fields={})
    TaggingFactory(tag=vip, subscriber=ann)
    TaggingFactory(tag=spring, subscriber=ann)
    TaggingFactory(tag=vip, subscriber=ben)

    response = alice_client.get(EXPORT_URL)
    data = b"".join(response.streaming_content)
    job = importer.import_job_create(
        account=account_b, created_by=None, file_name="export.csv", chunks=[data]
    )
    mapping = importer.import_mapping_guess(
        header=job.params["columns"], custom_fields=CustomField.objects.filter(account=account_b)
    )
    assert mapping == [
        "email",
        "first_name",
        "state",
        "tags",
        "field:city",
        "field:company",
        "",
        "",
        "",
        "",
    ]
    importer.import_job_start(
        job=job, mapping=mapping, tag_names=[], encoding="utf-8", consent_by="x", enqueue=False
    )
    job = importer.import_job_run(job_id=job.id)
    assert job.state == Job.State.DONE and job.error_count == 0

    def snapshot(account):
        people = {
            s.email: (s.first_name, s.state, s.fields)
            for s in Subscriber.objects.filter(account=account)
        }
        tags = sorted(
            Tagging.objects.filter(account=account).values_list("subscriber__email", "tag__name")
        )
        return people, tags

    assert snapshot(account_b) == snapshot(account_a)


def test_the_export_command_writes_a_file_with_progress(account_a, tmp_path):
    SubscriberFactory(account=account_a, email="ann@example.com", state="active")
    SubscriberFactory(account=account_a, email="bob@example.com", state="bounced")
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "out.csv"
    call_command(
        "export_subscribers",
        "--account",
        account_a.name,
        "--state",
        "bounced",
        "-o",
        str(target),
        stdout=out,
        stderr=err,
    )
    rows = list(csv.DictReader(target.open()))
    assert [row["email"] for row in rows] == ["bob@example.com"]
    assert "1 of 1 subscribers" in err.getvalue()
    assert "1 subscribers written to" in err.getvalue()


def test_the_export_command_writes_to_stdout_by_default(account_a):
    vip = TagFactory(account=account_a, name="vip")
    TaggingFactory(tag=vip, subscriber=SubscriberFactory(account=account_a, email="a@example.com"))
    SubscriberFactory(account=account_a, email="b@example.com")
    out = io.StringIO()
    call_command(
        "export_subscribers",
        "--account",
        str(account_a.id),
        "--tag",
        "VIP",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert [row["email"] for row in csv.DictReader(io.StringIO(out.getvalue()))] == [
        "a@example.com"
    ]
