"""Signing up through a link in an email, the same answer for any address, and login throttling
per address and per network."""

from __future__ import annotations

import re
import time
from unittest import mock

import pytest
from django.core import mail
from django.test import Client

from convertkit.models import Membership, User
from convertkit.redis import redis_client
from tests.conftest import PASSWORD

NEW_PASSWORD = "a long enough passphrase 7"


@pytest.fixture
def mailed(eager_celery, django_capture_on_commit_callbacks):
    """Posts with the account mail sent at once (as the worker would): mailed(client, url, data)."""

    def post(client, url, data):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data)

    return post


def _signup_link(message) -> str:
    return re.search(r"http://localhost:8000(/signup/finish/\S+/)", message.body).group(1)


def test_new_address_gets_a_link_that_creates_the_login_and_its_account(client, db, mailed):
    response = mailed(client, "/signup/", {"email": "Ann@Example.com"})

    assert response.status_code == 302
    assert response["Location"] == "/signup/sent/"
    assert not User.objects.exists(), "nothing is created before the address is proven"
    (message,) = mail.outbox
    assert message.to == ["ann@example.com"]
    link = _signup_link(message)

    form = client.get(link)
    assert form.status_code == 200
    assert "ann@example.com" in form.content.decode()
    done = client.post(link, {"password": NEW_PASSWORD, "account_name": "Ann's Kitchen"})

    assert done.status_code == 302
    user = User.objects.get(email="ann@example.com")
    assert user.check_password(NEW_PASSWORD)
    membership = Membership.objects.get(user=user)
    assert membership.role == Membership.Role.OWNER
    assert membership.account.name == "Ann's Kitchen"
    assert membership.account.sender_email == "ann@example.com"
    assert "Ann&#x27;s Kitchen" in client.get("/").content.decode()


def _without_csrf_token(response) -> str:
    """The page, without the CSRF token that is masked afresh on every response."""
    return re.sub(r"[A-Za-z0-9]{64}", "(token)", response.content.decode())


def test_signup_answers_the_same_whether_or_not_the_address_has_a_login(alice, mailed):
    pages = {}
    for email in ("alice@example.com", "nobody@example.com"):
        visitor = Client()
        posted = mailed(visitor, "/signup/", {"email": email})
        pages[email] = (posted.status_code, posted["Location"], visitor.get("/signup/sent/"))

    (owner_status, owner_location, owner_page) = pages["alice@example.com"]
    (new_status, new_location, new_page) = pages["nobody@example.com"]
    assert (owner_status, owner_location) == (new_status, new_location) == (302, "/signup/sent/")
    assert _without_csrf_token(owner_page) == _without_csrf_token(new_page)
    assert b"already" not in owner_page.content
    assert User.objects.count() == 1
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_the_owner_of_an_address_with_a_login_is_told_by_email_instead(alice, client, mailed):
    mailed(client, "/signup/", {"email": "ALICE@example.com"})

    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert "already has a login" in message.body
    assert "http://localhost:8000/login/" in message.body
    assert "http://localhost:8000/password-reset/" in message.body
    assert "/signup/finish/" not in message.body


def test_weak_password_is_refused_and_nothing_is_created(client, db, mailed):
    mailed(client, "/signup/", {"email": "ann@example.com"})
    link = _signup_link(mail.outbox[0])

    response = client.post(link, {"password": "123", "account_name": "x"})

    assert response.status_code == 200
    assert "too short" in response.content.decode()
    assert not User.objects.exists()


def test_a_used_link_sends_to_the_login_page_and_creates_nothing(client, db, mailed):
    mailed(client, "/signup/", {"email": "ann@example.com"})
    link = _signup_link(mail.outbox[0])
    client.post(link, {"password": NEW_PASSWORD, "account_name": "First"})
    client.post("/logout/")

    again = Client().post(link, {"password": "another passphrase 99", "account_name": "Second"})

    assert again.status_code == 302
    assert again["Location"] == "/login/"
    assert User.objects.get().check_password(NEW_PASSWORD)
    assert Membership.objects.get().account.name == "First"


def test_tampered_or_expired_signup_link_creates_nothing(client, db, mailed):
    mailed(client, "/signup/", {"email": "ann@example.com"})
    link = _signup_link(mail.outbox[0])
    tampered = link[:-4] + ("aaa/" if not link.endswith("aaa/") else "bbb/")

    assert client.post(tampered, {"password": NEW_PASSWORD, "account_name": "x"}).status_code == 404
    with mock.patch("time.time", return_value=time.time() + 4 * 86400):
        expired = client.post(link, {"password": NEW_PASSWORD, "account_name": "x"})
    assert expired.status_code == 410
    assert "expired" in expired.content.decode()
    assert not User.objects.exists()


@pytest.mark.parametrize("email", ["alice@example.com", "nobody@example.com"])
def test_signup_and_reset_emails_are_limited_per_address_alike_for_any_address(
    alice, mailed, settings, email
):
    settings.ACCOUNT_MAIL_LIMIT_PER_ADDRESS = (2, 3600)
    answers = [
        mailed(Client(REMOTE_ADDR=f"198.51.100.{n}"), url, {"email": email})
        for n, url in enumerate(["/signup/", "/password-reset/", "/signup/"])
    ]

    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert re.search(r"Try again in \d+ minutes?\.", answers[-1].content.decode())
    assert 0 < int(answers[-1]["Retry-After"]) <= 3600


def test_password_reset_answers_the_same_for_any_address(alice, mailed):
    for_alice = mailed(Client(), "/password-reset/", {"email": "alice@example.com"})
    for_nobody = mailed(Client(), "/password-reset/", {"email": "nobody@example.com"})

    assert for_alice.status_code == for_nobody.status_code == 302
    assert for_alice["Location"] == for_nobody["Location"] == "/password-reset/sent/"
    assert [message.to for message in mail.outbox] == [["alice@example.com"]]


def _login(client, password: str, email: str = "alice@example.com"):
    return client.post("/login/", {"username": email, "password": password})


def test_after_ten_wrong_passwords_even_the_right_one_is_refused_until_the_window_ends(
    client, alice
):
    answers = [_login(client, f"guess {n}").status_code for n in range(30)]
    refused = _login(client, PASSWORD)

    assert answers == [200] * 10 + [429] * 20
    assert refused.status_code == 429
    page = refused.content.decode()
    assert "Too many login attempts for this address or from your network" in page
    assert re.search(r"Try again in \d+ minutes?\.", page)
    assert 0 < int(refused["Retry-After"]) <= 900
    assert client.get("/").status_code == 302, "not logged in"
    elsewhere = _login(Client(REMOTE_ADDR="198.51.100.9"), PASSWORD)
    assert elsewhere.status_code == 429, "the address is limited from every network"

    with mock.patch("time.time", return_value=time.time() + 900):
        after_the_window = _login(client, PASSWORD)
    assert after_the_window.status_code == 302
    assert client.get("/").status_code == 200


def test_one_network_is_limited_across_addresses(client, alice, settings):
    settings.LOGIN_LIMIT_PER_IP = (3, 900)
    for n in range(3):
        _login(client, "guess", email=f"someone{n}@example.com")

    assert _login(client, PASSWORD).status_code == 429
    assert _login(Client(REMOTE_ADDR="198.51.100.9"), PASSWORD).status_code == 302


def test_logins_still_work_when_redis_is_down(client, alice, settings):
    redis_client.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        response = _login(client, PASSWORD)
    finally:
        redis_client.cache_clear()

    assert response.status_code == 302


@pytest.mark.parametrize("debug", [True, False])
def test_under_debug_the_sent_page_says_where_the_captured_email_is(client, db, settings, debug):
    settings.DEBUG = debug

    page = client.get("/signup/sent/").content.decode()

    assert ("captured by the local mail sink" in page) is debug
    assert (str(settings.MAILBOX_DIR) in page) is debug
