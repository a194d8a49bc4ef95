"""What the automation pages read: the builder's tree of steps (each in words, with how many
people stand at it), entry points in words, the list, and a subscriber's automations and
history.

Steps and entry points name tags, sequences, segments, fields, emails, links and other
automations by id; `Names` reads the names of those a page shows, one query per kind of object,
so a page costs the same whatever the number of its steps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db.models import Count, Q

from automations.models import Automation, EventKind, History, Journey, Node, Rule, Trigger
from automations.services import live_nodes, node_counts
from broadcasts.models import Broadcast
from convertkit.paging import KeysetPage, keyset_page
from sequences.models import Sequence
from subscribers.models import CustomField, Form, Segment, Subscriber, Tag
from tracking.models import Link

Kind = Node.Kind
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
STATE_BADGES = {
    Automation.State.ACTIVE: "active",
    Automation.State.PAUSED: "paused",
    Automation.State.INACTIVE: "draft",
}
STATE_HELP = {
    Automation.State.ACTIVE: "People enter and move through it.",
    Automation.State.PAUSED: "People enter and wait at the start; nobody moves.",
    Automation.State.INACTIVE: "Nobody enters and nobody moves.",
}
JOURNEY_BADGES = {
    Journey.State.ACTIVE: "active",
    Journey.State.COMPLETED: "sent",
    Journey.State.EXITED: "draft",
}
HISTORY_SHOWN = 20
# A step's email is named, never rendered, on these pages: its bodies are not read.
_MESSAGE_BODIES = ("message__body", "message__frozen_html", "message__frozen_text")


def hour_words(hour) -> str:
    return f"{int(hour):02d}:00" if isinstance(hour, int) else "a chosen hour"


def _plural(amount, unit: str) -> str:
    """ "2 days", "1 day" (unit given in the plural)."""
    return f"{amount} {unit[:-1] if amount == 1 else unit}"


def _date_words(value: str) -> str:
    try:
        return f"{date.fromisoformat(value):%-d %B %Y}"
    except (TypeError, ValueError):
        return f"“{value}”"


def _or_words(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


# Names --------------------------------------------------------------------------------------


class Names:
    """The names of the objects steps and entry points refer to: `want_*` what a page shows,
    `load()` once, then `tag(pk)`, `field(key)` ... ("a deleted tag" when it is gone)."""

    _MODELS = {
        "tag": (Tag, "name"),
        "sequence": (Sequence, "name"),
        "segment": (Segment, "name"),
        "automation": (Automation, "name"),
        "form": (Form, "name"),
    }

    def __init__(self, account) -> None:
        self.account = account
        self._wanted: dict[str, set] = defaultdict(set)
        self._names: dict[str, dict] = defaultdict(dict)

    def _want(self, what: str, value) -> None:
        if value is not None and value != "":
            self._wanted[what].add(value)

    def want_config(self, kind: str, config: dict) -> None:
        if kind in (Kind.ADD_TAG, Kind.REMOVE_TAG):
            self._want("tag", config.get("tag_id"))
        elif kind == Kind.SEQUENCE:
            self._want("sequence", config.get("sequence_id"))
        elif kind == Kind.SET_FIELD:
            self._want("field", config.get("key"))
        elif kind == Kind.MOVE:
            self._want("automation", config.get("automation_id"))
        elif kind == Kind.CONDITION:
            self._want("tag", config.get("tag_id"))
            self._want("segment", config.get("segment_id"))
            self._want("field", config.get("key"))
            self._want("email", config.get("message_id"))
            self._want("link", config.get("link_id"))
        elif kind == Kind.GOAL:
            self.want_event(config.get("kind", ""), config.get("object_id"), config.get("detail"))

    def want_event(self, kind: str, object_id, detail) -> None:
        if kind in (EventKind.TAG_ADDED, EventKind.TAG_REMOVED):
            self._want("tag", object_id)
        elif kind == EventKind.FORM_JOINED:
            self._want("form", object_id)
        elif kind == EventKind.SEQUENCE_SUBSCRIBED:
            self._want("sequence", object_id)
        elif kind == EventKind.LINK_CLICKED:
            self._want("link", object_id)
        elif kind in (EventKind.FIELD_CHANGED, EventKind.DATE_OCCURS):
            self._want("field", detail)

    def load(self) -> Names:
        account_id = self.account.pk
        for what, ids in self._wanted.items():
            if what in self._MODELS:
                model, column = self._MODELS[what]
                ids = {pk for pk in ids if isinstance(pk, int)}
                self._names[what] = dict(
                    model.objects.filter(account_id=account_id, pk__in=ids).values_list(
                        "pk", column
                    )
                )
            elif what == "field":
                self._names[what] = dict(
                    CustomField.objects.filter(account_id=account_id, key__in=ids).values_list(
                        "key", "label"
                    )
                )
            elif what == "email":
                self._names[what] = {
                    pk: Broadcast.name_of(
                        description=description, subject=subject, account=self.account
                    )
                    for pk, description, subject in Broadcast.objects.filter(
                        account_id=account_id, pk__in=ids
                    ).values_list("pk", "description", "subject")
                }
            elif what == "link":
                self._names[what] = dict(
                    Link.objects.filter(account_id=account_id, pk__in=ids).values_list("pk", "url")
                )
        return self

    def _named(self, what: str, pk, gone: str) -> str:
        name = self._names[what].get(pk)
        return f"“{name}”" if name is not None else gone

    def tag(self, pk) -> str:
        return self._named("tag", pk, "a deleted tag")

    def sequence(self, pk) -> str:
        return self._named("sequence", pk, "a deleted sequence")

    def segment(self, pk) -> str:
        return self._named("segment", pk, "a deleted segment")

    def automation(self, pk) -> str:
        return self._named("automation", pk, "a deleted automation")

    def form(self, pk) -> str:
        return self._named("form", pk, "a deleted form")

    def email(self, pk) -> str:
        return self._named("email", pk, "a deleted email")

    def link(self, pk) -> str:
        return self._names["link"].get(pk) or "a deleted link"

    def field(self, key) -> str:
        return self._named("field", key, f"the deleted field “{key}”")


# Words --------------------------------------------------------------------------------------


def event_words(
    names: Names, *, kind: str, object_id=None, detail: str = "", value: str = "", hour=None
) -> str:
    """An entry point or a goal ("event") in words: "Tag “Customer” is added"."""
    if kind == EventKind.FORM_JOINED:
        return "Joins any form" if object_id is None else f"Joins the form {names.form(object_id)}"
    if kind == EventKind.TAG_ADDED:
        return f"Tag {names.tag(object_id)} is added"
    if kind == EventKind.TAG_REMOVED:
        return f"Tag {names.tag(object_id)} is removed"
    if kind == EventKind.FIELD_CHANGED:
        return f"{names.field(detail)} is set" + (f" to “{value}”" if value else "")
    if kind == EventKind.DATE_OCCURS:
        return f"The day of {names.field(detail)} comes round (every year), at {hour_words(hour)}"
    if kind == EventKind.SEQUENCE_SUBSCRIBED:
        return f"Subscribes to the sequence {names.sequence(object_id)}"
    if kind == EventKind.LINK_CLICKED:
        if object_id is not None:
            return f"Clicks {names.link(object_id)}"
        return f"Clicks a link whose address contains “{detail}”"
    return str(EventKind(kind).label) if kind in EventKind.values else kind


def trigger_words(names: Names, trigger: Trigger) -> str:
    return event_words(
        names,
        kind=trigger.kind,
        object_id=trigger.object_id,
        detail=trigger.detail,
        value=trigger.value,
        hour=trigger.hour,
    )


def _condition_words(names: Names, config: dict) -> str:
    test = config.get("test")
    if test == "has_tag":
        return f"Has the tag {names.tag(config.get('tag_id'))}?"
    if test == "segment":
        return f"In the segment {names.segment(config.get('segment_id'))}?"
    if test == "field":
        field_name, op = names.field(config.get("key")), config.get("op")
        if op == "is_set":
            return f"{field_name} is set?"
        if op == "is_not_set":
            return f"{field_name} is not set?"
        verb = "contains" if op == "contains" else "is"
        return f"{field_name} {verb} “{config.get('value', '')}”?"
    if test == "opened":
        return f"Opened {names.email(config.get('message_id'))}?"
    if test == "clicked":
        email = names.email(config.get("message_id"))
        if config.get("link_id") is not None:
            return f"Clicked {names.link(config.get('link_id'))} in {email}?"
        return f"Clicked a link in {email}?"
    return "A condition"


def step_words(names: Names, node: Node) -> str:
    """What the step does, in words: "Wait 2 days", "Add the tag “Customer”"."""
    config, kind = node.config or {}, node.kind
    if kind == Kind.ADD_TAG:
        return f"Add the tag {names.tag(config.get('tag_id'))}"
    if kind == Kind.REMOVE_TAG:
        return f"Remove the tag {names.tag(config.get('tag_id'))}"
    if kind == Kind.SEQUENCE:
        return (
            f"Subscribe to the sequence {names.sequence(config.get('sequence_id'))}; "
            "move on when they finish it"
        )
    if kind == Kind.EMAIL:
        if node.message_id is None:
            return "Send one email"
        message = node.message
        if not message.description and not message.subject:
            return "Send one email, not written yet"
        name = Broadcast.name_of(
            description=message.description, subject=message.subject, account=names.account
        )
        return f"Send “{name}”"
    if kind == Kind.DELAY:
        return f"Wait {_plural(config.get('amount'), config.get('unit') or 'days')}"
    if kind == Kind.WAIT_UNTIL:
        at = hour_words(config.get("hour"))
        if config.get("mode") == "date":
            return f"Wait until {_date_words(config.get('date'))}, {at}"
        if config.get("mode") == "weekday":
            days = [DAY_NAMES[day] for day in config.get("days") or [] if 0 <= day < 7]
            return f"Wait until the next {_or_words(days or ['chosen day'])}, {at}"
        return f"Wait until {at}"
    if kind == Kind.SET_FIELD:
        field_name = names.field(config.get("key"))
        if not config.get("value"):
            return f"Clear {field_name}"
        return f"Set {field_name} to “{config['value']}”"
    if kind == Kind.MOVE:
        return f"Move to the automation {names.automation(config.get('automation_id'))}"
    if kind == Kind.EXIT:
        return "Exit the automation"
    if kind == Kind.CONDITION:
        return _condition_words(names, config)
    if kind == Kind.GOAL:
        return event_words(
            names,
            kind=config.get("kind", ""),
            object_id=config.get("object_id"),
            detail=config.get("detail") or "",
            value=config.get("value") or "",
        )
    return node.get_kind_display()


# The builder's tree -------------------------------------------------------------------------


@dataclass
class Slot:
    """A place a step can be added at: under `parent_id` (None: the start) on `branch`."""

    parent_id: int | None
    branch: str
    # For the "+" button's label: "at the start", "after “Wait 2 days”" ...
    where: str = ""
    # No step below it: an exit or a move may be added here (they end a branch).
    at_end: bool = True
    is_slot = True

    @property
    def key(self) -> str:
        return f"{self.parent_id or 0}-{self.branch or 'next'}"

    @property
    def query(self) -> str:
        """The place in a URL: ?parent=&branch=."""
        return f"parent={self.parent_id or ''}&branch={self.branch}"


@dataclass
class Step:
    node: Node
    words: str
    count: int
    # A condition's branches: lanes of slots and steps.
    yes: list = field(default_factory=list)
    no: list = field(default_factory=list)
    # The live steps right under it (the one that takes its place when it is deleted).
    children: list[Step] = field(default_factory=list)
    is_slot = False

    @property
    def is_condition(self) -> bool:
        return self.node.kind == Kind.CONDITION

    @property
    def ends(self) -> bool:
        """Nothing comes after an exit or a move."""
        return self.node.kind in (Kind.EXIT, Kind.MOVE)

    @property
    def ready(self) -> bool:
        """False for a "send one email" step whose email is not finished."""
        # Frozen with its subject, which a ready email has (its HTML is not read).
        return self.node.kind != Kind.EMAIL or bool(
            self.node.message_id and self.node.message.frozen_subject
        )


@dataclass
class Flow:
    entries: list[tuple[Trigger, str]]
    lane: list
    steps: dict[int, Step]
    # People in the automation who stand at no step (about to enter it).
    waiting_to_start: int
    # Every place a step can be added at (Slot.key).
    slot_keys: set[str] = field(default_factory=set)


def flow_read(*, automation: Automation) -> Flow:
    """The automation's entry points and steps as the builder draws them, top to bottom: each
    lane a list of Slots and Steps; a condition's Step holds its yes and no lanes. One query
    each for the steps, the counts, the entry points and the names they show."""
    nodes = list(
        live_nodes(automation).select_related("message").defer(*_MESSAGE_BODIES).order_by("id")
    )
    triggers = list(
        Trigger.objects.filter(automation=automation, role=Trigger.Role.ENTRY).order_by("id")
    )
    counts = node_counts(automation=automation)
    names = Names(automation.account)
    for node in nodes:
        names.want_config(node.kind, node.config or {})
    for trigger in triggers:
        names.want_event(trigger.kind, trigger.object_id, trigger.detail)
    names.load()

    steps = {
        node.pk: Step(node=node, words=step_words(names, node), count=counts.get(node.pk, 0))
        for node in nodes
    }
    at_place = {(step.node.parent_id, step.node.branch): step for step in steps.values()}
    for step in steps.values():
        parent = steps.get(step.node.parent_id)
        if parent is not None:
            parent.children.append(step)
    seen: set[int] = set()
    slot_keys: set[str] = set()

    def slot(*args, **kwargs) -> Slot:
        made = Slot(*args, **kwargs)
        slot_keys.add(made.key)
        return made

    def lane(parent: Step | None, branch: str) -> list:
        if parent is None:
            where = "at the start"
        elif branch:
            where = f"under “{branch.capitalize()}” of “{parent.words}”"
        else:
            where = f"after “{parent.words}”"
        parent_id = parent and parent.node.pk
        step = at_place.get((parent_id, branch))
        items: list = [slot(parent_id, branch, where, at_end=step is None)]
        while step is not None and step.node.pk not in seen:
            seen.add(step.node.pk)
            items.append(step)
            if step.is_condition:
                step.yes = lane(step, Node.Branch.YES)
                step.no = lane(step, Node.Branch.NO)
                break
            if step.ends:
                break
            below = at_place.get((step.node.pk, ""))
            items.append(slot(step.node.pk, "", f"after “{step.words}”", at_end=below is None))
            step = below
        return items

    return Flow(
        entries=[(trigger, trigger_words(names, trigger)) for trigger in triggers],
        lane=lane(None, ""),
        steps=steps,
        waiting_to_start=counts.get(None, 0),
        slot_keys=slot_keys,
    )


# The list -----------------------------------------------------------------------------------


@dataclass
class ListRow:
    automation: Automation
    state_badge: str
    entries: list[str]
    active: int
    completed: int


def automation_page(*, account, after: int | None, before: int | None) -> KeysetPage:
    """One page of the account's automations, newest first (index automation_account_id),
    with their entry points in words and how many are in them and completed them: one query
    each for the page, the entry points, their names and the counts (one GROUP BY over the
    page's journeys)."""
    page = keyset_page(Automation.objects.filter(account=account), after=after, before=before)
    ids = [automation.pk for automation in page.items]
    triggers = defaultdict(list)
    names = Names(account)
    for trigger in Trigger.objects.filter(automation_id__in=ids, role=Trigger.Role.ENTRY).order_by(
        "id"
    ):
        triggers[trigger.automation_id].append(trigger)
        names.want_event(trigger.kind, trigger.object_id, trigger.detail)
    names.load()
    counts = {
        row["automation_id"]: row
        for row in Journey.objects.filter(automation_id__in=ids)
        .values("automation_id")
        .annotate(
            active=Count("id", filter=Q(state=Journey.State.ACTIVE)),
            completed=Count("id", filter=Q(state=Journey.State.COMPLETED)),
        )
        .order_by()
    }
    return page.with_items(
        [
            ListRow(
                automation=automation,
                state_badge=STATE_BADGES[automation.state],
                entries=[trigger_words(names, trigger) for trigger in triggers[automation.pk]],
                active=counts.get(automation.pk, {}).get("active", 0),
                completed=counts.get(automation.pk, {}).get("completed", 0),
            )
            for automation in page.items
        ]
    )


# A subscriber's automations -----------------------------------------------------------------


@dataclass
class JourneyRow:
    journey: Journey
    automation: Automation
    state_badge: str
    # The step they stand at, in words ("" once they left).
    place: str
    # When they move next: a time, or what they wait for.
    due_at: datetime | None
    waiting: str


def subscriber_journeys(*, subscriber: Subscriber) -> list[JourneyRow]:
    """Every automation the subscriber is or was in, the latest entered first: where they
    stand and when they move next (index journey_subscriber; one more query for the names)."""
    journeys = list(
        Journey.objects.filter(subscriber_id=subscriber.pk, account_id=subscriber.account_id)
        .select_related("automation__account", "node", "node__message")
        .defer(*(f"node__{name}" for name in _MESSAGE_BODIES))
        .order_by("-entered_at", "-id")
    )
    if not journeys:
        return []
    names = Names(journeys[0].automation.account)
    for journey in journeys:
        if journey.node is not None:
            names.want_config(journey.node.kind, journey.node.config or {})
    names.load()
    rows = []
    for journey in journeys:
        node, active = journey.node, journey.state == Journey.State.ACTIVE
        place = step_words(names, node) if node is not None and active else ""
        waiting = ""
        if active and journey.automation.state != Automation.State.ACTIVE:
            waiting = f"Held: the automation is {journey.automation.get_state_display().lower()}"
        elif active and journey.due_at is None and node is not None:
            if node.kind == Kind.GOAL:
                waiting = "When the event happens"
            elif node.kind == Kind.SEQUENCE:
                waiting = "When they finish the sequence"
        rows.append(
            JourneyRow(
                journey=journey,
                automation=journey.automation,
                state_badge=JOURNEY_BADGES[journey.state],
                place=place,
                due_at=journey.due_at if active else None,
                waiting=waiting,
            )
        )
    return rows


@dataclass
class HistoryRow:
    at: datetime
    note: str
    rule: Rule | None
    automation: Automation | None


def subscriber_automation_history(
    *, subscriber: Subscriber, limit: int = HISTORY_SHOWN
) -> list[HistoryRow]:
    """What rules and automation steps did to the subscriber, newest first (index
    history_subscriber), with the rule's or automation's name (deleted ones: None)."""
    rows = list(
        History.objects.filter(
            subscriber_id=subscriber.pk, account_id=subscriber.account_id
        ).order_by("-id")[:limit]
    )
    rules = _by_id(Rule, subscriber.account_id, (row.rule_id for row in rows))
    automations = _by_id(Automation, subscriber.account_id, (row.automation_id for row in rows))
    return [
        HistoryRow(
            at=row.at,
            note=row.note,
            rule=rules.get(row.rule_id),
            automation=automations.get(row.automation_id),
        )
        for row in rows
    ]


def _by_id(model, account_id: int, ids: Iterable[int | None]) -> dict:
    wanted = {pk for pk in ids if pk is not None}
    if not wanted:
        return {}
    return model.objects.filter(account_id=account_id, pk__in=wanted).only("id", "name").in_bulk()
