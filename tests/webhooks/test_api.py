"""/v4/webhooks (legacy) and /v4/webhook_endpoints with their delivery history: Kit's shapes,
Kit's errors, nothing stored on a refusal, and another account's ids are 404s."""

from __future__ import annotations

import pytest
from django.test import Client

from api.oauth import oauth_application_create
from automations.engine import events_consume
from automations.models import Trigger
from subscribers.services import subscribers_tag
from tests.api.kit_examples import PAGINATION, assert_kit_shape
from tests.api.test_oauth import REDIRECT, bearer, tokens_for
from tests.factories import SubscriberFactory, TagFactory
from tests.webhooks.conftest import NOW
from webhooks.delivery import deliveries_send
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookSubscription
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db

# Kit's documented examples (developers.kit.com, API v4: webhooks).
KIT_CREATE_WEBHOOK = {
    "webhook": {
        "id": 9,
        "account_id": 1539,
        "event": {"name": "subscriber_activate", "initiator_value": None},
        "target_url": "https://api.ourservice.com/webhooks/kit",
    }
}
KIT_LIST_WEBHOOKS = {"webhooks": [KIT_CREATE_WEBHOOK["webhook"]], "pagination": PAGINATION}
ENDPOINT = {
    "id": 1,
    "name": "My webhook",
    "description": "Listens for things",
    "url": "https://hooks.example.com/incoming",
    "events": ["subscriber.created"],
    "status": "active",
    "disabled_reason": None,
    "failing_since": None,
    "previous_secret_expires_at": None,
    "created_at": "2026-07-29T14:32:10Z",
    "updated_at": "2026-07-29T14:32:10Z",
}


def _stored():
    return (
        list(WebhookEndpoint.objects.values_list("url", "enabled", "secret", "previous_secret")),
        list(WebhookSubscription.objects.values_list("event_type", "object_id")),
        Trigger.objects.count(),
    )


def test_a_legacy_webhook_is_created_listed_and_deleted_as_kit_shows_them(api_a, account_a):
    answer = api_a.post(
        "/v4/webhooks",
        {
            "target_url": "https://api.ourservice.com/webhooks/kit",
            "event": {
                "name": "subscriber.subscriber_activate",
                "form_id": None,
                "tag_id": None,
                "sequence_id": None,
                "product_id": None,
                "initiator_value": None,
                "custom_field_id": None,
            },
        },
    )

    assert answer.status_code == 201
    assert_kit_shape(answer.json(), KIT_CREATE_WEBHOOK)
    webhook = answer.json()["webhook"]
    assert webhook["event"] == {"name": "subscriber_activate", "initiator_value": None}
    assert webhook["account_id"] == account_a.pk
    listed = api_a.get("/v4/webhooks")
    assert_kit_shape(listed.json(), KIT_LIST_WEBHOOKS)
    assert api_a.delete(f"/v4/webhooks/{webhook['id']}").status_code == 204
    assert _stored() == ([], [], 0)


def test_a_legacy_webhook_names_its_tag(api_a, account_a):
    tag = TagFactory(account=account_a)

    answer = api_a.post(
        "/v4/webhooks",
        {"target_url": "https://example.com/hook", "event": {"name": "tag_add", "tag_id": tag.pk}},
    )

    assert answer.status_code == 201
    assert answer.json()["webhook"]["event"] == {
        "name": "tag_add",
        "tag_id": tag.pk,
        "initiator_value": None,
    }
    trigger = Trigger.objects.get()
    assert (trigger.role, trigger.kind, trigger.object_id) == ("hook", "tag_added", tag.pk)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"target_url": "https://example.com/h", "event": {"name": "subscriber.nope"}},
            "not a supported",
        ),
        (
            {"target_url": "https://example.com/h", "event": {"name": "subscriber.tag_add"}},
            "tag_id is required",
        ),
        (
            {"target_url": "https://example.com/h", "event": {"name": "tag_add", "tag_id": 999999}},
            "tag_id 999999 was not found",
        ),
        (
            {"target_url": "https://example.com/h", "event": {"name": "tag_add", "tag_id": 2**64}},
            "was not found",
        ),
        (
            {"target_url": "https://example.com/h", "event": {"name": "tag_add", "tag_id": "3"}},
            "must be an integer",
        ),
        (
            {"target_url": "ftp://example.com/h", "event": {"name": "subscriber_activate"}},
            "http or https",
        ),
        ({"event": {"name": "subscriber_activate"}}, "target_url"),
        ({"target_url": "https://example.com/h", "event": {}}, "event.name is required"),
    ],
)
def test_a_bad_legacy_webhook_is_a_422_and_stores_nothing(api_a, body, error):
    answer = api_a.post("/v4/webhooks", body)

    assert answer.status_code == 422
    assert any(error in message for message in answer.json()["errors"]), answer.json()
    assert _stored() == ([], [], 0)


def test_a_private_target_is_a_422_and_stores_nothing(api_a, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    for path, body in (
        (
            "/v4/webhooks",
            {"target_url": "http://127.0.0.1/", "event": {"name": "subscriber_activate"}},
        ),
        (
            "/v4/webhook_endpoints",
            {"url": "http://169.254.169.254/", "events": ["subscriber.created"]},
        ),
    ):
        answer = api_a.post(path, body)
        assert answer.status_code == 422
        assert "must be a public address" in answer.json()["errors"][0]
    assert _stored() == ([], [], 0)


def test_an_endpoint_shows_its_secret_once(api_a):
    answer = api_a.post(
        "/v4/webhook_endpoints",
        {
            "url": "https://hooks.example.com/incoming",
            "events": ["subscriber.created", "subscriber.tag_added"],
            "name": "My webhook",
            "description": "Listens for things",
        },
    )

    assert answer.status_code == 201
    created = answer.json()["webhook_endpoint"]
    assert_kit_shape(created, {**ENDPOINT, "secret": "abc"})
    assert created["secret"] == WebhookEndpoint.objects.get().secret
    assert created["events"] == ["subscriber.created", "subscriber.tag_added"]
    shown = api_a.get(f"/v4/webhook_endpoints/{created['id']}").json()["webhook_endpoint"]
    assert "secret" not in shown
    listed = api_a.get("/v4/webhook_endpoints").json()
    assert_kit_shape(listed, {"webhook_endpoints": [ENDPOINT], "pagination": PAGINATION})


def test_an_endpoint_is_updated_disabled_and_deleted(api_a, account_a):
    endpoint_id = api_a.post(
        "/v4/webhook_endpoints", {"url": "https://a.example.com/", "events": ["subscriber.created"]}
    ).json()["webhook_endpoint"]["id"]

    answer = api_a.put(
        f"/v4/webhook_endpoints/{endpoint_id}",
        {"events": ["subscriber.bounced", "subscriber.complained"], "status": "disabled"},
    )

    shown = answer.json()["webhook_endpoint"]
    assert (shown["events"], shown["status"], shown["disabled_reason"]) == (
        ["subscriber.bounced", "subscriber.complained"],
        "disabled",
        "manual",
    )
    assert set(Trigger.objects.values_list("kind", flat=True)) == {"bounced", "complained"}
    assert api_a.get("/v4/webhook_endpoints", status="active").json()["webhook_endpoints"] == []
    assert api_a.get("/v4/webhook_endpoints", status="nope").status_code == 422
    assert api_a.delete(f"/v4/webhook_endpoints/{endpoint_id}").status_code == 204
    assert _stored() == ([], [], 0)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"url": "https://a.example.com/", "events": []}, "at least one event"),
        ({"url": "https://a.example.com/", "events": ["subscriber.tag_add"]}, "not a supported"),
        ({"url": "https://a.example.com/", "events": ["purchase.created"]}, "not a supported"),
        ({"url": "https://a.example.com/", "events": "subscriber.created"}, "events"),
        ({"url": "mailto:a@example.com", "events": ["subscriber.created"]}, "http or https"),
    ],
)
def test_a_bad_endpoint_is_a_422_and_stores_nothing(api_a, body, error):
    answer = api_a.post("/v4/webhook_endpoints", body)

    assert answer.status_code == 422
    assert any(error in message for message in answer.json()["errors"]), answer.json()
    assert _stored() == ([], [], 0)


def test_a_bad_update_changes_nothing(api_a):
    endpoint_id = api_a.post(
        "/v4/webhook_endpoints", {"url": "https://a.example.com/", "events": ["subscriber.created"]}
    ).json()["webhook_endpoint"]["id"]
    before = _stored()

    for body in (
        {"url": "gopher://a.example.com/", "events": ["subscriber.bounced"]},
        {"events": ["subscriber.nope"], "name": "Renamed"},
        {"status": "paused"},
    ):
        assert api_a.put(f"/v4/webhook_endpoints/{endpoint_id}", body).status_code == 422
    assert _stored() == before
    assert WebhookEndpoint.objects.get().name == ""


@pytest.fixture
def delivered(account_a, receiver):
    """An endpoint of account A with one delivered and one failing delivery."""
    tag = TagFactory(account=account_a)
    endpoint = endpoint_create(account=account_a, url=receiver.url, events=["subscriber.tag_added"])
    receiver.secret = endpoint.secret
    for person in SubscriberFactory.create_batch(2, account=account_a):
        subscribers_tag(account_id=account_a.pk, tag_id=tag.pk, subscriber_ids=[person.pk])
        events_consume(now=NOW)
    receiver.answers.extend([(200, {}, "thanks"), (500, {}, "boom")])
    deliveries_send(now=NOW)
    return endpoint


def test_the_delivery_history_lists_newest_first_and_shows_attempts(api_a, delivered):
    listed = api_a.get(f"/v4/webhook_endpoints/{delivered.pk}/deliveries").json()
    newest, oldest = listed["deliveries"]
    assert newest["id"] > oldest["id"]
    assert {newest["status"], oldest["status"]} == {"delivered", "retrying"}
    failing = api_a.get(f"/v4/webhook_endpoints/{delivered.pk}/deliveries", status="retrying")
    (only,) = failing.json()["deliveries"]

    shown = api_a.get(f"/v4/webhook_endpoints/{delivered.pk}/deliveries/{only['id']}").json()

    delivery = shown["delivery"]
    assert delivery["attempt_count"] == 1
    assert delivery["events"][0]["type"] == "subscriber.tag_added"
    assert delivery["attempts"] == [
        {
            "attempted_at": "2026-03-02T10:00:00Z",
            "status_code": 500,
            "response_body": "boom",
            "duration_ms": delivery["attempts"][0]["duration_ms"],
            "error": None,
        }
    ]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"status": "lost"}, "status lost"),
        ({"event_type": "subscriber.nope"}, "event_type subscriber.nope"),
        ({"per_page": "1001"}, "per_page"),
        ({"after": "forged"}, "cursor is invalid"),
    ],
)
def test_bad_history_filters_are_422s(api_a, delivered, params, error):
    answer = api_a.get(f"/v4/webhook_endpoints/{delivered.pk}/deliveries", **params)

    assert answer.status_code == 422
    assert error in answer.json()["errors"][0]


def test_a_delivery_is_resent_with_the_same_events(api_a, delivered):
    delivery = WebhookDelivery.objects.filter(endpoint=delivered).first()

    answer = api_a.post(f"/v4/webhook_endpoints/{delivered.pk}/deliveries/{delivery.pk}/resend")

    assert answer.status_code == 201
    resent = answer.json()["delivery"]
    assert resent["status"] == "pending" and resent["id"] != delivery.pk
    assert resent["events"] == delivery.events


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/v4/webhook_endpoints/{endpoint}", None),
        ("put", "/v4/webhook_endpoints/{endpoint}", {"status": "disabled"}),
        ("delete", "/v4/webhook_endpoints/{endpoint}", None),
        ("get", "/v4/webhook_endpoints/{endpoint}/deliveries", None),
        ("get", "/v4/webhook_endpoints/{endpoint}/deliveries/{delivery}", None),
        ("post", "/v4/webhook_endpoints/{endpoint}/deliveries/{delivery}/resend", None),
        ("post", "/v4/webhook_endpoints/{endpoint}/rotate_secret", None),
        ("post", "/v4/webhook_endpoints/{endpoint}/revoke_previous_secret", None),
        ("delete", "/v4/webhooks/{legacy}", None),
        # A legacy webhook is not an endpoint, nor the other way round.
        ("own:get", "/v4/webhook_endpoints/{legacy}", None),
        ("own:delete", "/v4/webhooks/{endpoint}", None),
    ],
)
def test_another_accounts_webhooks_are_404_and_nothing_changes(
    api_a, api_b, account_a, delivered, method, path, body
):
    legacy = api_a.post(
        "/v4/webhooks",
        {"target_url": "https://example.com/h", "event": {"name": "subscriber_activate"}},
    ).json()["webhook"]["id"]
    delivery = WebhookDelivery.objects.filter(endpoint=delivered).first()
    client = api_b
    if method.startswith("own:"):
        client, method = api_a, method[4:]
    before = (_stored(), WebhookDelivery.objects.count())

    answer = client.call(
        method, path.format(endpoint=delivered.pk, delivery=delivery.pk, legacy=legacy), body
    )

    assert answer.status_code == 404
    assert answer.json() == {"errors": ["Not Found"]}
    assert (_stored(), WebhookDelivery.objects.count()) == before
    assert api_b.get("/v4/webhooks").json()["webhooks"] == []
    assert api_b.get("/v4/webhook_endpoints").json()["webhook_endpoints"] == []


def test_an_apps_endpoints_are_its_own(alice_client, api_a):
    """An endpoint created with an OAuth token belongs to that app: the app's tokens see only
    theirs (another app's, or a key's, are 404s); an API key sees them all."""
    shop, shop_secret = oauth_application_create(name="Shop", redirect_uris=[REDIRECT])
    crm, crm_secret = oauth_application_create(name="CRM", redirect_uris=[REDIRECT])
    shop.plain_secret, crm.plain_secret = shop_secret, crm_secret
    keyed = api_a.post(
        "/v4/webhook_endpoints", {"url": "https://a.example.com/", "events": ["subscriber.created"]}
    ).json()["webhook_endpoint"]["id"]

    def as_app(app, method, path, body=None):
        token = tokens_for(alice_client, app)["access_token"]
        return getattr(Client(), method)(
            path, body, content_type="application/json", headers=bearer(token)
        )

    created = as_app(
        shop,
        "post",
        "/v4/webhook_endpoints",
        {"url": "https://shop.example.com/", "events": ["subscriber.created"]},
    )
    assert created.status_code == 201
    mine = created.json()["webhook_endpoint"]["id"]
    assert WebhookEndpoint.objects.get(pk=mine).oauth_application == shop
    listed = as_app(shop, "get", "/v4/webhook_endpoints").json()["webhook_endpoints"]
    assert [row["id"] for row in listed] == [mine]
    assert as_app(shop, "get", f"/v4/webhook_endpoints/{keyed}").status_code == 404
    assert as_app(crm, "delete", f"/v4/webhook_endpoints/{mine}").status_code == 404
    assert {
        row["id"] for row in api_a.get("/v4/webhook_endpoints").json()["webhook_endpoints"]
    } == {
        keyed,
        mine,
    }


def test_a_secret_is_rotated_once_per_window_unless_forced_and_revoked(api_a):
    created = api_a.post(
        "/v4/webhook_endpoints", {"url": "https://a.example.com/", "events": ["subscriber.created"]}
    ).json()["webhook_endpoint"]
    path = f"/v4/webhook_endpoints/{created['id']}"

    rotated = api_a.post(f"{path}/rotate_secret")
    again = api_a.post(f"{path}/rotate_secret")
    forced = api_a.post(f"{path}/rotate_secret", {"force": True})

    assert rotated.status_code == 200
    first = rotated.json()["webhook_endpoint"]
    assert first["secret"] != created["secret"] and first["previous_secret_expires_at"]
    assert again.status_code == 409 and "force" in again.json()["errors"][0]
    assert forced.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == forced.json()["webhook_endpoint"]["secret"]
    assert endpoint.previous_secret == first["secret"]
    revoked = api_a.post(f"{path}/revoke_previous_secret").json()["webhook_endpoint"]
    assert revoked["previous_secret_expires_at"] is None and "secret" not in revoked
    endpoint.refresh_from_db()
    assert endpoint.previous_secret == ""
