"""Reads for the reports: the broadcast report and its people lists, the open and click rates
of the broadcast list, a subscriber's activity timeline, and the dashboard's charts.

Figures come from Rollup (counters by hour), DeliveryActivity (the firsts of each delivery) and
ListGrowth, never from counting Event or Subscriber rows; Event is read only for one
subscriber's timeline, through its index. Each function runs a fixed number of queries,
whatever the size of the list or the broadcast.

Rates are out of the delivered emails, or out of the sent ones when the mail service reports no
deliveries (SMTP does not). "People" rates leave out machine traffic; "raw" ones include it.
A click counts as an open: the store records an open with every click (tracking/store.py), so
no figure shows more people clicking than opening.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Case, CharField, F, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from broadcasts.models import Broadcast, Delivery
from convertkit.paging import KeysetPage, keyset_page
from sequences.models import SequenceEmail
from subscribers.models import ListGrowth, Subscriber
from tracking import charts
from tracking.models import DeliveryActivity, EventKind, Link, Machine, Rollup

# The people lists of a broadcast report, by the name in their URL.
PEOPLE_KINDS = {
    "opened": EventKind.OPEN,
    "clicked": EventKind.CLICK,
    "bounced": EventKind.BOUNCE,
    "complained": EventKind.COMPLAINT,
    "unsubscribed": EventKind.UNSUBSCRIBE,
}
# Past this many hours, the activity chart shows days instead.
HOURLY_CHART_HOURS = 7 * 24
RECENT_BROADCASTS_CHARTED = 10
GROWTH_PERIODS = (30, 90)
TIMELINE_SIZE = 50


def _rate(part: int, base: int) -> float | None:
    return part * 100 / base if base else None


def rate_label(rate: float | None) -> str:
    """A rate as "42.1%", or "—" when there is nothing to take it from (nobody sent to yet)."""
    return "—" if rate is None else charts.percent_format(rate)


# --- Rates and the broadcast report's figures -------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """Unique openers and clickers of one broadcast, and what rates are out of."""

    base: int
    unique_opens: int
    human_unique_opens: int
    unique_clicks: int
    human_unique_clicks: int

    @property
    def open_rate(self) -> float | None:
        return _rate(self.human_unique_opens, self.base)

    @property
    def click_rate(self) -> float | None:
        return _rate(self.human_unique_clicks, self.base)

    @property
    def raw_open_rate(self) -> float | None:
        return _rate(self.unique_opens, self.base)

    @property
    def raw_click_rate(self) -> float | None:
        return _rate(self.unique_clicks, self.base)


_RATE_SUMS = (
    "delivered",
    "unique_opens",
    "human_unique_opens",
    "unique_clicks",
    "human_unique_clicks",
)


def _rates(broadcast: Broadcast, sums: dict) -> Rates:
    delivered = sums.get("delivered") or 0
    return Rates(
        base=delivered or broadcast.sent_count,
        **{name: sums.get(name) or 0 for name in _RATE_SUMS if name != "delivered"},
    )


def broadcast_rates(*, broadcasts: Iterable[Broadcast]) -> dict[int, Rates]:
    """The rates of each broadcast, by id: one query for all of them."""
    broadcasts = list(broadcasts)
    sums = {
        row["broadcast_id"]: row
        for row in Rollup.objects.filter(
            broadcast_id__in=[broadcast.id for broadcast in broadcasts], link_id=0
        )
        .values("broadcast_id")
        .annotate(**{name: Sum(name) for name in _RATE_SUMS})
        .order_by()
    }
    return {broadcast.id: _rates(broadcast, sums.get(broadcast.id, {})) for broadcast in broadcasts}


@dataclass(frozen=True)
class BroadcastFigures:
    recipients: int
    sent: int
    delivered: int
    rates: Rates
    opens: int
    human_opens: int
    clicks: int
    human_clicks: int
    bounces: int
    soft_bounces: int
    complaints: int
    unsubscribes: int

    @property
    def machine_only_openers(self) -> int:
        return self.rates.unique_opens - self.rates.human_unique_opens

    @property
    def machine_only_clickers(self) -> int:
        return self.rates.unique_clicks - self.rates.human_unique_clicks


_FIGURE_SUMS = (
    "opens",
    "human_opens",
    "clicks",
    "human_clicks",
    "bounces",
    "soft_bounces",
    "complaints",
    "unsubscribes",
)


def broadcasts_figures(*, broadcasts: Iterable[Broadcast]) -> dict[int, BroadcastFigures]:
    """The report's figures of each broadcast (or sequence email's message), by id: one
    aggregate over their hourly rollups."""
    broadcasts = list(broadcasts)
    sums = {
        row["broadcast_id"]: row
        for row in Rollup.objects.filter(
            broadcast_id__in=[broadcast.id for broadcast in broadcasts], link_id=0
        )
        .values("broadcast_id")
        .annotate(**{name: Sum(name) for name in (*_RATE_SUMS, *_FIGURE_SUMS)})
        .order_by()
    }
    figures = {}
    for broadcast in broadcasts:
        counted = sums.get(broadcast.id, {})
        figures[broadcast.id] = BroadcastFigures(
            recipients=broadcast.recipient_count,
            sent=broadcast.sent_count,
            delivered=counted.get("delivered") or 0,
            rates=_rates(broadcast, counted),
            **{name: counted.get(name) or 0 for name in _FIGURE_SUMS},
        )
    return figures


def broadcast_figures(*, broadcast: Broadcast) -> BroadcastFigures:
    """The report's figures: one aggregate over the broadcast's hourly rollups."""
    return broadcasts_figures(broadcasts=[broadcast])[broadcast.id]


def broadcast_activity_chart(*, broadcast: Broadcast) -> charts.Chart:
    """Opens and clicks over time, raw and by people: by the hour from the hour the send
    started to the last hour with a count, or by the day (in the account's time zone) when that
    spans more than a week. One query."""
    rows = list(
        Rollup.objects.filter(broadcast_id=broadcast.id, link_id=0)
        .order_by("hour")
        .values_list("hour", "opens", "human_opens", "clicks", "human_clicks")
    )
    buckets: dict[dt.datetime | dt.date, list[int]] = {}
    hourly = True
    if rows:
        first, last = rows[0][0], rows[-1][0]
        if broadcast.send_started_at:
            first = min(first, broadcast.send_started_at.replace(minute=0, second=0, microsecond=0))
        hourly = last - first <= dt.timedelta(hours=HOURLY_CHART_HOURS)
        # Hours are stepped in UTC (a local day may have 23 or 25), days in the local calendar.
        moment, end, step = (
            (first, last, dt.timedelta(hours=1))
            if hourly
            else (_local_day(first), _local_day(last), dt.timedelta(days=1))
        )
        bucket_of = _local_hour if hourly else _local_day
        while moment <= end:
            buckets[_local_hour(moment) if hourly else moment] = [0, 0, 0, 0]
            moment += step
        for hour, *counts in rows:
            bucket = buckets[bucket_of(hour)]
            for index, count in enumerate(counts):
                bucket[index] += count
    unit = "hour" if hourly else "day"
    values = list(zip(*buckets.values(), strict=True)) or [(), (), (), ()]
    return charts.line_chart(
        chart_id="activity-chart",
        title=f"Opens and clicks by {unit}",
        description=(
            f"Opens and clicks of this broadcast by {unit}, in your time zone: all of them "
            "(dashed, with machine traffic) and those by people (solid)."
        ),
        labels=[f"{key:%-d %b %Y, %H:%M}" if hourly else f"{key:%-d %b %Y}" for key in buckets],
        axis_labels=[f"{key:%-d %b %H:%M}" if hourly else f"{key:%-d %b}" for key in buckets],
        label_heading=unit.capitalize(),
        series=[
            charts.Series("All opens", values[0], "blue", "area"),
            charts.Series("Opens by people", values[1], "blue"),
            charts.Series("All clicks", values[2], "green", "area"),
            charts.Series("Clicks by people", values[3], "green"),
        ],
    )


def _local_hour(moment: dt.datetime) -> dt.datetime:
    return timezone.localtime(moment)


def _local_day(moment: dt.datetime) -> dt.date:
    return timezone.localtime(moment).date()


@dataclass(frozen=True)
class LinkRow:
    id: int
    url: str
    clicks: int
    unique_clicks: int
    human_unique_clicks: int


def broadcast_links(*, broadcast: Broadcast) -> list[LinkRow]:
    """The broadcast's links, most clicked first (then in the message's order), with their
    clicks summed from the per-link rollups: one query."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT l.id, l.url, coalesce(sum(r.clicks), 0), coalesce(sum(r.unique_clicks), 0),
                   coalesce(sum(r.human_unique_clicks), 0)
            FROM {Link._meta.db_table} AS l
            LEFT JOIN {Rollup._meta.db_table} AS r
              ON r.broadcast_id = l.broadcast_id AND r.link_id = l.id
            WHERE l.broadcast_id = %s
            GROUP BY l.id
            ORDER BY 3 DESC, l.position, l.id
            """,
            [broadcast.id],
        )
        return [LinkRow(*row) for row in cursor.fetchall()]


def broadcast_people(
    *,
    broadcast: Broadcast,
    kind: EventKind,
    link_id: int = 0,
    after: int | None,
    before: int | None,
) -> KeysetPage:
    """Who opened, clicked (any link, or the link `link_id`), bounced ... the broadcast, the
    latest first, keyset-paged on the index activity_list; each item is a DeliveryActivity with
    the subscriber's email and first name (None for a deleted subscriber). One query."""
    subscriber = Subscriber.objects.filter(pk=OuterRef("subscriber_id"))
    return keyset_page(
        DeliveryActivity.objects.filter(broadcast_id=broadcast.id, kind=kind, link_id=link_id)
        .only("id", "subscriber_id", "first_at", "first_human_at")
        .annotate(
            email=Subquery(subscriber.values("email")[:1]),
            first_name=Subquery(subscriber.values("first_name")[:1]),
        ),
        after=after,
        before=before,
    )


# --- A subscriber's activity timeline ---------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: str
    label: str
    broadcast_id: int | None
    # Broadcast.name; None when the broadcast was deleted since.
    broadcast_name: str | None
    # The sequence, when the email was one of a sequence's (its message is a Broadcast row too).
    sequence_id: int | None
    sequence_name: str | None
    # The report of the broadcast or sequence email.
    report_url: str
    url: str
    # Why the open or click is taken for a machine's; empty for a person's.
    machine: str
    cursor: str


@dataclass(frozen=True)
class Timeline:
    entries: list[TimelineEntry]
    # The cursor of the next (older) entries; None when there are none.
    older: str | None


# The kinds on the timeline, with their CSS class and label.
_EVENT_LABELS = {
    EventKind.OPEN: ("opened", "Opened"),
    EventKind.CLICK: ("clicked", "Clicked a link in"),
    EventKind.BOUNCE: ("bounced", "Bounced:"),
    EventKind.SOFT_BOUNCE: ("soft_bounced", "Soft bounce:"),
    EventKind.COMPLAINT: ("complained", "Marked as spam:"),
    EventKind.UNSUBSCRIBE: ("unsubscribed", "Unsubscribed from"),
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Entries are ordered newest first by (time, source, id); at the same microsecond an event
# comes before the delivery it followed.
_DELIVERY, _EVENT = 0, 1
# A timeline entry no person made (DeliveryActivity keeps whether, not which machine).
_MACHINE = -1


def _cursor(moment: dt.datetime, source: int, row_id: int) -> str:
    return f"{(moment - _EPOCH) // dt.timedelta(microseconds=1)}.{source}.{row_id}"


def timeline_cursor(value: str) -> tuple[dt.datetime, int, int] | None:
    """The (time, source, id) in a ?before= cursor, or None for a missing or malformed one."""
    parts = value.split(".")
    if len(parts) != 3 or not all(part.isdigit() and len(part) < 19 for part in parts):
        return None
    micros, source, row_id = (int(part) for part in parts)
    if source not in (_DELIVERY, _EVENT):
        return None
    try:
        return _EPOCH + dt.timedelta(microseconds=micros), source, row_id
    except OverflowError:
        return None


def _older(field: str, source: int, before: tuple[dt.datetime, int, int] | None) -> Q:
    """Rows of `source` whose (time, source, id) comes after `before`, newest first."""
    if before is None:
        return Q()
    moment, before_source, before_id = before
    if source < before_source:
        return Q(**{f"{field}__lte": moment})
    if source > before_source:
        return Q(**{f"{field}__lt": moment})
    return Q(**{f"{field}__lt": moment}) | Q(**{field: moment, "id__lt": before_id})


def subscriber_timeline(
    *,
    subscriber: Subscriber,
    before: tuple[dt.datetime, int, int] | None = None,
    size: int = TIMELINE_SIZE,
) -> Timeline:
    """What happened to the subscriber's mail, newest first: broadcasts and sequence emails sent
    to them, and the first time they opened each, clicked each of its links, unsubscribed,
    bounced or complained
    (DeliveryActivity: the raw Event table has no index to find one subscriber's rows). An
    entry is a person's when a person did it at all (at that time), else a machine's. One
    query: the latest activity and the latest sent deliveries, each limited to a page, merged
    by PostgreSQL (UNION ALL)."""
    columns = (
        "at",
        "source",
        "id",
        "kind",
        "machine",
        "broadcast_id",
        "description",
        "subject",
        "sequence_id",
        "sequence_name",
        "email_id",
        "url",
    )
    broadcast = Broadcast.objects.filter(pk=OuterRef("broadcast_id"))
    sequence_email = SequenceEmail.objects.filter(message_id=OuterRef("broadcast_id"))
    events = (
        DeliveryActivity.objects.filter(
            subscriber_id=subscriber.id,
            account_id=subscriber.account_id,
            kind__in=list(_EVENT_LABELS),
        )
        # Its per-link rows say which link was clicked; the link 0 row would repeat them.
        .exclude(kind=EventKind.CLICK, link_id=0)
        .annotate(at=Coalesce("first_human_at", "first_at"))
        .filter(_older("at", _EVENT, before))
        .annotate(
            source=Value(_EVENT),
            machine=Case(
                When(first_human_at__isnull=True, then=Value(_MACHINE)),
                default=Value(Machine.HUMAN),
            ),
            description=Subquery(broadcast.values("description")[:1]),
            subject=Subquery(broadcast.values("subject")[:1]),
            sequence_id=Subquery(sequence_email.values("sequence_id")[:1]),
            sequence_name=Subquery(sequence_email.values("sequence__name")[:1]),
            email_id=Subquery(sequence_email.values("id")[:1]),
            url=Subquery(Link.objects.filter(pk=OuterRef("link_id")).values("url")[:1]),
        )
        .values_list(*columns)
        .order_by("-at", "-id")[: size + 1]
    )
    deliveries = (
        Delivery.objects.filter(subscriber_id=subscriber.id, state=Delivery.State.SENT)
        .filter(_older("sent_at", _DELIVERY, before))
        .annotate(
            at=F("sent_at"),
            source=Value(_DELIVERY),
            kind=Value(0),
            machine=Value(Machine.HUMAN),
            description=F("broadcast__description"),
            subject=F("broadcast__subject"),
            sequence_id=F("broadcast__sequence_email__sequence_id"),
            sequence_name=F("broadcast__sequence_email__sequence__name"),
            email_id=F("broadcast__sequence_email__id"),
            url=Value("", output_field=CharField()),
        )
        .values_list(*columns)
        .order_by("-sent_at", "-id")[: size + 1]
    )
    rows = list(events.union(deliveries, all=True).order_by("-at", "-source", "-id")[: size + 1])
    # Read only if a broadcast's name needs its subject rendered.
    account = SimpleLazyObject(lambda: subscriber.account)
    entries = [
        TimelineEntry(
            at=at,
            kind=_EVENT_LABELS[kind][0] if source == _EVENT else "received",
            label=_EVENT_LABELS[kind][1] if source == _EVENT else "Sent",
            broadcast_id=broadcast_id,
            broadcast_name=None
            if subject is None
            else Broadcast.name_of(description=description, subject=subject, account=account),
            sequence_id=sequence_id,
            sequence_name=sequence_name,
            report_url=reverse("sequence_email_report", args=[sequence_id, email_id])
            if email_id
            else reverse("broadcast_report", args=[broadcast_id]),
            url=url or "",
            machine="" if machine == Machine.HUMAN else "a privacy proxy or link scanner",
            cursor=_cursor(at, source, row_id),
        )
        for (
            at,
            source,
            row_id,
            kind,
            machine,
            broadcast_id,
            description,
            subject,
            sequence_id,
            sequence_name,
            email_id,
            url,
        ) in rows[:size]
    ]
    return Timeline(entries=entries, older=entries[-1].cursor if len(rows) > size else None)


# --- The dashboard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Growth:
    chart: charts.Chart
    days: int
    subscribed: int
    unsubscribed: int
    bounced: int


def list_growth(*, account, days: int) -> Growth:
    """Subscribers gained and lost per day over the last `days` days (today included), in the
    account's time zone, from the hourly ListGrowth rows (at most 24 a day): one query."""
    today = timezone.localdate()
    first = today - dt.timedelta(days=days - 1)
    start = timezone.make_aware(dt.datetime.combine(first, dt.time()))
    per_day = {first + dt.timedelta(days=n): [0, 0, 0] for n in range(days)}
    for hour, subscribed, unsubscribed, lost in (
        ListGrowth.objects.filter(account=account, hour__gte=start)
        .annotate(lost=F("bounced") + F("complained"))
        .values_list("hour", "subscribed", "unsubscribed", "lost")
    ):
        day = per_day.get(timezone.localtime(hour).date())
        if day is not None:
            day[0] += subscribed
            day[1] += unsubscribed
            day[2] += lost
    gained, unsubscribed, bounced = (list(values) for values in zip(*per_day.values(), strict=True))
    return Growth(
        chart=charts.line_chart(
            chart_id="growth-chart",
            title=f"List growth, last {days} days",
            description=(
                f"New subscribers, unsubscribes, and bounces or complaints per day over the last "
                f"{days} days: {sum(gained):,} new, {sum(unsubscribed):,} unsubscribed, "
                f"{sum(bounced):,} bounced or complained."
            ),
            labels=[f"{day:%-d %b %Y}" for day in per_day],
            axis_labels=[f"{day:%-d %b}" for day in per_day],
            label_heading="Day",
            series=[
                charts.Series("New subscribers", gained, "green"),
                charts.Series("Unsubscribed", unsubscribed, "orange"),
                charts.Series("Bounced or complained", bounced, "red"),
            ],
        ),
        days=days,
        subscribed=sum(gained),
        unsubscribed=sum(unsubscribed),
        bounced=sum(bounced),
    )


def recent_rates_chart(*, account) -> charts.Chart:
    """Open and click rates (people) of the account's latest broadcasts that went out, oldest
    first: two queries."""
    broadcasts = list(
        Broadcast.objects.broadcasts()
        .filter(
            account=account,
            state__in=Broadcast.STARTED_STATES,
            sent_count__gt=0,
        )
        .only("id", "description", "subject", "sent_count")
        .order_by("-id")[:RECENT_BROADCASTS_CHARTED]
    )[::-1]
    for broadcast in broadcasts:
        broadcast.account = account
    rates = broadcast_rates(broadcasts=broadcasts)
    return charts.bar_chart(
        chart_id="rates-chart",
        title="Open and click rates of your latest broadcasts",
        description=(
            f"Open and click rates, by people (machine traffic left out), of your latest "
            f"{len(broadcasts)} broadcast{'s' if len(broadcasts) != 1 else ''}, oldest first."
        ),
        labels=[broadcast.name for broadcast in broadcasts],
        label_heading="Broadcast",
        series=[
            charts.Series(
                "Open rate", [rates[b.id].open_rate or 0 for b in broadcasts], "blue", "bar"
            ),
            charts.Series(
                "Click rate", [rates[b.id].click_rate or 0 for b in broadcasts], "green", "bar"
            ),
        ],
    )
