"""`manage.py sequence_status ID [--watch]`: the sequence's state, its subscribers by state, when
the next email is due, and per email what was sent, is queued, failed or is unknown; the same
figures as the sequence page, from real sends through the pipeline."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from broadcasts.models import Broadcast
from sequences.engine import sequences_advance
from sequences.models import Subscription
from sequences.services import sequence_pause, subscriber_enrol
from subscribers.models import Subscriber
from tests.factories import SubscriberFactory
from tests.sequences.conftest import advance_and_send, email_add

pytestmark = pytest.mark.django_db

# A Monday, 10:00 UTC, in the past: whoever waits since is due now.
MONDAY = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


def status_of(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("sequence_status", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.fixture
def course(make_sequence, smtp_sink):
    """Three subscribers sent One through the pipeline; one more queued for One (handed to the
    send queue, not sent yet); one waiting to confirm; Two a day later; a draft."""
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    email_add(sequence, subject="Three", publish=False)
    account = sequence.account
    for _n in range(3):
        subscriber_enrol(
            sequence=sequence, subscriber=SubscriberFactory(account=account), now=MONDAY
        )
    subscriber_enrol(
        sequence=sequence,
        subscriber=SubscriberFactory(account=account, state=Subscriber.State.UNCONFIRMED),
        now=MONDAY,
    )
    advance_and_send(sequence, MONDAY)
    subscriber_enrol(sequence=sequence, subscriber=SubscriberFactory(account=account), now=MONDAY)
    sequences_advance(now=MONDAY + timedelta(minutes=1))
    return sequence


def test_it_prints_the_state_the_subscribers_and_each_emails_sends(course):
    one, two, _three = course.emails.order_by("sort_key")
    # Three more recipients of One: two failed, one whose send was in flight when a worker died.
    Broadcast.objects.filter(pk=one.message_id).update(
        recipient_count=F("recipient_count") + 3, failed_count=2, unknown_count=1
    )
    lines = status_of(str(course.id))
    assert lines[0] == f"Sequence {course.id}: “Welcome course” (Ann's Kitchen)"
    assert lines[1] == "State:        Active; sends every day at 09:00 (UTC)"
    assert lines[2] == (
        "Subscribers:  active 4, excluded now 0, unconfirmed 1, completed 0, stopped 0, removed 0"
    )
    # Everyone active waits for Two, due on Tuesday at 09:00 UTC, long past: all four are due.
    assert lines[3] == "Next due:     2024-03-05 10:00 CET; due now 4"
    table = [line.split() for line in lines[5:]]
    assert table[0] == ["#", "state", "sent", "queued", "failed", "unknown", "email"]
    # One: three sent, one handed to the send queue and not yet sent.
    assert table[1][:6] == ["1", "published", "3", "1", "2", "1"]
    assert " ".join(table[1][6:]) == "One (immediately)"
    assert table[2][:6] == ["2", "published", "0", "0", "0", "0"]
    assert " ".join(table[2][6:]) == "Two (1 day after the previous email)"
    assert table[3][:6] == ["3", "draft", "0", "0", "0", "0"]


def test_a_paused_sequence_says_so(course):
    sequence_pause(sequence=course)
    assert status_of(str(course.id))[1].startswith("State:        Paused; ")


def test_watch_prints_again_until_ctrl_c(course, monkeypatch):
    from sequences.management.commands import sequence_status

    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt
        Subscription.objects.filter(sequence=course, state=Subscription.State.UNCONFIRMED).update(
            state=Subscription.State.COMPLETED
        )

    monkeypatch.setattr(sequence_status.time, "sleep", sleep)
    lines = status_of(str(course.id), "--watch")
    readings = [line for line in lines if line.startswith("Subscribers:")]
    assert sleeps == [2.0, 2.0]
    assert len(readings) == 2
    assert "unconfirmed 1, completed 0" in readings[0]
    assert "unconfirmed 0, completed 1" in readings[1]


def test_an_unknown_sequence_is_a_clear_error(db):
    with pytest.raises(CommandError, match="There is no sequence 999999."):
        status_of("999999")
