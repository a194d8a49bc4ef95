"""The automations engine: consumes the event outbox and moves subscribers through automations.
Safe to run twice, and any number of times at once. See "Automations" in docs/architecture.md.

events_consume, one batch in one transaction:

1. Claims up to AUTOMATION_EVENT_BATCH events, oldest first, and deletes them (DELETE ...
   RETURNING over FOR UPDATE SKIP LOCKED): their effects commit with their deletion, or neither
   does, so a worker killed mid-batch leaves the whole batch to the next run.
2. Groups them by (account, kind, object, detail, depth) and finds the triggers they match in one
   query on the index trigger_match.
3. Fires each enabled rule for the subscribers of its matching events: its actions in order,
   one statement each for the whole group (services in subscribers/ and sequences/, which record
   their own events one step deeper), and one History row per subscriber.
4. Enters matching subscribers into active and paused automations (a Journey at the first step,
   one INSERT ... ON CONFLICT; re-entry and the loop guard in its WHERE), pulls those of active
   automations whose goal matches forward to the goal (only from a step above it), and moves on
   those who waited for a sequence that they have now completed.
5. Queues the deliveries of the outgoing webhooks whose subscriptions (hook triggers) matched
   (webhooks.queue), whatever the depth: in the same transaction, so no event is lost.

journeys_advance, per active automation, one batch in one transaction:

1. Claims up to AUTOMATION_CLAIM_BATCH journeys whose step is due (index journey_due), FOR
   UPDATE SKIP LOCKED.
2. Runs their steps, grouped by step, until each one waits (a delay, a wait, an event, a
   sequence) or leaves: first one History row per (automation, subscriber, step, visit) with ON
   CONFLICT DO NOTHING, so that a step already run in this visit is never run again; then the
   step's effect for the new rows only, set-based.
3. Writes every journey's new place and due time in one UPDATE, then publishes the send tasks
   of the emails it queued (lost publishes are the broadcast sweeper's).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from automations.models import (
    Automation,
    Event,
    EventKind,
    History,
    Journey,
    Node,
    Rule,
    Trigger,
)
from automations.outbox import effects_depth
from automations.services import DELAY_UNITS, ActionKind, goal_spec
from broadcasts.models import Broadcast
from broadcasts.pipeline import deliveries_publish, deliveries_queue
from sequences.models import Sequence, Subscription
from sequences.services import subscribers_enrol, subscriptions_remove
from subscribers.models import CustomField, Subscriber, Tag, Tagging
from subscribers.segments.filters import segments_condition
from subscribers.services import (
    subscribers_field_set,
    subscribers_tag,
    subscribers_unsubscribe,
    subscribers_untag,
)
from tracking.models import DeliveryActivity, Link
from tracking.models import EventKind as TrackedKind
from webhooks.models import EventType, WebhookEndpoint
from webhooks.queue import HookMatch, deliveries_queue_for_events, deliveries_queue_for_subscribers

logger = logging.getLogger(__name__)

Kind = Node.Kind
State = Journey.State
# A run stops taking new batches after this long (the next beat tick goes on).
RUN_TIME_BUDGET = 25.0
JOURNEY_TABLE = Journey._meta.db_table
HISTORY_TABLE = History._meta.db_table


@dataclass
class EngineReport:
    events: int = 0
    rule_runs: int = 0
    entered: int = 0
    pulled: int = 0
    steps: int = 0
    # Webhook deliveries queued.
    webhooks: int = 0
    lag_seconds: float = 0.0

    def add(self, other: EngineReport) -> None:
        self.events += other.events
        self.webhooks += other.webhooks
        self.rule_runs += other.rule_runs
        self.entered += other.entered
        self.pulled += other.pulled
        self.steps += other.steps
        self.lag_seconds = max(self.lag_seconds, other.lag_seconds)


# The flow of an automation, read once per batch ---------------------------------------------


@dataclass
class Flow:
    automation: Automation
    nodes: dict[int, Node]
    child: dict[tuple[int | None, str], Node]
    zone: ZoneInfo

    @classmethod
    def load(cls, automation: Automation) -> Flow:
        nodes = {
            node.pk: node
            for node in Node.objects.filter(automation=automation, deleted_at__isnull=True)
        }
        child = {(node.parent_id, node.branch): node for node in nodes.values()}
        zone = ZoneInfo(automation.account.time_zone or "UTC")
        return cls(automation=automation, nodes=nodes, child=child, zone=zone)

    @property
    def root(self) -> Node | None:
        return self.child.get((None, ""))

    def after(self, node: Node, branch: str = "") -> Node | None:
        return self.child.get((node.pk, branch))

    def above(self, node: Node) -> list[int]:
        """The steps above `node` (its ancestors): from where an event pulls people to it."""
        ids, current = [], node
        while current.parent_id is not None and current.parent_id in self.nodes:
            ids.append(current.parent_id)
            current = self.nodes[current.parent_id]
        return ids

    def due_on_arrival(self, node: Node | None, now: datetime) -> datetime | None:
        """When a step reached at `now` runs: after its delay, at its wait's time, else now."""
        if node is None:
            return None
        if node.kind == Kind.DELAY:
            seconds = int(node.config["amount"]) * DELAY_UNITS[node.config["unit"]]
            return now + timedelta(seconds=seconds)
        if node.kind == Kind.WAIT_UNTIL:
            return wait_until(node.config, zone=self.zone, now=now)
        return now


def wait_until(config: dict, *, zone: ZoneInfo, now: datetime) -> datetime:
    """The first moment at or after `now` that a "wait until" step's date, weekday or hour
    comes, in `zone`; a date already past is now."""
    hour = clock_time(int(config.get("hour") or 0))
    local = now.astimezone(zone)
    mode = config.get("mode")
    if mode == "date":
        at = datetime.combine(date.fromisoformat(config["date"]), hour, tzinfo=zone)
        return max(at.astimezone(UTC), now)
    days = set(config.get("days") or range(7)) if mode == "weekday" else set(range(7))
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        at = datetime.combine(day, hour, tzinfo=zone).astimezone(UTC)
        if day.weekday() in days and at >= now:
            return at
    return now


def journeys_place(
    *, automation: Automation, from_node_id: int, to_node_id: int | None, now: datetime
) -> int:
    """Moves whoever stands at one step to another (arriving now), or out of the automation
    when `to_node_id` is None: what deleting a step does to those at it."""
    flow = Flow.load(automation)
    target = flow.nodes.get(to_node_id) if to_node_id else None
    if target is None:
        return Journey.objects.filter(
            automation=automation, node_id=from_node_id, state=State.ACTIVE
        ).update(state=State.COMPLETED, node=None, due_at=None, arrived_at=now)
    return Journey.objects.filter(
        automation=automation, node_id=from_node_id, state=State.ACTIVE
    ).update(node=target, due_at=flow.due_on_arrival(target, now), arrived_at=now)


# Entering --------------------------------------------------------------------------------------


def _history_add(
    cursor, *, account_id: int, subscriber_ids: list[int], note: str, **keys
) -> list[int]:
    """History rows for these subscribers (one note); for a step, only where (automation,
    subscriber, node, visit) is new: returns whose rows were added.

    Rows of no step (a rule's, an entry's, a note) fall outside the one unique index
    (history_step_once), so they are written without ON CONFLICT, which costs about half as
    much again per row even where nothing can conflict."""
    if not subscriber_ids:
        return []
    visits = keys.pop("visits", None)
    step = keys.get("node_id") is not None
    cursor.execute(
        f"""
        INSERT INTO {HISTORY_TABLE}
            (account_id, subscriber_id, rule_id, automation_id, node_id, visit, note)
        SELECT %(account)s, v.subscriber_id, %(rule)s, %(automation)s, %(node)s, v.visit, %(note)s
        FROM unnest(%(ids)s::bigint[], %(visits)s::int[]) AS v(subscriber_id, visit)
        {"ON CONFLICT DO NOTHING RETURNING subscriber_id" if step else ""}
        """,
        {
            "account": account_id,
            "rule": keys.get("rule_id"),
            "automation": keys.get("automation_id"),
            "node": keys.get("node_id"),
            "note": note[:255],
            "ids": subscriber_ids,
            "visits": visits if visits is not None else [None] * len(subscriber_ids),
        },
    )
    return [row[0] for row in cursor.fetchall()] if step else list(subscriber_ids)


def journeys_enter(
    *,
    automation: Automation,
    subscriber_ids: list[int],
    now: datetime,
    how: str,
    flow: Flow | None = None,
) -> list[int]:
    """Starts these subscribers of the automation's account at its first step (an entry point
    fired, or another automation moved them here): one statement. Whoever is in it already
    stays where they are; whoever finished it enters again only when the automation allows
    re-entry, and at most daily_entry_limit times a day (the loop guard, which says so in their
    history). Returns who entered."""
    if automation.state == Automation.State.INACTIVE or not subscriber_ids:
        return []
    flow = flow or Flow.load(automation)
    root = flow.root
    if root is None:
        return []
    today = now.astimezone(UTC).date()
    ids = sorted(set(subscriber_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {JOURNEY_TABLE} AS j
                (account_id, automation_id, subscriber_id, state, node_id, due_at, visit,
                 arrived_at, entered_at, day_entries, day_started)
            SELECT s.account_id, %(automation)s, s.id, %(active)s, %(root)s, %(due)s, 1,
                   %(now)s, %(now)s, 1, %(today)s
            FROM {Subscriber._meta.db_table} s
            WHERE s.id = ANY(%(ids)s::bigint[]) AND s.account_id = %(account)s
            ORDER BY s.id
            ON CONFLICT (automation_id, subscriber_id) DO UPDATE SET
                state = %(active)s, node_id = %(root)s, due_at = %(due)s, visit = j.visit + 1,
                arrived_at = %(now)s, entered_at = %(now)s,
                day_entries = CASE WHEN j.day_started = %(today)s THEN j.day_entries + 1 ELSE 1 END,
                day_started = %(today)s
            WHERE %(reentry)s AND j.state <> %(active)s
              AND (j.day_started <> %(today)s OR j.day_entries < %(limit)s)
            RETURNING subscriber_id
            """,
            {
                "automation": automation.pk,
                "account": automation.account_id,
                "active": int(State.ACTIVE),
                "root": root.pk,
                "due": flow.due_on_arrival(root, now),
                "now": now,
                "today": today,
                "ids": ids,
                "reentry": automation.reentry,
                "limit": automation.daily_entry_limit,
            },
        )
        entered = [row[0] for row in cursor.fetchall()]
        _history_add(
            cursor,
            account_id=automation.account_id,
            subscriber_ids=entered,
            note=f"entered “{automation.name}”: {how}",
            automation_id=automation.pk,
        )
        if automation.reentry and len(entered) < len(ids):
            guarded = list(
                Journey.objects.filter(
                    automation=automation,
                    subscriber_id__in=sorted(set(ids) - set(entered)),
                    day_started=today,
                    day_entries__gte=automation.daily_entry_limit,
                )
                .exclude(state=State.ACTIVE)
                .values_list("subscriber_id", flat=True)
            )
            _history_add(
                cursor,
                account_id=automation.account_id,
                subscriber_ids=guarded,
                note=(
                    f"not entered “{automation.name}” again: the loop guard allows "
                    f"{automation.daily_entry_limit} entries a day"
                ),
                automation_id=automation.pk,
            )
    return entered


# Consuming events ------------------------------------------------------------------------------


@dataclass
class _Group:
    """Events of one kind about one object, of one account and depth: who they happened to."""

    account_id: int
    kind: str
    object_id: int | None
    detail: str
    depth: int
    subscriber_ids: list[int] = field(default_factory=list)


def _claim_events(limit: int) -> tuple[list[_Group], int, float]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            DELETE FROM {Event._meta.db_table} WHERE id IN (
                SELECT id FROM {Event._meta.db_table} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING account_id, subscriber_id, kind, object_id, detail, depth,
                      extract(epoch FROM now() - created_at)
            """,
            [limit],
        )
        rows = cursor.fetchall()
    groups: dict[tuple, _Group] = {}
    lag = 0.0
    for account_id, subscriber_id, kind, object_id, detail, depth, age in rows:
        key = (account_id, kind, object_id, detail, depth)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(account_id, kind, object_id, detail, depth)
        group.subscriber_ids.append(subscriber_id)
        lag = max(lag, float(age or 0))
    return list(groups.values()), len(rows), lag


def _matching_triggers(groups: list[_Group]) -> dict[tuple, list[Trigger]]:
    """The triggers each group's (account, kind, object) matches, through trigger_match:
    those naming the object, and those of the kind naming none (any form)."""
    keys = {(g.account_id, g.kind, g.object_id) for g in groups}
    found: dict[tuple, list[Trigger]] = defaultdict(list)
    if not keys:
        return found
    accounts, kinds, objects = zip(*keys, strict=True)
    triggers = Trigger.objects.raw(
        f"""
        SELECT t.*, k.object_id AS event_object_id
        FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS k(account_id, kind, object_id)
        JOIN {Trigger._meta.db_table} t
          ON t.account_id = k.account_id AND t.kind = k.kind
         AND (t.object_id = k.object_id OR t.object_id IS NULL)
        """,
        [list(accounts), list(kinds), list(objects)],
    )
    for trigger in triggers:
        found[(trigger.account_id, trigger.kind, trigger.event_object_id)].append(trigger)
    return found


def _link_urls(groups: list[_Group]) -> dict[int, str]:
    ids = {g.object_id for g in groups if g.kind == EventKind.LINK_CLICKED and g.object_id}
    return dict(Link.objects.filter(pk__in=ids).values_list("pk", "url")) if ids else {}


def _field_values(account_id: int, key: str, ids: list[int]) -> dict[int, str]:
    """The custom field `key` of each of `ids` ("" where unset). One array parameter, as every
    per-batch read here: the ORM's IN takes a parameter per id, and a batch of thousands costs
    more to build and plan than to run."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT id, coalesce(fields ->> %s, '') FROM {Subscriber._meta.db_table}
            WHERE account_id = %s AND id = ANY(%s::bigint[])
            """,
            [key, account_id, list(ids)],
        )
        return dict(cursor.fetchall())


def _who_matches(trigger: Trigger, group: _Group, urls: dict[int, str]) -> list[int]:
    """The group's subscribers for whom the event meets the trigger's detail and value."""
    ids = group.subscriber_ids
    if group.kind == EventKind.FIELD_CHANGED:
        if trigger.detail != group.detail:
            return []
        if trigger.value:
            values = _field_values(group.account_id, group.detail, ids)
            return [pk for pk in ids if values.get(pk, "") == trigger.value]
    if group.kind == EventKind.LINK_CLICKED and trigger.object_id is None:
        url = urls.get(group.object_id, "")
        if not trigger.detail or trigger.detail.lower() not in url.lower():
            return []
    return ids


def _webhook_send(account_id: int, endpoint_id, ids: list[int], now: datetime) -> str:
    """A rule's or a step's "send a webhook": one delivery each (a legacy webhook's) or a
    hundred to a delivery (an endpoint's); the history's words."""
    endpoint = WebhookEndpoint.objects.filter(account_id=account_id, pk=endpoint_id).first()
    if endpoint is None:
        return "webhook deleted: nothing sent"
    if not endpoint.enabled:
        return f"webhook to {endpoint.url} is disabled: nothing sent"
    deliveries_queue_for_subscribers(
        endpoint=endpoint, subscriber_ids=ids, event_type=EventType.SENT_BY_AUTOMATION, now=now
    )
    return f"sent a webhook to {endpoint.url}"


def _rule_fire(cursor, rule: Rule, subscriber_ids: list[int], depth: int, now: datetime) -> None:
    """The rule's actions in order for these subscribers, then one History row each."""
    ids = sorted(set(subscriber_ids))
    account_id = rule.account_id
    done: list[str] = []
    with effects_depth(depth + 1):
        for action in rule.actions:
            kind, object_id = action.get("kind"), action.get("object_id")
            if kind in (ActionKind.ADD_TAG, ActionKind.REMOVE_TAG):
                tag = Tag.objects.filter(account_id=account_id, pk=object_id).first()
                if tag is None:
                    done.append("tag deleted: nothing tagged")
                elif kind == ActionKind.ADD_TAG:
                    subscribers_tag(account_id=account_id, tag_id=tag.pk, subscriber_ids=ids)
                    done.append(f"tagged “{tag.name}”")
                else:
                    subscribers_untag(account_id=account_id, tag_id=tag.pk, subscriber_ids=ids)
                    done.append(f"removed tag “{tag.name}”")
            elif kind in (ActionKind.SUBSCRIBE_SEQUENCE, ActionKind.REMOVE_SEQUENCE):
                sequence = Sequence.objects.filter(account_id=account_id, pk=object_id).first()
                if sequence is None:
                    done.append("sequence deleted: nothing done")
                elif kind == ActionKind.SUBSCRIBE_SEQUENCE:
                    subscribers_enrol(
                        sequence=sequence,
                        source_sql="SELECT unnest(%(rule_subscribers)s::bigint[])",
                        source_params={"rule_subscribers": ids},
                    )
                    done.append(f"subscribed to “{sequence.name}” (never the unsubscribed)")
                else:
                    subscriptions_remove(sequence=sequence, subscriber_ids=ids)
                    done.append(f"removed from “{sequence.name}”")
            elif kind == ActionKind.SET_FIELD:
                subscribers_field_set(
                    account_id=account_id,
                    key=action["detail"],
                    value=action.get("value", ""),
                    subscriber_ids=ids,
                )
                done.append(f"set {action['detail']} to “{action.get('value', '')}”")
            elif kind == ActionKind.UNSUBSCRIBE:
                subscribers_unsubscribe(
                    account_id=account_id, subscriber_ids=ids, reason=f"rule “{rule.name}”"
                )
                done.append("unsubscribed")
            elif kind == ActionKind.SEND_WEBHOOK:
                done.append(_webhook_send(account_id, object_id, ids, now))
    _history_add(
        cursor,
        account_id=account_id,
        subscriber_ids=ids,
        note=f"rule “{rule.name}”: " + ", ".join(done),
        rule_id=rule.pk,
    )
    Rule.objects.filter(pk=rule.pk).update(fired_count=F("fired_count") + len(ids))


def _goal_pull(goal: Trigger, flow: Flow, ids: list[int], now: datetime) -> int:
    """Pulls those of `ids` standing above the goal's step to it (never backward nor sideways);
    those who waited in a sequence step on the way leave that sequence."""
    automation = flow.automation
    node = flow.nodes.get(goal.node_id)
    if node is None:
        return 0
    # Whoever waits at the event step itself goes on (its step runs again, finds itself done).
    waited = Journey.objects.filter(
        automation=automation,
        subscriber_id__in=ids,
        state=State.ACTIVE,
        node=node,
        due_at__isnull=True,
    ).update(due_at=now)
    above = flow.above(node)
    if not above:
        return waited
    pulled = list(
        Journey.objects.filter(
            automation=automation, subscriber_id__in=ids, state=State.ACTIVE, node_id__in=above
        ).values_list("subscriber_id", "node_id")
    )
    if not pulled:
        return waited
    for node_id in {node_id for _, node_id in pulled}:
        step = flow.nodes[node_id]
        if step.kind == Kind.SEQUENCE:
            sequence = Sequence.objects.filter(pk=step.config.get("sequence_id")).first()
            if sequence is not None:
                subscriptions_remove(
                    sequence=sequence,
                    subscriber_ids=[pk for pk, at in pulled if at == node_id],
                )
    Journey.objects.filter(
        automation=automation,
        subscriber_id__in=[pk for pk, _ in pulled],
        state=State.ACTIVE,
        node_id__in=above,
    ).update(node=node, due_at=now, arrived_at=now)
    return waited + len(pulled)


def _sequence_finished(group: _Group, now: datetime) -> int:
    """Those waiting at a step of this sequence, now completed, go on (their step runs again and
    finds itself done)."""
    return Journey.objects.filter(
        account_id=group.account_id,
        subscriber_id__in=group.subscriber_ids,
        state=State.ACTIVE,
        due_at__isnull=True,
        node__kind=Kind.SEQUENCE,
        node__config__sequence_id=group.object_id,
        automation__state=Automation.State.ACTIVE,
    ).update(due_at=now)


def events_consume(*, now: datetime | None = None, limit: int | None = None) -> EngineReport:
    """One batch of the outbox (see the module docstring)."""
    now = now or timezone.now()
    report = EngineReport()
    max_depth = settings.AUTOMATION_MAX_DEPTH
    with transaction.atomic(), connection.cursor() as cursor:
        groups, report.events, report.lag_seconds = _claim_events(
            limit or settings.AUTOMATION_EVENT_BATCH
        )
        if not groups:
            return report
        triggers = _matching_triggers(groups)
        urls = _link_urls(groups)
        rules = {
            rule.pk: rule
            for rule in Rule.objects.filter(
                pk__in={t.rule_id for ts in triggers.values() for t in ts if t.rule_id},
                enabled=True,
            )
        }
        automations = {
            automation.pk: automation
            for automation in Automation.objects.filter(
                pk__in={t.automation_id for ts in triggers.values() for t in ts if t.automation_id}
            )
            .exclude(state=Automation.State.INACTIVE)
            .select_related("account")
        }
        # Each automation's steps, read once for the batch.
        flows: dict[int, Flow] = {}

        def flow_of(automation: Automation) -> Flow:
            if automation.pk not in flows:
                flows[automation.pk] = Flow.load(automation)
            return flows[automation.pk]

        hooks: list[HookMatch] = []
        for group in groups:
            if group.kind == EventKind.SEQUENCE_COMPLETED:
                _sequence_finished(group, now)
            matched = triggers.get((group.account_id, group.kind, group.object_id), [])
            # Outgoing webhooks cause no further events: the depth guard does not concern them.
            hooks += [
                HookMatch(t, group.kind, group.object_id, group.subscriber_ids)
                for t in matched
                if t.role == Trigger.Role.HOOK
            ]
            matched = [t for t in matched if t.role != Trigger.Role.HOOK]
            if matched and group.depth >= max_depth:
                _history_add(
                    cursor,
                    account_id=group.account_id,
                    subscriber_ids=sorted(set(group.subscriber_ids)),
                    note=(
                        f"stopped: rules and automations triggered each other {max_depth} "
                        "times in a row"
                    ),
                )
                continue
            fired: dict[int, set[int]] = defaultdict(set)
            for trigger in matched:
                ids = _who_matches(trigger, group, urls)
                if not ids:
                    continue
                if trigger.rule_id in rules:
                    fired[trigger.rule_id].update(ids)
                automation = automations.get(trigger.automation_id)
                if automation is None:
                    continue
                if trigger.role == Trigger.Role.ENTRY:
                    with effects_depth(group.depth + 1):
                        report.entered += len(
                            journeys_enter(
                                automation=automation,
                                subscriber_ids=ids,
                                now=now,
                                how=EventKind(group.kind).label.lower(),
                                flow=flow_of(automation),
                            )
                        )
                elif trigger.role == Trigger.Role.GOAL and automation.state == (
                    Automation.State.ACTIVE
                ):
                    report.pulled += _goal_pull(trigger, flow_of(automation), ids, now)
            for rule_id, ids in fired.items():
                _rule_fire(cursor, rules[rule_id], sorted(ids), group.depth, now)
                report.rule_runs += len(ids)
        report.webhooks = deliveries_queue_for_events(matches=hooks, urls=urls, now=now)
    return report


def _event_failed() -> int:
    """Takes the oldest event out of the outbox with a note in the subscriber's history: what
    is done with one event that makes every batch holding it fail, so that it cannot hold
    back every event behind it."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            DELETE FROM {Event._meta.db_table} WHERE id IN (
                SELECT id FROM {Event._meta.db_table} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING account_id, subscriber_id, kind, object_id
            """
        )
        row = cursor.fetchone()
        if row is None:
            return 0
        account_id, subscriber_id, kind, object_id = row
        _history_add(
            cursor,
            account_id=account_id,
            subscriber_ids=[subscriber_id],
            note=f"could not act on the event {kind} ({object_id}): see the worker log",
        )
    return 1


def events_consume_safely(*, now: datetime, limit: int | None = None) -> EngineReport:
    """events_consume; when a batch fails for a reason other than the database being away,
    its events are taken one at a time, and the one that fails on its own is logged and set
    aside (_event_failed) instead of failing every batch after it."""
    limit = limit or settings.AUTOMATION_EVENT_BATCH
    try:
        return events_consume(now=now, limit=limit)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        logger.exception("An automations batch failed; taking its events one at a time")
    report = EngineReport()
    for _ in range(limit):
        try:
            single = events_consume(now=now, limit=1)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            logger.exception("An automation event failed on its own; it is set aside")
            single = EngineReport(events=_event_failed())
        if single.events == 0:
            break
        report.add(single)
    return report


# Advancing journeys ----------------------------------------------------------------------------


@dataclass
class _Place:
    id: int
    subscriber_id: int
    visit: int
    node_id: int | None
    subscriber_state: str
    due_at: datetime | None = None
    state: int = State.ACTIVE
    arrived_at: datetime | None = None
    moved: bool = False


def _claim_journeys(automation_id: int, now: datetime, limit: int) -> list[_Place]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH claimed AS (
                SELECT id, subscriber_id, visit, node_id, arrived_at FROM {JOURNEY_TABLE}
                WHERE automation_id = %s AND due_at <= %s
                ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED)
            SELECT j.id, j.subscriber_id, j.visit, j.node_id, s.state, j.arrived_at
            FROM claimed j JOIN {Subscriber._meta.db_table} s ON s.id = j.subscriber_id
            ORDER BY j.id
            """,
            [automation_id, now, limit],
        )
        return [
            _Place(
                id=r[0],
                subscriber_id=r[1],
                visit=r[2],
                node_id=r[3],
                subscriber_state=r[4],
                arrived_at=r[5],
            )
            for r in cursor.fetchall()
        ]


def _condition_met(node: Node, ids: list[int], account_id: int) -> set[int]:
    """Who of `ids` meets a condition step's test, or has met an event step's event, now; a
    deleted tag, field, segment or email is met by nobody."""
    if not ids:
        return set()
    if node.kind != Kind.GOAL:
        return _test_met(node.config, ids, account_id)
    spec = goal_spec(node.config)
    if spec.kind == EventKind.TAG_ADDED:
        return _test_met({"test": "has_tag", "tag_id": spec.object_id}, ids, account_id)
    if spec.kind == EventKind.TAG_REMOVED:
        return set(ids) - _test_met({"test": "has_tag", "tag_id": spec.object_id}, ids, account_id)
    if spec.kind == EventKind.FIELD_CHANGED:
        op = "equals" if spec.value else "is_set"
        config = {"test": "field", "key": spec.detail, "op": op, "value": spec.value}
        return _test_met(config, ids, account_id)
    return _engaged(ids, account_id=account_id, link_id=spec.object_id, url_contains=spec.detail)


_FIELD_CHECKS = {
    "equals": lambda value, wanted: value.strip().lower() == wanted.strip().lower(),
    "contains": lambda value, wanted: wanted.strip().lower() in value.lower(),
    "is_set": lambda value, wanted: value != "",
    "is_not_set": lambda value, wanted: value == "",
}


def _test_met(config: dict, ids: list[int], account_id: int) -> set[int]:
    """Who of `ids` passes a condition's test (Node.config of a condition step)."""
    test = config.get("test")
    if test == "has_tag":
        # The id range bounds the scan on tagging_unique (as in subscribers_untag): with the
        # array alone the planner may read the whole tag for every batch.
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT subscriber_id FROM {Tagging._meta.db_table}
                WHERE tag_id = %s AND account_id = %s AND subscriber_id BETWEEN %s AND %s
                  AND subscriber_id = ANY(%s::bigint[])
                """,
                [config.get("tag_id"), account_id, min(ids), max(ids), ids],
            )
            return {row[0] for row in cursor.fetchall()}
    if test == "field":
        key = config.get("key", "")
        check = _FIELD_CHECKS.get(config.get("op"))
        if check is None or not CustomField.objects.filter(account_id=account_id, key=key).exists():
            return set()
        values, wanted = _field_values(account_id, key, ids), config.get("value", "")
        return {pk for pk in ids if check(values.get(pk, ""), wanted)}
    if test == "segment":
        condition, params = segments_condition(
            account_id=account_id,
            segment_ids=[config.get("segment_id")],
            alias="s",
            prefix="cond",
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT s.id FROM {Subscriber._meta.db_table} s
                WHERE s.account_id = %(cond_account)s AND s.id = ANY(%(cond_ids)s::bigint[])
                  AND {condition}
                """,
                {**params, "cond_account": account_id, "cond_ids": ids},
            )
            return {row[0] for row in cursor.fetchall()}
    if test in ("opened", "clicked"):
        return _engaged(
            ids,
            account_id=account_id,
            opened=test == "opened",
            message_id=config.get("message_id"),
            link_id=config.get("link_id") if test == "clicked" else None,
        )
    return set()


def _engaged(
    ids: list[int],
    *,
    account_id: int,
    opened: bool = False,
    message_id: int | None = None,
    link_id: int | None = None,
    url_contains: str = "",
) -> set[int]:
    """Who of `ids` a person (not a machine) opened or clicked: a link (`link_id`), any link
    of the account whose URL contains the text, or (neither) anything in the email
    `message_id` (DeliveryActivity's link 0 row)."""
    where, params = ["a.account_id = %s", "a.subscriber_id = ANY(%s::bigint[])"], [account_id, ids]
    where.append("a.kind = %s")
    params.append(int(TrackedKind.OPEN if opened else TrackedKind.CLICK))
    if link_id:
        where.append("a.link_id = %s")
        params.append(link_id)
    elif url_contains:
        where.append(
            f"a.link_id IN (SELECT id FROM {Link._meta.db_table} "
            "WHERE account_id = %s AND strpos(lower(url), lower(%s)) > 0)"
        )
        params += [account_id, url_contains]
    elif message_id is not None:
        where.append("a.broadcast_id = %s AND a.link_id = 0")
        params.append(message_id)
    else:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT DISTINCT a.subscriber_id FROM {DeliveryActivity._meta.db_table} a
            WHERE {" AND ".join(where)} AND a.first_human_at IS NOT NULL
            """,
            params,
        )
        return {row[0] for row in cursor.fetchall()}


def _note(node: Node) -> str:
    config = node.config
    names = {
        Kind.ADD_TAG: lambda: f"tagged “{_name(Tag, config.get('tag_id'))}”",
        Kind.REMOVE_TAG: lambda: f"removed tag “{_name(Tag, config.get('tag_id'))}”",
        Kind.SET_FIELD: lambda: f"set {config.get('key')} to “{config.get('value', '')}”",
        Kind.SEQUENCE: lambda: f"sequence “{_name(Sequence, config.get('sequence_id'))}”",
        Kind.DELAY: lambda: f"waited {config.get('amount')} {config.get('unit')}",
        Kind.WAIT_UNTIL: lambda: "waited until the chosen time",
        Kind.EMAIL: lambda: f"sent “{node.message.subject if node.message else ''}”",
        Kind.MOVE: lambda: f"moved to “{_name(Automation, config.get('automation_id'))}”",
        Kind.EXIT: lambda: "exited",
        Kind.CONDITION: lambda: "condition",
        Kind.GOAL: lambda: "event",
        Kind.WEBHOOK: lambda: "send a webhook",
    }
    return names[node.kind]()


def _name(model, pk) -> str:
    found = model.objects.filter(pk=pk).values_list("name", flat=True).first()
    return found or "deleted"


def _run_step(
    cursor, *, flow: Flow, node: Node, places: list[_Place], now: datetime, sends: list
) -> None:
    """Runs one step for the journeys standing at it; sets each place's next step, due time or
    state (the caller writes them)."""
    automation = flow.automation
    account_id = automation.account_id
    new = set(
        _history_add(
            cursor,
            account_id=account_id,
            subscriber_ids=[p.subscriber_id for p in places],
            visits=[p.visit for p in places],
            note=_note(node),
            automation_id=automation.pk,
            node_id=node.pk,
        )
    )
    # Steps already run in this visit (a replay) only move on.
    fresh = [p for p in places if p.subscriber_id in new]
    ids = [p.subscriber_id for p in fresh]
    branch_of: dict[int, str] = {}
    waiting: set[int] = set()
    leaving: dict[int, int] = {}
    config = node.config
    if node.kind in (Kind.ADD_TAG, Kind.REMOVE_TAG) and ids:
        tag = Tag.objects.filter(account_id=account_id, pk=config.get("tag_id")).first()
        if tag is not None and node.kind == Kind.ADD_TAG:
            subscribers_tag(account_id=account_id, tag_id=tag.pk, subscriber_ids=ids)
        elif tag is not None:
            subscribers_untag(account_id=account_id, tag_id=tag.pk, subscriber_ids=ids)
    elif node.kind == Kind.SET_FIELD and ids:
        subscribers_field_set(
            account_id=account_id,
            key=config.get("key", ""),
            value=config.get("value", ""),
            subscriber_ids=ids,
        )
    elif node.kind == Kind.SEQUENCE and ids:
        sequence = Sequence.objects.filter(
            account_id=account_id, pk=config.get("sequence_id")
        ).first()
        if sequence is not None:
            subscribers_enrol(
                sequence=sequence,
                source_sql="SELECT unnest(%(step_subscribers)s::bigint[])",
                source_params={"step_subscribers": ids},
                now=now,
            )
            waiting = set(
                Subscription.objects.filter(
                    sequence=sequence,
                    subscriber_id__in=ids,
                    state__in=[Subscription.State.ACTIVE, Subscription.State.UNCONFIRMED],
                ).values_list("subscriber_id", flat=True)
            )
    elif node.kind == Kind.EMAIL and ids:
        message = node.message
        if message is not None and message.frozen_html:
            if message.state != Broadcast.State.SENDING:
                Broadcast.objects.filter(pk=message.pk).update(state=Broadcast.State.SENDING)
            mailable = {p.subscriber_id for p in fresh if p.subscriber_state == "active"}
            sends.extend(
                (message.pk, p.subscriber_id, p.visit) for p in fresh if p.subscriber_id in mailable
            )
    elif node.kind == Kind.CONDITION:
        met = _condition_met(node, [p.subscriber_id for p in places], account_id)
        branch_of = {p.subscriber_id: "yes" if p.subscriber_id in met else "no" for p in places}
    elif node.kind == Kind.GOAL and ids:
        met = _condition_met(node, ids, account_id)
        waiting = set(ids) - met
    elif node.kind == Kind.MOVE and ids:
        target = Automation.objects.filter(
            account_id=account_id, pk=config.get("automation_id")
        ).first()
        leaving = dict.fromkeys(ids, State.EXITED)
        if target is not None:
            journeys_enter(
                automation=target,
                subscriber_ids=ids,
                now=now,
                how=f"moved from “{automation.name}”",
            )
    elif node.kind == Kind.EXIT:
        leaving = {p.subscriber_id: State.EXITED for p in places}
    elif node.kind == Kind.WEBHOOK and ids:
        _webhook_send(account_id, config.get("endpoint"), ids, now)
    for place in places:
        if place.subscriber_id in leaving:
            place.state, place.node_id, place.due_at = leaving[place.subscriber_id], None, None
        elif place.subscriber_id in waiting:
            place.due_at = None
        else:
            following = flow.after(node, branch_of.get(place.subscriber_id, ""))
            if following is None:
                place.state, place.node_id, place.due_at = State.COMPLETED, None, None
            else:
                place.node_id, place.due_at = following.pk, flow.due_on_arrival(following, now)
        place.arrived_at = now if place.node_id != node.pk else place.arrived_at
        place.moved = True


def journeys_advance_batch(
    *, automation: Automation, now: datetime, limit: int | None = None
) -> int:
    """One batch of an active automation's due journeys (see the module docstring); returns
    how many steps ran."""
    limit = limit or settings.AUTOMATION_CLAIM_BATCH
    steps = 0
    with transaction.atomic(), connection.cursor() as cursor:
        places = _claim_journeys(automation.pk, now, limit)
        if not places:
            return 0
        flow = Flow.load(automation)
        sends: list[tuple[int, int, int]] = []
        ready = places
        with effects_depth(1):
            while ready:
                at: dict[int | None, list[_Place]] = defaultdict(list)
                for place in ready:
                    at[place.node_id].append(place)
                for node_id, group in at.items():
                    node = flow.nodes.get(node_id)
                    if node is None:
                        # The step was deleted under them: they are done with this automation.
                        for place in group:
                            place.state, place.node_id, place.due_at = State.COMPLETED, None, None
                        continue
                    _run_step(cursor, flow=flow, node=node, places=group, now=now, sends=sends)
                    steps += len(group)
                ready = [
                    p for p in ready if p.state == State.ACTIVE and p.due_at and p.due_at <= now
                ]
        cursor.execute(
            f"""
            UPDATE {JOURNEY_TABLE} j SET
                state = v.state, node_id = v.node_id, due_at = v.due_at, arrived_at = v.arrived_at
            FROM unnest(%s::bigint[], %s::smallint[], %s::bigint[], %s::timestamptz[],
                        %s::timestamptz[]) AS v(id, state, node_id, due_at, arrived_at)
            WHERE j.id = v.id
            """,
            [
                [p.id for p in places],
                [int(p.state) for p in places],
                [p.node_id for p in places],
                [p.due_at for p in places],
                [p.arrived_at for p in places],
            ],
        )
        created = deliveries_queue(account_id=automation.account_id, sends=sends, now=now)
    deliveries_publish(created)
    return steps


# Date entry points ----------------------------------------------------------------------------

# Subscribers entered per statement by a date entry point.
DATE_ENTRY_BATCH = 10_000


def _month_days(day: date) -> list[str]:
    """The "-MM-DD" endings of the dates whose day comes round on `day`: a 29 February comes
    round on the 28th in other years."""
    endings = [day.strftime("-%m-%d")]
    if (day.month, day.day) == (2, 28) and (day + timedelta(days=1)).month == 3:
        endings.append("-02-29")
    return endings


def date_entries_run(*, now: datetime | None = None) -> int:
    """Enters, once a year each, the subscribers whose date field's day and month come round
    today, from the entry point's hour in the account's zone on. Each entry point's day is
    claimed by a conditional UPDATE in the transaction that enters them, so a second run (or a
    rerun after a crash) enters nobody twice. Values that are not real dates (2023-02-30, "soon")
    never match. Returns how many entered."""
    now = now or timezone.now()
    entered = 0
    entries = (
        Trigger.objects.filter(role=Trigger.Role.ENTRY, kind=EventKind.DATE_OCCURS)
        .exclude(automation__state=Automation.State.INACTIVE)
        .select_related("automation__account")
        .order_by("id")
    )
    for trigger in entries:
        automation = trigger.automation
        local = now.astimezone(ZoneInfo(automation.account.time_zone or "UTC"))
        if trigger.hour is None or local.hour < trigger.hour:
            continue
        today = local.date()
        with transaction.atomic():
            claimed = Trigger.objects.filter(pk=trigger.pk).exclude(last_fired_on__gte=today)
            if not claimed.update(last_fired_on=today):
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    SELECT id FROM {Subscriber._meta.db_table}
                    WHERE account_id = %(account)s AND state = %(active)s
                      AND fields ->> %(key)s ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$'
                      AND right(fields ->> %(key)s, 6) = ANY(%(endings)s)
                    ORDER BY id
                    """,
                    {
                        "account": automation.account_id,
                        "active": Subscriber.State.ACTIVE,
                        "key": trigger.detail,
                        "endings": _month_days(today),
                    },
                )
                ids = [row[0] for row in cursor.fetchall()]
            for start in range(0, len(ids), DATE_ENTRY_BATCH):
                entered += len(
                    journeys_enter(
                        automation=automation,
                        subscriber_ids=ids[start : start + DATE_ENTRY_BATCH],
                        now=now,
                        how=f"date in {trigger.detail} occurs",
                    )
                )
    return entered


def automations_due(*, now: datetime) -> list[Automation]:
    """The active automations with a journey due: one index probe each."""
    return list(
        Automation.objects.raw(
            f"""
            SELECT a.* FROM {Automation._meta.db_table} a
            WHERE a.state = %s AND EXISTS (
                SELECT 1 FROM {JOURNEY_TABLE} j WHERE j.automation_id = a.id AND j.due_at <= %s)
            ORDER BY a.id
            """,
            [Automation.State.ACTIVE, now],
        )
    )


def outbox_run(*, now: datetime | None = None, budget: float | None = None) -> EngineReport:
    """Consumes the outbox batch by batch until it is empty or the time budget is spent (the
    task automations.consume). `now` is the clock (tests move it); without it each batch reads
    the time."""
    budget = RUN_TIME_BUDGET if budget is None else budget
    started = time.monotonic()
    total = EngineReport()
    while time.monotonic() - started < budget:
        report = events_consume_safely(now=now or timezone.now())
        total.add(report)
        if report.events == 0:
            break
    if total.events:
        logger.info("Automation events consumed: %s", total)
    return total


def journeys_run(*, now: datetime | None = None, budget: float | None = None) -> int:
    """Advances the due journeys of every active automation, batch by batch, round-robin, until
    none is due or the time budget is spent (the task automations.advance); returns how many
    steps ran."""
    budget = RUN_TIME_BUDGET if budget is None else budget
    started = time.monotonic()
    steps = 0
    while time.monotonic() - started < budget:
        current = now or timezone.now()
        due = automations_due(now=current)
        progressed = 0
        for automation in due:
            progressed += journeys_advance_batch(automation=automation, now=current)
            if time.monotonic() - started >= budget:
                break
        steps += progressed
        if not progressed:
            # Nothing due, or all of it locked by another run right now.
            break
    if steps:
        logger.info("Automation steps run: %s", steps)
    return steps


def automations_run(*, now: datetime | None = None, budget: float | None = None) -> EngineReport:
    """Both halves of the engine, one after the other, until neither has work left or the time
    budget is spent: what the tests and the commands run (beat runs each half as its own task,
    so that two workers run them side by side)."""
    budget = RUN_TIME_BUDGET if budget is None else budget
    started = time.monotonic()
    total = EngineReport()
    while time.monotonic() - started < budget:
        left = budget - (time.monotonic() - started)
        report = outbox_run(now=now, budget=left)
        total.add(report)
        steps = journeys_run(now=now, budget=max(0.0, budget - (time.monotonic() - started)))
        total.steps += steps
        if report.events == 0 and steps == 0:
            break
    return total
