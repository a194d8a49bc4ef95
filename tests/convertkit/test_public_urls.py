"""The URLs a mail client or an ESP calls answer with and without their trailing slash, GET and
POST, with DEBUG on and off; a tampered token is a 404 either way.

Without this, Django's APPEND_SLASH answers a POST to a URL missing its slash with a 500 under
DEBUG and a 301 without it, which RFC 8058 one-click clients and ESPs do not follow on POST.
"""

from __future__ import annotations

import json

import pytest
from anymail.signals import tracking
from django.test import Client
from django.urls import resolve, reverse

from broadcasts.models import Broadcast
from subscribers.models import Signup, Subscriber
from subscribers.signup_forms.services import form_create, form_incentive_file_set
from subscribers.signup_forms.signup import confirmation_token, incentive_token
from subscribers.unsubscribe import unsubscribe_url
from tests.factories import SubscriberFactory
from tests.tracking.recording import (  # noqa: F401 - empty_recording is an autouse fixture
    empty_recording,
    wsgi_call,
)
from tracking.models import Link
from tracking.tokens import click_token, open_token

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "esp-webhooks:correct-horse-battery"


@pytest.fixture(params=[True, False], ids=["debug", "no-debug"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.fixture(params=["/", ""], ids=["slash", "no-slash"])
def slash(request) -> str:
    return request.param


@pytest.fixture
def visitor():
    """A mail client: no session, no cookie, no CSRF token."""
    return Client(enforce_csrf_checks=True)


def _tampered(token: str) -> str:
    return token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")


@pytest.fixture
def subscriber(account_a):
    return SubscriberFactory(account=account_a, email="reader@example.org")


def _unsubscribe_path(subscriber, slash: str) -> str:
    url = unsubscribe_url(subscriber=subscriber)
    assert url.endswith("/"), "links in mail keep the canonical URL with its slash"
    return url.removeprefix("http://localhost:8000").removesuffix("/") + slash


def test_one_click_unsubscribe_is_honoured_with_or_without_the_slash(
    visitor, subscriber, debug, slash
):
    response = visitor.post(_unsubscribe_path(subscriber, slash), {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert response.content == b"You are unsubscribed.\n"
    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.UNSUBSCRIBED


def test_unsubscribe_page_opens_with_or_without_the_slash_and_changes_nothing(
    visitor, subscriber, debug, slash
):
    response = visitor.get(_unsubscribe_path(subscriber, slash))

    assert response.status_code == 200
    assert b"reader@example.org" in response.content
    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.ACTIVE


@pytest.mark.parametrize("method", ["get", "post"])
def test_tampered_unsubscribe_token_is_404_with_or_without_the_slash(
    visitor, subscriber, debug, slash, method
):
    path = _unsubscribe_path(subscriber, "")
    response = getattr(visitor, method)(
        _tampered(path) + slash, {"List-Unsubscribe": "One-Click"} if method == "post" else {}
    )

    assert response.status_code == 404
    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.ACTIVE


@pytest.fixture
def form(account_a):
    form = form_create(account=account_a, name="Newsletter", double_opt_in=True)
    form_incentive_file_set(
        form=form, name="recipes.pdf", content_type="application/pdf", data=b"%PDF-1.4 recipes"
    )
    return form


@pytest.fixture
def signup(form) -> Signup:
    Client().post(f"/f/{form.uid}/subscribe", {"email": "rita@example.org"})
    return Signup.objects.get()


def test_confirmation_link_confirms_with_or_without_the_slash(visitor, signup, debug, slash):
    path = f"/f/confirm/{confirmation_token(signup)}{slash}"

    shown = visitor.get(path)
    assert shown.status_code == 200
    assert signup.subscriber.state == Subscriber.State.UNCONFIRMED

    confirmed = visitor.post(path)
    assert confirmed.status_code == 200
    signup.subscriber.refresh_from_db()
    assert signup.subscriber.state == Subscriber.State.ACTIVE


@pytest.mark.parametrize("method", ["get", "post"])
def test_tampered_confirmation_link_is_404_with_or_without_the_slash(
    visitor, signup, debug, slash, method
):
    path = f"/f/confirm/{_tampered(confirmation_token(signup))}{slash}"

    assert getattr(visitor, method)(path).status_code == 404
    signup.subscriber.refresh_from_db()
    assert signup.subscriber.state == Subscriber.State.UNCONFIRMED


def test_incentive_download_and_hosted_form_open_with_or_without_the_slash(
    visitor, form, signup, debug, slash
):
    visitor.post(f"/f/confirm/{confirmation_token(signup)}/")
    token = incentive_token(signup)

    download = visitor.get(f"/f/download/{token}{slash}")
    assert download.status_code == 200
    assert download.content == b"%PDF-1.4 recipes"
    assert visitor.get(f"/f/download/{_tampered(token)}{slash}").status_code == 404
    hosted = visitor.get(f"/f/{form.uid}{slash}")
    assert hosted.status_code == 200
    assert b'name="email"' in hosted.content


@pytest.fixture
def link(account_a):
    broadcast = Broadcast.objects.create(account=account_a, subject="Soup", body="Hello")
    return Link.objects.create(
        account=account_a, broadcast=broadcast, url="https://example.com/soup", position=1
    )


def _tracking_answers(path: str, *, method: str = "GET") -> list[int]:
    """The status through gunicorn's application (production) and through Django's URLs (the
    test live server's fallback)."""
    through_django = getattr(Client(), method.lower())(path)
    return [wsgi_call(path, method=method).status, through_django.status_code]


def test_open_pixel_and_click_answer_with_or_without_a_trailing_slash(link, debug, slash):
    opened = "/t/o/" + open_token(broadcast_id=link.broadcast_id, delivery_id=7) + slash
    clicked = "/t/c/" + click_token(broadcast_id=link.broadcast_id, delivery_id=7, link_id=link.pk)

    assert _tracking_answers(opened) == [200, 200]
    assert _tracking_answers(clicked + slash) == [302, 302]
    assert wsgi_call(clicked + slash).headers["Location"] == "https://example.com/soup"
    assert _tracking_answers(_tampered(clicked) + slash) == [404, 404]
    assert _tracking_answers(clicked + slash, method="POST") == [405, 405]


@pytest.fixture
def esp_events(settings):
    """What anymail's tracking signal delivered, i.e. that the webhook reached anymail's view."""
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    events = []

    def receive(sender, event, esp_name, **kwargs):
        events.append((esp_name, event.event_type, event.recipient))

    tracking.connect(receive, weak=False)
    yield events
    tracking.disconnect(receive)


def _postmark_post(path: str, credentials: str):
    import base64

    body = {
        "RecordType": "Delivery",
        "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff001",
        "Recipient": "reader@example.org",
        "DeliveredAt": "2026-03-01T10:00:00Z",
        "Details": "smtp;250 2.0.0 OK",
        "Metadata": {},
    }
    auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    return Client().post(
        path, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=auth
    )


def test_esp_webhook_is_received_with_or_without_the_slash(esp_events, debug, slash):
    canonical = reverse("anymail:postmark_tracking_webhook")
    assert canonical == "/webhooks/postmark/tracking/"
    path = canonical.removesuffix("/") + slash

    response = _postmark_post(path, WEBHOOK_SECRET)

    assert response.status_code == 200
    assert esp_events == [("Postmark", "delivered", "reader@example.org")]


def test_esp_webhook_with_a_wrong_secret_is_refused_with_or_without_the_slash(
    esp_events, debug, slash
):
    path = "/webhooks/postmark/tracking" + slash

    assert _postmark_post(path, "esp-webhooks:guessed").status_code == 400
    assert Client().get(path).status_code == 405
    assert esp_events == []


@pytest.mark.parametrize(
    "webhook",
    ["amazon_ses/tracking", "mailgun/tracking", "mailgun/inbound_mime", "sendgrid/inbound"],
)
def test_every_anymail_webhook_resolves_to_the_same_view_without_its_slash(webhook):
    with_slash = resolve(f"/webhooks/{webhook}/")
    without = resolve(f"/webhooks/{webhook}")

    assert without.func == with_slash.func
    assert without.url_name is None, "reverse() keeps the canonical URL with its slash"
