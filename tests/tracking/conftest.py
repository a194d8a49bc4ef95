"""Fixtures for tracking tests: a broadcast already sent to a few subscribers, with links."""

from __future__ import annotations

import datetime as dt

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone

from broadcasts.models import Broadcast, Delivery
from tests.factories import AccountFactory, SubscriberFactory
from tracking.models import Link


@pytest.fixture
def sent_broadcast(db):
    """sent_broadcast(recipients=N, account=None, links=[urls], sent_ago=timedelta): a sent
    broadcast with one SENT delivery per subscriber and a Link per URL. Returns the broadcast;
    its deliveries are broadcast.delivery_set, its links broadcast.links."""

    def make(
        *,
        recipients: int = 3,
        account=None,
        links: tuple[str, ...] = ("https://example.com/soup", "https://example.com/bread"),
        sent_ago: dt.timedelta = dt.timedelta(hours=1),
    ) -> Broadcast:
        account = account or AccountFactory(name="Ann's Kitchen")
        sent_at = timezone.now() - sent_ago
        broadcast = Broadcast.objects.create(
            account=account,
            subject="Soup season",
            body="Hello",
            state=Broadcast.State.SENT,
            recipient_count=recipients,
            sent_count=recipients,
            send_started_at=sent_at,
            sent_at=sent_at,
        )
        start = Broadcast.objects.filter(account=account).count()
        for n in range(recipients):
            subscriber = SubscriberFactory(
                account=account, email=f"reader{start}.{n}@example.org", first_name=f"R{n}"
            )
            Delivery.objects.create(
                broadcast=broadcast,
                account=account,
                subscriber=subscriber,
                state=Delivery.State.SENT,
                attempts=1,
                sent_at=sent_at,
                esp_message_id=f"esp-{broadcast.pk}-{n}",
            )
        for position, url in enumerate(links, start=1):  # as links_create numbers them
            Link.objects.create(account=account, broadcast=broadcast, url=url, position=position)
        return broadcast

    return make


def database_connect():
    """A connection to the test database of its own, outside Django's: to hold a lock or an
    uncommitted row while the code under test runs."""
    database = connection.settings_dict
    return psycopg2.connect(
        dbname=database["NAME"],
        user=database["USER"],
        host=database["HOST"] or "127.0.0.1",
        port=database["PORT"] or 5432,
    )


def lock_waits(conn) -> int:
    """How many sessions of the test database wait for a lock (`conn` in autocommit:
    pg_stat_activity stays as first read within a transaction)."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]
