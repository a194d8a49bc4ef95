"""The mail path to subscribers: sender, unsubscribe headers, footer, suppression, the task."""

from __future__ import annotations

import time
from email import policy
from email.parser import BytesParser

import django
import pytest
from django.core import mail
from django.test import override_settings

from convertkit.dev.devstack import free_port
from convertkit.dev.mailsink import sink_start
from subscribers.mail import (
    PostalAddressMissing,
    SubscriberNotMailable,
    subscriber_email_build,
)
from subscribers.models import Subscriber
from subscribers.services import subscriber_unsubscribe
from subscribers.tasks import send_subscriber_email
from subscribers.unsubscribe import unsubscribe_token
from tests.factories import AccountFactory, SubscriberFactory


def _mailers(backend: str, **options) -> dict:
    """Settings that point the default mail backend at `backend`, for Django 6.1+ and older."""
    if django.VERSION >= (6, 1):
        return {"MAILERS": {"default": {"BACKEND": backend, "OPTIONS": options}}}
    return {"EMAIL_BACKEND": backend, **{f"EMAIL_{k.upper()}": v for k, v in options.items()}}


@pytest.fixture
def account(db):
    return AccountFactory(
        name="Ann's Notes",
        sender_name="Ann Example",
        sender_email="ann@news.example.com",
        postal_address="1 Main Street\nSpringfield",
    )


@pytest.fixture
def reader(account):
    return SubscriberFactory(account=account, email="reader@example.org", first_name="Rita")


def _parsed(message) -> object:
    return BytesParser(policy=policy.default).parsebytes(message.message().as_bytes())


def _parts(parsed) -> tuple[str, str]:
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    html = parsed.get_body(preferencelist=("html",)).get_content()
    return text, html


def test_message_comes_from_the_account_with_unsubscribe_headers_and_footer(reader, settings):
    settings.SITE_URL = "https://mail.example.com"
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@mail.example.com"
    token = unsubscribe_token(subscriber=reader)

    message = subscriber_email_build(
        subscriber=reader,
        subject="Confirm your subscription",
        text_body="Please confirm.",
        html_body="<html><body><p>Please confirm.</p></body></html>",
    )
    parsed = _parsed(message)

    assert parsed["From"] == "Ann Example <ann@news.example.com>"
    assert parsed["To"] == "Rita <reader@example.org>"
    assert message.recipients() == ["Rita <reader@example.org>"]
    assert parsed["Subject"] == "Confirm your subscription"
    expected = (
        f"<https://mail.example.com/u/{token}/>, <mailto:unsubscribe+{token}@mail.example.com>"
    )
    assert message.extra_headers["List-Unsubscribe"] == expected
    # The long value is folded onto the next line, which unfolds to one leading space.
    assert parsed["List-Unsubscribe"].strip() == expected
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Message-ID"].startswith("<") and parsed["Message-ID"].endswith(
        "@mail.example.com>"
    )
    text, html = _parts(parsed)
    assert text.startswith("Please confirm.")
    assert "Ann's Notes" in text and "1 Main Street\nSpringfield" in text
    assert f"https://mail.example.com/u/{token}/" in text
    assert "1 Main Street<br>Springfield" in html
    assert f'href="https://mail.example.com/u/{token}/"' in html
    # The footer goes inside the body, not after the closing tags.
    assert html.index("Springfield") < html.index("</body>")


def test_message_id_given_by_the_caller_is_kept(reader):
    message = subscriber_email_build(
        subscriber=reader,
        subject="Hi",
        text_body="Hello",
        message_id="<confirm-42@mail.example.com>",
    )

    assert _parsed(message)["Message-ID"] == "<confirm-42@mail.example.com>"


def test_generated_message_ids_differ_per_message(reader):
    first = subscriber_email_build(subscriber=reader, subject="Hi", text_body="Hello")
    second = subscriber_email_build(subscriber=reader, subject="Hi", text_body="Hello")

    assert first.extra_headers["Message-ID"] != second.extra_headers["Message-ID"]


def test_postal_address_with_markup_is_escaped_in_the_html_part(account, reader):
    account.postal_address = "<script>alert('x')</script> 2 Side St & Co"
    account.save()

    message = subscriber_email_build(
        subscriber=reader, subject="Hi", text_body="Hello", html_body="<p>Hello</p>"
    )
    text, html = _parts(_parsed(message))

    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; 2 Side St &amp; Co" in html
    assert "<script>alert('x')</script> 2 Side St & Co" in text


def test_account_without_sender_address_sends_from_the_default(account, reader, settings):
    settings.DEFAULT_FROM_EMAIL = "ConvertKit <noreply@mail.example.com>"
    account.sender_email = ""
    account.save()

    message = subscriber_email_build(subscriber=reader, subject="Hi", text_body="Hello")

    assert _parsed(message)["From"] == "ConvertKit <noreply@mail.example.com>"


@pytest.mark.parametrize(
    "sender_name",
    [
        "Ann\r\nBcc: victim@evil.example",
        "Ann\nBcc: victim@evil.example",
        "Ann\rBcc: victim@evil.example",
    ],
)
def test_line_breaks_in_the_sender_name_cannot_add_a_header(account, reader, sender_name):
    account.sender_name = sender_name
    account.save()

    message = subscriber_email_build(subscriber=reader, subject="Hi", text_body="Hello")
    parsed = _parsed(message)

    assert parsed["Bcc"] is None
    assert parsed["From"].addresses[0].addr_spec == "ann@news.example.com"
    assert parsed["From"].addresses[0].display_name == "Ann Bcc: victim@evil.example"
    assert message.recipients() == ["Rita <reader@example.org>"]


def test_quotes_and_commas_in_names_stay_inside_the_display_name(account):
    account.sender_name = 'Ann "The Boss", <Example>'
    account.save()
    reader = SubscriberFactory(account=account, email="zoe@example.org", first_name="Zoë, Jr.")

    parsed = _parsed(subscriber_email_build(subscriber=reader, subject="Hi", text_body="Hello"))

    (sender,) = parsed["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        'Ann "The Boss", <Example>',
        "ann@news.example.com",
    )
    (recipient,) = parsed["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == ("Zoë, Jr.", "zoe@example.org")


@pytest.mark.parametrize(
    "subject", ["Hi\r\nBcc: victim@evil.example", "Hi\nBcc: x@y.z", "Hi\rthere"]
)
def test_subject_with_a_line_break_is_refused(reader, subject):
    with pytest.raises(ValueError, match="line break"):
        subscriber_email_build(subscriber=reader, subject=subject, text_body="Hello")


def test_message_id_with_a_line_break_is_refused(reader):
    with pytest.raises(ValueError, match="line break"):
        subscriber_email_build(
            subscriber=reader,
            subject="Hi",
            text_body="Hello",
            message_id="<a@b>\r\nBcc: victim@evil.example",
        )


@pytest.mark.parametrize(
    "state",
    [Subscriber.State.UNSUBSCRIBED, Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED],
)
def test_suppressed_subscriber_gets_no_message(account, state):
    suppressed = SubscriberFactory(account=account, state=state)

    with pytest.raises(SubscriberNotMailable, match=str(state)):
        subscriber_email_build(subscriber=suppressed, subject="Hi", text_body="Hello")


@pytest.mark.parametrize("state", [Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED])
def test_the_allowance_for_a_re_signup_confirmation_never_reaches_bounced_or_complained(
    account, state
):
    suppressed = SubscriberFactory(account=account, state=state)

    with pytest.raises(SubscriberNotMailable):
        subscriber_email_build(
            subscriber=suppressed, subject="Confirm", text_body="Hi", to_unsubscribed=True
        )


def test_unsubscribed_subscriber_who_signed_up_again_can_get_the_confirmation(account):
    unsubscribed = SubscriberFactory(account=account, state=Subscriber.State.UNSUBSCRIBED)

    message = subscriber_email_build(
        subscriber=unsubscribed, subject="Confirm", text_body="Hi", to_unsubscribed=True
    )

    assert message.recipients() == [f"{unsubscribed.first_name} <{unsubscribed.email}>"]


def test_unconfirmed_subscriber_can_get_the_confirmation(account):
    unconfirmed = SubscriberFactory(account=account, state=Subscriber.State.UNCONFIRMED)

    message = subscriber_email_build(subscriber=unconfirmed, subject="Confirm", text_body="Hi")

    assert message.recipients() == [f"{unconfirmed.first_name} <{unconfirmed.email}>"]


@pytest.mark.parametrize("postal_address", ["", "  \n "])
def test_account_without_postal_address_sends_nothing(account, reader, postal_address):
    account.postal_address = postal_address
    account.save()

    with pytest.raises(PostalAddressMissing, match="postal address"):
        subscriber_email_build(subscriber=reader, subject="Hi", text_body="Hello")


def test_task_sends_to_an_active_subscriber(reader):
    send_subscriber_email.apply(args=[reader.pk, "Welcome", "Hello"], throw=True)

    (sent,) = mail.outbox
    assert sent.subject == "Welcome"
    assert sent.to == ["Rita <reader@example.org>"]


def test_subscriber_who_unsubscribes_after_the_send_was_queued_gets_nothing(celery_worker_start):
    account = AccountFactory()
    leaving = SubscriberFactory(account=account, email="leaving@example.org")
    staying = SubscriberFactory(account=account, email="staying@example.org")
    mail.outbox = []

    send_subscriber_email.delay(leaving.pk, "For the one who left", "Hello")
    subscriber_unsubscribe(subscriber=leaving, reason="clicked the link")
    # Queued after, and the worker runs one task at a time in order: once this one has arrived,
    # the first has been handled.
    send_subscriber_email.delay(staying.pk, "For the one who stayed", "Hello")
    with celery_worker_start(pool="solo"):
        deadline = time.monotonic() + 30
        while not mail.outbox and time.monotonic() < deadline:
            time.sleep(0.05)

    assert [message.subject for message in mail.outbox] == ["For the one who stayed"]
    assert mail.outbox[0].to == [f"{staying.first_name} <staying@example.org>"]


def test_task_for_a_deleted_subscriber_sends_nothing(reader):
    reader_id = reader.pk
    reader.delete()

    send_subscriber_email.apply(args=[reader_id, "Welcome", "Hello"], throw=True)

    assert mail.outbox == []


def test_task_for_an_account_without_postal_address_sends_nothing(account, reader):
    account.postal_address = ""
    account.save()

    send_subscriber_email.apply(args=[reader.pk, "Welcome", "Hello"], throw=True)

    assert mail.outbox == []


def test_headers_arrive_intact_through_smtp(account, reader, tmp_path, settings):
    settings.SITE_URL = "https://mail.example.com"
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@mail.example.com"
    account.sender_name = 'Ann "Notes" Example'
    account.postal_address = "1 Main Street <Suite 5>\nSpringfield"
    account.save()
    token = unsubscribe_token(subscriber=reader)
    port = free_port()
    controller = sink_start(port=port, mailbox_dir=tmp_path)
    try:
        with override_settings(
            **_mailers("django.core.mail.backends.smtp.EmailBackend", host="127.0.0.1", port=port)
        ):
            send_subscriber_email.apply(
                args=[reader.pk, "Your free guide", "Here it is.", "<p>Here it is.</p>"],
                kwargs={"message_id": "<guide-7@mail.example.com>"},
                throw=True,
            )
    finally:
        controller.stop()

    (stored,) = tmp_path.glob("*.eml")
    received = BytesParser(policy=policy.default).parsebytes(stored.read_bytes())
    assert received["X-RcptTo"] == "reader@example.org"
    assert received["From"].addresses[0].display_name == 'Ann "Notes" Example'
    assert received["From"].addresses[0].addr_spec == "ann@news.example.com"
    assert received["To"] == "Rita <reader@example.org>"
    assert received["Subject"] == "Your free guide"
    assert received["Message-ID"] == "<guide-7@mail.example.com>"
    assert received["List-Unsubscribe"].strip() == (
        f"<https://mail.example.com/u/{token}/>, <mailto:unsubscribe+{token}@mail.example.com>"
    )
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = _parts(received)
    assert "1 Main Street <Suite 5>" in text
    assert "1 Main Street &lt;Suite 5&gt;<br>Springfield" in html


def test_anymail_accepts_the_message(reader, settings):
    settings.SITE_URL = "https://mail.example.com"
    token = unsubscribe_token(subscriber=reader)

    with override_settings(**_mailers("anymail.backends.test.EmailBackend")):
        send_subscriber_email.apply(
            args=[reader.pk, "Welcome", "Hello", "<p>Hello</p>"], throw=True
        )

    (sent,) = mail.outbox
    params = sent.anymail_test_params
    assert params["from"].address == "Ann Example <ann@news.example.com>"
    assert [to.address for to in params["to"]] == ["Rita <reader@example.org>"]
    assert params["subject"] == "Welcome"
    assert params["extra_headers"]["List-Unsubscribe"].startswith(
        f"<https://mail.example.com/u/{token}/>, <mailto:"
    )
    assert params["extra_headers"]["Message-ID"].endswith("@mail.example.com>")
    assert params["extra_headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "1 Main Street" in params["text_body"] and "1 Main Street" in params["html_body"]
