"""Each /v4/ endpoint: Kit's documented shape, its statuses, and what it changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from automations.models import Event, Rule, Trigger
from subscribers.models import StateChange, Subscriber, Suppression, Tag, Tagging, email_hash
from tests.api import kit_examples as kit
from tests.api.kit_examples import assert_kit_shape
from tests.factories import (
    CustomFieldFactory,
    SubscriberFactory,
    TagFactory,
    TaggingFactory,
)

State = Subscriber.State


@pytest.fixture
def ann(account_a):
    CustomFieldFactory(account=account_a, key="category", label="Category")
    return SubscriberFactory(
        account=account_a, email="ann@example.com", first_name="Ann", fields={"category": "One"}
    )


# Account ------------------------------------------------------------------------------------


def test_account_is_the_keys_account_in_kits_shape(api_a, account_a, alice):
    response = api_a.get("/v4/account")
    assert response.status_code == 200
    body = response.json()
    assert_kit_shape(body, kit.GET_ACCOUNT)
    assert body["account"]["id"] == account_a.id
    assert body["account"]["name"] == "Ann's Kitchen"
    assert body["user"] == {"id": alice.id, "email": "alice@example.com"}


# Subscribers --------------------------------------------------------------------------------


def test_subscriber_list_is_in_kits_shape(api_a, ann):
    response = api_a.get("/v4/subscribers")
    assert response.status_code == 200
    body = response.json()
    assert_kit_shape(body, kit.LIST_SUBSCRIBERS)
    assert body["subscribers"][0] == {
        "id": ann.id,
        "first_name": "Ann",
        "email_address": "ann@example.com",
        "state": "active",
        "created_at": ann.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fields": {"category": "One"},
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("", ["active"]),
        ("active", ["active"]),
        ("inactive", ["unconfirmed"]),
        ("cancelled", ["unsubscribed"]),
        ("bounced", ["bounced"]),
        ("complained", ["complained"]),
        ("all", ["active", "bounced", "complained", "unconfirmed", "unsubscribed"]),
    ],
)
def test_subscriber_list_maps_kits_status_to_our_states(api_a, account_a, status, expected):
    for state in State.values:
        SubscriberFactory(account=account_a, state=state, email=f"{state}@example.com")
    params = {"status": status} if status else {}
    body = api_a.get("/v4/subscribers", **params).json()
    assert sorted(s["email_address"].split("@")[0] for s in body["subscribers"]) == expected
    kit_state = {"unconfirmed": "inactive", "unsubscribed": "cancelled"}
    assert sorted(s["state"] for s in body["subscribers"]) == sorted(
        kit_state.get(state, state) for state in expected
    )


def test_subscriber_list_filters_by_address_and_dates(api_a, account_a):
    old = SubscriberFactory(account=account_a, email="old@example.com")
    new = SubscriberFactory(account=account_a, email="new@example.com")
    Subscriber.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=10),
        updated_at=timezone.now() - timedelta(days=10),
    )
    day = (timezone.now() - timedelta(days=5)).date().isoformat()

    def emails(**params):
        return [
            s["email_address"] for s in api_a.get("/v4/subscribers", **params).json()["subscribers"]
        ]

    assert emails(email_address="OLD@example.com") == ["old@example.com"]
    assert emails(email_address="old@example.com,new@example.com") == [new.email, old.email]
    assert emails(created_after=day) == ["new@example.com"]
    assert emails(created_before=day) == ["old@example.com"]
    assert emails(updated_after=day) == ["new@example.com"]
    assert emails(updated_before=day) == ["old@example.com"]


def test_subscriber_list_refuses_a_bad_status_and_a_bad_date_listing_both(api_a):
    response = api_a.get("/v4/subscribers", status="gone", created_after="yesterday")
    assert response.status_code == 422
    assert response.json() == {
        "errors": [
            "status must be one of active, inactive, cancelled, bounced, complained, all",
            "created_after must be a date (yyyy-mm-dd) or a time (ISO 8601)",
        ]
    }


def test_create_subscriber_is_201_in_kits_shape(api_a, account_a):
    CustomFieldFactory(account=account_a, key="last_name", label="Last name")
    response = api_a.post(
        "/v4/subscribers",
        {"first_name": "Alice", "email_address": "Alice@Example.com", "fields": {"last_name": "L"}},
    )
    assert response.status_code == 201
    body = response.json()
    assert_kit_shape(body, kit.CREATE_SUBSCRIBER)
    subscriber = Subscriber.objects.get(account=account_a)
    assert body["subscriber"]["id"] == subscriber.id
    assert (subscriber.email, subscriber.first_name, subscriber.state) == (
        "alice@example.com",
        "Alice",
        State.ACTIVE,
    )
    assert subscriber.fields == {"last_name": "L"}
    assert subscriber.source == "api"


def test_create_with_an_existing_address_is_200_and_updates_the_name(api_a, ann):
    response = api_a.post(
        "/v4/subscribers", {"first_name": "Annie", "email_address": "ann@example.com"}
    )
    assert response.status_code == 200
    assert response.json()["subscriber"]["id"] == ann.id
    ann.refresh_from_db()
    assert ann.first_name == "Annie"
    assert ann.fields == {"category": "One"}
    assert Subscriber.objects.count() == 1


@pytest.mark.parametrize(
    ("state", "kit_state"),
    [
        (State.UNSUBSCRIBED, "cancelled"),
        (State.BOUNCED, "bounced"),
        (State.COMPLAINED, "complained"),
    ],
)
def test_create_never_reactivates_a_suppressed_subscriber(api_a, account_a, state, kit_state):
    gone = SubscriberFactory(account=account_a, email="gone@example.com", state=state)
    response = api_a.post(
        "/v4/subscribers", {"email_address": "gone@example.com", "state": "active"}
    )
    assert response.status_code == 200
    assert response.json()["subscriber"]["state"] == kit_state
    gone.refresh_from_db()
    assert gone.state == state


def test_create_refuses_an_address_erased_at_the_subscribers_request(api_a, account_a):
    Suppression.objects.create(
        account=account_a, email_hash=email_hash("erased@example.com"), reason="deleted"
    )
    response = api_a.post("/v4/subscribers", {"email_address": "erased@example.com"})
    assert response.status_code == 422
    assert not Subscriber.objects.exists()


def test_create_in_kits_cancelled_state_makes_an_unsubscribed_subscriber(api_a, account_a):
    response = api_a.post(
        "/v4/subscribers", {"email_address": "no@example.com", "state": "cancelled"}
    )
    assert response.status_code == 201
    assert response.json()["subscriber"]["state"] == "cancelled"
    subscriber = Subscriber.objects.get(account=account_a)
    assert subscriber.state == State.UNSUBSCRIBED
    assert StateChange.objects.filter(subscriber=subscriber, to_state="unsubscribed").exists()


def test_create_in_an_unknown_or_inactive_state_is_422(api_a):
    for state in ("inactive", "sleeping"):
        response = api_a.post("/v4/subscribers", {"email_address": "x@example.com", "state": state})
        assert response.status_code == 422
    assert not Subscriber.objects.exists()


def test_create_ignores_unknown_custom_fields_with_a_warning(api_a, account_a):
    response = api_a.post(
        "/v4/subscribers", {"email_address": "x@example.com", "fields": {"shoe_size": "42"}}
    )
    assert response.status_code == 201
    assert response.json()["warnings"] == ["Custom field shoe_size does not exist"]
    assert Subscriber.objects.get(account=account_a).fields == {}


def test_get_subscriber_is_in_kits_shape(api_a, ann):
    response = api_a.get(f"/v4/subscribers/{ann.id}")
    assert response.status_code == 200
    assert_kit_shape(response.json(), kit.GET_SUBSCRIBER)
    assert response.json()["subscriber"]["email_address"] == "ann@example.com"


def test_update_subscriber_changes_address_name_and_fields(api_a, ann):
    response = api_a.put(
        f"/v4/subscribers/{ann.id}",
        {"email_address": "ann@new.example", "first_name": "Annie", "fields": {"category": ""}},
    )
    assert response.status_code == 200
    assert_kit_shape(response.json(), kit.CREATE_SUBSCRIBER)
    ann.refresh_from_db()
    assert (ann.email, ann.first_name, ann.fields) == ("ann@new.example", "Annie", {})


def test_update_to_an_address_taken_is_422_and_changes_nothing(api_a, account_a, ann):
    SubscriberFactory(account=account_a, email="taken@example.com")
    response = api_a.put(
        f"/v4/subscribers/{ann.id}", {"email_address": "taken@example.com", "first_name": "X"}
    )
    assert response.status_code == 422
    assert response.json() == {"errors": ["Email address has already been taken"]}
    ann.refresh_from_db()
    assert (ann.email, ann.first_name) == ("ann@example.com", "Ann")


def test_update_with_a_bad_address_is_422_and_changes_nothing(api_a, ann):
    response = api_a.put(f"/v4/subscribers/{ann.id}", {"email_address": "nope"})
    assert response.status_code == 422
    ann.refresh_from_db()
    assert ann.email == "ann@example.com"


def test_unsubscribe_is_204_and_unsubscribes(api_a, ann):
    response = api_a.post(f"/v4/subscribers/{ann.id}/unsubscribe", {})
    assert response.status_code == 204
    ann.refresh_from_db()
    assert ann.state == State.UNSUBSCRIBED


def test_unsubscribe_leaves_a_bounced_subscriber_bounced(api_a, account_a):
    bounced = SubscriberFactory(account=account_a, state=State.BOUNCED)
    assert api_a.post(f"/v4/subscribers/{bounced.id}/unsubscribe").status_code == 204
    bounced.refresh_from_db()
    assert bounced.state == State.BOUNCED


def test_a_subscribers_tags_are_in_kits_shape(api_a, account_a, ann):
    tagging = TaggingFactory(tag=TagFactory(account=account_a, name="Buyers"), subscriber=ann)
    TagFactory(account=account_a, name="Not theirs")
    response = api_a.get(f"/v4/subscribers/{ann.id}/tags")
    assert response.status_code == 200
    body = response.json()
    assert_kit_shape(body, kit.LIST_TAGS_FOR_SUBSCRIBER)
    assert [tag["id"] for tag in body["tags"]] == [tagging.tag_id]


# Tags ---------------------------------------------------------------------------------------


def test_tag_list_is_in_kits_shape_with_counts(api_a, account_a, ann):
    tag = TagFactory(account=account_a, name="Buyers")
    TaggingFactory(tag=tag, subscriber=ann)
    body = api_a.get("/v4/tags").json()
    assert_kit_shape(body, kit.LIST_TAGS)
    assert body["tags"][0]["name"] == "Buyers"
    assert body["tags"][0]["subscriber_count"] == 1


def test_create_tag_is_201_then_200_with_the_same_tag(api_a, account_a):
    first = api_a.post("/v4/tags", {"name": "Completed"})
    assert first.status_code == 201
    assert_kit_shape(first.json(), kit.CREATE_TAG)
    again = api_a.post("/v4/tags", {"name": "completed"})
    assert again.status_code == 200
    assert again.json()["tag"]["id"] == first.json()["tag"]["id"]
    assert Tag.objects.filter(account=account_a).count() == 1


def test_create_tag_without_a_name_is_422(api_a):
    response = api_a.post("/v4/tags", {"name": "  "})
    assert response.status_code == 422
    assert response.json() == {"errors": ["Name can't be blank"]}
    assert not Tag.objects.exists()


def test_update_tag_renames_it(api_a, account_a):
    tag = TagFactory(account=account_a, name="signup")
    response = api_a.put(f"/v4/tags/{tag.id}", {"name": "signed up"})
    assert response.status_code == 200
    assert_kit_shape(response.json(), kit.CREATE_TAG)
    tag.refresh_from_db()
    assert tag.name == "signed up"


def test_update_tag_to_a_name_taken_is_422_and_changes_nothing(api_a, account_a):
    TagFactory(account=account_a, name="Buyers")
    tag = TagFactory(account=account_a, name="Leads")
    response = api_a.put(f"/v4/tags/{tag.id}", {"name": "buyers"})
    assert response.status_code == 422
    tag.refresh_from_db()
    assert tag.name == "Leads"


def test_tag_a_subscriber_is_201_then_200(api_a, account_a, ann):
    tag = TagFactory(account=account_a)
    first = api_a.post(f"/v4/tags/{tag.id}/subscribers/{ann.id}", {})
    assert first.status_code == 201
    assert_kit_shape(first.json(), kit.TAG_SUBSCRIBER)
    assert api_a.post(f"/v4/tags/{tag.id}/subscribers/{ann.id}").status_code == 200
    assert Tagging.objects.filter(tag=tag, subscriber=ann).count() == 1


def test_tag_a_subscriber_by_email_address(api_a, account_a, ann):
    tag = TagFactory(account=account_a)
    response = api_a.post(f"/v4/tags/{tag.id}/subscribers", {"email_address": "ANN@example.com"})
    assert response.status_code == 201
    assert_kit_shape(response.json(), kit.TAG_SUBSCRIBER)
    assert Tagging.objects.filter(tag=tag, subscriber=ann).exists()


def test_tag_by_email_without_an_address_is_422_and_with_an_unknown_one_404(api_a, account_a):
    tag = TagFactory(account=account_a)
    missing = api_a.post(f"/v4/tags/{tag.id}/subscribers", {})
    assert missing.status_code == 422
    assert missing.json() == {
        "errors": ["Either subscriber id or email address is required to tag subscriber"]
    }
    unknown = api_a.post(f"/v4/tags/{tag.id}/subscribers", {"email_address": "who@example.com"})
    assert unknown.status_code == 404
    assert not Tagging.objects.exists()


def test_untag_by_id_and_by_email_address_is_204(api_a, account_a, ann):
    tag = TagFactory(account=account_a)
    TaggingFactory(tag=tag, subscriber=ann)
    assert api_a.delete(f"/v4/tags/{tag.id}/subscribers/{ann.id}").status_code == 204
    assert not Tagging.objects.exists()
    TaggingFactory(tag=tag, subscriber=ann)
    response = api_a.delete(f"/v4/tags/{tag.id}/subscribers", {"email_address": ann.email})
    assert response.status_code == 204
    assert not Tagging.objects.exists()


def test_untag_by_email_without_an_address_is_422(api_a, account_a, ann):
    tag = TagFactory(account=account_a)
    TaggingFactory(tag=tag, subscriber=ann)
    response = api_a.delete(f"/v4/tags/{tag.id}/subscribers")
    assert response.status_code == 422
    assert Tagging.objects.exists()


def test_a_tags_subscribers_are_in_kits_shape_active_by_default(api_a, account_a, ann):
    tag = TagFactory(account=account_a)
    tagging = TaggingFactory(tag=tag, subscriber=ann)
    TaggingFactory(tag=tag, subscriber=SubscriberFactory(account=account_a, state=State.BOUNCED))
    SubscriberFactory(account=account_a)
    body = api_a.get(f"/v4/tags/{tag.id}/subscribers").json()
    assert_kit_shape(body, kit.LIST_SUBSCRIBERS_FOR_TAG)
    assert [s["id"] for s in body["subscribers"]] == [ann.id]
    assert body["subscribers"][0]["tagged_at"] == tagging.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    everyone = api_a.get(f"/v4/tags/{tag.id}/subscribers", status="all").json()
    assert len(everyone["subscribers"]) == 2


def test_a_subscriber_with_several_tags_appears_once_under_each_with_its_own_tagged_at(
    api_a, account_a, ann
):
    first, second = TagFactory(account=account_a), TagFactory(account=account_a)
    TaggingFactory(tag=first, subscriber=ann)
    later = TaggingFactory(tag=second, subscriber=ann)
    Tagging.objects.filter(pk=later.pk).update(created_at=timezone.now() + timedelta(days=1))
    TaggingFactory(tag=second, subscriber=SubscriberFactory(account=account_a))
    body = api_a.get(f"/v4/tags/{second.id}/subscribers").json()
    assert [s["id"] for s in body["subscribers"]].count(ann.id) == 1
    tagged = next(s for s in body["subscribers"] if s["id"] == ann.id)
    later.refresh_from_db()
    assert tagged["tagged_at"] == later.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    tags = api_a.get(f"/v4/subscribers/{ann.id}/tags").json()["tags"]
    assert sorted(tag["id"] for tag in tags) == sorted([first.id, second.id])


def test_a_tags_subscribers_filter_by_when_they_were_tagged(api_a, account_a, ann):
    tag = TagFactory(account=account_a)
    old = TaggingFactory(tag=tag, subscriber=ann)
    Tagging.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    recent = TaggingFactory(tag=tag, subscriber=SubscriberFactory(account=account_a))
    # Ann's recent tagging with another tag says nothing of when she got this one.
    TaggingFactory(tag=TagFactory(account=account_a), subscriber=ann)
    day = (timezone.now() - timedelta(days=5)).date().isoformat()

    def ids(**params):
        body = api_a.get(f"/v4/tags/{tag.id}/subscribers", **params).json()
        return [s["id"] for s in body["subscribers"]]

    assert ids(tagged_after=day) == [recent.subscriber_id]
    assert ids(tagged_before=day) == [ann.id]


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/v4/subscribers/abc"), ("post", "/v4/purchases"), ("delete", "/v4/x")],
)
def test_any_other_path_is_kits_404(api_a, method, path):
    response = api_a.call(method, path)
    assert response.status_code == 404
    assert response.json() == {"errors": ["Not Found"]}


def test_any_other_path_still_needs_a_key(db):
    from tests.api.conftest import ApiClient

    assert ApiClient(None).get("/v4/forms").status_code == 401


def test_a_create_is_one_statement_after_the_key_and_writes_its_events_with_it(
    api_a, account_a, django_assert_max_num_queries
):
    """POST /v4/subscribers is the API's busiest write: the key's lookup, the account's custom
    fields (when fields are given), then one statement (insert, suppression check and outbox
    events together)."""
    field = CustomFieldFactory(account=account_a, key="company")
    rule = Rule.objects.create(account=account_a, name="Watch")
    for kind, detail in (("created", ""), ("activated", ""), ("field_changed", "company")):
        Trigger.objects.create(
            account=account_a, role=Trigger.Role.RULE, rule=rule, kind=kind, detail=detail
        )
    api_a.post("/v4/subscribers", {"email_address": "warm@example.com"})
    Event.objects.all().delete()
    with django_assert_max_num_queries(3):
        response = api_a.post(
            "/v4/subscribers",
            {"email_address": "ada@example.com", "first_name": "Ada", "fields": {"company": "Kit"}},
        )
    assert response.status_code == 201
    ada = Subscriber.objects.get(account=account_a, email="ada@example.com")
    assert (ada.first_name, ada.fields, ada.state) == ("Ada", {"company": "Kit"}, "active")
    assert response.json()["subscriber"]["id"] == ada.id
    assert response.json()["subscriber"]["fields"] == {field.key: "Kit"}
    assert sorted(Event.objects.values_list("kind", "subscriber_id", "detail")) == [
        ("activated", ada.id, ""),
        ("created", ada.id, ""),
        ("field_changed", ada.id, "company"),
    ]


def test_a_create_refused_or_upserted_writes_no_event(api_a, account_a):
    rule = Rule.objects.create(account=account_a, name="Watch")
    Trigger.objects.create(account=account_a, role=Trigger.Role.RULE, rule=rule, kind="created")
    Suppression.objects.create(account=account_a, email_hash=email_hash("gone@example.com"))
    SubscriberFactory(account=account_a, email="here@example.com")
    Event.objects.all().delete()
    assert api_a.post("/v4/subscribers", {"email_address": "gone@example.com"}).status_code == 422
    assert api_a.post("/v4/subscribers", {"email_address": "here@example.com"}).status_code == 200
    assert not Event.objects.exists()
    assert not Subscriber.objects.filter(account=account_a, email="gone@example.com").exists()
