"""The counters kept by triggers (SubscriberCount, ListGrowth) are split in shards by the writing
connection: two signups into one account at once do not wait for each other's commit, and the
totals stay exact."""

from __future__ import annotations

import psycopg2
import pytest
from django.db import connection

from subscribers.models import ListGrowth
from subscribers.selectors import subscriber_counts
from tests.factories import SubscriberFactory


def _connect():
    settings = connection.settings_dict
    return psycopg2.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"],
        password=settings["PASSWORD"],
    )


def _two_connections_on_different_shards():
    """Two connections whose backend pids fall in different shards (pid modulo 16)."""
    first = _connect()
    with first.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid() % 16")
        shard = cursor.fetchone()[0]
    for _ in range(50):
        second = _connect()
        with second.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid() % 16")
            if cursor.fetchone()[0] != shard:
                return first, second
        second.close()
    pytest.fail("no two connections on different shards in 50 tries")


INSERT = """
    INSERT INTO subscribers_subscriber (account_id, email, first_name, fields, state, source,
        time_zone, consent_method, created_at, updated_at)
    VALUES (%s, %s, '', '{}', 'active', 'test', '', '', now(), now())
"""


@pytest.mark.django_db(transaction=True)
def test_two_signups_at_once_into_one_account_do_not_wait_for_each_other(account_a):
    SubscriberFactory(account=account_a)  # the counter rows exist already
    first, second = _two_connections_on_different_shards()
    try:
        with first.cursor() as cursor:
            cursor.execute(INSERT, [account_a.id, "first@example.com"])
        # The first transaction is still open, holding its counter rows: the second must not
        # wait for it.
        with second.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
            cursor.execute(INSERT, [account_a.id, "second@example.com"])
        second.commit()
        first.commit()
    finally:
        first.close()
        second.close()

    counts = subscriber_counts(account=account_a)
    assert counts["active"] == counts["total"] == 3
    gained = sum(ListGrowth.objects.filter(account=account_a).values_list("subscribed", flat=True))
    assert gained == 3


@pytest.mark.django_db(transaction=True)
def test_totals_stay_exact_across_shards_when_states_change_and_rows_go(account_a):
    subscribers = [SubscriberFactory(account=account_a) for _ in range(3)]
    other = _connect()
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "UPDATE subscribers_subscriber SET state = 'unsubscribed' WHERE id = %s",
                [subscribers[0].id],
            )
            cursor.execute("DELETE FROM subscribers_subscriber WHERE id = %s", [subscribers[1].id])
        other.commit()
    finally:
        other.close()
    counts = subscriber_counts(account=account_a)
    assert (counts["active"], counts["unsubscribed"], counts["total"]) == (1, 1, 2)
