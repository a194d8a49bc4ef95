"""Who a broadcast goes to and who is in a segment: the account's active subscribers, narrowed by
tags, by engagement (opened or clicked lately, or not; did not open a given broadcast), and, for
a segment, by the forms they joined through and their custom fields. A broadcast may name a
segment: its audience is then the segment's members who also pass the broadcast's own filters.

One SQL builder (filter_conditions) serves the recipient count shown before sending, the
fan-out's INSERT ... SELECT, a segment's member count, and the segment conditions other features
combine into their own queries (subscribers.segments.filters.segments_condition): the count a
creator saw is the audience that gets the email.

A tag, form, broadcast, segment or custom field that was deleted (or belongs to another account)
never widens an audience: required, it matches nobody; left out, it leaves out nobody.

Engagement is read from tracking's DeliveryActivity, and only a person's opens and clicks count
(first_human_at): Apple Mail Privacy Protection fetches every image of every message, so its
"opens" would make everyone look engaged and nobody a non-opener.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.template.defaultfilters import pluralize
from django.utils import timezone

from broadcasts.models import Broadcast, Delivery
from subscribers.models import CustomField, Engagement, Form, Segment, Subscriber, Tag, TagMatch
from tracking.models import EventKind

# What a custom field value must start with to be compared as a date: YYYY-MM-DD (a date, or a
# timestamp written in ISO 8601). Such prefixes compare as text as they do as dates, and no
# value, however malformed, can make the query fail, as a cast to date would.
ISO_DATE_PREFIX_RE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}"


def audience_sql(audience: Broadcast | Segment) -> tuple[str, dict]:
    """SELECT s.id FROM ... for the audience, and its parameters: the account's active
    subscribers matching the broadcast's (or the segment's) filters and, for a broadcast that
    names a segment, the segment's conditions too."""
    params: dict = {"account_id": audience.account_id, "active": Subscriber.State.ACTIVE}
    conditions = ["s.account_id = %(account_id)s", "s.state = %(active)s"]
    conditions += filter_conditions(audience, params=params)
    if isinstance(audience, Broadcast) and audience.segment_id is not None:
        # Imported here: segments_condition builds on this module.
        from subscribers.segments.filters import segments_condition

        condition, segment_params = segments_condition(
            account_id=audience.account_id, segment_ids=[audience.segment_id], prefix="segment"
        )
        conditions.append(condition)
        params.update(segment_params)
    sql = "SELECT s.id FROM subscribers_subscriber s WHERE " + " AND ".join(conditions)
    return sql, params


def audience_count(*, audience: Broadcast | Segment) -> int:
    """How many subscribers the broadcast would go to now, or are in the segment now (the
    active ones, who would get a broadcast to it)."""
    sql, params = audience_sql(audience)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS audience", params)
        return cursor.fetchone()[0]


@dataclass
class _Query:
    """Where conditions put their parameters: under names (and subquery aliases) that start
    with `prefix`, so that several filters can share one query."""

    params: dict
    prefix: str
    # The subscribers_subscriber row the conditions are about.
    alias: str

    def param(self, name: str, value) -> str:
        """Adds a parameter; returns its placeholder."""
        key = f"{self.prefix}{name}"
        self.params[key] = value
        return f"%({key})s"

    def subquery_alias(self, name: str) -> str:
        """An alias for a table of a subquery, apart from the caller's and other filters'."""
        return f"{self.prefix}{name}"


def filter_conditions(
    audience: Broadcast | Segment, *, params: dict, prefix: str = "", alias: str = "s"
) -> list[str]:
    """The SQL conditions (to be ANDed) of the audience's filters over the subscribers_subscriber
    row aliased `alias`; their parameters are added to `params` under names starting with
    `prefix`. Neither the account nor the state is checked: that is the caller's part.

    Every condition is TRUE or FALSE, never NULL, so that its negation is its complement.
    """
    query = _Query(params=params, prefix=prefix, alias=alias)
    conditions = _tag_conditions(audience, query) + _engagement_conditions(audience, query)
    if isinstance(audience, Segment):
        conditions += _form_conditions(audience, query) + _field_conditions(audience, query)
    return conditions


def _tag_conditions(audience: Broadcast | Segment, query: _Query) -> list[str]:
    """Tagged with any (or all) of include_tag_ids, and with none of exclude_tag_ids.

    A deleted tag has no taggings left, and another account's tag none on this account's
    subscribers: in "any of" it matches nobody, in "all of" it leaves the count short, so
    nobody; left out, it leaves out nobody.
    """
    conditions = []
    s, t = query.alias, query.subquery_alias("t")
    include = sorted(set(audience.include_tag_ids or ()))
    if include:
        tags = query.param("include", include)
        if audience.include_match == TagMatch.ALL:
            conditions.append(
                f"(SELECT count(*) FROM subscribers_tagging {t} WHERE {t}.subscriber_id = {s}.id "
                f"AND {t}.tag_id = ANY({tags})) = {query.param('include_count', len(include))}"
            )
        else:
            conditions.append(
                f"EXISTS (SELECT 1 FROM subscribers_tagging {t} WHERE {t}.subscriber_id = {s}.id "
                f"AND {t}.tag_id = ANY({tags}))"
            )
    exclude = sorted(set(audience.exclude_tag_ids or ()))
    if exclude:
        conditions.append(
            f"NOT EXISTS (SELECT 1 FROM subscribers_tagging {t} WHERE {t}.subscriber_id = {s}.id "
            f"AND {t}.tag_id = ANY({query.param('exclude', exclude)}))"
        )
    return conditions


def _engagement_conditions(audience: Broadcast | Segment, query: _Query) -> list[str]:
    """The engagement filters' conditions.

    "Engaged": a person's open or click (the "clicked anything" row, link 0) of any delivery
    to the subscriber, first made within the last engagement_days days; found through the
    activity index on (subscriber_id, kind).

    "Did not open X": a delivery of X to the subscriber that was sent, with no human open (a
    click counts as an open: a reader with images blocked clicks without a pixel). The
    activity's broadcast_id is implied by its delivery; stating it lets PostgreSQL read X's
    opens alone (index activity_list) rather than every open of every broadcast. Another
    account's broadcast has no deliveries to this account's subscribers, and a deleted one has
    none left, so either matches nobody: never everyone.
    """
    conditions = []
    s, a, d = query.alias, query.subquery_alias("a"), query.subquery_alias("d")
    if audience.engagement:
        kinds = query.param("engaged_kinds", [int(EventKind.OPEN), int(EventKind.CLICK)])
        since = query.param(
            "engaged_since", timezone.now() - timedelta(days=audience.engagement_days)
        )
        negation = "NOT " if audience.engagement == Engagement.NOT_ENGAGED else ""
        conditions.append(
            f"{negation}EXISTS (SELECT 1 FROM tracking_deliveryactivity {a} "
            f"WHERE {a}.subscriber_id = {s}.id AND {a}.kind = ANY({kinds}) "
            f"AND {a}.link_id = 0 AND {a}.first_human_at >= {since})"
        )
    if audience.not_opened_broadcast_id is not None:
        broadcast = query.param("not_opened", audience.not_opened_broadcast_id)
        sent = query.param("sent", int(Delivery.State.SENT))
        kinds = query.param("opened_kinds", [int(EventKind.OPEN), int(EventKind.CLICK)])
        conditions.append(
            f"EXISTS (SELECT 1 FROM broadcasts_delivery {d} WHERE {d}.broadcast_id = {broadcast} "
            f"AND {d}.subscriber_id = {s}.id AND {d}.state = {sent} "
            f"AND NOT EXISTS (SELECT 1 FROM tracking_deliveryactivity {a} "
            f"WHERE {a}.delivery_id = {d}.id AND {a}.broadcast_id = {broadcast} "
            f"AND {a}.kind = ANY({kinds}) AND {a}.link_id = 0 "
            f"AND {a}.first_human_at IS NOT NULL))"
        )
    return conditions


def _form_conditions(segment: Segment, query: _Query) -> list[str]:
    """Subscribed through any of form_ids: a signup through one of them that was confirmed (or
    needed no confirmation). A deleted form has no signups left, and another account's form none
    by this account's subscribers: nobody."""
    forms = sorted(set(segment.form_ids or ()))
    if not forms:
        return []
    s, g = query.alias, query.subquery_alias("g")
    return [
        f"EXISTS (SELECT 1 FROM subscribers_signup {g} WHERE {g}.subscriber_id = {s}.id "
        f"AND {g}.form_id = ANY({query.param('forms', forms)}) "
        f"AND {g}.outcome <> {query.param('pending', 'pending')})"
    ]


def _field_conditions(segment: Segment, query: _Query) -> list[str]:
    """One condition per custom field condition, on the value in Subscriber.fields.

    "is" and "contains" ignore case; "is set" wants a value that is not blank; "is before" and
    "is after" compare the value's date (YYYY-MM-DD, the start of an ISO 8601 date or timestamp)
    and never match a value that is not one. The field must still be one of the account's (a
    deleted field's values are hidden, so it matches nobody), and a condition this code does not
    know matches nobody.
    """
    conditions = []
    account = None
    for n, condition in enumerate(segment.field_conditions or ()):
        op, key = condition.get("op"), condition.get("key")
        value = str(condition.get("value") or "")
        if not key or op not in Segment.FieldOp.values:
            conditions.append("FALSE")
            continue
        if account is None:
            account = query.param("field_account", segment.account_id)
        key_param = query.param(f"field{n}_key", key)
        stored = f"({query.alias}.fields ->> {key_param})"
        if op == Segment.FieldOp.EQUALS:
            test = f"lower({stored}) = lower({query.param(f'field{n}_value', value)})"
        elif op == Segment.FieldOp.CONTAINS:
            pattern = "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            test = f"{stored} ILIKE {query.param(f'field{n}_value', pattern + '%')}"
        elif op == Segment.FieldOp.IS_SET:
            test = f"{stored} <> ''"
        else:
            comparison = "<" if op == Segment.FieldOp.BEFORE else ">"
            test = (
                f"CASE WHEN {stored} ~ '{ISO_DATE_PREFIX_RE}' THEN left({stored}, 10) "
                f"{comparison} {query.param(f'field{n}_value', value)} ELSE FALSE END"
            )
        f = query.subquery_alias("f")
        conditions.append(
            f"EXISTS (SELECT 1 FROM subscribers_customfield {f} WHERE {f}.account_id = {account} "
            f"AND {f}.key = {key_param}) AND coalesce({test}, FALSE)"
        )
    return conditions


# --- In words -----------------------------------------------------------------------------------


def _quoted(names: list[str]) -> str:
    return ", ".join(f"“{name}”" for name in names)


def audience_description(audience: Broadcast | Segment) -> str:
    """The audience in one sentence, for the send confirmation, the progress page and the
    segment's page: "All active subscribers in the segment “Cooks”, tagged with any of
    “soup”, except those tagged with “vip”." Deleted tags, forms, fields and segments are
    named as such."""
    is_segment = isinstance(audience, Segment)
    clauses = []
    if not is_segment and audience.segment_id is not None:
        name = (
            Segment.objects.filter(account_id=audience.account_id, pk=audience.segment_id)
            .values_list("name", flat=True)
            .first()
        )
        clauses.append(f"in the segment “{name}”" if name else "in a deleted segment")
    engagement = _engagement_description(audience)
    if engagement:
        clauses.append(f"who {engagement}")
    wanted = set(audience.include_tag_ids) | set(audience.exclude_tag_ids)
    tag_names = dict(
        Tag.objects.filter(account_id=audience.account_id, id__in=wanted).values_list("id", "name")
        if wanted
        else ()
    )

    def listed(ids: list[int], names: dict[int, str], deleted: str) -> str:
        return _quoted([names[i] for i in ids if i in names]) or deleted

    if audience.include_tag_ids:
        match = dict(TagMatch.choices)[audience.include_match]
        clauses.append(
            f"tagged with {match} {listed(audience.include_tag_ids, tag_names, '(a deleted tag)')}"
        )
    if is_segment:
        clauses += _segment_clauses(audience)
    if audience.exclude_tag_ids:
        clauses.append(
            "except those tagged with "
            + listed(audience.exclude_tag_ids, tag_names, "(a deleted tag)")
        )
    text = "All active subscribers"
    for n, clause in enumerate(clauses):
        text += " " if n == 0 and not clause.startswith("except") else ", "
        text += clause
    return text + "."


def _segment_clauses(segment: Segment) -> list[str]:
    """The segment's own conditions in words: the forms joined through, the custom fields."""
    clauses = []
    if segment.form_ids:
        names = dict(
            Form.objects.filter(account_id=segment.account_id, id__in=segment.form_ids).values_list(
                "id", "name"
            )
        )
        joined = " or ".join(f"“{names[i]}”" for i in segment.form_ids if i in names)
        clauses.append(f"who subscribed through {joined or '(a deleted form)'}")
    if segment.field_conditions:
        labels = dict(
            CustomField.objects.filter(account_id=segment.account_id).values_list("key", "label")
        )
        ops = dict(Segment.FieldOp.choices)
        described = []
        for condition in segment.field_conditions:
            key, op = condition.get("key"), condition.get("op")
            label = labels.get(key, f"(the deleted field {key})")
            value = "" if op == Segment.FieldOp.IS_SET else f" “{condition.get('value', '')}”"
            described.append(f"{label} {ops.get(op, op)}{value}")
        clauses.append("whose " + " and ".join(described))
    return clauses


def _engagement_description(audience: Broadcast | Segment) -> str:
    """What the engagement filters ask of a subscriber ("did not open “Soup”"), or ""."""
    clauses = []
    if audience.engagement:
        done = (
            "opened or clicked"
            if audience.engagement == Engagement.ENGAGED
            else "have not opened or clicked"
        )
        days = audience.engagement_days
        clauses.append(f"{done} in the last {days} day{pluralize(days)}")
    if audience.not_opened_broadcast_id is not None:
        columns = (
            Broadcast.objects.filter(
                account_id=audience.account_id, pk=audience.not_opened_broadcast_id
            )
            .values_list("description", "subject")
            .first()
        )
        named = (
            "a deleted broadcast"
            if columns is None
            else f"“{Broadcast.name_of(description=columns[0], subject=columns[1], account=audience.account)}”"
        )
        clauses.append(f"did not open {named}")
    return " and ".join(clauses)
