"""The development mail path: Django's SMTP backend -> the SMTP sink -> the DEBUG-only mailbox."""

from __future__ import annotations

import importlib
import re
from unittest import mock

import django
import pytest
from django.core.mail import EmailMultiAlternatives
from django.test import RequestFactory, override_settings
from django.urls import clear_url_caches

from convertkit.dev import views as dev_views
from convertkit.dev.devstack import free_port
from convertkit.dev.mailsink import message_path, message_store, sink_start
from subscribers.unsubscribe import unsubscribe_url
from tests.factories import SubscriberFactory


def _reload_urls() -> None:
    """convertkit/urls.py routes the mailbox only when DEBUG is on, decided at import."""
    importlib.reload(importlib.import_module("convertkit.urls"))
    clear_url_caches()


@pytest.fixture
def debug_urls():
    with override_settings(DEBUG=True):
        _reload_urls()
        yield
    _reload_urls()


@pytest.fixture
def mailbox_dir(tmp_path):
    with override_settings(MAILBOX_DIR=tmp_path):
        yield tmp_path


@pytest.fixture
def sink(mailbox_dir):
    """A real SMTP sink on a free port, with Django's SMTP backend pointed at it."""
    port = free_port()
    controller = sink_start(port=port, mailbox_dir=mailbox_dir)
    smtp = "django.core.mail.backends.smtp.EmailBackend"
    if django.VERSION >= (6, 1):
        mail_settings = {
            "MAILERS": {
                "default": {"BACKEND": smtp, "OPTIONS": {"host": "127.0.0.1", "port": port}}
            }
        }
    else:
        mail_settings = {"EMAIL_BACKEND": smtp, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": port}
    with override_settings(**mail_settings):
        yield mailbox_dir
    controller.stop()


def _store(mailbox_dir, subject: str, *, to: str = "alice@example.com", headers: str = "") -> str:
    content = (
        f"From: Ann <ann@example.com>\r\nTo: {to}\r\nSubject: {subject}\r\n{headers}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    ).encode()
    return message_store(
        mailbox_dir=mailbox_dir, mail_from="ann@example.com", rcpt_tos=[to], content=content
    )


def test_message_sent_over_smtp_is_listed_and_shown_in_the_mailbox(sink, debug_urls, alice_client):
    message = EmailMultiAlternatives(
        subject="Weekly news & <offers>",
        body="Plain text part\nsecond line",
        from_email="Ann <ann@example.com>",
        to=["alice@example.com"],
    )
    message.attach_alternative(
        '<p>Read <a href="https://example.com/post?a=1&b=2">the post</a></p>'
        "<script>alert('x')</script>",
        "text/html",
    )
    assert message.send() == 1
    (stored,) = sink.glob("*.eml")

    listing = alice_client.get("/dev/mailbox/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "Weekly news &amp; &lt;offers&gt;" in page
    assert "ann@example.com" in page and "alice@example.com" in page
    assert f"/dev/mailbox/{stored.stem}/" in page

    detail = alice_client.get(f"/dev/mailbox/{stored.stem}/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "Plain text part\nsecond line" in page
    # The HTML part is only ever inside a sandboxed iframe's srcdoc, escaped, scripts not allowed.
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page
    assert "allow-scripts" not in page
    assert 'srcdoc="&lt;base target=&quot;_blank&quot;&gt;&lt;p&gt;Read &lt;a href=' in page
    assert "<script>alert" not in page

    raw = alice_client.get(f"/dev/mailbox/{stored.stem}/?raw=1")
    assert raw["Content-Type"].startswith("text/plain")
    assert b"X-RcptTo: alice@example.com" in raw.content


def test_mailbox_lists_the_newest_message_first(mailbox_dir, debug_urls, alice_client):
    _store(mailbox_dir, "First message")
    _store(mailbox_dir, "Second message")

    page = alice_client.get("/dev/mailbox/").content.decode()

    assert page.index("Second message") < page.index("First message")


def test_empty_mailbox_says_how_mail_arrives(mailbox_dir, debug_urls, alice_client):
    page = alice_client.get("/dev/mailbox/").content.decode()

    assert "No messages for you yet" in page


@pytest.mark.parametrize(
    "message_id",
    [
        "..",
        "..%2F..%2Fconvertkit%2Fsettings.py",
        "%2Fetc%2Fpasswd",
        "secret",
        "20260101T000000000000-abcdef12.eml",
        "20260101T000000000000-ABCDEF12",
        "20260101T000000000000-abcdef12%00",
        ".20260101T000000000000-abcdef12.partial",
    ],
)
def test_mailbox_refuses_ids_that_are_not_message_names(
    mailbox_dir, debug_urls, alice_client, message_id
):
    (mailbox_dir / "secret.eml").write_text("Subject: not for you\r\n\r\nTOP-SECRET-BODY\r\n")
    (mailbox_dir.parent / "outside.eml").write_text("Subject: outside\r\n\r\nTOP-SECRET-BODY\r\n")

    response = alice_client.get(f"/dev/mailbox/{message_id}/")

    assert response.status_code == 404
    assert b"TOP-SECRET-BODY" not in response.content


@pytest.mark.parametrize(
    "message_id",
    ["../x", "/etc/passwd", "a/../../b", "x\x00", "", "20260101T000000000000-abcdef12/"],
)
def test_message_path_refuses_anything_but_a_message_name(tmp_path, message_id):
    with pytest.raises(ValueError):
        message_path(mailbox_dir=tmp_path, message_id=message_id)


def test_a_well_formed_id_of_a_missing_message_is_404(mailbox_dir, debug_urls, alice_client):
    response = alice_client.get("/dev/mailbox/20260101T000000000000-abcdef12/")

    assert response.status_code == 404


def test_mailbox_requires_login(mailbox_dir, debug_urls, client):
    message_id = _store(mailbox_dir, "Private")

    for url in ("/dev/mailbox/", f"/dev/mailbox/{message_id}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


def test_mailbox_is_not_routed_when_debug_is_off(mailbox_dir, alice_client):
    _reload_urls()  # with the test settings' DEBUG = False
    message_id = _store(mailbox_dir, "Private")

    assert alice_client.get("/dev/mailbox/").status_code == 404
    assert alice_client.get(f"/dev/mailbox/{message_id}/").status_code == 404


def test_mailbox_views_refuse_to_serve_when_debug_is_off(mailbox_dir, alice, settings):
    settings.DEBUG = False
    message_id = _store(mailbox_dir, "Private")
    request = RequestFactory().get("/dev/mailbox/")
    request.user = alice

    with pytest.raises(django.http.Http404):
        dev_views.mailbox(request)
    with pytest.raises(django.http.Http404):
        dev_views.mailbox_message(request, message_id=message_id)


def _subject_list(client) -> list[str]:
    page = client.get("/dev/mailbox/").content.decode()
    return sorted(re.findall(r'<a href="/dev/mailbox/[^"]+/">([^<]+)</a>', page))


def _message_ids_by_subject(mailbox_dir) -> dict[str, str]:
    ids = {}
    for path in mailbox_dir.glob("*.eml"):
        subject = re.search(rb"^Subject: (.+?)\r?$", path.read_bytes(), re.MULTILINE)[1]
        ids[subject.decode()] = path.stem
    return ids


def test_each_login_sees_only_mail_to_itself_or_to_subscribers_of_its_accounts(
    sink, debug_urls, alice_client, bob_client, charlie_client, account_a, account_b
):
    from subscribers.mail import subscriber_email_build

    reader_in_a = SubscriberFactory(account=account_a, email="reader@example.org")
    # The same address in the other account: the address alone says nothing about the account.
    reader_in_b = SubscriberFactory(account=account_b, email="reader@example.org")
    for subscriber, subject in ((reader_in_a, "News from A"), (reader_in_b, "News from B")):
        subscriber_email_build(subscriber=subscriber, subject=subject, text_body="Hello").send()
    for to, subject in (("alice@example.com", "Reset for alice"), ("bob@example.com", "For bob")):
        EmailMultiAlternatives(subject=subject, body="Hi", to=[to]).send()
    # A's sender address and a token claiming A, but not signed by this site.
    genuine = unsubscribe_url(subscriber=reader_in_a)
    forged = genuine[:-2] + ("a" if genuine[-2] != "a" else "b") + "/"
    _store(
        sink,
        "Forged for A",
        to="reader@example.org",
        headers=f"List-Unsubscribe: <{forged}>\r\n",
    )

    assert _subject_list(alice_client) == ["News from A", "Reset for alice"]
    assert _subject_list(bob_client) == ["For bob", "News from A"]
    assert _subject_list(charlie_client) == ["News from B"]
    ids = _message_ids_by_subject(sink)
    for subject, message_id in ids.items():
        for client, visible in (
            (alice_client, {"News from A", "Reset for alice"}),
            (charlie_client, {"News from B"}),
        ):
            for url in (f"/dev/mailbox/{message_id}/", f"/dev/mailbox/{message_id}/?raw=1"):
                assert client.get(url).status_code == (200 if subject in visible else 404)


def test_mailbox_lists_at_most_a_page_of_the_users_messages_and_says_so(
    mailbox_dir, debug_urls, alice_client, settings
):
    for n in range(3):
        _store(mailbox_dir, f"Mine {n}")
        _store(mailbox_dir, f"Not mine {n}", to="someone@example.org")

    with mock.patch.object(dev_views, "MAILBOX_PAGE_SIZE", 2):
        page = alice_client.get("/dev/mailbox/").content.decode()

    assert "Mine 2" in page and "Mine 1" in page
    assert "Mine 0" not in page and "Not mine" not in page
    assert "the newest 2 are listed" in page
