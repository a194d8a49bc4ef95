""" "Send a test to me" with "Preview as" set to a subscriber: the test shows that subscriber's
data, but its footer link and List-Unsubscribe unsubscribe nobody, and the page they lead to
says it was a test."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from broadcasts.models import Broadcast
from subscribers.models import StateChange, Subscriber
from subscribers.unsubscribe import unsubscribe_token
from tests.broadcasts.test_views import page_inputs
from tests.factories import SubscriberFactory


@pytest.fixture
def rita(account_a):
    return SubscriberFactory(account=account_a, email="rita@example.org", first_name="Rita")


@pytest.fixture
def test_email(alice_client, account_a, rita, eager_celery, django_capture_on_commit_callbacks):
    """The test email alice sends herself of a broadcast previewed as Rita."""
    broadcast = Broadcast.objects.create(
        account=account_a, subject="Soup for {{ subscriber.first_name }}", body="Hello."
    )
    page = reverse("broadcast_edit", args=[broadcast.id])
    data = {
        **page_inputs(alice_client.get(page)),
        "body": "Hello {{ subscriber.first_name }}, [leave]({{ unsubscribe_url }}).",
        "preview_email": "rita@example.org",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(reverse("broadcast_test", args=[broadcast.id]), data)
    assert response.status_code == 302
    (message,) = mail.outbox
    return message


def _links(message) -> list[str]:
    """Every unsubscribe address the test email carries: in the text part the footer's and the
    body's, in the HTML part the same two, and both of List-Unsubscribe."""
    text = message.body
    html = message.alternatives[0][0]
    header = message.extra_headers.get("List-Unsubscribe", "")
    return [
        re.search(r"Unsubscribe: (\S+)", text)[1],
        re.search(r"leave \((\S+)\)", text)[1],
        *re.findall(r'href="([^"]*/u/[^"]*)"', html),
        *re.findall(r"<([^>]+)>", header),
    ]


def test_a_test_previewed_as_a_subscriber_shows_their_data_but_not_their_unsubscribe_link(
    test_email, rita
):
    assert test_email.to == ["alice@example.com"]
    assert test_email.subject == "[Test] Soup for Rita"
    assert test_email.body.startswith("Hello Rita")
    assert test_email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = test_email.message().as_bytes()
    assert unsubscribe_token(subscriber=rita).encode() not in raw
    assert len(_links(test_email)) == 6


def test_every_unsubscribe_link_of_a_test_unsubscribes_nobody_and_says_it_was_a_test(
    test_email, rita
):
    anonymous = Client(enforce_csrf_checks=True)
    for link in _links(test_email):
        if link.startswith("mailto:"):
            continue
        path = link.split("://", 1)[1].split("/", 1)[1]
        for response in (
            anonymous.get(f"/{path}"),
            anonymous.post(f"/{path}", {"action": "unsubscribe"}),
            anonymous.post(f"/{path}", {"List-Unsubscribe": "One-Click"}),
        ):
            assert response.status_code == 200
            assert "This was a test email" in response.content.decode()
    rita.refresh_from_db()
    assert rita.state == Subscriber.State.ACTIVE
    assert not StateChange.objects.filter(subscriber=rita).exists()
