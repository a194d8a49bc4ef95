"""The broadcast report and the broadcast list's rates: figures equal to what the raw events
say, machine traffic kept out of the rates for people, people lists keyset-paged, nothing shown
to another account, and a fixed number of queries whatever the broadcast's size."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from broadcasts.models import Broadcast
from tests.list_pages import keyset_walk_check, queries_for_page, row_of
from tracking.models import DeliveryActivity, Event, EventKind, Machine, Rollup
from tracking.store import TrackedEvent, events_store

OPEN, CLICK = EventKind.OPEN, EventKind.CLICK


def report_url(broadcast) -> str:
    return reverse("broadcast_report", args=[broadcast.id])


def people_url(broadcast, kind: str) -> str:
    return reverse("broadcast_report_people", args=[broadcast.id, kind])


def card(body: str, card_id: str) -> str:
    start = body.index(f'id="{card_id}"')
    return body[start : body.index("</div>", start)]


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


def span(html: str, name: str) -> float:
    return number(re.search(rf'class="{name}">([^<]+)<', html).group(1))


def stat(html: str) -> str:
    return re.search(r'class="stat">([^<]+)<', html).group(1)


def emails_on(response) -> list[str]:
    return re.findall(r'<a href="/subscribers/\d+/">([^<]+)</a>', response.content.decode())


def distinct_deliveries(broadcast, *kinds: int, **filters) -> int:
    """Deliveries with an event of any of `kinds` (an opener: OPEN, CLICK)."""
    return (
        Event.objects.filter(broadcast_id=broadcast.id, kind__in=kinds, **filters)
        .values("delivery_id")
        .distinct()
        .count()
    )


@pytest.fixture
def busy_broadcast(sent_broadcast, account_a):
    """Six recipients: repeated opens, opens by a privacy proxy only and by a proxy then the
    person, clicks by people, by a scanner and right after sending (which the store flags),
    deliveries reported for five, a bounce, a soft bounce, a complaint and an unsubscribe."""
    broadcast = sent_broadcast(recipients=6, account=account_a, sent_ago=dt.timedelta(hours=5))
    d = list(broadcast.delivery_set.order_by("id"))
    soup, bread = broadcast.links.order_by("position")
    sent = d[0].sent_at
    at = [sent + dt.timedelta(hours=h, minutes=5) for h in range(5)]
    events_store(
        [TrackedEvent(EventKind.DELIVERED, sent + dt.timedelta(seconds=3), x.pk) for x in d[:5]]
        + [
            TrackedEvent(OPEN, at[0], d[0].pk),
            TrackedEvent(OPEN, at[1], d[0].pk),
            TrackedEvent(OPEN, at[3], d[0].pk),
            TrackedEvent(OPEN, at[0], d[1].pk, machine=Machine.PRIVACY_PROXY),
            TrackedEvent(OPEN, at[2], d[1].pk),
            TrackedEvent(OPEN, at[0], d[2].pk, machine=Machine.PRIVACY_PROXY),
            TrackedEvent(CLICK, at[1], d[0].pk, bread.pk),
            TrackedEvent(CLICK, at[2], d[0].pk, bread.pk),
            TrackedEvent(CLICK, at[2], d[1].pk, soup.pk),
            TrackedEvent(CLICK, at[3], d[2].pk, bread.pk, machine=Machine.SCANNER_AGENT),
            # Two seconds after sending: no person clicks that fast.
            TrackedEvent(CLICK, sent + dt.timedelta(seconds=2), d[3].pk, bread.pk),
            TrackedEvent(EventKind.BOUNCE, at[0], d[5].pk),
            TrackedEvent(EventKind.SOFT_BOUNCE, at[0], d[4].pk),
            TrackedEvent(EventKind.COMPLAINT, at[1], d[3].pk),
            TrackedEvent(EventKind.UNSUBSCRIBE, at[1], d[3].pk),
        ]
    )
    return broadcast


def test_the_report_figures_equal_what_the_raw_events_say(alice_client, busy_broadcast):
    broadcast = busy_broadcast
    body = alice_client.get(report_url(broadcast)).content.decode()

    delivered = distinct_deliveries(broadcast, EventKind.DELIVERED)
    # A click is an open: the too-soon (machine) click of d[3] makes it a machine-only opener.
    human_openers = distinct_deliveries(broadcast, OPEN, CLICK, machine=Machine.HUMAN)
    openers = distinct_deliveries(broadcast, OPEN, CLICK)
    human_clickers = distinct_deliveries(broadcast, CLICK, machine=Machine.HUMAN)
    clickers = distinct_deliveries(broadcast, CLICK)
    assert (delivered, human_openers, openers, human_clickers, clickers) == (5, 2, 4, 2, 4)

    opens = card(body, "open-rate")
    assert number(stat(opens)) == round(human_openers * 100 / delivered, 1)
    assert span(opens, "human-count") == human_openers
    assert span(opens, "raw-rate") == round(openers * 100 / delivered, 1)
    assert span(opens, "raw-count") == openers
    assert span(opens, "machine-count") == openers - human_openers
    assert span(opens, "total-count") == Event.objects.filter(kind=OPEN).count() == 6

    clicks = card(body, "click-rate")
    assert number(stat(clicks)) == round(human_clickers * 100 / delivered, 1)
    assert span(clicks, "raw-rate") == round(clickers * 100 / delivered, 1)
    assert span(clicks, "raw-count") == clickers
    assert span(clicks, "total-count") == Event.objects.filter(kind=CLICK).count() == 5

    assert number(stat(card(body, "bounces"))) == distinct_deliveries(broadcast, EventKind.BOUNCE)
    assert "1 soft bounce<" in card(body, "bounces")
    assert number(stat(card(body, "complaints"))) == 1
    assert number(stat(card(body, "unsubscribes"))) == 1
    assert "Rates are out of the 5 delivered emails" in body
    assert "Apple Mail Privacy Protection" in body


def test_a_reader_who_clicked_without_loading_images_counts_as_an_opener(
    alice_client, sent_broadcast, account_a
):
    broadcast = sent_broadcast(recipients=4, account=account_a)
    d = list(broadcast.delivery_set.order_by("id"))
    soup = broadcast.links.get(url="https://example.com/soup")
    later = d[0].sent_at + dt.timedelta(minutes=30)
    events_store(
        [
            TrackedEvent(OPEN, later, d[0].pk),
            TrackedEvent(CLICK, later, d[0].pk, soup.pk),
            # Images blocked: no pixel, only the click.
            TrackedEvent(CLICK, later, d[1].pk, soup.pk),
            # Apple's proxy fetched the pixel; the person clicked without loading it.
            TrackedEvent(OPEN, later, d[2].pk, machine=Machine.PRIVACY_PROXY),
        ]
    )
    events_store([TrackedEvent(CLICK, later + dt.timedelta(minutes=5), d[2].pk, soup.pk)])

    body = alice_client.get(report_url(broadcast)).content.decode()
    opens, clicks = card(body, "open-rate"), card(body, "click-rate")
    assert (span(opens, "human-count"), span(clicks, "human-count")) == (3, 3)
    assert (stat(opens), stat(clicks)) == ("75.0%", "75.0%")
    assert span(opens, "machine-count") == 0
    people = alice_client.get(people_url(broadcast, "opened"))
    assert sorted(emails_on(people)) == sorted(x.subscriber.email for x in d[:3])
    assert all("A person" in row_of(people, x.subscriber.email) for x in d[:3])
    assert list_cells(alice_client.get(reverse("broadcast_list")), "Soup season") == (
        "75.0%",
        "75.0%",
    )


def test_without_reported_deliveries_rates_are_out_of_the_emails_sent(
    alice_client, sent_broadcast, account_a
):
    broadcast = sent_broadcast(recipients=4, account=account_a)
    first = broadcast.delivery_set.order_by("id").first()
    events_store([TrackedEvent(OPEN, timezone.now(), first.pk)])
    body = alice_client.get(report_url(broadcast)).content.decode()
    assert stat(card(body, "open-rate")) == "25.0%"
    assert "not reported by your mail service" in card(body, "delivered")
    assert "out of the 4 sent emails" in body


def test_the_chart_shows_opens_and_clicks_by_hour_raw_and_by_people(alice_client, busy_broadcast):
    body = alice_client.get(report_url(busy_broadcast)).content.decode()
    svg = body[body.index("<svg viewBox") : body.index("</svg>", body.index("<svg viewBox"))]
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
    assert svg.count("<polyline") == 4
    for name in ("All opens", "Opens by people", "All clicks", "Clicks by people"):
        assert f"{name}</li>" in body
    table = body[body.index('<details class="chart-data"') :]
    rows = re.findall(r'<th scope="row"[^>]*>[^<]+</th>((?:<td class="num">[^<]*</td>)+)', table)
    shown = [[int(n) for n in re.findall(r">([\d,]+)<", cells)] for cells in rows]

    # One row an hour, from the hour the send started to the last hour with a count.
    rollups = {
        r.hour: [r.opens, r.human_opens, r.clicks, r.human_clicks]
        for r in Rollup.objects.filter(broadcast_id=busy_broadcast.id, link_id=0)
    }
    hour = busy_broadcast.send_started_at.replace(minute=0, second=0, microsecond=0)
    expected = []
    while hour <= max(rollups):
        expected.append(rollups.get(hour, [0, 0, 0, 0]))
        hour += dt.timedelta(hours=1)
    assert shown == expected
    assert sum(row[0] for row in shown) == Event.objects.filter(kind=OPEN).count()
    assert sum(row[1] for row in shown) == Event.objects.filter(kind=OPEN, machine=0).count()
    assert sum(row[2] for row in shown) == Event.objects.filter(kind=CLICK).count()
    assert sum(row[3] for row in shown) == Event.objects.filter(kind=CLICK, machine=0).count()


def test_past_a_week_the_chart_shows_days_in_the_accounts_time_zone(
    alice_client, sent_broadcast, account_a
):
    broadcast = sent_broadcast(recipients=2, account=account_a, sent_ago=dt.timedelta(days=12))
    first, second = broadcast.delivery_set.order_by("id")
    opened = [first.sent_at + dt.timedelta(hours=1), timezone.now() - dt.timedelta(minutes=5)]
    events_store(
        [TrackedEvent(OPEN, opened[0], first.pk), TrackedEvent(OPEN, opened[1], second.pk)]
    )
    body = alice_client.get(report_url(broadcast)).content.decode()
    assert "Opens and clicks by day" in body
    table = body[body.index('<details class="chart-data"') :]
    days = re.findall(r'<th scope="row"[^>]*>([^<]+)</th><td class="num">(\d+)</td>', table)
    paris = zoneinfo.ZoneInfo(account_a.time_zone)
    send_hour = broadcast.send_started_at.replace(minute=0, second=0, microsecond=0)
    start, end = (timezone.localtime(m, paris).date() for m in (send_hour, opened[1]))
    assert len(days) == (end - start).days + 1
    assert dict(days) == {
        f"{start + dt.timedelta(days=n):%-d %b %Y}": str(
            sum(timezone.localtime(m, paris).date() == start + dt.timedelta(days=n) for m in opened)
        )
        for n in range(len(days))
    }


def test_a_report_without_opens_or_clicks_says_so_instead_of_a_chart(
    alice_client, sent_broadcast, account_a
):
    broadcast = sent_broadcast(recipients=2, account=account_a)
    body = alice_client.get(report_url(broadcast)).content.decode()
    assert "No opens or clicks yet" in body
    assert "<svg viewBox" not in body
    assert stat(card(body, "open-rate")) == "0.0%"


def test_links_are_ranked_by_clicks_with_unique_and_human_counts(alice_client, busy_broadcast):
    body = alice_client.get(report_url(busy_broadcast)).content.decode()
    table = body[body.index('class="table-stack link-table"') :]
    rows = re.findall(
        r">(https://[^<]+)</a></td>\s*<td[^>]*>(\d+)</td>\s*<td[^>]*>(\d+)</td>\s*<td[^>]*>(\d+)<",
        table,
    )
    expected = []
    for link in busy_broadcast.links.all():
        clicks = Event.objects.filter(kind=CLICK, link_id=link.id)
        expected.append(
            (
                link.url,
                str(clicks.count()),
                str(clicks.values("delivery_id").distinct().count()),
                str(clicks.filter(machine=Machine.HUMAN).values("delivery_id").distinct().count()),
            )
        )
    expected.sort(key=lambda row: -int(row[1]))
    assert rows == expected
    assert rows[0][0] == "https://example.com/bread"


def test_who_opened_lists_openers_latest_first_with_machine_only_ones_marked(
    alice_client, busy_broadcast
):
    response = alice_client.get(people_url(busy_broadcast, "opened"))
    openers = DeliveryActivity.objects.filter(
        broadcast_id=busy_broadcast.id, kind=OPEN, link_id=0
    ).order_by("-id")
    emails = [
        busy_broadcast.delivery_set.get(pk=activity.delivery_id).subscriber.email
        for activity in openers
    ]
    assert emails_on(response) == emails
    machine_only = busy_broadcast.delivery_set.order_by("id")[2].subscriber.email
    assert "Machine only" in row_of(response, machine_only)
    bounced = alice_client.get(people_url(busy_broadcast, "bounced"))
    assert emails_on(bounced) == [busy_broadcast.delivery_set.order_by("id")[5].subscriber.email]


def test_who_clicked_one_link_lists_only_its_clickers(alice_client, busy_broadcast):
    soup = busy_broadcast.links.get(url="https://example.com/soup")
    response = alice_client.get(people_url(busy_broadcast, "clicked") + f"?link={soup.id}")
    assert emails_on(response) == [busy_broadcast.delivery_set.order_by("id")[1].subscriber.email]
    assert "https://example.com/soup" in response.content.decode()


def test_a_deleted_subscriber_stays_in_the_list_without_a_link(alice_client, busy_broadcast):
    gone = busy_broadcast.delivery_set.order_by("id")[5].subscriber
    gone.delete()
    body = alice_client.get(people_url(busy_broadcast, "bounced")).content.decode()
    assert "Deleted subscriber" in body
    assert gone.email not in body


def test_people_lists_walk_every_opener_once_without_offset(
    alice_client, sent_broadcast, account_a
):
    broadcast = sent_broadcast(recipients=120, account=account_a, links=())
    now = timezone.now()
    events_store([TrackedEvent(OPEN, now, d.pk) for d in broadcast.delivery_set.all()])
    newest_first = [
        broadcast.delivery_set.get(pk=delivery_id).subscriber.email
        for delivery_id in DeliveryActivity.objects.filter(broadcast_id=broadcast.id)
        .order_by("-id")
        .values_list("delivery_id", flat=True)
    ]
    keyset_walk_check(
        alice_client, people_url(broadcast, "opened"), names_on=emails_on, newest_first=newest_first
    )


def report_urls(broadcast) -> list[str]:
    return [
        report_url(broadcast),
        people_url(broadcast, "opened"),
        people_url(broadcast, "clicked"),
    ]


def test_the_report_and_its_lists_cost_the_same_queries_for_2_recipients_as_for_40(
    alice_client, sent_broadcast, account_a
):
    small = sent_broadcast(recipients=2, account=account_a, links=("https://a.example/",))
    events_store([TrackedEvent(OPEN, timezone.now(), small.delivery_set.first().pk)])
    small_counts = [queries_for_page(alice_client, url) for url in report_urls(small)]

    links = tuple(f"https://b.example/{n}" for n in range(8))
    large = sent_broadcast(recipients=40, account=account_a, links=links)
    link_ids = list(large.links.values_list("id", flat=True))
    now = timezone.now()
    events_store(
        [
            TrackedEvent(OPEN, now - dt.timedelta(hours=n % 4), d.pk)
            for n, d in enumerate(large.delivery_set.all())
        ]
        + [
            TrackedEvent(CLICK, now - dt.timedelta(minutes=n), d.pk, link_ids[n % 8])
            for n, d in enumerate(large.delivery_set.all())
        ]
    )
    assert [queries_for_page(alice_client, url) for url in report_urls(large)] == small_counts


def test_charlie_gets_404_for_alices_report_and_lists_and_bob_sees_them(
    charlie_client, bob_client, busy_broadcast
):
    soup = busy_broadcast.links.first()
    urls = [
        report_url(busy_broadcast),
        people_url(busy_broadcast, "opened"),
        people_url(busy_broadcast, "clicked") + f"?link={soup.id}",
    ]
    for url in urls:
        assert charlie_client.get(url).status_code == 404
        assert bob_client.get(url).status_code == 200


def test_bad_list_names_and_links_of_other_broadcasts_are_404(
    alice_client, busy_broadcast, sent_broadcast, account_a
):
    other = sent_broadcast(recipients=1, account=account_a, links=("https://other.example/",))
    clicked = people_url(busy_broadcast, "clicked")
    assert alice_client.get(people_url(busy_broadcast, "delivered")).status_code == 404
    assert alice_client.get(f"{clicked}?link={other.links.get().id}").status_code == 404
    assert alice_client.get(f"{clicked}?link=abc").status_code == 404
    assert alice_client.get(reverse("broadcast_report", args=[999_999])).status_code == 404


def test_a_draft_has_no_report_yet_and_opens_in_the_editor(alice_client, account_a):
    draft = Broadcast.objects.create(account=account_a, subject="Later")
    response = alice_client.get(report_url(draft))
    assert response.status_code == 302
    assert response.url == reverse("broadcast_edit", args=[draft.id])


def test_the_report_offers_a_resend_to_non_openers_and_the_progress_page_links_to_it(
    alice_client, busy_broadcast
):
    body = alice_client.get(report_url(busy_broadcast)).content.decode()
    resend = reverse("broadcast_resend_unopened", kwargs={"pk": busy_broadcast.id})
    assert f'<form method="post" action="{resend}"' in body
    progress = alice_client.get(reverse("broadcast_progress", args=[busy_broadcast.id]))
    assert f'href="{report_url(busy_broadcast)}"' in progress.content.decode()


# --- The broadcast list's rates ----------------------------------------------------------------


def list_cells(response, subject: str) -> tuple[str, str]:
    row = row_of(response, subject)
    opens = re.search(r'data-label="Opens" class="num">(?:<a [^>]*>)?([^<]+)<', row).group(1)
    clicks = re.search(r'data-label="Clicks" class="num">(?:<a [^>]*>)?([^<]+)<', row).group(1)
    return unescape(opens), unescape(clicks)


def test_the_broadcast_list_shows_rates_by_people_for_sent_broadcasts(
    alice_client, busy_broadcast, account_a
):
    Broadcast.objects.create(account=account_a, subject="Draft idea")
    busy_broadcast.subject = "Busy"
    busy_broadcast.save()
    response = alice_client.get(reverse("broadcast_list"))
    delivered = distinct_deliveries(busy_broadcast, EventKind.DELIVERED)
    opened = distinct_deliveries(busy_broadcast, OPEN, CLICK, machine=Machine.HUMAN)
    clicked = distinct_deliveries(busy_broadcast, CLICK, machine=Machine.HUMAN)
    assert list_cells(response, "Busy") == (
        f"{opened * 100 / delivered:.1f}%",
        f"{clicked * 100 / delivered:.1f}%",
    )
    assert f'href="{report_url(busy_broadcast)}"' in row_of(response, "Busy")
    assert list_cells(response, "Draft idea") == ("—", "—")


def test_the_list_with_rates_costs_the_same_queries_for_3_broadcasts_as_for_50(
    alice_client, sent_broadcast, account_a
):
    for _ in range(3):
        sent_broadcast(recipients=1, account=account_a, links=())
    with_3 = queries_for_page(alice_client, reverse("broadcast_list"))
    now = timezone.now()
    for _ in range(47):
        broadcast = sent_broadcast(recipients=1, account=account_a, links=())
        events_store([TrackedEvent(OPEN, now, broadcast.delivery_set.get().pk)])
    assert queries_for_page(alice_client, reverse("broadcast_list")) == with_3
