"""The form list: the account's live forms newest first, with views, subscribers gained and the
conversion rate, keyset-paged, in a fixed number of queries whatever the page holds."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from subscribers.models import Form
from subscribers.signup_forms.counters import form_view_record
from subscribers.signup_forms.services import form_archive, form_create
from tests.list_pages import keyset_walk_check, queries_for_page, row_of

LIST_URL = reverse("form_list")


def names_on(response) -> list[str]:
    return re.findall(r'<a href="/forms/\d+/">([^<]+)</a>', response.content.decode())


def make_forms(account, count: int) -> list[Form]:
    return [form_create(account=account, name=f"Form {n}") for n in range(count)]


def test_an_account_without_forms_is_invited_to_create_one(alice_client):
    response = alice_client.get(LIST_URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Grow your list with a form" in body
    assert f'href="{reverse("form_create")}"' in body
    assert "<table" not in body


def test_the_list_shows_the_live_forms_newest_first_with_their_figures(
    alice_client, account_a, account_b
):
    old = form_create(account=account_a, name="Sidebar", style=Form.Style.SLIDEIN)
    new = form_create(account=account_a, name="Homepage")
    archived = form_create(account=account_a, name="Old promo")
    form_archive(form=archived)
    form_create(account=account_b, name="Charlie's form")
    Form.objects.filter(pk=old.pk).update(view_count=180, subscriber_count=15)
    for _ in range(20):
        form_view_record(uid=old.uid)  # counted in Redis, not yet flushed to the row

    response = alice_client.get(LIST_URL)

    assert names_on(response) == ["Homepage", "Sidebar"]
    sidebar = row_of(response, "Sidebar")
    assert f'href="{reverse("form_builder", args=[old.id])}"' in response.content.decode()
    assert "Slide-in" in sidebar
    assert ">200<" in sidebar  # 180 flushed + 20 pending views
    assert ">15<" in sidebar
    assert "7.5%" in sidebar  # 15 subscribers / 200 views
    homepage = row_of(response, "Homepage")
    assert "—" in homepage  # no views yet: no rate
    created = new.created_at.astimezone(ZoneInfo(account_a.time_zone))
    assert f">{created:%-d %b %Y}</time>" in homepage


def test_older_and_newer_links_walk_every_form_once_without_offset(alice_client, account_a):
    forms = make_forms(account_a, 120)
    newest_first = [form.name for form in reversed(forms)]
    keyset_walk_check(alice_client, LIST_URL, names_on=names_on, newest_first=newest_first)


def test_past_the_last_form_the_list_says_so(alice_client, account_a):
    (form,) = make_forms(account_a, 1)
    response = alice_client.get(f"{LIST_URL}?after={form.id}")
    assert names_on(response) == []
    assert "No more forms" in response.content.decode()


def test_the_list_costs_the_same_queries_for_3_forms_as_for_30(alice_client, account_a):
    forms = make_forms(account_a, 3)
    for form in forms:
        form_view_record(uid=form.uid)
    with_3 = queries_for_page(alice_client, LIST_URL)
    more = make_forms(account_a, 27)
    Form.objects.filter(pk__in=[form.pk for form in more]).update(view_count=10, subscriber_count=2)
    with_30 = queries_for_page(alice_client, LIST_URL)
    assert len(names_on(alice_client.get(LIST_URL))) == 30
    assert with_3 == with_30


def test_the_list_never_counts_subscribers(alice_client, account_a):
    make_forms(account_a, 5)
    with CaptureQueriesContext(connection) as queries:
        alice_client.get(LIST_URL)
    sql = " ".join(query["sql"] for query in queries).upper()
    assert "COUNT(" not in sql
    assert "SUBSCRIBERS_SUBSCRIBER" not in sql


def test_a_member_sees_the_accounts_forms_and_charlie_does_not(
    bob_client, charlie_client, account_a
):
    form_create(account=account_a, name="Homepage")
    assert names_on(bob_client.get(LIST_URL)) == ["Homepage"]
    assert names_on(charlie_client.get(LIST_URL)) == []
