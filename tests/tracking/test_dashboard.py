"""The dashboard's charts: list growth per day (from the ListGrowth rollup the subscriber
triggers keep, never a count over subscribers) and the latest broadcasts' rates by people."""

from __future__ import annotations

import datetime as dt
import importlib
import re
import zoneinfo

from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from subscribers import services
from subscribers.csv import importer
from subscribers.models import ListGrowth, Subscriber
from tests.factories import SubscriberFactory
from tests.list_pages import queries_for_page
from tracking.models import Event, EventKind, Machine
from tracking.store import TrackedEvent, events_store

DASHBOARD = reverse("dashboard")
growth_migration = importlib.import_module("subscribers.migrations.0006_list_growth")


def chart_table(response, chart_id: str) -> dict[str, list[str]]:
    """The rows of a chart's table, by their first cell."""
    body = response.content.decode()
    start = body.index(f'id="{chart_id}-title"')
    table = body[body.index('<details class="chart-data"', start) :]
    table = table[: table.index("</details>")]
    return {
        label: re.findall(r'<td class="num">([^<]*)</td>', cells)
        for label, cells in re.findall(
            r'<th scope="row"[^>]*>([^<]+)</th>((?:<td class="num">[^<]*</td>)+)', table
        )
    }


def account_zone(account) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(account.time_zone)


def day_label(day: dt.date) -> str:
    return f"{day:%-d %b %Y}"


def insert_subscriber_at(account, email: str, created_at: dt.datetime) -> None:
    """A subscriber added at a given time, as an import or the API might (created_at is
    otherwise always now)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO subscribers_subscriber (account_id, email, first_name, fields, state, "
            "source, consent_method, created_at, updated_at) "
            "VALUES (%s, %s, '', '{}', 'active', 'test', '', %s, %s)",
            [account.id, email, created_at, created_at],
        )


def test_the_growth_chart_shows_todays_gains_and_losses_as_the_rows_say(alice_client, account_a):
    Subscriber.objects.bulk_create(
        Subscriber(account=account_a, email=f"bulk{n}@example.org") for n in range(5)
    )
    one, two, three, four = (SubscriberFactory(account=account_a) for _ in range(4))
    SubscriberFactory(account=account_a, state=Subscriber.State.UNSUBSCRIBED)  # never subscribed
    services.subscriber_unsubscribe(subscriber=one, reason="link")
    services.subscriber_unsubscribe(subscriber=two, reason="link")
    services.subscriber_resubscribe(subscriber=two, reason="came back")
    Subscriber.objects.filter(pk=three.pk).update(state=Subscriber.State.BOUNCED)
    Subscriber.objects.filter(pk=four.pk).update(state=Subscriber.State.COMPLAINED)
    Subscriber.objects.filter(pk=three.pk).update(state=Subscriber.State.COMPLAINED)  # still lost

    response = alice_client.get(DASHBOARD)
    rows = chart_table(response, "growth-chart")
    assert len(rows) == 30
    today = day_label(timezone.localdate(timezone=account_zone(account_a)))
    # Gained: the 9 added active and the one who came back. Unsubscribed: two (one came back
    # later). Lost to bounces and complaints: two (the bounce that turned into a complaint was
    # lost once).
    assert rows[today] == ["10", "2", "2"]
    assert all(cells == ["0", "0", "0"] for label, cells in rows.items() if label != today)
    body = response.content.decode()
    assert "<svg viewBox" in body
    for name in ("New subscribers", "Unsubscribed", "Bounced or complained"):
        assert f"{name}</li>" in body
    assert "<strong>10</strong> new, 2 unsubscribed, 2 bounced or marked as spam" in body


def test_growth_goes_back_90_days_on_request(alice_client, account_a):
    forty_days_ago = timezone.now() - dt.timedelta(days=40)
    insert_subscriber_at(account_a, "old@example.org", forty_days_ago)
    old_day = day_label(timezone.localtime(forty_days_ago, account_zone(account_a)).date())

    thirty = alice_client.get(DASHBOARD).content.decode()
    assert "Nobody joined or left in this period." in thirty
    assert 'id="growth-chart-title"' not in thirty
    ninety = chart_table(alice_client.get(f"{DASHBOARD}?days=90"), "growth-chart")
    assert len(ninety) == 90
    assert ninety[old_day] == ["1", "0", "0"]
    assert "In the last 30 days:" in alice_client.get(f"{DASHBOARD}?days=7").content.decode()


def test_growth_days_are_the_accounts_own_days(alice_client, account_a):
    """Ten past midnight in Paris is still yesterday in UTC: it counts for the Paris day."""
    paris = account_zone(account_a)
    paris_today = timezone.localdate(timezone=paris)
    ten_past_midnight = dt.datetime.combine(paris_today, dt.time(0, 10), tzinfo=paris)
    insert_subscriber_at(account_a, "early@example.org", ten_past_midnight)
    rows = chart_table(alice_client.get(DASHBOARD), "growth-chart")
    assert rows[day_label(paris_today)] == ["1", "0", "0"]
    assert rows[day_label(paris_today - dt.timedelta(days=1))] == ["0", "0", "0"]


def test_an_import_counts_its_new_subscribers_not_the_ones_it_updates(account_a):
    SubscriberFactory(account=account_a, email="known@example.org")
    before = ListGrowth.objects.filter(account=account_a).aggregate(n=Sum("subscribed"))["n"]
    job = importer.import_job_create(
        account=account_a,
        created_by=None,
        file_name="people.csv",
        chunks=[
            b"email,first_name\nknown@example.org,Kay\nnew1@example.org,A\nnew2@example.org,B\n"
        ],
    )
    importer.import_job_start(
        job=job,
        mapping=["email", "first_name"],
        tag_names=[],
        encoding="utf-8",
        consent_by="test",
        enqueue=False,
    )
    importer.import_job_run(job_id=job.id)
    after = ListGrowth.objects.filter(account=account_a).aggregate(n=Sum("subscribed"))["n"]
    assert Subscriber.objects.get(email="known@example.org").first_name == "Kay"
    assert after - before == 2


def test_the_migrations_backfill_rebuilds_what_the_triggers_counted(account_a):
    people = [SubscriberFactory(account=account_a) for _ in range(6)]
    SubscriberFactory(account=account_a, state=Subscriber.State.UNSUBSCRIBED)
    insert_subscriber_at(account_a, "old@example.org", timezone.now() - dt.timedelta(days=3))
    for person in people[:3]:
        services.subscriber_unsubscribe(subscriber=person, reason="link")
    services.subscriber_resubscribe(subscriber=people[0], reason="came back")
    columns = ("subscribed", "unsubscribed", "bounced", "complained")

    def totals():
        rows = ListGrowth.objects.filter(account=account_a)
        return rows.aggregate(**{name: Sum(name) for name in columns}), rows.count()

    counted = totals()
    assert counted[0] == {"subscribed": 8, "unsubscribed": 3, "bounced": 0, "complained": 0}
    ListGrowth.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(growth_migration.BACKFILL)
    assert totals() == counted


def test_the_dashboard_never_reads_the_subscriber_table(alice_client, account_a):
    SubscriberFactory(account=account_a)
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(DASHBOARD)
    assert 'id="growth-heading"' in response.content.decode()
    sql = " ".join(query["sql"] for query in queries)
    assert '"subscribers_subscriber"' not in sql
    assert "tracking_event" not in sql


def sent_with_opens(sent_broadcast, account, subject: str, opened: int, clicked: int):
    broadcast = sent_broadcast(recipients=10, account=account, links=("https://x.example/",))
    broadcast.subject = subject
    broadcast.save()
    deliveries = list(broadcast.delivery_set.order_by("id"))
    link = broadcast.links.get()
    now = timezone.now()
    events_store(
        [TrackedEvent(EventKind.OPEN, now, d.pk) for d in deliveries[:opened]]
        + [
            TrackedEvent(EventKind.OPEN, now, d.pk, machine=Machine.PRIVACY_PROXY)
            for d in deliveries
        ]
        + [TrackedEvent(EventKind.CLICK, now, d.pk, link.pk) for d in deliveries[:clicked]]
    )
    return broadcast


def test_the_dashboard_charts_the_latest_broadcasts_rates_by_people(
    alice_client, sent_broadcast, account_a
):
    first = sent_with_opens(sent_broadcast, account_a, "First issue", opened=4, clicked=1)
    second = sent_with_opens(sent_broadcast, account_a, "Second issue", opened=7, clicked=3)
    response = alice_client.get(DASHBOARD)
    rows = chart_table(response, "rates-chart")
    assert list(rows) == ["First issue", "Second issue"]
    for broadcast in (first, second):
        people = Event.objects.filter(broadcast_id=broadcast.id, machine=Machine.HUMAN)
        opened = people.filter(kind=EventKind.OPEN).values("delivery_id").distinct().count()
        clicked = people.filter(kind=EventKind.CLICK).values("delivery_id").distinct().count()
        assert rows[broadcast.subject] == [
            f"{opened * 100 / broadcast.sent_count:.1f}%",
            f"{clicked * 100 / broadcast.sent_count:.1f}%",
        ]
    body = response.content.decode()
    chart = body[body.index('aria-labelledby="rates-chart-title') :]
    chart = chart[: chart.index("</svg>")]
    assert chart.count("<rect") == 4
    assert "<title>Second issue: Open rate 70.0%</title>" in chart


def test_sent_broadcasts_nobody_opened_yet_say_so_and_drafts_are_not_charted(
    alice_client, sent_broadcast, account_a
):
    from broadcasts.models import Broadcast

    Broadcast.objects.create(account=account_a, subject="Draft")
    assert "rates-chart" not in alice_client.get(DASHBOARD).content.decode()
    sent_broadcast(recipients=3, account=account_a)
    body = alice_client.get(DASHBOARD).content.decode()
    assert "Nobody has opened your latest broadcasts yet." in body
    assert 'aria-labelledby="rates-chart-title' not in body


def test_the_dashboard_costs_the_same_queries_for_one_broadcast_as_for_a_busy_account(
    alice_client, sent_broadcast, account_a
):
    sent_with_opens(sent_broadcast, account_a, "Only issue", opened=1, clicked=0)
    quiet = queries_for_page(alice_client, DASHBOARD)
    for n in range(12):
        sent_with_opens(sent_broadcast, account_a, f"Issue {n}", opened=n % 10, clicked=n % 3)
    insert_subscriber_at(account_a, "old@example.org", timezone.now() - dt.timedelta(days=20))
    assert queries_for_page(alice_client, DASHBOARD) == quiet
