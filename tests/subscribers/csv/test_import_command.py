"""`manage.py import_subscribers --in-process`; the worker path is in test_import_pipeline.py."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from convertkit.models import Job
from subscribers.models import ImportFileChunk, Subscriber, Tagging
from tests.factories import AccountFactory, CustomFieldFactory, SubscriberFactory


def import_command(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_subscribers", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def people_csv(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(
        "E-mail,Given,Firm,Notes\nann@example.com,Ann,Acme,x\nbad,Bob,,\nben@example.com,Ben,Bits,\n"
    )
    return path


def test_the_command_imports_in_process_with_a_progress_bar_and_a_summary(
    account_a, people_csv, tmp_path
):
    CustomFieldFactory(account=account_a, key="firm", label="Firm")
    SubscriberFactory(account=account_a, email="ben@example.com", state="bounced")
    errors = tmp_path / "errors.csv"
    out, err = import_command(
        str(people_csv),
        "--account",
        str(account_a.id),
        "--in-process",
        "--map",
        "Given=first_name",
        "--map",
        "4=ignore",
        "--tag",
        "From the CLI",
        "--errors",
        str(errors),
    )
    assert "Columns: E-mail → email, Given → first_name, Firm → field:firm, Notes → ignored" in err
    assert "3 of 3 rows" in err
    assert "3 rows read: 1 new, 1 updated (1 kept unsubscribed, bounced or complained)" in out
    assert "  created: 1" in out
    assert errors.read_text().splitlines() == [
        "line,column,value,error",
        "3,E-mail,bad,“bad” is not an email address.",
    ]
    ann = Subscriber.objects.get(email="ann@example.com")
    assert (ann.first_name, ann.fields, ann.consent_method) == (
        "Ann",
        {"firm": "Acme"},
        "import by manage.py import_subscribers",
    )
    assert Subscriber.objects.get(email="ben@example.com").state == "bounced"
    assert Tagging.objects.filter(tag__name="From the CLI").count() == 2
    job = Job.objects.get()
    assert job.state == Job.State.DONE
    assert not ImportFileChunk.objects.exists()  # read from disk, never stored


def test_the_command_finds_the_account_by_name(account_a, people_csv):
    out, _ = import_command(str(people_csv), "--account", "ann's kitchen", "--in-process")
    assert "2 new" in out
    assert Subscriber.objects.filter(account=account_a).count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "Nobody"], "No account is named “Nobody”."),
        (["--map", "Phone=email"], "the file has no column “Phone”"),
        (["--map", "Firm=shoe_size"], "“shoe_size” is not email, first_name, tags, state"),
        (["--map", "E-mail=ignore"], "No column is mapped to the email address."),
        (["--map", "E-mail"], "write it as COLUMN=TARGET"),
    ],
)
def test_the_command_explains_what_is_wrong_and_exits_non_zero(
    account_a, people_csv, args, message
):
    args = ["--account", str(account_a.id), *args] if args[0] != "--account" else args
    with pytest.raises(CommandError, match=message):
        import_command(str(people_csv), "--in-process", *args)
    assert not Job.objects.exists() and not Subscriber.objects.exists()


def test_a_missing_or_unreadable_file_is_a_clear_error(account_a, tmp_path):
    with pytest.raises(CommandError, match="Cannot read .*nope.csv: No such file"):
        import_command(str(tmp_path / "nope.csv"), "--account", str(account_a.id))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(CommandError, match="The first line of the file must be a header row"):
        import_command(str(empty), "--account", str(account_a.id), "--in-process")


def test_two_accounts_with_the_same_name_need_the_id(account_a, people_csv):
    AccountFactory(name=account_a.name)
    with pytest.raises(CommandError, match="Several accounts are named"):
        import_command(str(people_csv), "--account", account_a.name, "--in-process")


def test_a_latin1_file_is_read_as_windows_1252(account_a, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("email,first_name\nzoe@example.com,Zoé\n".encode("latin-1"))
    import_command(str(path), "--account", str(account_a.id), "--in-process")
    assert Subscriber.objects.get().first_name == "Zoé"
    path.write_bytes("email,first_name\nzoe@example.com,Zoë\n".encode("latin-1"))
    out, _ = import_command(
        str(path), "--account", str(account_a.id), "--in-process", "--encoding", "utf-8"
    )
    assert "1 with problems" in out
    assert "/errors.csv" in out


def test_the_error_file_guards_a_rejected_value_that_looks_like_a_formula(account_a, tmp_path):
    path = tmp_path / "formula.csv"
    path.write_text("email\n=1+1\nok@example.com\n")
    errors = tmp_path / "errors.csv"
    import_command(
        str(path), "--account", str(account_a.id), "--in-process", "--errors", str(errors)
    )
    assert errors.read_text().splitlines() == [
        "line,column,value,error",
        "2,email,'=1+1,“=1+1” is not an email address.",
    ]
