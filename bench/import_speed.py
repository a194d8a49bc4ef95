"""Import speed: a generated CSV (email, first name, one custom field) through import_job_run.

    DATABASE_URL=... python bench/import_speed.py [--rows 1000000]

prints the rate into an empty account and into one that already holds half of the addresses,
beside the limit: COPY of the same rows into a table with a unique (account, email) index.
bench/pages.py calls `import_speed_measure` and `copy_limit_measure`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convertkit.settings")
    import django

    django.setup()

from django.db import connection  # noqa: E402

CUSTOM_FIELD_KEY = "company"
_FIRST_NAMES = ("Ada", "Ben", "Chloé", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivo", "Jun")


def _email(number: int) -> str:
    return f"reader{number}@example{number % 97}.com"


def csv_file_write(rows: int):
    """A binary file of `rows` subscribers plus the header, generated on the fly (on disk)."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    out.write(b"email,first_name,company\n")
    batch = []
    for number in range(rows):
        batch.append(f"{_email(number)},{_FIRST_NAMES[number % 10]},Company {number % 1000}\n")
        if len(batch) == 10_000:
            out.write("".join(batch).encode())
            batch.clear()
    out.write("".join(batch).encode())
    out.seek(0)
    return out


def _existing_subscribers_copy(*, account_id: int, numbers: range) -> None:
    """Existing subscribers (through COPY, like seed_demo) for the addresses with these numbers."""
    buffer = io.StringIO()
    for number in numbers:
        buffer.write(f'{account_id},{_email(number)},Old,{{}},active,seed,"",now,now\n')
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.copy_expert(
            "COPY subscribers_subscriber (account_id, email, first_name, fields, state, source, "
            "consent_method, created_at, updated_at) FROM STDIN WITH (FORMAT csv)",
            buffer,
        )


def account_erase(account_id: int) -> None:
    """Removes a benchmark account set-based (Django's cascade would load every row)."""
    with connection.cursor() as cursor:
        for table in (
            "subscribers_tagging",
            "subscribers_subscriber",
            "subscribers_tag",
            "subscribers_customfield",
            "subscribers_subscribercount",
            "automations_event",
        ):
            cursor.execute(f"DELETE FROM {table} WHERE account_id = %s", [account_id])
        cursor.execute(
            "DELETE FROM convertkit_joberror WHERE job_id IN "
            "(SELECT id FROM convertkit_job WHERE account_id = %s)",
            [account_id],
        )
        cursor.execute(
            "DELETE FROM subscribers_importfilechunk WHERE job_id IN "
            "(SELECT id FROM convertkit_job WHERE account_id = %s)",
            [account_id],
        )
        cursor.execute("DELETE FROM convertkit_job WHERE account_id = %s", [account_id])
        cursor.execute("DELETE FROM convertkit_account WHERE id = %s", [account_id])


def import_speed_measure(
    *, rows: int = 1_000_000, existing_fraction: float = 0.0, tags: tuple[str, ...] = ()
) -> dict:
    """Times import_job_run on a generated CSV of `rows` rows, in a new account (erased after).

    `existing_fraction` of the addresses (every other one for 0.5) exist before the import.
    Returns {"rows", "seconds", "rows_per_s", "created", "updated", "errors"}.
    """
    from convertkit.models import Account
    from subscribers.csv import importer
    from subscribers.models import CustomField

    account = Account.objects.create(name=f"import bench {time.time():.0f}")
    try:
        CustomField.objects.create(account=account, key=CUSTOM_FIELD_KEY, label="Company")
        if existing_fraction:
            step = max(1, round(1 / existing_fraction))
            _existing_subscribers_copy(account_id=account.id, numbers=range(0, rows, step))
        with csv_file_write(rows) as source:
            job = importer.import_job_create(
                account=account,
                created_by=None,
                file_name="bench.csv",
                chunks=importer.file_chunks(source),
            )
        importer.import_job_start(
            job=job,
            mapping=["email", "first_name", f"field:{CUSTOM_FIELD_KEY}"],
            tag_names=list(tags),
            encoding="utf-8",
            consent_by="the import benchmark",
            enqueue=False,
        )
        started = time.perf_counter()
        job = importer.import_job_run(job_id=job.id)
        seconds = time.perf_counter() - started
        return {
            "rows": rows,
            "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds),
            "created": job.summary.get("created"),
            "updated": job.summary.get("updated"),
            "errors": job.summary.get("errors"),
        }
    finally:
        account_erase(account.id)


def copy_limit_measure(*, rows: int = 1_000_000) -> dict:
    """The same rows COPYed into a scratch table (logged, like subscribers) with a unique
    (account, email) index: what PostgreSQL itself needs, before any checking or merging."""
    with csv_file_write(rows) as source, connection.cursor() as cursor:
        source.readline()
        cursor.execute("DROP TABLE IF EXISTS bench_copy_limit")
        cursor.execute(
            "CREATE TABLE bench_copy_limit (account_id bigint NOT NULL DEFAULT 1, "
            "email text NOT NULL, first_name text, company text)"
        )
        cursor.execute("CREATE UNIQUE INDEX ON bench_copy_limit (account_id, email)")
        try:
            wrapped = io.TextIOWrapper(source, encoding="utf-8")
            started = time.perf_counter()
            cursor.copy_expert(
                "COPY bench_copy_limit (email, first_name, company) FROM STDIN WITH (FORMAT csv)",
                wrapped,
            )
            seconds = time.perf_counter() - started
        finally:
            cursor.execute("DROP TABLE bench_copy_limit")
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    limit = copy_limit_measure(rows=args.rows)
    empty = import_speed_measure(rows=args.rows)
    half = import_speed_measure(rows=args.rows, existing_fraction=0.5)
    print(f"{'case':<34}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    for label, figures in (
        ("COPY with unique index (limit)", limit),
        ("import into an empty account", empty),
        ("import, half already subscribed", half),
    ):
        print(
            f"{label:<34}{figures['rows']:>12,}{figures['seconds']:>10.2f}"
            f"{figures['rows_per_s']:>12,}"
        )
    print(
        json.dumps(
            {
                "bench": "import",
                "rows": args.rows,
                "import_rows_per_s": empty["rows_per_s"],
                "import_half_existing_rows_per_s": half["rows_per_s"],
                "limit_copy_rows_per_s": limit["rows_per_s"],
            }
        )
    )


if __name__ == "__main__":
    main()
