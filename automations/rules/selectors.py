"""Reads of the rule pages: the list (with each rule in words), what the editor's pickers
offer, and a rule's history. Every read is of the request's account only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import OuterRef, Prefetch, Subquery, prefetch_related_objects
from django.urls import reverse

from automations.models import EventKind, History, Rule, Trigger
from automations.rules.words import Names, RuleWords, rule_words
from automations.services import ActionKind
from broadcasts.models import Broadcast
from convertkit.models import Account
from convertkit.paging import KeysetPage, keyset_page
from sequences.models import Sequence
from subscribers.models import CustomField, Form, Subscriber, Tag
from tracking.models import Link
from webhooks.models import WebhookEndpoint

# The links the click trigger's picker offers: the account's newest (and any a rule holds).
LINK_CHOICES = 300

_TAG_TRIGGERS = (EventKind.TAG_ADDED, EventKind.TAG_REMOVED)
_SEQUENCE_TRIGGERS = (EventKind.SEQUENCE_SUBSCRIBED, EventKind.SEQUENCE_COMPLETED)
_TAG_ACTIONS = (ActionKind.ADD_TAG, ActionKind.REMOVE_TAG)
_SEQUENCE_ACTIONS = (ActionKind.SUBSCRIBE_SEQUENCE, ActionKind.REMOVE_SEQUENCE)


@dataclass
class _Named:
    """The ids and keys some rules name, by what they are."""

    tags: set
    forms: set
    sequences: set
    links: set
    fields: set
    webhooks: set


def _named(rules: Iterable[Rule]) -> _Named:
    named = _Named(set(), set(), set(), set(), set(), set())
    for rule in rules:
        for trigger in rule.triggers.all():
            if trigger.object_id is None:
                if trigger.kind == EventKind.FIELD_CHANGED:
                    named.fields.add(trigger.detail)
                continue
            if trigger.kind in _TAG_TRIGGERS:
                named.tags.add(trigger.object_id)
            elif trigger.kind == EventKind.FORM_JOINED:
                named.forms.add(trigger.object_id)
            elif trigger.kind in _SEQUENCE_TRIGGERS:
                named.sequences.add(trigger.object_id)
            elif trigger.kind == EventKind.LINK_CLICKED:
                named.links.add(trigger.object_id)
        for action in rule.actions:
            kind = action.get("kind")
            if kind in _TAG_ACTIONS:
                named.tags.add(action.get("object_id"))
            elif kind in _SEQUENCE_ACTIONS:
                named.sequences.add(action.get("object_id"))
            elif kind == ActionKind.SET_FIELD:
                named.fields.add(action.get("detail", ""))
            elif kind == ActionKind.SEND_WEBHOOK:
                named.webhooks.add(action.get("object_id"))
    return named


def _by_id(model, account: Account, ids: set, column: str = "name") -> dict:
    ids = {pk for pk in ids if isinstance(pk, int)}
    if not ids:
        return {}
    return dict(model.objects.filter(account=account, pk__in=ids).values_list("pk", column))


def rule_names(*, account: Account, rules: Iterable[Rule]) -> Names:
    """The names of everything `rules` (with their triggers prefetched) name: one query per
    kind of object named."""
    named = _named(rules)
    fields = {}
    if named.fields:
        fields = dict(
            CustomField.objects.filter(account=account, key__in=named.fields).values_list(
                "key", "label"
            )
        )
    return Names(
        tags=_by_id(Tag, account, named.tags),
        forms=_by_id(Form, account, named.forms),
        sequences=_by_id(Sequence, account, named.sequences),
        links=_by_id(Link, account, named.links, "url"),
        fields=fields,
    )


def words_of(rule: Rule, names: Names) -> RuleWords:
    return rule_words(triggers=rule.triggers.all(), actions=rule.actions, names=names)


@dataclass(frozen=True)
class RuleRow:
    id: int
    url: str
    name: str
    enabled: bool
    words: RuleWords
    fired_count: int
    last_fired: datetime | None


def rule_page(*, account: Account, after: int | None, before: int | None) -> KeysetPage:
    """One page of the account's rules, newest first (keyset on the index rule_account_id),
    each in words, with when it last fired (one probe of the index history_rule per rule):
    a query for the rules, one for their triggers and one per kind of object they name."""
    last_fired = History.objects.filter(rule_id=OuterRef("pk")).order_by("-id").values("at")[:1]
    page = keyset_page(
        Rule.objects.filter(account=account)
        .annotate(last_fired=Subquery(last_fired))
        .prefetch_related(_ordered_triggers()),
        after=after,
        before=before,
    )
    names = rule_names(account=account, rules=page.items)
    return page.with_items(
        [
            RuleRow(
                id=rule.id,
                url=reverse("rule_detail", args=[rule.id]),
                name=rule.name,
                enabled=rule.enabled,
                words=words_of(rule, names),
                fired_count=rule.fired_count,
                last_fired=rule.last_fired,
            )
            for rule in page.items
        ]
    )


def _ordered_triggers() -> Prefetch:
    return Prefetch("triggers", queryset=Trigger.objects.order_by("id"))


def rule_with_triggers(rule: Rule) -> Rule:
    """`rule` with its triggers read (once), in the order they were given: rule.triggers.all()."""
    prefetch_related_objects([rule], _ordered_triggers())
    return rule


def last_fired(*, rule: Rule) -> datetime | None:
    return (
        History.objects.filter(rule_id=rule.pk).order_by("-id").values_list("at", flat=True).first()
    )


# The editor's pickers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pickers:
    """What the editor offers: the account's tags, forms, sequences, links (grouped by their
    email) and custom fields, plus what the rule holds that was deleted since (named so), so
    saving it again says so rather than dropping it."""

    tags: list[tuple[int, str]]
    forms: list[tuple[int, str]]
    sequences: list[tuple[int, str]]
    links: list[tuple[str, list[tuple[int, str]]]]
    fields: list[tuple[str, str]]
    webhooks: list[tuple[int, str]]


def _with_deleted(choices: list, saved: set, label: str) -> list:
    offered = {value for value, _ in choices}
    return choices + [(pk, label) for pk in sorted(saved - offered, key=str)]


def _email_label(message: Broadcast, account: Account) -> str:
    message.account = account
    if message.kind == Broadcast.Kind.SEQUENCE_EMAIL:
        try:
            return f"Sequence {message.sequence_email.sequence.name}: {message.name}"
        except Broadcast.sequence_email.RelatedObjectDoesNotExist:
            return message.name
    if message.kind == Broadcast.Kind.AUTOMATION_EMAIL:
        return f"Automation email: {message.name}"
    return f"Broadcast: {message.name}"


def _link_choices(account: Account, saved: set) -> list[tuple[str, list[tuple[int, str]]]]:
    """The account's newest links (and the saved ones), grouped by their email, newest email
    first, each email's links in the order they appear in it."""
    links = Link.objects.filter(account=account).select_related(
        "broadcast__sequence_email__sequence"
    )
    newest = list(links.order_by("-id")[:LINK_CHOICES])
    older = {pk for pk in saved if isinstance(pk, int)} - {link.pk for link in newest}
    if older:
        newest += list(links.filter(pk__in=older))
    groups: dict[int, list[Link]] = {}
    for link in newest:
        groups.setdefault(link.broadcast_id, []).append(link)
    choices = [
        (
            _email_label(group[0].broadcast, account),
            [(link.pk, link.url) for link in sorted(group, key=lambda link: link.position)],
        )
        for group in groups.values()
    ]
    deleted = sorted(older - {link.pk for link in newest})
    if deleted:
        choices.append(("Deleted", [(pk, "A deleted link") for pk in deleted]))
    return choices


def rule_pickers(*, account: Account, rule: Rule | None = None) -> Pickers:
    named = _named([rule_with_triggers(rule)] if rule is not None else [])
    tags = list(
        Tag.objects.filter(account=account).order_by("name", "id").values_list("id", "name")
    )
    forms = [
        (pk, name + (" (archived)" if archived_at else ""))
        for pk, name, archived_at in Form.objects.filter(account=account)
        .order_by("-id")
        .values_list("id", "name", "archived_at")
    ]
    sequences = list(
        Sequence.objects.filter(account=account).order_by("name", "id").values_list("id", "name")
    )
    fields = list(
        CustomField.objects.filter(account=account).order_by("label").values_list("key", "label")
    )
    webhooks = [
        (endpoint.pk, webhook_label(endpoint))
        for endpoint in WebhookEndpoint.objects.filter(account=account).order_by("-id")
    ]
    return Pickers(
        tags=_with_deleted(tags, named.tags, "A deleted tag"),
        forms=_with_deleted(forms, named.forms, "A deleted form"),
        sequences=_with_deleted(sequences, named.sequences, "A deleted sequence"),
        links=_link_choices(account, named.links),
        fields=[
            *fields,
            *(
                (key, f"{key} (deleted field)")
                for key in sorted(named.fields - dict(fields).keys())
            ),
        ],
        webhooks=_with_deleted(webhooks, named.webhooks, "A deleted webhook"),
    )


def webhook_label(endpoint: WebhookEndpoint) -> str:
    """A webhook as the pickers name it: its name or URL, and whether it is disabled."""
    label = endpoint.name or endpoint.url
    return f"{label} (disabled)" if not endpoint.enabled else label


# History ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    id: int
    at: datetime
    note: str
    subscriber_email: str | None
    subscriber_url: str | None


def history_page(*, rule: Rule, after: int | None, before: int | None) -> KeysetPage:
    """One page of what the rule did, newest first (keyset on the index history_rule), with
    each subscriber's address (one query for the page; a deleted subscriber has none)."""
    page = keyset_page(
        History.objects.filter(rule_id=rule.pk, account_id=rule.account_id).only(
            "id", "at", "note", "subscriber_id"
        ),
        after=after,
        before=before,
    )
    emails = dict(
        Subscriber.objects.filter(
            account_id=rule.account_id, pk__in={row.subscriber_id for row in page.items}
        ).values_list("pk", "email")
    )
    return page.with_items(
        [
            HistoryRow(
                id=row.id,
                at=row.at,
                note=row.note,
                subscriber_email=emails.get(row.subscriber_id),
                subscriber_url=reverse("subscriber_detail", args=[row.subscriber_id])
                if row.subscriber_id in emails
                else None,
            )
            for row in page.items
        ]
    )
