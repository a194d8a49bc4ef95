"""Writing the event outbox: every change a rule or an automation may react to adds its Event
rows in the transaction of the change itself, so a change committed is an event the engine
will see, and a change rolled back is none. Each writer is one INSERT, whatever the number of
subscribers: a bulk action's batch or an import's merge records its events at batch speed.

Only changes something listens for are written: a change no rule trigger, entry point or
event step of the account names (a tag nobody reacts to) can trigger nothing, and skipping its
event keeps a bulk action or an import at batch speed.

Effects of the engine itself (a rule's "add tag") are changes too: they record their events one
step deeper (`effects_depth`), which is how a chain of rules that keep triggering each other is
stopped (settings.AUTOMATION_MAX_DEPTH).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connection

from automations.models import Event, EventKind, Trigger

EVENT_TABLE = Event._meta.db_table

# The depth of the events a change records: 0 for a person's or an integration's change, n + 1
# for what the engine does in reaction to an event of depth n.
_depth: ContextVar[int] = ContextVar("automation_event_depth", default=0)


@contextmanager
def effects_depth(depth: int) -> Iterator[None]:
    """Changes made inside record their events at `depth`."""
    token = _depth.set(depth)
    try:
        yield
    finally:
        _depth.reset(token)


# Whether something of the account listens for events of this kind about this object: a rule
# trigger, an entry point or an event step naming it, or naming none (any form). A change that
# nothing listens for can trigger nothing, so it writes no event (one probe of trigger_match);
# outgoing webhooks, when they come, listen through Trigger rows of their own.
_LISTENED = f"""
    SELECT 1 FROM {Trigger._meta.db_table} t
    WHERE t.account_id = {{account}} AND t.kind = {{kind}}
      AND (t.object_id = {{object}} OR t.object_id IS NULL)
"""


def events_add(
    *,
    account_id: int,
    kind: EventKind | str,
    subscriber_ids: Iterable[int],
    object_id: int | None = None,
    detail: str = "",
) -> None:
    """One event of `kind` (about `object_id`) for each subscriber."""
    ids = list(subscriber_ids)
    if not ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {EVENT_TABLE} (account_id, subscriber_id, kind, object_id, detail, depth)
            SELECT %(account)s, s.id, %(kind)s, %(object)s, %(detail)s, %(depth)s
            FROM unnest(%(ids)s::bigint[]) AS s(id)
            WHERE EXISTS ({
                _LISTENED.format(
                    account="%(account)s", kind="%(kind)s", object="%(object)s::bigint"
                )
            })
            """,
            {
                "account": account_id,
                "kind": str(kind),
                "object": object_id,
                "detail": detail[:100],
                "depth": _depth.get(),
                "ids": ids,
            },
        )


def events_insert_sql(*, kind: EventKind | str, rows_sql: str) -> str:
    """The INSERT ... SELECT that writes one event of `kind` per row of `rows_sql`: a SELECT of
    (account_id, object_id, subscriber_id, detail). Run by events_add_rows, or placed as a CTE
    of the change's own statement when the rows are what that statement returns
    (`WITH changed AS (UPDATE ... RETURNING ...), events AS (<this>) SELECT ...`): a data-
    modifying CTE cannot be read from a subquery."""
    return f"""
        INSERT INTO {EVENT_TABLE} (account_id, subscriber_id, kind, object_id, detail, depth)
        SELECT p.account_id, p.subscriber_id, '{EventKind(kind).value}', p.object_id,
               left(p.detail, 100), {_depth.get()}
        FROM ({rows_sql}) AS p(account_id, object_id, subscriber_id, detail)
        WHERE EXISTS ({
        _LISTENED.format(
            account="p.account_id", kind=f"'{EventKind(kind).value}'", object="p.object_id"
        )
    })
    """


def events_add_rows(*, kind: EventKind | str, rows_sql: str, params: dict | list) -> None:
    """One event of `kind` per row of `rows_sql`: a SELECT of (account_id, object_id,
    subscriber_id, detail) (the taggings an import just made, the links clicked in a drained
    batch ...), with the parameters `params`. Written by one INSERT ... SELECT."""
    with connection.cursor() as cursor:
        cursor.execute(events_insert_sql(kind=kind, rows_sql=rows_sql), params)
