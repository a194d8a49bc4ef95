"""A rule in words: each trigger and action as the list and the rule's page say it."""

from __future__ import annotations

import pytest

from automations.rules.words import Names, action_words, rule_words, trigger_words
from automations.services import TriggerSpec

NAMES = Names(
    tags={1: "Customer", 2: "Buyer"},
    forms={3: "Newsletter"},
    sequences={4: "Onboarding"},
    links={5: "https://ex.com/pricing"},
    fields={"city": "City"},
)


def test_the_sentence_joins_triggers_with_or_and_actions_in_order():
    words = rule_words(
        triggers=[TriggerSpec(kind="tag_added", object_id=1), TriggerSpec(kind="form_joined")],
        actions=[
            {"kind": "add_tag", "object_id": 2},
            {"kind": "subscribe_sequence", "object_id": 4},
        ],
        names=NAMES,
    )
    assert words.sentence == (
        "When tag Customer is added or someone subscribes to any form → add tag Buyer, "
        "subscribe to sequence Onboarding"
    )


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (TriggerSpec(kind="form_joined", object_id=3), "someone subscribes to form Newsletter"),
        (TriggerSpec(kind="form_joined"), "someone subscribes to any form"),
        (TriggerSpec(kind="tag_removed", object_id=2), "tag Buyer is removed"),
        (
            TriggerSpec(kind="sequence_subscribed", object_id=4),
            "someone subscribes to sequence Onboarding",
        ),
        (
            TriggerSpec(kind="sequence_completed", object_id=4),
            "someone completes sequence Onboarding",
        ),
        (TriggerSpec(kind="link_clicked", object_id=5), "someone clicks https://ex.com/pricing"),
        (
            TriggerSpec(kind="link_clicked", detail="/pricing"),
            "someone clicks a link whose URL contains “/pricing”",
        ),
        (TriggerSpec(kind="field_changed", detail="city"), "custom field City changes"),
        (
            TriggerSpec(kind="field_changed", detail="city", value="Paris"),
            "custom field City changes to “Paris”",
        ),
        (TriggerSpec(kind="unsubscribed"), "someone unsubscribes"),
        (TriggerSpec(kind="tag_added", object_id=99), "a deleted tag is added"),
        (TriggerSpec(kind="form_joined", object_id=99), "someone subscribes to a deleted form"),
        (TriggerSpec(kind="link_clicked", object_id=99), "someone clicks a deleted link"),
        (TriggerSpec(kind="field_changed", detail="gone"), "a deleted custom field (gone) changes"),
    ],
)
def test_each_trigger_in_words(spec, said):
    assert trigger_words(spec, NAMES) == said


@pytest.mark.parametrize(
    ("action", "said"),
    [
        ({"kind": "add_tag", "object_id": 2}, "add tag Buyer"),
        ({"kind": "remove_tag", "object_id": 1}, "remove tag Customer"),
        ({"kind": "subscribe_sequence", "object_id": 4}, "subscribe to sequence Onboarding"),
        ({"kind": "remove_sequence", "object_id": 4}, "remove from sequence Onboarding"),
        (
            {"kind": "set_field", "detail": "city", "value": "Lyon"},
            "set custom field City to “Lyon”",
        ),
        ({"kind": "set_field", "detail": "city", "value": ""}, "clear custom field City"),
        ({"kind": "unsubscribe"}, "unsubscribe them"),
        ({"kind": "remove_sequence", "object_id": 99}, "remove from a deleted sequence"),
    ],
)
def test_each_action_in_words(action, said):
    assert action_words(action, NAMES) == said
