from __future__ import annotations

import pytest

from subscribers import selectors, services
from subscribers.models import StateChange, Subscriber, Suppression, email_hash
from subscribers.selectors import SubscriberFilter, Total
from tests.factories import (
    SubscriberFactory,
    TagFactory,
    TaggingFactory,
    tagged_and_bounced_mix,
)


def test_subscriber_create_refuses_a_duplicate_and_names_the_existing_subscriber(account_a):
    existing = SubscriberFactory(account=account_a, email="ann@example.com")
    with pytest.raises(services.SubscriberExists) as raised:
        services.subscriber_create(account=account_a, email="ann@example.com", tag_names=["x"])
    assert raised.value.subscriber == existing
    assert not existing.taggings.exists()


def test_subscriber_create_refuses_an_erased_address_unless_asked_back(account_a):
    Suppression.objects.create(account=account_a, email_hash=email_hash("ann@example.com"))
    with pytest.raises(services.SubscriberSuppressed):
        services.subscriber_create(account=account_a, email="ann@example.com")
    assert Suppression.objects.exists()
    subscriber = services.subscriber_create(account=account_a, email="ann@example.com", readd=True)
    assert subscriber.state == Subscriber.State.ACTIVE
    assert not Suppression.objects.exists()


def test_suppression_is_per_account(account_a, account_b):
    Suppression.objects.create(account=account_b, email_hash=email_hash("ann@example.com"))
    assert services.subscriber_create(account=account_a, email="ann@example.com")


def test_subscriber_update_clears_blank_fields_and_keeps_the_others(account_a):
    subscriber = SubscriberFactory(account=account_a, fields={"a": "1", "b": "2", "hidden": "3"})
    services.subscriber_update(
        subscriber=subscriber, email=subscriber.email, first_name="X", fields={"a": "", "b": "9"}
    )
    subscriber.refresh_from_db()
    assert subscriber.fields == {"b": "9", "hidden": "3"}


def test_subscriber_unsubscribe_moves_only_subscribed_people(account_a):
    active = SubscriberFactory(account=account_a)
    complained = SubscriberFactory(account=account_a, state=Subscriber.State.COMPLAINED)
    assert services.subscriber_unsubscribe(subscriber=active, reason="by test") is True
    assert services.subscriber_unsubscribe(subscriber=active, reason="by test") is False
    assert services.subscriber_unsubscribe(subscriber=complained, reason="by test") is False
    assert StateChange.objects.count() == 1
    complained.refresh_from_db()
    assert complained.state == Subscriber.State.COMPLAINED


def test_tag_get_or_create_ignores_case_and_spacing(account_a):
    tag = services.tag_get_or_create(account=account_a, name="  Big   Spenders ")
    assert tag.name == "Big Spenders"
    assert services.tag_get_or_create(account=account_a, name="big spenders") == tag
    with pytest.raises(ValueError):
        services.tag_get_or_create(account=account_a, name="   ")


def test_subscriber_delete_twice_for_the_same_address_keeps_one_suppression(account_a):
    services.subscriber_delete(subscriber=SubscriberFactory(account=account_a, email="a@x.org"))
    services.subscriber_create(account=account_a, email="a@x.org", readd=True)
    services.subscriber_delete(subscriber=Subscriber.objects.get(email="a@x.org"))
    assert Suppression.objects.filter(account=account_a).count() == 1


def test_totals_come_from_counters_for_simple_filters(account_a):
    tag = TagFactory(account=account_a)
    for _ in range(2):
        TaggingFactory(tag=tag, subscriber__state=Subscriber.State.BOUNCED)
    SubscriberFactory(account=account_a)
    tag.refresh_from_db()
    counts = selectors.subscriber_counts(account=account_a)
    total = selectors.subscriber_total
    assert total(account=account_a, filters=SubscriberFilter(), counts=counts) == Total(3)
    assert total(
        account=account_a, filters=SubscriberFilter(state="bounced"), counts=counts
    ) == Total(2)
    assert total(
        account=account_a, filters=SubscriberFilter(tag_id=tag.id), counts=counts, tag=tag
    ) == Total(2)
    assert total(
        account=account_a,
        filters=SubscriberFilter(tag_id=tag.id, state="active"),
        counts=counts,
        tag=tag,
    ) == Total(0)


def test_a_combined_count_stops_at_the_cap(account_a, monkeypatch):
    monkeypatch.setattr(selectors, "COUNT_CAP", 3)
    for n in range(5):
        SubscriberFactory(account=account_a, email=f"ann{n}@example.com")
    counts = selectors.subscriber_counts(account=account_a)
    assert selectors.subscriber_total(
        account=account_a, filters=SubscriberFilter(q="ann"), counts=counts
    ) == Total(3, capped=True)
    assert selectors.subscriber_total(
        account=account_a, filters=SubscriberFilter(q="ann1"), counts=counts
    ) == Total(1)


def test_a_page_reached_by_newer_links_back_to_older(account_a):
    ids = [SubscriberFactory(account=account_a).id for _ in range(5)]
    page = selectors.subscriber_page(
        account=account_a, filters=SubscriberFilter(), before=ids[1], page_size=2
    )
    assert [s.id for s in page.subscribers] == [ids[3], ids[2]]
    assert page.newer_before == ids[3] and page.older_after == ids[2]
    page = selectors.subscriber_page(
        account=account_a, filters=SubscriberFilter(), before=ids[2], page_size=2
    )
    assert [s.id for s in page.subscribers] == [ids[4], ids[3]]
    assert page.newer_before is None and page.is_first


def test_a_tag_page_never_shows_another_accounts_subscribers(account_a, account_b):
    tag = TagFactory(account=account_a)
    mine = TaggingFactory(tag=tag).subscriber
    page = selectors.subscriber_page(account=account_b, filters=SubscriberFilter(tag_id=tag.id))
    assert page.subscribers == []
    page = selectors.subscriber_page(account=account_a, filters=SubscriberFilter(tag_id=tag.id))
    assert page.subscribers == [mine]


@pytest.mark.parametrize("lead", ["tag", "state", "planner"])
def test_a_tag_with_a_state_pages_the_same_whichever_index_leads(account_a, lead):
    tag = TagFactory(account=account_a)
    expected = tagged_and_bounced_mix(tag=tag, count=23)
    tag.refresh_from_db()
    counts = {"tag": {"bounced": 10**6}, "state": {"bounced": 0}, "planner": None}[lead]
    filters = SubscriberFilter(tag_id=tag.id, state="bounced")
    assert selectors._driving_filter(filters, counts=counts, tag=tag) == lead

    seen, after = [], None
    while True:
        page = selectors.subscriber_page(
            account=account_a, filters=filters, after=after, page_size=3, counts=counts, tag=tag
        )
        seen += [s.id for s in page.subscribers]
        if page.older_after is None:
            break
        after = page.older_after
    assert seen == expected[::-1]
    back = selectors.subscriber_page(
        account=account_a, filters=filters, before=expected[0], page_size=3, counts=counts, tag=tag
    )
    assert [s.id for s in back.subscribers] == expected[1:4][::-1]
