"""Keyset paging for the creator's list pages: newest first by id, never OFFSET, so page 1,000
costs what page 1 does."""

from __future__ import annotations

from dataclasses import dataclass, replace

PAGE_SIZE = 50


def page_cursor(request, name: str) -> int | None:
    """The id in ?after= or ?before=, or None for a missing or malformed one (a bigint at most)."""
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


@dataclass(frozen=True)
class KeysetPage:
    """One page of a list: its items (rows, or what a view made of them) and its links."""

    items: list
    # The cursors of the "← Newer" and "Older" links; None when there is no such page.
    newer_before: int | None
    older_after: int | None
    # Reached through a cursor: an empty page then says "no more", not "nothing yet".
    paged: bool = False

    def with_items(self, items: list) -> KeysetPage:
        """The same page with its rows replaced by what the template shows of them."""
        return replace(self, items=items)


def keyset_page(
    queryset,
    *,
    after: int | None,
    before: int | None,
    page_size: int = PAGE_SIZE,
    oldest_first: bool = False,
) -> KeysetPage:
    """One page of `queryset`, newest first (or oldest first): the rows past `after`, or the
    rows ahead of `before`. One row more than a page is read to know whether another page
    follows. With `oldest_first`, "newer" and "older" read as "previous" and "next"."""
    ahead, beyond = ("id__lt", "id__gt") if oldest_first else ("id__gt", "id__lt")
    order = "id" if oldest_first else "-id"
    if before is not None:
        reverse = "-id" if oldest_first else "id"
        items = list(queryset.filter(**{ahead: before}).order_by(reverse)[: page_size + 1])
        has_newer = len(items) > page_size
        items = items[:page_size][::-1]
        has_older = True
    else:
        if after is not None:
            queryset = queryset.filter(**{beyond: after})
        items = list(queryset.order_by(order)[: page_size + 1])
        has_older = len(items) > page_size
        items = items[:page_size]
        has_newer = after is not None
    return KeysetPage(
        items=items,
        newer_before=items[0].id if items and has_newer else None,
        older_after=items[-1].id if items and has_older else None,
        paged=after is not None or before is not None,
    )
