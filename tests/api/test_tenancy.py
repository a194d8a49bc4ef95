"""A key reaches its own account only: every /v4/ URL with an id, called with charlie's key
(account B) on account A's objects, is a 404 and changes nothing."""

from __future__ import annotations

import pytest

from subscribers.models import StateChange, Subscriber, Tag, Tagging
from tests.factories import SubscriberFactory, TagFactory, TaggingFactory

CALLS = [
    ("get", "/v4/subscribers/{subscriber}", None),
    ("put", "/v4/subscribers/{subscriber}", {"email_address": "stolen@example.com"}),
    ("post", "/v4/subscribers/{subscriber}/unsubscribe", {}),
    ("get", "/v4/subscribers/{subscriber}/tags", None),
    ("put", "/v4/tags/{tag}", {"name": "Stolen"}),
    ("post", "/v4/tags/{tag}/subscribers/{subscriber}", {}),
    ("post", "/v4/tags/{tag}/subscribers", {"email_address": "ann@example.com"}),
    ("delete", "/v4/tags/{tag}/subscribers/{subscriber}", None),
    ("delete", "/v4/tags/{tag}/subscribers", {"email_address": "ann@example.com"}),
    ("get", "/v4/tags/{tag}/subscribers", None),
    # Account B's own tag with account A's subscriber, and A's tag with B's subscriber.
    ("post", "/v4/tags/{own_tag}/subscribers/{subscriber}", {}),
    ("delete", "/v4/tags/{own_tag}/subscribers/{subscriber}", None),
    ("delete", "/v4/tags/{tag}/subscribers/{own_subscriber}", None),
]


def _snapshot():
    return (
        list(Subscriber.objects.order_by("id").values_list("email", "first_name", "state")),
        list(Tag.objects.order_by("id").values_list("name", flat=True)),
        list(Tagging.objects.order_by("id").values_list("tag_id", "subscriber_id")),
        StateChange.objects.count(),
    )


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_another_accounts_ids_are_404_and_nothing_changes(
    api_b, account_a, account_b, method, path, body
):
    ann = SubscriberFactory(account=account_a, email="ann@example.com")
    tag = TagFactory(account=account_a, name="Buyers")
    TaggingFactory(tag=tag, subscriber=ann)
    own_tag = TagFactory(account=account_b, name="Mine")
    own_subscriber = SubscriberFactory(account=account_b, email="ann@example.com")
    TaggingFactory(tag=own_tag, subscriber=own_subscriber)
    url = path.format(
        subscriber=ann.id, tag=tag.id, own_tag=own_tag.id, own_subscriber=own_subscriber.id
    )
    before = _snapshot()
    response = api_b.call(method, url, body)
    assert response.status_code == 404, (method, url, response.content)
    assert response.json() == {"errors": ["Not Found"]}
    assert _snapshot() == before


def test_an_address_names_the_keys_own_subscriber(api_b, account_a, account_b):
    ann_a = SubscriberFactory(account=account_a, email="ann@example.com")
    ann_b = SubscriberFactory(account=account_b, email="ann@example.com")
    tag_b = TagFactory(account=account_b)
    response = api_b.post(f"/v4/tags/{tag_b.id}/subscribers", {"email_address": "ann@example.com"})
    assert response.status_code == 201
    assert response.json()["subscriber"]["id"] == ann_b.id
    assert not Tagging.objects.filter(subscriber=ann_a).exists()


def test_lists_show_only_the_keys_account(api_b, account_a, account_b):
    SubscriberFactory(account=account_a)
    TagFactory(account=account_a)
    mine = SubscriberFactory(account=account_b)
    assert [s["id"] for s in api_b.get("/v4/subscribers").json()["subscribers"]] == [mine.id]
    assert api_b.get("/v4/tags").json()["tags"] == []
    assert api_b.get("/v4/subscribers", email_address=mine.email).json()["subscribers"]


def test_create_with_another_accounts_address_makes_the_keys_own_subscriber(
    api_b, account_a, account_b
):
    ann_a = SubscriberFactory(account=account_a, email="ann@example.com", first_name="Ann")
    response = api_b.post(
        "/v4/subscribers", {"email_address": "ann@example.com", "first_name": "B"}
    )
    assert response.status_code == 201
    ann_a.refresh_from_db()
    assert ann_a.first_name == "Ann"
    assert Subscriber.objects.get(account=account_b).first_name == "B"
