"""The unsubscribe link and RFC 8058 one-click POST: public, signed, idempotent, never a redirect."""

from __future__ import annotations

import pytest
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse

from subscribers.models import StateChange, Subscriber
from subscribers.unsubscribe import (
    LINK_REASON,
    ONE_CLICK_REASON,
    RESUBSCRIBE_REASON,
    subscriber_from_token,
    unsubscribe_headers,
    unsubscribe_token,
    unsubscribe_url,
)
from tests.convertkit.test_settings import PRODUCTION, SETUP, _fails_with, _python
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(account_a):
    return SubscriberFactory(account=account_a, email="reader@example.org")


@pytest.fixture
def anonymous():
    """A mail client's request: no cookies, no session, and CSRF checks as in production."""
    return Client(enforce_csrf_checks=True)


def _path(subscriber: Subscriber) -> str:
    return reverse("unsubscribe", kwargs={"token": unsubscribe_token(subscriber=subscriber)})


def _one_click_multipart(client: Client, path: str):
    body = encode_multipart(BOUNDARY, {"List-Unsubscribe": "One-Click"})
    return client.generic("POST", path, body, content_type=MULTIPART_CONTENT)


def _one_click_urlencoded(client: Client, path: str):
    return client.generic(
        "POST",
        path,
        b"List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )


def _state(subscriber: Subscriber) -> str:
    return Subscriber.objects.values_list("state", flat=True).get(pk=subscriber.pk)


def test_token_names_its_subscriber_and_is_stable(reader):
    token = unsubscribe_token(subscriber=reader)
    assert token == unsubscribe_token(subscriber=reader)
    assert subscriber_from_token(token) == reader
    assert token.islower() and len(token) < 45
    # Mail servers may upper-case an address's local part: the token in the mailto must survive.
    assert subscriber_from_token(token.upper()) == reader


def test_tokens_differ_per_subscriber_and_per_secret_key(reader, account_a, settings):
    other = SubscriberFactory(account=account_a)
    token = unsubscribe_token(subscriber=reader)
    assert token != unsubscribe_token(subscriber=other)
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    assert subscriber_from_token(token) is None


def test_token_keeps_working_after_the_secret_key_is_rotated(reader, settings):
    token = unsubscribe_token(subscriber=reader)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-rotated-secret-key-" + "z" * 40
    assert subscriber_from_token(token) == reader


def test_unsubscribe_url_is_absolute_under_site_url(reader, settings):
    settings.SITE_URL = "https://mail.example.com"
    assert unsubscribe_url(subscriber=reader) == (
        f"https://mail.example.com/u/{unsubscribe_token(subscriber=reader)}/"
    )


def test_headers_are_formatted_as_rfc_8058_expects(reader, settings):
    settings.SITE_URL = "https://mail.example.com"
    settings.UNSUBSCRIBE_MAILTO = "leave@lists.example.com"
    token = unsubscribe_token(subscriber=reader)
    assert unsubscribe_headers(subscriber=reader) == {
        "List-Unsubscribe": (
            f"<https://mail.example.com/u/{token}/>, <mailto:leave+{token}@lists.example.com>"
        ),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_mailto_defaults_to_unsubscribe_at_the_site_host_and_carries_the_token(reader, settings):
    assert settings.UNSUBSCRIBE_MAILTO == "unsubscribe@localhost"
    token = unsubscribe_token(subscriber=reader)
    header = unsubscribe_headers(subscriber=reader)["List-Unsubscribe"]
    mailto = header.split(", ")[1].strip("<>")
    assert mailto == f"mailto:unsubscribe+{token}@localhost"
    local_part = mailto.removeprefix("mailto:").split("@")[0]
    assert subscriber_from_token(local_part.split("+", 1)[1]) == reader


def test_get_shows_the_page_and_never_unsubscribes(anonymous, reader):
    response = anonymous.get(_path(reader))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Ann&#x27;s Kitchen" in content
    assert "reader@example.org" in content
    assert '<button class="button danger" type="submit">Unsubscribe</button>' in content
    assert 'method="post"' in content and "csrfmiddlewaretoken" not in content
    assert "main-nav" not in content
    assert anonymous.head(_path(reader)).status_code == 200
    assert _state(reader) == Subscriber.State.ACTIVE
    assert not StateChange.objects.filter(subscriber=reader).exists()
    assert "Set-Cookie" not in response.headers


def test_page_post_unsubscribes_with_a_history_row(anonymous, reader):
    response = anonymous.post(_path(reader), {"action": "unsubscribe"})
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    assert "Subscribe again" in response.content.decode()
    reader.refresh_from_db()
    assert reader.state == Subscriber.State.UNSUBSCRIBED
    assert reader.unsubscribed_at is not None
    change = StateChange.objects.get(subscriber=reader)
    assert (change.from_state, change.to_state, change.reason) == (
        "active",
        "unsubscribed",
        LINK_REASON,
    )


def test_page_post_twice_writes_one_history_row(anonymous, reader):
    anonymous.post(_path(reader), {"action": "unsubscribe"})
    response = anonymous.post(_path(reader), {"action": "unsubscribe"})
    assert response.status_code == 200
    assert StateChange.objects.filter(subscriber=reader).count() == 1


def test_get_after_unsubscribing_says_so(anonymous, reader):
    anonymous.post(_path(reader), {"action": "unsubscribe"})
    response = anonymous.get(_path(reader))
    assert "You are already unsubscribed" in response.content.decode()


def test_unconfirmed_subscriber_can_unsubscribe(anonymous, account_a):
    pending = SubscriberFactory(account=account_a, state=Subscriber.State.UNCONFIRMED)
    anonymous.post(_path(pending), {"action": "unsubscribe"})
    assert _state(pending) == Subscriber.State.UNSUBSCRIBED


@pytest.mark.parametrize("send", [_one_click_urlencoded, _one_click_multipart])
def test_one_click_post_without_cookies_or_csrf_unsubscribes_and_answers_200(
    anonymous, reader, send
):
    response = send(anonymous, _path(reader))
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert response.content.decode() == "You are unsubscribed.\n"
    reader.refresh_from_db()
    assert reader.state == Subscriber.State.UNSUBSCRIBED
    assert StateChange.objects.get(subscriber=reader).reason == ONE_CLICK_REASON

    unsubscribed_at = reader.unsubscribed_at
    again = send(anonymous, _path(reader))
    assert again.status_code == 200
    assert "Location" not in again.headers
    reader.refresh_from_db()
    assert reader.unsubscribed_at == unsubscribed_at
    assert StateChange.objects.filter(subscriber=reader).count() == 1


def _tampered(token: str) -> str:
    last = token[-1]
    return token[:-1] + ("a" if last != "a" else "b")


@pytest.mark.parametrize(
    "mangle",
    [
        _tampered,
        lambda token: token[:-3],
        lambda token: token.split("-", 1)[1],
        lambda token: "garbage",
        lambda token: "0" + token,
        lambda token: "zzzzzzzzzzzzzzzz-" + token.split("-", 1)[1],
        lambda token: token + "a" * 5000,
    ],
    ids=["tampered", "truncated", "missing-part", "garbage", "leading-zero", "huge-id", "long"],
)
def test_damaged_token_gets_a_404_page_and_changes_nothing(anonymous, reader, mangle):
    path = reverse("unsubscribe", kwargs={"token": mangle(unsubscribe_token(subscriber=reader))})
    for response in (
        anonymous.get(path),
        anonymous.post(path, {"action": "unsubscribe"}),
        _one_click_urlencoded(anonymous, path),
    ):
        assert response.status_code == 404
        assert "This unsubscribe link is not valid" in response.content.decode()
    assert _state(reader) == Subscriber.State.ACTIVE
    assert not StateChange.objects.exists()


def test_token_signed_for_another_account_does_not_reach_its_subscriber(
    anonymous, reader, account_b
):
    """A genuine token of account B, with B's id swapped for A's, names nobody."""
    theirs = SubscriberFactory(account=account_b)
    _, subscriber_part, signature = unsubscribe_token(subscriber=theirs).split("-")
    forged_subscriber = Subscriber(pk=reader.pk, account_id=account_b.pk)
    forged = unsubscribe_token(subscriber=forged_subscriber)
    swapped = f"{unsubscribe_token(subscriber=reader).split('-')[0]}-{subscriber_part}-{signature}"
    for token in (forged, swapped):
        path = reverse("unsubscribe", kwargs={"token": token})
        assert anonymous.post(path, {"action": "unsubscribe"}).status_code == 404
        assert _one_click_urlencoded(anonymous, path).status_code == 404
    assert _state(reader) == Subscriber.State.ACTIVE
    assert _state(theirs) == Subscriber.State.ACTIVE


def test_token_of_a_deleted_subscriber_gets_a_404_page(anonymous, reader):
    path = _path(reader)
    reader.delete()
    response = anonymous.get(path)
    assert response.status_code == 404
    assert _one_click_urlencoded(anonymous, path).status_code == 404


@pytest.mark.parametrize("state", [Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED])
def test_bounced_and_complained_stay_as_they_are(anonymous, account_a, state):
    suppressed = SubscriberFactory(account=account_a, state=state)
    path = _path(suppressed)
    assert "No more emails" in anonymous.get(path).content.decode()
    for response in (
        anonymous.post(path, {"action": "unsubscribe"}),
        anonymous.post(path, {"action": "resubscribe"}),
        _one_click_multipart(anonymous, path),
    ):
        assert response.status_code == 200
    assert _state(suppressed) == state
    assert not StateChange.objects.filter(subscriber=suppressed).exists()


def test_resubscribe_after_unsubscribing_makes_them_active_once(anonymous, reader):
    anonymous.post(_path(reader), {"action": "unsubscribe"})
    response = anonymous.post(_path(reader), {"action": "resubscribe"})
    assert response.status_code == 200
    assert "You are subscribed again" in response.content.decode()
    reader.refresh_from_db()
    assert reader.state == Subscriber.State.ACTIVE
    assert reader.unsubscribed_at is None
    anonymous.post(_path(reader), {"action": "resubscribe"})
    changes = list(
        StateChange.objects.filter(subscriber=reader)
        .order_by("id")
        .values_list("from_state", "to_state", "reason")
    )
    assert changes == [
        ("active", "unsubscribed", LINK_REASON),
        ("unsubscribed", "active", RESUBSCRIBE_REASON),
    ]


def test_resubscribe_of_an_active_subscriber_changes_nothing(anonymous, reader):
    response = anonymous.post(_path(reader), {"action": "resubscribe"})
    assert response.status_code == 200
    assert _state(reader) == Subscriber.State.ACTIVE
    assert not StateChange.objects.filter(subscriber=reader).exists()


def test_page_ignores_a_logged_in_creator_of_another_account(charlie_client, reader):
    """Only the token decides: charlie's session neither helps nor hinders."""
    response = charlie_client.post(_path(reader), {"action": "unsubscribe"})
    assert response.status_code == 200
    assert _state(reader) == Subscriber.State.UNSUBSCRIBED
    assert "Charlie" not in response.content.decode()


def test_unsubscribe_mailto_follows_site_url_in_production():
    result = _python(
        SETUP + "; from django.conf import settings; print(settings.UNSUBSCRIBE_MAILTO)",
        **PRODUCTION,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unsubscribe@mail.example.com"


@pytest.mark.parametrize(
    "value", ["no-at-sign", "unsubscribe@", "a+b@example.com", "x@y\r\nBcc: z"]
)
def test_unsubscribe_mailto_that_is_not_a_plain_address_is_refused(value):
    _fails_with("Unexpected value UNSUBSCRIBE_MAILTO", DEBUG="true", UNSUBSCRIBE_MAILTO=value)
