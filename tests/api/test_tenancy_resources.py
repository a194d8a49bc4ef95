"""A key reaches its own account only: every custom field, form, sequence and segment URL with
an id, called with charlie's key (account B) on account A's objects, is a 404 and changes
nothing."""

from __future__ import annotations

import pytest

from sequences.models import Subscription
from sequences.services import sequence_create
from subscribers.models import CustomField, Signup
from subscribers.signup_forms.services import form_create
from tests.factories import CustomFieldFactory, SegmentFactory, SubscriberFactory

CALLS = [
    ("put", "/v4/custom_fields/{field}", {"label": "Stolen"}),
    ("delete", "/v4/custom_fields/{field}", None),
    ("post", "/v4/forms/{form}/subscribers", {"email_address": "ann@example.com"}),
    ("post", "/v4/forms/{form}/subscribers/{subscriber}", {}),
    ("get", "/v4/forms/{form}/subscribers", None),
    ("post", "/v4/sequences/{sequence}/subscribers", {"email_address": "ann@example.com"}),
    ("post", "/v4/sequences/{sequence}/subscribers/{subscriber}", {}),
    ("get", "/v4/sequences/{sequence}/subscribers", None),
    # Account B's own form and sequence with account A's subscriber.
    ("post", "/v4/forms/{own_form}/subscribers/{subscriber}", {}),
    ("post", "/v4/sequences/{own_sequence}/subscribers/{subscriber}", {}),
]


def _snapshot():
    return (
        list(CustomField.objects.order_by("id").values_list("key", "label")),
        list(Signup.objects.order_by("id").values_list("form_id", "subscriber_id")),
        list(Subscription.objects.order_by("id").values_list("sequence_id", "subscriber_id")),
    )


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_another_accounts_ids_are_404_and_nothing_changes(
    api_b, account_a, account_b, method, path, body
):
    ann = SubscriberFactory(account=account_a, email="ann@example.com")
    field = CustomFieldFactory(account=account_a, key="city", label="City")
    form = form_create(account=account_a, name="A's form", double_opt_in=False)
    sequence = sequence_create(account=account_a, name="A's sequence")
    Signup.objects.create(
        account=account_a, form=form, subscriber=ann, wording_version=1, outcome="subscribed"
    )
    own_form = form_create(account=account_b, name="B's form", double_opt_in=False)
    own_sequence = sequence_create(account=account_b, name="B's sequence")
    url = path.format(
        subscriber=ann.id,
        field=field.id,
        form=form.id,
        sequence=sequence.id,
        own_form=own_form.id,
        own_sequence=own_sequence.id,
    )
    before = _snapshot()
    response = api_b.call(method, url, body)
    assert response.status_code == 404, (method, url, response.content)
    assert response.json() == {"errors": ["Not Found"]}
    assert _snapshot() == before


def test_an_address_names_the_keys_own_subscriber(api_b, account_a, account_b):
    ann_a = SubscriberFactory(account=account_a, email="ann@example.com")
    ann_b = SubscriberFactory(account=account_b, email="ann@example.com")
    form = form_create(account=account_b, name="B's form", double_opt_in=False)
    sequence = sequence_create(account=account_b, name="B's sequence")
    body = {"email_address": "ann@example.com"}
    joined = api_b.post(f"/v4/forms/{form.id}/subscribers", body)
    enrolled = api_b.post(f"/v4/sequences/{sequence.id}/subscribers", body)
    assert (joined.status_code, enrolled.status_code) == (201, 201)
    assert joined.json()["subscriber"]["id"] == enrolled.json()["subscriber"]["id"] == ann_b.id
    assert not Signup.objects.filter(subscriber=ann_a).exists()
    assert not Subscription.objects.filter(subscriber=ann_a).exists()


def test_lists_show_only_the_keys_account(api_b, account_a, account_b):
    CustomFieldFactory(account=account_a)
    form_create(account=account_a, name="A's form")
    sequence_create(account=account_a, name="A's sequence")
    SegmentFactory(account=account_a)
    for name in ("custom_fields", "forms", "sequences", "segments"):
        assert api_b.get(f"/v4/{name}").json()[name] == [], name
    mine = SegmentFactory(account=account_b)
    assert [row["id"] for row in api_b.get("/v4/segments").json()["segments"]] == [mine.id]
