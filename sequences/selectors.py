"""Reads for the sequence pages and `manage.py sequence_status`: the keyset-paged list, where
subscribers stand (counts per state, the excluded, by position), when the next email is due,
and each email's sending and tracking figures.

Counts over a sequence's subscriptions read the index subscription_state_position (sequence,
state, position_key) alone, once per page (by state and position at once); each email's
figures are its message's counters and rollups, as a broadcast's are (tracking/reports.py). Every function runs a fixed number of queries,
whatever the number of subscribers or emails.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Count, Q
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone

from convertkit.paging import KeysetPage, keyset_page
from sequences.engine import exclusion_condition
from sequences.models import ALL_DAYS, WEEKDAYS, Sequence, SequenceEmail, Subscription
from subscribers.models import Subscriber
from tracking import charts
from tracking.reports import BroadcastFigures, broadcasts_figures

SubState = Subscription.State
DAY_NAMES = dict(WEEKDAYS)
WEEKDAYS_ONLY = [0, 1, 2, 3, 4]


# --- Labels -----------------------------------------------------------------------------------


def days_phrase(days: list[int] | None) -> str:
    """Send days in words, to follow "sends": "every day", "on weekdays", "on Mon, Wed, Fri",
    "on no day"."""
    days = sorted(days or [])
    if days == ALL_DAYS:
        return "every day"
    if days == WEEKDAYS_ONLY:
        return "on weekdays"
    return "on " + (", ".join(DAY_NAMES[day] for day in days) or "no day")


def delay_label(email: SequenceEmail, *, first: bool) -> str:
    """When the email goes out, as Kit says it: "Immediately", "2 days after the previous
    email" (the first: "after subscribing")."""
    if email.delay_amount == 0:
        return "Immediately"
    unit = "day" if email.delay_unit == SequenceEmail.DelayUnit.DAYS else "hour"
    after = "subscribing" if first else "the previous email"
    return f"{email.delay_amount:,} {unit}{pluralize(email.delay_amount)} after {after}"


def state_label(sequence: Sequence) -> tuple[str, str]:
    """The sequence's badge: (CSS class, label). No send day pauses it, as in Kit."""
    if sequence.state == Sequence.State.PAUSED:
        return "paused", "Paused"
    if not sequence.send_days:
        return "paused", "Paused: no send day"
    return "active", "Active"


def send_time_label(sequence: Sequence) -> str:
    zone = "each subscriber's time zone" if sequence.subscriber_time_zone else sequence.time_zone
    return f"{days_phrase(sequence.send_days)} at {sequence.send_hour:02d}:00 ({zone})"


# --- The list ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListRow:
    url: str
    name: str
    state_class: str
    state_label: str
    id: int
    emails: int
    published: int
    active: int | None


def sequence_page(
    *, account, after: int | None, before: int | None, counts: bool = False
) -> KeysetPage:
    """One page of the account's sequences, newest first, by keyset on the id (the index
    sequence_account_id), with their email counts, and their active subscribers when `counts`
    (active_counts; else None: the list page loads them after it has shown)."""
    page = keyset_page(Sequence.objects.filter(account=account), after=after, before=before)
    ids = [sequence.id for sequence in page.items]
    emails = {
        row["sequence_id"]: row
        for row in SequenceEmail.objects.filter(sequence_id__in=ids, deleted_at__isnull=True)
        .values("sequence_id")
        .annotate(total=Count("id"), published=Count("id", filter=Q(published=True)))
        .order_by()
    }
    active = active_counts(account=account, sequence_ids=ids) if counts else {}
    prefix = reverse("sequence_list")
    rows = []
    for sequence in page.items:
        state_class, label = state_label(sequence)
        email_counts = emails.get(sequence.id, {})
        rows.append(
            ListRow(
                id=sequence.id,
                url=f"{prefix}{sequence.id}/",
                name=sequence.name,
                state_class=state_class,
                state_label=label,
                emails=email_counts.get("total", 0),
                published=email_counts.get("published", 0),
                active=active.get(sequence.id, 0) if counts else None,
            )
        )
    return page.with_items(rows)


def active_counts(*, account, sequence_ids: list[int]) -> dict[int, int]:
    """The active subscribers of each of the account's sequences named (others' ids count
    nothing), by id: one GROUP BY over the index subscription_state_position, whose cost grows
    with the subscriptions counted."""
    own = Sequence.objects.filter(account=account, pk__in=sequence_ids).values("pk")
    counted = dict(
        Subscription.objects.filter(sequence_id__in=own, state=SubState.ACTIVE)
        .values("sequence_id")
        .annotate(n=Count("*"))
        .order_by()
        .values_list("sequence_id", "n")
    )
    return {pk: counted.get(pk, 0) for pk in own.values_list("pk", flat=True)}


# --- Where subscribers stand ------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriberCounts:
    active: int
    unconfirmed: int
    completed: int
    # Unsubscribed, bounced or complained since they entered: nothing more goes to them.
    stopped: int
    removed: int
    # Active ones the exclusions hold back now; None when not counted.
    excluded: int | None
    # Active ones by position_key (the sort key of the last email they passed; None: none yet).
    active_by_position: dict[float | None, int] = field(default_factory=dict)


def subscriber_counts(*, sequence: Sequence, excluded: bool = True) -> SubscriberCounts:
    """How many subscriptions are in each state, and the active ones by position (one GROUP BY
    read from the index alone), and how many active ones the exclusions hold back now (one
    count, when asked and there are any)."""
    by_state: dict[int, int] = defaultdict(int)
    active_by_position: dict[float | None, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT state, position_key, count(*) FROM {Subscription._meta.db_table}
            WHERE sequence_id = %s GROUP BY state, position_key
            """,
            [sequence.pk],
        )
        for state, position_key, count in cursor.fetchall():
            by_state[state] += count
            if state == SubState.ACTIVE:
                active_by_position[position_key] = count
    return SubscriberCounts(
        active=by_state[SubState.ACTIVE],
        unconfirmed=by_state[SubState.UNCONFIRMED],
        completed=by_state[SubState.COMPLETED],
        stopped=by_state[SubState.STOPPED],
        removed=by_state[SubState.REMOVED],
        excluded=excluded_count(sequence=sequence) if excluded else None,
        active_by_position=active_by_position,
    )


def excluded_count(*, sequence: Sequence) -> int:
    """The active subscribers the sequence's exclusions hold back now: the scheduler's own
    condition (engine.exclusion_condition), each of its sets read once and counted over all of
    them (the subscribers' rows are read only for segments). 0 without exclusions, without a
    query."""
    if not sequence.has_exclusions:
        return 0
    condition, params = exclusion_condition(
        sequence=sequence, subscriber_id="sub.subscriber_id", correlated=False
    )
    join = (
        f"JOIN {Subscriber._meta.db_table} s ON s.id = sub.subscriber_id"
        if sequence.exclude_segment_ids
        else ""
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT count(*) FROM {Subscription._meta.db_table} sub {join}
            WHERE sub.sequence_id = %(x_sequence)s AND sub.state = %(x_active)s AND {condition}
            """,
            {**params, "x_sequence": sequence.pk, "x_active": int(SubState.ACTIVE)},
        )
        return cursor.fetchone()[0]


@dataclass(frozen=True)
class Due:
    # The earliest time a subscriber is looked at again (None: nobody waits).
    next_at: datetime | None
    # How many are due now: the scheduler's backlog.
    now: int


def due(*, sequence: Sequence, now: datetime | None = None) -> Due:
    """When the scheduler next has work in this sequence, and how much is due now: two probes
    of the index subscription_due."""
    now = now or timezone.now()
    waiting = Subscription.objects.filter(sequence=sequence, next_due_at__isnull=False)
    first = waiting.order_by("next_due_at").values_list("next_due_at", flat=True).first()
    return Due(next_at=first, now=waiting.filter(next_due_at__lte=now).count())


# --- The emails -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailRow:
    email: SequenceEmail
    position: int
    name: str
    delay: str
    # The email's own send days, in words ("on Mon, Wed"); "" when it uses the sequence's.
    own_days: str
    queued: int
    figures: BroadcastFigures | None = None

    @property
    def message(self):
        return self.email.message

    @property
    def has_report(self) -> bool:
        """Whether it ever went out (a draft that never did has nothing to report)."""
        return bool(self.email.message.frozen_html)


def email_rows(*, sequence: Sequence, figures: bool = True) -> list[EmailRow]:
    """The sequence's emails in order (deleted ones left out), with their messages' counters
    and, when asked, their tracking figures: two queries."""
    emails = list(
        SequenceEmail.objects.filter(sequence=sequence, deleted_at__isnull=True)
        .select_related("message")
        .order_by("sort_key")
    )
    for email in emails:
        email.sequence = sequence
        email.message.account = sequence.account
    counted = broadcasts_figures(broadcasts=[e.message for e in emails]) if figures else {}
    return [
        EmailRow(
            email=email,
            position=index,
            name=email.message.name,
            delay=delay_label(email, first=index == 1),
            own_days=days_phrase(email.send_days) if email.send_days else "",
            queued=email.message.remaining_count,
            figures=counted.get(email.message_id),
        )
        for index, email in enumerate(emails, start=1)
    ]


# --- Subscribers by position ------------------------------------------------------------------


def position_chart(*, rows: list[EmailRow], counts: SubscriberCounts) -> charts.Chart:
    """How many active subscribers stand after each email (they passed it, sent or skipped,
    and wait for the next), and how many completed, from subscriber_counts. A subscriber stands
    after the last email in today's order whose place they passed, so an email moved or
    deleted since leaves nobody out."""
    keys = [row.email.sort_key for row in rows]
    standing = [0] * (len(rows) + 1)
    for position_key, count in counts.active_by_position.items():
        passed = 0 if position_key is None else bisect.bisect_right(keys, position_key)
        standing[passed] += count
    completed = counts.completed
    labels = ["None yet"] + [f"#{row.position} {row.name}" for row in rows] + ["Completed"]
    return charts.bar_chart(
        chart_id="position-chart",
        title="Subscribers by position",
        description=(
            f"How many active subscribers stand after each of the {len(rows)} emails (they "
            "passed it and wait for the next), those who have passed none yet, and those who "
            f"completed the sequence: {sum(standing):,} active, {completed:,} completed."
        ),
        labels=labels,
        label_heading="Last email passed",
        series=[charts.Series("Subscribers", [*standing, completed], "blue", "bar")],
        value_format=charts.count_format,
    )


# --- Everything at once -----------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceStatus:
    """What the sequence page's report and `manage.py sequence_status` show."""

    sequence: Sequence
    counts: SubscriberCounts
    due: Due
    emails: list[EmailRow] = field(default_factory=list)


def sequence_status(
    *, sequence: Sequence, emails: list[EmailRow] | None = None, now: datetime | None = None
) -> SequenceStatus:
    """Everything at once: the counts (the excluded too), the next due, the emails (`emails`,
    when the caller has read them already). Its counts read every subscription of the
    sequence: the page loads them after it has shown (sequence_subscribers)."""
    return SequenceStatus(
        sequence=sequence,
        counts=subscriber_counts(sequence=sequence),
        due=due(sequence=sequence, now=now),
        emails=emails if emails is not None else email_rows(sequence=sequence, figures=False),
    )
