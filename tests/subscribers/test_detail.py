from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from subscribers.models import (
    Signup,
    StateChange,
    Subscriber,
    Suppression,
    Tag,
    Tagging,
    email_hash,
)
from subscribers.signup_forms.services import form_create
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory, TaggingFactory

CREATE_URL = reverse("subscriber_create")


def detail_url(subscriber) -> str:
    return reverse("subscriber_detail", args=[subscriber.id])


@pytest.fixture
def subscriber(account_a):
    return SubscriberFactory(
        account=account_a,
        email="ann@example.com",
        first_name="Ann",
        fields={"company": "Ann's Kitchen", "old_field": "kept"},
        source="form: Homepage",
        consent_at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        consent_method="double opt-in",
        consent_ip="203.0.113.9",
    )


def test_the_detail_page_shows_fields_consent_tags_and_history(alice_client, account_a, subscriber):
    CustomFieldFactory(account=account_a, key="company", label="Company")
    TaggingFactory(tag=TagFactory(account=account_a, name="vip"), subscriber=subscriber)
    StateChange.objects.create(
        account=account_a,
        subscriber=subscriber,
        from_state="unconfirmed",
        to_state="active",
        reason="confirmed by email",
    )
    body = alice_client.get(detail_url(subscriber)).content.decode()
    for text in [
        "ann@example.com",
        "badge-active",
        "Company",
        "Ann&#x27;s Kitchen",
        "form: Homepage",
        "double opt-in",
        "203.0.113.9",
        "1 Mar 2025",
        "vip",
        "confirmed by email",
        "source: form: Homepage",
    ]:
        assert text in body, text
    # A value whose field definition was deleted stays stored but is not shown.
    assert "kept" not in body


def test_the_detail_page_makes_the_same_queries_however_many_tags_fields_and_changes(
    alice_client, account_a, subscriber, django_assert_num_queries
):
    def add(count: int) -> None:
        for n in range(count):
            CustomFieldFactory(account=account_a)
            TaggingFactory(tag=TagFactory(account=account_a), subscriber=subscriber)
            StateChange.objects.create(
                account=account_a, subscriber=subscriber, to_state="active", reason=f"change {n}"
            )
            Signup.objects.create(
                account=account_a,
                form=form_create(account=account_a, name=f"Form {n}"),
                subscriber=subscriber,
                wording_version=1,
                outcome=Signup.Outcome.TAGGED,
            )

    add(1)
    alice_client.get(detail_url(subscriber))  # warm the session
    with CaptureQueriesContext(connection) as few:
        alice_client.get(detail_url(subscriber))
    # 10, one for the activity timeline, two for sequences: the subscriber's, and the
    # account's for the "Add to sequence" picker; two for automations: the subscriber's
    # journeys and what rules and automations did.
    assert len(few.captured_queries) <= 15

    add(15)
    with django_assert_num_queries(len(few.captured_queries)):
        body = alice_client.get(detail_url(subscriber)).content.decode()
    assert body.count('<li class="tag">') == 16
    assert body.count("change 14") == 1
    assert body.count("Details (wording version 1)") == 16


def test_history_lists_state_changes_newest_first_then_the_creation(
    alice_client, account_a, subscriber
):
    for reason in ["first change", "second change"]:
        StateChange.objects.create(
            account=account_a,
            subscriber=subscriber,
            from_state="active",
            to_state="active",
            reason=reason,
        )
    body = alice_client.get(detail_url(subscriber)).content.decode()
    assert body.index("second change") < body.index("first change") < body.index("Added · source")


def test_adding_a_subscriber_with_fields_and_tags(alice_client, alice, account_a):
    CustomFieldFactory(account=account_a, key="city", label="City")
    TagFactory(account=account_a, name="VIP")
    response = alice_client.post(
        CREATE_URL,
        {
            "email": "  New@Example.COM ",
            "first_name": " Nina ",
            "field_city": "Lyon",
            "tags": "vip, customers, , Customers",
        },
    )
    subscriber = Subscriber.objects.get(account=account_a, email="new@example.com")
    assert response.status_code == 302
    assert response["Location"] == detail_url(subscriber)
    assert subscriber.first_name == "Nina"
    assert subscriber.fields == {"city": "Lyon"}
    assert subscriber.state == Subscriber.State.ACTIVE
    assert subscriber.source == "manual"
    assert subscriber.consent_method == "Added by alice@example.com"
    assert subscriber.consent_at is not None
    assert sorted(subscriber.taggings.values_list("tag__name", flat=True)) == ["VIP", "customers"]
    assert Tag.objects.filter(account=account_a).count() == 2
    assert "new@example.com was added." in alice_client.get(response["Location"]).content.decode()


def test_the_add_page_offers_existing_tags(alice_client, account_a):
    TagFactory(account=account_a, name="newsletter")
    body = alice_client.get(CREATE_URL).content.decode()
    assert '<datalist id="tag-names"><option value="newsletter">' in body
    assert 'list="tag-names"' in body


def test_a_duplicate_email_is_a_field_error_linking_the_existing_subscriber(
    alice_client, account_a, subscriber
):
    response = alice_client.post(CREATE_URL, {"email": "ANN@example.com"})
    assert response.status_code == 400
    body = response.content.decode()
    assert f'<a href="{detail_url(subscriber)}">see this subscriber</a>' in body
    assert Subscriber.objects.filter(account=account_a).count() == 1


def test_the_same_email_may_be_in_another_account(charlie_client, account_b, subscriber):
    response = charlie_client.post(CREATE_URL, {"email": "ann@example.com"})
    assert response.status_code == 302
    assert Subscriber.objects.filter(account=account_b, email="ann@example.com").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "ann smith@example.com", "contains a space"),
        ("email", "jos\u00e9@example.com", "non-ASCII characters before the @"),
        ("email", "ann@@example.com", "is not an email address"),
        ("email", "", "This field is required"),
        ("email", "a" * 250 + "@example.com", "longer than 254"),
        ("first_name", "A" * 256, "at most 255 characters"),
        ("first_name", "Ann\r\nBcc: x@example.com", "must be on one line"),
        ("first_name", "Ann\x00", "Null characters are not allowed"),
        ("tags", "ok, " + "t" * 101, "at most 100 characters"),
    ],
)
def test_bad_input_on_add_gets_a_field_error_and_stores_nothing(
    alice_client, account_a, field, value, message
):
    data = {"email": "fine@example.com", "first_name": "Ann", field: value}
    response = alice_client.post(CREATE_URL, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Subscriber.objects.filter(account=account_a).exists()
    assert not Tag.objects.filter(account=account_a).exists()


def test_an_internationalised_domain_is_stored_in_ascii(alice_client, account_a):
    response = alice_client.post(CREATE_URL, {"email": "ann@b\u00fccher.example"})
    assert response.status_code == 302
    assert Subscriber.objects.get(account=account_a).email == "ann@xn--bcher-kva.example"


def test_a_deleted_address_needs_the_creator_to_say_they_asked_to_come_back(
    alice_client, account_a, subscriber
):
    alice_client.post(reverse("subscriber_delete", args=[subscriber.id]))
    assert Suppression.objects.filter(
        account=account_a, email_hash=email_hash("ann@example.com")
    ).exists()

    response = alice_client.post(CREATE_URL, {"email": "ann@example.com"})
    assert response.status_code == 400
    assert "was deleted from your list" in response.content.decode()
    assert not Subscriber.objects.filter(account=account_a).exists()

    response = alice_client.post(CREATE_URL, {"email": "Ann@example.com", "readd": "on"})
    assert response.status_code == 302
    again = Subscriber.objects.get(account=account_a)
    assert again.email == "ann@example.com"
    assert again.state == Subscriber.State.ACTIVE
    assert again.fields == {}
    assert not again.taggings.exists()
    assert not Suppression.objects.filter(account=account_a).exists()


def test_editing_changes_email_name_and_fields_and_keeps_hidden_values(
    alice_client, account_a, subscriber
):
    CustomFieldFactory(account=account_a, key="company", label="Company")
    CustomFieldFactory(account=account_a, key="city", label="City")
    url = reverse("subscriber_edit", args=[subscriber.id])
    body = alice_client.get(url).content.decode()
    assert 'value="ann@example.com"' in body and 'value="Ann&#x27;s Kitchen"' in body

    response = alice_client.post(
        url,
        {
            "email": "Ann.New@Example.com",
            "first_name": "Annie",
            "field_company": "",
            "field_city": "Paris",
        },
    )
    assert response.status_code == 302
    subscriber.refresh_from_db()
    assert subscriber.email == "ann.new@example.com"
    assert subscriber.first_name == "Annie"
    assert subscriber.fields == {"old_field": "kept", "city": "Paris"}


def test_editing_to_an_address_already_on_the_list_is_refused(alice_client, account_a, subscriber):
    other = SubscriberFactory(account=account_a, email="bob@example.com")
    response = alice_client.post(
        reverse("subscriber_edit", args=[subscriber.id]), {"email": "bob@example.com"}
    )
    assert response.status_code == 400
    assert f'<a href="{detail_url(other)}">' in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.email == "ann@example.com"


def test_editing_to_an_erased_address_is_refused(alice_client, account_a, subscriber):
    Suppression.objects.create(account=account_a, email_hash=email_hash("gone@example.com"))
    response = alice_client.post(
        reverse("subscriber_edit", args=[subscriber.id]), {"email": "gone@example.com"}
    )
    assert response.status_code == 400
    assert "owner&#x27;s request" in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.email == "ann@example.com"


def test_an_edit_never_reactivates_an_unsubscribed_subscriber(alice_client, account_a):
    subscriber = SubscriberFactory(account=account_a, state=Subscriber.State.UNSUBSCRIBED)
    response = alice_client.post(
        reverse("subscriber_edit", args=[subscriber.id]),
        {"email": subscriber.email, "first_name": "New", "state": "active"},
    )
    assert response.status_code == 302
    subscriber.refresh_from_db()
    assert subscriber.first_name == "New"
    assert subscriber.state == Subscriber.State.UNSUBSCRIBED


def test_bad_input_on_edit_changes_nothing(alice_client, subscriber):
    response = alice_client.post(
        reverse("subscriber_edit", args=[subscriber.id]),
        {"email": "ann@example.com", "first_name": "Ann\nBob"},
    )
    assert response.status_code == 400
    assert "must be on one line" in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.first_name == "Ann"


def test_tagging_by_name_creates_or_reuses_the_tag(alice_client, account_a, subscriber):
    TagFactory(account=account_a, name="VIP")
    url = reverse("subscriber_tag", args=[subscriber.id])
    assert alice_client.post(url, {"name": " vip "}).status_code == 302
    assert alice_client.post(url, {"name": "vip"}).status_code == 302
    assert alice_client.post(url, {"name": "Buyers  2025"}).status_code == 302
    names = sorted(subscriber.taggings.values_list("tag__name", flat=True))
    assert names == ["Buyers 2025", "VIP"]
    assert Tag.objects.get(account=account_a, name="VIP").subscriber_count == 1


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "a\nb"])
def test_a_bad_tag_name_is_a_field_error(alice_client, account_a, subscriber, name):
    response = alice_client.post(reverse("subscriber_tag", args=[subscriber.id]), {"name": name})
    assert response.status_code == 400
    assert 'class="errorlist"' in response.content.decode()
    assert not Tag.objects.filter(account=account_a).exists()


def test_removing_a_tag(alice_client, account_a, subscriber):
    tag = TagFactory(account=account_a, name="vip")
    TaggingFactory(tag=tag, subscriber=subscriber)
    url = reverse("subscriber_untag", args=[subscriber.id, tag.id])
    assert alice_client.get(url).status_code == 302
    assert Tagging.objects.filter(subscriber=subscriber).exists()
    response = alice_client.post(url)
    assert response["Location"] == detail_url(subscriber)
    assert not Tagging.objects.filter(subscriber=subscriber).exists()
    tag.refresh_from_db()
    assert tag.subscriber_count == 0


def test_unsubscribing_asks_first_then_records_who_did_it(alice_client, account_a, subscriber):
    url = reverse("subscriber_unsubscribe", args=[subscriber.id])
    body = alice_client.get(url).content.decode()
    assert "Unsubscribe ann@example.com?" in body and 'method="post"' in body
    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.ACTIVE

    alice_client.post(url)
    alice_client.post(url)  # a double submit writes one history row
    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.UNSUBSCRIBED
    assert subscriber.unsubscribed_at is not None
    change = StateChange.objects.get(subscriber=subscriber)
    assert (change.from_state, change.to_state) == ("active", "unsubscribed")
    assert change.reason == "unsubscribed by alice@example.com"
    body = alice_client.get(detail_url(subscriber)).content.decode()
    assert "unsubscribed by alice@example.com" in body


def test_a_bounced_subscriber_is_not_moved_by_unsubscribe(alice_client, account_a):
    subscriber = SubscriberFactory(account=account_a, state=Subscriber.State.BOUNCED)
    alice_client.post(reverse("subscriber_unsubscribe", args=[subscriber.id]))
    subscriber.refresh_from_db()
    assert subscriber.state == Subscriber.State.BOUNCED
    assert not StateChange.objects.exists()


def test_deleting_asks_first_then_erases_all_but_the_suppression(
    alice_client, account_a, subscriber
):
    TaggingFactory(tag=TagFactory(account=account_a), subscriber=subscriber)
    StateChange.objects.create(account=account_a, subscriber=subscriber, to_state="active")
    url = reverse("subscriber_delete", args=[subscriber.id])
    body = alice_client.get(url).content.decode()
    assert "will not bring them back" in body
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()

    response = alice_client.post(url, follow=True)
    assert "An import will not bring them back" in response.content.decode()
    assert not Subscriber.objects.filter(pk=subscriber.pk).exists()
    assert not Tagging.objects.exists()
    assert not StateChange.objects.exists()
    suppression = Suppression.objects.get(account=account_a)
    assert suppression.email_hash == email_hash("ann@example.com")
    assert "ann@example.com" not in str(Suppression.objects.values())


def test_an_unknown_tag_or_subscriber_id_is_a_404_not_an_error(alice_client, subscriber):
    assert (
        alice_client.post(reverse("subscriber_untag", args=[subscriber.id, 999999])).status_code
        == 404
    )
    assert alice_client.get(reverse("subscriber_detail", args=[999999])).status_code == 404
    assert alice_client.post(reverse("subscriber_delete", args=[999999])).status_code == 404
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()


def test_markup_in_names_and_searches_is_shown_as_text(alice_client, account_a):
    subscriber = SubscriberFactory(account=account_a, first_name="<script>alert(1)</script>")
    body = alice_client.get(detail_url(subscriber)).content.decode()
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)" in body
    body = alice_client.get(reverse("subscriber_list"), {"q": "<b>x"}).content.decode()
    assert "<b>x" not in body and "&lt;b&gt;x" in body
