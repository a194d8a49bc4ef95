"""Fixtures of the sequence tests: a sequence with published emails, and sending what the
scheduler queued through the real pipeline."""

from __future__ import annotations

from datetime import datetime

import pytest

from broadcasts import pipeline
from broadcasts.models import Broadcast
from sequences.engine import sequences_advance
from sequences.models import Sequence, SequenceEmail
from sequences.services import EmailValues, email_create, email_publish, email_update
from tests.broadcasts.conftest import smtp_sink  # noqa: F401 - the same real SMTP sink
from tests.factories import AccountFactory


def email_add(
    sequence: Sequence,
    *,
    subject: str,
    delay: int = 0,
    unit: str = "days",
    publish: bool = True,
    after: SequenceEmail | None = None,
    send_days: list[int] | None = None,
) -> SequenceEmail:
    email = email_create(sequence=sequence, after=after)
    email_update(
        email=email,
        values=EmailValues(
            subject=subject,
            preview_text="",
            body=f"Hello {{{{ subscriber.first_name | default: 'friend' }}}}, this is {subject}.",
            body_format="markdown",
            delay_amount=delay,
            delay_unit=unit,
            send_days=send_days,
        ),
    )
    if publish:
        email_publish(email=email)
    email.refresh_from_db()
    return email


@pytest.fixture
def make_sequence():
    """make_sequence(emails=[(subject, delay, unit), ...], **settings): an account with a
    postal address and an active sequence of published emails, all days, send hour 9, UTC."""

    def make(*, emails=(), account=None, **fields) -> Sequence:
        account = account or AccountFactory(name="Ann's Kitchen")
        fields.setdefault("time_zone", "UTC")
        sequence = Sequence.objects.create(account=account, name="Welcome course", **fields)
        for subject, delay, unit in emails:
            email_add(sequence, subject=subject, delay=delay, unit=unit)
        return sequence

    return make


def send_queued(*messages: Broadcast) -> None:
    """Sends every queued delivery of these messages through the pipeline, inline."""
    for message in messages:
        for first_id, last_id in pipeline.queued_ranges(broadcast_id=message.pk, size=1000):
            pipeline.send_batch(broadcast_id=message.pk, first_id=first_id, last_id=last_id)


def advance_and_send(sequence: Sequence, now: datetime) -> None:
    """What the beat and the workers do at `now`: the scheduler's passes, then the sends."""
    sequences_advance(now=now)
    send_queued(*[email.message for email in sequence.emails.all()])
