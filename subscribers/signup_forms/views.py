"""The creator's form pages: the list, create, the builder with its live preview, archive."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import FileResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from convertkit.paging import KeysetPage, keyset_page, page_cursor
from convertkit.tenancy import account_required, get_for_account
from sequences.entry import form_sequence_ids, form_sequences_set
from subscribers.models import CustomField, Form, FormIncentiveFile, Tag
from subscribers.signup_forms import services
from subscribers.signup_forms.builder import FormBuilderForm, FormCreateForm
from subscribers.signup_forms.counters import form_views_pending
from subscribers.signup_forms.embed import form_embed_code, form_hosted_url, form_snippet_html
from subscribers.signup_forms.mail import confirmation_email_text, incentive_email_text
from subscribers.views import DATALIST_LIMIT

# Who the email previews are addressed to.
SAMPLE_FIRST_NAME = "Sam"


def _conversion(*, gained: int, views: int) -> str:
    return f"{gained / views:.1%}" if views else "—"


@dataclass(frozen=True)
class _ListRow:
    url: str
    name: str
    style_label: str
    views: int
    subscribers: int
    conversion: str
    created_iso: str
    created_display: str


def _form_page(*, account, after: int | None, before: int | None) -> KeysetPage:
    """One page of the account's live forms, newest first, by keyset on the id (the partial
    index form_account_live): one query, plus one Redis round trip for the views not yet flushed."""
    page = keyset_page(
        Form.objects.filter(account=account, archived_at__isnull=True).only(
            "id", "uid", "name", "style", "view_count", "subscriber_count", "created_at"
        ),
        after=after,
        before=before,
    )
    forms = page.items
    pending = form_views_pending(forms=forms)
    prefix = reverse("form_list")
    styles = dict(Form.Style.choices)
    rows = []
    for form in forms:
        views = form.view_count + pending.get(form.id, 0)
        rows.append(
            _ListRow(
                url=f"{prefix}{form.id}/",
                name=form.name,
                style_label=styles.get(form.style, form.style).split(" (")[0],
                views=views,
                subscribers=form.subscriber_count,
                conversion=_conversion(gained=form.subscriber_count, views=views),
                created_iso=form.created_at.isoformat(),
                created_display=f"{timezone.localtime(form.created_at):%-d %b %Y}",
            )
        )
    return page.with_items(rows)


@account_required
def form_list(request):
    page = _form_page(
        account=request.account,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
    )
    return render(request, "subscribers/signup_forms/form_list.html", {"page": page})


@account_required
def form_create(request):
    create_form = FormCreateForm(request.POST or None)
    if request.method == "POST" and create_form.is_valid():
        form = services.form_create(
            account=request.account,
            name=create_form.cleaned_data["name"],
            style=create_form.cleaned_data["style"],
        )
        messages.success(request, f"Form “{form.name}” created. Make it yours, then save.")
        return redirect("form_builder", form.id)
    return render(
        request,
        "subscribers/signup_forms/form_create.html",
        {"create_form": create_form},
        status=400 if create_form.errors else 200,
    )


def _live_form(request, form_id: int) -> Form:
    """The account's form, unless archived; its incentive file's name and size, not its bytes."""
    return get_for_account(
        request,
        Form.objects.select_related("incentive_file").defer("incentive_file__data"),
        pk=form_id,
        archived_at__isnull=True,
    )


def _builder(request, form: Form) -> FormBuilderForm:
    """The builder form, bound to the request's POST if any, over an unsaved copy of `form`."""
    data = request.POST if request.method == "POST" else None
    return FormBuilderForm(
        data,
        request.FILES if data is not None else None,
        instance=copy.copy(form),
        custom_fields=list(CustomField.objects.filter(account=request.account)),
        tag_names=list(form.tags.order_by("name").values_list("name", flat=True)),
        sequence_ids=form_sequence_ids(form=form),
    )


def _previews(request, draft: Form) -> dict:
    """What the preview pane and the email previews show for `draft` (saved or not)."""
    sample_link = settings.SITE_URL + reverse("form_confirm", kwargs={"token": "sample"})
    incentive_link = draft.incentive_url or (
        settings.SITE_URL + reverse("form_incentive", kwargs={"token": "sample"})
        if hasattr(draft, "incentive_file")
        else ""
    )
    account = request.account
    return {
        "draft": draft,
        "sample_first_name": SAMPLE_FIRST_NAME,
        "snippet": form_snippet_html(draft, count_view=False),
        "sender": f"{account.sender_name} <{account.sender_email}>".strip()
        if account.sender_email
        else "",
        "confirmation_email": confirmation_email_text(
            draft, first_name=SAMPLE_FIRST_NAME, confirmation_url=sample_link
        ),
        "incentive_email": incentive_email_text(
            draft, first_name=SAMPLE_FIRST_NAME, incentive_url=incentive_link
        )
        if incentive_link
        else None,
    }


def _draft(builder: FormBuilderForm) -> Form:
    """The unsaved form as the builder's values make it; where a value is invalid, the saved one."""
    if builder.is_bound:
        builder.is_valid()
        if builder.field_rows.is_valid():
            builder.instance.fields = builder.field_rows.cleaned_fields
    return builder.instance


def _render_builder(request, form: Form, builder: FormBuilderForm, *, previewing: bool = False):
    views = form.view_count + form_views_pending(forms=[form]).get(form.id, 0)
    context = {
        "form": form,
        "builder": builder,
        "views": views,
        "conversion": _conversion(gained=form.subscriber_count, views=views),
        "incentive_file": getattr(form, "incentive_file", None),
        "previewing": previewing,
        "hosted_url": form_hosted_url(form),
        "embed_code": form_embed_code(form),
        "tag_names": list(
            Tag.objects.filter(account=request.account)
            .order_by("name")
            .values_list("name", flat=True)[:DATALIST_LIMIT]
        ),
        **_previews(request, _draft(builder)),
    }
    status = 400 if builder.has_errors and not previewing else 200
    return render(request, "subscribers/signup_forms/form_builder.html", context, status=status)


@account_required
def form_builder(request, form_id: int):
    """The builder. Save applies every section at once, or nothing: an invalid submit shows its
    errors over what was typed, and the stored form stays as it was."""
    form = _live_form(request, form_id)
    builder = _builder(request, form)
    if request.method == "POST" and builder.is_valid():
        upload = builder.cleaned_data["incentive_file"]
        with transaction.atomic():
            services.form_update(
                form=form,
                values=builder.values(),
                fields=builder.field_rows.cleaned_fields,
                tag_names=builder.cleaned_data["tag_names"],
            )
            form_sequences_set(
                form=form, sequence_ids=[s.pk for s in builder.cleaned_data["sequences"]]
            )
            if upload is not None:
                services.form_incentive_file_set(
                    form=form,
                    name=upload.name,
                    content_type=upload.content_type or "",
                    data=upload.read(),
                )
            elif builder.cleaned_data["incentive_file_remove"]:
                services.form_incentive_file_remove(form=form)
        messages.success(request, "Form saved. Its page and embedded copies show it now.")
        return redirect("form_builder", form.id)
    return _render_builder(request, form, builder)


@account_required
def form_preview(request, form_id: int):
    """The live preview of the builder's unsaved values; never saves. htmx gets the preview
    pane; a browser without JavaScript gets the whole builder with the preview updated."""
    form = _live_form(request, form_id)
    if request.method != "POST":
        return redirect("form_builder", form.id)
    builder = _builder(request, form)
    if not request.htmx:
        return _render_builder(request, form, builder, previewing=True)
    return render(
        request,
        "subscribers/signup_forms/partials/preview_response.html",
        {"builder": builder, **_previews(request, _draft(builder))},
    )


@account_required
def form_incentive_file(request, form_id: int):
    """The uploaded incentive, for the creator to check what subscribers will get."""
    form = _live_form(request, form_id)
    if not hasattr(form, "incentive_file"):
        return redirect("form_builder", form.id)
    incentive = FormIncentiveFile.objects.get(form=form)
    return FileResponse(
        io.BytesIO(bytes(incentive.data)),
        as_attachment=True,
        filename=incentive.name,
        content_type=incentive.content_type,
    )


@account_required
def form_archive(request, form_id: int):
    form = _live_form(request, form_id)
    if request.method == "POST":
        services.form_archive(form=form)
        messages.success(
            request,
            f"Form “{form.name}” archived. Its page and embedded copies no longer accept "
            "signups; its subscribers and their consent records stay.",
        )
        return redirect("form_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Archive the form “{form.name}”?",
            "explanation": "Its hosted page and every copy embedded on your sites stop working, "
            "and it leaves the form list. The subscribers it brought in stay, with the record "
            "of what they agreed to.",
            "button": "Archive form",
            "danger": True,
            "cancel_url": reverse("form_builder", args=[form.id]),
        },
    )
