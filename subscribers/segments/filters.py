"""Segment membership as an SQL condition, for queries that combine it with their own (a
sequence's exclusions, a broadcast's audience).

The conditions themselves come from broadcasts.audience.filter_conditions, the one builder of
the broadcast audience and of segment members, so that "in the segment" means the same thing
everywhere.
"""

from __future__ import annotations

import re

from broadcasts.audience import filter_conditions
from subscribers.models import Segment

# What may stand in SQL as a table alias or begin a parameter name.
_IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,30}$")


def segments_condition(
    *, account_id: int, segment_ids: list[int], alias: str = "s", prefix: str = "seg"
) -> tuple[str, dict]:
    """An SQL boolean expression over the subscribers_subscriber row aliased `alias`, TRUE when
    the subscriber belongs to the account and matches ANY of the given segments, and its
    parameters (every name starting with `prefix`), for a %(name)s query.

    The subscriber's state is not looked at: add your own condition for it. Ids of segments
    deleted or of another account match nobody; an empty list (or only such ids) gives "FALSE".
    The expression is never NULL, so NOT (...) is exactly the subscribers outside the segments.
    Reads the segments once (one query), when called.
    """
    if not _IDENTIFIER_RE.match(alias) or not _IDENTIFIER_RE.match(prefix):
        raise ValueError(f"alias and prefix must be SQL identifiers: {alias!r}, {prefix!r}")
    wanted = sorted({int(segment_id) for segment_id in segment_ids})
    segments = (
        list(Segment.objects.filter(account_id=account_id, pk__in=wanted).order_by("pk"))
        if wanted
        else []
    )
    if not segments:
        return "FALSE", {}
    params: dict = {}
    alternatives = []
    for n, segment in enumerate(segments):
        conditions = filter_conditions(segment, params=params, prefix=f"{prefix}_{n}_", alias=alias)
        alternatives.append("(" + " AND ".join(conditions or ["TRUE"]) + ")")
    params[f"{prefix}_account_id"] = account_id
    return (
        f"({alias}.account_id = %({prefix}_account_id)s AND ({' OR '.join(alternatives)}))",
        params,
    )
