"""The creator's broadcast pages: the list, the editor with its live preview and recipient
count, test send, schedule, send (after a confirmation), and the live progress page with the
choice about deliveries whose outcome is unknown.

A broadcast is named by Broadcast.name everywhere (its description, else its subject as the
sample subscriber gets it), never by its subject's Liquid source."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone

from broadcasts import audience, editor, progress, rendering, services
from broadcasts.forms import CONTENT_FIELDS, BroadcastForm, ScheduleForm
from broadcasts.models import Broadcast
from broadcasts.public.selectors import ARCHIVED_STATES, archive_entry
from broadcasts.selectors import moment_label, sent_broadcast_choices
from convertkit.paging import KeysetPage, keyset_page, page_cursor
from convertkit.tenancy import account_required, get_for_account
from subscribers.selectors import account_segments, account_tags
from tracking.reports import Rates, broadcast_rates, rate_label

# Unknown deliveries listed on the progress page (the count is always shown in full).
UNKNOWN_LISTED = 100


# --- List -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ListRow:
    url: str
    name: str
    state: str
    state_label: str
    # Sent and skipped (no longer subscribed at send time); none for drafts.
    sent: int | None
    skipped: int
    when_label: str
    when_iso: str
    when_display: str
    # Open and click rates (people) and where they are detailed; none for drafts.
    open_rate: str
    click_rate: str
    report_url: str


def _list_row(broadcast: Broadcast, prefix: str, labels: dict[str, str], rates: Rates) -> _ListRow:
    if broadcast.state == Broadcast.State.SCHEDULED:
        label, moment = "Scheduled for", broadcast.scheduled_at
    elif broadcast.sent_at:
        label, moment = "", broadcast.sent_at
    elif broadcast.send_started_at:
        label, moment = "Started", broadcast.send_started_at
    else:
        label, moment = "", None
    page = "" if broadcast.is_editable else "progress/"
    return _ListRow(
        url=f"{prefix}{broadcast.id}/{page}",
        name=broadcast.name,
        state=broadcast.state,
        state_label=labels.get(broadcast.state, broadcast.state),
        sent=None if broadcast.is_editable else broadcast.sent_count,
        skipped=broadcast.skipped_count,
        when_label=label,
        when_iso=moment.isoformat() if moment else "",
        when_display=moment_label(moment),
        open_rate=rate_label(rates.open_rate),
        click_rate=rate_label(rates.click_rate),
        report_url="" if broadcast.is_editable else f"{prefix}{broadcast.id}/report/",
    )


def _broadcast_page(*, account, after: int | None, before: int | None) -> KeysetPage:
    """One page of the account's broadcasts, newest first, by keyset on the id (the index
    broadcast_account_id), and their rates from the rollups: two queries, whatever the page
    holds. Names are rendered from each subject once per process (sample_subject's cache)."""
    page = keyset_page(
        Broadcast.objects.broadcasts()
        .filter(account=account)
        .only(
            "id",
            "description",
            "subject",
            "state",
            "sent_count",
            "skipped_count",
            "scheduled_at",
            "send_started_at",
            "sent_at",
        ),
        after=after,
        before=before,
    )
    prefix = reverse("broadcast_list")
    labels = dict(Broadcast.State.choices)
    for broadcast in page.items:
        broadcast.account = account
    rates = broadcast_rates(broadcasts=page.items)
    return page.with_items(
        [_list_row(broadcast, prefix, labels, rates[broadcast.id]) for broadcast in page.items]
    )


@account_required
def broadcast_list(request):
    page = _broadcast_page(
        account=request.account,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
    )
    return render(request, "broadcasts/broadcast_list.html", {"page": page})


@account_required
def broadcast_create(request):
    if request.method != "POST":
        return redirect("broadcast_list")
    broadcast = services.broadcast_create(
        account=request.account, body_format=Broadcast.BodyFormat.VISUAL
    )
    return redirect("broadcast_edit", broadcast.id)


# --- Editor -----------------------------------------------------------------------------------


def _broadcast(request, broadcast_id: int) -> Broadcast:
    """The account's broadcast, else 404; a sequence email's message is not one (its pages
    are the sequence's)."""
    return get_for_account(
        request,
        Broadcast.objects.broadcasts().select_related("account"),
        pk=broadcast_id,
    )


def _editor_form(request, broadcast: Broadcast, data=None) -> BroadcastForm:
    return BroadcastForm(
        data,
        account=request.account,
        tags=account_tags(account=request.account),
        sent_broadcasts=sent_broadcast_choices(
            account=request.account, chosen_id=broadcast.not_opened_broadcast_id
        ),
        segments=account_segments(account=request.account),
        initial=BroadcastForm.initial_for(broadcast),
    )


def _render_editor(
    request,
    broadcast: Broadcast,
    form: BroadcastForm,
    *,
    schedule_form: ScheduleForm | None = None,
    previewing: bool = False,
    refused: str = "",
    status: int | None = None,
):
    if schedule_form is None:
        typed = request.POST.get("send_at")
        saved = timezone.localtime(broadcast.scheduled_at) if broadcast.scheduled_at else None
        schedule_form = ScheduleForm(initial={"send_at": typed or saved})
    count = (
        audience.audience_count(audience=form.draft(broadcast))
        if request.GET.get("count") == "1"
        else None
    )
    context = {
        "broadcast": broadcast,
        "heading": broadcast.name
        if broadcast.description or broadcast.subject
        else "New broadcast",
        "form": form,
        "schedule_form": schedule_form,
        "previewing": previewing,
        "refused": refused,
        "count": count,
        "scheduled_display": moment_label(broadcast.scheduled_at),
        "time_zone": timezone.get_current_timezone_name(),
        "suggested_emails": editor.suggested_emails(request.account),
        "autosave_url": reverse("broadcast_autosave", args=[broadcast.id]),
        **editor.preview_context(request, form, broadcast),
    }
    if status is None:
        status = 400 if (form.errors or schedule_form.errors or refused) and not previewing else 200
    return render(request, "broadcasts/broadcast_edit.html", context, status=status)


def _progress_redirect(broadcast: Broadcast):
    return redirect("broadcast_progress", broadcast.id)


def _save(request, broadcast: Broadcast) -> tuple[BroadcastForm, bool]:
    """Saves the editor's posted values; the form (with its errors) and whether it saved."""
    form = _editor_form(request, broadcast, request.POST)
    if not form.is_valid():
        return form, False
    services.broadcast_update(broadcast=broadcast, **form.values())
    return form, True


@account_required
def broadcast_edit(request, broadcast_id: int):
    """The editor. Sending and sent broadcasts open on their progress page instead."""
    broadcast = _broadcast(request, broadcast_id)
    if not broadcast.is_editable:
        return _progress_redirect(broadcast)
    if request.method == "POST":
        form, saved = _save(request, broadcast)
        if saved:
            messages.success(request, "Saved.")
            return redirect("broadcast_edit", broadcast.id)
        return _render_editor(request, broadcast, form)
    return _render_editor(request, broadcast, _editor_form(request, broadcast))


NOT_EDITABLE = "this broadcast has started sending: it can no longer change."


@account_required
def broadcast_autosave(request, broadcast_id: int):
    """Saves the editor's content (never the audience or schedule) in the background, as JSON
    for the editor's autosave; a broadcast that has started sending is refused."""
    broadcast = _broadcast(request, broadcast_id)

    def save(values: dict) -> str:
        if not broadcast.is_editable:
            return NOT_EDITABLE
        try:
            services.broadcast_content_update(broadcast=broadcast, **values)
        except services.BroadcastNotEditable:
            return NOT_EDITABLE
        return ""

    form = _editor_form(request, broadcast, request.POST)
    return editor.autosave(request, form, fields=CONTENT_FIELDS, save=save)


@account_required
def broadcast_preview(request, broadcast_id: int):
    """The live preview of the editor's unsaved values; never saves. htmx gets the preview
    pane; a browser without JavaScript gets the whole editor with the preview updated."""
    broadcast = _broadcast(request, broadcast_id)
    if request.method != "POST" or not broadcast.is_editable:
        return redirect("broadcast_edit", broadcast.id)
    form = _editor_form(request, broadcast, request.POST)
    if not request.htmx:
        return _render_editor(request, broadcast, form, previewing=True)
    return render(
        request,
        "broadcasts/partials/preview.html",
        {"broadcast": broadcast, **editor.preview_context(request, form, broadcast)},
    )


@account_required
def broadcast_count(request, broadcast_id: int):
    """The recipient count of the audience chosen in the editor (saved or not), fetched by htmx
    once the page has loaded: counting a large list takes a moment."""
    broadcast = _broadcast(request, broadcast_id)
    if not request.htmx:
        return redirect(reverse("broadcast_edit", args=[broadcast.id]) + "?count=1")
    form = _editor_form(request, broadcast, request.GET)
    return render(
        request,
        "broadcasts/partials/recipient_count.html",
        {
            "broadcast": broadcast,
            "count": audience.audience_count(audience=form.draft(broadcast)),
        },
    )


@account_required
def broadcast_test(request, broadcast_id: int):
    """Saves the editor's values, then sends a test copy to the creator's own address."""
    broadcast = _broadcast(request, broadcast_id)
    if request.method != "POST" or not broadcast.is_editable:
        return redirect("broadcast_edit", broadcast.id)
    form, saved = _save(request, broadcast)
    if not saved:
        return _render_editor(request, broadcast, form)
    refused = editor.test_send(request, broadcast)
    if refused:
        return _render_editor(request, broadcast, form, refused=refused)
    return redirect("broadcast_edit", broadcast.id)


@account_required
def broadcast_schedule(request, broadcast_id: int):
    """Saves the editor's values, then schedules the send for the time given."""
    broadcast = _broadcast(request, broadcast_id)
    if request.method != "POST" or not broadcast.is_editable:
        return redirect("broadcast_edit", broadcast.id)
    form, saved = _save(request, broadcast)
    schedule_form = ScheduleForm(request.POST)
    if not saved or not schedule_form.is_valid():
        return _render_editor(request, broadcast, form, schedule_form=schedule_form)
    try:
        services.broadcast_schedule(broadcast=broadcast, at=schedule_form.cleaned_data["send_at"])
    except services.SendRefused as refused:
        return _render_editor(
            request,
            broadcast,
            form,
            schedule_form=schedule_form,
            refused=f"Saved, but not scheduled. {refused}",
        )
    messages.success(
        request,
        f"Scheduled for {moment_label(broadcast.scheduled_at)} ({timezone.get_current_timezone_name()}).",
    )
    return redirect("broadcast_edit", broadcast.id)


@account_required
def broadcast_unschedule(request, broadcast_id: int):
    broadcast = _broadcast(request, broadcast_id)
    if request.method == "POST":
        if services.broadcast_unschedule(broadcast=broadcast):
            messages.success(request, "Unscheduled. It is a draft again.")
        elif not broadcast.is_editable:
            return _progress_redirect(broadcast)
    return redirect("broadcast_edit", broadcast.id)


# --- Send -------------------------------------------------------------------------------------


@account_required
def broadcast_send(request, broadcast_id: int):
    """Send now, after a confirmation that shows the recipient count.

    A POST from the editor (without `confirmed`) saves its values and shows the confirmation;
    the confirmation's POST (with `confirmed`) starts the send and opens the progress page.
    """
    broadcast = _broadcast(request, broadcast_id)
    if not broadcast.is_editable:
        return _progress_redirect(broadcast)
    refused = ""
    if request.method == "POST":
        if request.POST.get("confirmed") != "yes":
            form, saved = _save(request, broadcast)
            if not saved:
                return _render_editor(request, broadcast, form)
            return redirect("broadcast_send", broadcast.id)
        try:
            services.broadcast_send(broadcast=broadcast)
        except services.SendRefused as refusal:
            refused = str(refusal)
        else:
            messages.success(request, "Sending has started.")
            return _progress_redirect(broadcast)
    count = audience.audience_count(audience=broadcast)
    problems = [] if refused else services.send_problems(broadcast=broadcast, recipient_count=count)
    return render(
        request,
        "broadcasts/broadcast_send.html",
        {
            "broadcast": broadcast,
            "count": count,
            "audience": audience.audience_description(broadcast),
            "sample_subject": rendering.sample_subject(
                broadcast.subject, account=broadcast.account
            ),
            "refused": refused,
            "problems": problems,
        },
        status=400 if refused else 200,
    )


@account_required
def broadcast_delete(request, broadcast_id: int):
    broadcast = _broadcast(request, broadcast_id)
    if not broadcast.is_editable:
        return _progress_redirect(broadcast)
    if request.method == "POST":
        services.broadcast_delete(broadcast=broadcast)
        messages.success(request, f"“{broadcast.name}” was deleted.")
        return redirect("broadcast_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete “{broadcast.name}”?",
            "explanation": "The broadcast is erased; nobody has received it"
            + (", and its schedule is cancelled." if broadcast.scheduled_at else "."),
            "button": "Delete broadcast",
            "danger": True,
            "cancel_url": reverse("broadcast_edit", args=[broadcast.id]),
        },
    )


@account_required
def broadcast_resend_unopened(request, pk: int):
    """A new draft of a sent broadcast for those who did not open it, opened in the editor."""
    broadcast = _broadcast(request, pk)
    if request.method != "POST":
        return _progress_redirect(broadcast)
    try:
        resend = services.broadcast_resend_unopened(broadcast=broadcast)
    except services.ResendRefused as refused:
        messages.error(request, str(refused))
        return redirect("broadcast_edit", broadcast.id)
    messages.success(
        request,
        "A new draft for those who did not open it. Change the subject if you like, then send.",
    )
    return redirect("broadcast_edit", resend.id)


# --- Progress ---------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def _progress_context(request, broadcast: Broadcast) -> dict:
    """What the progress card shows; the unknown deliveries are read only when their count is
    not the one the page already shows (?unknown=N on a poll), as they rarely change."""
    numbers = progress.broadcast_progress(broadcast=broadcast)
    shown = request.GET.get("unknown")
    list_unknown = numbers.unknown > 0 and shown != str(numbers.unknown)
    return {
        "broadcast": broadcast,
        "progress": numbers,
        "polling": broadcast.state == Broadcast.State.SENDING,
        "eta": _duration(numbers.eta_seconds),
        "started_display": moment_label(broadcast.send_started_at),
        "sent_display": moment_label(broadcast.sent_at),
        "list_unknown": list_unknown,
        "unknown_resent_display": moment_label(broadcast.unknown_resent_at),
        "unknown_deliveries": [
            {
                "email": delivery.subscriber.email,
                "when": moment_label(delivery.sent_at or delivery.claimed_at),
            }
            for delivery in services.unknown_deliveries(broadcast=broadcast, limit=UNKNOWN_LISTED)
        ]
        if list_unknown
        else [],
        "unknown_listed": UNKNOWN_LISTED,
    }


def _archive_entry_url(broadcast: Broadcast) -> str:
    """Where the archive shows the broadcast, "" while it does not."""
    if not broadcast.public or broadcast.state not in ARCHIVED_STATES:
        return ""
    return archive_entry(broadcast, broadcast.account).url


@account_required
def broadcast_progress(request, broadcast_id: int):
    broadcast = _broadcast(request, broadcast_id)
    if broadcast.is_editable:
        return redirect("broadcast_edit", broadcast.id)
    return render(
        request,
        "broadcasts/broadcast_progress.html",
        {
            **_progress_context(request, broadcast),
            "audience": audience.audience_description(broadcast),
            "archive_entry_url": _archive_entry_url(broadcast),
        },
    )


@account_required
def broadcast_public(request, broadcast_id: int):
    """Publishes a broadcast to the archive, or takes it out (the progress page's toggle; a
    draft's editor has the checkbox). Anything but public=1 or 0 changes nothing."""
    broadcast = _broadcast(request, broadcast_id)
    public = request.POST.get("public")
    if request.method == "POST" and public in ("0", "1"):
        services.broadcast_publish(broadcast=broadcast, public=public == "1")
        messages.success(
            request,
            "Published to the archive." if broadcast.public else "Taken out of the archive.",
        )
    if broadcast.is_editable:
        return redirect("broadcast_edit", broadcast.id)
    return _progress_redirect(broadcast)


@account_required
def broadcast_progress_live(request, broadcast_id: int):
    """The progress card; htmx polls it every 2 s while the broadcast is sending."""
    broadcast = _broadcast(request, broadcast_id)
    return render(
        request,
        "broadcasts/partials/progress.html",
        {**_progress_context(request, broadcast), "oob": True},
    )


def _control(action, done: str, unchanged: str):
    """A view for pause/resume: POST runs `action` and says what happened."""

    @account_required
    def view(request, broadcast_id: int):
        broadcast = _broadcast(request, broadcast_id)
        if request.method == "POST":
            if action(broadcast=broadcast):
                messages.success(request, done)
            else:
                messages.info(request, unchanged.format(state=broadcast.get_state_display()))
        return _progress_redirect(broadcast)

    return view


broadcast_pause = _control(
    services.broadcast_pause,
    "Paused. Batches already handed to the mail server finish; nothing else goes out "
    "until you resume.",
    "Not paused: the broadcast is {state}.",
)
broadcast_resume = _control(
    services.broadcast_resume, "Resumed.", "Not resumed: the broadcast is {state}."
)


@account_required
def broadcast_unknown_resend(request, broadcast_id: int):
    """The creator chose to send the unknown deliveries again (the progress page's choice)."""
    broadcast = _broadcast(request, broadcast_id)
    if request.method == "POST":
        try:
            queued = services.broadcast_unknown_resend(broadcast=broadcast)
        except services.ResendRefused as refused:
            messages.error(request, str(refused))
        else:
            if queued:
                messages.success(
                    request,
                    f"{queued:,} email{pluralize(queued)} queued to go out again. Whoever had "
                    "received one gets a second copy.",
                )
            else:
                messages.info(request, "Nothing to send again: no email's outcome is unknown.")
    return _progress_redirect(broadcast)


@account_required
def broadcast_unknown_leave(request, broadcast_id: int):
    """The creator chose to leave the unknown deliveries as they are."""
    broadcast = _broadcast(request, broadcast_id)
    if request.method == "POST" and services.broadcast_unknown_leave(broadcast=broadcast):
        messages.success(request, "Left as they are: nobody gets a second copy.")
    return _progress_redirect(broadcast)


@account_required
def broadcast_cancel(request, broadcast_id: int):
    broadcast = _broadcast(request, broadcast_id)
    if request.method == "POST":
        if services.broadcast_cancel(broadcast=broadcast):
            messages.success(request, "Cancelled. Nobody else will get this broadcast.")
        else:
            messages.info(request, f"Not cancelled: the broadcast is {broadcast.state}.")
        if broadcast.is_editable:
            return redirect("broadcast_edit", broadcast.id)
        return _progress_redirect(broadcast)
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Cancel “{broadcast.name}”?",
            "explanation": "Nobody else will get it. Those who already have it keep it; a "
            "cancelled broadcast cannot be resumed.",
            "button": "Cancel the broadcast",
            "danger": True,
            "cancel_url": reverse("broadcast_progress", args=[broadcast.id]),
        },
    )
