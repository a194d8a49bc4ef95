"""Steps the browser tests share."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from email import policy
from email.parser import BytesParser
from pathlib import Path

from django.conf import settings
from django.core import mail
from playwright.sync_api import Page, expect


def session_share(page: Page, site: str, client) -> None:
    """Logs the browser in as the user of a logged-in Django test `client` (alice_client ...),
    for tests whose subject is not signing up."""
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": site,
            }
        ]
    )


def account_mail_take(to: str, *, timeout: float = 30.0) -> str:
    """The text of the first email to `to`, taken out of the test's mail (Django's outbox, or
    the mail_sink fixture's directory) so that tests counting their messages see only theirs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in list(mail.outbox):
            if to in message.to:
                mail.outbox.remove(message)
                return message.body
        for path in sorted(Path(settings.MAILBOX_DIR).glob("*.eml")):
            message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            if to in [address.addr_spec for address in message["To"].addresses]:
                path.unlink()
                return message.get_body(preferencelist=("plain",)).get_content()
        time.sleep(0.1)
    raise AssertionError(f"No email to {to} arrived within {timeout} s")


def log_in(page: Page, site: str, *, email: str, password: str) -> None:
    """Logs in through the login page, as a returning creator does. Ends on the dashboard."""
    page.goto(f"{site}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def sign_up(page: Page, site: str, *, email: str, account_name: str) -> None:
    """Signs up as a new creator would: the address, then the link in the email, then the
    password and the newsletter's name. Ends on the dashboard."""
    page.goto(f"{site}/signup/")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    link = re.search(r"/signup/finish/\S+/", account_mail_take(email))[0]
    page.goto(site + link)
    expect(page.get_by_text(f"You will log in as {email}")).to_be_visible()
    page.get_by_label("Password").fill("a long enough passphrase 7")
    page.get_by_label("Name of your newsletter or business").fill(account_name)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def build_form(
    page: Page,
    site: str,
    *,
    name: str,
    tag: str,
    double_opt_in: bool = True,
    sequences: Iterable[str] = (),
) -> str:
    """Creates a form through the builder, as a creator would: asks for the first name, sets a
    headline (checked in the live preview), applies `tag` on subscribe, sets double opt-in, adds
    subscribers to the `sequences` named, and saves. Ends on the builder page (embed code
    shown); returns the form's public uid."""
    page.goto(f"{site}/forms/")
    page.get_by_role("link", name="Create form").first.click()
    page.get_by_label("Form name").fill(name)
    page.get_by_role("button", name="Create and edit").click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()

    builder = page.locator("#builder-form")
    preview = page.locator("#form-preview")
    builder.get_by_label("First name", exact=True).check()
    headline = f"Join {name}"
    builder.get_by_label("Headline").fill(headline)
    expect(preview.locator("h2")).to_have_text(headline)
    expect(preview.locator("label", has_text="First name")).to_be_visible()
    builder.get_by_label("Tags", exact=True).fill(tag)
    builder.get_by_role("checkbox", name="Double opt-in").set_checked(double_opt_in)
    for sequence in sequences:
        builder.locator("#sequences").get_by_label(sequence, exact=True).check()
    builder.get_by_role("button", name="Save form").click()
    expect(page.get_by_text("Form saved.")).to_be_visible()
    for sequence in sequences:
        expect(builder.locator("#sequences").get_by_label(sequence, exact=True)).to_be_checked()

    embed_code = page.get_by_label("Embed code")
    expect(embed_code).to_have_value(re.compile(re.escape(headline)))
    uid = re.search(r'data-ck-form="(\w+)"', embed_code.input_value())
    assert uid, "the embed code names its form"
    return uid[1]


def create_sequence(page: Page, site: str, *, name: str) -> None:
    """Creates a sequence from the Sequences page. Ends on the new sequence's page."""
    page.goto(f"{site}/sequences/")
    page.get_by_role("link", name="New sequence").first.click()
    page.get_by_label("Sequence name").fill(name)
    page.get_by_role("button", name="Create sequence").click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()


def write_email(page: Page, *, subject: str, body: str) -> None:
    """Fills the email editor's subject and body (Markdown), and waits for the live preview to
    follow."""
    editor = page.locator("#email-form")
    editor.get_by_label("Subject").fill(subject)
    editor.get_by_label("Markdown").check()
    editor.get_by_label("Body").fill(body)
    expect(page.locator("#broadcast-preview")).to_contain_text(subject)


def publish_sequence_email(page: Page, *, subject: str, body: str, delay_days: int = 0) -> None:
    """On a sequence's page: adds an email at the end, writes it (a subject without Liquid,
    which the pages show as it is), sends it `delay_days` after the previous one (0: at once)
    and publishes it. Ends on the sequence's page."""
    add = page.get_by_role("button", name=re.compile(r"^Add an email( at the end)?$"))
    add.click()
    expect(page.get_by_role("heading", name=re.compile(r"^Email \d+: Untitled$"))).to_be_visible()
    write_email(page, subject=subject, body=body)
    if delay_days:
        timing = page.locator("#timing")
        timing.get_by_label("Delay").fill(str(delay_days))
        timing.get_by_label("Unit").select_option("days")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_text(f"“{subject}” is published.")).to_be_visible()


def messages_in(mailbox) -> list:
    """The messages the SMTP sink (the mail_sink fixture) has stored, oldest first."""
    return [
        BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        for path in sorted(mailbox.glob("*.eml"))
    ]


def wait_for_messages(mailbox, count: int, *, timeout: float = 30.0) -> list:
    """The sink's messages once there are at least `count` (AssertionError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = messages_in(mailbox)
        if len(messages) >= count:
            return messages
        time.sleep(0.1)
    raise AssertionError(f"{len(messages_in(mailbox))} of {count} messages reached the sink")
