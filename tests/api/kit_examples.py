"""Kit's documented example responses (developers.kit.com, API v4 reference), and the check
that an answer of ours has their shape, field by field."""

from __future__ import annotations

import re

KIT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

PAGINATION = {
    "has_previous_page": False,
    "has_next_page": False,
    "start_cursor": "WzExXQ==",
    "end_cursor": "WzEwXQ==",
    "per_page": 500,
}
SUBSCRIBER = {
    "id": 324,
    "first_name": "Alice",
    "email_address": "alice@convertkit.dev",
    "state": "active",
    "created_at": "2023-02-17T11:43:55Z",
    "fields": {"category": "One"},
}
TAGGED_SUBSCRIBER = {**SUBSCRIBER, "tagged_at": "2023-02-17T11:43:55Z"}

GET_ACCOUNT = {
    "user": {"email": "alice@convertkit.dev", "id": 1},
    "account": {
        "id": 1,
        "name": "Alice's Kitchen",
        "plan_type": "creator",
        "primary_email_address": "alice@convertkit.dev",
        "created_at": "2023-02-17T11:43:55Z",
    },
}
LIST_SUBSCRIBERS = {"subscribers": [SUBSCRIBER], "pagination": PAGINATION}
CREATE_SUBSCRIBER = {"subscriber": SUBSCRIBER}
GET_SUBSCRIBER = {"subscriber": {**SUBSCRIBER, "canceled_at": None}}
LIST_TAGS_FOR_SUBSCRIBER = {
    "tags": [{"id": 111, "name": "Tag B", "tagged_at": "2023-02-17T10:43:55Z"}],
    "pagination": PAGINATION,
}
LIST_TAGS = {
    "tags": [
        {"id": 11, "name": "Tag B", "created_at": "2023-02-17T11:43:55Z", "subscriber_count": 0}
    ],
    "pagination": PAGINATION,
}
CREATE_TAG = {"tag": {"id": 19, "name": "Completed", "created_at": "2023-02-17T11:43:55Z"}}
TAG_SUBSCRIBER = {"subscriber": TAGGED_SUBSCRIBER}
LIST_SUBSCRIBERS_FOR_TAG = {"subscribers": [TAGGED_SUBSCRIBER], "pagination": PAGINATION}


def assert_kit_shape(ours, kits, where: str = "") -> None:
    """`ours` has the keys of Kit's example, no others, each value of the same JSON type (a
    null in the example allows a string too; timestamps as Kit writes them). `fields` holds
    any keys with string or null values, as custom fields do."""
    if isinstance(kits, dict):
        assert isinstance(ours, dict), where
        if where.endswith("fields"):
            assert all(isinstance(value, str | None) for value in ours.values()), where
            return
        assert set(ours) == set(kits), f"{where}: {sorted(ours)} != {sorted(kits)}"
        for key in kits:
            assert_kit_shape(ours[key], kits[key], f"{where}.{key}")
    elif isinstance(kits, list):
        assert isinstance(ours, list) and ours, f"{where}: compare a non-empty list"
        for item in ours:
            assert_kit_shape(item, kits[0], f"{where}[]")
    elif kits is None:
        assert ours is None or isinstance(ours, str), where
    else:
        assert type(ours) is type(kits), f"{where}: {ours!r} is not like {kits!r}"
        if isinstance(kits, str) and KIT_TIME.match(kits):
            assert KIT_TIME.match(ours), f"{where}: {ours!r}"
