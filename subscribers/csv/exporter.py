"""CSV export of an account's subscribers, streamed in keyset batches.

Each batch is one short query (the subscribers after the last id seen, with their tags
aggregated in the same query), so an export of millions of rows holds no long transaction,
never uses OFFSET, and never runs a query per row. Every cell goes through safe_cell.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Lower

from convertkit.csv_download import safe_cell
from convertkit.models import Account
from subscribers.models import CustomField, Tagging
from subscribers.selectors import SubscriberFilter, subscriber_queryset

BATCH_SIZE = 5000
COLUMNS_BEFORE_FIELDS = ["email", "first_name", "state", "tags"]
COLUMNS_AFTER_FIELDS = ["source", "created_at", "confirmed_at", "unsubscribed_at"]
# Tags are joined with this in one cell; the import splits the cell on commas.
TAG_SEPARATOR = ", "


def _when(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def export_rows(
    *,
    account: Account,
    filters: SubscriberFilter,
    batch_size: int = BATCH_SIZE,
    on_batch=None,
) -> Iterator[list[str]]:
    """The header, then one row per matching subscriber, oldest first.

    Custom fields get a column each, named by key (so the file imports back with the columns
    recognised). `on_batch(rows_so_far)` is called after each batch, for progress bars.
    """
    keys = list(
        CustomField.objects.filter(account=account).order_by("key").values_list("key", flat=True)
    )
    yield [*COLUMNS_BEFORE_FIELDS, *keys, *COLUMNS_AFTER_FIELDS]
    tag_names = Subquery(
        Tagging.objects.filter(subscriber_id=OuterRef("pk"))
        .order_by()
        .values("subscriber_id")
        .annotate(names=ArrayAgg("tag__name", order_by=Lower("tag__name")))
        .values("names")
    )
    queryset = subscriber_queryset(account=account, filters=filters).annotate(tag_names=tag_names)
    last_id = 0
    exported = 0
    while True:
        batch = list(
            queryset.filter(id__gt=last_id)
            .order_by("id")
            .values_list(
                "id",
                "email",
                "first_name",
                "state",
                "tag_names",
                "fields",
                "source",
                "created_at",
                "confirmed_at",
                "unsubscribed_at",
            )[:batch_size]
        )
        for (
            _,
            email,
            first_name,
            state,
            tags,
            fields,
            source,
            created_at,
            confirmed_at,
            unsubscribed_at,
        ) in batch:
            values = [fields.get(key) for key in keys]
            yield [
                safe_cell(email),
                safe_cell(first_name),
                safe_cell(state),
                safe_cell(TAG_SEPARATOR.join(tags or ())),
                *(safe_cell("" if value is None else value) for value in values),
                safe_cell(source),
                safe_cell(_when(created_at)),
                safe_cell(_when(confirmed_at)),
                safe_cell(_when(unsubscribed_at)),
            ]
        exported += len(batch)
        if on_batch:
            on_batch(exported)
        if len(batch) < batch_size:
            return
        last_id = batch[-1][0]
