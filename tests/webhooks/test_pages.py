"""The webhook pages in the settings: add an endpoint, its delivery log, a delivery's attempts
and "Resend", enable/disable, edit, delete; refusals change nothing; another account's ids 404."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from automations.models import Trigger
from tests.conftest import PASSWORD
from tests.factories import TagFactory
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create

RECEIVER = "http://127.0.0.1:9/hooks"


@pytest.fixture
def alice_client(client, alice):
    client.login(email=alice.email, password=PASSWORD)
    return client


@pytest.fixture
def charlie_client(alice, charlie):
    client = Client()
    client.login(email=charlie.email, password=PASSWORD)
    return client


@pytest.fixture
def private_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def endpoint(account_a, private_allowed):
    return endpoint_create(
        account=account_a, url=RECEIVER, events=["subscriber.tag_added"], name="Shop"
    )


def _delivery(endpoint, *, status=WebhookDelivery.Status.DELIVERED, attempts=()):
    event = {
        "id": "9c2e1f3a-6b7d-4e8f-a1b2-c3d4e5f60718",
        "type": "subscriber.tag_added",
        "created": "2026-12-07T10:00:00Z",
        "data": {"subscriber": {"id": 1, "email_address": "ada@example.com"}},
    }
    delivery = WebhookDelivery.objects.create(
        account_id=endpoint.account_id,
        endpoint=endpoint,
        event_type="subscriber.tag_added",
        events=[event],
        status=status,
        attempt_count=len(attempts),
    )
    for code, excerpt in attempts:
        WebhookAttempt.objects.create(
            delivery=delivery, at=timezone.now(), status_code=code, response_excerpt=excerpt
        )
    return delivery


def test_settings_link_to_the_webhooks_page_with_its_empty_state(alice_client):
    settings_page = alice_client.get(reverse("account_settings")).content.decode()
    assert reverse("webhook_endpoint_list") in settings_page
    assert "<title>Settings" in settings_page and "<title>Settings<div" not in settings_page
    page = alice_client.get(reverse("webhook_endpoint_list")).content.decode()
    assert "Tell your other tools what happens on your list" in page


def test_an_endpoint_added_in_the_app_listens_through_hook_triggers(
    alice_client, account_a, private_allowed
):
    answer = alice_client.post(
        reverse("webhook_endpoint_create"),
        {
            "url": RECEIVER,
            "name": "Shop",
            "events": ["subscriber.tag_added", "subscriber.unsubscribed"],
        },
    )
    endpoint = WebhookEndpoint.objects.get(account=account_a)
    assert answer.status_code == 302
    assert answer.url == reverse("webhook_endpoint_detail", args=[endpoint.pk])
    assert endpoint.kind == WebhookEndpoint.Kind.ENVELOPE and endpoint.enabled
    assert sorted(s.event_type for s in endpoint.subscriptions.all()) == [
        "subscriber.tag_added",
        "subscriber.unsubscribed",
    ]
    assert sorted(
        Trigger.objects.filter(role=Trigger.Role.HOOK, account=account_a).values_list(
            "kind", flat=True
        )
    ) == ["tag_added", "unsubscribed"]
    detail = alice_client.get(answer.url).content.decode()
    assert endpoint.secret in detail and "X-Kit-Signature" in detail
    listing = alice_client.get(reverse("webhook_endpoint_list")).content.decode()
    assert "Shop" in listing and "subscriber.unsubscribed" in listing


@pytest.mark.parametrize(
    "url, problem",
    [
        ("http://127.0.0.1/hooks", "must be a public address"),
        ("http://169.254.169.254/latest/meta-data/", "must be a public address"),
        ("http://localhost:8000/", "must be a public address"),
        ("ftp://example.com/", "must be an http or https URL"),
    ],
)
def test_a_private_or_odd_target_is_refused_with_its_reason_and_nothing_stored(
    alice_client, account_a, url, problem, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    answer = alice_client.post(
        reverse("webhook_endpoint_create"), {"url": url, "events": ["subscriber.tag_added"]}
    )
    assert answer.status_code == 400
    assert problem in answer.content.decode()
    assert not WebhookEndpoint.objects.filter(account=account_a).exists()
    assert not Trigger.objects.filter(account=account_a).exists()


def test_an_unknown_event_or_none_is_refused(alice_client, account_a, private_allowed):
    for events in (["subscriber.nope"], []):
        answer = alice_client.post(
            reverse("webhook_endpoint_create"), {"url": RECEIVER, "events": events}
        )
        assert answer.status_code == 400
    assert not WebhookEndpoint.objects.filter(account=account_a).exists()


def test_the_delivery_log_lists_newest_first_and_filters_by_status(alice_client, endpoint):
    delivered = _delivery(endpoint, attempts=[(200, "ok")])
    failed = _delivery(endpoint, status=WebhookDelivery.Status.FAILED, attempts=[(500, "boom")])
    url = reverse("webhook_endpoint_detail", args=[endpoint.pk])
    page = alice_client.get(url).content.decode()
    assert page.index(f"#{failed.pk}<") < page.index(f"#{delivered.pk}<")
    assert "HTTP 500" in page and "HTTP 200" in page
    only_failed = alice_client.get(url, {"status": "failed"}).content.decode()
    assert f"#{failed.pk}<" in only_failed and f"#{delivered.pk}<" not in only_failed
    # An unknown status lists everything rather than failing.
    assert f"#{delivered.pk}<" in alice_client.get(url, {"status": "x"}).content.decode()


def test_a_delivery_shows_its_attempts_and_body_and_resend_makes_a_new_one(alice_client, endpoint):
    delivery = _delivery(
        endpoint,
        status=WebhookDelivery.Status.FAILED,
        attempts=[(503, "<b>down</b>"), (None, "")],
    )
    WebhookAttempt.objects.filter(delivery=delivery, status_code=None).update(
        error="connection refused"
    )
    url = reverse("webhook_delivery_detail", args=[endpoint.pk, delivery.pk])
    page = alice_client.get(url).content.decode()
    assert "HTTP 503" in page and "connection refused" in page
    assert "&lt;b&gt;down&lt;/b&gt;" in page and "<b>down</b>" not in page
    assert "9c2e1f3a-6b7d-4e8f-a1b2-c3d4e5f60718" in page and "delivery_id" in page

    answer = alice_client.post(reverse("webhook_delivery_resend", args=[endpoint.pk, delivery.pk]))
    resent = WebhookDelivery.objects.exclude(pk=delivery.pk).get(endpoint=endpoint)
    assert answer.status_code == 302
    assert answer.url == reverse("webhook_delivery_detail", args=[endpoint.pk, resent.pk])
    assert resent.events == delivery.events
    assert resent.status == WebhookDelivery.Status.PENDING
    assert resent.next_attempt_at is not None
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    # Resend is a POST only.
    resend_url = reverse("webhook_delivery_resend", args=[endpoint.pk, delivery.pk])
    assert alice_client.get(resend_url).status_code == 405
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 2


def test_disable_then_enable(alice_client, endpoint):
    url = reverse("webhook_endpoint_enabled", args=[endpoint.pk])
    alice_client.post(url, {"enabled": "0"})
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "manual"
    alice_client.post(url, {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.disabled_reason == ""
    assert alice_client.get(url).status_code == 405


def test_edit_replaces_the_events_and_a_refused_url_keeps_the_old_one(
    alice_client, endpoint, settings
):
    url = reverse("webhook_endpoint_edit", args=[endpoint.pk])
    answer = alice_client.post(url, {"url": RECEIVER, "events": ["subscriber.created"]})
    assert answer.status_code == 302
    assert [s.event_type for s in endpoint.subscriptions.all()] == ["subscriber.created"]
    assert Trigger.objects.get(webhook__endpoint=endpoint).kind == "created"
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    answer = alice_client.post(
        url, {"url": "http://10.0.0.8/hooks", "events": ["subscriber.bounced"]}
    )
    assert "must be a public address" in answer.content.decode()
    assert answer.status_code == 400
    endpoint.refresh_from_db()
    assert endpoint.url == RECEIVER
    assert [s.event_type for s in endpoint.subscriptions.all()] == ["subscriber.created"]


def test_a_legacy_webhook_keeps_its_one_event_when_edited(alice_client, account_a, private_allowed):
    tag = TagFactory(account=account_a)
    legacy = endpoint_create(
        account=account_a,
        url="http://127.0.0.1:9/legacy",
        events={"name": "subscriber.tag_add", "tag_id": tag.pk},
        kind=WebhookEndpoint.Kind.LEGACY,
    )
    url = reverse("webhook_endpoint_edit", args=[legacy.pk])
    assert 'name="events"' not in alice_client.get(url).content.decode()
    answer = alice_client.post(url, {"url": "http://127.0.0.1:9/legacy2", "name": "Old"})
    assert answer.status_code == 302
    legacy.refresh_from_db()
    assert legacy.url == "http://127.0.0.1:9/legacy2"
    assert [(s.event_type, s.object_id) for s in legacy.subscriptions.all()] == [
        ("subscriber.tag_add", tag.pk)
    ]


def test_delete_asks_then_removes_the_endpoint_and_its_triggers(alice_client, endpoint):
    url = reverse("webhook_endpoint_delete", args=[endpoint.pk])
    assert "Delete the endpoint Shop?" in alice_client.get(url).content.decode()
    assert alice_client.post(url).status_code == 302
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not Trigger.objects.filter(role=Trigger.Role.HOOK).exists()


def test_another_accounts_endpoint_and_deliveries_are_404_and_unchanged(charlie_client, endpoint):
    delivery = _delivery(endpoint, status=WebhookDelivery.Status.FAILED)
    gets = [
        reverse("webhook_endpoint_detail", args=[endpoint.pk]),
        reverse("webhook_endpoint_edit", args=[endpoint.pk]),
        reverse("webhook_endpoint_delete", args=[endpoint.pk]),
        reverse("webhook_delivery_detail", args=[endpoint.pk, delivery.pk]),
    ]
    for url in gets:
        assert charlie_client.get(url).status_code == 404
    posts = {
        reverse("webhook_endpoint_edit", args=[endpoint.pk]): {
            "url": "https://evil.example/",
            "events": ["subscriber.created"],
        },
        reverse("webhook_endpoint_enabled", args=[endpoint.pk]): {"enabled": "0"},
        reverse("webhook_endpoint_delete", args=[endpoint.pk]): {},
        reverse("webhook_delivery_resend", args=[endpoint.pk, delivery.pk]): {},
    }
    for url, data in posts.items():
        assert charlie_client.post(url, data).status_code == 404
    endpoint.refresh_from_db()
    assert endpoint.url == RECEIVER and endpoint.enabled
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
    assert (
        charlie_client.get(reverse("webhook_endpoint_list")).content.decode().count(RECEIVER) == 0
    )


def test_a_delivery_of_another_endpoint_is_404_through_this_one(alice_client, endpoint, account_a):
    other = endpoint_create(account=account_a, url=RECEIVER, events=["subscriber.created"])
    delivery = _delivery(other)
    url = reverse("webhook_delivery_detail", args=[endpoint.pk, delivery.pk])
    assert alice_client.get(url).status_code == 404


def test_old_deliveries_page_by_cursor(alice_client, endpoint):
    deliveries = [_delivery(endpoint) for _ in range(55)]
    WebhookDelivery.objects.filter(pk=deliveries[0].pk).update(
        created_at=timezone.now() - timedelta(days=1)
    )
    url = reverse("webhook_endpoint_detail", args=[endpoint.pk])
    first = alice_client.get(url).content.decode()
    assert f"#{deliveries[-1].pk}<" in first and f"#{deliveries[0].pk}<" not in first
    older = alice_client.get(url, {"after": deliveries[5].pk}).content.decode()
    assert f"#{deliveries[0].pk}<" in older and f"#{deliveries[-1].pk}<" not in older
