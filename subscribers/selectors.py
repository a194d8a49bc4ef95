"""Reads over subscribers that must stay fast with millions of rows per account."""

from __future__ import annotations

from subscribers.models import Subscriber, SubscriberCount


def subscriber_counts(*, account) -> dict[str, int]:
    """Exact totals per state plus "total", from the trigger-maintained counters (no COUNT(*))."""
    counts = {state: 0 for state in Subscriber.State.values}
    for state, count in SubscriberCount.objects.filter(account=account).values_list(
        "state", "count"
    ):
        counts[state] = count
    counts["total"] = sum(counts[state] for state in Subscriber.State.values)
    return counts
