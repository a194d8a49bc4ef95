"""The development mail path: Django's SMTP backend -> the SMTP sink -> the DEBUG-only mailbox."""

from __future__ import annotations

import importlib

import django
import pytest
from django.core.mail import EmailMultiAlternatives
from django.test import RequestFactory, override_settings
from django.urls import clear_url_caches

from convertkit.dev import views as dev_views
from convertkit.dev.devstack import free_port
from convertkit.dev.mailsink import message_path, message_store, sink_start


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


def _store(mailbox_dir, subject: str) -> str:
    content = (
        f"From: Ann <ann@example.com>\r\nTo: reader@example.org\r\nSubject: {subject}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    ).encode()
    return message_store(
        mailbox_dir=mailbox_dir,
        mail_from="ann@example.com",
        rcpt_tos=["reader@example.org"],
        content=content,
    )


def test_message_sent_over_smtp_is_listed_and_shown_in_the_mailbox(sink, debug_urls, alice_client):
    message = EmailMultiAlternatives(
        subject="Weekly news & <offers>",
        body="Plain text part\nsecond line",
        from_email="Ann <ann@example.com>",
        to=["reader@example.org"],
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
    assert "ann@example.com" in page and "reader@example.org" in page
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
    assert b"X-RcptTo: reader@example.org" in raw.content


def test_mailbox_lists_the_newest_message_first(mailbox_dir, debug_urls, alice_client):
    _store(mailbox_dir, "First message")
    _store(mailbox_dir, "Second message")

    page = alice_client.get("/dev/mailbox/").content.decode()

    assert page.index("Second message") < page.index("First message")


def test_empty_mailbox_says_how_mail_arrives(mailbox_dir, debug_urls, alice_client):
    page = alice_client.get("/dev/mailbox/").content.decode()

    assert "No messages yet" in page


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
