"""When a sequence email is due: pure functions of the anchor (when the subscriber entered or
passed the previous email), the email's delay and the send days, hour and time zone.

- A delay in days sends at the send hour, in the zone, on the first allowed day at least that
  many calendar days after the anchor's date; a delay of 0 days sends at once when today is an
  allowed day, else at the send hour of the next allowed day.
- A delay in hours sends exactly that long after the anchor (no rounding to a window), moved to
  the send hour of the next allowed day only when it falls on a day that is not allowed.

Local times are built in the zone, so the send hour stays the send hour across a DST change (a
send hour in the spring gap, which does not exist that day, comes an hour later); hour delays
count real hours, whatever zone the anchor is expressed in. Due times are returned in UTC: an
aware datetime in a zone's gap or fold never compares equal to another zone's (PEP 495), and
adding hours to one counts wall-clock hours.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache

DAYS = "days"
HOURS = "hours"


@dataclass(frozen=True)
class Timing:
    """What decides an email's due time, for one subscriber."""

    delay_amount: int
    delay_unit: str
    send_days: frozenset[int]  # 0 = Monday; never empty (an empty set holds everyone)
    send_hour: int
    zone: zoneinfo.ZoneInfo


@lru_cache(maxsize=1024)
def zone_named(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone of an IANA name, or None for "" or a name that is not one."""
    if not name or len(name) > 64:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def _at_send_hour(day, timing: Timing) -> datetime:
    return datetime.combine(day, time(timing.send_hour), tzinfo=timing.zone).astimezone(UTC)


def _next_allowed_day(day, timing: Timing):
    for _ in range(7):
        if day.weekday() in timing.send_days:
            return day
        day += timedelta(days=1)
    raise ValueError("no send day")  # send_days is never empty


def due_at(*, anchor: datetime, timing: Timing) -> datetime:
    """When the email is due for a subscriber anchored at `anchor` (an aware datetime)."""
    local = anchor.astimezone(timing.zone)
    if timing.delay_unit == HOURS:
        due = anchor.astimezone(UTC) + timedelta(hours=timing.delay_amount)
        due_day = due.astimezone(timing.zone).date()
        allowed = _next_allowed_day(due_day, timing)
        return due if allowed == due_day else _at_send_hour(allowed, timing)
    if timing.delay_amount == 0 and local.weekday() in timing.send_days:
        return anchor.astimezone(UTC)
    # (A delay of 0 on a day that is not allowed: the first allowed day after today.)
    day = _next_allowed_day(local.date() + timedelta(days=max(1, timing.delay_amount)), timing)
    return _at_send_hour(day, timing)
