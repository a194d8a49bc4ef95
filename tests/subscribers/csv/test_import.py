"""The import itself (subscribers.csv.importer): merge rules, bad input, re-runs, progress."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from convertkit.models import Job
from subscribers.csv import importer
from subscribers.models import (
    CustomField,
    ImportFileChunk,
    Subscriber,
    Suppression,
    Tag,
    Tagging,
    email_hash,
)
from subscribers.selectors import subscriber_counts
from subscribers.validation import normalize_email
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory, TaggingFactory


def start_import(
    account,
    data: bytes | str,
    *,
    mapping: list[str] | None = None,
    tags=(),
    encoding: str = "utf-8",
    user=None,
) -> Job:
    """An import job with the file stored and the choices made, not yet run."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    job = importer.import_job_create(
        account=account, created_by=user, file_name="list.csv", chunks=[data]
    )
    if mapping is None:
        mapping = importer.import_mapping_guess(
            header=job.params["columns"], custom_fields=CustomField.objects.filter(account=account)
        )
    importer.import_job_start(
        job=job,
        mapping=mapping,
        tag_names=list(tags),
        encoding=encoding,
        consent_by=user.email if user else "tests",
        enqueue=False,
    )
    return job


def run_import(account, data, **options) -> Job:
    job = start_import(account, data, **options)
    return importer.import_job_run(job_id=job.id)


def errors_of(job: Job) -> list[tuple[int, str]]:
    return list(job.errors.order_by("line").values_list("line", "message"))


def emails(account) -> list[str]:
    return sorted(Subscriber.objects.filter(account=account).values_list("email", flat=True))


def test_a_file_creates_active_subscribers_with_source_and_consent(account_a, alice):
    company = CustomFieldFactory(account=account_a, key="company", label="Company")
    job = run_import(
        account_a,
        "Email Address,First Name,Company\nann@example.com,Ann,Acme\nBEN@Example.COM,,\n",
        user=alice,
    )
    assert job.state == Job.State.DONE
    assert job.summary == {
        "rows": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "kept unsubscribed, bounced or complained": 0,
        "errors": 0,
    }
    assert job.message == "2 rows read: 2 new, 0 updated."
    ann = Subscriber.objects.get(account=account_a, email="ann@example.com")
    assert ann.first_name == "Ann"
    assert ann.fields == {company.key: "Acme"}
    assert ann.state == Subscriber.State.ACTIVE
    assert ann.source == "import: list.csv"
    assert ann.consent_method == "import by alice@example.com"
    assert ann.consent_at is not None
    ben = Subscriber.objects.get(account=account_a, email="ben@example.com")
    assert (ben.first_name, ben.fields) == ("", {})
    assert subscriber_counts(account=account_a)["active"] == 2
    assert not ImportFileChunk.objects.filter(job=job).exists()


def test_existing_subscribers_are_updated_never_duplicated(account_a):
    CustomFieldFactory(account=account_a, key="company", label="Company")
    CustomFieldFactory(account=account_a, key="city", label="City")
    SubscriberFactory(
        account=account_a,
        email="ann@example.com",
        first_name="Annie",
        fields={"company": "Old", "city": "Paris"},
    )
    SubscriberFactory(account=account_a, email="ben@example.com", first_name="Ben")
    job = run_import(
        account_a,
        "email,first_name,company\nAnn@Example.com,Ann,Acme\nben@example.com,,Bits\n",
    )
    assert job.summary["created"] == 0 and job.summary["updated"] == 2
    assert Subscriber.objects.filter(account=account_a).count() == 2
    ann = Subscriber.objects.get(email="ann@example.com")
    assert ann.first_name == "Ann"
    assert ann.fields == {"company": "Acme", "city": "Paris"}
    ben = Subscriber.objects.get(email="ben@example.com")
    assert ben.first_name == "Ben"  # an empty cell leaves the name as it was
    assert ben.fields == {"company": "Bits"}


def test_importing_the_same_file_again_changes_nothing(account_a):
    data = "email,first_name\nann@example.com,Ann\nben@example.com,Ben\n"
    run_import(account_a, data)
    before = dict(Subscriber.objects.values_list("email", "updated_at"))
    job = run_import(account_a, data.replace("Ben", "Benjamin"))
    assert (job.summary["created"], job.summary["updated"], job.summary["unchanged"]) == (0, 1, 1)
    assert job.message == "2 rows read: 0 new, 1 updated, 1 unchanged."
    after = dict(Subscriber.objects.values_list("email", "updated_at"))
    assert after["ann@example.com"] == before["ann@example.com"]
    assert after["ben@example.com"] > before["ben@example.com"]


@pytest.mark.parametrize(
    "state",
    [Subscriber.State.UNSUBSCRIBED, Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED],
)
def test_an_unsubscribed_bounced_or_complained_address_is_never_reactivated(account_a, state):
    SubscriberFactory(account=account_a, email="gone@example.com", state=state)
    job = run_import(account_a, "email,state\ngone@example.com,active\nnew@example.com,\n")
    assert Subscriber.objects.get(email="gone@example.com").state == state
    assert job.summary["kept unsubscribed, bounced or complained"] == 1
    assert "1 kept unsubscribed, bounced or complained" in job.message
    assert subscriber_counts(account=account_a)[state] == 1


def test_a_state_column_sets_the_state_of_new_subscribers_only(account_a):
    SubscriberFactory(account=account_a, email="active@example.com")
    job = run_import(
        account_a,
        "email,state\nactive@example.com,unsubscribed\nleft@example.com,Unsubscribed\n"
        "odd@example.com,sleeping\n",
    )
    assert Subscriber.objects.get(email="active@example.com").state == "active"
    left = Subscriber.objects.get(email="left@example.com")
    assert left.state == "unsubscribed" and left.unsubscribed_at is not None
    assert errors_of(job) == [
        (
            4,
            "“sleeping” is not a state; use one of unconfirmed, active, unsubscribed, "
            "bounced, complained.",
        )
    ]


def test_a_deleted_address_is_not_created_again(account_a):
    Suppression.objects.create(account=account_a, email_hash=email_hash("erased@example.com"))
    job = run_import(account_a, "email\nErased@example.com\nkept@example.com\n")
    assert emails(account_a) == ["kept@example.com"]
    assert errors_of(job) == [
        (
            2,
            "This address was deleted earlier and is suppressed; add it by hand if they asked "
            "to come back.",
        )
    ]
    assert job.summary["errors"] == 1


def test_duplicate_addresses_in_one_file_keep_the_first(account_a):
    job = run_import(
        account_a,
        "email,first_name\nann@example.com,Ann\nbob@example.com,Bob\nANN@example.com,Annie\n"
        "ann@example.com,Anna\n",
    )
    assert Subscriber.objects.get(email="ann@example.com").first_name == "Ann"
    assert errors_of(job) == [
        (4, "Duplicate of line 2 (the first one was imported)."),
        (5, "Duplicate of line 2 (the first one was imported)."),
    ]
    assert job.summary["created"] == 2


def test_addresses_with_spaces_or_unicode(account_a):
    job = run_import(
        account_a,
        "email\n  padded@example.com  \nann smith@example.com\njosé@example.com\n"
        "ann@exämple.com\nnot-an-address\n",
    )
    assert emails(account_a) == ["ann@xn--exmple-cua.com", "padded@example.com"]
    assert errors_of(job) == [
        (3, "The email address contains a space."),
        (4, "Letters with accents or other non-ASCII characters before the @ are not supported."),
        (6, "“not-an-address” is not an email address."),
    ]


def test_a_byte_order_mark_is_not_part_of_the_first_column(account_a):
    job = start_import(account_a, b"\xef\xbb\xbfemail,first_name\nann@example.com,Ann\n")
    assert job.params["columns"] == ["email", "first_name"]
    job = importer.import_job_run(job_id=job.id)
    assert job.summary["created"] == 1 and not errors_of(job)


LATIN1 = "email,first_name\nann@example.com,Ann\nzoe@example.com,Zoé\nrene@example.com,René\n"


def test_latin1_bytes_read_as_utf8_are_row_errors_with_their_line_numbers(account_a):
    job = run_import(account_a, LATIN1.encode("latin-1"), encoding="utf-8")
    assert emails(account_a) == ["ann@example.com"]
    lines = errors_of(job)
    assert [line for line, _ in lines] == [3, 4]
    assert lines[0][1].startswith("line 3: not valid UTF-8 (byte 0xE9 at position 19).")
    assert "choose that encoding" in lines[0][1]
    assert job.summary["errors"] == 2


def test_latin1_bytes_with_windows_1252_chosen_are_imported(account_a):
    job = start_import(account_a, LATIN1.encode("latin-1"), encoding="cp1252")
    assert job.params["suggested_encoding"] == "cp1252"
    job = importer.import_job_run(job_id=job.id)
    assert not errors_of(job)
    assert Subscriber.objects.get(email="zoe@example.com").first_name == "Zoé"
    assert Subscriber.objects.get(email="rene@example.com").first_name == "René"


def test_quoted_values_may_span_lines_and_line_numbers_stay_physical(account_a):
    CustomFieldFactory(account=account_a, key="notes", label="Notes")
    job = run_import(
        account_a,
        'email,notes\nann@example.com,"line one\nline two"\n\nbad,x\nbob@example.com,"a ""b"""\n',
    )
    assert Subscriber.objects.get(email="ann@example.com").fields == {"notes": "line one\nline two"}
    assert Subscriber.objects.get(email="bob@example.com").fields == {"notes": 'a "b"'}
    assert [line for line, _ in errors_of(job)] == [5]


def test_an_unbalanced_quote_is_reported_with_the_lines_it_swallowed(account_a):
    job = run_import(
        account_a,
        'email,first_name\nann@example.com,"Ann\nbob@example.com,Bob\ncid@example.com,Cid\n',
    )
    assert emails(account_a) == []
    [(line, message)] = errors_of(job)
    assert line == 2
    assert "A quoted value that starts on line 2 is never closed" in message
    assert "lines 2–4 could not be read" in message


def test_malformed_csv_in_the_middle_skips_only_its_record(account_a):
    job = run_import(
        account_a,
        'email,first_name\nann@example.com,"Ann"x\nbob@example.com,Bob\n',
    )
    assert emails(account_a) == ["bob@example.com"]
    [(line, message)] = errors_of(job)
    assert line == 2 and message.startswith("Malformed CSV (")


def test_over_long_values_are_row_errors(account_a):
    CustomFieldFactory(account=account_a, key="company", label="Company")
    long_name = "A" * 256
    long_company = "C" * 2001
    job = run_import(
        account_a,
        f"email,first_name,company\nname@example.com,{long_name},\n"
        f"company@example.com,,{long_company}\nok@example.com,{'A' * 255},{'C' * 2000}\n",
    )
    assert emails(account_a) == ["ok@example.com"]
    assert errors_of(job) == [
        (2, "The first name is longer than 255 characters."),
        (3, "The value of “company” is longer than 2,000 characters."),
    ]
    assert job.errors.get(line=2).value == "name@example.com"


def test_a_first_name_with_a_line_break_is_refused(account_a):
    job = run_import(account_a, 'email,first_name\nann@example.com,"An\nn"\n')
    assert errors_of(job) == [(2, "The first name contains a line break.")]


def test_rows_with_more_or_fewer_values_than_the_header_are_row_errors(account_a):
    job = run_import(
        account_a,
        "email,first_name\nann@example.com,Ann,extra\nbob@example.com\ncid@example.com,Cid,,\n",
    )
    assert emails(account_a) == ["cid@example.com"]  # empty trailing cells are harmless
    assert errors_of(job) == [
        (
            2,
            "This row has more values than the header has columns (3 instead of 2); check "
            "for a missing or extra delimiter.",
        ),
        (
            3,
            "This row has fewer values than the header has columns (1 instead of 2); check "
            "for a missing or extra delimiter.",
        ),
    ]


def test_each_problem_names_the_column_at_fault_as_the_files_header_does(account_a):
    CustomFieldFactory(account=account_a, key="city", label="City")
    Suppression.objects.create(account=account_a, email_hash=email_hash("gone@example.com"))
    job = run_import(
        account_a,
        "E-mail,,Status,Town\n"
        "ann@example.com,Ann,active,Lyon\n"
        "not an address,Bob,active,Paris\n"
        'cid@example.com,"C\nid",active,Nice\n'
        "dan@example.com,Dan,sleeping,Metz\n"
        f"eve@example.com,Eve,active,{'x' * 3000}\n"
        "fay@example.com,Fay\n"
        "ann@example.com,Ann again,active,Lyon\n"
        "gone@example.com,Gus,active,Caen\n",
        mapping=["email", "first_name", "state", "field:city"],
    )

    problems = job.errors.order_by("line").values_list("line", "column_name")
    assert list(problems) == [
        (3, "E-mail"),
        (4, "Column 2"),
        (6, "Status"),
        (7, "Town"),
        (8, ""),  # too few values: the row as a whole
        (9, "E-mail"),  # a duplicate of line 2
        (10, "E-mail"),  # suppressed
    ]


def test_a_line_with_a_nul_byte_is_a_row_error(account_a):
    job = run_import(account_a, b"email\nann@example.com\nb\x00ob@example.com\n")
    assert emails(account_a) == ["ann@example.com"]
    assert errors_of(job) == [(3, "line 3: contains a NUL character")]


def test_a_semicolon_separated_file_is_read(account_a):
    job = run_import(account_a, "email;first_name\nann@example.com;Ann\n")
    assert job.params["delimiter"] == ";"
    assert Subscriber.objects.get(email="ann@example.com").first_name == "Ann"


def test_a_job_without_an_email_column_fails_and_changes_nothing(account_a):
    SubscriberFactory(account=account_a, email="ann@example.com", first_name="Ann")
    job = start_import(account_a, "name,phone\nAnnie,123\n", mapping=["first_name", ""])
    job = importer.import_job_run(job_id=job.id)
    assert job.state == Job.State.FAILED
    assert job.message == "No column is mapped to the email address, so nothing can be imported."
    assert Subscriber.objects.get(email="ann@example.com").first_name == "Ann"


def test_a_mapping_to_a_custom_field_deleted_since_fails_clearly(account_a):
    field = CustomFieldFactory(account=account_a, key="company", label="Company")
    job = start_import(account_a, "email,company\nann@example.com,Acme\n")
    field.delete()
    job = importer.import_job_run(job_id=job.id)
    assert job.state == Job.State.FAILED
    assert job.message == "There is no custom field “company”."
    assert not Subscriber.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty. Choose a CSV file with a header row."),
        (b"PK\x03\x04\x14\x00\x06\x00", "This looks like a spreadsheet, PDF or archive"),
        ("email\n".encode("utf-16"), "This file is not plain text"),
        (b"\n\n", "The first line of the file must be a header row"),
    ],
)
def test_files_that_cannot_be_imported_are_refused_before_anything_is_stored(
    account_a, data, message
):
    with pytest.raises(importer.ImportFileError, match=message):
        importer.import_job_create(
            account=account_a, created_by=None, file_name="x.csv", chunks=[data]
        )
    assert not Job.objects.exists()
    assert not ImportFileChunk.objects.exists()


def test_a_file_over_the_limit_is_refused_while_streaming(account_a):
    def endless():
        yield b"email\n"
        while True:
            yield b"x" * 1000

    with pytest.raises(importer.ImportFileError, match="larger than 10,000 bytes"):
        importer.import_job_create(
            account=account_a,
            created_by=None,
            file_name="x.csv",
            chunks=endless(),
            max_bytes=10_000,
        )
    assert not Job.objects.exists()


def test_a_large_file_is_stored_in_one_mebibyte_chunks_and_read_back(account_a):
    rows = "".join(f"reader{n}@example.com,Name {n}\n" for n in range(60_000))
    data = ("email,first_name\n" + rows).encode()
    job = start_import(account_a, data)
    sizes = list(
        ImportFileChunk.objects.filter(job=job).order_by("seq").values_list("data", flat=True)
    )
    assert len(sizes) == 2 and len(sizes[0]) == importer.CHUNK_SIZE
    assert job.params["size"] == len(data)
    job = importer.import_job_run(job_id=job.id)
    assert job.summary["created"] == 60_000 and job.summary["errors"] == 0
    assert Subscriber.objects.get(email="reader59999@example.com").first_name == "Name 59999"


def test_chosen_tags_and_a_tags_column_tag_new_and_existing_subscribers(account_a):
    vip = TagFactory(account=account_a, name="VIP")
    old = SubscriberFactory(account=account_a, email="old@example.com")
    TaggingFactory(tag=vip, subscriber=old)
    job = run_import(
        account_a,
        'email,tags\nold@example.com,"vip,  Spring   sale"\nnew@example.com,\n',
        tags=["Imported", "vip"],
    )
    assert job.state == Job.State.DONE

    def tags_of(email):
        return sorted(
            Tagging.objects.filter(subscriber__email=email).values_list("tag__name", flat=True)
        )

    assert tags_of("old@example.com") == ["Imported", "Spring sale", "VIP"]
    assert tags_of("new@example.com") == ["Imported", "VIP"]
    counts = dict(Tag.objects.filter(account=account_a).values_list("name", "subscriber_count"))
    assert counts == {"VIP": 2, "Imported": 2, "Spring sale": 1}


def test_running_a_finished_job_again_imports_nothing_twice(account_a):
    job = run_import(account_a, "email\nann@example.com\nbad\n", tags=["t"])
    assert importer.import_job_run(job_id=job.id) is None
    job.refresh_from_db()
    assert job.summary["created"] == 1 and job.error_count == 1
    assert job.errors.count() == 1
    assert Subscriber.objects.count() == 1
    assert Tag.objects.get(name="t").subscriber_count == 1


def test_a_job_that_stopped_half_way_is_run_again_from_the_start(account_a, monkeypatch):
    """A worker killed after some batches were staged: acks_late runs the task again."""
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)
    job = start_import(account_a, "email\na@example.com\nb@example.com\nbad\nc@example.com\n")
    original_merge = importer._merge

    def crash(**kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(importer, "_merge", crash)
    with pytest.raises(SystemExit):
        importer.import_job_run(job_id=job.id)
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and job.processed == 4
    assert (job.total, job.message) == (4, "Merging into your list…")
    assert not Subscriber.objects.exists()

    monkeypatch.setattr(importer, "_merge", original_merge)
    job = importer.import_job_run(job_id=job.id)
    assert job.state == Job.State.DONE
    assert emails(account_a) == ["a@example.com", "b@example.com", "c@example.com"]
    assert errors_of(job) == [(4, "“bad” is not an email address.")]
    assert job.summary["created"] == 3


def test_progress_is_reported_after_each_batch(account_a, monkeypatch):
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)
    job = start_import(account_a, "email\n" + "".join(f"r{n}@example.com\n" for n in range(5)))
    seen = []
    importer.import_job_run(
        job_id=job.id, on_progress=lambda done, total, note: seen.append((done, total))
    )
    assert [done for done, _ in seen[:3]] == [2, 4, 5]
    assert all(total is not None and total >= done for done, total in seen)
    assert seen[-1] == (5, 5)


def test_only_so_many_errors_are_stored_but_all_are_counted(account_a, monkeypatch):
    monkeypatch.setattr(importer, "MAX_STORED_ERRORS", 2)
    job = run_import(account_a, "email\n" + "bad\n" * 5 + "ok@example.com\n")
    assert job.error_count == 5 and job.summary["errors"] == 5
    assert [line for line, _ in errors_of(job)] == [2, 3]


def test_an_exported_formula_guard_is_removed_on_import(account_a):
    CustomFieldFactory(account=account_a, key="note", label="Note")
    run_import(account_a, "email,first_name,note\n'-dash@example.com,'=Ann,'+1\n")
    subscriber = Subscriber.objects.get()
    assert (subscriber.email, subscriber.first_name, subscriber.fields) == (
        "-dash@example.com",
        "=Ann",
        {"note": "+1"},
    )


def test_the_header_guess_recognises_usual_names_and_custom_fields(account_a):
    CustomFieldFactory(account=account_a, key="company", label="Company name")
    header = ["E-mail", "Name", "company name", "Tags", "Phone", "email"]
    guess = importer.import_mapping_guess(
        header=header, custom_fields=CustomField.objects.filter(account=account_a)
    )
    assert guess == ["email", "first_name", "field:company", "tags", "", ""]


SIMPLE_AND_TRICKY = [
    "ann@example.com",
    "Ann.Smith+news@Example.co.uk",
    "a_b-c@sub-domain.example.org",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@-example.com",
    "a@example-.com",
    "a@example.c",
    "a@example.123",
    "a@localhost",
    "a@[127.0.0.1]",
    "a@b.xn--p1ai",
    "x" * 64 + "@" + "d" * 63 + ".com",
    "x" * 250 + "@e.com",
    "a@" + "b" * 64 + ".com",
    "\u212aelvin@example.com",
    "o'brien@example.com",
    "a b@example.com",
    "ann@example.com.",
]


@pytest.mark.parametrize("raw", SIMPLE_AND_TRICKY)
def test_the_fast_email_check_gives_the_same_verdict_as_normalize_email(account_a, raw):
    try:
        expected = normalize_email(raw)
    except ValidationError:
        expected = None
    job = run_import(account_a, f"email\n{raw}\n")
    assert emails(account_a) == ([expected] if expected else [])
    assert job.error_count == (0 if expected else 1)
