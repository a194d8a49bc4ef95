"""Kit's webhook event types and the outbox kinds they listen for."""

from __future__ import annotations

from automations.models import EventKind
from webhooks.models import EventType

# The outbox kind each event type listens for.
KIND_OF: dict[str, EventKind] = {
    EventType.SUBSCRIBER_ACTIVATE: EventKind.ACTIVATED,
    EventType.SUBSCRIBER_UNSUBSCRIBE: EventKind.UNSUBSCRIBED,
    EventType.SUBSCRIBER_BOUNCE: EventKind.BOUNCED,
    EventType.SUBSCRIBER_COMPLAIN: EventKind.COMPLAINED,
    EventType.FORM_SUBSCRIBE: EventKind.FORM_JOINED,
    EventType.COURSE_SUBSCRIBE: EventKind.SEQUENCE_SUBSCRIBED,
    EventType.COURSE_COMPLETE: EventKind.SEQUENCE_COMPLETED,
    EventType.LINK_CLICK: EventKind.LINK_CLICKED,
    EventType.TAG_ADD: EventKind.TAG_ADDED,
    EventType.TAG_REMOVE: EventKind.TAG_REMOVED,
    EventType.CREATED: EventKind.CREATED,
    EventType.ACTIVATED: EventKind.ACTIVATED,
    EventType.UNSUBSCRIBED: EventKind.UNSUBSCRIBED,
    EventType.BOUNCED: EventKind.BOUNCED,
    EventType.COMPLAINED: EventKind.COMPLAINED,
    EventType.SUBSCRIBED_TO_FORM: EventKind.FORM_JOINED,
    EventType.ADDED_TO_SEQUENCE: EventKind.SEQUENCE_SUBSCRIBED,
    EventType.SEQUENCE_COMPLETED: EventKind.SEQUENCE_COMPLETED,
    EventType.TAG_ADDED: EventKind.TAG_ADDED,
    EventType.TAG_REMOVED: EventKind.TAG_REMOVED,
    EventType.LINK_CLICKED: EventKind.LINK_CLICKED,
}

# Kit's legacy events (/v4/webhooks) and the parameter each one requires.
LEGACY_EVENTS: dict[str, str | None] = {
    EventType.SUBSCRIBER_ACTIVATE: None,
    EventType.SUBSCRIBER_UNSUBSCRIBE: None,
    EventType.SUBSCRIBER_BOUNCE: None,
    EventType.SUBSCRIBER_COMPLAIN: None,
    EventType.FORM_SUBSCRIBE: "form_id",
    EventType.COURSE_SUBSCRIBE: "sequence_id",
    EventType.COURSE_COMPLETE: "sequence_id",
    EventType.LINK_CLICK: "initiator_value",
    EventType.TAG_ADD: "tag_id",
    EventType.TAG_REMOVE: "tag_id",
}

# The catalog's events (/v4/webhook_endpoints): every object of the kind (any tag, any form).
CATALOG_EVENTS = tuple(kind for kind in KIND_OF if kind not in LEGACY_EVENTS)

# The resource an event's data carries beside the subscriber (catalog events only), by the
# outbox kind's object.
RESOURCE_OF: dict[str, str] = {
    EventKind.TAG_ADDED: "tag",
    EventKind.TAG_REMOVED: "tag",
    EventKind.FORM_JOINED: "form",
    EventKind.SEQUENCE_SUBSCRIBED: "sequence",
    EventKind.SEQUENCE_COMPLETED: "sequence",
    EventKind.LINK_CLICKED: "link",
}
