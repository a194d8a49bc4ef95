"""The creator's choice about deliveries whose outcome is unknown (a worker stopped while handing
them to the mail server): leave them, or send them again knowing that some may get a second
copy. Sending them again queues them in one conditional statement with the counters, so a
double click queues them once, and the real worker sends exactly those."""

from __future__ import annotations

import threading

import pytest
from django.urls import reverse
from django.utils import timezone

from broadcasts.models import Broadcast, Delivery
from broadcasts.services import (
    ResendRefused,
    broadcast_send,
    broadcast_unknown_leave,
    broadcast_unknown_resend,
)
from tests.broadcasts.conftest import wait_until
from tests.factories import SubscriberFactory

S = Delivery.State


def with_unknowns(broadcast: Broadcast, *, sent: int, unknown: int, state=Broadcast.State.SENT):
    """The broadcast as a killed worker leaves it: `sent` deliveries sent and `unknown` whose
    outcome is unknown (counters to match), in `state`."""
    account = broadcast.account
    subscribers = list(account.subscriber_set.order_by("id"))
    for n in range(len(subscribers), sent + unknown):
        subscribers.append(SubscriberFactory(account=account, email=f"more{n}@example.org"))
    for n, subscriber in enumerate(subscribers[: sent + unknown]):
        Delivery.objects.create(
            broadcast=broadcast,
            account=account,
            subscriber=subscriber,
            state=S.SENT if n < sent else S.UNKNOWN,
            attempts=1,
        )
    Broadcast.objects.filter(pk=broadcast.pk).update(
        state=state,
        fanned_out_at=timezone.now(),
        recipient_count=sent + unknown,
        sent_count=sent,
        unknown_count=unknown,
    )
    broadcast.refresh_from_db()
    return broadcast


def progress_of(client, broadcast: Broadcast) -> str:
    return client.get(reverse("broadcast_progress", args=[broadcast.id])).content.decode()


def test_the_progress_page_offers_to_leave_them_or_send_them_again_with_their_count(
    alice_client, make_broadcast, account_a
):
    broadcast = with_unknowns(make_broadcast(recipients=5, account=account_a), sent=3, unknown=2)
    section = progress_of(alice_client, broadcast).split('id="unknown-deliveries"')[1]
    assert "Unknown outcome: 2 recipients" in section
    assert f'action="{reverse("broadcast_unknown_leave", args=[broadcast.id])}"' in section
    assert f'action="{reverse("broadcast_unknown_resend", args=[broadcast.id])}"' in section
    assert ">Leave them</button>" in section
    assert ">Send the 2 again</button>" in section
    assert "Whoever of the 2 did receive it gets a second copy." in section


def test_sending_them_again_queues_them_once_even_on_a_double_click(
    alice_client, make_broadcast, account_a, django_capture_on_commit_callbacks
):
    broadcast = with_unknowns(make_broadcast(recipients=5, account=account_a), sent=3, unknown=2)
    url = reverse("broadcast_unknown_resend", args=[broadcast.id])
    with django_capture_on_commit_callbacks() as publishes:
        first = alice_client.post(url, follow=True)
        second = alice_client.post(url, follow=True)

    assert "2 emails queued to go out again" in first.content.decode()
    assert "Nothing to send again" in second.content.decode()
    assert len(publishes) == 1
    broadcast.refresh_from_db()
    assert broadcast.state == Broadcast.State.SENDING and broadcast.sent_at is None
    assert (broadcast.sent_count, broadcast.unknown_count) == (3, 0)
    assert broadcast.unknown_resent_count == 2 and broadcast.unknown_resent_at is not None
    states = sorted(broadcast.delivery_set.values_list("state", flat=True))
    assert states == [S.QUEUED, S.QUEUED, S.SENT, S.SENT, S.SENT]
    assert broadcast.remaining_count == 2
    body = progress_of(alice_client, broadcast)
    assert "you chose to send 2 emails of unknown outcome again" in body
    assert ">Leave them</button>" not in body


@pytest.mark.django_db(transaction=True)
def test_two_clicks_at_the_same_moment_queue_them_once(make_broadcast):
    broadcast = with_unknowns(make_broadcast(recipients=6), sent=2, unknown=4)
    Broadcast.objects.filter(pk=broadcast.pk).update(state=Broadcast.State.PAUSED)
    start = threading.Barrier(2)
    queued = []

    def click():
        from django.db import connection

        start.wait()
        try:
            queued.append(
                broadcast_unknown_resend(broadcast=Broadcast.objects.get(pk=broadcast.pk))
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(queued) == [0, 4]
    broadcast.refresh_from_db()
    assert (broadcast.unknown_count, broadcast.unknown_resent_count) == (0, 4)
    assert broadcast.state == Broadcast.State.PAUSED  # they go out when it resumes
    assert broadcast.delivery_set.filter(state=S.QUEUED).count() == 4


def test_the_real_worker_sends_exactly_the_unknown_ones_and_the_broadcast_is_sent_again(
    make_broadcast, smtp_sink, celery_worker
):
    broadcast = make_broadcast(recipients=5)
    assert broadcast_send(broadcast=broadcast)
    wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).state == Broadcast.State.SENT)
    assert sorted(smtp_sink.copies.values()) == [1] * 5
    # A worker died during a call: two deliveries' outcomes are unknown.
    lost = list(broadcast.delivery_set.order_by("id")[:2])
    Delivery.objects.filter(pk__in=[d.pk for d in lost]).update(state=S.UNKNOWN)
    Broadcast.objects.filter(pk=broadcast.pk).update(sent_count=3, unknown_count=2)
    smtp_sink.copies.clear()

    assert broadcast_unknown_resend(broadcast=broadcast) == 2
    wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).state == Broadcast.State.SENT)

    assert smtp_sink.copies == {d.subscriber.email: 1 for d in lost}
    broadcast.refresh_from_db()
    assert (broadcast.sent_count, broadcast.unknown_count, broadcast.remaining_count) == (5, 0, 0)
    assert broadcast.sent_at is not None


def test_leaving_them_stops_asking_until_more_become_unknown(
    alice_client, make_broadcast, account_a
):
    broadcast = with_unknowns(make_broadcast(recipients=5, account=account_a), sent=3, unknown=2)
    response = alice_client.post(
        reverse("broadcast_unknown_leave", args=[broadcast.id]), follow=True
    )
    body = response.content.decode()
    assert "Left as they are: nobody gets a second copy." in body
    assert "You chose to leave them as they are." in body
    assert ">Leave them</button>" not in body and "again</button>" not in body
    broadcast.refresh_from_db()
    assert (broadcast.unknown_count, broadcast.unknown_left_count) == (2, 2)
    assert broadcast.delivery_set.filter(state=S.UNKNOWN).count() == 2
    assert not broadcast_unknown_leave(broadcast=broadcast)  # a second click changes nothing

    # The sweeper finds one more whose call was cut short: the choice comes back, for all 3.
    Broadcast.objects.filter(pk=broadcast.pk).update(unknown_count=3)
    assert ">Send the 3 again</button>" in progress_of(alice_client, broadcast)


def test_a_cancelled_broadcast_offers_no_resend_and_refuses_one(
    alice_client, make_broadcast, account_a
):
    broadcast = with_unknowns(
        make_broadcast(recipients=3, account=account_a),
        sent=1,
        unknown=2,
        state=Broadcast.State.CANCELLED,
    )
    body = progress_of(alice_client, broadcast)
    assert "Unknown outcome: 2 recipients" in body and "again</button>" not in body
    response = alice_client.post(
        reverse("broadcast_unknown_resend", args=[broadcast.id]), follow=True
    )
    assert "A cancelled broadcast sends nothing more." in response.content.decode()
    with pytest.raises(ResendRefused):
        broadcast_unknown_resend(broadcast=broadcast)
    broadcast.refresh_from_db()
    assert broadcast.unknown_count == 2
    assert broadcast.delivery_set.filter(state=S.UNKNOWN).count() == 2
