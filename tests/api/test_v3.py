"""Kit's legacy API v3 subset at /v3/: Kit's documented example shapes, credentials as
`api_key` or `api_secret` (query, JSON or form body), tenancy, suppression, page-number paging."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.test import Client

from api.keys import api_key_create, api_key_revoke
from api.models import ApiKey
from sequences.models import Subscription
from sequences.services import sequence_create
from subscribers.models import Signup, Subscriber, Tagging
from subscribers.services import subscriber_delete
from subscribers.signup_forms.services import form_archive, form_create
from tests.api.kit_examples import assert_kit_shape
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory, TaggingFactory

State = Subscriber.State

# Kit's v3 reference examples (developers.kit.com/api-reference/v3).
KIT_SUBSCRIPTION = {
    "subscription": {
        "id": 1,
        "state": "inactive",
        "created_at": "2016-02-28T08:07:00Z",
        "source": None,
        "referrer": None,
        "subscribable_id": 1,
        "subscribable_type": "form",
        "subscriber": {"id": 1},
    }
}
KIT_SUBSCRIBER = {
    "id": 1,
    "first_name": "Jon",
    "email_address": "jonsnow@example.com",
    "state": "active",
    "created_at": "2016-02-28T08:07:00Z",
    "fields": {"last_name": "Snow"},
}
KIT_SUBSCRIBERS = {
    "total_subscribers": 3,
    "page": 1,
    "total_pages": 2,
    "subscribers": [KIT_SUBSCRIBER],
}
KIT_TAG = {"id": 1, "name": "House Stark", "created_at": "2016-02-28T08:07:00Z"}
KIT_TAGS = {"tags": [KIT_TAG]}
KIT_CUSTOM_FIELDS = {
    "custom_fields": [
        {"id": 1, "name": "ck_field_1_last_name", "key": "last_name", "label": "Last name"}
    ]
}
NOT_FOUND = {"error": "Not Found", "message": "The entity you were trying to find doesn't exist"}


class V3Client:
    """Sends the key as v3's clients do: in the query (GETs) or in a JSON body, under
    `api_secret` (or `api_key` with as_key=True)."""

    def __init__(self, secret: str):
        self.secret = secret
        self.client = Client(enforce_csrf_checks=True)

    def _credentials(self, as_key: bool) -> dict:
        return {"api_key" if as_key else "api_secret": self.secret}

    def get(self, path, as_key=False, **params):
        return self.client.get(path, {**self._credentials(as_key), **params})

    def send(self, method, path, body=None, as_key=False):
        data = json.dumps({**self._credentials(as_key), **(body or {})})
        return getattr(self.client, method)(path, data, content_type="application/json")

    def post(self, path, body=None, **kwargs):
        return self.send("post", path, body, **kwargs)

    def put(self, path, body=None, **kwargs):
        return self.send("put", path, body, **kwargs)


@pytest.fixture
def v3_a(alice, account_a):
    return V3Client(api_key_create(account=account_a, name="Shop", created_by=alice)[1])


@pytest.fixture
def v3_b(charlie, account_b):
    return V3Client(api_key_create(account=account_b, name="Garage", created_by=charlie)[1])


@pytest.fixture
def ann(account_a):
    return SubscriberFactory(account=account_a, email="ann@example.com", first_name="Ann")


@pytest.fixture
def single_form(account_a):
    return form_create(account=account_a, name="Sidebar", double_opt_in=False, tag_names=["side"])


@pytest.fixture
def double_form(account_a):
    return form_create(account=account_a, name="Footer", double_opt_in=True)


@pytest.fixture
def vip(account_a):
    return TagFactory(account=account_a, name="VIP")


@pytest.fixture
def course(account_a):
    return sequence_create(account=account_a, name="Welcome")


# Credentials ---------------------------------------------------------------------------------


def test_without_a_key_v3_answers_its_authorization_failed(db):
    response = Client().get("/v3/tags")
    assert response.status_code == 401
    assert response.json() == {"error": "Authorization Failed", "message": "API Key not valid"}


def test_a_wrong_secret_is_named_as_the_secret(db):
    response = Client().get("/v3/subscribers", {"api_secret": "kit_nope"})
    assert response.status_code == 401
    assert response.json()["message"] == "API Secret not valid"


def test_a_revoked_key_is_refused_and_subscribes_nobody(v3_a, account_a, single_form):
    api_key_revoke(api_key=ApiKey.objects.get(account=account_a))
    response = v3_a.post(f"/v3/forms/{single_form.id}/subscribe", {"email": "new@example.com"})
    assert response.status_code == 401
    assert not Subscriber.objects.exists()


def test_the_key_works_as_api_key_or_api_secret(v3_a, vip):
    assert v3_a.get("/v3/tags", as_key=True).status_code == 200
    assert v3_a.get("/v3/tags").status_code == 200


def test_a_form_encoded_body_with_bracketed_fields_is_read(v3_a, account_a, vip):
    CustomFieldFactory(account=account_a, key="city", label="City")
    body = urlencode({"api_key": v3_a.secret, "email": "Form@Example.com", "fields[city]": "Oslo"})
    response = v3_a.client.post(
        f"/v3/tags/{vip.id}/subscribe", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200, response.content
    subscriber = Subscriber.objects.get(email="form@example.com")
    assert subscriber.fields == {"city": "Oslo"}


def test_past_the_rate_limit_v3_answers_429_with_retry_after(v3_a, settings):
    settings.API_RATE_LIMIT = (2, 60)
    for _ in range(2):
        assert v3_a.get("/v3/tags").status_code == 200
    response = v3_a.get("/v3/tags")
    assert response.status_code == 429
    assert response.json()["message"] == "Retry later"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_a_body_that_is_not_json_is_a_422_that_stores_nothing(v3_a, vip):
    response = v3_a.client.post(
        f"/v3/tags/{vip.id}/subscribe", "{not json", content_type="application/json"
    )
    assert response.status_code == 422
    assert not Subscriber.objects.exists()


def test_v3_and_v4_count_against_one_budget_per_key(v3_a, settings):
    settings.API_RATE_LIMIT = (1, 60)
    v4 = v3_a.client.get("/v4/tags", headers={"X-Kit-Api-Key": v3_a.secret})
    assert v4.status_code == 200
    assert v3_a.get("/v3/tags").status_code == 429


def test_a_path_v3_does_not_serve_is_its_json_404(v3_a):
    response = v3_a.get("/v3/broadcasts")
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


# Forms ---------------------------------------------------------------------------------------


def test_form_subscribe_signs_up_through_the_form_in_kits_shape(v3_a, account_a, single_form, vip):
    CustomFieldFactory(account=account_a, key="last_name", label="Last name")
    response = v3_a.post(
        f"/v3/forms/{single_form.id}/subscribe",
        {
            "email": "Jon@Example.com",
            "first_name": "Jon",
            "fields": {"last_name": "Snow", "unknown": "x"},
            "tags": [vip.id],
        },
        as_key=True,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert_kit_shape(body, KIT_SUBSCRIPTION)
    jon = Subscriber.objects.get(email="jon@example.com")
    signup = Signup.objects.get(form=single_form, subscriber=jon)
    assert body["subscription"]["id"] == signup.id
    assert body["subscription"]["state"] == "active"
    assert body["subscription"]["subscribable_id"] == single_form.id
    assert body["subscription"]["subscribable_type"] == "form"
    assert body["subscription"]["subscriber"] == {"id": jon.id}
    assert (jon.state, jon.first_name, jon.fields) == (State.ACTIVE, "Jon", {"last_name": "Snow"})
    assert set(Tagging.objects.filter(subscriber=jon).values_list("tag__name", flat=True)) == {
        "side",
        "VIP",
    }


def test_a_double_opt_in_form_leaves_the_new_subscriber_inactive(v3_a, double_form):
    response = v3_a.post(f"/v3/forms/{double_form.id}/subscribe", {"email": "new@example.com"})
    assert response.json()["subscription"]["state"] == "inactive"
    assert Subscriber.objects.get(email="new@example.com").state == State.UNCONFIRMED


def test_form_subscribe_does_not_reactivate_an_unsubscribed_address(v3_a, ann, single_form, vip):
    ann.state = State.UNSUBSCRIBED
    ann.save()
    response = v3_a.post(
        f"/v3/forms/{single_form.id}/subscribe", {"email": ann.email, "tags": [vip.id]}
    )
    assert response.status_code == 200
    assert response.json()["subscription"]["state"] == "cancelled"
    ann.refresh_from_db()
    assert ann.state == State.UNSUBSCRIBED
    assert not Tagging.objects.filter(subscriber=ann).exists()
    assert Signup.objects.get(subscriber=ann).outcome == Signup.Outcome.PENDING


def test_form_subscribe_refuses_a_bounced_address_and_changes_nothing(v3_a, ann, single_form):
    ann.state = State.BOUNCED
    ann.save()
    response = v3_a.post(
        f"/v3/forms/{single_form.id}/subscribe", {"email": ann.email, "first_name": "Other"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "Invalid parameters"
    ann.refresh_from_db()
    assert (ann.state, ann.first_name) == (State.BOUNCED, "Ann")
    assert not Signup.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "email is required"),
        ({"email": "not-an-address"}, "Email address is invalid"),
        ({"email": "x@example.com", "tags": ["abc"]}, "tags must be a list of tag ids"),
        ({"email": "x@example.com", "fields": ["a"]}, "fields must be an object of strings"),
        ({"email": "x@example.com", "first_name": "a\nb"}, "first_name"),
    ],
)
def test_form_subscribe_with_bad_input_is_a_422_that_stores_nothing(
    v3_a, single_form, body, message
):
    response = v3_a.post(f"/v3/forms/{single_form.id}/subscribe", body)
    assert response.status_code == 422
    assert message in response.json()["message"]
    assert not Subscriber.objects.exists()


def test_form_subscribe_with_another_accounts_tag_stores_nothing(v3_a, account_b, single_form):
    theirs = TagFactory(account=account_b, name="Theirs")
    response = v3_a.post(
        f"/v3/forms/{single_form.id}/subscribe", {"email": "x@example.com", "tags": [theirs.id]}
    )
    assert response.status_code == 422
    assert not Subscriber.objects.exists()


def test_an_archived_form_takes_no_subscriber(v3_a, single_form):
    form_archive(form=single_form)
    response = v3_a.post(f"/v3/forms/{single_form.id}/subscribe", {"email": "x@example.com"})
    assert response.status_code == 404
    assert not Subscriber.objects.exists()


# Tags ----------------------------------------------------------------------------------------


def test_tag_list_is_in_kits_shape(v3_a, vip):
    body = v3_a.get("/v3/tags", as_key=True).json()
    assert_kit_shape(body, KIT_TAGS)
    assert [tag["name"] for tag in body["tags"]] == ["VIP"]


def test_tag_subscribe_creates_and_tags_a_new_subscriber(v3_a, vip):
    response = v3_a.post(
        f"/v3/tags/{vip.id}/subscribe", {"email": "new@example.com", "first_name": "New"}
    )
    assert response.status_code == 200
    body = response.json()
    assert_kit_shape(body, KIT_SUBSCRIPTION)
    new = Subscriber.objects.get(email="new@example.com")
    assert body["subscription"]["id"] == Tagging.objects.get(tag=vip, subscriber=new).id
    assert body["subscription"]["subscribable_type"] == "tag"
    assert (new.state, new.first_name) == (State.ACTIVE, "New")


def test_tag_subscribe_tags_an_unsubscribed_subscriber_without_reactivating(v3_a, ann, vip):
    ann.state = State.UNSUBSCRIBED
    ann.save()
    response = v3_a.post(f"/v3/tags/{vip.id}/subscribe", {"email": ann.email})
    assert response.json()["subscription"]["state"] == "cancelled"
    ann.refresh_from_db()
    assert ann.state == State.UNSUBSCRIBED
    assert Tagging.objects.filter(subscriber=ann, tag=vip).exists()


def test_tag_subscribe_refuses_an_erased_address(v3_a, ann, vip):
    subscriber_delete(subscriber=ann)
    response = v3_a.post(f"/v3/tags/{vip.id}/subscribe", {"email": ann.email})
    assert response.status_code == 422
    assert not Subscriber.objects.exists()
    assert not Tagging.objects.exists()


def test_tag_unsubscribe_removes_the_tag_and_answers_the_tag(v3_a, ann, vip):
    TaggingFactory(subscriber=ann, tag=vip)
    response = v3_a.post(f"/v3/tags/{vip.id}/unsubscribe", {"email": ann.email})
    assert response.status_code == 200
    assert_kit_shape(response.json(), KIT_TAG)
    assert response.json()["id"] == vip.id
    assert not Tagging.objects.filter(subscriber=ann).exists()


def test_tag_unsubscribe_of_an_unknown_address_is_a_404(v3_a, vip):
    response = v3_a.post(f"/v3/tags/{vip.id}/unsubscribe", {"email": "nobody@example.com"})
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


# Subscribers ---------------------------------------------------------------------------------


def test_subscriber_list_pages_by_number_in_kits_shape(v3_a, account_a):
    people = [SubscriberFactory(account=account_a) for _ in range(51)]
    SubscriberFactory(account=account_a, state=State.UNSUBSCRIBED)
    first = v3_a.get("/v3/subscribers").json()
    assert_kit_shape(first, KIT_SUBSCRIBERS)
    assert (first["total_subscribers"], first["page"], first["total_pages"]) == (51, 1, 2)
    assert len(first["subscribers"]) == 50
    second = v3_a.get("/v3/subscribers", page="2").json()
    assert second["page"] == 2
    seen = [row["id"] for row in first["subscribers"] + second["subscribers"]]
    assert seen == [person.id for person in people]
    newest_first = v3_a.get("/v3/subscribers", sort_order="desc").json()["subscribers"]
    assert newest_first[0]["id"] == people[-1].id
    assert v3_a.get("/v3/subscribers", page="3").json()["subscribers"] == []


def test_subscriber_list_filters_by_address_and_days(v3_a, account_a, ann):
    SubscriberFactory(account=account_a, email="bob@example.com")
    body = v3_a.get("/v3/subscribers", email_address="ANN@example.com").json()
    assert [row["id"] for row in body["subscribers"]] == [ann.id]
    assert v3_a.get("/v3/subscribers", to="2000-01-01").json()["total_subscribers"] == 0
    assert v3_a.get("/v3/subscribers", **{"from": "2000-01-01"}).json()["total_subscribers"] == 2


def test_cancelled_at_sorting_lists_the_unsubscribed(v3_a, account_a, ann):
    gone = SubscriberFactory(account=account_a, state=State.UNSUBSCRIBED)
    body = v3_a.get("/v3/subscribers", sort_field="cancelled_at").json()
    assert [row["id"] for row in body["subscribers"]] == [gone.id]


@pytest.mark.parametrize(
    "params",
    [{"page": "0"}, {"page": "x"}, {"sort_order": "up"}, {"from": "2020-13-01"}, {"to": "soon"}],
)
def test_bad_list_parameters_are_a_422(v3_a, params):
    response = v3_a.get("/v3/subscribers", **params)
    assert response.status_code == 422
    assert response.json()["error"] == "Invalid parameters"


def test_subscriber_get_is_in_kits_shape(v3_a, ann):
    body = v3_a.get(f"/v3/subscribers/{ann.id}").json()
    assert_kit_shape(body, {"subscriber": KIT_SUBSCRIBER})
    assert body["subscriber"]["email_address"] == "ann@example.com"


def test_subscriber_put_changes_what_is_given(v3_a, account_a, ann):
    CustomFieldFactory(account=account_a, key="last_name", label="Last name")
    response = v3_a.put(
        f"/v3/subscribers/{ann.id}", {"first_name": "Annie", "fields": {"last_name": "Lee"}}
    )
    assert response.status_code == 200
    assert_kit_shape(response.json(), {"subscriber": KIT_SUBSCRIBER})
    ann.refresh_from_db()
    assert (ann.email, ann.first_name, ann.fields) == (
        "ann@example.com",
        "Annie",
        {"last_name": "Lee"},
    )


def test_subscriber_put_to_a_taken_address_is_a_422_that_changes_nothing(v3_a, account_a, ann):
    SubscriberFactory(account=account_a, email="taken@example.com")
    response = v3_a.put(
        f"/v3/subscribers/{ann.id}", {"email_address": "taken@example.com", "first_name": "X"}
    )
    assert response.status_code == 422
    ann.refresh_from_db()
    assert (ann.email, ann.first_name) == ("ann@example.com", "Ann")


def test_unsubscribe_by_email_cancels_the_subscriber(v3_a, ann):
    response = v3_a.put("/v3/unsubscribe", {"email": "Ann@Example.com"})
    assert response.status_code == 200
    assert_kit_shape(response.json(), {"subscriber": KIT_SUBSCRIBER})
    assert response.json()["subscriber"]["state"] == "cancelled"
    ann.refresh_from_db()
    assert ann.state == State.UNSUBSCRIBED


def test_unsubscribe_of_an_unknown_address_is_a_404(v3_a):
    assert v3_a.put("/v3/unsubscribe", {"email": "nobody@example.com"}).status_code == 404


# Custom fields and sequences -----------------------------------------------------------------


def test_custom_field_list_is_in_kits_shape(v3_a, account_a):
    field = CustomFieldFactory(account=account_a, key="last_name", label="Last name")
    body = v3_a.get("/v3/custom_fields", as_key=True).json()
    assert_kit_shape(body, KIT_CUSTOM_FIELDS)
    assert body["custom_fields"][0]["name"] == f"ck_field_{field.id}_last_name"


def test_sequence_subscribe_adds_the_subscriber_as_a_course(v3_a, ann, course):
    response = v3_a.post(f"/v3/sequences/{course.id}/subscribe", {"email": ann.email}, as_key=True)
    assert response.status_code == 200, response.content
    body = response.json()
    assert_kit_shape(body, KIT_SUBSCRIPTION)
    subscription = Subscription.objects.get(sequence=course, subscriber=ann)
    assert body["subscription"]["id"] == subscription.id
    assert body["subscription"]["subscribable_type"] == "course"


def test_sequence_subscribe_refuses_an_unsubscribed_subscriber_and_changes_nothing(
    v3_a, account_a, ann, course, vip
):
    ann.state = State.UNSUBSCRIBED
    ann.save()
    response = v3_a.post(
        f"/v3/sequences/{course.id}/subscribe",
        {"email": ann.email, "first_name": "Other", "tags": [vip.id]},
    )
    assert response.status_code == 422
    ann.refresh_from_db()
    assert (ann.state, ann.first_name) == (State.UNSUBSCRIBED, "Ann")
    assert not Subscription.objects.exists()
    assert not Tagging.objects.exists()


# Tenancy: charlie's key (account B) on account A's ids ---------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v3/forms/{form}/subscribe", {"email": "ann@example.com", "first_name": "X"}),
        ("post", "/v3/tags/{tag}/subscribe", {"email": "ann@example.com", "first_name": "X"}),
        ("post", "/v3/tags/{tag}/unsubscribe", {"email": "ann@example.com"}),
        ("get", "/v3/subscribers/{subscriber}", None),
        ("put", "/v3/subscribers/{subscriber}", {"first_name": "X"}),
        ("put", "/v3/unsubscribe", {"email": "ann@example.com"}),
        ("post", "/v3/sequences/{sequence}/subscribe", {"email": "ann@example.com"}),
    ],
)
def test_another_accounts_ids_are_404_and_nothing_changes(
    v3_b, ann, single_form, vip, course, method, path, body
):
    TaggingFactory(subscriber=ann, tag=vip)
    path = path.format(form=single_form.id, tag=vip.id, subscriber=ann.id, sequence=course.id)
    response = v3_b.get(path) if method == "get" else v3_b.send(method, path, body)
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    ann.refresh_from_db()
    assert (ann.state, ann.first_name) == (State.ACTIVE, "Ann")
    assert Subscriber.objects.count() == 1
    assert Tagging.objects.filter(subscriber=ann, tag=vip).exists()
    assert not Signup.objects.exists()
    assert not Subscription.objects.exists()


def test_another_accounts_lists_show_nothing_of_account_a(v3_b, ann, vip, account_a):
    CustomFieldFactory(account=account_a, key="city", label="City")
    assert v3_b.get("/v3/tags").json() == {"tags": []}
    assert v3_b.get("/v3/custom_fields").json() == {"custom_fields": []}
    assert v3_b.get("/v3/subscribers").json()["total_subscribers"] == 0
