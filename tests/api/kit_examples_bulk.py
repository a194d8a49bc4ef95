"""Kit's documented example answers of the bulk endpoints (developers.kit.com, API v4 reference,
"Bulk ..."); compared with tests.api.kit_examples.assert_kit_shape. The callback's body is the
same as the synchronous answer."""

from __future__ import annotations

TIME = "2023-02-17T11:43:55Z"

BULK_CREATE_SUBSCRIBERS = {
    "subscribers": [
        {
            "id": 506,
            "first_name": None,
            "email_address": "brooke@convertkit.dev",
            "state": "active",
            "created_at": TIME,
        }
    ],
    "failures": [
        {
            "subscriber": {
                "first_name": "Benito",
                "email_address": None,
                "state": "active",
                "created_at": None,
            },
            "errors": ["Email address is invalid"],
        }
    ],
}
BULK_CREATE_TAGS = {
    "tags": [{"id": 69, "name": "Attended Event", "created_at": TIME}],
}
BULK_TAG_SUBSCRIBERS = {
    "subscribers": [
        {
            "id": 649,
            "first_name": "Sub",
            "email_address": "sub@example.com",
            "created_at": TIME,
            "tagged_at": TIME,
        }
    ],
}
# Kit's two failures: the id that names nothing is null in the echo.
TAGGING_NO_SUBSCRIBER = {
    "errors": ["Subscriber does not exist"],
    "tagging": {"tag_id": 83, "subscriber_id": None},
}
TAGGING_NO_TAG = {
    "errors": ["Tag does not exist"],
    "tagging": {"tag_id": None, "subscriber_id": 649},
}
BULK_REMOVE_TAGS = {"failures": []}
BULK_FIELD_VALUES = {
    "custom_field_values": [
        {"subscriber_id": 615, "subscriber_custom_field_id": 156, "value": "Smith"}
    ],
}
FIELD_VALUE_NO_SUBSCRIBER = {
    "errors": ["Subscriber does not exist"],
    "custom_field_value": {
        "subscriber_id": None,
        "subscriber_custom_field_id": 156,
        "value": "Jones",
    },
}
FIELD_VALUE_NO_FIELD = {
    "errors": ["Custom field does not exist"],
    "custom_field_value": {
        "subscriber_id": 615,
        "subscriber_custom_field_id": 999999,
        "value": "Test",
    },
}
REFERRER = "https://mywebsite.com/bfpromo/?utm_source=facebook&utm_medium=cpc"
BULK_ADD_TO_FORMS = {
    "subscribers": [
        {
            "id": 633,
            "first_name": "Sub",
            "email_address": "sub@example.com",
            "created_at": TIME,
            "added_at": TIME,
            "referrer": REFERRER,
            "referrer_utm_parameters": {
                "source": "facebook",
                "medium": "cpc",
                "campaign": "black_friday",
                "term": "car_owners",
                "content": "get_10_off",
            },
        }
    ],
}
FORM_NO_SUBSCRIBER = {
    "errors": ["Subscriber does not exist"],
    "subscription": {"form_id": 136, "subscriber_id": None, "referrer": REFERRER},
}
FORM_NO_FORM = {
    "errors": ["Form does not exist"],
    "subscription": {"form_id": None, "subscriber_id": 633, "referrer": REFERRER},
}
QUEUE_FULL = {
    "errors": [
        "This request exceeds your queued bulk requests limit. Please wait while we process "
        "your existing requests and try again later."
    ]
}
