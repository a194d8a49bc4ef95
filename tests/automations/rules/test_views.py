"""The rule pages as a creator uses them: create and edit with several triggers and actions,
rows added, removed and moved without saving, every bad input refused with nothing saved,
enable/disable, delete, the list and the history."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from automations.models import History, Rule, Trigger
from automations.services import TriggerSpec, rule_save
from convertkit.paging import PAGE_SIZE
from tests.automations.rules.conftest import editor_post, objects_of, simple_post
from tests.factories import SubscriberFactory

HTMX = {"HTTP_HX_REQUEST": "true"}
CREATE = "/automations/rules/new/"


def _triggers(rule: Rule) -> list[tuple]:
    return list(
        rule.triggers.order_by("id").values_list("role", "kind", "object_id", "detail", "value")
    )


def _saved(account, objects, **changes) -> Rule:
    return rule_save(
        account=account,
        name=changes.get("name", "Buyers"),
        triggers=[TriggerSpec(kind="tag_added", object_id=objects.customer.id)],
        actions=[{"kind": "add_tag", "object_id": objects.buyer.id}],
    )


def test_a_rule_with_several_triggers_and_actions_saves_exactly_those(alice_client, ours):
    response = alice_client.post(
        CREATE,
        editor_post(
            name="  Welcome buyers ",
            triggers=[
                {"kind": "tag_added", "tag": ours.customer.id},
                {"kind": "form_joined", "signup_form": ""},
                {"kind": "form_joined", "signup_form": ours.newsletter.id},
                {"kind": "link_clicked", "link": ours.pricing.id},
                {"kind": "link_clicked", "link": "", "contains": "/pricing"},
                {"kind": "field_changed", "custom_field": "city", "value": "Paris"},
                {"kind": "sequence_completed", "sequence": ours.onboarding.id},
                {"kind": "unsubscribed"},
                # A row left without a kind is no trigger, whatever else it holds.
                {"kind": "", "tag": ours.buyer.id},
            ],
            actions=[
                {"kind": "add_tag", "tag": ours.buyer.id},
                {"kind": "subscribe_sequence", "sequence": ours.onboarding.id},
                {"kind": "set_field", "custom_field": "city", "value": "Lyon"},
                {"kind": "remove_tag", "tag": ours.customer.id},
                {"kind": "remove_sequence", "sequence": ours.onboarding.id},
                {"kind": "unsubscribe"},
            ],
            enabled=False,
        ),
    )
    rule = Rule.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("rule_detail", args=[rule.id])
    assert (rule.name, rule.enabled, rule.account_id) == (
        "Welcome buyers",
        False,
        ours.buyer.account_id,
    )
    assert _triggers(rule) == [
        ("rule", "tag_added", ours.customer.id, "", ""),
        ("rule", "form_joined", None, "", ""),
        ("rule", "form_joined", ours.newsletter.id, "", ""),
        ("rule", "link_clicked", ours.pricing.id, "", ""),
        ("rule", "link_clicked", None, "/pricing", ""),
        ("rule", "field_changed", None, "city", "Paris"),
        ("rule", "sequence_completed", ours.onboarding.id, "", ""),
        ("rule", "unsubscribed", None, "", ""),
    ]
    assert rule.actions == [
        {"kind": "add_tag", "object_id": ours.buyer.id},
        {"kind": "subscribe_sequence", "object_id": ours.onboarding.id},
        {"kind": "set_field", "detail": "city", "value": "Lyon"},
        {"kind": "remove_tag", "object_id": ours.customer.id},
        {"kind": "remove_sequence", "object_id": ours.onboarding.id},
        {"kind": "unsubscribe"},
    ]


def test_the_rules_page_says_what_it_does_in_words(alice_client, ours):
    alice_client.post(
        CREATE,
        editor_post(
            name="Buyers",
            triggers=[{"kind": "tag_added", "tag": ours.customer.id}, {"kind": "form_joined"}],
            actions=[
                {"kind": "add_tag", "tag": ours.buyer.id},
                {"kind": "subscribe_sequence", "sequence": ours.onboarding.id},
            ],
        ),
    )
    page = alice_client.get(reverse("rule_detail", args=[Rule.objects.get().id])).content.decode()
    assert (
        "When tag Customer is added or someone subscribes to any form → add tag Buyer, "
        "subscribe to sequence Onboarding"
    ) in page
    listed = alice_client.get(reverse("rule_list")).content.decode()
    assert "tag Customer is added or someone subscribes to any form" in listed
    assert "add tag Buyer, subscribe to sequence Onboarding" in listed


def test_the_editor_shows_a_saved_rule_as_it_was_saved(alice_client, ours, account_a):
    rule = rule_save(
        account=account_a,
        name="Clickers",
        triggers=[
            TriggerSpec(kind="link_clicked", object_id=ours.pricing.id),
            TriggerSpec(kind="field_changed", detail="city", value="Paris"),
        ],
        actions=[{"kind": "set_field", "detail": "city", "value": "Rome"}],
        enabled=False,
    )
    page = alice_client.get(reverse("rule_edit", args=[rule.id])).content.decode()
    assert 'name="name" value="Clickers"' in page
    assert f'<option value="{ours.pricing.id}" selected>https://ex.com/pricing</option>' in page
    assert '<optgroup label="Broadcast: Spring sale">' in page
    assert '<option value="city" selected>City</option>' in page
    assert 'name="trigger-1-value" value="Paris"' in page
    assert 'name="action-0-value" value="Rome"' in page
    assert (
        'name="enabled"' in page and "checked" not in page.split('name="enabled"')[1].split(">")[0]
    )


def test_editing_replaces_the_triggers_and_actions(alice_client, ours, account_a):
    rule = _saved(account_a, ours)
    response = alice_client.post(
        reverse("rule_edit", args=[rule.id]),
        editor_post(
            name="Renamed",
            triggers=[{"kind": "tag_removed", "tag": ours.buyer.id}],
            actions=[{"kind": "unsubscribe"}],
        ),
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.name == "Renamed"
    assert _triggers(rule) == [("rule", "tag_removed", ours.buyer.id, "", "")]
    assert Trigger.objects.count() == 1
    assert rule.actions == [{"kind": "unsubscribe"}]


# --- Bad input ----------------------------------------------------------------------------------


FOREIGN = {
    "trigger tag": lambda t: ({"kind": "tag_added", "tag": t.customer.id}, None, "tag"),
    "trigger form": lambda t: (
        {"kind": "form_joined", "signup_form": t.newsletter.id},
        None,
        "form",
    ),
    "trigger sequence": lambda t: (
        {"kind": "sequence_subscribed", "sequence": t.onboarding.id},
        None,
        "sequence",
    ),
    "trigger link": lambda t: ({"kind": "link_clicked", "link": t.pricing.id}, None, "link"),
    "action tag": lambda t: (None, {"kind": "add_tag", "tag": t.buyer.id}, "tag"),
    "action sequence": lambda t: (
        None,
        {"kind": "subscribe_sequence", "sequence": t.onboarding.id},
        "sequence",
    ),
    "action field": lambda t: (
        None,
        {"kind": "set_field", "custom_field": "othercity", "value": "x"},
        "custom field",
    ),
}


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_another_accounts_object_in_a_post_is_refused_and_nothing_saved(
    alice_client, ours, theirs, account_a, case
):
    trigger, action, what = FOREIGN[case](theirs)
    post = editor_post(
        name="Sneaky",
        triggers=[trigger or {"kind": "tag_added", "tag": ours.customer.id}],
        actions=[action or {"kind": "add_tag", "tag": ours.buyer.id}],
    )
    for url in (CREATE, reverse("rule_edit", args=[_saved(account_a, ours, name="Kept").id])):
        response = alice_client.post(url, post)
        assert response.status_code == 400
        page = response.content.decode()
        assert "Nothing was saved" in page
        assert f"Choose one of your {what}s: " in page
    assert list(Rule.objects.values_list("name", flat=True)) == ["Kept"]
    assert _triggers(Rule.objects.get()) == [("rule", "tag_added", ours.customer.id, "", "")]


def test_a_rule_naming_a_deleted_tag_says_so_and_cannot_be_saved_as_is(
    alice_client, ours, account_a
):
    rule = _saved(account_a, ours)
    customer_id = ours.customer.id
    ours.customer.delete()
    detail = alice_client.get(reverse("rule_detail", args=[rule.id])).content.decode()
    assert "When a deleted tag is added → add tag Buyer" in detail
    editor = alice_client.get(reverse("rule_edit", args=[rule.id])).content.decode()
    assert f'<option value="{customer_id}" selected>A deleted tag</option>' in editor
    response = alice_client.post(
        reverse("rule_edit", args=[rule.id]),
        editor_post(
            name="Buyers v2",
            triggers=[{"kind": "tag_added", "tag": customer_id}],
            actions=[{"kind": "add_tag", "tag": ours.buyer.id}],
        ),
    )
    assert response.status_code == 400
    assert "Choose one of your tags: that tag does not exist." in response.content.decode()
    rule.refresh_from_db()
    assert rule.name == "Buyers"


def test_a_tag_deleted_while_the_editor_was_open_is_refused(alice_client, ours):
    post = simple_post(ours)
    ours.buyer.delete()
    response = alice_client.post(CREATE, post)
    assert response.status_code == 400
    assert "Choose one of your tags: that tag does not exist." in response.content.decode()
    assert not Rule.objects.exists()


def test_a_rule_without_a_name_a_trigger_or_an_action_is_refused_with_all_three_said(
    alice_client, ours
):
    response = alice_client.post(
        CREATE, editor_post(name=" ", triggers=[{"kind": ""}], actions=[{"kind": ""}])
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Give the rule a name." in page
    assert "Add at least one trigger." in page and "Add at least one action." in page
    response = alice_client.post(CREATE, editor_post(name="No rows", triggers=[], actions=[]))
    assert response.status_code == 400
    page = response.content.decode()
    assert "Add at least one trigger." in page and "Add at least one action." in page
    assert not Rule.objects.exists() and not Trigger.objects.exists()


@pytest.mark.parametrize(
    ("trigger", "action", "error"),
    [
        ({"kind": "tag_added", "tag": ""}, {"kind": "unsubscribe"}, "Choose the tag."),
        ({"kind": "sequence_completed"}, {"kind": "unsubscribe"}, "Choose the sequence."),
        (
            {"kind": "link_clicked", "link": "", "contains": "  "},
            {"kind": "unsubscribe"},
            "Choose a link, or give the text its URL contains.",
        ),
        ({"kind": "field_changed"}, {"kind": "unsubscribe"}, "Choose the custom field."),
        ({"kind": "unsubscribed"}, {"kind": "remove_tag"}, "Choose the tag."),
        ({"kind": "unsubscribed"}, {"kind": "set_field", "value": "x"}, "Choose the custom field."),
        ({"kind": "date_occurs"}, {"kind": "unsubscribe"}, "Choose one of the triggers offered."),
        ({"kind": "unsubscribed"}, {"kind": "send_sms"}, "Choose one of the actions offered."),
        ({"kind": "unsubscribed"}, {"kind": "send_webhook"}, "Choose the webhook."),
    ],
)
def test_a_row_missing_what_its_kind_needs_is_marked_and_nothing_saved(
    alice_client, ours, trigger, action, error
):
    response = alice_client.post(
        CREATE, editor_post(name="Half", triggers=[trigger], actions=[action])
    )
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Rule.objects.exists()


def test_the_pickers_offer_only_the_accounts_own_objects(alice_client, ours, theirs):
    page = alice_client.get(CREATE).content.decode()
    for mine in ("Customer", "Newsletter", "Onboarding", "City", "https://ex.com/pricing"):
        assert f">{mine}<" in page
    for other in (
        "OtherCustomer",
        "OtherNewsletter",
        "OtherOnboarding",
        "OtherCity",
        "otherpricing",
    ):
        assert other not in page


# --- Rows added, removed and moved in place -----------------------------------------------------


def _total(page: str, prefix: str) -> str:
    return page.split(f'name="{prefix}-TOTAL_FORMS" value="')[1].split('"')[0]


def test_adding_a_trigger_row_keeps_what_was_typed_and_saves_nothing(alice_client, ours):
    post = {**simple_post(ours, name="Typed so far"), "add_trigger": "1"}
    response = alice_client.post(CREATE, post)
    assert response.status_code == 200
    page = response.content.decode()
    assert "<html" in page and 'value="Typed so far"' in page
    assert _total(page, "trigger") == "2"
    assert f'<option value="{ours.customer.id}" selected>Customer</option>' in page
    assert "autofocus" in page.split('name="trigger-1-kind"')[1].split(">")[0]
    assert not Rule.objects.exists()


def test_with_htmx_only_the_rows_come_back(alice_client, ours):
    response = alice_client.post(CREATE, {**simple_post(ours), "add_action": "1"}, **HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    assert "<html" not in page and page.lstrip().startswith('<div id="rule-rows">')
    assert _total(page, "action") == "2"
    new_select = page.split('name="action-1-kind"')[1].split(">")[0]
    assert "autofocus" in new_select
    assert not Rule.objects.exists()


def test_removing_a_row_leaves_the_others_in_order(alice_client, ours):
    post = editor_post(
        name="Two",
        triggers=[
            {"kind": "tag_added", "tag": ours.customer.id},
            {"kind": "tag_removed", "tag": ours.buyer.id},
        ],
        actions=[{"kind": "unsubscribe"}],
        remove_trigger="0",
    )
    page = alice_client.post(CREATE, post, **HTMX).content.decode()
    assert _total(page, "trigger") == "1"
    assert 'name="trigger-0-kind"' in page and 'name="trigger-1-kind"' not in page
    assert '<option value="tag_removed" selected>' in page
    assert f'<option value="{ours.buyer.id}" selected>Buyer</option>' in page
    assert 'name="add_trigger" value="1" autofocus' in page
    assert not Rule.objects.exists()


def test_moving_an_action_up_changes_their_order(alice_client, ours):
    post = editor_post(
        name="Order",
        triggers=[{"kind": "unsubscribed"}],
        actions=[
            {"kind": "add_tag", "tag": ours.buyer.id},
            {"kind": "subscribe_sequence", "sequence": ours.onboarding.id},
        ],
        up_action="1",
    )
    page = alice_client.post(CREATE, post).content.decode()
    first, second = page.split('name="action-1-kind"')
    assert '<option value="subscribe_sequence" selected>' in first
    assert '<option value="add_tag" selected>' in second
    saved = alice_client.post(
        CREATE,
        editor_post(
            name="Order",
            triggers=[{"kind": "unsubscribed"}],
            actions=[
                {"kind": "subscribe_sequence", "sequence": ours.onboarding.id},
                {"kind": "add_tag", "tag": ours.buyer.id},
            ],
        ),
    )
    assert saved.status_code == 302
    assert [action["kind"] for action in Rule.objects.get().actions] == [
        "subscribe_sequence",
        "add_tag",
    ]


def test_no_more_than_ten_triggers_can_be_added(alice_client, ours):
    rows = [{"kind": "unsubscribed"}] * 10
    post = editor_post(
        name="Many", triggers=rows, actions=[{"kind": "unsubscribe"}], add_trigger="1"
    )
    page = alice_client.post(CREATE, post).content.decode()
    assert _total(page, "trigger") == "10"
    assert 'name="add_trigger"' not in page


# --- Enable, disable, delete --------------------------------------------------------------------


def test_enable_and_disable_set_the_state_they_name(alice_client, ours, account_a):
    rule = _saved(account_a, ours)
    url = reverse("rule_toggle", args=[rule.id])
    alice_client.get(url)
    rule.refresh_from_db()
    assert rule.enabled
    for value, enabled in (("0", False), ("0", False), ("1", True)):
        response = alice_client.post(url, {"enabled": value})
        assert response.status_code == 302
        assert response["Location"] == reverse("rule_detail", args=[rule.id])
        rule.refresh_from_db()
        assert rule.enabled is enabled
    page = alice_client.get(reverse("rule_detail", args=[rule.id])).content.decode()
    assert "is enabled" in page and ">Disable</button>" in page


def test_delete_asks_first_then_deletes_the_rule_and_its_triggers(alice_client, ours, account_a):
    rule = _saved(account_a, ours)
    url = reverse("rule_delete", args=[rule.id])
    page = alice_client.get(url).content.decode()
    assert "Delete the rule “Buyers”?" in page
    assert Rule.objects.filter(pk=rule.pk).exists()
    response = alice_client.post(url)
    assert response.status_code == 302 and response["Location"] == reverse("rule_list")
    assert not Rule.objects.exists() and not Trigger.objects.exists()


# --- List and history ---------------------------------------------------------------------------


def test_the_list_shows_the_accounts_rules_their_state_and_firings(
    alice_client, ours, theirs, account_a, account_b
):
    fired = _saved(account_a, ours, name="Fired often")
    Rule.objects.filter(pk=fired.pk).update(fired_count=1234, enabled=False)
    subscriber = SubscriberFactory(account=account_a)
    at = timezone.now() - timedelta(days=3)
    History.objects.create(
        account_id=account_a.id, subscriber_id=subscriber.id, rule_id=fired.id, note="x", at=at
    )
    _saved(account_a, ours, name="Never fired")
    _saved(account_b, theirs, name="Charlie's rule")
    page = alice_client.get(reverse("rule_list")).content.decode()
    assert "Fired often" in page and "Never fired" in page and "Charlie's rule" not in page
    assert page.index("Never fired") < page.index("Fired often")
    assert "1,234" in page and "Disabled" in page
    assert page.count(">Never</span>") == 1
    local = timezone.localtime(at, ZoneInfo(account_a.time_zone))
    assert f'<time datetime="{local:%Y-%m-%dT%H:%M}' in page


def test_an_empty_list_explains_rules(alice_client):
    page = alice_client.get(reverse("rule_list")).content.decode()
    assert "Create your first rule" in page


def test_the_history_lists_what_the_rule_did_newest_first_in_pages(alice_client, ours, account_a):
    rule = _saved(account_a, ours)
    other = _saved(account_a, ours, name="Other")
    ann = SubscriberFactory(account=account_a, email="ann@example.org")
    gone = SubscriberFactory(account=account_a, email="gone@example.org")
    start = timezone.now() - timedelta(hours=1)
    History.objects.bulk_create(
        [
            History(
                account_id=account_a.id,
                subscriber_id=(gone if n == 0 else ann).id,
                rule_id=rule.id,
                note=f"tagged Buyer #{n}",
                at=start + timedelta(seconds=n),
            )
            for n in range(PAGE_SIZE + 1)
        ]
        + [History(account_id=account_a.id, subscriber_id=ann.id, rule_id=other.id, note="other's")]
    )
    gone.delete()
    url = reverse("rule_history", args=[rule.id])
    page = alice_client.get(url).content.decode()
    assert f"tagged Buyer #{PAGE_SIZE}<" in page and "other's" not in page
    assert page.index(f"#{PAGE_SIZE}<") < page.index(f"#{PAGE_SIZE - 1}<")
    assert f'<a href="{reverse("subscriber_detail", args=[ann.id])}">ann@example.org</a>' in page
    assert "tagged Buyer #0<" not in page
    older = re.search(r'<a href="([^"]+)">Older →</a>', page).group(1)
    second = alice_client.get(older.replace("&amp;", "&")).content.decode()
    assert "tagged Buyer #0<" in second and "A deleted subscriber" in second
    assert f"#{PAGE_SIZE}<" not in second


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_list_and_the_editor_read_as_many_queries_for_six_rules_as_for_two(
    alice_client, account_a, ours
):
    """No query per rule, per trigger or per link: the list and the editor's pickers read each
    kind of object once."""
    extra = objects_of(account_a, prefix="More")

    def rules_add(objects):
        rule = rule_save(
            account=account_a,
            name="Many",
            triggers=[
                TriggerSpec(kind="tag_added", object_id=objects.customer.id),
                TriggerSpec(kind="form_joined", object_id=objects.newsletter.id),
                TriggerSpec(kind="link_clicked", object_id=objects.pricing.id),
                TriggerSpec(kind="field_changed", detail=objects.city.key),
            ],
            actions=[
                {"kind": "add_tag", "object_id": objects.buyer.id},
                {"kind": "subscribe_sequence", "object_id": objects.onboarding.id},
                {"kind": "set_field", "detail": objects.city.key, "value": "x"},
            ],
        )
        History.objects.create(
            account_id=account_a.id, subscriber_id=0, rule_id=rule.id, note="fired"
        )
        return rule

    first = rules_add(ours)
    rules_add(extra)
    counts = (_queries(alice_client, reverse("rule_list")), _queries(alice_client, CREATE))
    for _ in range(2):
        rules_add(ours)
        rules_add(extra)
    assert (_queries(alice_client, reverse("rule_list")), _queries(alice_client, CREATE)) == counts
    assert _queries(alice_client, reverse("rule_edit", args=[first.id])) == counts[1] + 2


def test_rules_sit_in_the_main_navigation_and_are_current_on_every_rule_page(
    alice_client, account_a, ours
):
    rule = _saved(account_a, ours)
    for url in (reverse("rule_list"), CREATE, reverse("rule_history", args=[rule.id])):
        body = alice_client.get(url).content.decode()
        nav = body[body.index('id="main-nav"') : body.index("</nav>")]
        assert re.findall(r'class="nav-link[^"]*"[^>]*>([^<]+)<', nav)[-2:] == ["Rules", "Settings"]
        assert 'aria-current="page">Rules<' in nav


def test_what_a_rows_kind_does_not_use_is_ignored_even_another_accounts_id(
    alice_client, ours, theirs
):
    """The fields a kind does not use are hidden: whatever they hold is neither checked nor
    saved."""
    response = alice_client.post(
        CREATE,
        editor_post(
            name="Leavers",
            triggers=[{"kind": "unsubscribed", "tag": theirs.customer.id, "contains": "x"}],
            actions=[{"kind": "unsubscribe", "sequence": theirs.onboarding.id, "value": "y"}],
        ),
    )
    assert response.status_code == 302
    rule = Rule.objects.get()
    assert _triggers(rule) == [("rule", "unsubscribed", None, "", "")]
    assert rule.actions == [{"kind": "unsubscribe"}]


def test_a_value_on_two_lines_is_refused(alice_client, ours):
    response = alice_client.post(
        CREATE,
        editor_post(
            name="Cities",
            triggers=[{"kind": "field_changed", "custom_field": "city", "value": "Pa\nris"}],
            actions=[{"kind": "unsubscribe"}],
        ),
    )
    assert response.status_code == 400
    assert "The value must be on one line" in response.content.decode()
    assert not Rule.objects.exists()
