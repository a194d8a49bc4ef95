"""A creator's email course from end to end, in Chromium with a real worker and a real SMTP sink:
alice logs in, writes a three-email sequence (at once, a day later, two days after that),
attaches it to a double opt-in form; a visitor subscribes on the hosted page and confirms from
the email; the scheduler runs on a clock the test moves (no sleeping for days): email 1 goes out
at once, email 2 at the next 9:00 in the sequence's zone a day later, email 3 not yet; then
alice reads where everyone stands on the sequence's page and on the subscriber's page."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone
from playwright.sync_api import Locator, Page, expect

from broadcasts.models import Delivery
from sequences.engine import sequences_advance
from sequences.models import SequenceEmail
from tests.broadcasts.conftest import wait_until
from tests.conftest import PASSWORD
from tests.e2e.steps import (
    build_form,
    create_sequence,
    log_in,
    messages_in,
    publish_sequence_email,
    wait_for_messages,
)

CONFIRM_URL_RE = re.compile(r"(http://\S+/f/confirm/\S+/)")
COURSE = "Soup school"
# (subject, body, days after the previous email)
EMAILS = [
    ("Welcome to soup school", "Hello {{ subscriber.first_name }}, lesson one comes tomorrow.", 0),
    ("Lesson one: stock", "Bones, water, **time**.", 1),
    ("Lesson two: seasoning", "Salt late.", 2),
]


def stat(email_card: Locator, label: str) -> Locator:
    """The figure `label` (Sent, Opens...) of an email on the sequence page."""
    term = email_card.page.locator("dt").get_by_text(label, exact=True)
    return email_card.locator(".sequence-email-stats > div").filter(has=term).locator("dd")


def sent_to(subscriber, position: int) -> bool:
    """Whether the pipeline recorded email `position` (1-based) as sent to the subscriber."""
    email = SequenceEmail.objects.filter(sequence__name=COURSE).order_by("sort_key")[position - 1]
    return Delivery.objects.filter(
        broadcast_id=email.message_id, subscriber=subscriber, state=Delivery.State.SENT
    ).exists()


def test_a_three_email_course_through_a_form_sends_on_the_clock_and_reports(
    site: str, page: Page, settings, mail_sink, alice, account_a
):
    settings.SITE_URL = site
    log_in(page, site, email=alice.email, password=PASSWORD)

    # The course: three emails, published.
    create_sequence(page, site, name=COURSE)
    expect(page.get_by_text("Sends every day at 09:00 (Europe/Paris).")).to_be_visible()
    for subject, body, days in EMAILS:
        publish_sequence_email(page, subject=subject, body=body, delay_days=days)
    emails = page.locator(".sequence-email")
    expect(emails).to_have_count(3)
    for card, when in zip(
        emails.all(),
        ["Immediately", "1 day after the previous email", "2 days after the previous email"],
        strict=True,
    ):
        expect(card.locator(".sequence-email-when")).to_have_text(when)
        expect(card.locator(".badge")).to_have_text("Published")

    # The form that adds to it, with double opt-in.
    uid = build_form(
        page, site, name="Soup course", tag="course", double_opt_in=True, sequences=[COURSE]
    )

    # A visitor subscribes on the hosted page, and confirms from the email.
    visitor = page.context.browser.new_context()  # none of alice's cookies
    hosted = visitor.new_page()
    hosted.goto(f"{site}/f/{uid}/")
    hosted.get_by_label("Email address").fill("rita@example.org")
    hosted.get_by_label("First name").fill("Rita")
    hosted.get_by_role("button", name="Subscribe").click()
    expect(hosted.get_by_text("Now check your email to confirm")).to_be_visible()
    # Until she confirms, she waits in the sequence, counted as unconfirmed, and gets nothing.
    assert sequences_advance(now=timezone.now()).sent == 0
    page.goto(f"{site}/sequences/")
    page.get_by_role("link", name=COURSE).click()
    expect(page.locator("#count-unconfirmed .stat")).to_have_text("1")
    expect(page.locator("#count-active .stat")).to_have_text("0")
    (confirmation,) = wait_for_messages(mail_sink, 1)
    assert confirmation["To"].addresses[0].addr_spec == "rita@example.org"
    body = confirmation.get_body(preferencelist=("plain",)).get_content()
    hosted.goto(CONFIRM_URL_RE.search(body)[1])
    expect(hosted.get_by_role("heading", name="You are subscribed")).to_be_visible()
    rita = account_a.subscriber_set.get(email="rita@example.org")

    # The scheduler at the time of confirming: email 1, through the worker to the sink.
    entered = timezone.now()
    assert sequences_advance(now=entered).sent == 1
    welcome = wait_for_messages(mail_sink, 2)[1]
    assert welcome["To"].addresses[0].addr_spec == "rita@example.org"
    assert welcome["Subject"] == "Welcome to soup school"
    assert (
        "Hello Rita, lesson one comes tomorrow."
        in welcome.get_body(preferencelist=("plain",)).get_content()
    )
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = re.search(r"<(http[^>]+)>", welcome["List-Unsubscribe"])[1]
    assert unsubscribe_url.startswith(f"{site}/")
    assert "<mailto:" in welcome["List-Unsubscribe"]
    assert unsubscribe_url in welcome.get_body(preferencelist=("plain",)).get_content()

    # A day later, at the send hour in the sequence's zone: email 2; not a minute before.
    paris = ZoneInfo("Europe/Paris")
    lesson_one_at = datetime.combine(
        entered.astimezone(paris).date() + timedelta(days=1), time(9), tzinfo=paris
    )
    assert sequences_advance(now=lesson_one_at - timedelta(minutes=1)).sent == 0
    assert sequences_advance(now=lesson_one_at).sent == 1
    lesson_one = wait_for_messages(mail_sink, 3)[2]
    assert lesson_one["Subject"] == "Lesson one: stock"
    assert lesson_one["To"].addresses[0].addr_spec == "rita@example.org"
    # Email 3 waits its two days: nothing a minute before, and nothing reached the sink.
    lesson_two_at = datetime.combine(
        lesson_one_at.date() + timedelta(days=2), time(9), tzinfo=paris
    )
    assert sequences_advance(now=lesson_two_at - timedelta(minutes=1)).sent == 0
    wait_until(lambda: sent_to(rita, 1) and sent_to(rita, 2))
    assert len(messages_in(mail_sink)) == 3

    # The report: where the subscribers stand arrives by htmx after the page.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sequences").click()
    course = page.get_by_role("row", name=COURSE)
    expect(course.locator("td[data-label=Subscribers]")).to_have_text("1")
    course.get_by_role("link", name=COURSE).click()
    expect(page.get_by_role("heading", name=COURSE, exact=True)).to_be_visible()
    expect(page.locator("#count-active .stat")).to_have_text("1")
    expect(page.locator("#count-unconfirmed .stat")).to_have_text("0")
    expect(page.locator("#count-completed .stat")).to_have_text("0")
    expect(page.locator("#subscriber-figures")).to_contain_text(
        f"Next email due {lesson_two_at.day} {lesson_two_at:%b %Y}, 09:00 (Europe/Paris)."
    )
    expect(stat(emails.nth(0), "Sent")).to_have_text("1")
    expect(stat(emails.nth(1), "Sent")).to_have_text("1")
    expect(stat(emails.nth(2), "Sent")).to_have_text("0")

    # The subscriber's page: in the course, after email 2, email 3 due two days later at 9:00.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Subscribers").click()
    page.locator("#subscriber-results").get_by_role("link", name="rita@example.org").click()
    row = page.locator("#sequences").get_by_role("row", name=re.compile(COURSE))
    expect(row.locator("td[data-label=State]")).to_have_text("Active")
    expect(row.locator("td[data-label='Where they are']")).to_have_text("after email 2 of 3")
    expect(row.locator("td[data-label='Next email'] time")).to_contain_text(
        f"{lesson_two_at:%a} {lesson_two_at.day} {lesson_two_at:%b %Y}, 09:00"
    )
    visitor.close()
