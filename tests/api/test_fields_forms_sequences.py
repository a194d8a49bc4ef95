"""Custom fields, forms, sequences and segments at /v4/: Kit's documented shapes, statuses,
what each call changes, and the bad input that changes nothing."""

from __future__ import annotations

import pytest

from automations.models import Event, EventKind
from sequences.models import Subscription
from sequences.services import sequence_create, subscription_remove
from subscribers.models import CustomField, Signup, Subscriber, Tagging
from subscribers.signup_forms.services import form_archive, form_create
from tests.api import kit_examples_resources as kit
from tests.api.kit_examples import assert_kit_shape
from tests.automations.test_outbox import listen_to_everything
from tests.factories import CustomFieldFactory, SegmentFactory, SubscriberFactory

State = Subscriber.State


@pytest.fixture
def ann(account_a):
    return SubscriberFactory(account=account_a, email="ann@example.com", first_name="Ann")


@pytest.fixture
def listening(account_a):
    """A rule of account A listens for every event, so that events are recorded."""
    listen_to_everything(account_a)


def _ids(response, name):
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()[name]]


def _pages_of_one(api, path, name):
    """Walks the list one row a page: every row once, newest first, through signed cursors."""
    first = api.get(path, per_page="1").json()
    assert first["pagination"]["has_next_page"] is True
    assert first["pagination"]["per_page"] == 1
    second = api.get(path, per_page="1", after=first["pagination"]["end_cursor"]).json()
    assert second["pagination"]["has_previous_page"] is True
    return [row["id"] for row in first[name] + second[name]]


# Custom fields -------------------------------------------------------------------------------


def test_custom_field_list_is_in_kits_shape_and_pages(api_a, account_a):
    older = CustomFieldFactory(account=account_a, key="last_name", label="Last name")
    newer = CustomFieldFactory(account=account_a, key="city", label="City")
    body = api_a.get("/v4/custom_fields").json()
    assert_kit_shape(body, kit.LIST_CUSTOM_FIELDS)
    assert body["custom_fields"][1] == {
        "id": older.id,
        "name": f"ck_field_{older.id}_last_name",
        "key": "last_name",
        "label": "Last name",
    }
    assert _pages_of_one(api_a, "/v4/custom_fields", "custom_fields") == [newer.id, older.id]


def test_create_custom_field_is_201_with_a_key_made_from_the_label(api_a, account_a):
    response = api_a.post("/v4/custom_fields", {"label": "  Favourite Colour "})
    assert response.status_code == 201
    assert_kit_shape(response.json(), kit.CREATE_CUSTOM_FIELD)
    field = CustomField.objects.get(account=account_a)
    assert response.json()["custom_field"] == {
        "id": field.id,
        "name": f"ck_field_{field.id}_favourite_colour",
        "key": "favourite_colour",
        "label": "Favourite Colour",
    }


def test_create_custom_field_with_an_existing_label_is_200_with_that_field(api_a, account_a):
    field = CustomFieldFactory(account=account_a, key="last_name", label="Last name")
    response = api_a.post("/v4/custom_fields", {"label": "Last name"})
    assert response.status_code == 200
    assert response.json()["custom_field"]["id"] == field.id
    assert CustomField.objects.count() == 1


@pytest.mark.parametrize(
    ("label", "error"),
    [
        ("  ", "Label can't be blank"),
        ("Email", "Label Email names a built-in field"),
        ("x" * 101, "Label: Must be at most 100 characters long."),
    ],
)
def test_create_custom_field_refuses_a_bad_label_and_creates_nothing(api_a, label, error):
    response = api_a.post("/v4/custom_fields", {"label": label})
    assert response.status_code == 422
    assert response.json() == {"errors": [error]}
    assert not CustomField.objects.exists()


def test_update_custom_field_changes_the_label_and_keeps_the_key(api_a, account_a):
    field = CustomFieldFactory(account=account_a, key="zip_code", label="Zip code")
    response = api_a.put(f"/v4/custom_fields/{field.id}", {"label": "Post code"})
    assert response.status_code == 200
    assert_kit_shape(response.json(), kit.UPDATE_CUSTOM_FIELD)
    assert response.json()["custom_field"]["label"] == "Post code"
    field.refresh_from_db()
    assert (field.key, field.label) == ("zip_code", "Post code")


def test_update_custom_field_refuses_a_blank_label_and_changes_nothing(api_a, account_a):
    field = CustomFieldFactory(account=account_a, key="zip_code", label="Zip code")
    response = api_a.put(f"/v4/custom_fields/{field.id}", {"label": ""})
    assert response.status_code == 422
    field.refresh_from_db()
    assert field.label == "Zip code"


def test_delete_custom_field_is_204_and_leaves_subscribers_values(api_a, account_a):
    field = CustomFieldFactory(account=account_a, key="city", label="City")
    reader = SubscriberFactory(account=account_a, fields={"city": "Lyon"})
    response = api_a.delete(f"/v4/custom_fields/{field.id}")
    assert response.status_code == 204
    assert not CustomField.objects.exists()
    reader.refresh_from_db()
    assert reader.fields == {"city": "Lyon"}


# Forms ---------------------------------------------------------------------------------------


@pytest.fixture
def single_form(account_a):
    return form_create(
        account=account_a, name="Sidebar", double_opt_in=False, tag_names=["sidebar"]
    )


@pytest.fixture
def double_form(account_a):
    return form_create(account=account_a, name="Footer", double_opt_in=True)


def test_form_list_is_in_kits_shape(api_a, single_form):
    body = api_a.get("/v4/forms").json()
    assert_kit_shape(body, kit.LIST_FORMS)
    form = body["forms"][0]
    assert form["id"] == single_form.id
    assert (form["name"], form["type"], form["format"]) == ("Sidebar", "embed", "inline")
    assert (form["uid"], form["archived"]) == (single_form.uid, False)
    assert form["embed_url"].endswith(f"/{single_form.uid}/")


def test_form_list_filters_by_kits_status_and_type(api_a, single_form, double_form):
    form_archive(form=double_form)
    assert _ids(api_a.get("/v4/forms"), "forms") == [single_form.id]
    assert _ids(api_a.get("/v4/forms", status="archived"), "forms") == [double_form.id]
    assert _ids(api_a.get("/v4/forms", status="all"), "forms") == [double_form.id, single_form.id]
    assert _ids(api_a.get("/v4/forms", status="trashed"), "forms") == []
    assert _ids(api_a.get("/v4/forms", type="embed"), "forms") == [single_form.id]
    assert _ids(api_a.get("/v4/forms", type="hosted"), "forms") == []
    response = api_a.get("/v4/forms", status="gone", type="popup")
    assert response.status_code == 422
    assert response.json() == {
        "errors": [
            "status must be one of active, archived, trashed, all",
            "type must be one of embed, hosted",
        ]
    }


def test_form_list_pages(api_a, single_form, double_form):
    assert _pages_of_one(api_a, "/v4/forms", "forms") == [double_form.id, single_form.id]


def test_add_subscriber_to_form_by_address_is_a_signup_through_it(
    api_a, ann, single_form, listening
):
    response = api_a.post(
        f"/v4/forms/{single_form.id}/subscribers",
        {"email_address": "ANN@example.com", "referrer": kit.REFERRER},
    )
    assert response.status_code == 201
    assert_kit_shape(response.json(), kit.ADD_SUBSCRIBER_TO_FORM)
    subscriber = response.json()["subscriber"]
    assert (subscriber["id"], subscriber["state"]) == (ann.id, "active")
    assert subscriber["referrer"] == kit.REFERRER
    assert subscriber["referrer_utm_parameters"] == {
        "source": "facebook",
        "medium": "cpc",
        "campaign": "black_friday",
        "term": "car_owners",
        "content": "get_10_off",
    }
    signup = Signup.objects.get(form=single_form, subscriber=ann)
    assert signup.page_url == kit.REFERRER
    assert Tagging.objects.filter(subscriber=ann, tag__name="sidebar").exists()
    assert Event.objects.filter(
        kind=EventKind.FORM_JOINED, subscriber_id=ann.id, object_id=single_form.id
    ).exists()
    single_form.refresh_from_db()
    assert single_form.signup_count == 1


def test_adding_to_a_form_again_is_200_with_the_first_join(api_a, ann, single_form):
    first = api_a.post(f"/v4/forms/{single_form.id}/subscribers/{ann.id}", {"referrer": "a"})
    again = api_a.post(f"/v4/forms/{single_form.id}/subscribers/{ann.id}", {"referrer": "b"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["subscriber"]["added_at"] == first.json()["subscriber"]["added_at"]
    assert again.json()["subscriber"]["referrer"] == "a"


def test_a_double_opt_in_form_asks_an_unconfirmed_subscriber_to_confirm(
    api_a, account_a, double_form, listening
):
    pending = SubscriberFactory(account=account_a, state=State.UNCONFIRMED)
    response = api_a.post(f"/v4/forms/{double_form.id}/subscribers/{pending.id}", {})
    assert response.status_code == 201
    assert response.json()["subscriber"]["state"] == "inactive"
    assert response.json()["subscriber"]["referrer"] is None
    signup = Signup.objects.get(form=double_form, subscriber=pending)
    assert signup.outcome == Signup.Outcome.PENDING
    assert signup.email_sent_at is not None
    assert not Event.objects.filter(kind=EventKind.FORM_JOINED).exists()


def test_a_bounced_subscriber_is_refused_by_a_form_and_nothing_is_recorded(
    api_a, account_a, single_form
):
    bounced = SubscriberFactory(account=account_a, state=State.BOUNCED)
    response = api_a.post(f"/v4/forms/{single_form.id}/subscribers/{bounced.id}", {})
    assert response.status_code == 422
    assert response.json() == {"errors": ["A bounced subscriber cannot be added to a form"]}
    assert not Signup.objects.exists()


@pytest.mark.parametrize(
    ("body", "status", "errors"),
    [
        ({"email_address": "not an address"}, 422, ["Email address is invalid"]),
        ({}, 422, ["Email address can't be blank"]),
        ({"email_address": "nobody@example.com"}, 404, ["Not Found"]),
        (
            {"email_address": "ann@example.com", "referrer": "x" * 1001},
            422,
            ["Referrer is longer than 1000 characters"],
        ),
    ],
)
def test_add_to_form_refuses_bad_input_and_records_nothing(
    api_a, ann, single_form, body, status, errors
):
    response = api_a.post(f"/v4/forms/{single_form.id}/subscribers", body)
    assert response.status_code == status
    assert response.json() == {"errors": errors}
    assert not Signup.objects.exists()


def test_an_archived_form_takes_no_one(api_a, ann, single_form):
    form_archive(form=single_form)
    response = api_a.post(f"/v4/forms/{single_form.id}/subscribers/{ann.id}", {})
    assert response.status_code == 404
    assert not Signup.objects.exists()


def test_form_subscribers_are_in_kits_shape_filtered_and_paged(api_a, account_a, ann, single_form):
    bea = SubscriberFactory(account=account_a, email="bea@example.com")
    SubscriberFactory(account=account_a, email="other@example.com")
    for subscriber in (ann, bea, ann):
        api_a.post(
            f"/v4/forms/{single_form.id}/subscribers/{subscriber.id}", {"referrer": kit.REFERRER}
        )
    path = f"/v4/forms/{single_form.id}/subscribers"
    body = api_a.get(path).json()
    assert_kit_shape(body, kit.LIST_SUBSCRIBERS_FOR_FORM)
    assert [row["id"] for row in body["subscribers"]] == [bea.id, ann.id]
    assert _pages_of_one(api_a, path, "subscribers") == [bea.id, ann.id]
    Signup.objects.filter(subscriber=ann).update(created_at="2020-01-01T00:00:00Z")
    assert _ids(api_a.get(path, added_after="2021-01-01"), "subscribers") == [bea.id]
    assert _ids(api_a.get(path, added_before="2021-01-01"), "subscribers") == [ann.id]
    assert api_a.get(path, added_after="soon").status_code == 422


# Sequences -----------------------------------------------------------------------------------


@pytest.fixture
def sequence(account_a):
    return sequence_create(account=account_a, name="Welcome")


def test_sequence_list_is_in_kits_shape_and_pages(api_a, account_a, sequence):
    newer = sequence_create(account=account_a, name="Course")
    body = api_a.get("/v4/sequences").json()
    assert_kit_shape(body, kit.LIST_SEQUENCES)
    assert body["sequences"][1] == {
        "id": sequence.id,
        "name": "Welcome",
        "hold": False,
        "repeat": False,
        "created_at": sequence.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert _pages_of_one(api_a, "/v4/sequences", "sequences") == [newer.id, sequence.id]


def test_add_subscriber_to_sequence_by_address_is_201_then_200(api_a, ann, sequence, listening):
    path = f"/v4/sequences/{sequence.id}/subscribers"
    response = api_a.post(path, {"email_address": "ann@example.com"})
    assert response.status_code == 201
    assert_kit_shape(response.json(), kit.ADD_SUBSCRIBER_TO_SEQUENCE)
    subscription = Subscription.objects.get(sequence=sequence, subscriber=ann)
    assert response.json()["subscriber"]["added_at"] == subscription.subscribed_at.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert Event.objects.filter(
        kind=EventKind.SEQUENCE_SUBSCRIBED, subscriber_id=ann.id, object_id=sequence.id
    ).exists()
    again = api_a.post(path, {"email_address": "ann@example.com"})
    assert again.status_code == 200
    assert Subscription.objects.filter(sequence=sequence).count() == 1


def test_add_subscriber_to_sequence_by_id_is_201(api_a, ann, sequence):
    response = api_a.post(f"/v4/sequences/{sequence.id}/subscribers/{ann.id}")
    assert response.status_code == 201
    assert response.json()["subscriber"]["id"] == ann.id
    assert Subscription.objects.filter(sequence=sequence, subscriber=ann).exists()


def test_an_unsubscribed_subscriber_is_refused_by_a_sequence(api_a, account_a, sequence):
    gone = SubscriberFactory(account=account_a, email="gone@example.com", state=State.UNSUBSCRIBED)
    response = api_a.post(f"/v4/sequences/{sequence.id}/subscribers/{gone.id}")
    assert response.status_code == 422
    assert response.json() == {
        "errors": ["gone@example.com is unsubscribed: they cannot be added to a sequence."]
    }
    assert not Subscription.objects.exists()


@pytest.mark.parametrize(
    ("body", "status"),
    [({"email_address": "nope"}, 422), ({}, 422), ({"email_address": "x@example.com"}, 404)],
)
def test_add_to_sequence_refuses_bad_input_and_adds_no_one(api_a, ann, sequence, body, status):
    response = api_a.post(f"/v4/sequences/{sequence.id}/subscribers", body)
    assert response.status_code == status
    assert not Subscription.objects.exists()


def test_sequence_subscribers_are_in_kits_shape_paged_without_the_removed(
    api_a, account_a, ann, sequence
):
    bea = SubscriberFactory(account=account_a, email="bea@example.com")
    cid = SubscriberFactory(account=account_a, email="cid@example.com")
    for subscriber in (ann, bea, cid):
        api_a.post(f"/v4/sequences/{sequence.id}/subscribers/{subscriber.id}")
    subscription_remove(sequence=sequence, subscriber_id=cid.id)
    path = f"/v4/sequences/{sequence.id}/subscribers"
    body = api_a.get(path).json()
    assert_kit_shape(body, kit.LIST_SUBSCRIBERS_FOR_SEQUENCE)
    assert [row["id"] for row in body["subscribers"]] == [bea.id, ann.id]
    assert _pages_of_one(api_a, path, "subscribers") == [bea.id, ann.id]
    Subscription.objects.filter(subscriber=ann).update(subscribed_at="2020-01-01T00:00:00Z")
    assert _ids(api_a.get(path, added_after="2021-01-01"), "subscribers") == [bea.id]
    assert _ids(api_a.get(path, added_before="2021-01-01"), "subscribers") == [ann.id]


# Segments ------------------------------------------------------------------------------------


def test_segment_list_is_in_kits_shape_and_pages(api_a, account_a):
    older = SegmentFactory(account=account_a, name="Buyers")
    newer = SegmentFactory(account=account_a, name="Readers")
    body = api_a.get("/v4/segments").json()
    assert_kit_shape(body, kit.LIST_SEGMENTS)
    assert body["segments"][1]["name"] == "Buyers"
    assert _pages_of_one(api_a, "/v4/segments", "segments") == [newer.id, older.id]


def test_lists_refuse_a_per_page_over_1000(api_a):
    for path in ("/v4/custom_fields", "/v4/forms", "/v4/sequences", "/v4/segments"):
        response = api_a.get(path, per_page="1001")
        assert response.status_code == 422, path
        assert response.json() == {"errors": ["per_page must be a number from 1 to 1000"]}
