"""The creator's segment pages: the list, create, the segment's page with its member count,
edit, delete."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone

from broadcasts.audience import audience_description
from broadcasts.selectors import sent_broadcast_choices
from convertkit.paging import KeysetPage, keyset_page, page_cursor
from convertkit.tenancy import account_required, get_for_account
from subscribers.models import CustomField, Form, Segment
from subscribers.segments import services
from subscribers.segments.forms import SegmentForm
from subscribers.selectors import account_tags


@dataclass(frozen=True)
class _ListRow:
    url: str
    name: str
    created_iso: str
    created_display: str


def _segment_page(*, account, after: int | None, before: int | None) -> KeysetPage:
    """One page of the account's segments, newest first, by keyset on the id (the index
    segment_account_id): one query. No member counts: each would be a count of the list."""
    page = keyset_page(
        Segment.objects.filter(account=account).only("id", "name", "created_at"),
        after=after,
        before=before,
    )
    prefix = reverse("segment_list")
    return page.with_items(
        [
            _ListRow(
                url=f"{prefix}{segment.id}/",
                name=segment.name,
                created_iso=segment.created_at.isoformat(),
                created_display=f"{timezone.localtime(segment.created_at):%-d %b %Y}",
            )
            for segment in page.items
        ]
    )


@account_required
def segment_list(request):
    page = _segment_page(
        account=request.account,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
    )
    return render(request, "subscribers/segments/segment_list.html", {"page": page})


def _segment(request, segment_id: int) -> Segment:
    return get_for_account(request, Segment.objects.select_related("account"), pk=segment_id)


def _segment_form(request, segment: Segment | None, data=None) -> SegmentForm:
    account = request.account
    return SegmentForm(
        data,
        tags=account_tags(account=account),
        sent_broadcasts=sent_broadcast_choices(
            account=account, chosen_id=segment.not_opened_broadcast_id if segment else None
        ),
        signup_forms=list(
            Form.objects.filter(account=account).order_by("-id").only("id", "name", "archived_at")
        ),
        custom_fields=list(CustomField.objects.filter(account=account)),
        initial=SegmentForm.initial_for(segment) if segment else {},
    )


def _save(request, segment: Segment | None, form: SegmentForm) -> Segment | None:
    """Creates or updates the segment from the valid form; None (with the form's errors)
    when the service refuses it."""
    if not form.is_valid():
        return None
    try:
        if segment is None:
            return services.segment_create(account=request.account, **form.values())
        return services.segment_update(segment=segment, **form.values())
    except services.SegmentNameTaken as taken:
        form.add_error("name", f"You already have a segment named “{taken.name}”.")
    except services.SegmentInvalid as invalid:
        form.add_error(None, str(invalid))
    return None


def _render_editor(request, form: SegmentForm, segment: Segment | None):
    return render(
        request,
        "subscribers/segments/segment_form.html",
        {"form": form, "segment": segment},
        status=400 if form.is_bound and form.has_errors else 200,
    )


@account_required
def segment_create(request):
    form = _segment_form(request, None, request.POST if request.method == "POST" else None)
    if request.method == "POST":
        segment = _save(request, None, form)
        if segment is not None:
            messages.success(request, f"Segment “{segment.name}” created.")
            return redirect("segment_detail", segment.id)
    return _render_editor(request, form, None)


@account_required
def segment_edit(request, segment_id: int):
    segment = _segment(request, segment_id)
    form = _segment_form(request, segment, request.POST if request.method == "POST" else None)
    if request.method == "POST" and _save(request, segment, form) is not None:
        messages.success(request, "Saved.")
        return redirect("segment_detail", segment.id)
    return _render_editor(request, form, segment)


@account_required
def segment_detail(request, segment_id: int):
    """The segment's conditions in words and its member count, which htmx fetches once the
    page has loaded (counting a large list takes a moment); ?count=1 counts it in the page."""
    segment = _segment(request, segment_id)
    counted = request.GET.get("count") == "1"
    return render(
        request,
        "subscribers/segments/segment_detail.html",
        {
            "segment": segment,
            "description": audience_description(segment),
            "count": services.segment_count(segment=segment) if counted else None,
        },
    )


@account_required
def segment_count(request, segment_id: int):
    """The segment's member count, for htmx: the same query as a broadcast's recipient count."""
    segment = _segment(request, segment_id)
    if not request.htmx:
        return redirect(reverse("segment_detail", args=[segment.id]) + "?count=1")
    return render(
        request,
        "subscribers/segments/partials/segment_count.html",
        {"count": services.segment_count(segment=segment)},
    )


@account_required
def segment_delete(request, segment_id: int):
    segment = _segment(request, segment_id)
    if request.method == "POST":
        services.segment_delete(segment=segment)
        messages.success(request, f"Segment “{segment.name}” deleted. Its subscribers stay.")
        return redirect("segment_list")
    waiting = services.segment_broadcasts_waiting(segment=segment)
    explanation = "Its subscribers stay on your list; only the saved filter goes."
    if waiting:
        explanation += (
            f" {waiting} broadcast{pluralize(waiting)} not yet sent {pluralize(waiting, 'is,are')}"
            " addressed to it and would go to nobody until you choose another audience."
        )
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete the segment “{segment.name}”?",
            "explanation": explanation,
            "button": "Delete segment",
            "danger": True,
            "cancel_url": reverse("segment_detail", args=[segment.id]),
        },
    )
