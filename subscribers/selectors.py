"""Reads over subscribers that must stay fast with millions of rows per account."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Lower

from convertkit.paging import PAGE_SIZE
from subscribers.models import (
    FormWording,
    Segment,
    Signup,
    StateChange,
    Subscriber,
    SubscriberCount,
    Tag,
    Tagging,
)

# Searches and combined filters are counted up to this many rows, then shown as "10,000+".
COUNT_CAP = 10_000


def account_tags(*, account) -> list[Tag]:
    """The account's tags by name: what tag pickers and filters offer."""
    return list(Tag.objects.filter(account=account).order_by("name", "id"))


def account_segments(*, account) -> list[tuple[int, str]]:
    """(id, name) of the account's segments by name: what segment pickers offer."""
    return list(
        Segment.objects.filter(account=account).order_by("name", "id").values_list("id", "name")
    )


def subscriber_counts(*, account) -> dict[str, int]:
    """Exact totals per state plus "total", from the trigger-maintained counters (no COUNT(*))."""
    counts = {state: 0 for state in Subscriber.State.values}
    for state, count in (
        SubscriberCount.objects.filter(account=account)
        .values("state")
        .annotate(total=Sum("count"))
        .values_list("state", "total")
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
    counts: dict[str, int] | None = None,
    tag: Tag | None = None,
) -> SubscriberPage:
    """One page of the list, newest first, by keyset (never OFFSET), with each row's tags.

    `after` asks for the rows older than that id, `before` for the rows newer than it. One row
    more than a page is read to know whether another page follows; the tags of the whole page
    come in one query. `counts` and `tag` (their counters) choose how a tag and a state together
    are read; without them the planner chooses.
    """
    drive_by = _driving_filter(filters, counts=counts, tag=tag)
    if before is not None:
        rows = list(
            _keyset(account, filters, drive_by, id_range={"gt": before}, limit=page_size + 1)
        )
        newer_exists = len(rows) > page_size
        rows = rows[:page_size][::-1]
        newer_before = rows[0].id if newer_exists else None
        older_after = rows[-1].id if rows else before
    else:
        rows = list(
            _keyset(
                account,
                filters,
                drive_by,
                id_range={"lt": after} if after is not None else {},
                newest_first=True,
                limit=page_size + 1,
            )
        )
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


def _driving_filter(filters: SubscriberFilter, *, counts, tag) -> str:
    """Which index a page is read from: "tag", "state", or "planner" (left to PostgreSQL).

    Joined, a tag and the subscriber table are merged from the newest id down, the planner
    assuming tagged subscribers are spread evenly over the account. A tag carried only by old
    subscribers (an old import) then costs a walk over millions of newer rows. So a tag alone is
    read from its own index, and a tag with a state from the smaller of the two (the counters
    say which), the other checked row by row until the page is full.
    """
    if not filters.tag_id or filters.q:
        return "planner"
    if not filters.state:
        return "tag"
    if counts is None or tag is None:
        return "planner"
    return "tag" if tag.subscriber_count <= counts.get(filters.state, 0) else "state"


def subscriber_batch_ids(
    *,
    account,
    filters: SubscriberFilter,
    after_id: int,
    up_to_id: int,
    limit: int,
    counts: dict[str, int] | None = None,
    tag: Tag | None = None,
) -> list[int]:
    """The next `limit` ids of the filtered set above `after_id` (up to `up_to_id`), ascending:
    how a bulk action walks its set, through the same indexes as the list pages."""
    drive_by = _driving_filter(filters, counts=counts, tag=tag)
    queryset = _keyset(
        account, filters, drive_by, id_range={"gt": after_id, "lte": up_to_id}, limit=limit
    )
    return list(queryset.values_list("id", flat=True))


def _keyset(
    account,
    filters: SubscriberFilter,
    drive_by: str,
    *,
    id_range: dict[str, int],
    limit: int,
    newest_first: bool = False,
) -> QuerySet[Subscriber]:
    """At most `limit` subscribers with ids in `id_range` (lookups such as {"lt": 42}), ordered
    by id, read from the index _driving_filter chose.

    The row-by-row checks are scalar subqueries, which PostgreSQL never turns into a join, so
    the reading order holds and the scan stops as soon as `limit` rows are found.
    """
    order = "-id" if newest_first else "id"
    untagged = replace(filters, tag_id=None)
    if drive_by == "tag":
        tagged = Tagging.objects.filter(
            tag_id=filters.tag_id,
            **{f"subscriber_id__{lookup}": value for lookup, value in id_range.items()},
        )
        if not untagged.is_empty:
            matches = subscriber_queryset(account=account, filters=untagged).filter(
                id=OuterRef("subscriber_id")
            )
            tagged = tagged.alias(match=Subquery(matches.values("id")[:1])).filter(
                match__isnull=False
            )
        ids = tagged.order_by(order.replace("id", "subscriber_id")).values("subscriber_id")
        queryset = Subscriber.objects.filter(account=account, id__in=ids[:limit])
    elif drive_by == "state":
        # Ids only, so the walk stays inside subscriber_account_state (an index-only scan).
        taggings = Tagging.objects.filter(tag_id=filters.tag_id, subscriber_id=OuterRef("id"))
        ids = (
            subscriber_queryset(account=account, filters=untagged)
            .alias(tagged=Subquery(taggings.values("subscriber_id")[:1]))
            .filter(
                tagged__isnull=False,
                **{f"id__{lookup}": value for lookup, value in id_range.items()},
            )
            .order_by(order)
            .values("id")
        )
        queryset = Subscriber.objects.filter(account=account, id__in=ids[:limit])
    else:
        queryset = subscriber_queryset(account=account, filters=filters).filter(
            **{f"id__{lookup}": value for lookup, value in id_range.items()}
        )
    return queryset.order_by(order)[:limit]


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
    count_rows: bool = True,
) -> Total | None:
    """How many subscribers match, without ever counting millions of rows.

    1. No filter, a state, or a tag alone: the trigger-maintained counters say it exactly.
    2. A first page with no older page: the page is the whole set.
    3. Otherwise count at most COUNT_CAP + 1 rows through a LIMITed subquery; with `count_rows`
       false, return None instead (the page asks for the count separately).
    """
    if not filters.q and not (filters.state and filters.tag_id):
        if filters.tag_id:
            return Total(tag.subscriber_count if tag else 0)
        if filters.state:
            return Total(counts.get(filters.state, 0))
        return Total(counts["total"])
    if page is not None and page.is_first and page.older_after is None:
        return Total(len(page.subscribers))
    if not count_rows:
        return None
    queryset = subscriber_queryset(account=account, filters=filters).order_by()
    count = queryset[: COUNT_CAP + 1].count()
    if count > COUNT_CAP:
        return Total(COUNT_CAP, capped=True)
    return Total(count)


SIGNUPS_SHOWN = 20


def subscriber_signups(*, subscriber: Subscriber) -> list[Signup]:
    """The latest signups through forms (consent records), newest first, each with the form and
    the exact wording it showed (`signup.wording`) — two queries however many there are."""
    signups = list(
        Signup.objects.filter(subscriber=subscriber)
        .select_related("form")
        .order_by("-id")[:SIGNUPS_SHOWN]
    )
    wordings = {
        (wording.form_id, wording.version): wording
        for wording in FormWording.objects.filter(
            form_id__in={signup.form_id for signup in signups}
        )
    }
    for signup in signups:
        signup.wording = wordings.get((signup.form_id, signup.wording_version))
    return signups


def subscriber_history(*, subscriber: Subscriber) -> list[StateChange]:
    """State changes, newest first."""
    return list(subscriber.state_changes.order_by("-id"))
