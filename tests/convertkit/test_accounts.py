from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from convertkit.models import Account, Membership, User
from tests.conftest import PASSWORD
from tests.factories import SubscriberFactory


def test_login_and_logout(client, alice):
    response = client.post("/login/", {"username": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    client.post("/logout/")
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_wrong_password_is_refused_with_a_message(client, alice):
    response = client.post("/login/", {"username": "alice@example.com", "password": "nope"})
    assert response.status_code == 200
    assert "correct email address and password" in response.content.decode()


def test_password_reset_goes_through_the_mail_path_and_works_once(
    client, alice, eager_celery, django_capture_on_commit_callbacks, settings
):
    settings.SITE_URL = "https://mail.example.com"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/password-reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"]
    link = re.search(r"https://mail\.example\.com(/password-reset/\S+/)", message.body).group(1)

    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    set_url = form_page.redirect_chain[-1][0] if form_page.redirect_chain else link
    new_password = "a brand new passphrase 42"
    done = client.post(set_url, {"new_password1": new_password, "new_password2": new_password})
    assert done.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(new_password)
    again = client.get(link, follow=True)
    assert "no longer works" in again.content.decode()


def test_password_reset_for_unknown_email_sends_nothing_and_says_the_same(
    client, db, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/password-reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert mail.outbox == []


def test_settings_save_sender_postal_address_and_time_zone(alice_client, account_a):
    response = alice_client.post(
        "/settings/",
        {
            "name": "Ann's Kitchen",
            "sender_name": "Ann",
            "sender_email": "ann@kitchen.example",
            "postal_address": "2 Market Square, Lyon",
            "time_zone": "America/New_York",
        },
    )
    assert response.status_code == 302
    account_a.refresh_from_db()
    assert account_a.postal_address == "2 Market Square, Lyon"
    assert account_a.time_zone == "America/New_York"
    assert account_a.is_ready_to_send


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("time_zone", "Mars/Olympus", "is not a time zone name"),
        ("sender_email", "not an address", "Enter a valid email address"),
        ("sender_name", "Ann\r\nBcc: victim@example.com", "on one line"),
        ("name", "x" * 121, "at most 120 characters"),
    ],
)
def test_settings_reject_bad_input_and_keep_what_was_stored(
    alice_client, account_a, field, value, error
):
    data = {
        "name": "Ann's Kitchen",
        "sender_name": "Ann",
        "sender_email": "ann@kitchen.example",
        "postal_address": "1 Main Street",
        "time_zone": "Europe/Paris",
        field: value,
    }
    before = Account.objects.values().get(pk=account_a.pk)
    response = alice_client.post("/settings/", data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert Account.objects.values().get(pk=account_a.pk) == before


def test_account_without_postal_address_is_not_ready_to_send_and_dashboard_says_so(
    alice_client, account_a
):
    Account.objects.filter(pk=account_a.pk).update(postal_address="")
    page = alice_client.get("/").content.decode()
    assert "add your postal address" in page


def test_settings_change_only_the_current_account(alice_client, account_a, account_b, charlie):
    response = alice_client.post(
        "/settings/",
        {
            "name": "Renamed",
            "sender_name": "",
            "sender_email": "a@example.com",
            "postal_address": "x",
            "time_zone": "UTC",
        },
    )
    assert response.status_code == 302
    account_a.refresh_from_db()
    assert account_a.name == "Renamed"
    account_b.refresh_from_db()
    assert account_b.name == "Charlie's Garage"


def test_creator_can_switch_only_to_accounts_they_belong_to(alice_client, alice, account_b):
    response = alice_client.post(f"/accounts/switch/{account_b.id}/")
    assert response.status_code == 404
    second = Account.objects.create(name="Second list")
    Membership.objects.create(user=alice, account=second, role=Membership.Role.OWNER)
    menu = alice_client.get("/").content.decode()
    assert "Switch to Second list" in menu
    assert "Charlie" not in menu
    alice_client.post(f"/accounts/switch/{second.id}/")
    menu = alice_client.get("/").content.decode()
    assert "Switch to Ann&#x27;s Kitchen" in menu
    assert "Switch to Second list" not in menu


def test_current_account_and_account_menu_come_from_one_query(alice_client, alice):
    second = Account.objects.create(name="Second list")
    Membership.objects.create(user=alice, account=second, role=Membership.Role.MEMBER)
    with CaptureQueriesContext(connection) as queries:
        page = alice_client.get("/").content.decode()
    assert "Switch to Second list" in page
    table = Membership._meta.db_table
    assert len([q for q in queries if f'"{table}"' in q["sql"]]) == 1


def test_user_without_account_is_asked_to_create_one(client, db):
    user = User.objects.create_user(email="lonely@example.com", password=PASSWORD)
    client.force_login(user)
    response = client.get("/settings/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/new/"
    client.post("/accounts/new/", {"name": "My list"})
    assert Membership.objects.get(user=user).account.name == "My list"


@pytest.mark.parametrize("path", ["/", "/subscribers/", "/settings/", "/forms/", "/broadcasts/"])
def test_pages_require_login(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("path", ["/", "/forms/", "/broadcasts/", "/settings/"])
def test_navigation_pages_render_with_current_section_marked(alice_client, path):
    page = alice_client.get(path).content.decode()
    assert 'aria-current="page"' in page


def test_times_are_shown_in_the_account_time_zone(alice_client, account_a):
    Account.objects.filter(pk=account_a.pk).update(time_zone="Asia/Tokyo")
    subscriber = SubscriberFactory(account=account_a)
    type(subscriber).objects.filter(pk=subscriber.pk).update(
        created_at=datetime(2026, 3, 1, 20, 30, tzinfo=UTC)
    )
    page = alice_client.get(f"/subscribers/{subscriber.pk}/").content.decode()
    assert "2 Mar 2026, 05:30" in page
    listing = alice_client.get("/subscribers/").content.decode()
    assert "2 Mar 2026" in listing


def test_an_empty_dashboard_offers_an_import_a_subscriber_and_a_signup_form(alice_client):
    body = alice_client.get("/").content.decode()

    assert "Your list starts here" in body
    for url in ("/subscribers/import/", "/subscribers/new/", "/forms/"):
        assert f'href="{url}"' in body
