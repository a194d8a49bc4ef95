"""Queueing webhook deliveries: set-based, in the transaction of whatever calls it.

The automations engine calls deliveries_queue_for_events in the transaction that consumes the
outbox events, so an event committed is a delivery queued (nothing is lost if a worker or Redis
dies in between); a rule's or an automation's "send a webhook" calls
deliveries_queue_for_subscribers. Either is one INSERT ... SELECT whatever the number of
subscribers: the payloads are built by PostgreSQL from the subscriber rows, one delivery per
event for a legacy webhook, up to a hundred events of one type per delivery for an endpoint.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction

from api.shapes import KIT_STATE_OF
from automations.models import Trigger
from sequences.models import Sequence
from subscribers.models import Form, Subscriber, Tag
from tracking.models import Link
from webhooks.events import RESOURCE_OF
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookSubscription
from webhooks.tasks import deliver

# Events per delivery to a webhook endpoint (Kit's limit); a legacy webhook's are one each.
EVENTS_PER_DELIVERY = 100

# Kit's name of each state, the API's own mapping (api.shapes) written as SQL.
_KIT_STATE_SQL = (
    "CASE s.state "
    + " ".join(f"WHEN '{ours}' THEN '{kit}'" for ours, kit in KIT_STATE_OF.items())
    + " END"
)

_INSERT = f"""
    INSERT INTO {WebhookDelivery._meta.db_table}
        (account_id, endpoint_id, event_type, events, status, attempt_count, next_attempt_at,
         created_at)
    SELECT r.account_id, r.endpoint_id, r.event_type,
           jsonb_agg(jsonb_build_object(
               'id', gen_random_uuid(), 'type', r.event_type, 'created', %(created)s,
               'data', jsonb_build_object('subscriber', jsonb_build_object(
                   'id', s.id,
                   'first_name', nullif(s.first_name, ''),
                   'email_address', s.email,
                   'state', {_KIT_STATE_SQL},
                   'created_at',
                       to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   'fields', s.fields
               )) || (%(extras)s::jsonb[])[r.extra]
           ) ORDER BY s.id),
           'pending', 0, %(now)s, %(now)s
    FROM (
        SELECT v.*, (row_number() OVER (
                PARTITION BY v.endpoint_id, v.event_type, v.extra ORDER BY v.subscriber_id
            ) - 1) / v.per AS chunk
        FROM unnest(%(endpoints)s::bigint[], %(accounts)s::bigint[], %(types)s::text[],
                    %(pers)s::int[], %(extra_keys)s::int[], %(subscribers)s::bigint[])
             AS v(endpoint_id, account_id, event_type, per, extra, subscriber_id)
    ) AS r
    JOIN {Subscriber._meta.db_table} AS s ON s.id = r.subscriber_id AND s.account_id = r.account_id
    GROUP BY r.account_id, r.endpoint_id, r.event_type, r.extra, r.chunk
    ORDER BY min(r.subscriber_id)
"""


@dataclass
class _Rows:
    """The parallel arrays of the INSERT: one row per (endpoint, event type, subscriber)."""

    extras: list[str]
    endpoints: list[int]
    accounts: list[int]
    types: list[str]
    pers: list[int]
    extra_keys: list[int]
    subscribers: list[int]

    @classmethod
    def empty(cls) -> _Rows:
        return cls(["{}"], [], [], [], [], [], [])

    def add(
        self, endpoint: WebhookEndpoint, event_type: str, ids: Iterable[int], extra: dict
    ) -> None:
        text = json.dumps(extra, separators=(",", ":"))
        if text not in self.extras:
            self.extras.append(text)
        key = self.extras.index(text) + 1
        per = 1 if endpoint.kind == WebhookEndpoint.Kind.LEGACY else EVENTS_PER_DELIVERY
        for subscriber_id in sorted(set(ids)):
            self.endpoints.append(endpoint.pk)
            self.accounts.append(endpoint.account_id)
            self.types.append(event_type)
            self.pers.append(per)
            self.extra_keys.append(key)
            self.subscribers.append(subscriber_id)


def _insert(rows: _Rows, now: datetime) -> int:
    if not rows.subscribers:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT,
            {
                "created": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "now": now,
                "extras": rows.extras,
                "endpoints": rows.endpoints,
                "accounts": rows.accounts,
                "types": rows.types,
                "pers": rows.pers,
                "extra_keys": rows.extra_keys,
                "subscribers": rows.subscribers,
            },
        )
        queued = cursor.rowcount
    if queued:
        transaction.on_commit(deliver.delay)
    return queued


def _resources(wanted: dict[str, set[int]]) -> dict[tuple[str, int], dict]:
    """The tags, forms, sequences and links events name, as their data shows them."""
    found: dict[tuple[str, int], dict] = {}
    for name, model in (("tag", Tag), ("form", Form), ("sequence", Sequence)):
        if wanted.get(name):
            for pk, title in model.objects.filter(pk__in=wanted[name]).values_list("pk", "name"):
                found[(name, pk)] = {"id": pk, "name": title}
    if wanted.get("link"):
        for pk, url in Link.objects.filter(pk__in=wanted["link"]).values_list("pk", "url"):
            found[("link", pk)] = {"id": pk, "url": url}
    return found


@dataclass
class HookMatch:
    """Outbox events of one kind about one object (the engine's group) that a hook trigger
    matched."""

    trigger: Trigger
    kind: str
    object_id: int | None
    subscriber_ids: list[int]


def deliveries_queue_for_events(
    *, matches: list[HookMatch], urls: dict[int, str], now: datetime
) -> int:
    """Queues the deliveries of the webhook subscriptions these outbox events matched, to
    enabled endpoints only; a legacy link_click listens for one URL (`urls`: the clicked links').
    Returns how many deliveries were queued."""
    if not matches:
        return 0
    subscriptions = {
        subscription.pk: subscription
        for subscription in WebhookSubscription.objects.filter(
            pk__in={match.trigger.webhook_id for match in matches}, endpoint__enabled=True
        ).select_related("endpoint")
    }
    wanted: dict[str, set[int]] = defaultdict(set)
    chosen = []
    for match in matches:
        subscription = subscriptions.get(match.trigger.webhook_id)
        if subscription is None:
            continue
        url = urls.get(match.object_id, "")
        if subscription.initiator_value and url != subscription.initiator_value:
            continue
        resource = RESOURCE_OF.get(match.kind)
        envelope = subscription.endpoint.kind == WebhookEndpoint.Kind.ENVELOPE
        if envelope and resource and match.object_id is not None:
            wanted[resource].add(match.object_id)
        chosen.append((match, subscription, resource if envelope else None))
    resources = _resources(wanted)
    rows = _Rows.empty()
    for match, subscription, resource in chosen:
        extra = {}
        if resource and (resource, match.object_id) in resources:
            extra = {resource: resources[(resource, match.object_id)]}
        rows.add(subscription.endpoint, subscription.event_type, match.subscriber_ids, extra)
    return _insert(rows, now)


def deliveries_queue_for_subscribers(
    *, endpoint: WebhookEndpoint, subscriber_ids: Iterable[int], event_type: str, now: datetime
) -> int:
    """Queues deliveries of `event_type` about these subscribers of the endpoint's account to
    the endpoint (a rule's or an automation's "send a webhook"); nothing when it is disabled.
    Returns how many deliveries were queued."""
    if not endpoint.enabled:
        return 0
    rows = _Rows.empty()
    rows.add(endpoint, event_type, subscriber_ids, {})
    return _insert(rows, now)
