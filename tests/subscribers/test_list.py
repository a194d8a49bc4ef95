from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from subscribers.models import Subscriber
from tests.factories import SubscriberFactory, TagFactory, TaggingFactory

LIST_URL = reverse("subscriber_list")


def emails_on(response) -> list[str]:
    return re.findall(r'href="/subscribers/\d+/">([^<]+)</a>', response.content.decode())


def link(response, text: str) -> str | None:
    """The href of the pager link whose text starts with `text`."""
    match = re.search(r'<a href="([^"]+)"[^>]*>' + re.escape(text), response.content.decode())
    return match.group(1).replace("&amp;", "&") if match else None


def make_subscribers(account, count: int, **kwargs) -> list[Subscriber]:
    return [SubscriberFactory(account=account, **kwargs) for _ in range(count)]


def seed_rows(account, count: int, *, email_prefix: str = "bulk", first_name: str = "Ann") -> None:
    """Many rows at once, as an import would write them (the counters follow by trigger)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO subscribers_subscriber (account_id, email, first_name, fields, state,
              source, consent_method, created_at, updated_at)
            SELECT %s, %s || g || '@example.com', %s, '{}', 'active', 'import', '', now(), now()
            FROM generate_series(1, %s) g
            """,
            [account.id, email_prefix, first_name, count],
        )


def test_an_empty_account_is_told_to_import_or_add(alice_client):
    response = alice_client.get(LIST_URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert "No subscribers yet" in body
    assert reverse("subscriber_import") in body
    assert reverse("subscriber_create") in body


def test_the_list_shows_fifty_subscribers_newest_first(alice_client, account_a):
    subscribers = make_subscribers(account_a, 55)
    response = alice_client.get(LIST_URL)
    emails = emails_on(response)
    assert emails == [s.email for s in reversed(subscribers)][:50]
    assert "55 subscribers" in response.content.decode()


def test_older_and_newer_links_walk_the_whole_list_without_gaps_or_repeats(alice_client, account_a):
    subscribers = make_subscribers(account_a, 120)
    newest_first = [s.email for s in reversed(subscribers)]
    seen: list[str] = []
    url = LIST_URL
    pages = []
    with CaptureQueriesContext(connection) as queries:
        while url:
            response = alice_client.get(url)
            page = emails_on(response)
            pages.append((url, page))
            seen += page
            url = link(response, "Older")
    assert seen == newest_first
    assert [len(page) for _, page in pages] == [50, 50, 20]
    assert queries.captured_queries
    assert "OFFSET" not in " ".join(query["sql"] for query in queries.captured_queries).upper()

    # Back from the last page by "Newer": the middle page again, then the first.
    response = alice_client.get(pages[-1][0])
    assert "before=" in link(response, "← Newer")
    response = alice_client.get(link(response, "← Newer"))
    assert emails_on(response) == pages[1][1]
    response = alice_client.get(link(response, "← Newer"))
    assert emails_on(response) == pages[0][1]
    assert link(response, "← Newer") is None
    assert link(response, "Older") == pages[1][0]


def test_pages_are_read_by_keyset_never_offset(alice_client, account_a):
    make_subscribers(account_a, 60)
    last = Subscriber.objects.filter(account=account_a).order_by("id")[5]
    with CaptureQueriesContext(connection) as queries:
        alice_client.get(LIST_URL, {"after": last.id})
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert "OFFSET" not in sql.upper()
    assert f'"subscribers_subscriber"."id" < {last.id}' in sql


def test_search_matches_the_start_of_the_email_or_first_name(alice_client, account_a):
    SubscriberFactory(account=account_a, email="annie@example.com", first_name="Zed")
    SubscriberFactory(account=account_a, email="zed@example.com", first_name="Annabel")
    SubscriberFactory(account=account_a, email="joanne@example.com", first_name="Joanne")
    response = alice_client.get(LIST_URL, {"q": "ANN"})
    assert sorted(emails_on(response)) == ["annie@example.com", "zed@example.com"]


def test_a_search_with_an_at_sign_matches_the_email_only(alice_client, account_a):
    SubscriberFactory(account=account_a, email="ann@example.com", first_name="Bob")
    SubscriberFactory(account=account_a, email="bob@example.com", first_name="ann@example.com")
    response = alice_client.get(LIST_URL, {"q": "ann@ex"})
    assert emails_on(response) == ["ann@example.com"]


def test_like_wildcards_in_a_search_are_taken_literally(alice_client, account_a):
    SubscriberFactory(account=account_a, email="ann@example.com")
    response = alice_client.get(LIST_URL, {"q": "%"})
    assert emails_on(response) == []
    response = alice_client.get(LIST_URL, {"q": "_nn"})
    assert emails_on(response) == []


def test_search_uses_the_prefix_indexes(alice_client, account_a):
    with CaptureQueriesContext(connection) as queries:
        alice_client.get(LIST_URL, {"q": "Ann"})
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert "\"email\"::text LIKE 'ann%'" in sql
    assert 'LOWER("subscribers_subscriber"."first_name")::text LIKE \'ann%\'' in sql


def test_filter_by_state(alice_client, account_a):
    active = SubscriberFactory(account=account_a)
    bounced = SubscriberFactory(account=account_a, state=Subscriber.State.BOUNCED)
    response = alice_client.get(LIST_URL, {"state": "bounced"})
    assert emails_on(response) == [bounced.email]
    assert active.email not in response.content.decode()
    assert "1 subscriber matches the filter" in response.content.decode()


def test_filter_by_tag_uses_the_tag_counter(alice_client, account_a):
    tag = TagFactory(account=account_a, name="vip")
    tagged = [TaggingFactory(tag=tag).subscriber for _ in range(3)]
    SubscriberFactory(account=account_a)
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(LIST_URL, {"tag": tag.id})
    assert emails_on(response) == [s.email for s in reversed(tagged)]
    assert "3 subscribers match the filter" in response.content.decode()
    assert not any("COUNT(" in query["sql"] for query in queries.captured_queries)


def test_the_unfiltered_total_comes_from_the_counters_not_a_count(alice_client, account_a):
    make_subscribers(account_a, 3)
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(LIST_URL)
    assert "3 subscribers" in response.content.decode()
    assert not any("COUNT(" in query["sql"] for query in queries.captured_queries)


def test_a_search_with_many_matches_is_counted_up_to_ten_thousand_after_the_page(
    alice_client, account_a
):
    seed_rows(account_a, 10_050)
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(LIST_URL, {"q": "bulk"})
    body = response.content.decode()
    assert len(emails_on(response)) == 50
    assert not any("COUNT(" in q["sql"] for q in queries.captured_queries)
    assert 'hx-get="/subscribers/?q=bulk&amp;count=1" hx-trigger="load"' in body
    assert '<noscript> · <a href="/subscribers/?q=bulk&amp;count=1">Count them</a>' in body

    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(
            LIST_URL, {"q": "bulk", "count": "1"}, headers={"HX-Request": "true"}
        )
    assert response.content.decode().strip() == "10,000+ subscribers match the filter"
    count_sql = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"]]
    assert len(count_sql) == 1
    assert "LIMIT 10001" in count_sql[0]
    page_sql = [
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "subscribers_subscriber"' in q["sql"] and "COUNT(" not in q["sql"]
    ]
    assert page_sql == []  # the count alone, not the page again

    # Without JavaScript, the link shows the page with the count.
    response = alice_client.get(LIST_URL, {"q": "bulk", "count": "1"})
    body = response.content.decode()
    assert "10,000+ subscribers match the filter" in body
    assert len(emails_on(response)) == 50 and "<html" in body


def test_a_combined_filter_below_the_cap_is_counted_exactly(alice_client, account_a):
    tag = TagFactory(account=account_a, name="vip")
    for _ in range(53):
        TaggingFactory(tag=tag, subscriber__state=Subscriber.State.UNSUBSCRIBED)
    TaggingFactory(tag=tag)
    params = {"tag": tag.id, "state": "unsubscribed", "count": "1"}
    response = alice_client.get(LIST_URL, params, headers={"HX-Request": "true"})
    assert response.content.decode().strip() == "53 subscribers match the filter"
    response = alice_client.get(LIST_URL, params)
    assert "53 subscribers match the filter" in response.content.decode()
    assert len(emails_on(response)) == 50


def test_a_search_that_fits_on_one_page_is_counted_without_a_count_query(alice_client, account_a):
    SubscriberFactory(account=account_a, email="ann@example.com")
    SubscriberFactory(account=account_a, email="anna@example.com")
    SubscriberFactory(account=account_a, email="bob@example.com")
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(LIST_URL, {"q": "ann"})
    assert "2 subscribers match the filter" in response.content.decode()
    assert not any("COUNT(" in q["sql"] for q in queries.captured_queries)


def test_a_filter_with_no_match_says_so_and_offers_to_clear_it(alice_client, account_a):
    SubscriberFactory(account=account_a, email="ann@example.com")
    response = alice_client.get(LIST_URL, {"q": "zzz"})
    body = response.content.decode()
    assert "No subscribers match" in body
    assert "Clear the filters" in body
    assert "No subscribers yet" not in body


def test_an_htmx_search_returns_only_the_results_and_the_live_status(alice_client, account_a):
    SubscriberFactory(account=account_a, email="ann@example.com")
    response = alice_client.get(LIST_URL, {"q": "ann"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "<html" not in body
    assert emails_on(response) == ["ann@example.com"]
    assert 'id="subscriber-status" hx-swap-oob="innerHTML"' in body
    assert "HX-Request" in response["Vary"]


def test_the_search_form_works_with_and_without_javascript(alice_client, account_a):
    SubscriberFactory(account=account_a, email="ann@example.com")
    body = alice_client.get(LIST_URL).content.decode()
    assert 'method="get" action="/subscribers/"' in body
    assert 'hx-get="/subscribers/"' in body and 'hx-push-url="true"' in body
    assert 'role="status" aria-live="polite"' in body
    assert '<label for="id_q">Search' in body
    # A history restore (htmx cache miss) needs the full page.
    response = alice_client.get(
        LIST_URL, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in response.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"after": "abc"}, None),
        ({"after": "-1"}, None),
        ({"before": "9" * 40}, None),
        ({"state": "deleted"}, "Select a valid choice"),
        ({"q": "x" * 300}, "at most 254 characters"),
    ],
)
def test_bad_list_parameters_never_cause_an_error(alice_client, account_a, params, message):
    """A bad cursor is ignored and a bad filter shows its error; the list still shows."""
    subscriber = SubscriberFactory(account=account_a)
    response = alice_client.get(LIST_URL, params)
    assert response.status_code == 200
    assert emails_on(response) == [subscriber.email]
    if message:
        assert message in response.content.decode()


def test_a_tag_of_another_account_is_not_a_valid_filter(alice_client, account_a, account_b):
    foreign = TagFactory(account=account_b, name="secret")
    SubscriberFactory(account=account_a)
    response = alice_client.get(LIST_URL, {"tag": foreign.id})
    body = response.content.decode()
    assert response.status_code == 200
    assert "Select a valid choice" in body
    assert "secret" not in body
    assert "Bulk action" not in body


def test_each_row_shows_its_tags(alice_client, account_a):
    tagging = TaggingFactory(tag=TagFactory(account=account_a, name="vip"))
    body = alice_client.get(LIST_URL).content.decode()
    assert '<span class="tag">vip</span>' in body
    assert tagging.subscriber.email in body


@pytest.mark.parametrize("rows", [2, 50])
def test_the_list_makes_the_same_number_of_queries_whatever_the_page_holds(
    alice_client, account_a, django_assert_max_num_queries, rows
):
    tags = [TagFactory(account=account_a) for _ in range(3)]
    for _ in range(rows):
        subscriber = SubscriberFactory(account=account_a)
        for tag in tags:
            TaggingFactory(tag=tag, subscriber=subscriber)
    alice_client.get(LIST_URL)  # warm the session
    for params in ({}, {"tag": tags[0].id}, {"q": "reader", "state": "active"}):
        # 7, and the account's sequences for the bulk action picker.
        with django_assert_max_num_queries(8):
            response = alice_client.get(LIST_URL, params)
        assert len(emails_on(response)) == min(rows, 50)


def test_charlie_sees_none_of_account_a_in_his_list(charlie_client, account_a):
    subscriber = SubscriberFactory(account=account_a)
    body = charlie_client.get(LIST_URL, {"q": subscriber.email[:4]}).content.decode()
    assert subscriber.email not in body
