"""Kit's documented example responses of the broadcasts endpoints (developers.kit.com, API v4
reference: "Get a broadcast", "Create a broadcast", "Get stats for a broadcast", "Get stats
for a list of broadcasts", "Get link clicks for a broadcast"), compared with ours by
tests.api.kit_examples.assert_kit_shape.

Two differences, on purpose: Kit's email_template.id is an integer; ours is the template's key
("classic", "modern", "plain", or an own template's id as a string), so it is a string here.
Kit's example of the list of stats writes its rates and progress as 0, which its schema says are
floats (as in the one broadcast's example): they are floats here."""

from __future__ import annotations

import copy

from tests.api.kit_examples import PAGINATION, assert_kit_shape

BROADCAST = {
    "id": 27,
    "publication_id": 27,
    "created_at": "2023-02-17T11:43:55Z",
    "subject": "Hello!",
    "preview_text": "Pleased to meet you!",
    "description": "Intro email",
    "content": "<p>Let me introduce myself</p>",
    "public": True,
    "published_at": None,
    "send_at": None,
    "thumbnail_alt": None,
    "thumbnail_url": None,
    "public_url": None,
    "email_address": "greetings@kit.dev",
    # Kit: {"id": 2, "name": "Classic"}.
    "email_template": {"id": "classic", "name": "Classic"},
    "subscriber_filter": [{"all": [{"type": "segment", "ids": [18]}]}],
}
# Kit's two documented forms of a condition in subscriber_filter's "all", "any" and "none".
FILTER_CONDITIONS = ({"type": "all_subscribers"}, {"type": "segment", "ids": [18]})
LIST_BROADCASTS = {"broadcasts": [BROADCAST], "pagination": PAGINATION}
GET_BROADCAST = {"broadcast": BROADCAST}
CREATE_BROADCAST = {"broadcast": BROADCAST}
UPDATE_BROADCAST = {"broadcast": BROADCAST}
BROADCAST_STATS = {
    "broadcast": {
        "id": 5,
        "stats": {
            "recipients": 82,
            "open_rate": 60.98,
            "emails_opened": 50,
            "click_rate": 23.17,
            "unsubscribe_rate": 1.22,
            "unsubscribes": 1,
            "total_clicks": 19,
            "show_total_clicks": False,
            "status": "completed",
            "progress": 100.0,
            "open_tracking_disabled": False,
            "click_tracking_disabled": False,
        },
    }
}
BROADCASTS_STATS = {
    "broadcasts": [
        {
            "id": 125,
            "stats": {
                "recipients": 0,
                "open_rate": 0.0,
                "emails_opened": 0,
                "click_rate": 0.0,
                "unsubscribe_rate": 0.0,
                "unsubscribes": 0,
                "total_clicks": 0,
                "show_total_clicks": False,
                "status": "draft",
                "progress": 0.0,
                "open_tracking_disabled": False,
                "click_tracking_disabled": False,
            },
        }
    ],
    "pagination": PAGINATION,
}
BROADCAST_CLICKS = {
    "broadcast": {
        "id": 119,
        "clicks": [
            {
                "url": "https://example.com/52",
                "unique_clicks": 3,
                "click_to_delivery_rate": 0.006,
                "click_to_open_rate": 0.03,
            }
        ],
    },
    "pagination": PAGINATION,
}


def assert_broadcasts_kit_shape(ours, kits) -> None:
    """assert_kit_shape, each broadcast's subscriber_filter compared with Kit's forms of it:
    groups with "all", "any" or "none" lists, each condition one of FILTER_CONDITIONS."""
    ours = copy.deepcopy(ours)
    broadcasts = ours.get("broadcasts") or [ours["broadcast"]]
    for broadcast in broadcasts:
        groups = broadcast["subscriber_filter"]
        assert isinstance(groups, list) and groups
        for group in groups:
            assert group and set(group) <= {"all", "any", "none"}, group
            for conditions in group.values():
                assert isinstance(conditions, list) and conditions
                for condition in conditions:
                    form = FILTER_CONDITIONS[0 if "ids" not in condition else 1]
                    assert_kit_shape(condition, form, "subscriber_filter[]")
        broadcast["subscriber_filter"] = BROADCAST["subscriber_filter"]
    assert_kit_shape(ours, kits)
