"""`manage.py import_subscribers FILE --account ...`: the browser import, from the command line."""

from __future__ import annotations

import csv
import os
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from convertkit.commands import ProgressBar, account_find
from convertkit.csv_download import job_error_rows
from convertkit.models import Account, Job
from sequences.models import Sequence
from subscribers.csv import importer
from subscribers.models import CustomField

TARGET_HELP = "email, first_name, tags, state, time_zone, ignore, or the key of a custom field"


class Command(BaseCommand):
    help = (
        "Import subscribers from a CSV file with a header row into an account, like the "
        "browser import: existing subscribers are updated (never duplicated), unsubscribed, "
        "bounced and complained ones keep their state, and rows with problems are listed with "
        "their line numbers. By default the file is stored in the database and imported by a "
        "worker (run one: celery -A convertkit worker); --in-process imports it here instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the CSV file (first line: the column names).")
        parser.add_argument(
            "--account", required=True, help="Id or name of the account to import into."
        )
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="NAME",
            help="Tag everyone in the file with this tag (created if missing). Repeatable.",
        )
        parser.add_argument(
            "--sequence",
            type=int,
            metavar="SEQUENCE_ID",
            help="Add everyone in the file to this sequence of the account (unsubscribed, "
            "bounced and complained subscribers are refused; anyone in it already stays put).",
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="COLUMN=TARGET",
            help="What a column holds, overriding the guess made from the header: COLUMN is "
            f"its name or number (1 = first); TARGET is {TARGET_HELP}. Repeatable. "
            "Example: --map 'E-mail address=email' --map 3=ignore.",
        )
        parser.add_argument(
            "--encoding",
            choices=sorted(importer.ENCODINGS),
            help="Character encoding of the file (default: utf-8, or cp1252 when the start of "
            "the file is not valid UTF-8).",
        )
        parser.add_argument(
            "--in-process",
            action="store_true",
            help="Import in this process, reading the file from disk, instead of through a worker.",
        )
        parser.add_argument(
            "--errors",
            metavar="ERRORS_CSV",
            help="Write the rows with problems (line, value, error) to this CSV file.",
        )

    def handle(self, *args, **options):
        account = account_find(options["account"])
        path = options["file"]
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed in the finally below
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        try:
            job = self._import(account=account, source=source, path=path, options=options)
        finally:
            source.close()
        self._report(job, options)

    def _import(self, *, account: Account, source, path: str, options) -> Job:
        try:
            header, _, suggested = importer.import_header_read(source.read(importer.CHUNK_SIZE))
        except importer.ImportFileError as exc:
            raise CommandError(f"{path}: {exc}") from None
        mapping = self._mapping(account=account, header=header, overrides=options["map"])
        sequence = None
        if options["sequence"] is not None:
            sequence = Sequence.objects.filter(account=account, pk=options["sequence"]).first()
            if sequence is None:
                raise CommandError(
                    f"The account has no sequence {options['sequence']} (its id is in its URL)."
                )
        source.seek(0)
        store = not options["in_process"]
        if store:
            self.stderr.write(f"Storing {path} in the database for the worker…")
        try:
            job = importer.import_job_create(
                account=account,
                created_by=None,
                file_name=os.path.basename(path),
                chunks=importer.file_chunks(source),
                store=store,
            )
        except importer.ImportFileError as exc:
            raise CommandError(f"{path}: {exc}") from None
        importer.import_job_start(
            job=job,
            mapping=mapping,
            tag_names=[" ".join(name.split()) for name in options["tag"] if name.strip()],
            encoding=options["encoding"] or suggested,
            consent_by="manage.py import_subscribers",
            enqueue=store,
            sequence=sequence,
        )
        # The plain stream: Django's stderr wrapper would add a newline and colour each update.
        bar = ProgressBar(getattr(self.stderr, "_out", self.stderr))
        if store:
            job = self._follow(job, bar)
        else:
            source.seek(0)
            job = importer.import_job_run(
                job_id=job.id,
                source=source,
                on_progress=lambda done, total, note: bar.update(done, total, note),
            )
        bar.update(job.processed, job.total, force=True)
        bar.finish()
        return job

    def _mapping(self, *, account: Account, header: list[str], overrides: list[str]) -> list[str]:
        custom_fields = list(CustomField.objects.filter(account=account))
        keys = {field.key for field in custom_fields}
        mapping = importer.import_mapping_guess(header=header, custom_fields=custom_fields)
        by_name = {name.strip().lower(): index for index, name in enumerate(header)}
        for override in overrides:
            column, sep, target = override.rpartition("=")
            column, target = column.strip(), target.strip().lower()
            if not sep or not column:
                raise CommandError(f"--map {override}: write it as COLUMN=TARGET.")
            if column.isdigit() and 1 <= int(column) <= len(header):
                index = int(column) - 1
            elif column.lower() in by_name:
                index = by_name[column.lower()]
            else:
                raise CommandError(
                    f"--map {override}: the file has no column “{column}” (its columns: "
                    + ", ".join(header)
                    + ")."
                )
            if target == "ignore":
                target = importer.IGNORE
            elif target.startswith(importer.FIELD_PREFIX):
                pass
            elif target in keys:
                target = importer.FIELD_PREFIX + target
            elif target not in importer.TARGET_LABELS:
                raise CommandError(
                    f"--map {override}: “{target}” is not {TARGET_HELP} of this account."
                )
            mapping = [importer.IGNORE if t == target else t for t in mapping]
            mapping[index] = target
        problems = importer.import_mapping_check(mapping=mapping, account=account)
        if problems:
            columns = ", ".join(
                f"{name or index + 1} → {target or 'ignored'}"
                for index, (name, target) in enumerate(zip(header, mapping, strict=True))
            )
            raise CommandError(" ".join(problems) + f" Columns: {columns}. Use --map to fix.")
        self.stderr.write(
            "Columns: "
            + ", ".join(
                f"{name} → {target or 'ignored'}"
                for name, target in zip(header, mapping, strict=True)
            )
        )
        return mapping

    def _follow(self, job: Job, bar: ProgressBar) -> Job:
        """Polls the job until a worker has finished it, drawing its progress."""
        try:
            while True:
                job.refresh_from_db()
                if job.is_finished:
                    return job
                note = (
                    "waiting for a worker (celery -A convertkit worker)"
                    if job.state == Job.State.QUEUED
                    else job.message
                )
                bar.update(job.processed, job.total, note)
                time.sleep(0.5)
        except KeyboardInterrupt:
            bar.finish()
            url = settings.SITE_URL + reverse("job_detail", args=[job.id])
            raise CommandError(
                f"Stopped following the import; the worker carries on. Its progress: {url}"
            ) from None

    def _report(self, job: Job, options) -> None:
        if job.state == Job.State.FAILED:
            raise CommandError(f"The import failed: {job.message}")
        self.stdout.write(job.message)
        for label, value in job.summary.items():
            self.stdout.write(f"  {label}: {value:,}")
        if not job.error_count:
            return
        if options["errors"]:
            with open(options["errors"], "w", newline="", encoding="utf-8") as out:
                csv.writer(out).writerows(job_error_rows(job=job))
            self.stdout.write(f"Rows with problems written to {options['errors']}.")
        else:
            url = settings.SITE_URL + reverse("job_errors_csv", args=[job.id])
            self.stdout.write(
                f"Download the rows with problems from {url} (or pass --errors FILE next time)."
            )
