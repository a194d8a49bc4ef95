"""The journey of issue 12 in Chromium: a creator builds "joins form → tag → send one email →
wait 1 day → if clicked the pricing link then sequence A else sequence B" in the builder; a
visitor subscribes through the hosted form; the email goes out through the real worker and SMTP
sink; the reader clicks the pricing link in it; the clock moves a day on; and the subscriber
arrives in sequence A: in the builder's counts and on their page."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import Page, expect

from automations.engine import automations_run
from automations.models import Journey
from sequences.models import Sequence, Subscription
from subscribers.signup_forms.services import form_create
from tests.broadcasts.conftest import wait_until
from tests.e2e.steps import session_share, wait_for_messages
from tests.factories import TagFactory
from tests.sequences.conftest import email_add
from tracking.drain import tracking_drain
from tracking.models import DeliveryActivity

READER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)


def _add_step(page: Page, place: str, kind: str, *settings: tuple[str, str, str]) -> None:
    """Opens the "+" named `place`, chooses `kind`, fills its settings ((role, name, value):
    a combobox's option label, or a box's text) and adds the step."""
    page.get_by_role("link", name=f"Add a step {place}").click()
    page.get_by_role("link", name=kind, exact=True).click()
    for role, name, value in settings:
        field = page.locator(".flow-panel").get_by_role(role, name=name)
        if role == "combobox":
            field.select_option(label=value)
        else:
            field.fill(value)
    page.get_by_role("button", name="Add step").click()
    expect(page.locator(".flow-notice")).to_contain_text("Step added")


def test_a_subscriber_who_clicked_the_link_arrives_in_sequence_a(
    site: str, page: Page, settings, mail_sink, alice_client, account_a
):
    settings.SITE_URL = settings.TRACKING_URL = site
    settings.TRACKING_SCANNER_SECONDS = 0
    session_share(page, site, alice_client)
    form = form_create(account=account_a, name="Newsletter", double_opt_in=False)
    TagFactory(account=account_a, name="Lead")
    for name in ("Pricing course", "Nurture course"):
        sequence = Sequence.objects.create(account=account_a, name=name, time_zone="UTC")
        email_add(sequence, subject=f"{name}: lesson one")
    pricing = f"{site}/health/?from=pricing"

    # The creator builds the journey.
    page.goto(f"{site}/automations/")
    page.get_by_role("link", name="New automation").first.click()
    page.get_by_label("Name").fill("Launch")
    page.get_by_role("button", name="Create automation").click()
    page.get_by_role("link", name="Add an entry point").click()
    page.get_by_role("link", name="Joins a form").click()
    page.get_by_label("Form", exact=True).select_option(label="Newsletter")
    page.get_by_role("button", name="Add entry point").click()
    expect(page.locator("#entries")).to_contain_text("Newsletter")
    _add_step(page, "at the start", "Add tag", ("combobox", "Tag", "Lead"))
    page.get_by_role("link", name="Add a step after “Add the tag “Lead””").click()
    page.get_by_role("button", name="Send one email").click()
    # The email step opens its editor: the same as a broadcast's.
    page.get_by_label("Subject").fill("Our prices")
    page.get_by_label("Body").fill(f"Hello,\n\n[See the prices]({pricing}).")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".badge-published")).to_have_text("Ready")
    page.get_by_role("link", name="← Launch").click()
    _add_step(
        page,
        "after “Send “Our prices””",
        "Delay",
        ("spinbutton", "Wait", "1"),
        ("combobox", "Unit", "days"),
    )
    _add_step(
        page,
        "after “Wait 1 day”",
        "Clicked in an email",
        ("combobox", "Email", "Our prices (automation email)"),
        ("combobox", "Which link", pricing),
    )
    condition = f"Clicked {pricing} in “Our prices”?"
    expect(page.locator(".flow-card-condition")).to_contain_text("Clicked")
    _add_step(
        page,
        f"under “Yes” of “{condition}”",
        "Email sequence",
        ("combobox", "Sequence", "Pricing course"),
    )
    _add_step(
        page,
        f"under “No” of “{condition}”",
        "Email sequence",
        ("combobox", "Sequence", "Nurture course"),
    )
    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".badge").first).to_have_text("Active")

    # A visitor subscribes through the hosted form.
    visitor = page.context.browser.new_context(user_agent=READER_AGENT)  # none of alice's cookies
    hosted = visitor.new_page()
    hosted.goto(f"{site}/f/{form.uid}/")
    hosted.get_by_label("Email address").fill("rita@example.org")
    hosted.get_by_role("button", name="Subscribe").click()
    rita = account_a.subscriber_set.get(email="rita@example.org")

    # The engine runs now: tagged, the email handed to the worker, then the wait.
    automations_run()
    (email,) = wait_for_messages(mail_sink, 1)
    assert email["To"].addresses[0].addr_spec == "rita@example.org"
    assert email["Subject"] == "Our prices"
    html = email.get_body(preferencelist=("html",)).get_content()
    (click_url,) = re.findall(rf'href="({re.escape(site)}/t/c/[^"]+)"', html)
    journey = Journey.objects.get(subscriber=rita)
    assert journey.due_at is not None and journey.due_at > timezone.now() + timedelta(hours=23)

    # Rita clicks the pricing link; the drain records her click.
    hosted.goto(click_url)
    expect(hosted).to_have_url(pricing)

    def clicked() -> bool:
        tracking_drain(budget_s=1)
        return DeliveryActivity.objects.filter(
            subscriber_id=rita.pk, link_id__gt=0, first_human_at__isnull=False
        ).exists()

    wait_until(clicked, timeout=15)
    visitor.close()

    # A day later she takes the "yes" branch into the pricing course.
    automations_run(now=timezone.now() + timedelta(days=1, minutes=1))
    course_a = Sequence.objects.get(name="Pricing course")
    assert Subscription.objects.get(subscriber=rita).sequence == course_a

    page.reload()
    step_a = page.locator(".flow-branch-yes .flow-card-sequence")
    expect(step_a.locator(".flow-count")).to_have_text("1 person here")
    expect(page.locator(".flow-branch-no .flow-card-sequence .flow-count")).to_have_text(
        "0 people here"
    )
    page.goto(f"{site}/subscribers/{rita.pk}/")
    automations = page.locator("#automations")
    expect(automations).to_contain_text("Launch")
    expect(automations).to_contain_text("Pricing course")
    expect(automations).to_contain_text("condition")
