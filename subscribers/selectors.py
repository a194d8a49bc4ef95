"""Reads over subscribers that must stay fast with millions of rows per account."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet
from django.db.models.functions import Lower

from subscribers.models import StateChange, Subscriber, SubscriberCount, Tag, Tagging

PAGE_SIZE = 50
# Searches and combined filters are counted up to this many rows, then shown as "10,000+".
COUNT_CAP = 10_000


def subscriber_counts(*, account) -> dict[str, int]:
    """Exact totals per state plus "total", from the trigger-maintained counters (no COUNT(*))."""
    counts = {state: 0 for state in Subscriber.State.values}
    for state, count in SubscriberCount.objects.filter(account=account).values_list(
        "state", "count"
    ):
        counts[state] = count
    counts["total"] = sum(counts[state] for state in Subscriber.State.values)
    return counts


@dataclass(frozen=True)
class SubscriberFilter:
    """What the list shows and what a bulk action acts on; `tag_id` is a tag of the same account."""

    state: str = ""
    tag_id: int | None = None
    q: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.state or self.tag_id or self.q)

    def as_params(self) -> dict:
        return {"state": self.state, "tag": self.tag_id, "q": self.q}

    @classmethod
    def from_params(cls, params: dict) -> SubscriberFilter:
        return cls(
            state=params.get("state") or "", tag_id=params.get("tag"), q=params.get("q") or ""
        )


@dataclass(frozen=True)
class Total:
    """A number of subscribers; `capped` means "at least `count`" (shown as "10,000+")."""

    count: int
    capped: bool = False


def subscriber_queryset(*, account, filters: SubscriberFilter) -> QuerySet[Subscriber]:
    """The account's subscribers matching `filters`, written so that an index serves each part.

    - tag: a join on tagging_unique (tag_id, subscriber_id), ordered like the subscriber id, so
      "newest first" walks that index backwards and stops after one page.
    - q: a prefix of the email (the unique (account, email) index is in C collation, so it serves
      LIKE 'q%') or of the lower-cased first name (subscriber_first_name, text_pattern_ops).
      A q with an @ in it can only be an email.
    """
    queryset = Subscriber.objects.filter(account=account)
    if filters.state:
        queryset = queryset.filter(state=filters.state)
    if filters.tag_id:
        queryset = queryset.filter(taggings__tag_id=filters.tag_id)
    q = filters.q.strip().lower()
    if q:
        if "@" in q:
            queryset = queryset.filter(email__startswith=q)
        else:
            queryset = queryset.alias(first_name_lower=Lower("first_name")).filter(
                Q(email__startswith=q) | Q(first_name_lower__startswith=q)
            )
    return queryset


@dataclass
class SubscriberPage:
    subscribers: list[Subscriber]
    # Cursors of the "Newer" and "Older" links; None when there is no such page.
    newer_before: int | None
    older_after: int | None
    is_first: bool
    tags_by_subscriber: dict[int, list[Tag]] = field(default_factory=dict)


def subscriber_page(
    *,
    account,
    filters: SubscriberFilter,
    after: int | None = None,
    before: int | None = None,
    page_size: int = PAGE_SIZE,
) -> SubscriberPage:
    """One page of the list, newest first, by keyset (never OFFSET), with each row's tags.

    `after` asks for the rows older than that id, `before` for the rows newer than it. One row
    more than a page is read to know whether another page follows; the tags of the whole page
    come in one query.
    """
    if before is not None:
        rows = _page_rows(account, filters, newer_than=before, limit=page_size + 1)
        newer_exists = len(rows) > page_size
        rows = rows[:page_size][::-1]
        newer_before = rows[0].id if newer_exists else None
        older_after = rows[-1].id if rows else before
    else:
        rows = _page_rows(account, filters, older_than=after, limit=page_size + 1)
        older_exists = len(rows) > page_size
        rows = rows[:page_size]
        older_after = rows[-1].id if older_exists else None
        # Reached by "Older": the rows we came from are newer.
        newer_before = (rows[0].id if rows else after) if after is not None else None
    return SubscriberPage(
        subscribers=rows,
        newer_before=newer_before,
        older_after=older_after,
        is_first=newer_before is None,
        tags_by_subscriber=tags_by_subscriber(subscriber_ids=[row.id for row in rows]),
    )


def _page_rows(
    account,
    filters: SubscriberFilter,
    *,
    limit: int,
    older_than: int | None = None,
    newer_than: int | None = None,
) -> list[Subscriber]:
    """Rows older than one id (newest first) or newer than one id (oldest first).

    A tag alone is paged in tagging_unique first, in a LIMITed subquery the planner cannot
    flatten: joined, the planner assumes tagged subscribers are spread evenly over the account
    and may walk millions of newer rows to reach a tag that only old subscribers carry.
    """
    order = "id" if newer_than is not None else "-id"
    bound = {"gt": newer_than} if newer_than is not None else {"lt": older_than}
    bound = {key: value for key, value in bound.items() if value is not None}
    if filters.tag_id and not filters.state and not filters.q:
        tagged = (
            Tagging.objects.filter(
                tag_id=filters.tag_id,
                **{f"subscriber_id__{key}": value for key, value in bound.items()},
            )
            .order_by(order.replace("id", "subscriber_id"))
            .values("subscriber_id")[:limit]
        )
        queryset = Subscriber.objects.filter(account=account, id__in=tagged)
    else:
        queryset = subscriber_queryset(account=account, filters=filters).filter(
            **{f"id__{key}": value for key, value in bound.items()}
        )
    return list(queryset.order_by(order)[:limit])


def tags_by_subscriber(*, subscriber_ids: list[int]) -> dict[int, list[Tag]]:
    """The tags of these subscribers, by subscriber id, in one query."""
    result: dict[int, list[Tag]] = defaultdict(list)
    if not subscriber_ids:
        return result
    for tagging in (
        Tagging.objects.filter(subscriber_id__in=subscriber_ids)
        .select_related("tag")
        .only("subscriber_id", "tag__id", "tag__name")
        .order_by("tag__name", "tag_id")
    ):
        result[tagging.subscriber_id].append(tagging.tag)
    return result


def subscriber_total(
    *,
    account,
    filters: SubscriberFilter,
    counts: dict[str, int],
    tag: Tag | None = None,
    page: SubscriberPage | None = None,
) -> Total:
    """How many subscribers match, without ever counting millions of rows.

    1. No filter, a state, or a tag alone: the trigger-maintained counters say it exactly.
    2. A first page with no older page: the page is the whole set.
    3. Otherwise count at most COUNT_CAP + 1 rows through a LIMITed subquery.
    """
    if not filters.q and not (filters.state and filters.tag_id):
        if filters.tag_id:
            return Total(tag.subscriber_count if tag else 0)
        if filters.state:
            return Total(counts.get(filters.state, 0))
        return Total(counts["total"])
    if page is not None and page.is_first and page.older_after is None:
        return Total(len(page.subscribers))
    queryset = subscriber_queryset(account=account, filters=filters).order_by()
    count = queryset[: COUNT_CAP + 1].count()
    if count > COUNT_CAP:
        return Total(COUNT_CAP, capped=True)
    return Total(count)


def subscriber_history(*, subscriber: Subscriber) -> list[StateChange]:
    """State changes, newest first."""
    return list(subscriber.state_changes.order_by("-id"))
