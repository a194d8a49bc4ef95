"""The broadcast list: newest first, each named as its creator sees it (never Liquid source), with
state, sent (and skipped) emails, sent time in the account's time zone and open and click rates
(tests/tracking/test_reports.py); keyset-paged, in a fixed number of queries whatever the page
holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from broadcasts.models import Broadcast
from tests.list_pages import keyset_walk_check, queries_for_page, row_of

LIST_URL = reverse("broadcast_list")


def subjects_on(response) -> list[str]:
    return re.findall(
        r'<a href="/broadcasts/\d+/(?:progress/)?">([^<]+)</a>', response.content.decode()
    )


def make_broadcasts(account, count: int) -> list[Broadcast]:
    return Broadcast.objects.bulk_create(
        Broadcast(account=account, subject=f"Issue {n}") for n in range(count)
    )


def test_an_account_without_broadcasts_is_invited_to_write_one(alice_client):
    response = alice_client.get(LIST_URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Write your first broadcast" in body
    assert f'action="{reverse("broadcast_create")}"' in body
    assert "<table" not in body


def test_new_broadcast_creates_a_draft_and_opens_its_editor(alice_client, account_a):
    response = alice_client.post(reverse("broadcast_create"))
    broadcast = Broadcast.objects.get(account=account_a)
    assert broadcast.state == Broadcast.State.DRAFT
    assert response.url == reverse("broadcast_edit", args=[broadcast.id])
    assert alice_client.get(reverse("broadcast_create")).status_code == 302
    assert Broadcast.objects.count() == 1  # a GET creates nothing


def test_the_list_shows_each_broadcast_newest_first_with_its_figures(
    alice_client, account_a, account_b
):
    sent_at = datetime(2030, 3, 1, 23, 30, tzinfo=UTC)  # already 2 March in Paris
    roundup = Broadcast.objects.create(
        account=account_a,
        subject="February roundup",
        state=Broadcast.State.SENT,
        recipient_count=12_345,
        sent_count=12_300,
        skipped_count=45,
        send_started_at=sent_at,
        sent_at=sent_at,
    )
    Broadcast.objects.create(
        account=account_a,
        subject="Spring menu",
        state=Broadcast.State.SCHEDULED,
        scheduled_at=datetime(2030, 4, 1, 7, 0, tzinfo=UTC),
    )
    idea = Broadcast.objects.create(account=account_a, subject="Idea for later")
    Broadcast.objects.create(account=account_b, subject="Charlie's news")

    response = alice_client.get(LIST_URL)

    assert subjects_on(response) == ["Idea for later", "Spring menu", "February roundup"]
    sent = row_of(response, "February roundup")
    assert "badge-sent" in sent and ">Sent<" in sent
    assert (
        'data-label="Sent" class="num">12,300 <span class="muted nowrap">(45 skipped)</span>'
        in (sent)
    )
    assert "12,345" not in sent
    assert ">2 Mar 2030, 00:30</time>" in sent
    assert sent.count(">0.0%<") == 2  # open and click rates: nobody opened yet
    scheduled = row_of(response, "Spring menu")
    assert "Scheduled for" in scheduled and ">1 Apr 2030, 09:00</time>" in scheduled
    assert "skipped" not in scheduled
    draft = row_of(response, "Idea for later")
    assert ">Draft<" in draft
    assert f'href="{reverse("broadcast_edit", args=[idea.id])}"' in draft
    assert f'href="{reverse("broadcast_progress", args=[roundup.id])}"' in sent


def test_a_sent_broadcast_without_skipped_emails_shows_only_what_was_sent(alice_client, account_a):
    Broadcast.objects.create(
        account=account_a,
        subject="All went out",
        state=Broadcast.State.SENT,
        recipient_count=20,
        sent_count=18,
        failed_count=2,
        sent_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    row = row_of(alice_client.get(LIST_URL), "All went out")
    assert 'data-label="Sent" class="num">18</td>' in row
    assert "skipped" not in row


def test_a_broadcast_is_named_by_its_subject_for_a_sample_subscriber_or_its_description(
    alice_client, account_a
):
    Broadcast.objects.create(
        account=account_a,
        subject='Autumn notes, {{ subscriber.first_name | default: "friend" }}',
        state=Broadcast.State.SENT,
        sent_count=3,
        sent_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    Broadcast.objects.create(
        account=account_a, subject="News from {{ account.name }}, {{ subscriber.city }}"
    )
    Broadcast.objects.create(
        account=account_a,
        subject="{{ subscriber.first_name }}, soup?",
        description="Soup survey (March)",
    )
    response = alice_client.get(LIST_URL)
    assert [unescape(name) for name in subjects_on(response)] == [
        "Soup survey (March)",
        f"News from {account_a.name},",
        "Autumn notes, Jane",
    ]
    assert "{{" not in response.content.decode()


def test_older_and_newer_links_walk_every_broadcast_once_without_offset(alice_client, account_a):
    broadcasts = make_broadcasts(account_a, 120)
    newest_first = [broadcast.subject for broadcast in reversed(broadcasts)]
    keyset_walk_check(alice_client, LIST_URL, names_on=subjects_on, newest_first=newest_first)


def test_past_the_last_broadcast_the_list_says_so(alice_client, account_a):
    (broadcast,) = make_broadcasts(account_a, 1)
    response = alice_client.get(f"{LIST_URL}?after={broadcast.id}")
    assert subjects_on(response) == []
    assert "No more broadcasts" in response.content.decode()


def test_the_list_costs_the_same_queries_for_3_broadcasts_as_for_50(alice_client, account_a):
    make_broadcasts(account_a, 3)
    with_3 = queries_for_page(alice_client, LIST_URL)
    more = make_broadcasts(account_a, 57)
    Broadcast.objects.filter(pk__in=[b.pk for b in more[::2]]).update(
        state=Broadcast.State.SENT, recipient_count=10, sent_at=datetime(2030, 1, 1, tzinfo=UTC)
    )
    with_50 = queries_for_page(alice_client, LIST_URL)
    assert len(subjects_on(alice_client.get(LIST_URL))) == 50
    assert with_3 == with_50


def test_the_list_never_reads_deliveries_or_subscribers(alice_client, account_a):
    make_broadcasts(account_a, 5)
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(LIST_URL)
    assert len(subjects_on(response)) == 5
    sql = " ".join(query["sql"] for query in queries).upper()
    assert "COUNT(" not in sql
    assert "BROADCASTS_DELIVERY" not in sql
    assert "SUBSCRIBERS_SUBSCRIBER" not in sql


def test_sent_times_follow_the_account_time_zone(alice_client, account_a):
    account_a.time_zone = "America/New_York"
    account_a.save()
    sent_at = datetime(2030, 3, 1, 3, 0, tzinfo=UTC)
    Broadcast.objects.create(
        account=account_a, subject="Late", state=Broadcast.State.SENT, sent_at=sent_at
    )
    assert ">28 Feb 2030, 22:00</time>" in row_of(alice_client.get(LIST_URL), "Late")


def test_a_member_sees_the_accounts_broadcasts_and_charlie_does_not(
    bob_client, charlie_client, account_a
):
    Broadcast.objects.create(account=account_a, subject="Homepage news")
    assert subjects_on(bob_client.get(LIST_URL)) == ["Homepage news"]
    assert subjects_on(charlie_client.get(LIST_URL)) == []
