"""Kit's documented example responses (developers.kit.com, API v4 reference) for custom
fields, forms, sequences and segments; compared with tests.api.kit_examples.assert_kit_shape."""

from __future__ import annotations

from tests.api.kit_examples import PAGINATION, SUBSCRIBER

LIST_CUSTOM_FIELDS = {
    "custom_fields": [
        {"id": 1, "name": "ck_field_1_last_name", "key": "last_name", "label": "Last name"}
    ],
    "pagination": PAGINATION,
}
CREATE_CUSTOM_FIELD = {
    "custom_field": {
        "id": 8,
        "name": "ck_field_8_interests",
        "key": "interests",
        "label": "Interests",
    }
}
UPDATE_CUSTOM_FIELD = {
    "custom_field": {
        "id": 27,
        "name": "ck_field_27_last_name",
        "key": "last_name",
        "label": "Last name",
    }
}

LIST_FORMS = {
    "forms": [
        {
            "id": 1,
            "name": "Sign up",
            "created_at": "2023-02-17T11:43:55Z",
            "type": "embed",
            "format": "inline",
            "embed_js": "https://example.kit.com/85629c512d/index.js",
            "embed_url": "https://example.kit.com/85629c512d",
            "archived": False,
            "uid": "85629c512d",
            "subscriber_count": 0,
        }
    ],
    "pagination": PAGINATION,
}
REFERRER = (
    "https://mywebsite.com/bfpromo/?utm_source=facebook&utm_medium=cpc"
    "&utm_campaign=black_friday&utm_term=car_owners&utm_content=get_10_off"
)
FORM_SUBSCRIBER = {
    **SUBSCRIBER,
    "added_at": "2023-02-17T11:43:55Z",
    "referrer": REFERRER,
    "referrer_utm_parameters": {
        "source": "facebook",
        "medium": "cpc",
        "campaign": "black_friday",
        "term": "car_owners",
        "content": "get_10_off",
    },
}
ADD_SUBSCRIBER_TO_FORM = {"subscriber": FORM_SUBSCRIBER}
LIST_SUBSCRIBERS_FOR_FORM = {"subscribers": [FORM_SUBSCRIBER], "pagination": PAGINATION}

LIST_SEQUENCES = {
    "sequences": [
        {
            "id": 1,
            "name": "Evergreen sequence",
            "hold": False,
            "repeat": False,
            "created_at": "2023-02-17T11:43:55Z",
        }
    ],
    "pagination": PAGINATION,
}
SEQUENCE_SUBSCRIBER = {**SUBSCRIBER, "added_at": "2023-02-17T11:43:55Z"}
ADD_SUBSCRIBER_TO_SEQUENCE = {"subscriber": SEQUENCE_SUBSCRIBER}
LIST_SUBSCRIBERS_FOR_SEQUENCE = {"subscribers": [SEQUENCE_SUBSCRIBER], "pagination": PAGINATION}

LIST_SEGMENTS = {
    "segments": [{"id": 1, "name": "Segment B", "created_at": "2023-02-17T11:43:55Z"}],
    "pagination": PAGINATION,
}
