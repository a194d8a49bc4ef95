"""Kit's conventions, shared by every endpoint: the key, errors, pagination, the rate limit."""

from __future__ import annotations

import pytest

from api.keys import api_key_create, api_key_revoke
from api.pagination import cursor_encode
from subscribers.models import Subscriber
from tests.api.conftest import ApiClient
from tests.factories import SubscriberFactory, TagFactory

INVALID = {"errors": ["The access token is invalid"]}


@pytest.mark.parametrize("key", [None, "", "kit_not-a-key", "someone-elses-secret"])
def test_a_missing_or_unknown_key_is_401_in_kits_words(db, key):
    response = ApiClient(key).get("/v4/subscribers")
    assert response.status_code == 401
    assert response.json() == INVALID


def test_a_revoked_key_is_401(alice, account_a):
    api_key, secret = api_key_create(account=account_a, name="Old shop", created_by=alice)
    assert ApiClient(secret).get("/v4/account").status_code == 200
    api_key_revoke(api_key=api_key)
    response = ApiClient(secret).get("/v4/account")
    assert response.status_code == 401
    assert response.json() == INVALID


def test_a_write_with_a_bad_key_changes_nothing(account_a):
    response = ApiClient("kit_wrong").post("/v4/subscribers", {"email_address": "x@example.com"})
    assert response.status_code == 401
    assert not Subscriber.objects.exists()


def test_no_csrf_token_is_needed_with_a_key(api_a):
    assert api_a.post("/v4/tags", {"name": "Buyers"}).status_code == 201


def test_an_unknown_id_is_404_in_kits_shape(api_a):
    response = api_a.get("/v4/subscribers/999999")
    assert response.status_code == 404
    assert response.json() == {"errors": ["Not Found"]}


def test_an_invalid_email_address_is_422_and_nothing_is_created(api_a):
    response = api_a.post("/v4/subscribers", {"email_address": "not an address"})
    assert response.status_code == 422
    assert response.json() == {"errors": ["Email address is invalid"]}
    assert not Subscriber.objects.exists()


def test_malformed_json_is_422_and_nothing_is_created(api_a):
    response = api_a.post("/v4/subscribers", raw='{"email_address": "a@example.com",')
    assert response.status_code == 422
    assert response.json() == {"errors": ["The request body is not valid JSON"]}
    assert not Subscriber.objects.exists()


def test_a_body_with_each_problem_is_422_listing_each(api_a):
    response = api_a.post("/v4/subscribers", {"first_name": 12, "fields": "x"})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(error.startswith("email_address:") for error in errors)
    assert any(error.startswith("first_name:") for error in errors)
    assert any(error.startswith("fields:") for error in errors)
    assert not Subscriber.objects.exists()


@pytest.mark.parametrize("per_page", ["1001", "0", "-1", "ten"])
def test_a_per_page_outside_1_to_1000_is_422(api_a, per_page):
    response = api_a.get("/v4/subscribers", per_page=per_page)
    assert response.status_code == 422
    assert response.json() == {"errors": ["per_page must be a number from 1 to 1000"]}


def test_per_page_1000_is_allowed(api_a):
    response = api_a.get("/v4/subscribers", per_page="1000")
    assert response.status_code == 200
    assert response.json()["pagination"]["per_page"] == 1000


def test_a_tampered_cursor_is_422_not_500(api_a, account_a):
    SubscriberFactory.create_batch(3, account=account_a)
    cursor = api_a.get("/v4/subscribers", per_page="1").json()["pagination"]["end_cursor"]
    for tampered in (cursor[:-2] + "xx", cursor[::-1], "not-base64!", "MTIz", "é"):
        response = api_a.get("/v4/subscribers", after=tampered)
        assert response.status_code == 422, tampered
        assert response.json() == {"errors": ["The after cursor is invalid"]}


def test_a_cursor_of_another_list_is_422(api_a, account_a):
    tag = TagFactory(account=account_a)
    tags_cursor = cursor_encode(scope="tags:desc", row_id=tag.id)
    response = api_a.get("/v4/subscribers", before=tags_cursor)
    assert response.status_code == 422
    assert response.json() == {"errors": ["The before cursor is invalid"]}


def test_pagination_walks_forward_and_back_newest_first(api_a, account_a):
    ids = sorted(s.id for s in SubscriberFactory.create_batch(5, account=account_a))[::-1]
    first = api_a.get("/v4/subscribers", per_page="2").json()
    assert [s["id"] for s in first["subscribers"]] == ids[:2]
    assert first["pagination"]["has_previous_page"] is False
    assert first["pagination"]["has_next_page"] is True
    assert "total_count" not in first["pagination"]
    second = api_a.get(
        "/v4/subscribers", per_page="2", after=first["pagination"]["end_cursor"]
    ).json()
    assert [s["id"] for s in second["subscribers"]] == ids[2:4]
    assert second["pagination"]["has_previous_page"] is True
    last = api_a.get(
        "/v4/subscribers", per_page="2", after=second["pagination"]["end_cursor"]
    ).json()
    assert [s["id"] for s in last["subscribers"]] == ids[4:]
    assert last["pagination"]["has_next_page"] is False
    back = api_a.get(
        "/v4/subscribers", per_page="2", before=last["pagination"]["start_cursor"]
    ).json()
    assert [s["id"] for s in back["subscribers"]] == ids[2:4]
    assert back["pagination"]["has_previous_page"] is True
    assert back["pagination"]["has_next_page"] is True
    front = api_a.get(
        "/v4/subscribers", per_page="2", before=back["pagination"]["start_cursor"]
    ).json()
    assert [s["id"] for s in front["subscribers"]] == ids[:2]
    assert front["pagination"]["has_previous_page"] is False


def test_pagination_walks_oldest_first_with_sort_order_asc(api_a, account_a):
    ids = sorted(s.id for s in SubscriberFactory.create_batch(3, account=account_a))
    first = api_a.get("/v4/subscribers", per_page="2", sort_order="asc").json()
    assert [s["id"] for s in first["subscribers"]] == ids[:2]
    rest = api_a.get(
        "/v4/subscribers",
        per_page="2",
        sort_order="asc",
        after=first["pagination"]["end_cursor"],
    ).json()
    assert [s["id"] for s in rest["subscribers"]] == ids[2:]
    assert rest["pagination"]["has_next_page"] is False
    # A cursor of the newest-first order does not page the oldest-first one.
    newest_first = api_a.get("/v4/subscribers", per_page="1").json()["pagination"]["end_cursor"]
    response = api_a.get("/v4/subscribers", sort_order="asc", after=newest_first)
    assert response.status_code == 422


def test_include_total_count_counts_the_filtered_list(api_a, account_a):
    SubscriberFactory.create_batch(3, account=account_a)
    SubscriberFactory(account=account_a, state=Subscriber.State.BOUNCED)
    page = api_a.get("/v4/subscribers", per_page="1", include_total_count="true").json()
    assert page["pagination"]["total_count"] == 3
    assert len(page["subscribers"]) == 1


def test_a_deep_page_is_read_by_keyset_not_offset(api_a, account_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    SubscriberFactory.create_batch(4, account=account_a)
    cursor = api_a.get("/v4/subscribers", per_page="2").json()["pagination"]["end_cursor"]
    with CaptureQueriesContext(connection) as queries:
        assert api_a.get("/v4/subscribers", per_page="2", after=cursor).status_code == 200
    assert not any("OFFSET" in query["sql"] for query in queries.captured_queries)


def test_past_the_rate_limit_the_api_answers_429_with_retry_after(api_a, settings):
    settings.API_RATE_LIMIT = (3, 60)
    for _ in range(3):
        assert api_a.get("/v4/account").status_code == 200
    response = api_a.get("/v4/account")
    assert response.status_code == 429
    assert response.json() == {"errors": ["Retry later"]}
    assert 1 <= int(response["Retry-After"]) <= 60


def test_the_rate_limit_counts_per_key(api_a, api_b, settings):
    settings.API_RATE_LIMIT = (1, 60)
    assert api_a.get("/v4/account").status_code == 200
    assert api_a.get("/v4/account").status_code == 429
    assert api_b.get("/v4/account").status_code == 200


def test_a_refused_write_past_the_limit_changes_nothing(api_a, settings):
    settings.API_RATE_LIMIT = (1, 60)
    api_a.get("/v4/account")
    response = api_a.post("/v4/subscribers", {"email_address": "late@example.com"})
    assert response.status_code == 429
    assert not Subscriber.objects.exists()
