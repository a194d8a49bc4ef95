"""charlie (account B) gets 404 for every rule URL of account A, by GET and by POST, with and
without htmx, and nothing changes; bob (a member of A) gets the exact page and his changes are
made. A rule's editor offers and accepts only its own account's objects (tests/automations/
rules/test_views.py)."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, reverse

from automations.models import History, Rule, Trigger
from automations.rules import urls as rule_urls
from automations.services import TriggerSpec, rule_save
from tests.automations.rules.conftest import editor_post
from tests.factories import SubscriberFactory

HTMX = {"HTTP_HX_REQUEST": "true"}


def rule_of_a(account, objects) -> Rule:
    """A's "Buyers": tag Customer added → add tag Buyer, enabled, with one history row."""
    rule = rule_save(
        account=account,
        name="Buyers",
        triggers=[TriggerSpec(kind="tag_added", object_id=objects.customer.id)],
        actions=[{"kind": "add_tag", "object_id": objects.buyer.id}],
    )
    subscriber = SubscriberFactory(account=account, email="ann@example.org")
    History.objects.create(
        account_id=account.id, subscriber_id=subscriber.id, rule_id=rule.id, note="tagged Buyer"
    )
    return rule


def posted(objects) -> dict:
    """Every field any rule view reads: a whole editor (renamed, its trigger now the tag's
    removal) and a toggle's value."""
    editor = editor_post(
        name="Changed by the test",
        triggers=[{"kind": "tag_removed", "tag": objects.customer.id}],
        actions=[{"kind": "add_tag", "tag": objects.buyer.id}],
    )
    return {**editor, "enabled": "0"}


def _unchanged(rule: Rule) -> bool:
    return (
        rule.name == "Buyers"
        and rule.enabled
        and list(rule.triggers.values_list("kind", flat=True)) == ["tag_added"]
    )


# name: (what bob's POST changes, the status of bob's GET, what his GET shows).
CASES = {
    "rule_detail": (_unchanged, 200, '<h1 class="break">Buyers</h1>'),
    "rule_edit": (
        lambda r: (
            r.name == "Changed by the test"
            and list(r.triggers.values_list("kind", flat=True)) == ["tag_removed"]
        ),
        200,
        'name="name" value="Buyers"',
    ),
    "rule_toggle": (lambda r: not r.enabled and r.name == "Buyers", 302, None),
    "rule_delete": (None, 200, "<title>Delete the rule “Buyers”?"),
    "rule_history": (_unchanged, 200, "tagged Buyer"),
}
# The status of bob's POST where it is not a redirect: pages that show, not change.
POST_STATUS = {"rule_detail": 200, "rule_history": 200}


def snapshot() -> list:
    return [list(model.objects.order_by("id").values()) for model in (Rule, Trigger, History)]


def test_every_rule_view_with_an_id_is_covered():
    with_ids = {
        pattern.name
        for pattern in rule_urls.urlpatterns
        if isinstance(pattern, URLPattern) and "<int:" in str(pattern.pattern)
    }
    assert with_ids == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_charlie_gets_404_for_account_a_rules_and_changes_nothing(
    charlie_client, account_a, ours, theirs, name
):
    rule = rule_of_a(account_a, ours)
    url = reverse(name, args=[rule.id])
    before = snapshot()
    # His own account's objects in the post, so that only the rule's id is foreign.
    data = posted(theirs)
    assert charlie_client.get(url).status_code == 404
    assert charlie_client.get(url, **HTMX).status_code == 404
    assert charlie_client.post(url, data).status_code == 404
    assert charlie_client.post(url, data, **HTMX).status_code == 404
    assert charlie_client.post(url, {**data, "add_trigger": "1"}, **HTMX).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_bob_a_member_of_account_a_can_use_the_same_pages(bob_client, account_a, ours, name):
    changed, get_status, shown = CASES[name]
    rule = rule_of_a(account_a, ours)
    url = reverse(name, args=[rule.id])
    response = bob_client.get(url)
    assert response.status_code == get_status
    if shown:
        assert shown in response.content.decode()
    response = bob_client.post(url, posted(ours))
    assert response.status_code == POST_STATUS.get(name, 302)
    if changed is None:
        assert not Rule.objects.filter(pk=rule.pk).exists()
    else:
        rule.refresh_from_db()
        assert changed(rule)


def test_charlies_lists_and_new_rule_page_show_nothing_of_account_a(
    charlie_client, account_a, ours, theirs
):
    rule_of_a(account_a, ours)
    listed = charlie_client.get(reverse("rule_list")).content.decode()
    assert "Buyers" not in listed and "Create your first rule" in listed
    editor = charlie_client.get(reverse("rule_create")).content.decode()
    assert ">Customer<" not in editor and ">OtherCustomer<" in editor
