"""charlie (account B) gets 404 for every automation URL of account A, by GET and by POST, with
htmx and without, and nothing changes; bob (a member of A) gets the exact page and his changes
are made. A step or an entry point is reached only through its own automation."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, reverse

from automations import urls as automation_urls
from automations.models import Automation, History, Journey, Node, Trigger
from automations.services import node_email_update
from broadcasts.models import Broadcast
from tests.automations.flows import objects_of, people_at, steps_add, tagged_flow
from tracking.models import Link

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
Kind = Node.Kind


def automation_of_a(account) -> Automation:
    """A's "Welcome": entered when "Customer" is added; a 2-day delay (2 people wait at it),
    then a ready "send one email" step."""
    objects = objects_of(account)
    automation = tagged_flow(account, objects)
    delay, email = steps_add(
        automation, (Kind.DELAY, {"amount": 2, "unit": "days"}), (Kind.EMAIL, {})
    )
    email.message.account = account
    node_email_update(
        node=email, subject="Hello", preview_text="", body="Hi there", body_format="markdown"
    )
    people_at(delay, 2)
    return automation


def _delay(automation) -> Node:
    return automation.nodes.get(kind=Kind.DELAY, deleted_at__isnull=True)


def _email(automation) -> Node:
    return automation.nodes.get(kind=Kind.EMAIL)


def _entry(automation) -> Trigger:
    return automation.triggers.get(role=Trigger.Role.ENTRY)


def _tag_id(automation) -> int:
    return _entry(automation).object_id


# name: (the object the URL names besides the automation, what bob posts (or a function of
# the automation giving it), what his POST changes, the status of his GET, of his POST).
CASES = {
    "automation_detail": (
        None,
        {},
        lambda a: a.name == "Welcome",
        200,
        200,
    ),
    "automation_settings": (
        None,
        {"name": "Changed by the test", "daily_entry_limit": "3"},
        lambda a: a.name == "Changed by the test",
        302,
        302,
    ),
    "automation_state": (
        None,
        {"state": "paused"},
        lambda a: a.state == "paused",
        302,
        302,
    ),
    "automation_delete": (
        None,
        {},
        lambda a: not Automation.objects.filter(pk=a.pk).exists(),
        200,
        302,
    ),
    "automation_entry_add": (
        None,
        {"kind": "form_joined", "form_id": ""},
        lambda a: a.triggers.filter(kind="form_joined").exists(),
        200,
        200,
    ),
    "automation_entry_delete": (
        _entry,
        {},
        lambda a: not a.triggers.exists(),
        302,
        200,
    ),
    "automation_step_add": (
        None,
        lambda a: {"parent": _email(a).pk, "branch": "", "kind": "exit"},
        lambda a: a.nodes.filter(kind=Kind.EXIT, parent=_email(a)).exists(),
        200,
        200,
    ),
    "automation_step_edit": (
        _delay,
        {"amount": "5", "unit": "hours"},
        lambda a: _delay(a).config == {"amount": 5, "unit": "hours"},
        200,
        200,
    ),
    "automation_step_delete": (
        _delay,
        {},
        lambda a: not a.nodes.filter(kind=Kind.DELAY, deleted_at__isnull=True).exists(),
        200,
        200,
    ),
    "automation_email_edit": (
        _email,
        {
            "subject": "Changed by the test",
            "preview_text": "",
            "body_format": "markdown",
            "body": "Hi",
        },
        lambda a: _email(a).message.subject == "Changed by the test",
        200,
        302,
    ),
    "automation_email_preview": (
        _email,
        {
            "subject": "Changed by the test",
            "preview_text": "",
            "body_format": "markdown",
            "body": "Hi",
        },
        lambda a: _email(a).message.subject == "Hello",
        302,
        200,
    ),
    "automation_email_test": (
        _email,
        {
            "subject": "Changed by the test",
            "preview_text": "",
            "body_format": "markdown",
            "body": "Hi",
        },
        lambda a: _email(a).message.subject == "Changed by the test",
        302,
        302,
    ),
}
PAGES = {
    "automation_detail": '<h1 class="break">Welcome</h1>',
    "automation_delete": "<title>Delete “Welcome”?",
    "automation_entry_add": "Add an entry point",
    "automation_step_add": "Add a step",
    "automation_step_edit": "Edit: Delay",
    "automation_step_delete": "2 people wait here; they will move to the next step",
    "automation_email_edit": "<title>Email: Hello · Welcome",
}


def url_of(name: str, automation: Automation, pick=None) -> str:
    pick = pick or CASES[name][0]
    if pick is None:
        return reverse(name, args=[automation.pk])
    return reverse(name, args=[automation.pk, pick(automation).pk])


def posted_for(name: str, automation: Automation) -> dict:
    posted = CASES[name][1]
    return posted(automation) if callable(posted) else posted


def snapshot() -> list:
    return [
        list(model.objects.order_by("id").values())
        for model in (Automation, Node, Trigger, Journey, History, Broadcast, Link)
    ]


def test_every_automation_view_with_an_id_is_covered():
    with_ids = {
        pattern.name
        for pattern in automation_urls.urlpatterns
        if isinstance(pattern, URLPattern) and "<int:" in str(pattern.pattern)
    }
    assert with_ids == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_charlie_gets_404_for_account_a_automations_and_changes_nothing(
    charlie_client, account_a, name
):
    automation = automation_of_a(account_a)
    url = url_of(name, automation)
    posted = posted_for(name, automation)
    before = snapshot()
    assert charlie_client.get(url).status_code == 404
    assert charlie_client.get(url, **HTMX).status_code == 404
    assert charlie_client.post(url, posted).status_code == 404
    assert charlie_client.post(url, posted, **HTMX).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_bob_a_member_of_account_a_can_use_the_same_pages(bob_client, account_a, name):
    pick, _posted, changed, get_status, post_status = CASES[name]
    automation = automation_of_a(account_a)
    url = url_of(name, automation)
    posted = posted_for(name, automation)
    response = bob_client.get(url)
    assert response.status_code == get_status
    if get_status == 200:
        assert PAGES[name] in response.content.decode()
    response = bob_client.post(url, posted, **HTMX)
    assert response.status_code == post_status
    assert changed(Automation.objects.filter(pk=automation.pk).first() or automation)


def test_charlie_cannot_reach_account_a_steps_through_an_automation_of_his_own(
    charlie_client, account_a, account_b
):
    ours = automation_of_a(account_a)
    theirs = tagged_flow(account_b, objects_of(account_b, prefix="B "), name="Charlie's")
    before = snapshot()
    for name, (pick, *_rest) in CASES.items():
        if pick is None:
            continue
        url = reverse(name, args=[theirs.pk, pick(ours).pk])
        assert charlie_client.get(url).status_code == 404, name
        assert charlie_client.post(url, posted_for(name, ours)).status_code == 404, name
    for parent in (_delay(ours).pk, _email(ours).pk):
        response = charlie_client.post(
            reverse("automation_step_add", args=[theirs.pk]),
            {"parent": parent, "branch": "", "kind": "exit"},
        )
        assert response.status_code == 404
    assert snapshot() == before


def test_a_step_is_reached_only_through_its_own_automation(alice_client, account_a):
    """Two automations of alice: a step of one under the other's URL is a 404."""
    welcome = automation_of_a(account_a)
    other = Automation.objects.get(account=account_a, name="Upsell")
    before = snapshot()
    for name, (pick, *_rest) in CASES.items():
        if pick is None:
            continue
        url = reverse(name, args=[other.pk, pick(welcome).pk])
        assert alice_client.get(url).status_code == 404, name
        assert alice_client.post(url, posted_for(name, welcome)).status_code == 404, name
    assert snapshot() == before


def test_an_automation_emails_message_is_a_404_on_every_broadcast_page(alice_client, account_a):
    from tests.sequences.test_tenancy import _broadcast_urls

    automation = automation_of_a(account_a)
    message_id = _email(automation).message_id
    before = snapshot()
    for url in _broadcast_urls(message_id):
        assert alice_client.get(url).status_code == 404, url
        assert alice_client.post(url, {"confirmed": "yes"}).status_code == 404, url
    assert snapshot() == before
