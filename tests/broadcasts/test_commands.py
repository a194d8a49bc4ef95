"""manage.py send_broadcast and broadcast_status."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from broadcasts import pipeline
from broadcasts.models import Broadcast, Delivery
from subscribers.services import subscriber_delete


def test_send_broadcast_starts_it_once(make_broadcast, db, django_capture_on_commit_callbacks):
    broadcast = make_broadcast(recipients=2)
    out = StringIO()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("send_broadcast", str(broadcast.pk), stdout=out)
        call_command("send_broadcast", str(broadcast.pk), stdout=out)

    assert "is sending" in out.getvalue()
    assert "already sending: nothing done" in out.getvalue()
    assert len(callbacks) == 1
    broadcast.refresh_from_db()
    assert broadcast.state == Broadcast.State.SENDING


def test_send_broadcast_explains_a_refusal(make_broadcast, db):
    broadcast = make_broadcast(recipients=1)
    broadcast.account.postal_address = ""
    broadcast.account.save()

    with pytest.raises(CommandError, match="postal address"):
        call_command("send_broadcast", str(broadcast.pk))
    with pytest.raises(CommandError, match="There is no broadcast 999999"):
        call_command("send_broadcast", "999999")
    broadcast.refresh_from_db()
    assert broadcast.state == Broadcast.State.DRAFT


def test_broadcast_status_watches_until_sent(make_broadcast, smtp_sink, db):
    broadcast = make_broadcast(recipients=3)
    call_command("send_broadcast", str(broadcast.pk), stdout=StringIO())
    pipeline.fan_out(broadcast_id=broadcast.pk)
    for first_id, last_id in pipeline.queued_ranges(broadcast_id=broadcast.pk, size=10):
        pipeline.send_batch(broadcast_id=broadcast.pk, first_id=first_id, last_id=last_id)
    out, err = StringIO(), StringIO()

    call_command("broadcast_status", str(broadcast.pk), "--watch", stdout=out, stderr=err)

    assert "sent, sent 3, failed 0, unknown 0, skipped 0, remaining 0" in out.getvalue()
    assert "100%" in err.getvalue() and "3 of 3 recipients" in err.getvalue()


def test_deleting_a_subscriber_removes_their_deliveries(make_broadcast, smtp_sink, db):
    broadcast = make_broadcast(recipients=2)
    call_command("send_broadcast", str(broadcast.pk), stdout=StringIO())
    pipeline.fan_out(broadcast_id=broadcast.pk)
    delivery = Delivery.objects.first()

    subscriber_delete(subscriber=delivery.subscriber)

    assert not Delivery.objects.filter(pk=delivery.pk).exists()
    assert Delivery.objects.count() == 1
