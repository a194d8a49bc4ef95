"""Wherever a broadcast is named (lists, progress, report, dashboard, the "did not open" choices,
confirmations, page titles, commands), it is named as its creator wrote it for people: its
description if it has one, else its subject as the sample subscriber gets it. Never the Liquid
source of its subject."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from broadcasts.models import Broadcast, Delivery
from tests.factories import SubscriberFactory
from tracking.models import EventKind
from tracking.store import TrackedEvent, events_store

SUBJECT = 'Autumn notes, {{ subscriber.first_name | default: "friend" }}'
NAME = "Autumn notes, Jane"


def title_of(body: str) -> str:
    return unescape(re.search(r"<title>(.*?)</title>", body, re.S).group(1))


def h1_of(body: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", re.search(r"<h1[^>]*>(.*?)</h1>", body, re.S).group(1)))


@pytest.fixture
def autumn(account_a):
    """A broadcast sent to one subscriber, whose subject greets them by name."""
    reader = SubscriberFactory(account=account_a, email="rita@example.org", first_name="Rita")
    sent_at = timezone.now() - timedelta(hours=2)
    broadcast = Broadcast.objects.create(
        account=account_a,
        subject=SUBJECT,
        body="Hello",
        state=Broadcast.State.SENT,
        recipient_count=1,
        sent_count=1,
        send_started_at=sent_at,
        sent_at=sent_at,
    )
    Delivery.objects.create(
        broadcast=broadcast,
        account=account_a,
        subscriber=reader,
        state=Delivery.State.SENT,
        sent_at=sent_at,
    )
    return broadcast


def page(client, name: str, *args) -> str:
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    return response.content.decode()


def test_the_progress_report_and_people_pages_name_it_for_the_sample_subscriber(
    alice_client, autumn
):
    for name, args, title in (
        ("broadcast_progress", [autumn.id], NAME),
        ("broadcast_report", [autumn.id], f"Report: {NAME}"),
        ("broadcast_report_people", [autumn.id, "opened"], f"Who opened: {NAME}"),
    ):
        body = page(alice_client, name, *args)
        assert title_of(body).startswith(f"{title} · "), name
        assert NAME in h1_of(body), name
        assert "subscriber.first_name" not in body, name


def test_the_dashboard_and_the_subscriber_timeline_name_it_too(alice_client, autumn):
    delivery = autumn.delivery_set.get()
    events_store([TrackedEvent(EventKind.OPEN, timezone.now(), delivery.pk)])
    dashboard = page(alice_client, "dashboard")
    assert NAME in unescape(dashboard)
    assert "subscriber.first_name" not in dashboard
    reader = autumn.delivery_set.get().subscriber
    timeline = page(alice_client, "subscriber_detail", reader.id)
    text = " ".join(unescape(re.sub(r"<[^>]+>", "", timeline)).split())
    assert f"Sent “{NAME}”" in text and f"Opened “{NAME}”" in text
    assert "subscriber.first_name" not in timeline


def test_the_did_not_open_choice_and_the_send_confirmation_name_it_too(
    alice_client, autumn, account_a
):
    resend = Broadcast.objects.create(
        account=account_a,
        subject="Did you see? {{ subscriber.first_name }}",
        body="Hello",
        not_opened_broadcast_id=autumn.id,
    )
    editor = unescape(page(alice_client, "broadcast_edit", resend.id))
    choice = re.search(rf'<option value="{autumn.id}"[^>]*>([^<]*)</option>', editor).group(1)
    assert choice.startswith(f"{NAME} (")
    assert h1_of(editor) == "Did you see? Jane"

    confirm = unescape(page(alice_client, "broadcast_send", resend.id))
    assert h1_of(confirm) == "Send “Did you see? Jane” now?"
    assert f"did not open “{NAME}”" in confirm
    assert "subscriber.first_name" not in confirm
    delete = unescape(page(alice_client, "broadcast_delete", resend.id))
    assert "Delete “Did you see? Jane”?" in delete


def test_a_description_names_it_instead_of_its_subject(alice_client, autumn, account_a):
    draft = Broadcast.objects.create(account=account_a, subject=SUBJECT, body="Hello")
    editor = alice_client.get(reverse("broadcast_edit", args=[draft.id])).content.decode()
    assert 'name="description"' in editor
    response = alice_client.post(
        reverse("broadcast_edit", args=[draft.id]),
        {
            "description": "Autumn notes (members)",
            "subject": SUBJECT,
            "preview_text": "",
            "body_format": "markdown",
            "body": "Hello",
            "include_match": "any",
        },
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.description == "Autumn notes (members)" and draft.subject == SUBJECT
    listed = unescape(page(alice_client, "broadcast_list"))
    assert ">Autumn notes (members)</a>" in listed
    assert f">{NAME}</a>" in listed  # the one without a description
    assert h1_of(page(alice_client, "broadcast_edit", draft.id)) == "Autumn notes (members)"


def test_a_description_on_two_lines_is_refused(alice_client, account_a):
    draft = Broadcast.objects.create(account=account_a, subject="Soup")
    response = alice_client.post(
        reverse("broadcast_edit", args=[draft.id]),
        {"description": "Soup\nBcc: x", "subject": "Soup", "body_format": "markdown"},
    )
    assert response.status_code == 400
    assert "The description must be on one line" in response.content.decode()
    draft.refresh_from_db()
    assert draft.description == ""


def test_cancelling_asks_about_it_by_name(alice_client, autumn):
    Broadcast.objects.filter(pk=autumn.pk).update(state=Broadcast.State.SENDING)
    body = unescape(page(alice_client, "broadcast_cancel", autumn.id))
    assert f"Cancel “{NAME}”?" in body


def test_broadcast_status_names_it_too(autumn):
    out = StringIO()
    call_command("broadcast_status", str(autumn.id), stdout=out)
    assert out.getvalue().splitlines()[0] == f"Broadcast {autumn.id}: “{NAME}”"
