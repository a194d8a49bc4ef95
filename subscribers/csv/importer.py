"""CSV import: the uploaded file kept in PostgreSQL, then parsed, staged through COPY and merged.

The file is stored as ImportFileChunk rows of a Job (workers may run on other hosts), read back
one chunk at a time, and never held whole in memory. Rows are checked in Python, the valid ones
COPYed into a TEMP staging table in batches, and everything that touches the account's data
happens in one set-based transaction at the end (see `_merge`), so a crash or a re-run imports
nothing twice and a failed import changes nothing. That transaction also adds everyone in the
file to the sequence chosen, if any, and those newly given a tag to the sequences it adds to.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from automations.models import EventKind
from automations.outbox import events_insert_sql
from convertkit.csv_download import safe_cell
from convertkit.models import Account, Job, JobError, User, is_time_zone
from sequences.entry import tags_added_enrol, triggered_tag_ids
from sequences.models import Sequence
from sequences.services import subscribers_enrol
from subscribers.models import (
    CustomField,
    ImportFileChunk,
    Subscriber,
    SubscriberCount,
    Suppression,
    Tag,
    Tagging,
)
from subscribers.services import MAX_TAG_NAME_LENGTH, tag_get_or_create
from subscribers.tasks import run_import
from subscribers.validation import (
    MAX_EMAIL_LENGTH,
    MAX_FIELD_VALUE_LENGTH,
    SIMPLE_EMAIL,
    normalize_email,
)

CHUNK_SIZE = 1024 * 1024
BATCH_ROWS = 50_000
PREVIEW_ROWS = 5
MAX_COLUMNS = 200
MAX_FIRST_NAME_LENGTH = 255
MAX_STORED_ERRORS = 100_000
MAX_ERROR_VALUE_LENGTH = 200

ENCODINGS = {"utf-8": "UTF-8", "cp1252": "Windows-1252 (Latin-1)"}
DEFAULT_ENCODING = "utf-8"

# What a column can be mapped to; custom fields are "field:<key>", an ignored column is "".
EMAIL, FIRST_NAME, TAGS, STATE, TIME_ZONE, IGNORE = (
    "email",
    "first_name",
    "tags",
    "state",
    "time_zone",
    "",
)
FIELD_PREFIX = "field:"
TARGET_LABELS = {
    EMAIL: "Email address",
    FIRST_NAME: "First name",
    TAGS: "Tags (comma-separated in the cell)",
    STATE: "State (only for new subscribers)",
    TIME_ZONE: "Time zone (a name such as Europe/Paris)",
}
# States an import may give a new subscriber; an existing subscriber's state is never changed.
IMPORTABLE_STATES = frozenset(Subscriber.State.values)
_SUPPRESSED_STATES = tuple(str(state) for state in Subscriber.SUPPRESSED_STATES)

_HEADER_GUESSES = {
    EMAIL: {"email", "e-mail", "email address", "e-mail address", "emailaddress", "mail"},
    FIRST_NAME: {"first name", "firstname", "first_name", "name", "given name", "prenom"},
    TAGS: {"tags", "tag"},
    STATE: {"state", "status"},
    TIME_ZONE: {"time zone", "timezone", "tz"},
}

# Characters str.splitlines() breaks on that the csv module does not.
_EXOTIC_LINE_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_BINARY_MAGIC = (b"PK\x03\x04", b"%PDF", b"\xd0\xcf\x11\xe0", b"\x1f\x8b")


class ImportFileError(ValueError):
    """A file that cannot be imported at all; the message says why in a creator's words."""


# --- Storing the upload ------------------------------------------------------------------------


def import_job_create(
    *,
    account: Account,
    created_by: User | None,
    file_name: str,
    chunks: Iterable[bytes],
    max_bytes: int | None = None,
    store: bool = True,
) -> Job:
    """A queued import Job holding the file as 1 MiB ImportFileChunk rows, or ImportFileError.

    The size limit is checked while the file streams in, and the first chunk must look like a
    CSV with a header row. Everything happens in one transaction: a rejected file leaves nothing.
    With `store=False` (a local file imported in-process) only the header is read and kept.
    """
    file_name = (file_name or "file.csv").replace("\\", "/").rsplit("/", 1)[-1][:200]
    with transaction.atomic():
        job = Job.objects.create(
            account=account,
            created_by=created_by,
            kind=Job.Kind.IMPORT,
            title=f"Import {file_name}"[:255],
            params={"file_name": file_name},
        )
        size = seq = 0
        head = b""
        pending = bytearray()
        for chunk in chunks:
            if not chunk:
                continue
            if not size:
                _check_looks_like_csv(bytes(chunk[:8192]))
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise ImportFileError(
                    f"The file is larger than {size_text(max_bytes)}. Split it into smaller "
                    "files, or ask the operator to import it with manage.py import_subscribers."
                )
            if len(head) < CHUNK_SIZE:
                head += bytes(chunk[: CHUNK_SIZE - len(head)])
            if store:
                pending += chunk
                while len(pending) >= CHUNK_SIZE:
                    ImportFileChunk.objects.create(
                        job=job, seq=seq, data=bytes(pending[:CHUNK_SIZE])
                    )
                    del pending[:CHUNK_SIZE]
                    seq += 1
        if not size:
            raise ImportFileError("The file is empty. Choose a CSV file with a header row.")
        if pending:
            ImportFileChunk.objects.create(job=job, seq=seq, data=bytes(pending))
            seq += 1
        header, delimiter, encoding = import_header_read(head)
        job.params.update(
            size=size, chunks=seq, columns=header, delimiter=delimiter, suggested_encoding=encoding
        )
        job.save(update_fields=["params"])
    return job


def import_jobs_abandoned_delete(*, account: Account, older_than: timedelta) -> int:
    """Deletes the account's uploads whose columns were never mapped (with their file)."""
    deleted, _ = Job.objects.filter(
        account=account,
        kind=Job.Kind.IMPORT,
        state=Job.State.QUEUED,
        params__mapping__isnull=True,
        created_at__lt=timezone.now() - older_than,
    ).delete()
    return deleted


def size_text(size: int) -> str:
    """A file size as a creator reads it: "256 MB", or bytes for small ones."""
    return f"{size / (1024 * 1024):,.0f} MB" if size >= 1024 * 1024 else f"{size:,} bytes"


def _check_looks_like_csv(head: bytes) -> None:
    if head.startswith(_BINARY_MAGIC):
        raise ImportFileError(
            "This looks like a spreadsheet, PDF or archive, not a CSV file. In your spreadsheet "
            "program choose File › Save as › CSV, then upload that file."
        )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or head.count(b"\x00") > 2:
        raise ImportFileError(
            "This file is not plain text (it may be UTF-16 or a binary file). Save it as "
            "“CSV UTF-8” and upload it again."
        )


def import_header_read(data: bytes) -> tuple[list[str], str, str]:
    """The header row of a file's first bytes, its delimiter, and the encoding it decodes with.

    Raises ImportFileError for a file that does not look like a CSV with a header row.
    """
    _check_looks_like_csv(data[:8192])
    data = data.removeprefix(codecs.BOM_UTF8)
    first_line = data.split(b"\n", 1)[0]
    encoding = DEFAULT_ENCODING
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the chunk end is still UTF-8.
        if exc.reason != "unexpected end of data":
            encoding = "cp1252"
    text_line = first_line.decode(encoding, "replace")
    delimiter = max(",;\t", key=text_line.count)
    if not text_line.count(delimiter):
        delimiter = ","
    rows = _preview_rows(data, encoding=encoding, delimiter=delimiter, limit=1)
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ImportFileError(
            "The first line of the file must be a header row naming the columns "
            "(for example: email,first_name)."
        )
    header = [cell.strip() for cell in rows[0]]
    if len(header) > MAX_COLUMNS:
        raise ImportFileError(
            f"The file has {len(header):,} columns; at most {MAX_COLUMNS} are supported."
        )
    return header, delimiter, encoding


def _preview_rows(data: bytes, *, encoding: str, delimiter: str, limit: int) -> list[list[str]]:
    text = data.removeprefix(codecs.BOM_UTF8).decode(encoding, "replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[list[str]] = []
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) >= limit:
                break
    except csv.Error:
        pass
    return rows


# --- The map page ------------------------------------------------------------------------------


@dataclass
class ImportPreview:
    header: list[str]
    rows: list[list[str]]
    suggested_encoding: str


def import_preview(*, job: Job, encoding: str | None = None) -> ImportPreview:
    """The header and the first rows of an uploaded file, read from its first chunk only."""
    params = job.params
    chunk = ImportFileChunk.objects.filter(job=job, seq=0).values_list("data", flat=True).first()
    encoding = encoding or params.get("suggested_encoding", DEFAULT_ENCODING)
    rows = _preview_rows(
        bytes(chunk or b""),
        encoding=encoding,
        delimiter=params.get("delimiter", ","),
        limit=PREVIEW_ROWS + 1,
    )
    width = len(params.get("columns", []))
    return ImportPreview(
        header=params.get("columns", []),
        rows=[(row + [""] * width)[:width] for row in rows[1:]],
        suggested_encoding=params.get("suggested_encoding", DEFAULT_ENCODING),
    )


def _header_key(name: str) -> str:
    return " ".join(re.sub(r"[_\-.]+", " ", name.lower()).split())


def import_mapping_guess(*, header: list[str], custom_fields: Iterable[CustomField]) -> list[str]:
    """A target per column from its header (email, first name, custom field key or label)."""
    by_name: dict[str, str] = {}
    for target, names in _HEADER_GUESSES.items():
        for name in names:
            by_name[_header_key(name)] = target
    for custom_field in custom_fields:
        target = FIELD_PREFIX + custom_field.key
        by_name.setdefault(_header_key(custom_field.key), target)
        by_name.setdefault(_header_key(custom_field.label), target)
    mapping: list[str] = []
    used: set[str] = set()
    for column in header:
        target = by_name.get(_header_key(column), IGNORE)
        if target in used:
            target = IGNORE
        used.add(target)
        mapping.append(target)
    return mapping


def import_mapping_check(*, mapping: list[str], account: Account) -> list[str]:
    """What is wrong with a mapping, in a creator's words (empty when it can be imported)."""
    problems = []
    if EMAIL not in mapping:
        problems.append(
            "No column is mapped to the email address. Choose the column that holds the "
            "addresses; a file without one cannot be imported."
        )
    chosen = [target for target in mapping if target != IGNORE]
    if len(chosen) != len(set(chosen)):
        problems.append("Each kind of value can come from one column only.")
    keys = {target[len(FIELD_PREFIX) :] for target in chosen if target.startswith(FIELD_PREFIX)}
    known = set(
        CustomField.objects.filter(account=account, key__in=keys).values_list("key", flat=True)
    )
    for key in sorted(keys - known):
        problems.append(f"There is no custom field “{key}”.")
    unknown = {t for t in chosen if t not in TARGET_LABELS and not t.startswith(FIELD_PREFIX)}
    for target in sorted(unknown):
        problems.append(f"“{target}” is not something a column can be imported as.")
    return problems


def import_job_start(
    *,
    job: Job,
    mapping: list[str],
    tag_names: list[str],
    encoding: str,
    consent_by: str,
    enqueue: bool = True,
    sequence: Sequence | None = None,
) -> bool:
    """Saves the creator's choices and queues the import (unless the caller runs it itself).
    `sequence` (of the job's account): everyone in the file is added to it.

    False if the job was already started: a second submit of the same form queues nothing.
    """
    if sequence is not None and sequence.account_id != job.account_id:
        raise ValueError("The sequence belongs to another account")
    if encoding not in ENCODINGS:
        raise ValueError(f"Unknown encoding {encoding!r}")
    params = {
        **job.params,
        "mapping": mapping,
        "tags": tag_names,
        "encoding": encoding,
        "consent_by": consent_by,
        "sequence": sequence.pk if sequence else None,
        "sequence_name": sequence.name if sequence else "",
    }
    with transaction.atomic():
        started = Job.objects.filter(
            pk=job.pk, state=Job.State.QUEUED, params__mapping__isnull=True
        ).update(params=params)
        if started and enqueue:
            run_import.delay_on_commit(job.id)
    job.params = params
    return bool(started)


# --- Reading the file back ---------------------------------------------------------------------


def _stored_chunks(job: Job) -> Iterator[bytes]:
    """The stored file, one chunk (one query) at a time."""
    count = job.params.get("chunks", 0)
    for seq in range(count):
        data = (
            ImportFileChunk.objects.filter(job=job, seq=seq).values_list("data", flat=True).first()
        )
        if data is None:
            raise ImportFileError(
                "Part of the uploaded file is missing (it may have been imported and removed "
                "already). Upload the file again."
            )
        yield bytes(data)


def file_chunks(source) -> Iterator[bytes]:
    """A binary file, CHUNK_SIZE bytes at a time."""
    while chunk := source.read(CHUNK_SIZE):
        yield chunk


@dataclass
class _LineReader:
    """Physical lines of the file for the csv module, decoded, counting what was read.

    A line that cannot be decoded, or holds a NUL, is still passed on (with replacement
    characters, so quoting stays in step) and recorded in `bad_lines`; the record it belongs to
    is then rejected as a whole.
    """

    chunks: Iterable[bytes]
    encoding: str
    bytes_read: int = 0
    bad_lines: deque = field(default_factory=deque)

    def __iter__(self) -> Iterator[str]:
        line_no = 0
        carry = b""
        first = True
        for chunk in self.chunks:
            self.bytes_read += len(chunk)
            data = carry + chunk if carry else chunk
            if first:
                data = data.removeprefix(codecs.BOM_UTF8)
                first = False
            cut = data.rfind(b"\n") + 1 or data.rfind(b"\r", 0, len(data) - 1) + 1
            if not cut:
                carry = data
                continue
            carry = data[cut:]
            lines = self._decode(data[:cut], line_no)
            line_no += len(lines)
            yield from lines
        if carry:
            yield from self._decode(carry, line_no)

    def _decode(self, block: bytes, line_no: int) -> list[str]:
        try:
            text = block.decode(self.encoding)
        except UnicodeDecodeError:
            text = None
        if text is not None and "\x00" not in text and not _EXOTIC_LINE_BREAKS.search(text):
            return text.splitlines(keepends=True)
        lines = []
        for number, raw in enumerate(block.splitlines(keepends=True), start=line_no + 1):
            try:
                line = raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                line = raw.decode(self.encoding, "replace")
                self.bad_lines.append((number, self._decode_problem(exc), line))
            else:
                if "\x00" in line:
                    line = line.replace("\x00", "")
                    self.bad_lines.append((number, "contains a NUL character", line))
            lines.append(line)
        return lines

    def _decode_problem(self, exc: UnicodeDecodeError) -> str:
        byte = exc.object[exc.start]
        name = ENCODINGS.get(self.encoding, self.encoding)
        hint = (
            " The file may be in Windows-1252 (Latin-1): choose that encoding and import again."
            if self.encoding == "utf-8"
            else ""
        )
        return f"not valid {name} (byte 0x{byte:02X} at position {exc.start + 1}).{hint}"


# --- Running the import ------------------------------------------------------------------------

ProgressCallback = Callable[[int, "int | None", str], None]


@dataclass
class _Columns:
    email: int
    first_name: int | None
    state: int | None
    tags: int | None
    time_zone: int | None
    fields: list[tuple[int, str]]  # (column index, custom field key)

    @classmethod
    def from_mapping(cls, mapping: list[str]) -> _Columns:
        index = {target: i for i, target in enumerate(mapping) if target != IGNORE}
        return cls(
            email=index[EMAIL],
            first_name=index.get(FIRST_NAME),
            state=index.get(STATE),
            tags=index.get(TAGS),
            time_zone=index.get(TIME_ZONE),
            fields=[
                (i, target[len(FIELD_PREFIX) :])
                for i, target in enumerate(mapping)
                if target.startswith(FIELD_PREFIX)
            ],
        )


@dataclass
class _Staging:
    """The TEMP tables of one import run, on the current connection."""

    field_count: int

    rows = "ck_import_rows"
    errors = "ck_import_errors"
    # The taggings the import made, when a tag may add to a sequence.
    tagged = "ck_import_tagged"

    def create(self, cursor) -> None:
        self.drop(cursor)
        field_columns = "".join(f", f{i} text" for i in range(self.field_count))
        cursor.execute(
            f"CREATE TEMP TABLE {self.rows} (line bigint NOT NULL, email text NOT NULL, "
            f"first_name text, state text, tags text, time_zone text{field_columns})"
        )
        cursor.execute(
            f"CREATE TEMP TABLE {self.errors} "
            "(line bigint, column_name text, value text, message text NOT NULL)"
        )
        cursor.execute(f"CREATE TEMP TABLE {self.tagged} (tag_id bigint, subscriber_id bigint)")

    def drop(self, cursor) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {self.rows}, {self.errors}, {self.tagged}")

    def copy_rows(self, cursor, buffer: io.StringIO) -> None:
        field_columns = "".join(f", f{i}" for i in range(self.field_count))
        buffer.seek(0)
        cursor.copy_expert(
            f"COPY {self.rows} (line, email, first_name, state, tags, time_zone{field_columns}) "
            "FROM STDIN WITH (FORMAT csv)",
            buffer,
        )

    def copy_errors(self, cursor, buffer: io.StringIO) -> None:
        buffer.seek(0)
        cursor.copy_expert(
            f"COPY {self.errors} (line, column_name, value, message) FROM STDIN WITH (FORMAT csv)",
            buffer,
        )


@dataclass
class _ParseResult:
    rows: int = 0
    errors: int = 0
    stored_errors: int = 0


def import_job_run(
    *, job_id: int, source=None, on_progress: ProgressCallback | None = None
) -> Job | None:
    """Imports the CSV of an import Job; a finished job is left alone, so re-running is safe.

    1. Claim: queued or running (a re-run after a crash) becomes running; anything else returns.
    2. Parse the file (the stored chunks, or `source`, a local binary file) row by row, checking
       each one, and COPY valid rows and row errors into TEMP tables in batches, updating the
       job's progress after each batch (autocommit, so the progress bar sees it).
    3. Merge in one transaction (`_merge`), which also marks the job done and drops the file.
    A file that cannot be imported at all marks the job failed with the reason; nothing changes.
    """
    claimed = Job.objects.filter(
        pk=job_id, kind=Job.Kind.IMPORT, state__in=[Job.State.QUEUED, Job.State.RUNNING]
    ).update(
        state=Job.State.RUNNING,
        started_at=timezone.now(),
        processed=0,
        error_count=0,
        message="Reading the file…",
    )
    if not claimed:
        return None
    job = Job.objects.select_related("account", "created_by").get(pk=job_id)
    progress = on_progress or (lambda processed, total, message: None)
    staging = None
    try:
        mapping = job.params.get("mapping")
        if not mapping or EMAIL not in mapping:
            raise ImportFileError(
                "No column is mapped to the email address, so nothing can be imported."
            )
        problems = import_mapping_check(mapping=mapping, account=job.account)
        if problems:
            raise ImportFileError(" ".join(problems))
        columns = _Columns.from_mapping(mapping)
        staging = _Staging(field_count=len(columns.fields))
        with connection.cursor() as cursor:
            staging.create(cursor)
            chunks = file_chunks(source) if source is not None else _stored_chunks(job)
            parsed = _parse_into_staging(
                job=job,
                chunks=chunks,
                columns=columns,
                staging=staging,
                cursor=cursor,
                progress=progress,
            )
            _merge(job=job, columns=columns, staging=staging, parsed=parsed, cursor=cursor)
    except ImportFileError as exc:
        _fail(job, str(exc))
    except Exception:
        _fail(job, "The import stopped because of an unexpected error; nothing was imported.")
        raise
    finally:
        # On a lost connection the TEMP tables are gone with it: nothing to clean up.
        if staging is not None and not connection.needs_rollback:
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                staging.drop(cursor)
    job.refresh_from_db()
    progress(job.processed, job.total, job.message)
    return job


def _fail(job: Job, message: str) -> None:
    Job.objects.filter(pk=job.pk).exclude(state=Job.State.DONE).update(
        state=Job.State.FAILED, message=message, finished_at=timezone.now()
    )


def _parse_into_staging(
    *, job: Job, chunks, columns: _Columns, staging: _Staging, cursor, progress
) -> _ParseResult:
    """Step 2 of import_job_run: the hot loop, about three microseconds per row.

    Rows are checked with cheap tests first; only a row that fails one goes through the
    functions that name the problem. Valid rows are buffered and COPYed BATCH_ROWS at a time.
    """
    params = job.params
    encoding = params.get("encoding", DEFAULT_ENCODING)
    if encoding not in ENCODINGS:
        raise ImportFileError(f"Unknown encoding {encoding!r}.")
    lines = _LineReader(chunks=chunks, encoding=encoding)
    bad_lines = lines.bad_lines
    reader = csv.reader(lines, delimiter=params.get("delimiter", ","), strict=True)
    size = params.get("size") or 0
    result = _ParseResult()
    valid: list[tuple] = []
    problems: list[tuple[int, str, str, str]] = []
    column_names = _column_names(params.get("columns", []))

    def error(line: int, value: str, message: str, column: int | None = None) -> None:
        result.errors += 1
        if result.stored_errors < MAX_STORED_ERRORS:
            result.stored_errors += 1
            name = "" if column is None else column_names[column]
            problems.append((line, name, value[:MAX_ERROR_VALUE_LENGTH], message))

    def flush(rows: int, *, last: bool = False) -> None:
        result.rows = rows
        for rows_to_copy, copy in ((valid, staging.copy_rows), (problems, staging.copy_errors)):
            if rows_to_copy:
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="\n").writerows(rows_to_copy)
                copy(cursor, buffer)
                rows_to_copy.clear()
        figures = {"processed": rows, "error_count": result.errors}
        if last:
            # One UPDATE for the final count and the next step.
            figures.update(total=rows, message="Merging into your list…")
        else:
            figures["total"] = max(rows, int(rows * size / lines.bytes_read)) if size else None
        # Only while running: a second run racing a finished one must not overwrite its figures.
        Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(**figures)
        progress(rows, figures["total"], figures.get("message", ""))

    header = None
    width = len(params.get("columns", []))
    email_i, name_i, state_i, tags_i, zone_i = (
        columns.email,
        columns.first_name,
        columns.state,
        columns.tags,
        columns.time_zone,
    )
    field_indexes = [index for index, _ in columns.fields]
    fields = columns.fields
    simple_email = SIMPLE_EMAIL.fullmatch
    add = valid.append
    rows = 0
    end = 0
    next_flush = BATCH_ROWS
    records = iter(reader)
    while True:
        if rows >= next_flush:
            flush(rows)
            next_flush = rows + BATCH_ROWS
        start = end + 1
        try:
            row = next(records)
        except StopIteration:
            break
        except csv.Error as exc:
            end = reader.line_num
            if header is None:
                raise ImportFileError(f"The header row is not valid CSV ({exc}).") from None
            rows += 1
            error(start, "", _malformed_message(exc, start, end))
            continue
        end = reader.line_num
        if bad_lines:
            problem = _bad_line_in(bad_lines, start, end)
            if problem:
                if header is None:
                    raise ImportFileError(f"The header row is {problem[1]}")
                rows += 1
                error(start, problem[2].rstrip("\r\n"), f"line {problem[0]}: {problem[1]}")
                continue
        if not row:
            continue
        if header is None:
            header = row
            if len(header) != width:
                raise ImportFileError(
                    "The file's header row changed since it was uploaded; upload it again."
                )
            continue
        rows += 1
        if len(row) != width and not _only_empty_extra_cells(row, width):
            error(start, row[email_i] if len(row) > email_i else "", _ragged_message(row, width))
            continue
        raw = row[email_i]
        email = raw.strip()
        if len(email) <= MAX_EMAIL_LENGTH and simple_email(email):
            email = email.lower()
        else:
            email, problem = _email_slow_path(raw)
            if problem:
                error(start, raw, problem, email_i)
                continue
        first_name = None
        if name_i is not None:
            first_name = row[name_i].strip()
            if first_name and (
                len(first_name) > MAX_FIRST_NAME_LENGTH
                or first_name[0] == "'"
                or "\n" in first_name
                or "\r" in first_name
            ):
                first_name, problem = _first_name_checked(first_name)
                if problem:
                    error(start, raw, problem, name_i)
                    continue
        state = tags = zone = None
        if state_i is not None or tags_i is not None or zone_i is not None:
            state, tags, zone, problem = _state_tags_and_zone_checked(row, state_i, tags_i, zone_i)
            if problem:
                error(start, raw, problem[1], problem[0])
                continue
        if field_indexes:
            values = [row[index].strip() for index in field_indexes]
            problem = None
            for value in values:
                if len(value) > MAX_FIELD_VALUE_LENGTH or value[:1] == "'":
                    # It checks and un-guards every value of the row: one call is enough.
                    problem = _field_values_checked(values, fields)
                    break
            if problem:
                error(start, raw, problem[1], problem[0])
                continue
            add((start, email, first_name, state, tags, zone, *values))
        else:
            add((start, email, first_name, state, tags, zone))
    if header is None:
        raise ImportFileError("The file has no header row. The first line must name the columns.")
    flush(rows, last=True)
    return result


def _bad_line_in(bad_lines: deque, start: int, end: int) -> tuple | None:
    """The first undecodable line among lines start..end of a record, consuming those seen."""
    while bad_lines and bad_lines[0][0] < start:
        bad_lines.popleft()
    found = bad_lines[0] if bad_lines and bad_lines[0][0] <= end else None
    while bad_lines and bad_lines[0][0] <= end:
        bad_lines.popleft()
    return found


def _column_names(header: list[str]) -> list[str]:
    """How problems name each column: as the file's header does, or by position if it is blank."""
    return [
        name.strip()[:MAX_ERROR_VALUE_LENGTH] or f"Column {n}" for n, name in enumerate(header, 1)
    ]


def _ragged_message(row: list[str], width: int) -> str:
    fewer_or_more = "fewer" if len(row) < width else "more"
    return (
        f"This row has {fewer_or_more} values than the header has columns ({len(row)} instead "
        f"of {width}); check for a missing or extra delimiter."
    )


def _first_name_checked(first_name: str) -> tuple[str, str | None]:
    """The first name without an export's formula guard, or the problem with it."""
    if len(first_name) > MAX_FIRST_NAME_LENGTH:
        return first_name, f"The first name is longer than {MAX_FIRST_NAME_LENGTH} characters."
    if "\n" in first_name or "\r" in first_name:
        return first_name, "The first name contains a line break."
    return _formula_guard_removed(first_name), None


def _state_tags_and_zone_checked(
    row: list[str], state_i: int | None, tags_i: int | None, zone_i: int | None
) -> tuple[str | None, str | None, str | None, tuple[int, str] | None]:
    """(state, tags, time zone, problem) of a row, the problem as (column index, message);
    empty cells are None."""
    state = tags = zone = None
    if state_i is not None:
        state = row[state_i].strip().lower() or None
        if state is not None and state not in IMPORTABLE_STATES:
            message = (
                f"“{row[state_i][:40]}” is not a state; use one of "
                f"{', '.join(Subscriber.State.values)}."
            )
            return None, None, None, (state_i, message)
    if tags_i is not None:
        tags = row[tags_i] or None
        if tags and len(tags) > MAX_FIELD_VALUE_LENGTH:
            message = f"The tags are longer than {MAX_FIELD_VALUE_LENGTH:,} characters."
            return None, None, None, (tags_i, message)
    if zone_i is not None:
        zone = row[zone_i].strip() or None
        if zone is not None and not is_time_zone(zone):
            message = (
                f"“{row[zone_i][:40]}” is not a time zone name such as Europe/Paris or "
                "America/New_York."
            )
            return None, None, None, (zone_i, message)
    return state, tags, zone, None


def _field_values_checked(
    values: list[str], fields: list[tuple[int, str]]
) -> tuple[int, str] | None:
    """The problem with custom field values as (column index, message), if any; removes formula
    guards in place."""
    for n, value in enumerate(values):
        if len(value) > MAX_FIELD_VALUE_LENGTH:
            message = (
                f"The value of “{fields[n][1]}” is longer than {MAX_FIELD_VALUE_LENGTH:,} "
                "characters."
            )
            return fields[n][0], message
        values[n] = _formula_guard_removed(value)
    return None


def _only_empty_extra_cells(row: list[str], width: int) -> bool:
    return len(row) > width and not any(cell.strip() for cell in row[width:])


def _malformed_message(exc: csv.Error, start: int, end: int) -> str:
    lines = f"line {start}" if start == end else f"lines {start}–{end}"
    if "unexpected end of data" in str(exc):
        return (
            f"A quoted value that starts on line {start} is never closed, so {lines} could not "
            'be read; check for a missing closing quote (").'
        )
    return f"Malformed CSV ({exc}); {lines} could not be read."


def _email_slow_path(raw: str) -> tuple[str, str | None]:
    try:
        return normalize_email(_formula_guard_removed(raw.strip())), None
    except ValidationError as exc:
        return "", exc.messages[0]


def _formula_guard_removed(value: str) -> str:
    """Undoes csv_safety.safe_cell, so that an exported file imports back as it was."""
    if value[:1] == "'" and safe_cell(value[1:]) == value:
        return value[1:]
    return value


def _fields_sql(columns: _Columns) -> tuple[str, dict[str, str]]:
    """SQL building the JSONB of custom field values from the staging columns (empty cells left
    out), and its parameters (the keys, as %(field_key_<n>)s)."""
    if not columns.fields:
        return "'{}'::jsonb", {}
    parts = []
    params = {f"field_key_{n}": key for n, (_, key) in enumerate(columns.fields)}
    # jsonb_build_object takes at most 100 arguments.
    for offset in range(0, len(params), 50):
        group = range(offset, min(offset + 50, len(params)))
        parts.append(
            "jsonb_build_object(" + ", ".join(f"%(field_key_{n})s, r.f{n}" for n in group) + ")"
        )
    return "jsonb_strip_nulls(" + " || ".join(parts) + ")", params


def _merge(*, job: Job, columns: _Columns, staging: _Staging, parsed: _ParseResult, cursor) -> None:
    """Step 3 of import_job_run, in one transaction with the job row locked.

    1. Lock the job; if another run finished it meanwhile, stop (roll back).
    2. Later copies of an address already in the file are row errors ("duplicate of line X").
    3. New addresses whose hash is in Suppression are row errors, and skipped.
    4. Existing subscribers whose first name or custom fields differ from the file's are
       updated (never their state); then the other addresses are inserted, in email order (the
       unique index fills in order). Two statements rather than one upsert: ON CONFLICT DO
       UPDATE costs half as much again per row, and rewrites unchanged rows. Each custom field
       value set or changed is a field_changed event for rules and automations, written by the
       same statement (not an unconfirmed subscriber's: theirs count when they confirm).
    5. Tag everyone in the file with the chosen tags and the tags of their own row, each new
       tagging with its tag_added event; those a tag was added to enter the sequences it adds
       to. Everyone in the file enters the sequence chosen, if any (the unsubscribed, bounced
       and complained are refused), each one added with its sequence_subscribed event.
    6. Store the row errors, the summary, mark the job done, and delete the file.
    """
    account_id = job.account_id
    now = timezone.now()
    subscribers = Subscriber._meta.db_table
    rows, errors = staging.rows, staging.errors
    email_column = _column_names(job.params.get("columns", []))[columns.email]
    with transaction.atomic():
        cursor.execute(f"SELECT state FROM {Job._meta.db_table} WHERE id = %s FOR UPDATE", [job.pk])
        if cursor.fetchone()[0] != Job.State.RUNNING:
            return
        sequence = None
        if job.params.get("sequence"):
            sequence = Sequence.objects.filter(
                account_id=account_id, pk=job.params["sequence"]
            ).first()
            if sequence is None:
                raise ImportFileError(
                    f"The sequence “{job.params.get('sequence_name') or '?'}” was deleted, so "
                    "nothing was imported. Start the import again."
                )
        cursor.execute("SET LOCAL work_mem = '256MB'")

        cursor.execute(
            f"""
            WITH firsts AS (
                SELECT email, min(line) AS line FROM {rows} GROUP BY email HAVING count(*) > 1
            ), duplicates AS (
                DELETE FROM {rows} AS r USING firsts AS f
                WHERE r.email = f.email AND r.line > f.line
                RETURNING r.line, r.email, f.line AS first_line
            )
            INSERT INTO {errors} (line, column_name, value, message)
            SELECT line, %s, email,
                   'Duplicate of line ' || first_line || ' (the first one was imported).'
            FROM duplicates
            """,
            [email_column],
        )
        duplicates = cursor.rowcount

        suppressed = 0
        if Suppression.objects.filter(account_id=account_id).exists():
            cursor.execute(
                f"""
                WITH hits AS (
                    DELETE FROM {rows} AS r USING {Suppression._meta.db_table} AS sp
                    WHERE sp.account_id = %(account)s
                      AND sp.email_hash = encode(sha256(convert_to(r.email, 'UTF8')), 'hex')
                      AND NOT EXISTS (
                          SELECT 1 FROM {subscribers} AS s
                          WHERE s.account_id = %(account)s AND s.email = r.email
                      )
                    RETURNING r.line, r.email
                )
                INSERT INTO {errors} (line, column_name, value, message)
                SELECT line, %(column)s, email, %(message)s FROM hits
                """,
                {
                    "account": account_id,
                    "column": email_column,
                    "message": "This address was deleted earlier and is suppressed; add it by "
                    "hand if they asked to come back.",
                },
            )
            suppressed = cursor.rowcount

        # Whether the account held anyone unsubscribed, bounced or complained before this import;
        # if not, there is nobody to count as "kept" (and no join over the whole file to run).
        had_suppressed = (
            SubscriberCount.objects.filter(account_id=account_id, state__in=_SUPPRESSED_STATES)
            .values("state")
            .annotate(total=Sum("count"))
            .filter(total__gt=0)
            .exists()
        )
        fields_sql, field_params = _fields_sql(columns)
        consent_by = job.params.get("consent_by") or (
            job.created_by.email if job.created_by else "the command line"
        )
        cursor.execute(f"ANALYZE {rows}")
        # Each value that changes is a field_changed event, but an unconfirmed subscriber's: all
        # theirs count when they confirm (subscribers.signup_forms.signup). The rows are locked
        # as they are read, so the values compared are those the UPDATE replaces. (As every
        # outbox write, only the events something of the account listens for are kept.)
        field_events = events_insert_sql(
            kind=EventKind.FIELD_CHANGED,
            rows_sql="""
                SELECT %(account)s::bigint, NULL::bigint, m.id, f.key
                FROM matched AS m CROSS JOIN jsonb_each(m.fields) AS f
                WHERE m.state <> %(unconfirmed)s
                  AND (m.old_fields -> f.key) IS DISTINCT FROM f.value
            """,
        )
        new_field_events = events_insert_sql(
            kind=EventKind.FIELD_CHANGED,
            rows_sql="""
                SELECT %(account)s::bigint, NULL::bigint, c.id, f.key
                FROM created AS c CROSS JOIN jsonb_object_keys(c.fields) AS f(key)
                WHERE c.state <> %(unconfirmed)s
            """,
        )
        # Kit's subscriber.created and subscriber.activated (outgoing webhooks).
        created_events = events_insert_sql(
            kind=EventKind.CREATED,
            rows_sql="SELECT %(account)s::bigint, NULL::bigint, c.id, '' FROM created AS c",
        )
        activated_events = events_insert_sql(
            kind=EventKind.ACTIVATED,
            rows_sql="""
                SELECT %(account)s::bigint, NULL::bigint, c.id, '' FROM created AS c
                WHERE c.state = 'active'
            """,
        )
        cursor.execute(
            f"""
            WITH matched AS (
                SELECT s.id, s.state, s.fields AS old_fields, r.first_name, r.time_zone, r.fields
                FROM {subscribers} AS s
                JOIN (SELECT email, first_name, time_zone, {fields_sql} AS fields
                      FROM {rows} AS r) AS r
                  ON s.account_id = %(account)s AND s.email = r.email
                WHERE r.first_name <> s.first_name OR NOT s.fields @> r.fields
                   OR r.time_zone <> s.time_zone
                FOR UPDATE OF s
            ), changed AS (
                UPDATE {subscribers} AS s SET
                    first_name = coalesce(m.first_name, s.first_name),
                    fields = s.fields || m.fields,
                    time_zone = coalesce(m.time_zone, s.time_zone),
                    updated_at = %(now)s
                FROM matched AS m WHERE s.id = m.id
                RETURNING s.id
            ), events AS ({field_events})
            SELECT count(*) FROM changed
            """,
            {
                **field_params,
                "account": account_id,
                "now": now,
                "unconfirmed": Subscriber.State.UNCONFIRMED.value,
            },
        )
        updated = cursor.fetchone()[0]
        cursor.execute(
            f"""
            WITH created AS (
                INSERT INTO {subscribers} (
                    account_id, email, first_name, fields, time_zone, state, source, consent_at,
                    consent_method, created_at, updated_at, confirmed_at, unsubscribed_at
                )
                SELECT %(account)s, r.email, coalesce(r.first_name, ''), {fields_sql},
                       coalesce(r.time_zone, ''), coalesce(r.state, 'active'), %(source)s,
                       %(now)s, %(consent_method)s, %(now)s, %(now)s,
                       CASE WHEN coalesce(r.state, 'active') = 'active' THEN %(now)s END,
                       CASE WHEN r.state = 'unsubscribed' THEN %(now)s END
                FROM {rows} AS r
                WHERE NOT EXISTS (
                    SELECT 1 FROM {subscribers} AS x
                    WHERE x.account_id = %(account)s AND x.email = r.email
                )
                ORDER BY r.email
                ON CONFLICT (account_id, email) DO NOTHING
                RETURNING id, state, fields
            ), events AS ({new_field_events}),
            created_events AS ({created_events}), activated_events AS ({activated_events})
            SELECT count(*) FROM created
            """,
            {
                **field_params,
                "account": account_id,
                "source": f"import: {job.params.get('file_name', '')}"[:255],
                "now": now,
                "consent_method": f"import by {consent_by}"[:255],
                "unconfirmed": Subscriber.State.UNCONFIRMED.value,
            },
        )
        created = cursor.fetchone()[0]
        kept = 0
        if had_suppressed:
            cursor.execute(
                f"""
                SELECT count(*) FROM {subscribers} AS s JOIN {rows} AS r ON r.email = s.email
                WHERE s.account_id = %s AND s.state IN %s AND s.created_at < %s
                """,
                [account_id, _SUPPRESSED_STATES, now],
            )
            kept = cursor.fetchone()[0]
        _tag_everyone(job=job, columns=columns, staging=staging, cursor=cursor, now=now)
        in_file = f"""
            SELECT s.id FROM {staging.rows} AS r
            JOIN {subscribers} AS s ON s.account_id = %(import_account)s AND s.email = r.email
        """
        enrolled = None
        if sequence is not None:
            enrolled = subscribers_enrol(
                sequence=sequence,
                source_sql=in_file,
                source_params={"import_account": account_id},
                now=now,
                total=parsed.rows - parsed.errors - duplicates - suppressed,
            )

        errors_total = parsed.errors + duplicates + suppressed
        JobError.objects.filter(job=job).delete()
        cursor.execute(
            f"""
            INSERT INTO {JobError._meta.db_table} (job_id, line, column_name, value, message)
            SELECT %s, line, coalesce(column_name, ''), coalesce(value, ''), message
            FROM {errors}
            ORDER BY line LIMIT %s
            """,
            [job.pk, MAX_STORED_ERRORS],
        )
        stored_errors = cursor.rowcount
        summary = {
            "rows": parsed.rows,
            "created": created,
            "updated": updated,
            "unchanged": parsed.rows - parsed.errors - duplicates - suppressed - created - updated,
            "kept unsubscribed, bounced or complained": kept,
            "errors": errors_total,
        }
        if enrolled is not None:
            summary.update(
                {
                    f"added to “{sequence.name}”": enrolled.added,
                    "restarted at its first email": enrolled.restarted,
                    "refused (unsubscribed, bounced or complained, or in it already)": (
                        enrolled.refused
                    ),
                }
            )
        Job.objects.filter(pk=job.pk).update(
            state=Job.State.DONE,
            processed=parsed.rows,
            total=parsed.rows,
            error_count=errors_total,
            summary=summary,
            message=_summary_sentence(summary, stored_errors=stored_errors),
            finished_at=timezone.now(),
        )
        ImportFileChunk.objects.filter(job=job).delete()


def _tag_everyone(*, job: Job, columns: _Columns, staging: _Staging, cursor, now) -> None:
    """Step 5 of _merge: the chosen tags, and each row's own tags (created if missing), each
    tagging made with its tag_added event; then the sequences the tags newly added add to."""
    account = job.account
    triggered = triggered_tag_ids(account_id=account.id)
    events = events_insert_sql(
        kind=EventKind.TAG_ADDED,
        rows_sql="SELECT account_id, tag_id, subscriber_id, '' FROM added",
    )

    def tagging(insert_sql: str) -> str:
        """The INSERT with the events of the taggings it made and, when a tag of the account
        adds to a sequence, those taggings kept aside."""
        kept = (
            f"INSERT INTO {staging.tagged} (tag_id, subscriber_id) "
            "SELECT tag_id, subscriber_id FROM added"
            if triggered
            else "SELECT 1"
        )
        return f"""
            WITH added AS ({insert_sql} RETURNING account_id, tag_id, subscriber_id),
                 events AS ({events})
            {kept}
        """

    subscribers, taggings = Subscriber._meta.db_table, Tagging._meta.db_table
    tag_ids = [
        tag_get_or_create(account=account, name=name).id
        for name in job.params.get("tags", [])
        if name.strip()
    ]
    if tag_ids:
        cursor.execute(
            tagging(
                f"""
                INSERT INTO {taggings} (account_id, tag_id, subscriber_id, created_at)
                SELECT %s, t.id, s.id, %s
                FROM {staging.rows} AS r
                JOIN {subscribers} AS s ON s.account_id = %s AND s.email = r.email
                CROSS JOIN unnest(%s::bigint[]) AS t(id)
                ON CONFLICT (tag_id, subscriber_id) DO NOTHING
                """
            ),
            [account.id, now, account.id, tag_ids],
        )
    if columns.tags is not None:
        _tag_from_column(account=account, staging=staging, cursor=cursor, now=now, tagging=tagging)
    if triggered:
        tags_added_enrol(
            tag_ids=triggered,
            added_sql=f"SELECT tag_id, subscriber_id FROM {staging.tagged}",
            params={},
            now=now,
        )


def _tag_from_column(*, account: Account, staging: _Staging, cursor, now, tagging) -> None:
    """The tags of each row's own tags cell, created if missing."""
    subscribers, taggings, tags = (
        Subscriber._meta.db_table,
        Tagging._meta.db_table,
        Tag._meta.db_table,
    )
    # The same clean-up as tag_get_or_create: spaces collapsed, at most 100 characters.
    names = f"""
        SELECT r.email,
               left(regexp_replace(btrim(n.name), '\\s+', ' ', 'g'), {MAX_TAG_NAME_LENGTH}) AS name
        FROM {staging.rows} AS r CROSS JOIN LATERAL unnest(string_to_array(r.tags, ',')) AS n(name)
        WHERE r.tags IS NOT NULL AND btrim(n.name) <> ''
    """
    cursor.execute(
        f"""
        INSERT INTO {tags} (account_id, name, subscriber_count, created_at)
        SELECT DISTINCT ON (lower(name)) %s, name, 0, %s FROM ({names}) AS named
        ORDER BY lower(name), name
        ON CONFLICT (account_id, lower(name)) DO NOTHING
        """,
        [account.id, now],
    )
    cursor.execute(
        tagging(
            f"""
            INSERT INTO {taggings} (account_id, tag_id, subscriber_id, created_at)
            SELECT DISTINCT %s, t.id, s.id, %s::timestamptz
            FROM ({names}) AS named
            JOIN {subscribers} AS s ON s.account_id = %s AND s.email = named.email
            JOIN {tags} AS t ON t.account_id = %s AND lower(t.name) = lower(named.name)
            ON CONFLICT (tag_id, subscriber_id) DO NOTHING
            """
        ),
        [account.id, now, account.id, account.id],
    )


def _summary_sentence(summary: dict, *, stored_errors: int) -> str:
    sentence = (
        f"{summary['rows']:,} row{'s' if summary['rows'] != 1 else ''} read: "
        f"{summary['created']:,} new, {summary['updated']:,} updated"
    )
    if summary["unchanged"]:
        sentence += f", {summary['unchanged']:,} unchanged"
    kept = summary["kept unsubscribed, bounced or complained"]
    if kept:
        sentence += f" ({kept:,} kept unsubscribed, bounced or complained)"
    if summary["errors"]:
        sentence += f", {summary['errors']:,} with problems"
        if stored_errors < summary["errors"]:
            sentence += f" (the first {stored_errors:,} of them are kept)"
    return sentence + "."
