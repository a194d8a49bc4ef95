"""The creator's sequence pages: the list, a sequence's page (its emails in order, where its
subscribers stand, each email's figures, its settings, pause and resume), and an email's
editor, which is the broadcast editor's email part (broadcasts.editor: live preview, "preview
as", test send) with when the email goes out. An email's full report is the broadcast report
page, reached under its sequence.

Every object comes through get_for_account (another account's id is a 404); an email through
its sequence, so no URL can pair a sequence with another one's email."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse

from broadcasts import editor
from broadcasts.forms import EMAIL_FIELDS
from broadcasts.models import Broadcast
from convertkit.paging import PAGE_SIZE, page_cursor
from convertkit.tenancy import account_required, get_for_account
from sequences import selectors, services
from sequences.forms import SequenceCreateForm, SequenceEmailForm, SequenceSettingsForm
from sequences.models import Sequence, SequenceEmail
from sequences.services import SequenceInvalid
from subscribers.selectors import account_segments, account_tags
from tracking.views import message_report, message_report_people


def _sequence(request, sequence_id: int) -> Sequence:
    return get_for_account(request, Sequence.objects.select_related("account"), pk=sequence_id)


def _email(request, sequence_id: int, email_id: int, *, deleted: bool = False) -> SequenceEmail:
    """The account's email of that sequence, else 404; a deleted one only when `deleted` (its
    report stays)."""
    emails = SequenceEmail.objects.select_related("sequence__account", "message")
    if not deleted:
        emails = emails.filter(deleted_at__isnull=True)
    email = get_for_account(request, emails, pk=email_id, sequence_id=sequence_id)
    email.message.account = email.sequence.account
    return email


def _detail_redirect(sequence_id: int, anchor: str = ""):
    return redirect(reverse("sequence_detail", args=[sequence_id]) + anchor)


# --- List and create --------------------------------------------------------------------------


@account_required
def sequence_list(request):
    """The list; its subscriber counts come after it has shown (sequence_list_counts), or with
    it for ?counts=1 (a browser without JavaScript)."""
    counts = request.GET.get("counts") == "1"
    page = selectors.sequence_page(
        account=request.account,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
        counts=counts,
    )
    return render(
        request,
        "sequences/sequence_list.html",
        {"page": page, "counts": counts, "ids": ",".join(str(row.id) for row in page.items)},
    )


@account_required
def sequence_list_counts(request):
    """The active subscribers of the list's sequences (?ids=1,2,3, the account's only), each
    swapped into its row by htmx."""
    if not request.htmx:
        return redirect(reverse("sequence_list") + "?counts=1")
    ids = [
        int(pk)
        for pk in request.GET.get("ids", "").split(",")[:PAGE_SIZE]
        if pk.isdigit() and len(pk) < 19
    ]
    counts = selectors.active_counts(account=request.account, sequence_ids=ids)
    return render(request, "sequences/partials/list_counts.html", {"counts": counts.items()})


@account_required
def sequence_create(request):
    form = SequenceCreateForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        sequence = services.sequence_create(account=request.account, name=form.cleaned_data["name"])
        messages.success(request, "Sequence created. Add its first email.")
        return redirect("sequence_detail", sequence.id)
    return render(
        request,
        "sequences/sequence_create.html",
        {"form": form},
        status=400 if form.errors else 200,
    )


# --- A sequence's page ------------------------------------------------------------------------


def _settings_form(request, sequence: Sequence, data=None) -> SequenceSettingsForm:
    return SequenceSettingsForm(
        data,
        tags=[(tag.id, tag.name) for tag in account_tags(account=request.account)],
        segments=account_segments(account=request.account),
        sequences=list(
            Sequence.objects.filter(account=request.account)
            .exclude(pk=sequence.pk)
            .order_by("name", "id")
            .values_list("id", "name")
        ),
        initial=SequenceSettingsForm.initial_for(sequence),
    )


def _subscribers_context(sequence: Sequence, emails: list | None = None) -> dict:
    """Where the subscribers stand: counts by state, the excluded, the next due, the chart
    (`emails`: the page's email rows, when it has them)."""
    status = selectors.sequence_status(sequence=sequence, emails=emails)
    return {
        "status": status,
        "chart": selectors.position_chart(rows=status.emails, counts=status.counts),
    }


def _render_detail(request, sequence: Sequence, form: SequenceSettingsForm, *, refused: str = ""):
    """The page: the emails with their figures and the settings at once; where the
    subscribers stand after it has shown (sequence_subscribers: counting a million
    subscriptions takes a moment), or with it for ?figures=1 (without JavaScript)."""
    state_class, state_label = selectors.state_label(sequence)
    figures = request.GET.get("figures") == "1"
    emails = selectors.email_rows(sequence=sequence)
    return render(
        request,
        "sequences/sequence_detail.html",
        {
            "sequence": sequence,
            "state_class": state_class,
            "state_label": state_label,
            "emails": emails,
            "send_time": selectors.send_time_label(sequence),
            "figures": figures,
            **(_subscribers_context(sequence, emails) if figures else {}),
            "form": form,
            "refused": refused,
        },
        status=400 if form.errors or refused else 200,
    )


@account_required
def sequence_detail(request, sequence_id: int):
    sequence = _sequence(request, sequence_id)
    return _render_detail(request, sequence, _settings_form(request, sequence))


@account_required
def sequence_subscribers(request, sequence_id: int):
    """Where the sequence's subscribers stand, fetched by htmx once its page has shown."""
    sequence = _sequence(request, sequence_id)
    if not request.htmx:
        return redirect(reverse("sequence_detail", args=[sequence.id]) + "?figures=1#subscribers")
    return render(
        request,
        "sequences/partials/subscribers.html",
        {"sequence": sequence, **_subscribers_context(sequence)},
    )


@account_required
def sequence_settings(request, sequence_id: int):
    """Saves the settings form of the sequence page; errors are shown on it, nothing saved."""
    sequence = _sequence(request, sequence_id)
    if request.method != "POST":
        return _detail_redirect(sequence.id, "#settings")
    form = _settings_form(request, sequence, request.POST)
    if not form.is_valid():
        return _render_detail(request, sequence, form)
    try:
        services.sequence_update(sequence=sequence, **form.values())
    except SequenceInvalid as invalid:
        sequence.refresh_from_db()
        return _render_detail(request, sequence, form, refused=str(invalid))
    if sequence.send_days:
        messages.success(request, "Settings saved.")
    else:
        messages.warning(
            request,
            "Settings saved. With no send day nobody gets anything: the sequence is paused "
            "until you choose one.",
        )
    return _detail_redirect(sequence.id)


def _control(action, done: str, unchanged: str):
    """A view for pause/resume: POST runs `action` and says what happened."""

    @account_required
    def view(request, sequence_id: int):
        sequence = _sequence(request, sequence_id)
        if request.method == "POST":
            if action(sequence=sequence):
                messages.success(request, done)
            else:
                messages.info(request, unchanged)
        return _detail_redirect(sequence.id)

    return view


sequence_pause = _control(
    services.sequence_pause,
    "Paused. Everyone stays where they are until you resume.",
    "The sequence was already paused.",
)
sequence_resume = _control(
    services.sequence_resume,
    "Resumed. Everyone goes on from where they were.",
    "The sequence was already active.",
)


# --- Emails -----------------------------------------------------------------------------------


@account_required
def email_create(request, sequence_id: int):
    """A new draft email at the end, or right after the email `after` (POST), opened in the
    editor."""
    sequence = _sequence(request, sequence_id)
    if request.method != "POST":
        return _detail_redirect(sequence.id)
    after = None
    after_id = request.POST.get("after", "")
    if after_id:
        if not after_id.isdigit() or len(after_id) > 18:
            return _detail_redirect(sequence.id)
        after = _email(request, sequence.id, int(after_id))
    try:
        email = services.email_create(
            sequence=sequence, after=after, body_format=Broadcast.BodyFormat.VISUAL
        )
    except SequenceInvalid as invalid:
        messages.error(request, str(invalid))
        return _detail_redirect(sequence.id)
    return redirect("sequence_email_edit", sequence.id, email.id)


def _email_form(email: SequenceEmail, data=None) -> SequenceEmailForm:
    return SequenceEmailForm(
        data, account=email.message.account, initial=SequenceEmailForm.initial_for(email)
    )


def _render_editor(
    request,
    email: SequenceEmail,
    form: SequenceEmailForm,
    *,
    refused: str | list[str] = "",
    previewing: bool = False,
    saved_problems: list[str] | None = None,
):
    """`saved_problems`, when the caller has just read them (email_problems renders the
    email), saves reading them again."""
    sequence = email.sequence
    rows = selectors.email_rows(sequence=sequence, figures=False)
    row = next(row for row in rows if row.email.pk == email.pk)
    if saved_problems is None:
        saved_problems = [] if email.published else services.email_problems(email)
    context = {
        "sequence": sequence,
        "email": email,
        "row": row,
        "first": row.position == 1,
        "form": form,
        "sequence_days": selectors.days_phrase(sequence.send_days),
        "refused": [refused] if isinstance(refused, str) and refused else refused,
        "saved_problems": saved_problems,
        "previewing": previewing,
        "suggested_emails": editor.suggested_emails(request.account),
        "autosave_url": ""
        if email.published
        else reverse("sequence_email_autosave", args=[sequence.id, email.id]),
        **editor.preview_context(request, form, email.message),
    }
    failed = (form.errors or refused) and not previewing
    return render(request, "sequences/email_edit.html", context, status=400 if failed else 200)


def _save(request, email: SequenceEmail) -> tuple[SequenceEmailForm, str]:
    """Saves the editor's posted values: the form, and why nothing was saved ("" when saved,
    or when the form has errors of its own to show)."""
    form = _email_form(email, request.POST)
    if not form.is_valid():
        return form, "Nothing was saved. Please correct the parts marked below."
    try:
        services.email_update(email=email, values=form.values())
    except SequenceInvalid as invalid:
        email.message.refresh_from_db()
        return form, f"Nothing was saved: this email is published, and {invalid}"
    return form, ""


@account_required
def email_edit(request, sequence_id: int, email_id: int):
    email = _email(request, sequence_id, email_id)
    if request.method == "POST":
        form, refused = _save(request, email)
        if not refused:
            messages.success(request, "Saved.")
            return redirect("sequence_email_edit", sequence_id, email.id)
        return _render_editor(request, email, form, refused=refused)
    return _render_editor(request, email, _email_form(email))


@account_required
def email_autosave(request, sequence_id: int, email_id: int):
    """Saves a draft email's content (never its timing) in the background, as JSON for the
    editor's autosave; a published email is refused (Save updates it, checked and frozen)."""
    email = _email(request, sequence_id, email_id)

    def save(values: dict) -> str:
        try:
            services.email_content_update(email=email, **values)
        except SequenceInvalid as invalid:
            return str(invalid)
        return ""

    return editor.autosave(
        request, _email_form(email, request.POST), fields=EMAIL_FIELDS, save=save
    )


@account_required
def email_preview(request, sequence_id: int, email_id: int):
    """The live preview of the editor's unsaved values; never saves (as broadcast_preview)."""
    email = _email(request, sequence_id, email_id)
    if request.method != "POST":
        return redirect("sequence_email_edit", sequence_id, email.id)
    form = _email_form(email, request.POST)
    if not request.htmx:
        return _render_editor(request, email, form, previewing=True)
    return render(
        request,
        "broadcasts/partials/preview.html",
        editor.preview_context(request, form, email.message),
    )


@account_required
def email_test(request, sequence_id: int, email_id: int):
    """Saves the editor's values, then sends a test copy to the creator's own address."""
    email = _email(request, sequence_id, email_id)
    if request.method != "POST":
        return redirect("sequence_email_edit", sequence_id, email.id)
    form, refused = _save(request, email)
    refused = refused or editor.test_send(request, email.message)
    if refused:
        return _render_editor(request, email, form, refused=refused)
    return redirect("sequence_email_edit", sequence_id, email.id)


@account_required
def email_publish(request, sequence_id: int, email_id: int):
    """Publishes the email (saving the editor's values first when they are posted); what stops
    it is listed on the editor, line-numbered for Liquid, and nothing is published."""
    email = _email(request, sequence_id, email_id)
    if request.method != "POST":
        return redirect("sequence_email_edit", sequence_id, email.id)
    form = _email_form(email)
    if "subject" in request.POST:
        form, refused = _save(request, email)
        if refused:
            return _render_editor(request, email, form, refused=refused)
        form = _email_form(email)
    try:
        services.email_publish(email=email)
    except SequenceInvalid as invalid:
        if not invalid.problems:
            return _render_editor(request, email, form, refused=f"Not published: {invalid}")
        return _render_editor(
            request,
            email,
            form,
            refused=["Not published. Fix these first:", *invalid.problems],
            saved_problems=invalid.problems,
        )
    messages.success(request, f"“{email.message.name}” is published.")
    return _detail_redirect(sequence_id, f"#email-{email.id}")


@account_required
def email_unpublish(request, sequence_id: int, email_id: int):
    """Back to draft (after saving the editor's values, when posted): skipped from now on."""
    email = _email(request, sequence_id, email_id)
    if request.method != "POST":
        return redirect("sequence_email_edit", sequence_id, email.id)
    if "subject" in request.POST:
        form, refused = _save(request, email)
        if refused:
            return _render_editor(request, email, form, refused=refused)
    services.email_unpublish(email=email)
    messages.success(
        request,
        f"“{email.message.name}” is a draft again: nobody gets it; whoever waited for it moves "
        "on to the next email.",
    )
    return _detail_redirect(sequence_id, f"#email-{email.id}")


@account_required
def email_move(request, sequence_id: int, email_id: int):
    email = _email(request, sequence_id, email_id)
    if request.method == "POST" and request.POST.get("direction") in ("up", "down"):
        try:
            services.email_move(email=email, up=request.POST["direction"] == "up")
        except SequenceInvalid as invalid:
            messages.error(request, str(invalid))
    return _detail_redirect(sequence_id, f"#email-{email.id}")


@account_required
def email_delete(request, sequence_id: int, email_id: int):
    email = _email(request, sequence_id, email_id)
    if request.method == "POST":
        services.email_delete(email=email)
        messages.success(request, f"“{email.message.name}” was deleted.")
        return _detail_redirect(sequence_id, "#emails")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete “{email.message.name}”?",
            "explanation": "It leaves the sequence: nobody else gets it, and whoever waits for "
            "it moves on to the next email. Its report stays with what was sent.",
            "button": "Delete email",
            "danger": True,
            "cancel_url": reverse("sequence_email_edit", args=[sequence_id, email.id]),
        },
    )


# --- An email's report ------------------------------------------------------------------------


def _report_url(email: SequenceEmail) -> str:
    return reverse("sequence_email_report", args=[email.sequence_id, email.id])


def _reported_email(request, sequence_id: int, email_id: int) -> SequenceEmail | None:
    """The email, or None while it never went out (a draft has nothing to report)."""
    email = _email(request, sequence_id, email_id, deleted=True)
    return email if email.message.frozen_html else None


@account_required
def email_report(request, sequence_id: int, email_id: int):
    email = _reported_email(request, sequence_id, email_id)
    if email is None:
        return redirect("sequence_email_edit", sequence_id, email_id)
    if email.deleted_at:
        status = ("cancelled", "Deleted")
    else:
        status = ("published", "Published") if email.published else ("draft", "Draft")
    return message_report(
        request,
        email.message,
        report_url=_report_url(email),
        back_url=reverse("sequence_detail", args=[sequence_id]) + f"#email-{email.id}",
        back_label=email.sequence.name,
        status=status,
    )


@account_required
def email_report_people(request, sequence_id: int, email_id: int, kind: str):
    email = _reported_email(request, sequence_id, email_id)
    if email is None:
        return redirect("sequence_email_edit", sequence_id, email_id)
    return message_report_people(request, email.message, kind, report_url=_report_url(email))
