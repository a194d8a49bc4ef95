"""The creator's subscriber pages: list, detail, add and edit, tags, custom fields, bulk actions."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.vary import vary_on_headers

from automations.selectors import subscriber_automation_history, subscriber_journeys
from convertkit.paging import page_cursor
from convertkit.tenancy import account_required, get_for_account
from sequences.entry import (
    account_sequences,
    subscriber_sequences,
    tag_sequence_ids,
    tag_sequences_set,
    tag_trigger_names,
)
from sequences.models import Sequence, Subscription
from sequences.services import SubscribeRefused, subscriber_enrol, subscription_remove
from subscribers import bulk, selectors, services
from subscribers.forms import (
    BulkActionForm,
    CustomFieldForm,
    SubscriberCreateForm,
    SubscriberFilterForm,
    SubscriberForm,
    SubscriberSequenceForm,
    TagNameForm,
    TagSequencesForm,
)
from subscribers.models import CustomField, Subscriber, Tag
from tracking.reports import subscriber_timeline

# Names offered in the "add a tag" datalist; an account with more still types the rest.
DATALIST_LIMIT = 500


def _tag_names(request) -> list[str]:
    return list(
        Tag.objects.filter(account=request.account)
        .order_by("name")
        .values_list("name", flat=True)[:DATALIST_LIMIT]
    )


def _custom_fields(request) -> list[CustomField]:
    return list(CustomField.objects.filter(account=request.account))


@dataclass(frozen=True)
class _ListRow:
    """What one row of the list shows, formatted here once: the page renders 50 of them, and
    per-row {% url %} and |date calls in the template were a sizeable share of the page's time
    (bench/pages.py measures the page)."""

    url: str
    email: str
    first_name: str
    state: str
    state_label: str
    tag_names: list[str]
    created_iso: str
    created_display: str


def _list_rows(page: selectors.SubscriberPage) -> list[_ListRow]:
    detail_prefix = reverse("subscriber_list")
    state_labels = dict(Subscriber.State.choices)
    return [
        _ListRow(
            url=f"{detail_prefix}{subscriber.id}/",
            email=subscriber.email,
            first_name=subscriber.first_name,
            state=subscriber.state,
            state_label=state_labels.get(subscriber.state, subscriber.state),
            tag_names=[tag.name for tag in page.tags_by_subscriber.get(subscriber.id, [])],
            created_iso=subscriber.created_at.isoformat(),
            created_display=f"{timezone.localtime(subscriber.created_at):%-d %b %Y}",
        )
        for subscriber in page.subscribers
    ]


@account_required
@vary_on_headers("HX-Request")
def subscriber_list(request):
    """The list; a search's capped count (up to COUNT_CAP rows) is left out of the page and
    fetched by htmx with ?count=1 (a plain link without JavaScript), so the page stays fast."""
    tags = selectors.account_tags(account=request.account)
    form = SubscriberFilterForm(request.GET or None, tags=tags)
    form.is_valid()
    filters = form.filters()
    counts = selectors.subscriber_counts(account=request.account)
    tag = form.filter_tag
    count_requested = request.GET.get("count") == "1"
    partial = bool(request.htmx and not request.htmx.history_restore_request)
    if count_requested and partial:
        total = selectors.subscriber_total(
            account=request.account, filters=filters, counts=counts, tag=tag
        )
        return render(
            request,
            "subscribers/partials/subscriber_status.html",
            {"counts": counts, "filters": filters, "total": total},
        )
    page = selectors.subscriber_page(
        account=request.account,
        filters=filters,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
        counts=counts,
        tag=tag,
    )
    total = selectors.subscriber_total(
        account=request.account,
        filters=filters,
        counts=counts,
        tag=tag,
        page=page,
        count_rows=count_requested,
    )
    context = {
        "form": form,
        "filters": filters,
        "filter_tag": tag,
        "counts": counts,
        "page": page,
        "rows": _list_rows(page),
        "total": total,
        "bulk_form": BulkActionForm(
            tags=tags, sequences=account_sequences(account_id=request.account.id)
        ),
        "bulk_allowed": not form.errors,
        "partial": partial,
    }
    if partial:
        return render(request, "subscribers/partials/subscriber_results.html", context)
    return render(request, "subscribers/subscriber_list.html", context)


@account_required
def subscriber_create(request):
    custom_fields = _custom_fields(request)
    form = SubscriberCreateForm(request.POST or None, custom_fields=custom_fields)
    if request.method == "POST" and form.is_valid():
        try:
            subscriber = services.subscriber_create(
                account=request.account,
                email=form.cleaned_data["email"],
                first_name=form.cleaned_data["first_name"],
                fields=form.custom_field_values(),
                tag_names=form.cleaned_data["tags"],
                source="manual",
                consent_method=f"Added by {request.user.email}",
                readd=form.cleaned_data["readd"],
            )
        except services.SubscriberExists as exists:
            form.add_duplicate_error(exists.subscriber)
        except services.SubscriberSuppressed:
            form.add_suppressed_error()
        else:
            messages.success(request, f"{subscriber.email} was added.")
            return redirect("subscriber_detail", subscriber.id)
    return render(
        request,
        "subscribers/subscriber_form.html",
        {"form": form, "tag_names": _tag_names(request), "creating": True},
        status=400 if form.errors else 200,
    )


@account_required
def subscriber_detail(request, subscriber_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    return _render_detail(request, subscriber)


def _render_detail(
    request,
    subscriber: Subscriber,
    tag_form: TagNameForm | None = None,
    sequence_form: SubscriberSequenceForm | None = None,
):
    tag_form = tag_form or TagNameForm()
    subscriptions = subscriber_sequences(subscriber=subscriber)
    # A sequence they are in already is not offered again (adding would change nothing).
    inside = {row.sequence.pk for row in subscriptions if row.removable}
    sequence_form = sequence_form or SubscriberSequenceForm(
        sequences=[
            sequence
            for sequence in account_sequences(account_id=request.account.id)
            if sequence.pk not in inside
        ]
    )
    custom_fields = _custom_fields(request)
    return render(
        request,
        "subscribers/subscriber_detail.html",
        {
            "subscriber": subscriber,
            "field_values": [
                (custom_field, subscriber.fields.get(custom_field.key))
                for custom_field in custom_fields
            ],
            "tags": list(
                Tag.objects.filter(taggings__subscriber=subscriber).order_by("name", "id")
            ),
            "tag_form": tag_form,
            "tag_names": _tag_names(request),
            "sequence_form": sequence_form,
            "subscriptions": subscriptions,
            "history": selectors.subscriber_history(subscriber=subscriber),
            "signups": selectors.subscriber_signups(subscriber=subscriber),
            "timeline": subscriber_timeline(subscriber=subscriber),
            "journeys": subscriber_journeys(subscriber=subscriber),
            "automation_history": subscriber_automation_history(subscriber=subscriber),
        },
        status=400 if tag_form.errors or sequence_form.errors else 200,
    )


@account_required
def subscriber_edit(request, subscriber_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    custom_fields = _custom_fields(request)
    form = SubscriberForm(
        request.POST or None,
        custom_fields=custom_fields,
        initial=SubscriberForm.initial_for(subscriber, custom_fields),
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.subscriber_update(
                subscriber=subscriber,
                email=form.cleaned_data["email"],
                first_name=form.cleaned_data["first_name"],
                fields=form.custom_field_values(),
            )
        except services.SubscriberExists as exists:
            form.add_duplicate_error(exists.subscriber)
        except services.SubscriberSuppressed:
            form.add_suppressed_error()
        else:
            messages.success(request, "Changes saved.")
            return redirect("subscriber_detail", subscriber.id)
    return render(
        request,
        "subscribers/subscriber_form.html",
        {"form": form, "subscriber": subscriber, "creating": False},
        status=400 if form.errors else 200,
    )


@account_required
def subscriber_tag(request, subscriber_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    if request.method != "POST":
        return redirect("subscriber_detail", subscriber.id)
    form = TagNameForm(request.POST)
    if not form.is_valid():
        return _render_detail(request, subscriber, tag_form=form)
    tag = services.subscriber_tag(subscriber=subscriber, name=form.cleaned_data["name"])
    messages.success(request, f"Tagged with “{tag.name}”.")
    return redirect("subscriber_detail", subscriber.id)


@account_required
def subscriber_untag(request, subscriber_id: int, tag_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    tag = get_for_account(request, Tag, pk=tag_id)
    if request.method == "POST" and services.subscriber_untag(subscriber=subscriber, tag=tag):
        messages.success(request, f"Removed the tag “{tag.name}”.")
    return redirect("subscriber_detail", subscriber.id)


@account_required
def subscriber_sequence_add(request, subscriber_id: int):
    """The "Add to sequence" button: another account's sequence is a form error, and a
    suppressed subscriber is refused with the reason, in the form; nothing changes then."""
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    if request.method != "POST":
        return redirect("subscriber_detail", subscriber.id)
    form = SubscriberSequenceForm(
        request.POST, sequences=account_sequences(account_id=request.account.id)
    )
    if not form.is_valid():
        return _render_detail(request, subscriber, sequence_form=form)
    sequence = form.chosen
    try:
        result = subscriber_enrol(sequence=sequence, subscriber=subscriber)
    except SubscribeRefused as refused:
        form.add_error("sequence", str(refused))
        return _render_detail(request, subscriber, sequence_form=form)
    if result.added and subscriber.state == Subscriber.State.UNCONFIRMED:
        messages.success(
            request,
            f"Added to the sequence “{sequence.name}”: it starts once they confirm their address.",
        )
    elif result.added:
        messages.success(request, f"Added to the sequence “{sequence.name}”.")
    elif result.restarted:
        messages.success(request, f"“{sequence.name}” starts again at its first email for them.")
    else:
        state = (
            Subscription.objects.filter(sequence=sequence, subscriber_id=subscriber.pk)
            .values_list("state", flat=True)
            .first()
        )
        if state == Subscription.State.COMPLETED:
            why = f"They completed “{sequence.name}”, which does not repeat"
        else:
            why = f"They are already in “{sequence.name}”"
        messages.info(request, f"{why}: nothing changed.")
    return redirect("subscriber_detail", subscriber.id)


@account_required
def subscriber_sequence_remove(request, subscriber_id: int, sequence_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    sequence = get_for_account(request, Sequence, pk=sequence_id)
    if request.method == "POST" and subscription_remove(
        sequence=sequence, subscriber_id=subscriber.pk
    ):
        messages.success(request, f"Removed from “{sequence.name}”: they get nothing more from it.")
    return redirect("subscriber_detail", subscriber.id)


@account_required
def subscriber_unsubscribe(request, subscriber_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    if request.method == "POST":
        if services.subscriber_unsubscribe(
            subscriber=subscriber, reason=f"unsubscribed by {request.user.email}"
        ):
            messages.success(request, f"{subscriber.email} was unsubscribed.")
        else:
            messages.info(request, f"{subscriber.email} is already {subscriber.state}.")
        return redirect("subscriber_detail", subscriber.id)
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Unsubscribe {subscriber.email}?",
            "explanation": "They will get no more broadcasts. Only they can subscribe again, "
            "through one of your forms.",
            "button": "Unsubscribe",
            "cancel_url": reverse("subscriber_detail", args=[subscriber.id]),
        },
    )


@account_required
def subscriber_delete(request, subscriber_id: int):
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    if request.method == "POST":
        services.subscriber_delete(subscriber=subscriber)
        messages.success(
            request,
            f"{subscriber.email} was deleted with their tags and history. "
            "An import will not bring them back.",
        )
        return redirect("subscriber_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete {subscriber.email}?",
            "explanation": "This erases the subscriber, their custom fields, tags and history. "
            "We keep only a fingerprint of the address (not the address itself), so that an "
            "import or a form will not bring them back unless they ask to be added again.",
            "button": "Delete for good",
            "danger": True,
            "cancel_url": reverse("subscriber_detail", args=[subscriber.id]),
        },
    )


@account_required
def tag_list(request):
    form = TagNameForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tag = services.tag_create(account=request.account, name=form.cleaned_data["name"])
        except services.TagExists as exists:
            form.add_error("name", f"You already have a tag named “{exists.tag.name}”.")
        else:
            messages.success(request, f"Tag “{tag.name}” created.")
            return redirect("tag_list")
    tags = selectors.account_tags(account=request.account)
    sequence_names = tag_trigger_names(tag_ids=[tag.id for tag in tags])
    for tag in tags:
        tag.sequence_names = sequence_names.get(tag.id, [])
    return render(
        request,
        "subscribers/tag_list.html",
        {"form": form, "tags": tags},
        status=400 if form.errors else 200,
    )


@account_required
def tag_detail(request, tag_id: int):
    """The tag's settings: the built-in "when this tag is added, add to these sequences"."""
    tag = get_for_account(request, Tag, pk=tag_id)
    form = TagSequencesForm(
        request.POST if request.method == "POST" else None,
        account_id=request.account.id,
        initial={"sequences": tag_sequence_ids(tag=tag)},
    )
    if request.method == "POST" and form.is_valid():
        chosen = form.cleaned_data["sequences"]
        tag_sequences_set(tag=tag, sequence_ids=[sequence.pk for sequence in chosen])
        if chosen:
            names = ", ".join(f"“{sequence.name}”" for sequence in chosen)
            messages.success(request, f"Adding “{tag.name}” now adds subscribers to {names}.")
        else:
            messages.success(request, f"Adding “{tag.name}” adds subscribers to no sequence.")
        return redirect("tag_detail", tag.id)
    return render(
        request,
        "subscribers/tag_detail.html",
        {"tag": tag, "form": form},
        status=400 if form.errors else 200,
    )


@account_required
def tag_delete(request, tag_id: int):
    tag = get_for_account(request, Tag, pk=tag_id)
    if request.method == "POST":
        services.tag_delete(tag=tag)
        messages.success(request, f"Tag “{tag.name}” deleted. Its subscribers stay on your list.")
        return redirect("tag_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete the tag “{tag.name}”?",
            "explanation": f"It is removed from the {tag.subscriber_count:,} subscriber"
            f"{'' if tag.subscriber_count == 1 else 's'} who have it; they stay on your list.",
            "button": "Delete tag",
            "danger": True,
            "cancel_url": reverse("tag_list"),
        },
    )


@account_required
def custom_field_list(request):
    form = CustomFieldForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            custom_field = services.custom_field_create(
                account=request.account,
                key=form.cleaned_data["key"],
                label=form.cleaned_data["label"],
            )
        except services.CustomFieldExists:
            form.add_error("key", "You already have a field with this key.")
        else:
            messages.success(request, f"Field “{custom_field.label}” created.")
            return redirect("custom_field_list")
    return render(
        request,
        "subscribers/custom_field_list.html",
        {"form": form, "custom_fields": _custom_fields(request)},
        status=400 if form.errors else 200,
    )


@account_required
def custom_field_delete(request, field_id: int):
    custom_field = get_for_account(request, CustomField, pk=field_id)
    if request.method == "POST":
        services.custom_field_delete(custom_field=custom_field)
        messages.success(
            request,
            f"Field “{custom_field.label}” deleted. Stored values are hidden, not erased.",
        )
        return redirect("custom_field_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete the field “{custom_field.label}”?",
            "explanation": "The field disappears from subscriber pages and forms. The values "
            "already stored stay in the database, hidden; if you create a field with the same "
            f"key ({custom_field.key}) again, they show up again.",
            "button": "Delete field",
            "danger": True,
            "cancel_url": reverse("custom_field_list"),
        },
    )


@account_required
def subscriber_bulk(request):
    """Confirm, then start, a bulk action on the list's current filter (state, tag, q).

    GET (from the list) or a POST without `confirmed` shows what will happen to how many; a POST
    with `confirmed` creates the Job and sends the creator to its progress bar.
    """
    tags = selectors.account_tags(account=request.account)
    data = request.POST if request.method == "POST" else request.GET
    filter_form = SubscriberFilterForm(data, tags=tags)
    action_form = BulkActionForm(
        data if "action" in data else None,
        tags=tags,
        sequences=account_sequences(account_id=request.account.id),
    )
    filter_valid = filter_form.is_valid()
    context = {"filter_form": filter_form, "action_form": action_form}
    if filter_valid:
        filters = filter_form.filters()
        tag = filter_form.filter_tag
        total = selectors.subscriber_total(
            account=request.account,
            filters=filters,
            counts=selectors.subscriber_counts(account=request.account),
            tag=tag,
        )
        context.update(filters=filters, filter_tag=tag, total=total)
        if action_form.is_bound and action_form.is_valid():
            title = bulk.bulk_title(
                action=action_form.cleaned_data["action"],
                total=total,
                tag=action_form.tag,
                sequence=action_form.sequence,
            )
            if request.method == "POST" and request.POST.get("confirmed") == "yes":
                job = bulk.bulk_job_create(
                    account=request.account,
                    user=request.user,
                    action=action_form.cleaned_data["action"],
                    filters=filters,
                    tag=action_form.tag,
                    total=total,
                    sequence=action_form.sequence,
                )
                messages.success(request, f"Started: {job.title}.")
                return redirect("job_detail", job.id)
            context["confirm_title"] = title
            context["danger"] = action_form.cleaned_data["action"] in ("delete", "unsubscribe")
    invalid = not filter_valid or (action_form.is_bound and not action_form.is_valid())
    return render(request, "subscribers/bulk.html", context, status=400 if invalid else 200)
