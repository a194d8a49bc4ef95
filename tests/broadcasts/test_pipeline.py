"""The send pipeline: fan-out, batches, outcomes, pause/resume/cancel, retries, the sweeper —
with a real SMTP sink, and a real Celery worker where the whole pipeline runs."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.db import connection
from django.utils import timezone

from bench.fake_postmark import FakePostmark
from bench.smtp_sink import CountingSink
from broadcasts import pipeline, transport
from broadcasts.models import Broadcast, Delivery
from broadcasts.services import (
    SendRefused,
    broadcast_cancel,
    broadcast_pause,
    broadcast_resume,
    broadcast_send,
    broadcasts_due_send,
)
from broadcasts.transport import Outcome, OutcomeStatus, PostmarkBatchTransport, SmtpTransport
from convertkit.dev.devstack import free_port
from convertkit.redis import redis_client
from subscribers.models import Subscriber
from subscribers.segments.services import segment_count, segment_create, segment_delete
from subscribers.services import subscriber_suppress, subscriber_unsubscribe
from tests.broadcasts.conftest import CountingHandler, smtp_settings, wait_until
from tests.broadcasts.test_transport import use_postmark
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory, TaggingFactory

S = Delivery.State


def started(broadcast: Broadcast) -> Broadcast:
    """Starts the broadcast as the Send button does, then runs the fan-out inline."""
    assert broadcast_send(broadcast=broadcast)
    pipeline.fan_out(broadcast_id=broadcast.pk)
    broadcast.refresh_from_db()
    return broadcast


def send_all(broadcast: Broadcast) -> None:
    for first_id, last_id in pipeline.queued_ranges(broadcast_id=broadcast.pk, size=1000):
        pipeline.send_batch(broadcast_id=broadcast.pk, first_id=first_id, last_id=last_id)
    broadcast.refresh_from_db()


def test_fan_out_snapshots_active_subscribers_with_any_tag_minus_excluded(make_broadcast, db):
    broadcast = make_broadcast(recipients=0)
    account = broadcast.account
    soup, bread, vip = (TagFactory(account=account, name=n) for n in ("soup", "bread", "vip"))
    people = {n: SubscriberFactory(account=account, email=f"{n}@example.org") for n in "abcde"}
    TaggingFactory(tag=soup, subscriber=people["a"])
    TaggingFactory(tag=bread, subscriber=people["b"])
    TaggingFactory(tag=soup, subscriber=people["c"])
    TaggingFactory(tag=vip, subscriber=people["c"])  # excluded
    TaggingFactory(tag=soup, subscriber=people["d"])
    Subscriber.objects.filter(pk=people["d"].pk).update(state=Subscriber.State.UNSUBSCRIBED)
    Broadcast.objects.filter(pk=broadcast.pk).update(
        include_tag_ids=[soup.id, bread.id], exclude_tag_ids=[vip.id]
    )
    broadcast.refresh_from_db()

    started(broadcast)
    pipeline.fan_out(broadcast_id=broadcast.pk)  # again: nobody twice

    emails = set(Delivery.objects.values_list("subscriber__email", flat=True))
    assert emails == {"a@example.org", "b@example.org"}
    assert broadcast.recipient_count == 2 == Delivery.objects.count()


def test_all_of_tags_needs_every_tag_and_a_deleted_tag_never_widens_the_audience(
    make_broadcast, db
):
    broadcast = make_broadcast(recipients=0)
    account = broadcast.account
    soup, bread = TagFactory(account=account), TagFactory(account=account)
    both = SubscriberFactory(account=account, email="both@example.org")
    TaggingFactory(tag=soup, subscriber=both)
    TaggingFactory(tag=bread, subscriber=both)
    TaggingFactory(tag=soup, subscriber=SubscriberFactory(account=account))
    Broadcast.objects.filter(pk=broadcast.pk).update(
        include_tag_ids=[soup.id, bread.id], include_match="all"
    )
    broadcast.refresh_from_db()
    from broadcasts.audience import audience_count

    assert audience_count(audience=broadcast) == 1
    bread.delete()
    assert audience_count(audience=broadcast) == 0
    with pytest.raises(SendRefused, match="Nobody is in the audience"):
        broadcast_send(broadcast=broadcast)


def test_a_broadcast_to_a_segment_reaches_its_members_only_and_as_many_as_were_counted(
    make_broadcast, smtp_sink, db
):
    """The segment (soup, and a custom field) AND the broadcast's own filter (not vip); the
    count the segment's page shows is the recipients a broadcast to it gets."""
    broadcast = make_broadcast(recipients=0)
    account = broadcast.account
    CustomFieldFactory(account=account, key="city", label="City")
    soup, vip = TagFactory(account=account, name="soup"), TagFactory(account=account, name="vip")
    cities = {"a": "Paris", "b": "Paris", "c": "Lyon", "d": "Paris", "e": "Paris", "f": "Paris"}
    people = {
        n: SubscriberFactory(account=account, email=f"{n}@example.org", fields={"city": city})
        for n, city in cities.items()
    }
    for n in "abcdf":
        TaggingFactory(tag=soup, subscriber=people[n])
    TaggingFactory(tag=vip, subscriber=people["d"])
    Subscriber.objects.filter(pk=people["f"].pk).update(state=Subscriber.State.UNSUBSCRIBED)
    segment = segment_create(
        account=account,
        name="Soup in Paris",
        include_tag_ids=[soup.id],
        field_conditions=[{"key": "city", "op": "equals", "value": "paris"}],
    )
    assert segment_count(segment=segment) == 3  # a, b, d (c is in Lyon, e has no soup)
    Broadcast.objects.filter(pk=broadcast.pk).update(
        segment_id=segment.id, exclude_tag_ids=[vip.id]
    )
    broadcast.refresh_from_db()

    broadcast = started(broadcast)
    send_all(broadcast)

    assert set(smtp_sink.copies) == {"a@example.org", "b@example.org"}
    assert sorted(smtp_sink.copies.values()) == [1, 1]
    assert broadcast.recipient_count == 2 == broadcast.sent_count


def test_a_broadcast_whose_segment_was_deleted_is_refused_not_sent_to_everyone(
    make_broadcast, smtp_sink, db
):
    broadcast = make_broadcast(recipients=3)
    tag = TagFactory(account=broadcast.account)
    TaggingFactory(tag=tag, subscriber=Subscriber.objects.filter(account=broadcast.account)[0])
    segment = segment_create(account=broadcast.account, name="Tagged", include_tag_ids=[tag.id])
    Broadcast.objects.filter(pk=broadcast.pk).update(segment_id=segment.id)
    broadcast.refresh_from_db()
    segment_delete(segment=segment)

    with pytest.raises(SendRefused, match="Nobody is in the audience"):
        broadcast_send(broadcast=broadcast)
    assert not smtp_sink.copies and not Delivery.objects.exists()


def test_every_recipient_gets_one_message_with_unsubscribe_headers_and_stable_message_id(
    make_broadcast, smtp_sink, db, settings
):
    settings.SITE_URL = "https://mail.example.com"
    broadcast = started(make_broadcast(recipients=5))

    send_all(broadcast)

    assert broadcast.state == Broadcast.State.SENT and broadcast.sent_at
    assert (broadcast.sent_count, broadcast.remaining_count) == (5, 0)
    assert sorted(smtp_sink.copies.values()) == [1] * 5
    deliveries = {d.subscriber.email: d for d in Delivery.objects.select_related("subscriber")}
    assert {d.state for d in deliveries.values()} == {S.SENT}
    for message in smtp_sink.messages:
        to = message["To"].addresses[0].addr_spec
        delivery = deliveries[to]
        assert message["Message-ID"] == f"<d{delivery.pk}.b{broadcast.pk}@mail.example.com>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "https://mail.example.com/u/" in message["List-Unsubscribe"]
        assert "mailto:" in message["List-Unsubscribe"]
        assert message["Subject"] == f"Soup season, {delivery.subscriber.first_name}"


def test_sending_twice_or_two_beats_firing_one_schedule_sends_once(
    make_broadcast, smtp_sink, db, django_capture_on_commit_callbacks
):
    broadcast = make_broadcast(recipients=2)
    Broadcast.objects.filter(pk=broadcast.pk).update(
        state=Broadcast.State.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = broadcasts_due_send()
        second = broadcasts_due_send()
        broadcast.refresh_from_db()
        again = broadcast_send(broadcast=broadcast)

    assert (first, second, again) == ([broadcast.pk], [], False)
    assert len(callbacks) == 1  # one fan-out queued


def test_someone_who_unsubscribes_after_fan_out_gets_nothing(make_broadcast, smtp_sink, db):
    broadcast = started(make_broadcast(recipients=3))
    leaving = Subscriber.objects.get(email="reader1@example.org")
    subscriber_unsubscribe(subscriber=leaving, reason="test")

    send_all(broadcast)

    assert "reader1@example.org" not in smtp_sink.copies
    assert (broadcast.sent_count, broadcast.skipped_count) == (2, 1)
    assert Delivery.objects.get(subscriber=leaving).state == S.SKIPPED
    assert broadcast.state == Broadcast.State.SENT


@pytest.mark.parametrize(
    "leave",
    [
        lambda subscriber: subscriber_unsubscribe(subscriber=subscriber, reason="one-click"),
        lambda subscriber: subscriber_suppress(
            subscriber=subscriber, state=Subscriber.State.BOUNCED, reason="hard bounce"
        ),
        lambda subscriber: subscriber_suppress(
            subscriber=subscriber, state=Subscriber.State.COMPLAINED, reason="complaint"
        ),
    ],
    ids=["unsubscribes", "bounces", "complains"],
)
def test_someone_who_leaves_after_their_batch_was_claimed_gets_nothing_and_counts_skipped_at_once(
    leave, make_broadcast, smtp_sink, db, monkeypatch
):
    broadcast = started(make_broadcast(recipients=6))
    leaving = Subscriber.objects.get(email="reader3@example.org")
    monkeypatch.setattr(SmtpTransport, "max_call_size", 2)
    real_send_call = SmtpTransport.send_call
    skipped_seen = []

    def send_call(self, items, *journal):
        skipped_seen.append(Broadcast.objects.get(pk=broadcast.pk).skipped_count)
        outcomes = real_send_call(self, items, *journal)
        if len(skipped_seen) == 1:
            # reader3 is in the next call of the batch, claimed already.
            leave(leaving)
        return outcomes

    monkeypatch.setattr(SmtpTransport, "send_call", send_call)
    send_all(broadcast)

    assert "reader3@example.org" not in smtp_sink.copies
    assert sorted(smtp_sink.copies.values()) == [1] * 5
    # The call after the one during which they left already shows them as skipped.
    assert skipped_seen == [0, 1, 1]
    assert (broadcast.sent_count, broadcast.skipped_count) == (5, 1)
    assert Delivery.objects.get(subscriber=leaving).state == S.SKIPPED


def test_a_delivery_sent_after_a_refused_connection_keeps_no_error(make_broadcast, db, settings):
    port = free_port()
    smtp_settings(settings, port)
    broadcast = started(make_broadcast(recipients=1))
    (only,) = pipeline.queued_ranges(broadcast_id=broadcast.pk, size=10)

    pipeline.send_batch(broadcast_id=broadcast.pk, first_id=only[0], last_id=only[1])
    refused = Delivery.objects.get()
    assert refused.state == S.QUEUED and "ConnectionRefusedError" in refused.error

    Delivery.objects.update(not_before=timezone.now() - timedelta(seconds=1))
    with CountingSink(port=port) as sink:
        pipeline.send_batch(broadcast_id=broadcast.pk, first_id=only[0], last_id=only[1])

    delivered = Delivery.objects.get()
    assert (delivered.state, delivered.attempts, delivered.error) == (S.SENT, 2, "")
    assert sink.counter.recipients == {"reader0@example.org": 1}


def test_pause_stops_between_batches_and_resume_sends_the_rest_exactly_once(
    make_broadcast, smtp_sink, db, settings
):
    broadcast = started(make_broadcast(recipients=6))
    (first, second) = pipeline.queued_ranges(broadcast_id=broadcast.pk, size=3)

    pipeline.send_batch(broadcast_id=broadcast.pk, first_id=first[0], last_id=first[1])
    broadcast_pause(broadcast=broadcast)
    again = pipeline.send_batch(broadcast_id=broadcast.pk, first_id=second[0], last_id=second[1])

    assert again is None and sum(smtp_sink.copies.values()) == 3
    broadcast.refresh_from_db()
    assert broadcast.state == Broadcast.State.PAUSED and broadcast.remaining_count == 3
    assert Delivery.objects.filter(state=S.QUEUED).count() == 3

    assert broadcast_resume(broadcast=broadcast)
    send_all(broadcast)

    assert sorted(smtp_sink.copies.values()) == [1] * 6
    assert broadcast.state == Broadcast.State.SENT


def test_a_pause_seen_between_calls_hands_back_the_rest_of_the_batch(
    make_broadcast, smtp_sink, db, monkeypatch
):
    broadcast = started(make_broadcast(recipients=5))
    original = transport.open_transport

    def small_calls(**kwargs):
        opened = original(**kwargs)
        opened.max_call_size = 2

        real_send = opened.send_call

        def send_then_pause(items, journal):
            result = real_send(items, journal)
            Broadcast.objects.filter(pk=broadcast.pk).update(state=Broadcast.State.PAUSED)
            return result

        opened.send_call = send_then_pause
        return opened

    monkeypatch.setattr(pipeline, "open_transport", small_calls)
    send_all(broadcast)

    assert sum(smtp_sink.copies.values()) == 2
    assert Delivery.objects.filter(state=S.QUEUED, claim=None).count() == 3
    assert broadcast.sent_count == 2


def test_a_pause_undone_by_a_resume_mid_batch_leaves_nothing_claimed_and_everyone_gets_one(
    make_broadcast, smtp_sink, db, monkeypatch
):
    broadcast = started(make_broadcast(recipients=5))
    original = transport.open_transport
    calls = []

    def small_calls(**kwargs):
        opened = original(**kwargs)
        opened.max_call_size = 2
        real_send = opened.send_call

        def send_then_pause_once(items, journal):
            result = real_send(items, journal)
            calls.append(items)
            if len(calls) == 1:
                Broadcast.objects.filter(pk=broadcast.pk).update(state=Broadcast.State.PAUSED)
            return result

        opened.send_call = send_then_pause_once
        return opened

    mark_sending = pipeline._mark_sending

    def resume_after_a_refused_call(**kwargs):
        # The creator presses Resume just after the second call was refused by the pause.
        sending, held = mark_sending(**kwargs)
        if not sending:
            Broadcast.objects.filter(pk=broadcast.pk, state=Broadcast.State.PAUSED).update(
                state=Broadcast.State.SENDING
            )
        return sending, held

    monkeypatch.setattr(pipeline, "open_transport", small_calls)
    monkeypatch.setattr(pipeline, "_mark_sending", resume_after_a_refused_call)
    send_all(broadcast)

    assert not Delivery.objects.filter(state=S.CLAIMED).exists()
    send_all(broadcast)  # the send tasks the resume queued

    assert sorted(smtp_sink.copies.values()) == [1] * 5
    assert broadcast.state == Broadcast.State.SENT and broadcast.sent_count == 5


def test_cancel_marks_what_was_not_sent_and_nothing_more_goes_out(make_broadcast, smtp_sink, db):
    broadcast = started(make_broadcast(recipients=4))

    assert broadcast_cancel(broadcast=broadcast)
    pipeline.deliveries_cancel(broadcast_id=broadcast.pk)
    send_all(broadcast)

    assert smtp_sink.copies == {}
    assert broadcast.state == Broadcast.State.CANCELLED
    assert broadcast.cancelled_count == 4 and broadcast.remaining_count == 0


def test_a_transient_error_is_retried_with_backoff_then_fails_after_the_last_attempt(
    make_broadcast, db, monkeypatch, settings
):
    settings.BROADCAST_MAX_ATTEMPTS = 2
    broadcast = started(make_broadcast(recipients=1))

    class Refusing:
        max_call_size = 10

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def send_call(self, items, journal):
            return [Outcome(i, OutcomeStatus.RETRY, error="451 try later") for i, _ in items]

    monkeypatch.setattr(pipeline, "open_transport", lambda **kwargs: Refusing())
    (only,) = pipeline.queued_ranges(broadcast_id=broadcast.pk, size=10)

    wait = pipeline.send_batch(broadcast_id=broadcast.pk, first_id=only[0], last_id=only[1])

    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == (S.QUEUED, 1)
    assert 0 < wait <= 5.5 and delivery.not_before > timezone.now()
    assert pipeline.send_batch(broadcast_id=broadcast.pk, first_id=only[0], last_id=only[1]) > 0
    Delivery.objects.update(not_before=timezone.now() - timedelta(seconds=1))

    assert pipeline.send_batch(broadcast_id=broadcast.pk, first_id=only[0], last_id=only[1]) is None

    delivery.refresh_from_db()
    broadcast.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.error) == (S.FAILED, 2, "451 try later")
    assert broadcast.failed_count == 1 and broadcast.state == Broadcast.State.SENT


def test_the_broadcast_pauses_itself_when_too_many_messages_fail(
    make_broadcast, db, monkeypatch, settings
):
    settings.BROADCAST_PAUSE_MIN_SENDS = 4
    settings.BROADCAST_PAUSE_FAILURE_RATE = 0.5
    broadcast = started(make_broadcast(recipients=10))

    class Rejecting:
        max_call_size = 5

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def send_call(self, items, journal):
            return [Outcome(i, OutcomeStatus.FAILED, error="550 no such user") for i, _ in items]

    monkeypatch.setattr(pipeline, "open_transport", lambda **kwargs: Rejecting())
    send_all(broadcast)

    assert broadcast.state == Broadcast.State.PAUSED
    assert broadcast.failed_count == 5
    assert "5 of 5 messages failed" in broadcast.paused_reason
    assert "550 no such user" in broadcast.paused_reason


def test_the_sweeper_marks_in_flight_deliveries_unknown_and_requeues_claimed_ones(
    make_broadcast, db
):
    broadcast = started(make_broadcast(recipients=3))
    a, b, c = Delivery.objects.order_by("id")
    long_ago = timezone.now() - timedelta(hours=1)
    Delivery.objects.filter(pk=a.pk).update(state=S.SENDING, claim=7, claimed_at=long_ago)
    Delivery.objects.filter(pk=b.pk).update(state=S.CLAIMED, claim=7, claimed_at=long_ago)

    report = pipeline.sweep()

    a.refresh_from_db()
    b.refresh_from_db()
    broadcast.refresh_from_db()
    assert (report.unknown, report.released) == (1, 1)
    assert a.state == S.UNKNOWN and "may or may not" in a.error
    assert (b.state, b.claim) == (S.QUEUED, None)
    assert broadcast.unknown_count == 1


def test_pipeline_runs_on_a_real_worker_and_survives_a_redis_flush(
    make_broadcast, smtp_sink, celery_worker_start, settings
):
    """Redis keeps nothing here: a flush right after the fan-out loses every queued send task.
    The sweeper, seeing no progress, publishes the queued ranges again."""
    settings.BROADCAST_BATCH_SIZE = 4
    broadcast = make_broadcast(recipients=10)
    assert broadcast_send(broadcast=broadcast)
    pipeline.fan_out(broadcast_id=broadcast.pk)
    redis_client().flushdb()  # the send tasks are gone

    with celery_worker_start(concurrency=2):
        report = pipeline.sweep(now=timezone.now() + timedelta(minutes=10))
        assert report.republished == [broadcast.pk]
        wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).state == Broadcast.State.SENT)

    assert sorted(smtp_sink.copies.values()) == [1] * 10
    assert Broadcast.objects.get(pk=broadcast.pk).sent_count == 10


def test_an_hourly_rate_limit_holds_the_rest_back_and_the_sweeper_leaves_it_waiting(
    make_broadcast, smtp_sink, db, settings
):
    settings.BROADCAST_RATE_PER_HOUR = 2
    settings.BROADCAST_STALL_TIMEOUT = 1
    # The hourly window must not roll over mid-test (that would allow two more sends).
    time.sleep(max(0.0, 10 - (3600 - time.time() % 3600)))
    broadcast = started(make_broadcast(recipients=5))
    (only,) = pipeline.queued_ranges(broadcast_id=broadcast.pk, size=10)

    wait = pipeline.send_batch(broadcast_id=broadcast.pk, first_id=only[0], last_id=only[1])

    assert sum(smtp_sink.copies.values()) == 2
    assert 0 < wait <= 3600
    held = Delivery.objects.filter(state=S.QUEUED)
    assert held.count() == 3 and all(d.not_before > timezone.now() for d in held)
    # Past the stall timeout, before the next hour (which may be a minute away, so no fixed
    # offset would do).
    report = pipeline.sweep(now=timezone.now() + timedelta(seconds=wait / 2))
    assert report.republished == []  # waiting for the next hour, not stalled


@pytest.mark.django_db(transaction=True)
def test_a_live_task_that_the_sweeper_takes_for_dead_sends_nobody_a_second_copy(
    make_broadcast, settings
):
    """The sweeper settles a claim whose task is alive and mid-call (a long pause made it look
    dead): the journal's fence stops the task before its next message, and what the sweeper
    queued again is sent once, by the task it published."""
    reports = []

    def sweep_as_if_the_task_had_died(recipient: str) -> None:
        if recipient == "reader3@example.org" and not reports:
            reports.append(pipeline.sweep(now=timezone.now() + timedelta(hours=1)))
            connection.close()  # this thread's, the sink's

    handler = CountingHandler(on_data=sweep_as_if_the_task_had_died)
    port = free_port()
    sink = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    sink.start()
    smtp_settings(settings, port)
    try:
        broadcast = started(make_broadcast(recipients=30))
        send_all(broadcast)  # the task the sweeper took for dead: one batch, calls of 20
        send_all(broadcast)  # the send task the sweeper published
    finally:
        sink.stop()

    # 0-2 came back before the sweep (sent), 3 was on its way (unknown), the rest of the call
    # (4-19) never started and 20-29 were only claimed: queued again.
    assert (reports[0].settled, reports[0].unknown, reports[0].released) == (3, 1, 26)
    assert handler.copies == {f"reader{n}@example.org": 1 for n in range(30)}
    states = dict(Delivery.objects.values_list("subscriber__email", "state"))
    assert states.pop("reader3@example.org") == S.UNKNOWN
    assert set(states.values()) == {S.SENT}
    assert (broadcast.sent_count, broadcast.unknown_count) == (29, 1)


def test_a_postmark_request_whose_answer_was_lost_leaves_only_its_messages_unknown(
    make_broadcast, db, settings, monkeypatch
):
    """Over an ESP nobody can tell which messages of a request whose answer was lost went out,
    so they stay unknown; the messages of the call that were not posted yet go back to the
    queue, and are sent once."""
    broadcast = started(make_broadcast(recipients=6))
    monkeypatch.setattr(transport, "POSTMARK_BATCH_BYTES", 1)  # one message per request
    real_post = PostmarkBatchTransport._post
    reports = []

    def post_then_die(self, request):
        outcomes = real_post(self, request)
        if not reports:  # the worker dies with the first answer in hand
            reports.append(pipeline.sweep(now=timezone.now() + timedelta(hours=1)))
        return outcomes

    monkeypatch.setattr(PostmarkBatchTransport, "_post", post_then_die)
    with FakePostmark() as fake:
        use_postmark(settings, fake.url)
        send_all(broadcast)  # the task the sweeper took for dead
        send_all(broadcast)  # the send task the sweeper published

    assert (reports[0].settled, reports[0].unknown, reports[0].released) == (0, 1, 5)
    assert fake.counter.recipients == {f"reader{n}@example.org": 1 for n in range(6)}
    states = dict(Delivery.objects.values_list("subscriber__email", "state"))
    assert states.pop("reader0@example.org") == S.UNKNOWN
    assert set(states.values()) == {S.SENT}
