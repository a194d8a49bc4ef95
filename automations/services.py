"""Every write to rules and automations: what a creator builds, checked before anything is
saved. A problem raises AutomationInvalid with every reason (nothing changed): another account's
tag, form, sequence, segment, field, link or automation; a deleted one; a "move to automation"
that would make a loop; an impossible date.

Edits are not retroactive, as in Kit: whoever passed a step does not go back for a step added
above them. Unlike Kit, nobody is stranded: deleting a step moves whoever stands at it to the
step that takes its place (or out of the automation, when none does), and the builder shows how
many stand at each step before the creator deletes or changes it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from automations.models import Automation, EventKind, Journey, Node, Rule, Trigger
from broadcasts.models import Broadcast
from broadcasts.rendering import RenderFailed
from broadcasts.services import content_problems, message_freeze
from convertkit.models import Account
from convertkit.tenancy import ids_not_owned
from sequences.models import Sequence
from subscribers.models import CustomField, Form, Segment, Tag
from tracking.models import Link
from webhooks.models import WebhookEndpoint

Kind = Node.Kind
Branch = Node.Branch


class AutomationInvalid(Exception):
    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


# What each trigger, entry point or goal kind names.
_OBJECT_MODEL = {
    EventKind.TAG_ADDED: Tag,
    EventKind.TAG_REMOVED: Tag,
    EventKind.FORM_JOINED: Form,
    EventKind.SEQUENCE_SUBSCRIBED: Sequence,
    EventKind.SEQUENCE_COMPLETED: Sequence,
    EventKind.LINK_CLICKED: Link,
}
RULE_TRIGGER_KINDS = (
    EventKind.FORM_JOINED,
    EventKind.TAG_ADDED,
    EventKind.TAG_REMOVED,
    EventKind.SEQUENCE_SUBSCRIBED,
    EventKind.SEQUENCE_COMPLETED,
    EventKind.LINK_CLICKED,
    EventKind.FIELD_CHANGED,
    EventKind.UNSUBSCRIBED,
)
ENTRY_KINDS = (
    EventKind.FORM_JOINED,
    EventKind.TAG_ADDED,
    EventKind.FIELD_CHANGED,
    EventKind.DATE_OCCURS,
    EventKind.SEQUENCE_SUBSCRIBED,
)
GOAL_KINDS = (
    EventKind.TAG_ADDED,
    EventKind.TAG_REMOVED,
    EventKind.FIELD_CHANGED,
    EventKind.LINK_CLICKED,
)
# Kinds whose object may be left out to mean "any": any form.
_ANY_OBJECT_KINDS = (EventKind.FORM_JOINED,)


class ActionKind:
    ADD_TAG = "add_tag"
    REMOVE_TAG = "remove_tag"
    SUBSCRIBE_SEQUENCE = "subscribe_sequence"
    REMOVE_SEQUENCE = "remove_sequence"
    SET_FIELD = "set_field"
    UNSUBSCRIBE = "unsubscribe"
    # object_id: one of the account's webhook endpoints (webhooks.WebhookEndpoint).
    SEND_WEBHOOK = "send_webhook"

    LABELS = {
        ADD_TAG: "Add tag",
        REMOVE_TAG: "Remove tag",
        SUBSCRIBE_SEQUENCE: "Subscribe to sequence",
        REMOVE_SEQUENCE: "Remove from sequence",
        SET_FIELD: "Set custom field",
        UNSUBSCRIBE: "Unsubscribe",
        SEND_WEBHOOK: "Send a webhook",
    }


_ACTION_MODEL = {
    ActionKind.ADD_TAG: Tag,
    ActionKind.REMOVE_TAG: Tag,
    ActionKind.SUBSCRIBE_SEQUENCE: Sequence,
    ActionKind.REMOVE_SEQUENCE: Sequence,
    ActionKind.SEND_WEBHOOK: WebhookEndpoint,
}

DELAY_UNITS = {"minutes": 60, "hours": 3600, "days": 86400, "weeks": 7 * 86400}
# The longest delay: a year.
MAX_DELAY_SECONDS = 366 * 86400
CONDITION_TESTS = ("has_tag", "field", "segment", "opened", "clicked")
FIELD_OPS = ("equals", "contains", "is_set", "is_not_set")
WAIT_MODES = ("date", "weekday", "hour")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class TriggerSpec:
    """What a rule trigger, an entry point or a goal waits for (see Trigger)."""

    kind: str
    object_id: int | None = None
    detail: str = ""
    value: str = ""
    hour: int | None = None


@dataclass
class _Problems:
    account_id: int
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.problems.append(problem)

    def owned(self, model, pk, what: str) -> None:
        """`pk` must name a live row of the account's `model`."""
        try:
            _, unknown = ids_not_owned(model, account_id=self.account_id, ids=[pk])
        except (TypeError, ValueError):
            unknown = [pk]
        if unknown:
            self.add(f"Choose one of your {what}s: that {what} does not exist.")

    def field_key(self, key: str) -> None:
        if not CustomField.objects.filter(account_id=self.account_id, key=key).exists():
            self.add(f"Choose one of your custom fields: “{key}” does not exist.")

    def raise_any(self) -> None:
        if self.problems:
            raise AutomationInvalid(" ".join(self.problems), problems=list(self.problems))


def _trigger_check(problems: _Problems, spec: TriggerSpec, *, allowed) -> None:
    if spec.kind not in allowed:
        problems.add(f"“{spec.kind}” cannot start this.")
        return
    kind = EventKind(spec.kind)
    if kind == EventKind.LINK_CLICKED and spec.object_id is None:
        if not spec.detail.strip():
            problems.add("Choose a link, or give the text its URL contains.")
    elif kind in (EventKind.FIELD_CHANGED, EventKind.DATE_OCCURS):
        problems.field_key(spec.detail)
        if kind == EventKind.DATE_OCCURS and (spec.hour is None or not 0 <= spec.hour <= 23):
            problems.add("Choose the hour of the day, 0 to 23.")
    elif kind in _OBJECT_MODEL:
        if spec.object_id is None and kind not in _ANY_OBJECT_KINDS:
            problems.add(f"Choose the {_OBJECT_MODEL[kind]._meta.verbose_name}.")
        elif spec.object_id is not None:
            problems.owned(
                _OBJECT_MODEL[kind], spec.object_id, _OBJECT_MODEL[kind]._meta.verbose_name
            )


def _trigger_row(account_id: int, spec: TriggerSpec, **owner) -> Trigger:
    return Trigger(
        account_id=account_id,
        kind=spec.kind,
        object_id=spec.object_id,
        detail=spec.detail.strip(),
        value=spec.value.strip(),
        hour=spec.hour,
        **owner,
    )


# Rules -----------------------------------------------------------------------------------------


def _action_check(problems: _Problems, action: dict) -> dict:
    kind = action.get("kind")
    if kind not in ActionKind.LABELS:
        problems.add(f"“{kind}” is not an action.")
        return {}
    cleaned: dict = {"kind": kind}
    if kind in _ACTION_MODEL:
        model = _ACTION_MODEL[kind]
        problems.owned(model, action.get("object_id"), model._meta.verbose_name)
        with contextlib.suppress(TypeError, ValueError):
            cleaned["object_id"] = int(action.get("object_id"))
    elif kind == ActionKind.SET_FIELD:
        key = str(action.get("detail", ""))
        problems.field_key(key)
        cleaned["detail"], cleaned["value"] = key, str(action.get("value", ""))[:2000]
    return cleaned


def rule_save(
    *,
    account: Account,
    name: str,
    triggers: list[TriggerSpec],
    actions: list[dict],
    enabled: bool = True,
    rule: Rule | None = None,
) -> Rule:
    """Creates the rule (or replaces `rule`'s name, triggers and actions); AutomationInvalid
    with every problem, nothing saved."""
    problems = _Problems(account.id)
    if not name.strip():
        problems.add("Give the rule a name.")
    if not triggers:
        problems.add("Add at least one trigger.")
    if not actions:
        problems.add("Add at least one action.")
    for spec in triggers:
        _trigger_check(problems, spec, allowed=RULE_TRIGGER_KINDS)
    cleaned = [_action_check(problems, action) for action in actions]
    problems.raise_any()
    with transaction.atomic():
        if rule is None:
            rule = Rule.objects.create(
                account=account, name=name.strip()[:255], enabled=enabled, actions=cleaned
            )
        else:
            rule.name, rule.enabled, rule.actions = name.strip()[:255], enabled, cleaned
            rule.save(update_fields=["name", "enabled", "actions", "updated_at"])
            rule.triggers.all().delete()
        Trigger.objects.bulk_create(
            [_trigger_row(account.id, spec, role=Trigger.Role.RULE, rule=rule) for spec in triggers]
        )
    return rule


def rule_enable(*, rule: Rule, enabled: bool) -> None:
    Rule.objects.filter(pk=rule.pk).update(enabled=enabled, updated_at=timezone.now())
    rule.enabled = enabled


def rule_delete(*, rule: Rule) -> None:
    rule.delete()


# Automations -----------------------------------------------------------------------------------


def automation_create(*, account: Account, name: str) -> Automation:
    if not name.strip():
        raise AutomationInvalid("Give the automation a name.")
    return Automation.objects.create(account=account, name=name.strip()[:255])


def automation_update(
    *, automation: Automation, name: str, reentry: bool, daily_entry_limit: int
) -> Automation:
    problems = _Problems(automation.account_id)
    if not name.strip():
        problems.add("Give the automation a name.")
    if not 1 <= daily_entry_limit <= 100:
        problems.add("The daily entry limit is between 1 and 100.")
    problems.raise_any()
    automation.name, automation.reentry = name.strip()[:255], reentry
    automation.daily_entry_limit = daily_entry_limit
    automation.save(update_fields=["name", "reentry", "daily_entry_limit", "updated_at"])
    return automation


def automation_problems(automation: Automation) -> list[str]:
    """Why the automation cannot be made active or paused (nobody could enter, or a step cannot
    run)."""
    problems = []
    if not automation.triggers.filter(role=Trigger.Role.ENTRY).exists():
        problems.append("Add an entry point: how subscribers enter.")
    if not live_nodes(automation).exists():
        problems.append("Add at least one step.")
    for node in live_nodes(automation).filter(kind=Kind.EMAIL).select_related("message"):
        if node.message is None or not node.message.frozen_html:
            problems.append("Finish the email of each “send one email” step.")
            break
    return problems


def automation_state_set(*, automation: Automation, state: str) -> None:
    """Active, paused or inactive; AutomationInvalid (with why) when it cannot run."""
    if state not in Automation.State.values:
        raise AutomationInvalid(f"“{state}” is not a state.")
    if state != Automation.State.INACTIVE:
        problems = automation_problems(automation)
        if problems:
            raise AutomationInvalid(" ".join(problems), problems=problems)
    Automation.objects.filter(pk=automation.pk).update(state=state, updated_at=timezone.now())
    automation.state = state


def automation_delete(*, automation: Automation) -> None:
    """Deletes the automation, whoever is in it, its steps and triggers (history stays)."""
    with transaction.atomic():
        if (
            Node.objects.filter(
                kind=Kind.MOVE, deleted_at__isnull=True, config__automation_id=automation.pk
            )
            .exclude(automation=automation)
            .exists()
        ):
            raise AutomationInvalid(
                "Another automation moves people to this one: change that step first."
            )
        Journey.objects.filter(automation=automation).delete()
        Trigger.objects.filter(automation=automation).delete()
        Node.objects.filter(automation=automation).update(parent=None, deleted_at=timezone.now())
        Node.objects.filter(automation=automation).delete()
        automation.delete()


def entry_add(*, automation: Automation, spec: TriggerSpec) -> Trigger:
    problems = _Problems(automation.account_id)
    _trigger_check(problems, spec, allowed=ENTRY_KINDS)
    problems.raise_any()
    trigger = _trigger_row(
        automation.account_id, spec, role=Trigger.Role.ENTRY, automation=automation
    )
    trigger.save()
    return trigger


def entry_delete(*, trigger: Trigger) -> None:
    trigger.delete()


# Steps -----------------------------------------------------------------------------------------


def live_nodes(automation: Automation):
    return Node.objects.filter(automation=automation, deleted_at__isnull=True)


def _moves_to(account_id: int) -> dict[int, set[int]]:
    edges: dict[int, set[int]] = {}
    for source, config in Node.objects.filter(
        account_id=account_id, kind=Kind.MOVE, deleted_at__isnull=True
    ).values_list("automation_id", "config"):
        edges.setdefault(source, set()).add(int(config.get("automation_id", 0)))
    return edges


def _move_loop(*, account_id: int, source: int, target: int) -> bool:
    """Whether a move from `source` to `target` closes a loop of moves between automations."""
    edges = _moves_to(account_id)
    seen, stack = set(), [target]
    while stack:
        current = stack.pop()
        if current == source:
            return True
        if current in seen:
            continue
        seen.add(current)
        stack.extend(edges.get(current, ()))
    return False


def _valid_date(value: str) -> bool:
    if not _DATE.match(value or ""):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _config_check(problems: _Problems, automation: Automation, kind: str, config: dict) -> dict:
    """The node's config, cleaned, with every problem added."""
    config = config or {}

    def integer(name: str, what: str):
        try:
            return int(config.get(name))
        except (TypeError, ValueError):
            problems.add(f"Choose the {what}.")
            return None

    if kind in (Kind.ADD_TAG, Kind.REMOVE_TAG):
        pk = integer("tag_id", "tag")
        if pk is not None:
            problems.owned(Tag, pk, "tag")
        return {"tag_id": pk}
    if kind == Kind.SEQUENCE:
        pk = integer("sequence_id", "sequence")
        if pk is not None:
            problems.owned(Sequence, pk, "sequence")
        return {"sequence_id": pk}
    if kind == Kind.SET_FIELD:
        key = str(config.get("key", ""))
        problems.field_key(key)
        return {"key": key, "value": str(config.get("value", ""))[:2000]}
    if kind == Kind.DELAY:
        amount, unit = integer("amount", "length of the delay"), config.get("unit")
        if unit not in DELAY_UNITS:
            problems.add("The delay is in minutes, hours, days or weeks.")
        elif amount is not None and not 1 <= amount * DELAY_UNITS[unit] <= MAX_DELAY_SECONDS:
            problems.add("A delay is at least one minute and at most a year.")
        return {"amount": amount, "unit": unit}
    if kind == Kind.WAIT_UNTIL:
        mode, hour = config.get("mode"), integer("hour", "hour")
        if hour is not None and not 0 <= hour <= 23:
            problems.add("Choose the hour of the day, 0 to 23.")
        cleaned = {"mode": mode, "hour": hour}
        if mode == "date":
            if not _valid_date(str(config.get("date", ""))):
                problems.add(f"“{config.get('date', '')}” is not a date (YYYY-MM-DD).")
            cleaned["date"] = str(config.get("date", ""))
        elif mode == "weekday":
            try:
                days = sorted({int(day) for day in config.get("days") or []})
            except (TypeError, ValueError):
                days = []
            if not days or any(day not in range(7) for day in days):
                problems.add("Choose at least one day of the week.")
            cleaned["days"] = days
        elif mode != "hour":
            problems.add("Wait until a date, a day of the week or an hour.")
        return cleaned
    if kind == Kind.MOVE:
        pk = integer("automation_id", "automation")
        if pk is not None:
            problems.owned(Automation, pk, "automation")
            if pk == automation.pk or _move_loop(
                account_id=automation.account_id, source=automation.pk, target=pk
            ):
                problems.add(
                    "That would move people in a loop: the other automation leads back here."
                )
        return {"automation_id": pk}
    if kind == Kind.CONDITION:
        test = config.get("test")
        cleaned = {"test": test}
        if test == "has_tag":
            cleaned["tag_id"] = integer("tag_id", "tag")
            if cleaned["tag_id"] is not None:
                problems.owned(Tag, cleaned["tag_id"], "tag")
        elif test == "segment":
            cleaned["segment_id"] = integer("segment_id", "segment")
            if cleaned["segment_id"] is not None:
                problems.owned(Segment, cleaned["segment_id"], "segment")
        elif test == "field":
            cleaned["key"], cleaned["op"] = str(config.get("key", "")), config.get("op")
            cleaned["value"] = str(config.get("value", ""))[:255]
            problems.field_key(cleaned["key"])
            if cleaned["op"] not in FIELD_OPS:
                problems.add("Choose how the field is compared.")
        elif test in ("opened", "clicked"):
            cleaned["message_id"] = integer("message_id", "email")
            if cleaned["message_id"] is not None:
                problems.owned(Broadcast, cleaned["message_id"], "email")
            if test == "clicked" and config.get("link_id") not in (None, ""):
                cleaned["link_id"] = integer("link_id", "link")
                if (
                    cleaned["link_id"] is not None
                    and not Link.objects.filter(
                        pk=cleaned["link_id"], broadcast_id=cleaned["message_id"]
                    ).exists()
                ):
                    problems.add("Choose a link of that email.")
        else:
            problems.add("Choose what the condition tests.")
        return cleaned
    if kind == Kind.GOAL:
        spec = goal_spec(config)
        _trigger_check(problems, spec, allowed=GOAL_KINDS)
        return {
            "kind": spec.kind,
            "object_id": spec.object_id,
            "detail": spec.detail,
            "value": spec.value,
        }
    if kind == Kind.WEBHOOK:
        pk = integer("endpoint", "webhook")
        if pk is not None:
            problems.owned(WebhookEndpoint, pk, "webhook")
        return {"endpoint": pk}
    if kind in (Kind.EMAIL, Kind.EXIT):
        return {}
    problems.add(f"“{kind}” is not a step.")
    return {}


def goal_spec(config: dict) -> TriggerSpec:
    object_id = config.get("object_id")
    try:
        object_id = None if object_id in (None, "") else int(object_id)
    except (TypeError, ValueError):
        object_id = -1
    return TriggerSpec(
        kind=str(config.get("kind", "")),
        object_id=object_id,
        detail=str(config.get("detail", "")),
        value=str(config.get("value", "")),
    )


def _listener_sync(node: Node) -> None:
    """The step's Trigger row: an event step's goal, or a sequence step's wait for "completes
    the sequence" (the outbox writes only events something listens for)."""
    Trigger.objects.filter(node=node).delete()
    if node.deleted_at is not None:
        return
    if node.kind == Kind.GOAL:
        spec, role = goal_spec(node.config), Trigger.Role.GOAL
    elif node.kind == Kind.SEQUENCE:
        spec = TriggerSpec(
            kind=EventKind.SEQUENCE_COMPLETED, object_id=node.config.get("sequence_id")
        )
        role = Trigger.Role.WAIT
    else:
        return
    _trigger_row(
        node.account_id, spec, role=role, automation_id=node.automation_id, node=node
    ).save()


def _place(automation: Automation, parent: Node | None, branch: str) -> Node | None:
    """The live node at that place of the tree."""
    return live_nodes(automation).filter(parent=parent, branch=branch).first()


def node_add(
    *,
    automation: Automation,
    parent: Node | None,
    branch: str,
    kind: str,
    config: dict | None = None,
) -> Node:
    """Inserts a step at a place of the tree (under `parent` on `branch`; parent None: first).

    The step that stood there hangs under the new one (under "yes" for a condition). Whoever
    waits further down stays where they are: an edit is not retroactive.
    """
    problems = _Problems(automation.account_id)
    if parent is not None and (parent.automation_id != automation.pk or parent.deleted_at):
        problems.add("That place is not in this automation.")
    elif parent is None and branch:
        problems.add("The first step has no branch.")
    elif parent is not None and (branch in ("yes", "no")) != (parent.kind == Kind.CONDITION):
        problems.add("Only a condition has yes and no branches.")
    if branch not in Branch.values:
        problems.add("That place is not in this automation.")
    if parent is not None and parent.kind in (Kind.EXIT, Kind.MOVE):
        problems.add("Nothing comes after an exit or a move to another automation.")
    cleaned = _config_check(problems, automation, kind, config or {})
    problems.raise_any()
    with transaction.atomic():
        Automation.objects.select_for_update().filter(pk=automation.pk).first()
        below = _place(automation, parent, branch)
        if below is not None and kind in (Kind.EXIT, Kind.MOVE):
            raise AutomationInvalid(
                "An exit or a move ends a branch: add it at the end, or delete the steps below."
            )
        if below is not None:
            # Make room: the node below steps aside while the new one takes its place.
            Node.objects.filter(pk=below.pk).update(branch="tmp")
        node = Node.objects.create(
            account_id=automation.account_id,
            automation=automation,
            parent=parent,
            branch=branch,
            kind=kind,
            config=cleaned,
        )
        if below is not None:
            Node.objects.filter(pk=below.pk).update(
                parent=node, branch=Branch.YES if kind == Kind.CONDITION else Branch.NEXT
            )
        if kind == Kind.EMAIL:
            node.message = Broadcast.objects.create(
                account_id=automation.account_id,
                kind=Broadcast.Kind.AUTOMATION_EMAIL,
                email_template=automation.account.default_email_template,
                fanned_out_at=timezone.now(),
            )
            node.save(update_fields=["message"])
        _listener_sync(node)
    return node


def node_update(*, node: Node, config: dict) -> Node:
    """Changes a step's settings; whoever stands at it is told nothing new (not retroactive):
    a changed delay counts for those who arrive after the change."""
    automation = node.automation
    problems = _Problems(node.account_id)
    cleaned = _config_check(problems, automation, node.kind, config)
    problems.raise_any()
    with transaction.atomic():
        node.config = cleaned
        node.save(update_fields=["config"])
        _listener_sync(node)
    return node


def node_email_update(
    *,
    node: Node,
    subject: str,
    preview_text: str,
    body: str,
    body_format: str,
    email_template: str | None = None,
) -> list[str]:
    """Saves the email of a "send one email" step; returns why it cannot go out as written
    ([] when it can). One that can is frozen for the pipeline in the same transaction
    (broadcasts.services.message_freeze), so the next copy sent is the edited one. One that was
    ready before must stay ready (people may be getting it): AutomationInvalid with its
    problems, nothing saved. One never ready is saved as it is, to be finished later
    (automation_problems keeps the automation from running until then)."""
    message = node.message
    values = {
        "subject": subject,
        "preview_text": preview_text,
        "body": body,
        "body_format": body_format,
        "email_template": message.email_template if email_template is None else email_template,
    }
    for name, value in values.items():
        setattr(message, name, value)
    problems = content_problems(message=message)
    if problems and message.frozen_html:
        raise AutomationInvalid(" ".join(problems), problems=problems)
    with transaction.atomic():
        Broadcast.objects.filter(pk=message.pk).update(**values, updated_at=timezone.now())
        if not problems:
            try:
                message_freeze(message=message)
            except RenderFailed as failed:
                raise AutomationInvalid(str(failed)) from None
    return problems


def node_delete(*, node: Node, now: datetime | None = None) -> int:
    """Deletes the step: the step below it takes its place, and whoever stands at it moves to
    that step (or leaves the automation, when nothing follows). A condition with steps under
    both branches cannot be deleted (delete one branch's steps first). Returns how many moved."""
    from automations.engine import journeys_place

    now = now or timezone.now()
    with transaction.atomic():
        Automation.objects.select_for_update().filter(pk=node.automation_id).first()
        children = list(Node.objects.filter(parent=node, deleted_at__isnull=True))
        if len(children) > 1:
            raise AutomationInvalid(
                "Both branches of this condition have steps: delete one branch's steps first."
            )
        heir = children[0] if children else None
        Node.objects.filter(pk=node.pk).update(deleted_at=now)
        if heir is not None:
            Node.objects.filter(pk=heir.pk).update(parent_id=node.parent_id, branch=node.branch)
        Trigger.objects.filter(node=node).delete()
        moved = journeys_place(
            automation=node.automation, from_node_id=node.pk, to_node_id=heir and heir.pk, now=now
        )
    return moved


def node_counts(*, automation: Automation) -> dict[int, int]:
    """How many people stand at each step (for the builder): one grouped index scan."""
    return dict(
        Journey.objects.filter(automation=automation, state=Journey.State.ACTIVE)
        .values_list("node_id")
        .annotate(n=Count("id"))
        .values_list("node_id", "n")
    )


def journey_counts(*, automation: Automation) -> dict[str, int]:
    counts = Journey.objects.filter(automation=automation).aggregate(
        active=Count("id", filter=Q(state=Journey.State.ACTIVE)),
        completed=Count("id", filter=Q(state=Journey.State.COMPLETED)),
        exited=Count("id", filter=Q(state=Journey.State.EXITED)),
    )
    return counts
