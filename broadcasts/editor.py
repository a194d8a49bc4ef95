"""What the editors of a broadcast and of a sequence email share: the live preview (as a sample
subscriber, or as one the creator names in "Preview as") and the test sent to the creator.

Both edit the content of a Broadcast row (a sequence email's is its message) through an
EmailForm (broadcasts.forms), and both pages include the same template parts
(broadcasts/partials/email_fields.html, preview_pane.html, preview.html)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError

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
