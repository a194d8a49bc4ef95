"""What the editors of a broadcast and of a sequence email share: the live preview (as a sample
subscriber, or as one the creator names in "Preview as"), the test sent to the creator, and the
draft's autosave.

Both edit the content of a Broadcast row (a sequence email's is its message) through an
EmailForm (broadcasts.forms), and both pages include the same template parts
(broadcasts/partials/email_fields.html, preview_pane.html, preview.html)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.utils import timezone

from broadcasts import rendering, services
from broadcasts.forms import EmailForm
from broadcasts.models import Broadcast
from subscribers.models import Subscriber
from subscribers.validation import normalize_email

# Addresses offered in the "preview as" picker; any other subscriber's address can be typed.
PICKER_SUGGESTIONS = 20
PART_LABELS = {"subject": "Subject", "preview_text": "Preview text", "body": "Body"}
TEST_REFUSED = "Saved, but no test was sent: fix the template problems shown in the preview first."


def preview_subscriber(request) -> tuple[Subscriber | None, str]:
    """The subscriber whose data the preview uses (the "preview as" address), or None for the
    sample one; and a note for the creator when the address finds nobody."""
    typed = (request.POST.get("preview_email") or "").strip()
    if not typed:
        return None, ""
    try:
        email = normalize_email(typed)
    except ValidationError:
        return None, f"“{typed[:80]}” is not an email address: showing sample data."
    subscriber = Subscriber.objects.filter(account=request.account, email=email).first()
    if subscriber is None:
        return None, f"No subscriber has the address {email}: showing sample data."
    return subscriber, ""


def preview_context(request, form: EmailForm, message: Broadcast) -> dict:
    """What broadcasts/partials/preview.html shows: the form's values (saved or not) rendered
    for the chosen subscriber, and the template's problems, line-numbered."""
    subscriber, note = preview_subscriber(request)
    preview = rendering.preview(form.draft(message), subscriber)
    return {
        "preview": preview,
        "problems": [
            {
                "where": PART_LABELS.get(problem.part, problem.part)
                + (f", line {problem.line}" if problem.line else ""),
                "message": problem.message,
            }
            for problem in preview.problems
        ],
        "preview_subscriber": subscriber,
        "preview_email": request.POST.get("preview_email", ""),
        "preview_note": note,
        "invalid_labels": form.invalid_labels if form.is_bound else [],
    }


def suggested_emails(account) -> list[str]:
    """The addresses the "Preview as" picker offers: the newest active subscribers'."""
    return list(
        Subscriber.objects.filter(account=account, state=Subscriber.State.ACTIVE)
        .order_by("-id")
        .values_list("email", flat=True)[:PICKER_SUGGESTIONS]
    )


def test_send(request, message: Broadcast) -> str:
    """Queues a test of the saved message to the creator's own address, as the "Preview as"
    subscriber (sample data when none) and says so; or returns why it was not sent."""
    if rendering.broadcast_problems(message):
        return TEST_REFUSED
    subscriber, _note = preview_subscriber(request)
    services.broadcast_send_test(
        broadcast=message, to_email=request.user.email, subscriber=subscriber
    )
    messages.success(request, f"Saved. A test is on its way to {request.user.email}.")
    return ""


def autosave(
    request, form: EmailForm, *, fields: tuple[str, ...], save: Callable[[dict], str]
) -> JsonResponse:
    """The autosave endpoints' answer (static/editor's autosave.js shows it by the Save
    button): the posted content validated by the editor's own form; when the `fields` are
    valid, `save(values)` saves them and returns "" or why it refused. Other fields (audience,
    timing) are neither checked nor saved: the Save button does that.

    200 {"saved": true, "saved_at": "14:03"}; 400 (invalid content) or 409 (refused)
    {"saved": false, "error": "..."}; nothing is saved unless saved is true."""
    if request.method != "POST":
        return JsonResponse({"saved": False, "error": "Autosave takes a POST."}, status=405)
    form.is_valid()
    problems = [
        f"{form.fields[name].label}: {error}"
        for name in fields
        for error in form.errors.get(name, [])
    ]
    if problems:
        return JsonResponse({"saved": False, "error": " ".join(problems)}, status=400)
    refused = save({name: form.cleaned_data[name] for name in fields})
    if refused:
        return JsonResponse({"saved": False, "error": refused}, status=409)
    return JsonResponse({"saved": True, "saved_at": f"{timezone.localtime():%H:%M}"})
