"""The automation builder as a creator uses it: the list, each kind of step added at each kind
of place, the flow drawn in order with its branches, counts of people at each step, editing and
deleting in place (with htmx and without), entry points, state and settings, a "send one
email" step's editor, and a subscriber's automations on their page. Bad input changes nothing."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from automations.forms import STEP_CHOICES
from automations.models import Automation, History, Journey, Node, Rule, Trigger
from automations.services import TriggerSpec, automation_create, entry_add, node_add
from broadcasts.models import Broadcast
from tests.automations.flows import objects_of, people_at, steps_add, tagged_flow
from tests.factories import SubscriberFactory
from tracking.models import Link

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
Kind = Node.Kind


@pytest.fixture
def objects(account_a):
    return objects_of(account_a)


@pytest.fixture
def automation(account_a, objects):
    return tagged_flow(account_a, objects)


def builder(client, automation) -> str:
    response = client.get(reverse("automation_detail", args=[automation.pk]))
    assert response.status_code == 200
    return response.content.decode()


def add_url(automation) -> str:
    return reverse("automation_step_add", args=[automation.pk])


def text(html: str) -> str:
    """The page's words, tags and whitespace left out (“” kept)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def card(html: str, node: Node) -> str:
    """The words of a step's card on the builder, and what follows it."""
    return text(html[html.index(f'id="step-{node.pk}">') :].split(">", 1)[1])


def snapshot() -> list:
    return [
        list(model.objects.order_by("id").values())
        for model in (Automation, Node, Trigger, Journey, Broadcast)
    ]


# What each kind of step posts, the config it is saved with, and how the builder says it.
def step_cases(o) -> dict:
    return {
        (Kind.SEQUENCE, ""): (
            {"sequence_id": o.sequence.pk},
            {"sequence_id": o.sequence.pk},
            "Subscribe to the sequence “Onboarding”; move on when they finish it",
        ),
        (Kind.ADD_TAG, ""): ({"tag_id": o.tag.pk}, {"tag_id": o.tag.pk}, "Add the tag “Customer”"),
        (Kind.REMOVE_TAG, ""): (
            {"tag_id": o.tag.pk},
            {"tag_id": o.tag.pk},
            "Remove the tag “Customer”",
        ),
        (Kind.SET_FIELD, ""): (
            {"key": "city", "value": "Paris"},
            {"key": "city", "value": "Paris"},
            "Set “City” to “Paris”",
        ),
        (Kind.MOVE, ""): (
            {"automation_id": o.other.pk},
            {"automation_id": o.other.pk},
            "Move to the automation “Upsell”",
        ),
        (Kind.EXIT, ""): ({}, {}, "Exit the automation"),
        (Kind.EMAIL, ""): ({}, {}, "Send one email, not written yet"),
        (Kind.DELAY, ""): (
            {"amount": "2", "unit": "days"},
            {"amount": 2, "unit": "days"},
            "Wait 2 days",
        ),
        (Kind.WAIT_UNTIL, "date"): (
            {"date": "2030-05-01", "hour": "9"},
            {"mode": "date", "date": "2030-05-01", "hour": 9},
            "Wait until 1 May 2030, 09:00",
        ),
        (Kind.WAIT_UNTIL, "weekday"): (
            {"days": ["0", "4"], "hour": "18"},
            {"mode": "weekday", "days": [0, 4], "hour": 18},
            "Wait until the next Monday or Friday, 18:00",
        ),
        (Kind.WAIT_UNTIL, "hour"): (
            {"hour": "7"},
            {"mode": "hour", "hour": 7},
            "Wait until 07:00",
        ),
        (Kind.CONDITION, "has_tag"): (
            {"tag_id": o.tag.pk},
            {"test": "has_tag", "tag_id": o.tag.pk},
            "Has the tag “Customer”?",
        ),
        (Kind.CONDITION, "field"): (
            {"key": "city", "op": "contains", "value": "Par"},
            {"test": "field", "key": "city", "op": "contains", "value": "Par"},
            "“City” contains “Par”?",
        ),
        (Kind.CONDITION, "segment"): (
            {"segment_id": o.segment.pk},
            {"test": "segment", "segment_id": o.segment.pk},
            "In the segment “Fans”?",
        ),
        (Kind.CONDITION, "opened"): (
            {"message_id": o.email.pk},
            {"test": "opened", "message_id": o.email.pk},
            "Opened “Big news”?",
        ),
        (Kind.CONDITION, "clicked"): (
            {"message_id": o.email.pk, "link_id": o.link.pk},
            {"test": "clicked", "message_id": o.email.pk, "link_id": o.link.pk},
            "Clicked https://example.com/pricing in “Big news”?",
        ),
        (Kind.GOAL, "tag_added"): (
            {"tag_id": o.tag.pk},
            {"kind": "tag_added", "object_id": o.tag.pk, "detail": "", "value": ""},
            "Tag “Customer” is added",
        ),
        (Kind.GOAL, "tag_removed"): (
            {"tag_id": o.tag.pk},
            {"kind": "tag_removed", "object_id": o.tag.pk, "detail": "", "value": ""},
            "Tag “Customer” is removed",
        ),
        (Kind.GOAL, "field_changed"): (
            {"key": "city", "value": "Rome"},
            {"kind": "field_changed", "object_id": None, "detail": "city", "value": "Rome"},
            "“City” is set to “Rome”",
        ),
        (Kind.GOAL, "link_clicked"): (
            {"link_id": "", "url": "/pricing"},
            {"kind": "link_clicked", "object_id": None, "detail": "/pricing", "value": ""},
            "Clicks a link whose address contains “/pricing”",
        ),
        (Kind.WEBHOOK, ""): (
            {"endpoint": o.webhook.pk},
            {"endpoint": o.webhook.pk},
            "Send a webhook",
        ),
    }


STEP_KEYS = [(choice.kind, choice.variant) for choice in STEP_CHOICES]


# --- The list ---------------------------------------------------------------------------------


def test_the_list_shows_each_automation_with_its_entry_points_and_counts(
    alice_client, account_a, objects, automation
):
    entry_add(automation=automation, spec=TriggerSpec(kind="form_joined"))
    (step,) = steps_add(automation, (Kind.ADD_TAG, {"tag_id": objects.tag.pk}))
    people_at(step, 3)
    people_at(step, 2, state=Journey.State.COMPLETED)
    page = text(alice_client.get(reverse("automation_list")).content.decode())
    assert "Welcome" in page and "Upsell" in page
    assert "Tag “Customer” is added; or Joins any form" in page
    row = page[page.index("Welcome") :]
    assert re.match(r"Welcome Inactive Tag “Customer” is added; or Joins any form 3 2", row)
    assert "New automation" in page


def test_creating_an_automation_opens_its_builder(alice_client, account_a):
    response = alice_client.post(reverse("automation_create"), {"name": "  Birthdays "})
    automation = Automation.objects.get(account=account_a)
    assert response.status_code == 302
    assert response["Location"] == reverse("automation_detail", args=[automation.pk])
    assert automation.name == "Birthdays" and automation.state == "inactive"
    page = text(builder(alice_client, automation))
    assert "Add an entry point" in page and "Add a step at the start" in page


def test_an_automation_needs_a_name(alice_client, account_a):
    response = alice_client.post(reverse("automation_create"), {"name": "  "})
    assert response.status_code == 400
    assert "Give the automation a name." in response.content.decode()
    assert not Automation.objects.exists()


# --- Adding steps -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", STEP_KEYS, ids=lambda key: "-".join(filter(None, key)))
def test_each_kind_of_step_is_added_at_the_start_and_shown_in_words(
    alice_client, automation, objects, key
):
    posted, config, words = step_cases(objects)[key]
    kind, variant = key
    response = alice_client.post(
        add_url(automation),
        {"parent": "", "branch": "", "kind": kind, "variant": variant, **posted},
    )
    assert response.status_code == 302
    node = Node.objects.get(automation=automation)
    assert (node.kind, node.parent_id, node.branch, node.config) == (kind, None, "", config)
    assert words in text(builder(alice_client, automation))


def test_each_kind_of_step_offers_its_own_settings_form(alice_client, automation, objects):
    for kind, variant in STEP_KEYS:
        posted, _config, _words = step_cases(objects)[(kind, variant)]
        response = alice_client.get(
            add_url(automation), {"parent": "", "branch": "", "kind": kind, "variant": variant}
        )
        html = response.content.decode()
        assert response.status_code == 200
        form = html[html.index('id="slot-0-next"') :]
        for name in posted:
            assert f'name="{name}"' in form, (kind, variant, name)
        assert 'name="tag_id"' in form or "tag_id" not in posted


def test_the_first_place_offers_every_kind_of_step(alice_client, automation):
    response = alice_client.get(add_url(automation), {"parent": "", "branch": ""})
    page = text(response.content.decode())
    for label in ("Email sequence", "Send one email", "Delay", "Wait until a date", "Has a tag"):
        assert label in page
    assert "Opened an email" in page and "Link clicked" in page and "Exit" in page


def test_a_step_added_after_another_and_at_the_start_goes_exactly_there(
    alice_client, automation, objects
):
    first, last = steps_add(automation, (Kind.ADD_TAG, {"tag_id": objects.tag.pk}), (Kind.EXIT, {}))
    alice_client.post(
        add_url(automation),
        {"parent": first.pk, "branch": "", "kind": "delay", "amount": "3", "unit": "hours"},
    )
    alice_client.post(
        add_url(automation),
        {"parent": "", "branch": "", "kind": "wait_until", "variant": "hour", "hour": "8"},
    )
    page = text(builder(alice_client, automation))
    order = ["Wait until 08:00", "Add the tag “Customer”", "Wait 3 hours", "Exit the automation"]
    assert [page.index(words) for words in order] == sorted(page.index(words) for words in order)
    delay = Node.objects.get(kind=Kind.DELAY)
    assert delay.parent_id == first.pk
    last.refresh_from_db()
    assert last.parent_id == delay.pk


def test_steps_added_under_yes_and_no_are_drawn_in_their_branches_side_by_side(
    alice_client, automation, objects
):
    (condition,) = steps_add(
        automation, (Kind.CONDITION, {"test": "has_tag", "tag_id": objects.tag.pk})
    )
    for branch, posted in (
        ("yes", {"kind": "sequence", "sequence_id": objects.sequence.pk}),
        ("no", {"kind": "delay", "amount": "1", "unit": "weeks"}),
    ):
        response = alice_client.post(
            add_url(automation), {"parent": condition.pk, "branch": branch, **posted}
        )
        assert response.status_code == 302
    no_step = Node.objects.get(kind=Kind.DELAY)
    alice_client.post(add_url(automation), {"parent": no_step.pk, "branch": "", "kind": "exit"})
    html = builder(alice_client, automation)
    yes = text(html[html.index("flow-branch-yes") : html.index("flow-branch-no")])
    no = text(html[html.index("flow-branch-no") :])
    assert "Subscribe to the sequence “Onboarding”" in yes and "Wait 1 week" not in yes
    assert "Wait 1 week" in no and "Exit the automation" in no and "Onboarding" not in no
    assert no.index("Wait 1 week") < no.index("Exit the automation")
    assert f'id="slot-{condition.pk}-yes"' in html and f'id="slot-{condition.pk}-no"' in html
    assert Node.objects.get(kind=Kind.SEQUENCE).branch == "yes"


def test_a_condition_inserted_above_a_step_takes_it_under_yes(alice_client, automation, objects):
    (tagging,) = steps_add(automation, (Kind.ADD_TAG, {"tag_id": objects.tag.pk}))
    alice_client.post(
        add_url(automation),
        {
            "parent": "",
            "branch": "",
            "kind": "condition",
            "variant": "segment",
            "segment_id": objects.segment.pk,
        },
    )
    tagging.refresh_from_db()
    assert tagging.branch == "yes" and tagging.parent.kind == Kind.CONDITION
    html = builder(alice_client, automation)
    assert "Add the tag" in text(html[html.index("flow-branch-yes") : html.index("flow-branch-no")])


def test_an_exit_is_offered_only_at_the_end_of_a_branch(alice_client, automation, objects):
    (tagging,) = steps_add(automation, (Kind.ADD_TAG, {"tag_id": objects.tag.pk}))
    middle = text(
        alice_client.get(add_url(automation), {"parent": "", "branch": ""}).content.decode()
    )
    end = text(
        alice_client.get(add_url(automation), {"parent": tagging.pk, "branch": ""}).content.decode()
    )
    assert "Exit" not in middle.split("Add a step at the start")[1].split("Cancel")[0]
    assert "Move to another automation" in end
    before = snapshot()
    response = alice_client.post(add_url(automation), {"parent": "", "branch": "", "kind": "exit"})
    assert response.status_code == 400
    assert "An exit or a move ends a branch" in response.content.decode()
    assert snapshot() == before


def test_with_htmx_the_plus_opens_in_place_and_adding_answers_with_the_new_flow(
    alice_client, automation, objects
):
    response = alice_client.get(add_url(automation), {"parent": "", "branch": ""}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'id="flow"' in html and "Add a step" in html and "autofocus" in html
    response = alice_client.post(
        add_url(automation),
        {"parent": "", "branch": "", "kind": "add_tag", "tag_id": objects.tag.pk},
        **HTMX,
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert "Step added: Add tag." in html and "Add the tag “Customer”" in text(html)


def test_with_htmx_a_refused_step_shows_its_problems_in_place(alice_client, automation):
    before = snapshot()
    response = alice_client.post(
        add_url(automation),
        {"parent": "", "branch": "", "kind": "delay", "amount": "400", "unit": "days"},
        **HTMX,
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert "A delay is at least one minute and at most a year." in html
    assert snapshot() == before


def test_a_send_one_email_step_opens_its_editor(alice_client, automation):
    response = alice_client.post(
        add_url(automation), {"parent": "", "branch": "", "kind": "email"}, **HTMX
    )
    node = Node.objects.get(automation=automation)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse(
        "automation_email_edit", args=[automation.pk, node.pk]
    )
    assert node.message.kind == Broadcast.Kind.AUTOMATION_EMAIL
    page = text(builder(alice_client, automation))
    assert "Email not finished" in page
    assert "Finish the email of each “send one email” step." in page


# --- Counts, editing and deleting -------------------------------------------------------------


def test_each_step_shows_how_many_people_stand_at_it(alice_client, automation, objects):
    tagging, delay = steps_add(
        automation,
        (Kind.ADD_TAG, {"tag_id": objects.tag.pk}),
        (Kind.DELAY, {"amount": 2, "unit": "days"}),
    )
    people_at(delay, 3)
    people_at(delay, 4, state=Journey.State.COMPLETED)
    html = builder(alice_client, automation)
    assert card(html, delay).startswith("Delay Wait 2 days 3 people here")
    assert card(html, tagging).startswith("Add tag Add the tag “Customer” 0 people here")


def test_editing_a_step_in_place_shows_who_waits_and_saves_it(alice_client, automation, objects):
    (delay,) = steps_add(automation, (Kind.DELAY, {"amount": 2, "unit": "days"}))
    people_at(delay, 3)
    url = reverse("automation_step_edit", args=[automation.pk, delay.pk])
    html = alice_client.get(url, **HTMX).content.decode()
    assert "3 people wait here. They stay here" in text(html)
    assert 'name="amount"' in html and 'value="2"' in html
    response = alice_client.post(url, {"amount": "5", "unit": "hours"})
    assert response.status_code == 302
    delay.refresh_from_db()
    assert delay.config == {"amount": 5, "unit": "hours"}
    assert "Wait 5 hours" in text(builder(alice_client, automation))


def test_editing_a_condition_may_change_what_it_tests(alice_client, automation, objects):
    (condition,) = steps_add(
        automation, (Kind.CONDITION, {"test": "has_tag", "tag_id": objects.tag.pk})
    )
    url = reverse("automation_step_edit", args=[automation.pk, condition.pk])
    page = text(alice_client.get(url).content.decode())
    assert "Or instead: Custom field · In a segment · Opened an email · Clicked in an email" in page
    response = alice_client.post(
        url, {"variant": "field", "key": "city", "op": "is_not_set", "value": ""}
    )
    assert response.status_code == 302
    condition.refresh_from_db()
    assert condition.config == {"test": "field", "key": "city", "op": "is_not_set", "value": ""}


def test_editing_a_goal_moves_its_trigger_with_it(alice_client, automation, objects):
    (goal,) = steps_add(
        automation,
        (Kind.GOAL, {"kind": "tag_added", "object_id": objects.tag.pk, "detail": "", "value": ""}),
    )
    url = reverse("automation_step_edit", args=[automation.pk, goal.pk])
    alice_client.post(url, {"variant": "link_clicked", "link_id": objects.link.pk, "url": ""})
    trigger = Trigger.objects.get(node=goal)
    assert (trigger.kind, trigger.object_id, trigger.role) == (
        "link_clicked",
        objects.link.pk,
        "goal",
    )
    assert "Clicks https://example.com/pricing" in text(builder(alice_client, automation))


def test_the_delete_confirmation_says_how_many_wait_and_where_they_go(
    alice_client, automation, objects
):
    delay, tagging = steps_add(
        automation,
        (Kind.DELAY, {"amount": 2, "unit": "days"}),
        (Kind.ADD_TAG, {"tag_id": objects.tag.pk}),
    )
    people_at(delay, 3)
    people_at(tagging, 1)
    page = text(
        alice_client.get(
            reverse("automation_step_delete", args=[automation.pk, delay.pk])
        ).content.decode()
    )
    assert "3 people wait here; they will move to the next step, “Add the tag “Customer””." in page
    last = text(
        alice_client.get(
            reverse("automation_step_delete", args=[automation.pk, tagging.pk]), **HTMX
        ).content.decode()
    )
    assert "1 person waits here; they will complete the automation: no step follows." in last


def test_deleting_a_step_with_people_moves_them_to_the_next_step(alice_client, automation, objects):
    delay, tagging = steps_add(
        automation,
        (Kind.DELAY, {"amount": 2, "unit": "days"}),
        (Kind.ADD_TAG, {"tag_id": objects.tag.pk}),
    )
    waiting = people_at(delay, 3)
    response = alice_client.post(
        reverse("automation_step_delete", args=[automation.pk, delay.pk]), **HTMX
    )
    assert response.status_code == 200
    assert "Step deleted. 3 people moved on from it." in response.content.decode()
    assert {j.node_id for j in Journey.objects.filter(pk__in=[j.pk for j in waiting])} == {
        tagging.pk
    }
    delay.refresh_from_db()
    tagging.refresh_from_db()
    assert delay.deleted_at is not None and tagging.parent_id is None
    html = builder(alice_client, automation)
    assert "Wait 2 days" not in html
    assert card(html, tagging).startswith("Add tag Add the tag “Customer” 3 people here")


def test_a_condition_with_steps_in_both_branches_cannot_be_deleted(
    alice_client, automation, objects
):
    (condition,) = steps_add(
        automation, (Kind.CONDITION, {"test": "has_tag", "tag_id": objects.tag.pk})
    )
    for branch in ("yes", "no"):
        node_add(automation=automation, parent=condition, branch=branch, kind="exit")
    url = reverse("automation_step_delete", args=[automation.pk, condition.pk])
    page = text(alice_client.get(url).content.decode())
    assert "Both branches of this condition have steps: delete one branch's steps first." in page
    assert "Delete step" not in page
    before = snapshot()
    response = alice_client.post(url)
    assert response.status_code == 400
    assert snapshot() == before


def test_the_builder_reads_as_many_queries_with_six_steps_as_with_two(
    alice_client, automation, objects
):
    two = [(Kind.ADD_TAG, {"tag_id": objects.tag.pk}), (Kind.DELAY, {"amount": 1, "unit": "days"})]
    steps = steps_add(automation, *two)
    people_at(steps[-1], 2)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            builder(alice_client, automation)
        return len(captured)

    with_two = queries()
    steps_add(automation, *two, *two, parent=steps[-1])
    assert Node.objects.filter(automation=automation).count() == 6
    assert queries() == with_two


# --- Bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("posted", "error"),
    [
        ({"kind": "add_tag"}, "Choose one of your tags."),
        ({"kind": "sequence"}, "Choose one of your sequences."),
        ({"kind": "condition", "variant": "segment"}, "Choose one of your segments."),
        ({"kind": "move"}, "Choose one of your automations."),
        ({"kind": "condition", "variant": "opened"}, "Choose one of your emails."),
        ({"kind": "webhook"}, "Choose one of your webhooks."),
    ],
)
def test_another_accounts_object_in_a_step_is_refused_and_changes_nothing(
    alice_client, automation, account_b, posted, error
):
    theirs = objects_of(account_b, prefix="B ")
    ids = {
        "tag_id": theirs.tag.pk,
        "sequence_id": theirs.sequence.pk,
        "segment_id": theirs.segment.pk,
        "automation_id": theirs.other.pk,
        "message_id": theirs.email.pk,
        "endpoint": theirs.webhook.pk,
    }
    before = snapshot()
    response = alice_client.post(add_url(automation), {"parent": "", "branch": "", **posted, **ids})
    assert response.status_code == 400
    assert error in response.content.decode()
    assert snapshot() == before


def test_another_accounts_or_automations_step_as_the_place_is_a_404(
    alice_client, automation, objects, account_b
):
    theirs = objects_of(account_b, prefix="B ")
    (their_step,) = steps_add(theirs.other, (Kind.EXIT, {}))
    (other_step,) = steps_add(objects.other, (Kind.DELAY, {"amount": 1, "unit": "days"}))
    before = snapshot()
    for parent in (their_step.pk, other_step.pk, "x1", "99999999"):
        posted = {"parent": parent, "branch": "", "kind": "exit"}
        assert alice_client.post(add_url(automation), posted).status_code == 404
        assert alice_client.get(add_url(automation), posted).status_code == 404
    assert (
        alice_client.post(add_url(automation), {"parent": "", "branch": "maybe"}).status_code == 404
    )
    for name in ("automation_step_edit", "automation_step_delete", "automation_email_edit"):
        url = reverse(name, args=[automation.pk, other_step.pk])
        assert alice_client.get(url).status_code == 404
        assert alice_client.post(url, {"amount": "3", "unit": "days"}).status_code == 404
    assert snapshot() == before


def test_a_move_that_makes_a_loop_is_refused_clearly(alice_client, automation, objects):
    steps_add(objects.other, (Kind.MOVE, {"automation_id": automation.pk}))
    before = snapshot()
    response = alice_client.post(
        add_url(automation),
        {"parent": "", "branch": "", "kind": "move", "automation_id": objects.other.pk},
    )
    assert response.status_code == 400
    assert "That would move people in a loop: the other automation leads back here." in (
        response.content.decode()
    )
    assert snapshot() == before


def test_an_impossible_date_in_a_wait_is_refused_clearly(alice_client, automation, objects):
    (wait,) = steps_add(automation, (Kind.WAIT_UNTIL, {"mode": "hour", "hour": 9}))
    before = snapshot()
    response = alice_client.post(
        add_url(automation),
        {
            "parent": "",
            "branch": "",
            "kind": "wait_until",
            "variant": "date",
            "date": "2030-02-30",
            "hour": "9",
        },
    )
    assert response.status_code == 400
    assert "“2030-02-30” is not a date (YYYY-MM-DD)." in response.content.decode()
    response = alice_client.post(
        reverse("automation_step_edit", args=[automation.pk, wait.pk]),
        {"variant": "hour", "hour": "24"},
    )
    assert response.status_code == 400
    assert "Choose an hour from 00:00 to 23:00." in response.content.decode()
    assert snapshot() == before


def test_a_place_the_flow_does_not_have_is_refused_clearly(alice_client, automation, objects):
    tagging, leaving = steps_add(
        automation, (Kind.ADD_TAG, {"tag_id": objects.tag.pk}), (Kind.EXIT, {})
    )
    before = snapshot()
    for parent, branch, problem in (
        (tagging.pk, "yes", "Only a condition has yes and no branches."),
        (leaving.pk, "", "Nothing comes after an exit or a move to another automation."),
    ):
        posted = {
            "parent": parent,
            "branch": branch,
            "kind": "delay",
            "amount": "1",
            "unit": "days",
        }
        response = alice_client.post(add_url(automation), posted)
        assert response.status_code == 400
        assert problem in response.content.decode()
        response = alice_client.get(add_url(automation), {"parent": parent, "branch": branch})
        assert "No step can be added there." in response.content.decode()
    assert snapshot() == before


def test_an_unknown_kind_of_step_is_refused(alice_client, automation):
    before = snapshot()
    response = alice_client.post(add_url(automation), {"parent": "", "branch": "", "kind": "spam"})
    assert response.status_code == 400
    assert "Choose a kind of step." in response.content.decode()
    assert snapshot() == before


# --- Entry points -----------------------------------------------------------------------------


def test_each_kind_of_entry_point_is_added_and_shown_in_words(alice_client, account_a, objects):
    automation = automation_create(account=account_a, name="Entries")
    url = reverse("automation_entry_add", args=[automation.pk])
    cases = [
        ({"kind": "form_joined", "form_id": ""}, "Joins any form"),
        ({"kind": "form_joined", "form_id": objects.form.pk}, "Joins the form “Newsletter”"),
        ({"kind": "tag_added", "tag_id": objects.tag.pk}, "Tag “Customer” is added"),
        ({"kind": "field_changed", "key": "city", "value": ""}, "“City” is set"),
        (
            {"kind": "date_occurs", "key": "birthday", "hour": "8"},
            "The day of “Birthday” comes round (every year), at 08:00",
        ),
        (
            {"kind": "sequence_subscribed", "sequence_id": objects.sequence.pk},
            "Subscribes to the sequence “Onboarding”",
        ),
    ]
    for posted, _words in cases:
        assert alice_client.post(url, posted).status_code == 302, posted
    page = text(builder(alice_client, automation))
    for _posted, words in cases:
        assert words in page
    date_entry = Trigger.objects.get(automation=automation, kind="date_occurs")
    assert (date_entry.detail, date_entry.hour, date_entry.role) == ("birthday", 8, "entry")


def test_a_date_entry_point_needs_an_hour_of_the_day(alice_client, automation):
    before = snapshot()
    url = reverse("automation_entry_add", args=[automation.pk])
    response = alice_client.post(url, {"kind": "date_occurs", "key": "birthday", "hour": "25"})
    assert response.status_code == 400
    assert "Choose an hour from 00:00 to 23:00." in response.content.decode()
    assert snapshot() == before


def test_an_entry_point_is_removed_in_place(alice_client, automation):
    trigger = Trigger.objects.get(automation=automation)
    response = alice_client.post(
        reverse("automation_entry_delete", args=[automation.pk, trigger.pk]), **HTMX
    )
    assert response.status_code == 200 and "Entry point removed." in response.content.decode()
    assert not Trigger.objects.filter(automation=automation).exists()


# --- State, settings, delete ------------------------------------------------------------------


def test_an_automation_that_cannot_run_says_why_and_stays_inactive(alice_client, automation):
    response = alice_client.post(
        reverse("automation_state", args=[automation.pk]), {"state": "active"}
    )
    assert response.status_code == 400
    assert "It cannot run yet. Fix these first:" in response.content.decode()
    assert "Add at least one step." in response.content.decode()
    automation.refresh_from_db()
    assert automation.state == "inactive"


def test_activating_pausing_and_deactivating(alice_client, automation, objects):
    steps_add(automation, (Kind.ADD_TAG, {"tag_id": objects.tag.pk}))
    url = reverse("automation_state", args=[automation.pk])
    for state, words in (
        ("active", "Active: people enter and move through it."),
        ("paused", "Paused: people enter and wait at the start; nobody moves."),
        ("inactive", "Inactive: nobody enters and nobody moves."),
    ):
        response = alice_client.post(url, {"state": state}, follow=True)
        assert words in response.content.decode()
        automation.refresh_from_db()
        assert automation.state == state


def test_settings_are_saved_and_a_bad_limit_changes_nothing(alice_client, automation):
    url = reverse("automation_settings", args=[automation.pk])
    response = alice_client.post(
        url, {"name": "Welcome flow", "reentry": "on", "daily_entry_limit": "5"}
    )
    assert response.status_code == 302
    automation.refresh_from_db()
    assert (automation.name, automation.reentry, automation.daily_entry_limit) == (
        "Welcome flow",
        True,
        5,
    )
    response = alice_client.post(url, {"name": "Other", "daily_entry_limit": "500"})
    assert response.status_code == 400
    assert "The daily entry limit is between 1 and 100." in response.content.decode()
    automation.refresh_from_db()
    assert automation.name == "Welcome flow"


def test_deleting_an_automation_says_who_leaves_it(alice_client, automation, objects):
    (step,) = steps_add(automation, (Kind.ADD_TAG, {"tag_id": objects.tag.pk}))
    people_at(step, 2)
    url = reverse("automation_delete", args=[automation.pk])
    assert "2 people are in it now: they leave it." in alice_client.get(url).content.decode()
    assert alice_client.post(url).status_code == 302
    assert not Automation.objects.filter(pk=automation.pk).exists()
    assert not Journey.objects.filter(automation_id=automation.pk).exists()


def test_an_automation_another_moves_people_to_is_not_deleted(alice_client, automation, objects):
    steps_add(objects.other, (Kind.MOVE, {"automation_id": automation.pk}))
    response = alice_client.post(reverse("automation_delete", args=[automation.pk]), follow=True)
    assert "Another automation moves people to this one" in response.content.decode()
    assert Automation.objects.filter(pk=automation.pk).exists()


# --- A "send one email" step ------------------------------------------------------------------


def _email_step(automation) -> Node:
    return node_add(automation=automation, parent=None, branch="", kind="email")


EMAIL = {
    "subject": "Welcome, {{ subscriber.first_name | default: 'friend' }}",
    "preview_text": "",
    "body_format": "markdown",
    "body": "Read [our pricing](https://example.com/pricing).",
}


def test_a_finished_email_is_frozen_for_sending_when_saved(alice_client, automation):
    node = _email_step(automation)
    url = reverse("automation_email_edit", args=[automation.pk, node.pk])
    page = text(alice_client.get(url).content.decode())
    assert "Not finished" in page and "Write a subject." in page
    response = alice_client.post(url, EMAIL, follow=True)
    assert "Saved. It is ready: the next copy sent is this one." in response.content.decode()
    message = Broadcast.objects.get(pk=node.message_id)
    assert message.frozen_subject == EMAIL["subject"]
    assert "\ufdd01\ufdd1" in message.frozen_html
    assert list(Link.objects.filter(broadcast=message).values_list("url", "position")) == [
        ("https://example.com/pricing", 1)
    ]
    assert "Finish the email" not in text(builder(alice_client, automation))


def test_an_unfinished_email_is_saved_as_a_draft_and_not_frozen(alice_client, automation):
    node = _email_step(automation)
    url = reverse("automation_email_edit", args=[automation.pk, node.pk])
    response = alice_client.post(url, {**EMAIL, "body": ""}, follow=True)
    assert "Saved as a draft." in response.content.decode()
    assert "Write the email&#x27;s body." in response.content.decode()
    message = Broadcast.objects.get(pk=node.message_id)
    assert message.subject == EMAIL["subject"] and message.frozen_html == ""


def test_a_ready_email_cannot_be_saved_broken(alice_client, automation):
    node = _email_step(automation)
    url = reverse("automation_email_edit", args=[automation.pk, node.pk])
    alice_client.post(url, EMAIL)
    before = snapshot()
    response = alice_client.post(url, {**EMAIL, "body": "{% if %}"})
    assert response.status_code == 400
    assert "Nothing was saved: this email is ready" in response.content.decode()
    assert snapshot() == before


def test_the_email_preview_and_test_send(
    alice_client, automation, django_capture_on_commit_callbacks
):
    node = _email_step(automation)
    preview = alice_client.post(
        reverse("automation_email_preview", args=[automation.pk, node.pk]), EMAIL, **HTMX
    )
    assert preview.status_code == 200 and "Welcome, Jane" in preview.content.decode()
    assert Broadcast.objects.get(pk=node.message_id).subject == ""
    with django_capture_on_commit_callbacks() as callbacks:
        response = alice_client.post(
            reverse("automation_email_test", args=[automation.pk, node.pk]), EMAIL, follow=True
        )
    assert "A test is on its way to alice@example.com" in response.content.decode()
    assert len(callbacks) == 1


# --- The subscriber page ----------------------------------------------------------------------


def test_a_subscribers_page_shows_their_automations_and_history(alice_client, automation, objects):
    delay, goal = steps_add(
        automation,
        (Kind.DELAY, {"amount": 2, "unit": "days"}),
        (
            Kind.GOAL,
            {"kind": "tag_removed", "object_id": objects.tag.pk, "detail": "", "value": ""},
        ),
    )
    Automation.objects.filter(pk=automation.pk).update(state="active")
    (journey,) = people_at(delay, 1)
    Journey.objects.filter(pk=journey.pk).update(due_at="2026-12-09T10:00:00+00:00")
    subscriber = journey.subscriber
    Journey.objects.create(
        account_id=subscriber.account_id,
        automation=objects.other,
        subscriber=subscriber,
        state=Journey.State.COMPLETED,
        arrived_at=journey.arrived_at,
        entered_at=journey.entered_at,
        day_started=journey.day_started,
    )
    for number in range(25):
        History.objects.create(
            account_id=subscriber.account_id,
            subscriber_id=subscriber.pk,
            automation_id=automation.pk,
            node_id=delay.pk,
            visit=number + 1,
            note=f"step {number}",
        )
    rule = Rule.objects.create(account_id=subscriber.account_id, name="Buyers")
    History.objects.create(
        account_id=subscriber.account_id,
        subscriber_id=subscriber.pk,
        rule_id=rule.pk,
        note="tagged Buyer",
    )
    SubscriberFactory(account=subscriber.account)
    html = alice_client.get(reverse("subscriber_detail", args=[subscriber.pk])).content.decode()
    section = text(html[html.index('id="automations"') :])
    assert re.search(
        r"Welcome entered 7 Dec 2026 Active Wait 2 days Wed 9 Dec 2026, 11:00", section
    )
    assert re.search(r"Upsell entered 7 Dec 2026 Completed — —", section)
    assert reverse("automation_detail", args=[automation.pk]) in html
    assert re.search(r"Rule Buyers ?: tagged Buyer", section)
    assert reverse("rule_detail", args=[rule.pk]) in html
    assert "step 24" in section and "step 6" in section and "step 5 " not in section
    assert section.index("Buyers") < section.index("step 24") < section.index("step 6")


def test_a_subscriber_waiting_for_an_event_says_so(alice_client, automation, objects):
    (goal,) = steps_add(
        automation,
        (
            Kind.GOAL,
            {"kind": "tag_removed", "object_id": objects.tag.pk, "detail": "", "value": ""},
        ),
    )
    Automation.objects.filter(pk=automation.pk).update(state="active")
    (journey,) = people_at(goal, 1)
    html = alice_client.get(
        reverse("subscriber_detail", args=[journey.subscriber_id])
    ).content.decode()
    assert "Tag “Customer” is removed When the event happens" in text(html)


def test_a_subscriber_in_no_automation_is_told_so(alice_client, account_a):
    subscriber = SubscriberFactory(account=account_a)
    html = alice_client.get(reverse("subscriber_detail", args=[subscriber.pk])).content.decode()
    assert "Not in any automation." in html
