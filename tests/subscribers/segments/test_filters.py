"""What a segment matches, in SQL: each condition alone (tags any/all/left out, forms joined,
custom fields, engagement), all of them ANDed, and what a deleted or foreign tag, form, field or
segment does (never widen: nobody). segments_condition, the expression other features combine
into their queries, is tested directly: ANY of the segments, the account scoped, the state
ignored, NULL-free (so its negation is the complement), parameters under its prefix.

A segment's members (audience_sql) are its active subscribers; the broadcast to a segment is
the segment AND the broadcast's own filters."""

from __future__ import annotations

import pytest
from django.db import connection

from broadcasts.audience import audience_count, audience_sql
from broadcasts.models import Broadcast
from subscribers.models import CustomField, Signup, Subscriber
from subscribers.segments.filters import segments_condition
from subscribers.signup_forms.services import form_create
from tests.broadcasts.test_audience_engagement import CLICK, OPEN, days_ago, sent_to, track
from tests.factories import (
    CustomFieldFactory,
    SegmentFactory,
    SubscriberFactory,
    TagFactory,
    TaggingFactory,
)

pytestmark = pytest.mark.django_db


def people(account, *names: str, **fields_by_name) -> dict[str, Subscriber]:
    return {
        name: SubscriberFactory(
            account=account, email=f"{name}@example.org", fields=fields_by_name.get(name, {})
        )
        for name in names
    }


def tag(account, name: str, *subscribers: Subscriber):
    tag = TagFactory(account=account, name=name)
    for subscriber in subscribers:
        TaggingFactory(tag=tag, subscriber=subscriber)
    return tag


def joined(form, subscriber: Subscriber, outcome: str = Signup.Outcome.CONFIRMED) -> None:
    Signup.objects.create(
        account=form.account, form=form, subscriber=subscriber, wording_version=1, outcome=outcome
    )


def members(segment) -> set[str]:
    """The names of the segment's members, as a broadcast to it would count them."""
    sql, params = audience_sql(segment)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT email FROM subscribers_subscriber WHERE id IN ({sql}) ORDER BY email",
            params,
        )
        names = {email.removesuffix("@example.org") for (email,) in cursor.fetchall()}
    assert audience_count(audience=segment) == len(names)
    return names


def matching(condition: str, params: dict, *, alias: str = "s") -> set[str]:
    """Every subscriber (of any account, in any state) for whom `condition` is TRUE."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {alias}.email FROM subscribers_subscriber {alias} WHERE {condition}", params
        )
        return {email.removesuffix("@example.org") for (email,) in cursor.fetchall()}


# --- Tags -------------------------------------------------------------------------------------


@pytest.fixture
def tagged(account_a):
    who = people(account_a, "ann", "ben", "cat", "dan")
    soup = tag(account_a, "soup", who["ann"], who["ben"], who["cat"])
    bread = tag(account_a, "bread", who["ann"], who["dan"])
    vip = tag(account_a, "vip", who["ben"])
    return account_a, soup, bread, vip


def test_any_of_the_tags(tagged):
    account, soup, bread, _vip = tagged
    segment = SegmentFactory(account=account, include_tag_ids=[soup.id, bread.id])
    assert members(segment) == {"ann", "ben", "cat", "dan"}


def test_all_of_the_tags(tagged):
    account, soup, bread, _vip = tagged
    segment = SegmentFactory(
        account=account, include_tag_ids=[soup.id, bread.id], include_match="all"
    )
    assert members(segment) == {"ann"}


def test_tags_left_out(tagged):
    account, soup, _bread, vip = tagged
    segment = SegmentFactory(account=account, include_tag_ids=[soup.id], exclude_tag_ids=[vip.id])
    assert members(segment) == {"ann", "cat"}


@pytest.mark.parametrize("match", ["any", "all"])
def test_a_deleted_required_tag_leaves_nobody_never_everyone(tagged, match):
    account, soup, _bread, _vip = tagged
    segment = SegmentFactory(account=account, include_tag_ids=[soup.id], include_match=match)
    assert members(segment) == {"ann", "ben", "cat"}
    soup.delete()
    assert members(segment) == set()


def test_a_deleted_tag_among_all_of_leaves_nobody(tagged):
    account, soup, bread, _vip = tagged
    segment = SegmentFactory(
        account=account, include_tag_ids=[soup.id, bread.id], include_match="all"
    )
    bread.delete()
    assert members(segment) == set()


def test_a_deleted_tag_left_out_leaves_out_nobody(tagged):
    account, soup, _bread, vip = tagged
    segment = SegmentFactory(account=account, include_tag_ids=[soup.id], exclude_tag_ids=[vip.id])
    vip.delete()
    assert members(segment) == {"ann", "ben", "cat"}


def test_another_accounts_tag_matches_none_of_this_accounts_subscribers(tagged, account_b):
    account, soup, _bread, _vip = tagged
    theirs = tag(account_b, "soup", SubscriberFactory(account=account_b, email="zed@example.org"))
    assert members(SegmentFactory(account=account, include_tag_ids=[theirs.id])) == set()
    all_of = SegmentFactory(
        account=account, include_tag_ids=[soup.id, theirs.id], include_match="all"
    )
    assert members(all_of) == set()


# --- Forms ------------------------------------------------------------------------------------


def test_subscribed_through_any_of_the_forms_once_confirmed(account_a):
    who = people(account_a, "ann", "ben", "cat", "dan", "eve")
    home, sidebar, promo = (
        form_create(account=account_a, name=n) for n in ("Home", "Side", "Promo")
    )
    joined(home, who["ann"], Signup.Outcome.CONFIRMED)
    joined(sidebar, who["ben"], Signup.Outcome.SUBSCRIBED)
    joined(home, who["cat"], Signup.Outcome.TAGGED)  # already subscribed, signed up again
    joined(home, who["dan"], Signup.Outcome.PENDING)  # never confirmed
    joined(promo, who["eve"])

    segment = SegmentFactory(account=account_a, form_ids=[home.id, sidebar.id])

    assert members(segment) == {"ann", "ben", "cat"}


def test_a_deleted_or_foreign_form_matches_nobody(account_a, account_b):
    who = people(account_a, "ann")
    home = form_create(account=account_a, name="Home")
    joined(home, who["ann"])
    theirs = form_create(account=account_b, name="Home")
    joined(theirs, SubscriberFactory(account=account_b, email="zed@example.org"))
    gone = form_create(account=account_a, name="Gone")
    gone_id = gone.id
    gone.delete()

    assert members(SegmentFactory(account=account_a, form_ids=[home.id])) == {"ann"}
    assert members(SegmentFactory(account=account_a, form_ids=[gone_id])) == set()
    assert members(SegmentFactory(account=account_a, form_ids=[theirs.id])) == set()


# --- Custom fields ----------------------------------------------------------------------------


@pytest.fixture
def fielded(account_a):
    CustomFieldFactory(account=account_a, key="city", label="City")
    CustomFieldFactory(account=account_a, key="joined", label="Joined")
    people(
        account_a,
        "ann",
        "ben",
        "cat",
        "dan",
        "eve",
        ann={"city": "Paris", "joined": "2024-01-15"},
        ben={"city": "paris", "joined": "2024-06-01T09:30:00Z"},
        cat={"city": "Parisville 50%_off", "joined": "next spring"},
        dan={"city": "", "joined": "2024-13-99x"},
    )
    return account_a


def field_members(account, op: str, value: str = "", key: str = "city") -> set[str]:
    condition = {"key": key, "op": op, "value": value}
    return members(SegmentFactory(account=account, field_conditions=[condition]))


def test_field_is_ignores_case(fielded):
    assert field_members(fielded, "equals", "PARIS") == {"ann", "ben"}


def test_field_contains_takes_percent_and_underscore_literally(fielded):
    assert field_members(fielded, "contains", "aris") == {"ann", "ben", "cat"}
    assert field_members(fielded, "contains", "50%_") == {"cat"}
    assert field_members(fielded, "contains", "%") == {"cat"}
    assert field_members(fielded, "contains", "_") == {"cat"}


def test_field_is_set_wants_a_value_that_is_not_blank(fielded):
    assert field_members(fielded, "is_set") == {"ann", "ben", "cat"}


def test_field_before_and_after_compare_dates_and_skip_what_is_not_one(fielded):
    assert field_members(fielded, "before", "2024-03-01", key="joined") == {"ann"}
    assert field_members(fielded, "after", "2024-03-01", key="joined") == {"ben", "dan"}
    assert field_members(fielded, "after", "2024-06-01", key="joined") == {"dan"}
    assert field_members(fielded, "before", "2024-06-01", key="joined") == {"ann"}


def test_a_deleted_custom_field_matches_nobody_until_it_is_defined_again(fielded):
    segment = SegmentFactory(
        account=fielded, field_conditions=[{"key": "city", "op": "is_set", "value": ""}]
    )
    CustomField.objects.filter(account=fielded, key="city").delete()
    assert members(segment) == set()
    CustomFieldFactory(account=fielded, key="city", label="Town")
    assert members(segment) == {"ann", "ben", "cat"}


def test_another_accounts_field_of_the_same_key_does_not_count(account_a, account_b):
    people(account_a, "ann", ann={"city": "Paris"})
    CustomFieldFactory(account=account_b, key="city", label="City")
    segment = SegmentFactory(
        account=account_a, field_conditions=[{"key": "city", "op": "equals", "value": "Paris"}]
    )
    assert members(segment) == set()


@pytest.mark.parametrize(
    "condition",
    [
        {"key": "city", "op": "matches_regex", "value": ".*"},
        {"key": "city", "value": "Paris"},
        {"op": "is_set"},
    ],
    ids=["unknown op", "no op", "no key"],
)
def test_a_stored_condition_the_code_does_not_know_matches_nobody(fielded, condition):
    assert members(SegmentFactory(account=fielded, field_conditions=[condition])) == set()


# --- Engagement -------------------------------------------------------------------------------


def test_engagement_and_did_not_open_as_the_broadcast_audience_has_them(account_a):
    who = people(account_a, "ann", "ben", "cat")
    sent = sent_to(list(who.values()))
    track(sent, who["ann"], OPEN, at=days_ago(5))
    track(sent, who["ben"], CLICK, at=days_ago(45))

    engaged = SegmentFactory(account=account_a, engagement="engaged", engagement_days=30)
    quiet = SegmentFactory(account=account_a, engagement="not_engaged", engagement_days=30)
    unopened = SegmentFactory(account=account_a, not_opened_broadcast_id=sent.pk)

    assert members(engaged) == {"ann"}
    assert members(quiet) == {"ben", "cat"}
    assert members(unopened) == {"cat"}


# --- All together -----------------------------------------------------------------------------


def test_every_condition_must_hold(account_a):
    CustomFieldFactory(account=account_a, key="city", label="City")
    who = people(
        account_a,
        "ann",
        "ben",
        "cat",
        "dan",
        ann={"city": "Paris"},
        ben={"city": "Paris"},
        cat={"city": "Lyon"},
        dan={"city": "Paris"},
    )
    soup = tag(account_a, "soup", who["ann"], who["ben"], who["cat"], who["dan"])
    vip = tag(account_a, "vip", who["dan"])
    home = form_create(account=account_a, name="Home")
    for name in ("ann", "cat", "dan"):
        joined(home, who[name])
    segment = SegmentFactory(
        account=account_a,
        include_tag_ids=[soup.id],
        exclude_tag_ids=[vip.id],
        form_ids=[home.id],
        field_conditions=[{"key": "city", "op": "equals", "value": "paris"}],
    )
    # ben never joined through Home, cat lives in Lyon, dan is a vip.
    assert members(segment) == {"ann"}


def test_members_are_the_active_subscribers(tagged):
    account, soup, _bread, _vip = tagged
    Subscriber.objects.filter(email="ben@example.org").update(state="unsubscribed")
    Subscriber.objects.filter(email="cat@example.org").update(state="unconfirmed")
    assert members(SegmentFactory(account=account, include_tag_ids=[soup.id])) == {"ann"}


# --- segments_condition ---------------------------------------------------------------------


@pytest.fixture
def two_segments(tagged):
    """Two segments of `tagged`: the vips (ben), and bread without soup (dan)."""
    account, soup, bread, vip = tagged
    return (
        account,
        SegmentFactory(account=account, include_tag_ids=[vip.id]),
        SegmentFactory(account=account, include_tag_ids=[bread.id], exclude_tag_ids=[soup.id]),
    )


def test_segments_condition_matches_any_of_the_segments(two_segments):
    account, vips, bread_only = two_segments
    condition, params = segments_condition(
        account_id=account.id, segment_ids=[vips.id, bread_only.id]
    )
    assert matching(condition, params) == {"ben", "dan"}
    one, one_params = segments_condition(account_id=account.id, segment_ids=[vips.id])
    assert matching(one, one_params) == {"ben"}


def test_segments_condition_ignores_the_state_but_never_leaves_the_account(two_segments, account_b):
    account, vips, _bread_only = two_segments
    Subscriber.objects.filter(email="ben@example.org").update(state="bounced")
    theirs = SubscriberFactory(account=account_b, email="zed@example.org")
    # Even a subscriber of another account tagged (wrongly) with account A's tag stays out.
    TaggingFactory(tag=vips.account.tag_set.get(name="vip"), subscriber=theirs, account=account_b)
    condition, params = segments_condition(account_id=account.id, segment_ids=[vips.id])
    assert matching(condition, params) == {"ben"}


def test_segments_condition_of_nothing_is_false(two_segments, account_b):
    account, vips, _bread_only = two_segments
    theirs = SegmentFactory(account=account_b, include_tag_ids=vips.include_tag_ids)
    deleted = SegmentFactory(account=account, include_tag_ids=vips.include_tag_ids)
    deleted_id = deleted.id
    deleted.delete()

    assert segments_condition(account_id=account.id, segment_ids=[]) == ("FALSE", {})
    assert segments_condition(account_id=account.id, segment_ids=[theirs.id]) == ("FALSE", {})
    assert segments_condition(account_id=account.id, segment_ids=[deleted_id]) == ("FALSE", {})
    # A deleted or foreign id among live ones adds nobody.
    condition, params = segments_condition(
        account_id=account.id, segment_ids=[vips.id, theirs.id, deleted_id]
    )
    assert matching(condition, params) == {"ben"}


def test_segments_condition_parameters_start_with_the_prefix_and_mix_with_others(two_segments):
    account, vips, bread_only = two_segments
    CustomFieldFactory(account=account, key="city", label="City")
    bread_only.field_conditions = [{"key": "city", "op": "is_set", "value": ""}]
    bread_only.save()
    Subscriber.objects.filter(email="dan@example.org").update(fields={"city": "Oslo"})
    condition, params = segments_condition(
        account_id=account.id, segment_ids=[vips.id, bread_only.id], alias="sub", prefix="excl"
    )
    assert params and all(name.startswith("excl") for name in params)
    assert "%(excl" in condition

    # Combined with the caller's own parameters (and a second condition under another prefix).
    other, other_params = segments_condition(
        account_id=account.id, segment_ids=[vips.id], alias="sub", prefix="keep"
    )
    found = matching(
        f"sub.account_id = %(account)s AND {condition} AND NOT {other}",
        {"account": account.id, **params, **other_params},
        alias="sub",
    )
    assert found == {"dan"}


def test_the_negation_of_segments_condition_is_its_complement(fielded, account_b):
    """Sequences exclude with NOT (...): a NULL (a missing field, say) would leave a subscriber
    out of both the condition and its negation."""
    SubscriberFactory(account=fielded, email="fay@example.org", fields={})
    segments = [
        SegmentFactory(account=fielded, field_conditions=[{"key": "city", "op": op, "value": v}])
        for op, v in (("equals", "paris"), ("contains", "ari"), ("is_set", ""))
    ] + [
        SegmentFactory(
            account=fielded, field_conditions=[{"key": "joined", "op": op, "value": "2024-03-01"}]
        )
        for op in ("before", "after")
    ]
    everyone = set(Subscriber.objects.filter(account=fielded).values_list("email", flat=True))
    everyone = {email.removesuffix("@example.org") for email in everyone}
    for segment in segments:
        condition, params = segments_condition(account_id=fielded.id, segment_ids=[segment.id])
        inside = matching(f"s.account_id = {fielded.id} AND {condition}", params)
        outside = matching(f"s.account_id = {fielded.id} AND NOT {condition}", params)
        assert inside | outside == everyone and not inside & outside, segment.field_conditions


@pytest.mark.parametrize(
    "alias, prefix", [("s; DROP TABLE x", "seg"), ("s", "seg)s OR TRUE --"), ("S", "seg")]
)
def test_segments_condition_refuses_an_alias_or_prefix_that_is_not_an_identifier(
    account_a, alias, prefix
):
    with pytest.raises(ValueError, match="identifiers"):
        segments_condition(account_id=account_a.id, segment_ids=[1], alias=alias, prefix=prefix)


# --- A broadcast to a segment ---------------------------------------------------------------


def test_a_broadcast_to_a_segment_is_the_segment_and_its_own_filters(two_segments):
    account, _vips, _bread_only = two_segments
    soup_lovers = SegmentFactory(
        account=account,
        include_tag_ids=list(account.tag_set.filter(name="soup").values_list("id", flat=True)),
    )
    vip = account.tag_set.get(name="vip")
    broadcast = Broadcast.objects.create(account=account, subject="Soup", segment_id=soup_lovers.id)
    assert audience_count(audience=broadcast) == 3  # ann, ben, cat
    broadcast.exclude_tag_ids = [vip.id]
    assert audience_count(audience=broadcast) == 2  # ann, cat


def test_a_broadcast_to_a_deleted_or_foreign_segment_goes_to_nobody(two_segments, account_b):
    account, vips, _bread_only = two_segments
    broadcast = Broadcast.objects.create(account=account, subject="Soup", segment_id=vips.id)
    assert audience_count(audience=broadcast) == 1
    theirs = SegmentFactory(account=account_b, include_tag_ids=[])
    broadcast.segment_id = theirs.id
    assert audience_count(audience=broadcast) == 0
    vips_id = vips.id
    vips.delete()
    broadcast.segment_id = vips_id
    assert audience_count(audience=broadcast) == 0
    broadcast.segment_id = None
    assert audience_count(audience=broadcast) == 4
