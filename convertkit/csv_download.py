"""CSV files the app hands out: cells a spreadsheet shows as text, streamed downloads, and a
background job's error file."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from django.http import StreamingHttpResponse

from convertkit.models import Job

# Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """A cell that a spreadsheet shows as text: formula-looking values get a leading apostrophe."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_TRIGGERS):
        return "'" + text
    return text


class _Echo:
    """A file-like object whose write() hands back the line csv.writer formatted."""

    def write(self, value: str) -> str:
        return value


def csv_download(rows: Iterable[Iterable[object]], *, filename: str) -> StreamingHttpResponse:
    """A CSV attachment streamed row by row, so millions of rows never sit in memory."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def job_error_rows(*, job: Job) -> Iterator[list[str]]:
    """The header, then a job's rejected rows by line: the error file of the browser and the
    import command alike (a rejected value is the creator's own data: it may look like a formula)."""
    yield ["line", "column", "value", "error"]
    for line, column_name, value, message in (
        job.errors.order_by("line", "id")
        .values_list("line", "column_name", "value", "message")
        .iterator(chunk_size=2000)
    ):
        line_text = "" if line is None else str(line)
        yield [line_text, safe_cell(column_name), safe_cell(value), message]
