"""A rule in words, for its list and its page: "When tag Customer is added or someone subscribes
to any form → add tag Buyer, subscribe to sequence Onboarding".

Pure: the caller resolves the names of the tags, forms, sequences, links and fields the rule
names (automations.rules.selectors.rule_names); what is missing from them was deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from automations.models import EventKind
from automations.services import ActionKind


@dataclass(frozen=True)
class Names:
    """The names of what rules name, by id (fields: label by key; links: URL by id)."""

    tags: Mapping[int, str] = field(default_factory=dict)
    forms: Mapping[int, str] = field(default_factory=dict)
    sequences: Mapping[int, str] = field(default_factory=dict)
    links: Mapping[int, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleWords:
    triggers: list[str]
    actions: list[str]

    @property
    def sentence(self) -> str:
        return f"When {' or '.join(self.triggers)} → {', '.join(self.actions)}"


def _named(names: Mapping[int, str], pk, what: str) -> str:
    name = names.get(pk) if pk is not None else None
    return f"{what} {name}" if name is not None else f"a deleted {what}"


def _field(names: Names, key: str) -> str:
    label = names.fields.get(key)
    return f"custom field {label}" if label is not None else f"a deleted custom field ({key})"


def trigger_words(trigger, names: Names) -> str:
    """`trigger`: a Trigger or a TriggerSpec (kind, object_id, detail, value)."""
    kind, pk = trigger.kind, trigger.object_id
    if kind == EventKind.FORM_JOINED:
        form = "any form" if pk is None else _named(names.forms, pk, "form")
        return f"someone subscribes to {form}"
    if kind in (EventKind.TAG_ADDED, EventKind.TAG_REMOVED):
        verb = "added" if kind == EventKind.TAG_ADDED else "removed"
        return f"{_named(names.tags, pk, 'tag')} is {verb}"
    if kind == EventKind.SEQUENCE_SUBSCRIBED:
        return f"someone subscribes to {_named(names.sequences, pk, 'sequence')}"
    if kind == EventKind.SEQUENCE_COMPLETED:
        return f"someone completes {_named(names.sequences, pk, 'sequence')}"
    if kind == EventKind.LINK_CLICKED:
        if pk is None:
            return f"someone clicks a link whose URL contains “{trigger.detail}”"
        url = names.links.get(pk)
        return f"someone clicks {url}" if url is not None else "someone clicks a deleted link"
    if kind == EventKind.FIELD_CHANGED:
        changed = f"{_field(names, trigger.detail)} changes"
        return f"{changed} to “{trigger.value}”" if trigger.value else changed
    if kind == EventKind.UNSUBSCRIBED:
        return "someone unsubscribes"
    return str(kind)


def action_words(action: Mapping, names: Names) -> str:
    kind, pk = action.get("kind"), action.get("object_id")
    if kind == ActionKind.ADD_TAG:
        return f"add {_named(names.tags, pk, 'tag')}"
    if kind == ActionKind.REMOVE_TAG:
        return f"remove {_named(names.tags, pk, 'tag')}"
    if kind == ActionKind.SUBSCRIBE_SEQUENCE:
        return f"subscribe to {_named(names.sequences, pk, 'sequence')}"
    if kind == ActionKind.REMOVE_SEQUENCE:
        return f"remove from {_named(names.sequences, pk, 'sequence')}"
    if kind == ActionKind.SET_FIELD:
        target = _field(names, action.get("detail", ""))
        value = action.get("value", "")
        return f"set {target} to “{value}”" if value else f"clear {target}"
    if kind == ActionKind.UNSUBSCRIBE:
        return "unsubscribe them"
    if kind == ActionKind.SEND_WEBHOOK:
        return "send a webhook"
    return str(kind)


def rule_words(*, triggers: Iterable, actions: Iterable[Mapping], names: Names) -> RuleWords:
    return RuleWords(
        triggers=[trigger_words(trigger, names) for trigger in triggers],
        actions=[action_words(action, names) for action in actions],
    )
