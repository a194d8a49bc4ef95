from __future__ import annotations

import pytest
from django.urls import reverse

from subscribers.models import CustomField, Subscriber, Tag, Tagging
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory, TaggingFactory

TAGS_URL = reverse("tag_list")
FIELDS_URL = reverse("custom_field_list")


def test_a_new_account_is_told_what_tags_are_for(alice_client):
    body = alice_client.get(TAGS_URL).content.decode()
    assert "No tags yet" in body


def test_the_tags_page_lists_tags_with_their_counts_linking_the_filtered_list(
    alice_client, account_a, account_b
):
    vip = TagFactory(account=account_a, name="vip")
    for _ in range(3):
        TaggingFactory(tag=vip)
    TagFactory(account=account_b, name="charlies-tag")
    body = alice_client.get(TAGS_URL).content.decode()
    assert f'<a href="{reverse("subscriber_list")}?tag={vip.id}">vip</a>' in body
    assert '<td data-label="Subscribers">3</td>' in body
    assert "charlies-tag" not in body
    assert 'scope="col"' in body and "table-stack" in body


def test_creating_a_tag(alice_client, account_a):
    response = alice_client.post(TAGS_URL, {"name": "  Webinar   2025 "}, follow=True)
    assert Tag.objects.get(account=account_a).name == "Webinar 2025"
    assert "Tag “Webinar 2025” created." in response.content.decode()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("VIP", "You already have a tag named “vip”"),
        ("", "This field is required"),
        ("x" * 101, "at most 100 characters"),
        ("two\nlines", "must be on one line"),
    ],
)
def test_a_bad_tag_name_is_a_field_error(alice_client, account_a, name, message):
    TagFactory(account=account_a, name="vip")
    response = alice_client.post(TAGS_URL, {"name": name})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Tag.objects.filter(account=account_a).count() == 1


def test_the_same_tag_name_may_exist_in_another_account(charlie_client, account_a, account_b):
    TagFactory(account=account_a, name="vip")
    assert charlie_client.post(TAGS_URL, {"name": "vip"}).status_code == 302
    assert Tag.objects.filter(account=account_b, name="vip").exists()


def test_deleting_a_tag_asks_first_and_keeps_its_subscribers(alice_client, account_a):
    tag = TagFactory(account=account_a, name="vip")
    subscriber = TaggingFactory(tag=tag).subscriber
    url = reverse("tag_delete", args=[tag.id])
    body = alice_client.get(url).content.decode()
    assert "Delete the tag “vip”?" in body and "1 subscriber who" in body
    assert Tag.objects.filter(pk=tag.pk).exists()

    response = alice_client.post(url)
    assert response["Location"] == TAGS_URL
    assert not Tag.objects.filter(pk=tag.pk).exists()
    assert not Tagging.objects.exists()
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()


def test_a_new_account_is_told_what_custom_fields_are_for(alice_client):
    assert "No custom fields yet" in alice_client.get(FIELDS_URL).content.decode()


def test_creating_a_custom_field_adds_it_to_the_subscriber_forms(alice_client, account_a):
    response = alice_client.post(FIELDS_URL, {"label": "Company", "key": "company_name"})
    assert response.status_code == 302
    field = CustomField.objects.get(account=account_a)
    assert (field.key, field.label) == ("company_name", "Company")
    body = alice_client.get(reverse("subscriber_create")).content.decode()
    assert '<label for="id_field_company_name">Company' in body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"label": "Company", "key": "Company"}, "lower-case letters"),
        ({"label": "Company", "key": "company name"}, "lower-case letters"),
        ({"label": "Company", "key": "1st"}, "starting with a letter"),
        ({"label": "Company", "key": "compañía"}, "lower-case letters"),
        ({"label": "Company", "key": "com\npany"}, "lower-case letters"),
        ({"label": "Company", "key": "x" * 51}, "at most 50 characters"),
        ({"label": "Email", "key": "email"}, "is a built-in field"),
        ({"label": "Company", "key": "city"}, "already have a field with this key"),
        ({"label": "", "key": "company"}, "This field is required"),
        ({"label": "Two\nlines", "key": "company"}, "must be on one line"),
    ],
)
def test_a_bad_custom_field_is_a_field_error(alice_client, account_a, data, message):
    CustomFieldFactory(account=account_a, key="city", label="City")
    response = alice_client.post(FIELDS_URL, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert CustomField.objects.filter(account=account_a).count() == 1


def test_deleting_a_field_hides_its_values_without_erasing_them(alice_client, account_a):
    field = CustomFieldFactory(account=account_a, key="company", label="Company")
    subscriber = SubscriberFactory(account=account_a, fields={"company": "Acme"})
    url = reverse("custom_field_delete", args=[field.id])
    body = alice_client.get(url).content.decode()
    assert "stay in the database, hidden" in body

    alice_client.post(url)

    assert not CustomField.objects.exists()
    subscriber.refresh_from_db()
    assert subscriber.fields == {"company": "Acme"}
    assert (
        "Acme"
        not in alice_client.get(reverse("subscriber_detail", args=[subscriber.id])).content.decode()
    )
    # Defined again with the same key, the values show again.
    alice_client.post(FIELDS_URL, {"label": "Company", "key": "company"})
    assert (
        "Acme"
        in alice_client.get(reverse("subscriber_detail", args=[subscriber.id])).content.decode()
    )
