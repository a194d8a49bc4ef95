"""/v4/broadcasts: Kit's documented shapes, statuses, what each call changes, the 422s, and
tenancy of every URL with an id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broadcasts.models import Broadcast
from tests.api import kit_broadcast_examples as kit
from tests.api.kit_examples import assert_kit_shape
from tests.factories import SegmentFactory, SubscriberFactory, TagFactory, TaggingFactory
from tracking.models import Link, Rollup

State = Broadcast.State


def _future(days: int = 2) -> str:
    return (timezone.now() + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def draft(account_a):
    return Broadcast.objects.create(
        account=account_a,
        subject="Hello!",
        preview_text="Pleased to meet you!",
        description="Intro email",
        body="<p>Let me introduce myself</p>",
        body_format=Broadcast.BodyFormat.HTML,
        public=True,
    )


@pytest.fixture
def sequence_message(account_a):
    return Broadcast.objects.create(
        account=account_a, kind=Broadcast.Kind.SEQUENCE_EMAIL, subject="Day 1", body="Hi"
    )


@pytest.fixture
def sent(account_a):
    """A sent broadcast to 100 people: 50 opened, 20 clicked (30 clicks), 1 unsubscribed,
    two links, as the drain's rollups record them."""
    broadcast = Broadcast.objects.create(
        account=account_a,
        subject="Soup",
        body="<p>Soup</p>",
        body_format=Broadcast.BodyFormat.HTML,
        state=State.SENT,
        recipient_count=100,
        sent_count=100,
        sent_at=timezone.now(),
    )
    hour = datetime(2026, 1, 1, 9, tzinfo=UTC)
    Rollup.objects.create(
        broadcast_id=broadcast.id,
        hour=hour,
        delivered=100,
        opens=80,
        human_opens=70,
        unique_opens=55,
        human_unique_opens=50,
        clicks=35,
        human_clicks=30,
        unique_clicks=22,
        human_unique_clicks=20,
        unsubscribes=1,
    )
    soup = Link.objects.create(
        account=account_a, broadcast=broadcast, url="https://example.com/soup", position=0
    )
    bread = Link.objects.create(
        account=account_a, broadcast=broadcast, url="https://example.com/bread", position=1
    )
    for link_hour, link, unique in ((hour, soup, 10), (hour + timedelta(hours=1), soup, 5)):
        Rollup.objects.create(
            broadcast_id=broadcast.id,
            link_id=link.id,
            hour=link_hour,
            clicks=unique + 1,
            unique_clicks=unique + 1,
            human_unique_clicks=unique,
        )
    Rollup.objects.create(
        broadcast_id=broadcast.id, link_id=bread.id, hour=hour, human_unique_clicks=4
    )
    return broadcast


# List and get -------------------------------------------------------------------------------


def test_broadcast_list_is_in_kits_shape_without_sequence_emails(api_a, draft, sequence_message):
    response = api_a.get("/v4/broadcasts")
    assert response.status_code == 200
    body = response.json()
    kit.assert_broadcasts_kit_shape(body, kit.LIST_BROADCASTS)
    assert [b["id"] for b in body["broadcasts"]] == [draft.id]


def test_broadcast_list_pages_with_kits_cursors(api_a, account_a):
    ids = [Broadcast.objects.create(account=account_a, subject=f"B{n}").id for n in range(3)]
    first = api_a.get("/v4/broadcasts", per_page=2).json()
    assert [b["id"] for b in first["broadcasts"]] == [ids[2], ids[1]]
    assert first["pagination"]["has_next_page"] is True
    second = api_a.get("/v4/broadcasts", per_page=2, after=first["pagination"]["end_cursor"]).json()
    assert [b["id"] for b in second["broadcasts"]] == [ids[0]]
    assert second["pagination"]["has_next_page"] is False
    assert second["pagination"]["has_previous_page"] is True
    counted = api_a.get("/v4/broadcasts", include_total_count="true").json()
    assert counted["pagination"]["total_count"] == 3
    cursor = first["pagination"]["end_cursor"]
    tampered = api_a.get("/v4/broadcasts", after=("A" if cursor[0] != "A" else "B") + cursor[1:])
    assert tampered.status_code == 422
    assert api_a.get("/v4/broadcasts", per_page=1001).status_code == 422


def test_get_broadcast_is_in_kits_shape(api_a, account_a, draft):
    tag = TagFactory(account=account_a)
    segment = SegmentFactory(account=account_a)
    Broadcast.objects.filter(pk=draft.pk).update(segment_id=segment.id, exclude_tag_ids=[tag.id])
    response = api_a.get(f"/v4/broadcasts/{draft.id}")
    assert response.status_code == 200
    body = response.json()
    kit.assert_broadcasts_kit_shape(body, kit.GET_BROADCAST)
    shape = body["broadcast"]
    assert shape["subject"] == "Hello!"
    assert shape["content"] == "<p>Let me introduce myself</p>"
    assert shape["email_address"] == account_a.sender_email
    assert shape["email_template"] == {"id": "classic", "name": "Classic"}
    assert shape["subscriber_filter"] == [
        {
            "all": [{"type": "segment", "ids": [segment.id]}],
            "none": [{"type": "tag", "ids": [tag.id]}],
        }
    ]
    account_a.refresh_from_db()
    assert shape["public_url"] is None or account_a.public_slug in shape["public_url"]


def test_a_broadcast_to_everyone_is_kits_all_subscribers(api_a, account_a):
    broadcast = Broadcast.objects.create(account=account_a)
    shape = api_a.get(f"/v4/broadcasts/{broadcast.id}").json()["broadcast"]
    assert shape["subscriber_filter"] == [{"all": [{"type": "all_subscribers"}]}]
    assert shape["content"] is None
    assert shape["preview_text"] is None


# Create -------------------------------------------------------------------------------------


def test_create_saves_a_draft_in_html_with_kits_audience(api_a, account_a):
    buyers = TagFactory(account=account_a, name="Buyers")
    vip = TagFactory(account=account_a, name="VIP")
    gone = TagFactory(account=account_a, name="Gone")
    response = api_a.post(
        "/v4/broadcasts",
        {
            "subject": "Hello!",
            "preview_text": "Pleased to meet you!",
            "description": "Intro email",
            "content": "<p>Let me introduce myself</p>",
            "public": True,
            "send_at": None,
            "email_template_id": "modern",
            "subscriber_filter": [
                {
                    "all": [{"type": "tag", "ids": [buyers.id, vip.id]}],
                    "any": None,
                    "none": [{"type": "tag", "ids": [gone.id]}],
                }
            ],
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    kit.assert_broadcasts_kit_shape(body, kit.CREATE_BROADCAST)
    assert "warnings" not in body
    broadcast = Broadcast.objects.get(pk=body["broadcast"]["id"])
    assert broadcast.state == State.DRAFT
    assert broadcast.body_format == Broadcast.BodyFormat.HTML
    assert broadcast.body == "<p>Let me introduce myself</p>"
    assert broadcast.email_template == "modern"
    assert broadcast.include_tag_ids == sorted([buyers.id, vip.id])
    assert broadcast.include_match == "all"
    assert broadcast.exclude_tag_ids == [gone.id]
    assert broadcast.public is True
    assert body["broadcast"]["public_url"].startswith("http")
    assert body["broadcast"]["subscriber_filter"] == [
        {
            "all": [{"type": "tag", "ids": sorted([buyers.id, vip.id])}],
            "none": [{"type": "tag", "ids": [gone.id]}],
        }
    ]


def test_create_with_a_future_send_at_schedules_it(api_a, account_a):
    segment = SegmentFactory(account=account_a)
    SubscriberFactory(account=account_a)
    tag = TagFactory(account=account_a)
    TaggingFactory(tag=tag, subscriber=SubscriberFactory(account=account_a))
    send_at = _future()
    response = api_a.post(
        "/v4/broadcasts",
        {
            "subject": "Soon",
            "content": "<p>Soon</p>",
            "send_at": send_at,
            "subscriber_filter": [{"any": [{"type": "tag", "ids": [tag.id]}]}],
        },
    )
    assert response.status_code == 201, response.content
    shape = response.json()["broadcast"]
    assert shape["send_at"] == send_at
    broadcast = Broadcast.objects.get(pk=shape["id"])
    assert broadcast.state == State.SCHEDULED
    assert broadcast.include_match == "any"
    assert segment.id != broadcast.segment_id


def test_create_reports_kits_fields_it_ignores_as_warnings(api_a):
    response = api_a.post(
        "/v4/broadcasts", {"subject": "Hi", "thumbnail_url": "https://example.com/a.png"}
    )
    assert response.status_code == 201
    assert response.json()["warnings"] == ["thumbnail_url is not supported and was ignored"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"send_at": "tomorrow"}, "send_at must be a time (ISO 8601)"),
        ({"send_at": "2020-01-01T10:00:00Z"}, "send_at must be in the future"),
        ({"email_template_id": "fancy"}, "email_template_id fancy is not one of your templates"),
        ({"email_template_id": 999999}, "email_template_id 999999 is not one of your templates"),
        ({"subject": "Two\nlines"}, "The subject must be on one line, without control characters."),
        (
            {"subscriber_filter": [{"all": [{"type": "segment", "ids": [1, 2]}]}]},
            "subscriber_filter: only one segment is supported",
        ),
        (
            {"subscriber_filter": [{"none": [{"type": "segment", "ids": [1]}]}]},
            'subscriber_filter: a segment condition under "none" is not supported',
        ),
        (
            {"subscriber_filter": [{"all": [{"type": "all_subscribers"}]}, {"all": []}]},
            "subscriber_filter: only one group of conditions is supported",
        ),
        (
            {"subscriber_filter": [{"all": [{"type": "tag", "ids": [999999]}]}]},
            "subscriber_filter: tag 999999 does not exist",
        ),
    ],
)
def test_create_refuses_what_it_cannot_do_and_stores_nothing(api_a, body, error):
    response = api_a.post("/v4/broadcasts", {"subject": "Hi", **body})
    assert response.status_code == 422
    assert error in response.json()["errors"]
    assert not Broadcast.objects.exists()


def test_create_refuses_another_accounts_tag_and_segment(api_a, account_b):
    tag = TagFactory(account=account_b)
    segment = SegmentFactory(account=account_b)
    response = api_a.post(
        "/v4/broadcasts",
        {
            "subscriber_filter": [
                {
                    "all": [{"type": "segment", "ids": [segment.id]}],
                    "any": [{"type": "tag", "ids": [tag.id]}],
                }
            ]
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        f"subscriber_filter: tag {tag.id} does not exist",
        f"subscriber_filter: segment {segment.id} does not exist",
    ]
    assert not Broadcast.objects.exists()


def test_create_scheduled_that_cannot_be_sent_is_422_and_stores_nothing(api_a):
    response = api_a.post(
        "/v4/broadcasts", {"subject": "", "content": "<p>Hi</p>", "send_at": _future()}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0].startswith("The broadcast cannot be scheduled:")
    assert not Broadcast.objects.exists()


# Update and delete --------------------------------------------------------------------------


def test_update_changes_only_the_fields_given(api_a, account_a, draft):
    tag = TagFactory(account=account_a)
    Broadcast.objects.filter(pk=draft.pk).update(include_tag_ids=[tag.id])
    response = api_a.put(f"/v4/broadcasts/{draft.id}", {"subject": "Hello again"})
    assert response.status_code == 200
    kit.assert_broadcasts_kit_shape(response.json(), kit.UPDATE_BROADCAST)
    draft.refresh_from_db()
    assert draft.subject == "Hello again"
    assert draft.preview_text == "Pleased to meet you!"
    assert draft.body == "<p>Let me introduce myself</p>"
    assert draft.include_tag_ids == [tag.id]
    assert draft.public is True


def test_update_schedules_with_send_at_and_null_makes_a_draft_again(api_a, account_a, draft):
    SubscriberFactory(account=account_a)
    send_at = _future(3)
    response = api_a.put(f"/v4/broadcasts/{draft.id}", {"send_at": send_at})
    assert response.status_code == 200, response.content
    assert response.json()["broadcast"]["send_at"] == send_at
    draft.refresh_from_db()
    assert draft.state == State.SCHEDULED
    response = api_a.put(f"/v4/broadcasts/{draft.id}", {"send_at": None})
    assert response.status_code == 200
    assert response.json()["broadcast"]["send_at"] is None
    draft.refresh_from_db()
    assert (draft.state, draft.scheduled_at) == (State.DRAFT, None)


@pytest.mark.parametrize("state", [State.SENDING, State.PAUSED, State.SENT, State.CANCELLED])
def test_a_broadcast_that_started_sending_cannot_be_updated_or_deleted(api_a, draft, state):
    Broadcast.objects.filter(pk=draft.pk).update(state=state)
    response = api_a.put(f"/v4/broadcasts/{draft.id}", {"subject": "Changed"})
    assert response.status_code == 422
    assert response.json() == {"errors": ["Broadcasts that have started sending cannot be updated"]}
    response = api_a.delete(f"/v4/broadcasts/{draft.id}")
    assert response.status_code == 422
    assert response.json() == {"errors": ["Broadcasts that have started sending cannot be deleted"]}
    draft.refresh_from_db()
    assert draft.subject == "Hello!"


def test_update_with_a_bad_value_changes_nothing(api_a, draft):
    response = api_a.put(
        f"/v4/broadcasts/{draft.id}",
        {"subject": "Changed", "send_at": "2020-01-01T00:00:00Z", "email_template_id": "x"},
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        "email_template_id x is not one of your templates",
        "send_at must be in the future",
    ]
    draft.refresh_from_db()
    assert (draft.subject, draft.state) == ("Hello!", State.DRAFT)


def test_update_that_cannot_be_scheduled_changes_nothing(api_a, draft):
    # Nobody is in the audience: it cannot be scheduled, and the new subject is not kept.
    response = api_a.put(f"/v4/broadcasts/{draft.id}", {"subject": "New", "send_at": _future()})
    assert response.status_code == 422
    assert "Nobody is in the audience" in response.json()["errors"][0]
    draft.refresh_from_db()
    assert (draft.subject, draft.state) == ("Hello!", State.DRAFT)


def test_delete_removes_a_draft_or_a_scheduled_broadcast(api_a, draft, account_a):
    scheduled = Broadcast.objects.create(
        account=account_a, state=State.SCHEDULED, scheduled_at=timezone.now() + timedelta(days=1)
    )
    for broadcast in (draft, scheduled):
        response = api_a.delete(f"/v4/broadcasts/{broadcast.id}")
        assert response.status_code == 204
    assert not Broadcast.objects.exists()


# Stats and clicks ---------------------------------------------------------------------------


def test_stats_are_kits_from_the_rollups(api_a, sent):
    response = api_a.get(f"/v4/broadcasts/{sent.id}/stats")
    assert response.status_code == 200
    body = response.json()
    assert_kit_shape(body, kit.BROADCAST_STATS)
    assert body["broadcast"]["stats"] == {
        "recipients": 100,
        "open_rate": 50.0,
        "emails_opened": 50,
        "click_rate": 20.0,
        "unsubscribe_rate": 1.0,
        "unsubscribes": 1,
        "total_clicks": 30,
        "show_total_clicks": True,
        "status": "completed",
        "progress": 100.0,
        "open_tracking_disabled": False,
        "click_tracking_disabled": False,
    }


def test_stats_of_a_draft_are_zero(api_a, draft):
    stats = api_a.get(f"/v4/broadcasts/{draft.id}/stats").json()["broadcast"]["stats"]
    assert (stats["recipients"], stats["open_rate"], stats["status"], stats["progress"]) == (
        0,
        0.0,
        "draft",
        0.0,
    )


def test_stats_of_a_list_are_kits_and_each_broadcasts_own(api_a, draft, sent, sequence_message):
    response = api_a.get("/v4/broadcasts/stats")
    assert response.status_code == 200
    body = response.json()
    assert_kit_shape(body, kit.BROADCASTS_STATS)
    assert [b["id"] for b in body["broadcasts"]] == [sent.id, draft.id]
    for broadcast in body["broadcasts"]:
        one = api_a.get(f"/v4/broadcasts/{broadcast['id']}/stats").json()["broadcast"]
        assert broadcast == one
    assert body["broadcasts"][0]["stats"]["open_rate"] == 50.0


def _stats_queries(api, **params) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/v4/broadcasts/stats", **params)
    assert response.status_code == 200
    return len(queries)


def test_stats_of_a_list_take_as_many_queries_for_many_broadcasts_as_for_one(api_a, sent):
    _stats_queries(api_a)
    one = _stats_queries(api_a)
    for n in range(10):
        broadcast = Broadcast.objects.create(
            account=sent.account, subject=f"B{n}", state=State.SENT, sent_count=10
        )
        Rollup.objects.create(
            broadcast_id=broadcast.id, hour=datetime(2026, 1, 1, tzinfo=UTC), delivered=10
        )
    many = api_a.get("/v4/broadcasts/stats").json()["broadcasts"]
    assert len(many) == 11
    assert _stats_queries(api_a) == one


def test_stats_of_a_list_filter_by_kits_status_and_sent_time(api_a, draft, sent):
    def ids(**params):
        response = api_a.get("/v4/broadcasts/stats", **params)
        assert response.status_code == 200, response.json()
        return [b["id"] for b in response.json()["broadcasts"]]

    assert ids(status="completed") == [sent.id]
    assert ids(status="draft") == [draft.id]
    assert ids(status="sending") == []
    sent_on = sent.sent_at.strftime("%Y-%m-%d")
    assert ids(sent_after=sent_on) == [sent.id]
    assert ids(sent_before=sent_on) == []
    assert ids(sent_after=_future()) == []


def test_stats_of_a_list_page_with_kits_cursors(api_a, draft, sent):
    first = api_a.get("/v4/broadcasts/stats", per_page=1, include_total_count="true").json()
    assert [b["id"] for b in first["broadcasts"]] == [sent.id]
    assert first["pagination"]["has_next_page"] is True
    assert first["pagination"]["total_count"] == 2
    after = first["pagination"]["end_cursor"]
    second = api_a.get("/v4/broadcasts/stats", per_page=1, after=after).json()
    assert [b["id"] for b in second["broadcasts"]] == [draft.id]
    assert second["pagination"]["has_next_page"] is False
    # A cursor of the broadcasts list is not one of this list.
    listed = api_a.get("/v4/broadcasts", per_page=1).json()["pagination"]["end_cursor"]
    assert api_a.get("/v4/broadcasts/stats", after=listed).status_code == 422


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"status": "sent"}, "status must be one of"),
        ({"sent_after": "yesterday"}, "sent_after must be a date"),
        ({"sent_before": "2026-13-40"}, "sent_before must be a date"),
        ({"per_page": "1001"}, "per_page must be a number from 1 to 1000"),
        ({"after": "bm90LWEtY3Vyc29y"}, "The after cursor is invalid"),
    ],
)
def test_stats_of_a_list_refuse_bad_parameters(api_a, sent, params, error):
    response = api_a.get("/v4/broadcasts/stats", **params)
    assert response.status_code == 422
    assert any(message.startswith(error) for message in response.json()["errors"])


def test_link_clicks_are_kits_per_link_from_the_rollups(api_a, sent):
    response = api_a.get(f"/v4/broadcasts/{sent.id}/clicks")
    assert response.status_code == 200
    body = response.json()
    assert_kit_shape(body, kit.BROADCAST_CLICKS)
    assert body["broadcast"]["clicks"] == [
        {
            "url": "https://example.com/bread",
            "unique_clicks": 4,
            "click_to_delivery_rate": 0.04,
            "click_to_open_rate": 0.08,
        },
        {
            "url": "https://example.com/soup",
            "unique_clicks": 15,
            "click_to_delivery_rate": 0.15,
            "click_to_open_rate": 0.3,
        },
    ]
    first = api_a.get(f"/v4/broadcasts/{sent.id}/clicks", per_page=1).json()
    assert [c["url"] for c in first["broadcast"]["clicks"]] == ["https://example.com/bread"]
    assert first["pagination"]["has_next_page"] is True


# Tenancy ------------------------------------------------------------------------------------

CALLS = [
    ("get", "/v4/broadcasts/{id}", None),
    ("put", "/v4/broadcasts/{id}", {"subject": "Stolen"}),
    ("delete", "/v4/broadcasts/{id}", None),
    ("get", "/v4/broadcasts/{id}/stats", None),
    ("get", "/v4/broadcasts/{id}/clicks", None),
]


def _snapshot():
    return list(
        Broadcast.objects.order_by("id").values_list("id", "subject", "state", "kind", "public")
    )


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_another_accounts_broadcast_is_404_and_nothing_changes(api_b, draft, method, path, body):
    before = _snapshot()
    response = api_b.call(method, path.format(id=draft.id), body)
    assert response.status_code == 404
    assert response.json() == {"errors": ["Not Found"]}
    assert _snapshot() == before


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_a_sequence_emails_message_is_404_and_nothing_changes(
    api_a, sequence_message, method, path, body
):
    before = _snapshot()
    response = api_a.call(method, path.format(id=sequence_message.id), body)
    assert response.status_code == 404
    assert response.json() == {"errors": ["Not Found"]}
    assert _snapshot() == before


def test_lists_show_only_the_keys_account(api_b, draft):
    assert api_b.get("/v4/broadcasts").json()["broadcasts"] == []
    assert api_b.get("/v4/broadcasts/stats").json()["broadcasts"] == []
