"""When each sequence email is due: the pure rules of sequences/schedule.py with a controllable
clock (anchors and `now` are passed in; nothing sleeps), then the zone each subscriber's emails
follow as the scheduler picks it (the sequence's, or the subscriber's own where it is known)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sequences.engine import sequences_advance
from sequences.models import Subscription
from sequences.schedule import DAYS, HOURS, Timing, due_at
from sequences.services import subscriber_enrol
from tests.factories import SubscriberFactory

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
ALL_DAYS = frozenset(range(7))
WEEKDAYS = frozenset(range(5))  # Monday to Friday

# 2026: Monday 2 March; US clocks spring forward on Sunday 8 March (02:00 -> 03:00) and fall
# back on Sunday 1 November (02:00 -> 01:00); UK clocks go forward on Sunday 29 March;
# Sydney's go back on Sunday 5 April (03:00 -> 02:00).
MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def timing(amount: int, unit: str = DAYS, *, days=ALL_DAYS, hour: int = 9, zone=UTC) -> Timing:
    return Timing(
        delay_amount=amount,
        delay_unit=unit,
        send_days=frozenset(days),
        send_hour=hour,
        zone=ZoneInfo("UTC") if zone is UTC else zone,
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Day delays ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "amount", "due"),
    [
        (MONDAY, 1, utc(2026, 3, 3, 9)),  # after the send hour: the next day's
        (MONDAY, 2, utc(2026, 3, 4, 9)),
        (utc(2026, 3, 2, 8), 1, utc(2026, 3, 3, 9)),  # before it: still a calendar day later
        (utc(2026, 3, 2, 23, 59), 1, utc(2026, 3, 3, 9)),
        (MONDAY, 7, utc(2026, 3, 9, 9)),
        (MONDAY, 365, utc(2027, 3, 2, 9)),
    ],
)
def test_a_day_delay_sends_at_the_send_hour_that_many_calendar_days_later(anchor, amount, due):
    assert due_at(anchor=anchor, timing=timing(amount)) == due


def test_a_day_delay_landing_on_a_day_not_allowed_waits_for_the_next_allowed_day():
    friday = utc(2026, 3, 6, 10)
    assert due_at(anchor=friday, timing=timing(1, days=WEEKDAYS)) == utc(2026, 3, 9, 9)
    assert due_at(anchor=friday, timing=timing(2, days=WEEKDAYS)) == utc(2026, 3, 9, 9)
    assert due_at(anchor=friday, timing=timing(1, days={2})) == utc(2026, 3, 11, 9)  # Wednesday


def test_a_zero_day_delay_is_immediate_on_an_allowed_day_at_any_hour():
    for anchor in (MONDAY, utc(2026, 3, 2, 3, 17, 5), utc(2026, 3, 2, 23, 30)):
        assert due_at(anchor=anchor, timing=timing(0, days=WEEKDAYS)) == anchor


def test_a_zero_day_delay_on_a_day_not_allowed_waits_for_the_next_allowed_days_send_hour():
    saturday_early, saturday_late = utc(2026, 3, 7, 7), utc(2026, 3, 7, 22)
    assert due_at(anchor=saturday_early, timing=timing(0, days=WEEKDAYS)) == utc(2026, 3, 9, 9)
    assert due_at(anchor=saturday_late, timing=timing(0, days=WEEKDAYS)) == utc(2026, 3, 9, 9)
    # Tuesday only, from a Wednesday: six days on.
    assert due_at(anchor=utc(2026, 3, 4, 12), timing=timing(0, days={1})) == utc(2026, 3, 10, 9)


# Hour delays -----------------------------------------------------------------------------------


def test_an_hour_delay_is_exact_to_the_second_not_rounded_to_a_window():
    anchor = utc(2026, 3, 2, 10, 17, 23, 500000)
    assert due_at(anchor=anchor, timing=timing(5, HOURS)) == anchor + timedelta(hours=5)
    # Landing before the send hour on an allowed day is not moved to the send hour.
    late = utc(2026, 3, 2, 22, 0)
    assert due_at(anchor=late, timing=timing(3, HOURS, days=WEEKDAYS)) == utc(2026, 3, 3, 1)
    assert due_at(anchor=MONDAY, timing=timing(0, HOURS)) == MONDAY


def test_an_hour_delay_landing_on_a_day_not_allowed_moves_to_the_next_allowed_days_send_hour():
    friday_night = utc(2026, 3, 6, 22)
    assert due_at(anchor=friday_night, timing=timing(3, HOURS, days=WEEKDAYS)) == utc(2026, 3, 9, 9)
    # The day that counts is the one in the sequence's zone: Friday 22:00 UTC + 3 h is Saturday
    # in UTC but still Friday evening in New York, an allowed day: exact.
    assert due_at(
        anchor=friday_night, timing=timing(3, HOURS, days=WEEKDAYS, zone=NEW_YORK)
    ) == utc(2026, 3, 7, 1)


# Daylight saving time in the sequence's zone -----------------------------------------------------


def new_york(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


def test_the_send_hour_stays_the_local_send_hour_across_the_spring_change():
    saturday = new_york(2026, 3, 7, 10)
    # Saturday 09:00 EST is 14:00 UTC; Sunday and Monday 09:00 EDT are 13:00 UTC.
    assert due_at(anchor=new_york(2026, 3, 6, 10), timing=timing(1, zone=NEW_YORK)) == utc(
        2026, 3, 7, 14
    )
    for amount, day in ((1, 8), (2, 9)):
        due = due_at(anchor=saturday, timing=timing(amount, zone=NEW_YORK))
        assert due == utc(2026, 3, day, 13)
        assert (due.astimezone(NEW_YORK).hour, due.astimezone(NEW_YORK).minute) == (9, 0)


def test_the_send_hour_stays_the_local_send_hour_across_the_autumn_change():
    saturday = new_york(2026, 10, 31, 10)
    due = due_at(anchor=saturday, timing=timing(1, zone=NEW_YORK))
    assert due == utc(2026, 11, 1, 14)  # 09:00 EST, 13:00 UTC the day before
    assert due.astimezone(NEW_YORK).hour == 9
    assert due_at(anchor=new_york(2026, 10, 30, 10), timing=timing(1, zone=NEW_YORK)) == utc(
        2026, 10, 31, 13
    )


def test_a_send_hour_inside_the_spring_gap_comes_an_hour_later_that_day_only():
    saturday = new_york(2026, 3, 7, 10)
    # 02:00 does not exist on 8 March in New York: 03:00 EDT (07:00 UTC), once.
    assert due_at(anchor=saturday, timing=timing(1, hour=2, zone=NEW_YORK)) == utc(2026, 3, 8, 7)
    assert due_at(anchor=saturday, timing=timing(2, hour=2, zone=NEW_YORK)) == utc(2026, 3, 9, 6)
    assert due_at(anchor=saturday, timing=timing(0, HOURS, hour=2, zone=NEW_YORK)) == saturday


def test_a_send_hour_that_happens_twice_in_autumn_is_the_first_of_the_two():
    saturday = new_york(2026, 10, 31, 10)
    # 01:00 comes twice on 1 November: the first, 01:00 EDT (05:00 UTC).
    assert due_at(anchor=saturday, timing=timing(1, hour=1, zone=NEW_YORK)) == utc(2026, 11, 1, 5)


@pytest.mark.parametrize("anchor_zone", [UTC, NEW_YORK])
def test_an_hour_delay_counts_real_hours_across_a_clock_change(anchor_zone):
    """Midnight EST before the spring change plus three hours is 04:00 EDT (three real hours),
    not 03:00 EDT (two): whatever zone the anchor is expressed in (the scheduler anchors an
    excluded subscriber at the local due time of the email they passed)."""
    midnight = new_york(2026, 3, 8, 0).astimezone(anchor_zone)
    due = due_at(anchor=midnight, timing=timing(3, HOURS, zone=NEW_YORK))
    assert due == utc(2026, 3, 8, 8)
    assert due - midnight == timedelta(hours=3)
    autumn = new_york(2026, 11, 1, 0).astimezone(anchor_zone)
    assert due_at(anchor=autumn, timing=timing(3, HOURS, zone=NEW_YORK)) == utc(2026, 11, 1, 7)


def test_the_day_of_a_day_delay_is_the_anchors_date_in_the_zone():
    # Monday 02:00 UTC is still Sunday evening in New York: a day later is Monday 09:00 EDT.
    anchor = utc(2026, 3, 9, 2)
    assert due_at(anchor=anchor, timing=timing(1, zone=NEW_YORK)) == utc(2026, 3, 9, 13)
    assert due_at(anchor=anchor, timing=timing(1)) == utc(2026, 3, 10, 9)


# The zone each subscriber's emails follow, as the scheduler picks it ----------------------------


def next_due(subscriber) -> datetime:
    return Subscription.objects.get(subscriber=subscriber).next_due_at


def enrol_with_zones(sequence, zones: dict[str, str], *, now: datetime) -> dict:
    readers = {}
    for name, zone in zones.items():
        readers[name] = SubscriberFactory(
            account=sequence.account, email=f"{name}@example.org", time_zone=zone
        )
        subscriber_enrol(sequence=sequence, subscriber=readers[name], now=now)
    sequences_advance(now=now)  # each gets the first email; the second's time is set
    return readers


@pytest.mark.django_db
def test_each_subscriber_gets_the_send_hour_in_their_own_zone(make_sequence):
    sequence = make_sequence(
        emails=[("One", 0, "days"), ("Two", 1, "days")],
        time_zone="America/New_York",
        subscriber_time_zone=True,
    )
    readers = enrol_with_zones(
        sequence,
        {
            "london": "Europe/London",
            "sydney": "Australia/Sydney",
            "unknown": "",
            "invalid": "Mars/Olympus_Mons",
            "hostile": "../../etc/passwd",
        },
        now=MONDAY,
    )
    # Monday 10:00 UTC is Monday 21:00 in Sydney (UTC+11): Tuesday 09:00 there is Monday 22:00
    # UTC. London is on UTC in early March. The rest fall back to New York (09:00 EST).
    assert next_due(readers["london"]) == utc(2026, 3, 3, 9)
    assert next_due(readers["sydney"]) == utc(2026, 3, 2, 22)
    for name in ("unknown", "invalid", "hostile"):
        assert next_due(readers[name]) == utc(2026, 3, 3, 14), name

    # On time, and not before: the scheduler at one minute before and at the time.
    two = sequence.emails.get(message__subject="Two").message
    for at, expected in [
        (utc(2026, 3, 2, 21, 59), set()),
        (utc(2026, 3, 2, 22), {"sydney"}),
        (utc(2026, 3, 3, 8, 59), {"sydney"}),
        (utc(2026, 3, 3, 9), {"sydney", "london"}),
        (utc(2026, 3, 3, 14), set(readers)),
    ]:
        sequences_advance(now=at)
        got = set(two.delivery_set.values_list("subscriber__email", flat=True))
        assert got == {f"{name}@example.org" for name in expected}, at


@pytest.mark.django_db
def test_a_zone_from_the_time_zone_custom_field_counts_when_the_column_is_empty(make_sequence):
    sequence = make_sequence(
        emails=[("One", 0, "days"), ("Two", 1, "days")], subscriber_time_zone=True
    )
    reader = SubscriberFactory(
        account=sequence.account, time_zone="", fields={"time_zone": "Australia/Sydney"}
    )
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    sequences_advance(now=MONDAY)
    assert next_due(reader) == utc(2026, 3, 2, 22)


@pytest.mark.django_db
def test_without_the_option_every_subscriber_follows_the_sequences_zone(make_sequence):
    sequence = make_sequence(
        emails=[("One", 0, "days"), ("Two", 1, "days")], time_zone="America/New_York"
    )
    readers = enrol_with_zones(
        sequence, {"london": "Europe/London", "sydney": "Australia/Sydney"}, now=MONDAY
    )
    assert {next_due(reader) for reader in readers.values()} == {utc(2026, 3, 3, 14)}


@pytest.mark.django_db
def test_the_send_hour_follows_each_subscribers_own_clock_change(make_sequence):
    """London springs forward on 29 March, Sydney falls back on 5 April: 09:00 local on the
    day after stays 09:00 local for each, in a UTC sequence."""
    sequence = make_sequence(
        emails=[("One", 0, "days"), ("Two", 1, "days")], subscriber_time_zone=True
    )
    london = SubscriberFactory(account=sequence.account, time_zone="Europe/London")
    subscriber_enrol(sequence=sequence, subscriber=london, now=utc(2026, 3, 28, 10))
    sydney = SubscriberFactory(account=sequence.account, time_zone="Australia/Sydney")
    subscriber_enrol(sequence=sequence, subscriber=sydney, now=utc(2026, 4, 3, 23))
    sequences_advance(now=utc(2026, 3, 28, 10))
    # Saturday 10:00 GMT: Sunday 09:00 BST is 08:00 UTC.
    assert next_due(london) == utc(2026, 3, 29, 8)
    assert next_due(london).astimezone(LONDON).hour == 9
    sequences_advance(now=utc(2026, 3, 29, 8))
    sequences_advance(now=utc(2026, 4, 3, 23))
    # Saturday 10:00 AEDT (UTC+11): Sunday 09:00 AEST (UTC+10) is Saturday 23:00 UTC.
    assert next_due(sydney) == utc(2026, 4, 4, 23)
    assert next_due(sydney).astimezone(SYDNEY).hour == 9


@pytest.mark.django_db
def test_an_emails_own_send_days_replace_the_sequences(make_sequence):
    from tests.sequences.conftest import email_add

    sequence = make_sequence(emails=[("One", 0, "days")])
    email_add(sequence, subject="Wednesday", delay=1, send_days=[2])
    email_add(sequence, subject="Any day", delay=1)
    reader = SubscriberFactory(account=sequence.account)
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    sequences_advance(now=MONDAY)
    assert next_due(reader) == utc(2026, 3, 4, 9)  # not Tuesday
    sequences_advance(now=utc(2026, 3, 4, 9))
    assert next_due(reader) == utc(2026, 3, 5, 9)  # the next one on the sequence's days
