"""API keys: stored hashed, shown once, last use recorded at most once a minute, revocable,
managed from the account settings."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.urls import reverse

from api.keys import api_key_authenticate, api_key_create, api_key_revoke
from api.models import ApiKey
from tests.conftest import PASSWORD


@pytest.fixture
def alice_client(client, alice):
    client.login(email=alice.email, password=PASSWORD)
    return client


@pytest.fixture
def charlie_client(alice, charlie):
    from django.test import Client

    client = Client()
    client.login(email=charlie.email, password=PASSWORD)
    return client


def test_a_key_is_stored_as_a_sha256_digest_only(alice, account_a):
    api_key, secret = api_key_create(account=account_a, name="Shop", created_by=alice)
    stored = ApiKey.objects.get(pk=api_key.pk)
    assert secret.startswith("kit_") and len(secret) > 40
    assert stored.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {stored.name, stored.prefix, stored.key_hash}
    assert secret.startswith(stored.prefix)


def test_a_key_authenticates_until_revoked(alice, account_a):
    api_key, secret = api_key_create(account=account_a, name="Shop", created_by=alice)
    assert api_key_authenticate(secret) == api_key
    assert api_key_authenticate(secret + "x") is None
    assert api_key_revoke(api_key=api_key) is True
    assert api_key_revoke(api_key=api_key) is False
    assert api_key_authenticate(secret) is None


def test_last_use_is_written_at_most_once_a_minute(alice, account_a):
    api_key, secret = api_key_create(account=account_a, name="Shop", created_by=alice)
    api_key_authenticate(secret)
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None
    api_key_authenticate(secret)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=first - timedelta(minutes=2))
    api_key_authenticate(secret)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > first - timedelta(seconds=1)


def test_the_settings_page_links_to_the_api_keys(alice_client):
    response = alice_client.get(reverse("account_settings"))
    assert reverse("api_key_list").encode() in response.content


def test_a_created_key_is_shown_once_then_only_its_prefix(alice_client, account_a):
    response = alice_client.post(reverse("api_key_list"), {"name": "WordPress site"})
    assert response.status_code == 302
    page = alice_client.get(reverse("api_key_list")).content.decode()
    api_key = ApiKey.objects.get(account=account_a)
    secret = page.split('<code id="new-api-key" style="overflow-wrap:anywhere">')[1].split("<")[0]
    assert api_key_authenticate(secret) == api_key
    again = alice_client.get(reverse("api_key_list")).content.decode()
    assert secret not in again
    assert "WordPress site" in again and f"{api_key.prefix}…" in again


def test_a_key_without_a_name_is_refused(alice_client):
    response = alice_client.post(reverse("api_key_list"), {"name": " "})
    assert response.status_code == 400
    assert not ApiKey.objects.exists()


def test_revoking_asks_first_then_revokes(alice_client, alice, account_a):
    api_key, secret = api_key_create(account=account_a, name="Shop", created_by=alice)
    url = reverse("api_key_revoke", args=[api_key.id])
    confirm = alice_client.get(url)
    assert confirm.status_code == 200 and "Revoke the key “Shop”?" in confirm.content.decode()
    assert api_key_authenticate(secret) is not None
    assert alice_client.post(url).status_code == 302
    assert api_key_authenticate(secret) is None
    assert alice_client.get(url).status_code == 404


def test_the_list_shows_the_accounts_keys_only(alice_client, charlie, account_b):
    api_key_create(account=account_b, name="Charlie's garage key", created_by=charlie)
    assert "Charlie's garage key" not in alice_client.get(reverse("api_key_list")).content.decode()


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_accounts_key_cannot_be_revoked(charlie_client, alice, account_a, method):
    api_key, secret = api_key_create(account=account_a, name="Shop", created_by=alice)
    response = getattr(charlie_client, method)(reverse("api_key_revoke", args=[api_key.id]))
    assert response.status_code == 404
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert api_key_authenticate(secret) == api_key


def test_the_pages_need_a_login(client):
    response = client.get(reverse("api_key_list"))
    assert response.status_code == 302
    assert "login" in response["Location"]
