"""CSV import (upload, then map columns and choose tags) and the streamed CSV export."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from convertkit.csv_download import csv_download
from convertkit.models import Job
from convertkit.tenancy import account_required, get_for_account
from convertkit.uploads import SizeLimitedUploadHandler, declared_too_large
from sequences.entry import account_sequences
from sequences.models import Sequence
from subscribers.csv import exporter, importer
from subscribers.models import CustomField, Subscriber, Tag
from subscribers.selectors import SubscriberFilter
from subscribers.validation import tag_names_parse

ACCEPTED_EXTENSIONS = (".csv", ".txt", ".tsv")
# An upload whose columns were not mapped after this long is deleted at the next upload.
ABANDONED_UPLOAD_AGE = timedelta(days=1)


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,.tsv,text/csv,text/plain"}),
    )

    def __init__(self, *args, max_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = (
            "One subscriber per row, with a header row naming the columns (for example "
            f"email,first_name). Up to {importer.size_text(max_bytes)}. In Excel or Google Sheets "
            "choose File › Save as (or Download) › CSV."
        )
        self.fields["file"].widget.attrs["data-max-bytes"] = str(max_bytes)

    def clean_file(self):
        uploaded = self.cleaned_data["file"]
        if not uploaded.name.lower().endswith(ACCEPTED_EXTENSIONS):
            raise forms.ValidationError(
                "Choose a .csv file. From a spreadsheet, use File › Save as › CSV first."
            )
        return uploaded


def _too_large_message(max_bytes: int) -> str:
    return (
        f"The file is larger than {importer.size_text(max_bytes)}. Split it into smaller files, "
        "or ask the operator to import it with manage.py import_subscribers."
    )


@csrf_exempt
@account_required
def import_upload(request):
    """Step 1: the file. The size limit is enforced while the upload streams in."""
    max_bytes = settings.IMPORT_MAX_BYTES
    handler = SizeLimitedUploadHandler(request, max_bytes)
    if request.method == "POST":
        if declared_too_large(request, max_bytes):
            # Refused before reading a byte of the body.
            form = ImportUploadForm(max_bytes=max_bytes)
            return _upload_refused(request, form, _too_large_message(max_bytes))
        # Must happen before anything reads request.POST, hence CSRF is checked after it.
        request.upload_handlers.insert(0, handler)
    return _import_upload(request, handler, max_bytes)


@csrf_protect
def _import_upload(request, handler: SizeLimitedUploadHandler, max_bytes: int):
    form = ImportUploadForm(max_bytes=max_bytes)
    if request.method == "POST":
        form = ImportUploadForm(request.POST, request.FILES, max_bytes=max_bytes)
        if handler.exceeded:
            form = ImportUploadForm(max_bytes=max_bytes)
            return _upload_refused(request, form, _too_large_message(max_bytes))
        if form.is_valid():
            uploaded = form.cleaned_data["file"]
            importer.import_jobs_abandoned_delete(
                account=request.account, older_than=ABANDONED_UPLOAD_AGE
            )
            try:
                job = importer.import_job_create(
                    account=request.account,
                    created_by=request.user,
                    file_name=uploaded.name,
                    chunks=uploaded.chunks(importer.CHUNK_SIZE),
                    max_bytes=max_bytes,
                )
            except importer.ImportFileError as exc:
                form.add_error("file", str(exc))
            else:
                return redirect("subscriber_import_map", job_id=job.id)
    return render(request, "subscribers/csv/import_upload.html", {"form": form})


def _upload_refused(request, form: ImportUploadForm, message: str):
    context = {"form": form, "refused": message}
    return render(request, "subscribers/csv/import_upload.html", context, status=413)


class ImportMapForm(forms.Form):
    """One "import as" choice per column of the file, the tags for everyone, the encoding."""

    tags = forms.CharField(
        label="Tag everyone in this file with",
        required=False,
        max_length=2000,
        help_text="Tag names separated by commas; new tags are created. Leave empty for none.",
    )
    sequence = forms.TypedChoiceField(
        label="Add everyone in this file to a sequence",
        required=False,
        coerce=int,
        empty_value=None,
        help_text="New and existing subscribers alike; unsubscribed, bounced and complained ones "
        "are refused, and anyone already in it stays where they are.",
    )
    encoding = forms.ChoiceField(
        label="Character encoding",
        choices=list(importer.ENCODINGS.items()),
        help_text="UTF-8 unless the file came from an older Excel on Windows and accents look wrong "
        "in the preview.",
    )

    def __init__(
        self,
        *args,
        header: list[str],
        custom_fields: list[CustomField],
        preview_url: str,
        sequences: list[Sequence],
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # The account's own only: another account's id is not one of the choices.
        self.sequences_by_id = {sequence.id: sequence for sequence in sequences}
        self.fields["sequence"].choices = [("", "No sequence")] + [
            (str(sequence.id), sequence.name) for sequence in sequences
        ]
        self.fields["tags"].widget.attrs["list"] = "import-tag-names"
        # Changing the encoding re-reads the preview, keeping the choices made so far.
        self.fields["encoding"].widget.attrs.update(
            {
                "hx-get": preview_url,
                "hx-include": "closest form",
                "hx-target": "#import-preview",
                "hx-select": "#import-preview",
                "hx-swap": "outerHTML",
            }
        )
        choices = [(importer.IGNORE, "Ignore this column"), *importer.TARGET_LABELS.items()]
        choices += [
            (importer.FIELD_PREFIX + field.key, f"Custom field: {field.label}")
            for field in custom_fields
        ]
        self.column_names = []
        for index, title in enumerate(header):
            name = f"column_{index}"
            self.fields[name] = forms.ChoiceField(
                label=title or f"Column {index + 1}", choices=choices, required=False
            )
            self.column_names.append(name)

    def clean_tags(self) -> list[str]:
        names = tag_names_parse(self.cleaned_data["tags"])
        if len(names) > 20:
            raise forms.ValidationError("Choose at most 20 tags.")
        return names

    @property
    def chosen_sequence(self) -> Sequence | None:
        return self.sequences_by_id.get(self.cleaned_data.get("sequence"))

    def mapping(self) -> list[str]:
        return [self.cleaned_data.get(name) or importer.IGNORE for name in self.column_names]

    def column_fields(self):
        return [self[name] for name in self.column_names]


def _import_job(request, job_id: int) -> Job:
    return get_for_account(request, Job, pk=job_id, kind=Job.Kind.IMPORT)


@account_required
def import_map(request, job_id: int):
    """Step 2: map each column, choose tags and the encoding, then start the import."""
    job = _import_job(request, job_id)
    if job.state != Job.State.QUEUED or job.params.get("mapping"):
        return redirect("job_detail", job_id=job.id)
    custom_fields = list(CustomField.objects.filter(account=request.account))
    header = job.params.get("columns", [])
    encoding = request.GET.get("encoding")
    if encoding not in importer.ENCODINGS:
        encoding = job.params.get("suggested_encoding", importer.DEFAULT_ENCODING)
    form_options = {
        "header": header,
        "custom_fields": custom_fields,
        "preview_url": reverse("subscriber_import_map", args=[job.id]),
        "sequences": account_sequences(account_id=request.account.id),
    }
    if request.method == "POST":
        form = ImportMapForm(request.POST, **form_options)
        if form.is_valid():
            mapping = form.mapping()
            for problem in importer.import_mapping_check(mapping=mapping, account=request.account):
                form.add_error(None, problem)
        if form.is_valid():
            # The job's page says how far it got (no message: by the time the page shows it,
            # the import may have finished).
            importer.import_job_start(
                job=job,
                mapping=mapping,
                tag_names=form.cleaned_data["tags"],
                encoding=form.cleaned_data["encoding"],
                consent_by=request.user.email,
                sequence=form.chosen_sequence,
            )
            return redirect("job_detail", job_id=job.id)
        encoding = form.data.get("encoding", encoding)
    else:
        guess = importer.import_mapping_guess(header=header, custom_fields=custom_fields)
        initial = {
            f"column_{index}": request.GET.get(f"column_{index}", target)
            for index, target in enumerate(guess)
        }
        form = ImportMapForm(initial={**initial, "encoding": encoding}, **form_options)
    if encoding not in importer.ENCODINGS:
        encoding = importer.DEFAULT_ENCODING
    preview = importer.import_preview(job=job, encoding=encoding)
    columns = [
        (field, [row[index] for row in preview.rows])
        for index, field in enumerate(form.column_fields())
    ]
    context = {
        "job": job,
        "form": form,
        "columns": columns,
        "row_count": len(preview.rows),
        "email_found": request.method == "POST" or importer.EMAIL in form.initial.values(),
        "suggested_encoding": preview.suggested_encoding,
        "existing_tags": Tag.objects.filter(account=request.account).order_by("name")[:500],
    }
    return render(request, "subscribers/csv/import_map.html", context)


@account_required
def export_csv(request):
    """All subscribers matching the list's filters (state, tag, q), streamed as CSV."""
    state = request.GET.get("state", "")
    if state and state not in Subscriber.State.values:
        return HttpResponseBadRequest(f"Unknown state “{state[:40]}”.")
    tag_id = None
    if request.GET.get("tag"):
        raw_tag = request.GET["tag"]
        if not raw_tag.isdigit() or len(raw_tag) > 18:
            raise Http404
        tag_id = get_for_account(request, Tag, pk=int(raw_tag)).id
    filters = SubscriberFilter(
        state=state, tag_id=tag_id, q=" ".join(request.GET.get("q", "").split())[:254]
    )
    rows = exporter.export_rows(account=request.account, filters=filters)
    stamp = timezone.now().strftime("%Y-%m-%d")
    return csv_download(rows, filename=f"subscribers-{stamp}.csv")
