"""The editors' autosave: a draft's content is saved in the background (never its audience,
schedule or timing), invalid content is refused with the reason and saves nothing, a message
that can no longer change is refused, and another account's is a 404."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from broadcasts.forms import MAX_BODY_LENGTH
from broadcasts.models import Broadcast
from sequences.models import Sequence
from sequences.services import email_create
from tests.factories import TagFactory

DOCUMENT = json.dumps(
    {
        "type": "doc",
        "attrs": {"layout": "center"},
        "content": [
            {
                "type": "heading",
                "attrs": {"level": 1},
                "content": [{"type": "text", "text": "Soup"}],
            }
        ],
    }
)
CONTENT = {
    "subject": "Soup season",
    "preview_text": "Five soups",
    "body_format": "visual",
    "body": DOCUMENT,
}


@pytest.fixture
def broadcast(account_a):
    return Broadcast.objects.create(account=account_a, subject="Old", body="Old body")


@pytest.fixture
def sequence_email(account_a):
    sequence = Sequence.objects.create(account=account_a, name="Welcome course", time_zone="UTC")
    return email_create(sequence=sequence)


def autosave_url(broadcast: Broadcast) -> str:
    return reverse("broadcast_autosave", args=[broadcast.id])


def email_autosave_url(email) -> str:
    return reverse("sequence_email_autosave", args=[email.sequence_id, email.id])


def test_autosave_saves_a_drafts_content_and_says_when(alice_client, broadcast):
    response = alice_client.post(autosave_url(broadcast), {**CONTENT, "description": "Autumn"})
    assert response.status_code == 200
    answer = response.json()
    assert answer["saved"] is True
    assert len(answer["saved_at"]) == 5 and answer["saved_at"][2] == ":"
    broadcast.refresh_from_db()
    assert (broadcast.subject, broadcast.preview_text, broadcast.description) == (
        "Soup season",
        "Five soups",
        "Autumn",
    )
    assert (broadcast.body_format, broadcast.body) == ("visual", DOCUMENT)


def test_autosave_never_saves_the_audience_or_the_schedule(alice_client, broadcast, account_a):
    tag = TagFactory(account=account_a, name="soup")
    response = alice_client.post(
        autosave_url(broadcast),
        {**CONTENT, "include_tag_ids": [tag.id], "send_at": "2031-01-01T09:00"},
    )
    assert response.json()["saved"] is True
    broadcast.refresh_from_db()
    assert broadcast.include_tag_ids == []
    assert (broadcast.state, broadcast.scheduled_at) == (Broadcast.State.DRAFT, None)


def test_invalid_content_is_not_saved_and_the_reason_is_given(alice_client, broadcast):
    response = alice_client.post(
        autosave_url(broadcast), {**CONTENT, "subject": "Two\nlines", "body": "x"}
    )
    assert response.status_code == 400
    answer = response.json()
    assert answer["saved"] is False
    assert answer["error"].startswith("Subject: ")
    broadcast.refresh_from_db()
    assert (broadcast.subject, broadcast.body) == ("Old", "Old body")


def test_a_body_past_the_limit_is_not_saved(alice_client, broadcast):
    response = alice_client.post(
        autosave_url(broadcast), {**CONTENT, "body": "x" * (MAX_BODY_LENGTH + 1)}
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("Body: ")
    broadcast.refresh_from_db()
    assert broadcast.body == "Old body"


def test_a_broadcast_that_started_sending_is_not_autosaved(alice_client, broadcast):
    Broadcast.objects.filter(pk=broadcast.pk).update(state=Broadcast.State.SENDING)
    response = alice_client.post(autosave_url(broadcast), CONTENT)
    assert response.status_code == 409
    assert response.json() == {
        "saved": False,
        "error": "this broadcast has started sending: it can no longer change.",
    }
    broadcast.refresh_from_db()
    assert broadcast.subject == "Old"


def test_a_scheduled_broadcast_is_autosaved_and_stays_scheduled(alice_client, broadcast):
    Broadcast.objects.filter(pk=broadcast.pk).update(state=Broadcast.State.SCHEDULED)
    assert alice_client.post(autosave_url(broadcast), CONTENT).json()["saved"] is True
    broadcast.refresh_from_db()
    assert (broadcast.subject, broadcast.state) == ("Soup season", Broadcast.State.SCHEDULED)


def test_autosave_takes_only_a_post(alice_client, broadcast):
    assert alice_client.get(autosave_url(broadcast)).status_code == 405


def test_charlie_cannot_autosave_account_a_broadcasts_or_emails(
    charlie_client, broadcast, sequence_email
):
    assert charlie_client.post(autosave_url(broadcast), CONTENT).status_code == 404
    assert charlie_client.post(email_autosave_url(sequence_email), CONTENT).status_code == 404
    broadcast.refresh_from_db()
    sequence_email.message.refresh_from_db()
    assert broadcast.subject == "Old"
    assert sequence_email.message.subject == ""


def test_a_draft_sequence_email_is_autosaved_without_its_timing(alice_client, sequence_email):
    response = alice_client.post(
        email_autosave_url(sequence_email), {**CONTENT, "delay_amount": "9", "delay_unit": "hours"}
    )
    assert response.json()["saved"] is True
    sequence_email.refresh_from_db()
    sequence_email.message.refresh_from_db()
    assert (sequence_email.message.subject, sequence_email.message.body) == (
        "Soup season",
        DOCUMENT,
    )
    assert (sequence_email.delay_amount, sequence_email.delay_unit) == (0, "days")


def test_a_published_sequence_email_is_not_autosaved(alice_client, sequence_email):
    type(sequence_email).objects.filter(pk=sequence_email.pk).update(published=True)
    response = alice_client.post(email_autosave_url(sequence_email), CONTENT)
    assert response.status_code == 409
    assert response.json()["error"] == "this email is published: press Save to update it."
    sequence_email.message.refresh_from_db()
    assert sequence_email.message.subject == ""


def test_invalid_sequence_email_content_is_not_saved(alice_client, sequence_email):
    response = alice_client.post(
        email_autosave_url(sequence_email), {**CONTENT, "body_format": "rtf"}
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("Write in: ")
    sequence_email.message.refresh_from_db()
    assert sequence_email.message.body == ""


def test_new_broadcasts_and_sequence_emails_start_in_the_visual_format(
    alice_client, account_a, sequence_email
):
    alice_client.post(reverse("broadcast_create"))
    assert Broadcast.objects.broadcasts().get(account=account_a).body_format == "visual"
    alice_client.post(reverse("sequence_email_create", args=[sequence_email.sequence_id]))
    newest = sequence_email.sequence.emails.order_by("-id").first()
    assert newest.message.body_format == "visual"
