"""Exactly once and on time with real parts: two schedulers at once, the beat task on a real
Celery worker, a worker killed with kill -9 mid-batch, a Redis flush between the scheduler's
commit and its send tasks; repeats, exclusions, pauses, emails unpublished or deleted under
queued deliveries, subscribers deleted or suppressed mid-sequence; the due query on its index.

The clock is passed in (`now=`) wherever the scheduler is called directly; nothing sleeps for
time to pass.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.fake_postmark import FakePostmark
from broadcasts import pipeline
from broadcasts.models import Broadcast, Delivery
from convertkit.celery import app as celery_app
from convertkit.redis import redis_client
from sequences import engine
from sequences.engine import sequences_advance, sequences_due, subscriptions_advance
from sequences.models import Sequence, Subscription
from sequences.services import (
    EmailValues,
    SequenceInvalid,
    SubscribeRefused,
    email_delete,
    email_unpublish,
    email_update,
    sequence_pause,
    sequence_resume,
    sequence_update,
    subscriber_enrol,
    subscribers_enrol,
)
from subscribers.models import CustomField, Subscriber, Tagging
from subscribers.segments.services import segment_create, segment_delete
from subscribers.services import subscriber_delete, subscriber_suppress, tag_delete
from tests.broadcasts.conftest import CountingHandler, wait_until
from tests.broadcasts.test_crash_safety import sink_start, worker_start, worker_stop
from tests.broadcasts.test_transport import use_postmark
from tests.factories import AccountFactory, CustomFieldFactory, SubscriberFactory, TagFactory
from tests.sequences.conftest import advance_and_send, send_queued

S = Delivery.State
SubState = Subscription.State
# A Monday, 10:00 UTC (after the default send hour of 9).
MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def readers_create(account, count: int, *, prefix: str = "reader") -> None:
    """`count` active subscribers, in one statement: prefix0@example.org, prefix1@..."""
    Subscriber.objects.bulk_create(
        Subscriber(
            account=account,
            email=f"{prefix}{n}@example.org",
            first_name=f"R{n}",
            state=Subscriber.State.ACTIVE,
            source="manual",
        )
        for n in range(count)
    )


def enrol_all(sequence: Sequence, *, now: datetime) -> int:
    """Every subscriber of the sequence's account, as a bulk action adds them."""
    result = subscribers_enrol(
        sequence=sequence,
        source_sql="SELECT id FROM subscribers_subscriber WHERE account_id = %(enrol_account)s",
        source_params={"enrol_account": sequence.account_id},
        now=now,
    )
    return result.added


def received(subscriber) -> list[str]:
    """The subjects of the sequence emails sent to `subscriber`, in the order sent."""
    return list(
        Delivery.objects.filter(subscriber=subscriber, state=S.SENT)
        .order_by("id")
        .values_list("broadcast__subject", flat=True)
    )


def deliveries_per_recipient(sequence: Sequence) -> Counter:
    """How many Delivery rows each (email subject, subscriber address, round) has."""
    return Counter(
        Delivery.objects.filter(broadcast__sequence_email__sequence=sequence).values_list(
            "broadcast__subject", "subscriber__email", "round"
        )
    )


def messages(sequence: Sequence) -> dict[str, Broadcast]:
    return {email.message.subject: email.message for email in sequence.emails.all()}


def beat_tick(entry: str) -> None:
    """What celery beat does for an entry of its schedule: the registered task's apply_async
    (so the task's own queue), with no arguments."""
    import sequences.tasks  # noqa: F401 - registers the task, as the worker's autodiscovery does

    name = settings.CELERY_BEAT_SCHEDULE[entry]["task"]
    celery_app.tasks[name].apply_async()


# 2. Exactly once, concurrently ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_at_once_give_every_subscriber_each_email_exactly_once(
    make_sequence, settings
):
    """Two schedulers, each in its own thread with its own database connection, over 2,000
    due subscriptions in batches of 100: each batch goes to one of them (SKIP LOCKED), every
    subscriber gets one Delivery per email, and the ESP receives one copy of each."""
    settings.SEQUENCE_CLAIM_BATCH = 100
    sequence = make_sequence(
        emails=[("One", 0, "days"), ("Two", 0, "hours"), ("Three", 0, "hours")]
    )
    readers_create(sequence.account, 2000)
    assert enrol_all(sequence, now=MONDAY) == 2000

    start = threading.Barrier(2)
    reports, errors = [], []

    def scheduler() -> None:
        try:
            start.wait(10)
            reports.append(sequences_advance(now=MONDAY, budget=120))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    # Both worked, on disjoint batches: every email decided once (a second decision would have
    # been counted as sent and then dropped by ON CONFLICT).
    assert all(report.claimed > 0 for report in reports), reports
    assert sum(report.sent for report in reports) == 6000
    assert sequences_due(now=MONDAY) == []

    per_recipient = deliveries_per_recipient(sequence)
    assert len(per_recipient) == 6000 and set(per_recipient.values()) == {1}
    states = Counter(
        Subscription.objects.filter(sequence=sequence).values_list("state", "sent_count")
    )
    assert states == {(SubState.COMPLETED, 3): 2000}
    assert {m.recipient_count for m in messages(sequence).values()} == {2000}

    with FakePostmark(keep=True) as fake:
        use_postmark(settings, fake.url)
        send_queued(*messages(sequence).values())
    copies = Counter(
        (message["To"], message["Subject"]) for request in fake.received for message in request
    )
    assert len(copies) == 6000 and set(copies.values()) == {1}
    assert fake.counter.recipients == {f"reader{n}@example.org": 3 for n in range(2000)}
    assert set(Delivery.objects.values_list("state", flat=True)) == {S.SENT}


@pytest.mark.django_db(transaction=True)
def test_the_beat_task_on_a_real_worker_sends_each_email_once(
    make_sequence, smtp_sink, celery_worker
):
    """sequences.advance as celery beat queues it, run by a real worker on the real clock: the
    scheduler's send tasks run on the same worker; a second tick sends nothing again."""
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 0, "hours")])
    readers_create(sequence.account, 40)
    enrol_all(sequence, now=timezone.now())

    beat_tick("advance-sequences")
    wait_until(lambda: Delivery.objects.filter(state=S.SENT).count() == 80, 30)

    # The next tick, with one newcomer to show that it ran: only the newcomer gets anything.
    late = SubscriberFactory(account=sequence.account, email="late@example.org")
    subscriber_enrol(sequence=sequence, subscriber=late, now=timezone.now())
    beat_tick("advance-sequences")
    wait_until(lambda: len(received(late)) == 2, 30)

    assert smtp_sink.copies == {
        **{f"reader{n}@example.org": 2 for n in range(40)},
        "late@example.org": 2,
    }
    assert set(deliveries_per_recipient(sequence).values()) == {1}
    assert Subscription.objects.exclude(state=SubState.COMPLETED).count() == 0


def backends_waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        # Inside a transaction the activity view is read once unless its snapshot is cleared.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "edit", ["email_update", "email_unpublish", "email_delete", "no send days"]
)
def test_an_edit_while_the_scheduler_hands_the_email_out_waits_for_it_and_neither_fails(
    edit, make_sequence, monkeypatch
):
    """The creator saves an edit of a live sequence while a scheduler is inside its batch,
    handing that very email out: the edit waits for the batch (never a deadlock, which
    PostgreSQL would break by failing one of them) and both go through."""
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    readers_create(sequence.account, 50)
    enrol_all(sequence, now=MONDAY)
    one = sequence.emails.get(message__subject="One")
    claimed, edited = threading.Event(), threading.Event()
    errors: list[Exception] = []
    load = engine._Plan.load

    def load_then_let_the_edit_in(cls, sequence):
        plan = load(sequence)
        claimed.set()
        # The batch holds its rows until the edit is waiting on a lock (or is done).
        wait_until(lambda: backends_waiting_on_a_lock() or edited.is_set(), 10)
        return plan

    monkeypatch.setattr(engine._Plan, "load", classmethod(load_then_let_the_edit_in))

    def editor() -> None:
        try:
            claimed.wait(10)
            if edit == "email_update":
                email_update(
                    email=one,
                    values=EmailValues(
                        subject="One, edited",
                        preview_text="",
                        body="Hello again.",
                        body_format="markdown",
                        delay_amount=0,
                        delay_unit="days",
                    ),
                )
            elif edit == "email_unpublish":
                email_unpublish(email=one)
            elif edit == "email_delete":
                email_delete(email=one)
            else:
                sequence_update(**settings_of(sequence, send_days=[]))
        except Exception as error:
            errors.append(error)
        finally:
            edited.set()
            connection.close()

    thread = threading.Thread(target=editor)
    thread.start()
    try:
        report = sequences_advance(now=MONDAY)
    finally:
        thread.join(30)
    assert errors == []
    assert report.sent == 50
    message = Broadcast.objects.get(pk=one.message_id)
    states = set(message.delivery_set.values_list("state", flat=True))
    if edit == "email_update":
        assert (message.subject, message.state, states) == ("One, edited", "sending", {S.QUEUED})
    elif edit == "no send days":
        assert (message.state, states) == ("paused", {S.QUEUED})
        assert Sequence.objects.get(pk=sequence.pk).send_days == []
    else:  # the edit went in after the batch: what it handed out of One is cancelled
        assert (message.state, states, message.cancelled_count) == ("cancelled", {S.CANCELLED}, 50)


# 3. A worker killed with kill -9 mid-batch ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_leaves_one_copy_each_except_unknowns(make_sequence, settings):
    """A real `celery worker` process runs the scheduler's task and the send batches to a slow
    SMTP server and is killed with SIGKILL mid-batch. After the sweeper and a new worker:
    nobody has two copies, nobody is missing but the deliveries marked unknown, and the
    scheduler never makes a second Delivery for anyone."""
    handler = CountingHandler(delay=0.02)
    sink = sink_start(handler, settings)
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    one, two = messages(sequence)["One"], messages(sequence)["Two"]
    readers_create(sequence.account, 300)
    enrolled_at = timezone.now()
    enrol_all(sequence, now=enrolled_at)
    worker = worker_start(smtp_port=handler.port, concurrency=2, batch_size=20)
    try:
        beat_tick("advance-sequences")
        wait_until(lambda: sum(handler.copies.values()) >= 60, 60)
        os.killpg(worker.pid, signal.SIGKILL)  # mid-call, mid-batch
        worker.wait(10)
        killed_at = sum(handler.copies.values())

        # A restarted deployment: the sweeper once its timeouts have passed (its clock moved on
        # instead of waiting), then a new worker.
        pipeline.sweep(now=timezone.now() + timedelta(minutes=15))
        worker = worker_start(smtp_port=handler.port, concurrency=2, batch_size=20)
        wait_until(lambda: not Delivery.objects.filter(state__in=Delivery.OPEN_STATES).exists(), 60)
    finally:
        worker_stop(worker)
        sink.stop()

    assert 60 <= killed_at < 300
    states = dict(one.delivery_set.values_list("subscriber__email", "state"))
    assert len(states) == 300
    assert max(handler.copies.values()) == 1, "somebody got a second copy"
    sent = {email for email, state in states.items() if state == S.SENT}
    unknown = {email for email, state in states.items() if state == S.UNKNOWN}
    assert sent | unknown == set(states)
    assert sent <= set(handler.copies) <= sent | unknown
    # Only what was on its way at the kill: two worker processes, one message each.
    assert len(unknown) <= 2
    one.refresh_from_db()
    assert (one.sent_count, one.unknown_count, one.recipient_count) == (
        len(sent),
        len(unknown),
        300,
    )

    # The scheduler afterwards, again and again: nothing for One, Two once each when due.
    assert sequences_advance(now=timezone.now()).sent == 0
    assert sequences_advance(now=enrolled_at + 2 * DAY).sent == 300
    assert sequences_advance(now=enrolled_at + 2 * DAY).claimed == 0
    assert one.delivery_set.count() == 300 and two.delivery_set.count() == 300
    assert set(deliveries_per_recipient(sequence).values()) == {1}


# 4. A Redis flush between the scheduler's commit and its send tasks --------------------------


@pytest.mark.django_db(transaction=True)
def test_a_redis_flush_after_the_scheduler_committed_loses_nobodys_email(
    make_sequence, smtp_sink, celery_worker_start, settings
):
    settings.BROADCAST_BATCH_SIZE = 10
    sequence = make_sequence(emails=[("One", 0, "days")])
    one = messages(sequence)["One"]
    readers_create(sequence.account, 60)
    enrol_all(sequence, now=timezone.now())
    report = sequences_advance(now=timezone.now())
    assert (report.sent, report.batches) == (60, 6)
    assert redis_client().llen("send") == 6
    redis_client().flushdb()  # the send tasks are gone; the deliveries are committed

    with celery_worker_start(concurrency=2):
        assert pipeline.sweep(now=timezone.now()).republished == [one.pk]  # Redis lost its data
        wait_until(lambda: one.delivery_set.filter(state=S.SENT).count() == 60)
        # A later stall check finds nothing left to publish.
        stalled = timezone.now() + timedelta(seconds=settings.BROADCAST_STALL_TIMEOUT + 1)
        assert pipeline.sweep(now=stalled).republished == []

    assert smtp_sink.copies == {f"reader{n}@example.org": 1 for n in range(60)}
    assert sequences_advance(now=timezone.now()).claimed == 0
    assert one.delivery_set.count() == 60


@pytest.mark.django_db(transaction=True)
def test_send_tasks_lost_without_a_flush_are_republished_after_the_stall_timeout(
    make_sequence, smtp_sink, celery_worker_start, settings, monkeypatch
):
    """The scheduler commits, then its process dies before it publishes (Redis keeps its data):
    the sweeper leaves a message alone until it made no progress for BROADCAST_STALL_TIMEOUT,
    then publishes its queued deliveries; each is sent once."""
    sequence = make_sequence(emails=[("One", 0, "days")])
    one = messages(sequence)["One"]
    readers_create(sequence.account, 30)
    enrol_all(sequence, now=timezone.now())
    pipeline.sweep()  # the sweeper has been running: Redis holds its marker

    def die(created):
        raise SystemExit("the scheduler's process died after its commit")

    monkeypatch.setattr(engine, "deliveries_publish", die)
    with pytest.raises(SystemExit):
        sequences_advance(now=timezone.now())
    monkeypatch.undo()
    assert one.delivery_set.filter(state=S.QUEUED).count() == 30
    assert redis_client().llen("send") == 0

    with celery_worker_start(concurrency=2):
        assert pipeline.sweep(now=timezone.now()).republished == []
        stalled = timezone.now() + timedelta(seconds=settings.BROADCAST_STALL_TIMEOUT + 1)
        assert pipeline.sweep(now=stalled).republished == [one.pk]
        wait_until(lambda: one.delivery_set.filter(state=S.SENT).count() == 30)

    assert smtp_sink.copies == {f"reader{n}@example.org": 1 for n in range(30)}
    assert sequences_advance(now=timezone.now()).sent == 0


# 5. Repeat on and off ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("repeat", [True, False])
def test_re_adding_a_subscriber_who_completed_restarts_them_only_with_repeat(
    repeat, make_sequence, smtp_sink
):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")], repeat=repeat)
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    advance_and_send(sequence, MONDAY + DAY)
    assert received(reader) == ["One", "Two"]
    assert Subscription.objects.get(subscriber=reader).state == SubState.COMPLETED

    later = MONDAY + 10 * DAY
    result = subscriber_enrol(sequence=sequence, subscriber=reader, now=later)
    advance_and_send(sequence, later)
    advance_and_send(sequence, later + DAY)
    advance_and_send(sequence, later + 2 * DAY)

    subscription = Subscription.objects.get(subscriber=reader)
    if repeat:
        assert result.restarted == 1
        assert received(reader) == ["One", "Two", "One", "Two"]
        assert (subscription.round, subscription.state) == (1, SubState.COMPLETED)
        assert deliveries_per_recipient(sequence) == {
            (subject, "reader@example.org", round_): 1
            for subject in ("One", "Two")
            for round_ in (0, 1)
        }
        assert smtp_sink.copies["reader@example.org"] == 4
    else:
        assert (result.added, result.restarted) == (0, 0)
        assert received(reader) == ["One", "Two"]
        assert (subscription.round, subscription.state) == (0, SubState.COMPLETED)
        assert smtp_sink.copies["reader@example.org"] == 2


@pytest.mark.django_db
def test_re_adding_a_subscriber_still_in_the_sequence_never_moves_them(make_sequence, smtp_sink):
    sequence = make_sequence(
        emails=[("One", 0, "days"), ("Two", 2, "days"), ("Three", 1, "days")], repeat=True
    )
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    before = Subscription.objects.filter(subscriber=reader).values().get()

    result = subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY + DAY)

    assert (result.added, result.restarted, result.refused) == (0, 0, 1)
    assert Subscription.objects.filter(subscriber=reader).values().get() == before
    advance_and_send(sequence, MONDAY + DAY + timedelta(hours=1))  # the re-add's time: nothing
    assert received(reader) == ["One"]
    advance_and_send(sequence, MONDAY + 2 * DAY - timedelta(hours=1))  # Wednesday 09:00
    assert received(reader) == ["One", "Two"]


# 6. Exclusions ------------------------------------------------------------------------------------


def settings_of(sequence: Sequence, **changes):
    """sequence_update's arguments: the sequence's settings with `changes`."""
    values = {
        "sequence": sequence,
        "name": sequence.name,
        "send_days": sequence.send_days,
        "send_hour": sequence.send_hour,
        "time_zone": sequence.time_zone,
        "subscriber_time_zone": sequence.subscriber_time_zone,
        "repeat": sequence.repeat,
        "exclude_tag_ids": sequence.exclude_tag_ids,
        "exclude_segment_ids": sequence.exclude_segment_ids,
        "exclude_sequence_ids": sequence.exclude_sequence_ids,
    }
    return {**values, **changes}


FOUR_EMAILS = [("One", 0, "days"), ("Two", 1, "days"), ("Three", 1, "days"), ("Four", 1, "days")]


@pytest.mark.django_db
def test_an_excluded_subscriber_skips_what_falls_due_and_gets_the_next_email_at_its_time(
    make_sequence, smtp_sink
):
    """Kit: excluded subscribers receive nothing while excluded and move past the emails that
    fall due meanwhile; once no longer excluded they get the next email when it is due."""
    sequence = make_sequence(emails=FOUR_EMAILS)
    vip = TagFactory(account=sequence.account, name="vip")
    sequence_update(**settings_of(sequence, exclude_tag_ids=[vip.pk]))
    excluded = SubscriberFactory(account=sequence.account, email="excluded@example.org")
    Tagging.objects.create(account=sequence.account, tag=vip, subscriber=excluded)
    other = SubscriberFactory(account=sequence.account, email="other@example.org")
    for reader in (excluded, other):
        subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)

    advance_and_send(sequence, MONDAY)
    advance_and_send(sequence, MONDAY + DAY)  # Tuesday 10:00, Two was due at 09:00
    assert received(excluded) == [] and received(other) == ["One", "Two"]
    waiting = Subscription.objects.get(subscriber=excluded)
    assert waiting.state == SubState.ACTIVE
    assert waiting.next_due_at == datetime(2026, 3, 4, 9, tzinfo=UTC)  # Three, on time

    Tagging.objects.filter(subscriber=excluded).delete()  # the exclusion ends
    advance_and_send(sequence, MONDAY + 2 * DAY - timedelta(hours=1, minutes=1))
    assert received(excluded) == []
    advance_and_send(sequence, MONDAY + 2 * DAY - timedelta(hours=1))  # Wednesday 09:00
    assert received(excluded) == ["Three"]
    advance_and_send(sequence, MONDAY + 10 * DAY)
    assert received(excluded) == ["Three", "Four"]
    assert received(other) == ["One", "Two", "Three", "Four"]
    assert smtp_sink.copies == {"excluded@example.org": 2, "other@example.org": 4}


@pytest.mark.django_db
def test_a_subscriber_excluded_until_the_end_completes_without_any_email(make_sequence, smtp_sink):
    sequence = make_sequence(emails=FOUR_EMAILS)
    vip = TagFactory(account=sequence.account, name="vip")
    sequence_update(**settings_of(sequence, exclude_tag_ids=[vip.pk]))
    excluded = SubscriberFactory(account=sequence.account, email="excluded@example.org")
    Tagging.objects.create(account=sequence.account, tag=vip, subscriber=excluded)
    subscriber_enrol(sequence=sequence, subscriber=excluded, now=MONDAY)
    for day in range(5):
        advance_and_send(sequence, MONDAY + day * DAY)
    assert received(excluded) == []
    assert Subscription.objects.get(subscriber=excluded).state == SubState.COMPLETED


@pytest.mark.django_db
def test_subscribers_active_in_an_excluded_sequence_wait_it_out_then_go_on(
    make_sequence, smtp_sink
):
    sequence = make_sequence(emails=FOUR_EMAILS)
    onboarding = make_sequence(
        account=sequence.account, emails=[("Welcome", 0, "days"), ("Tips", 1, "days")]
    )
    sequence_update(**settings_of(sequence, exclude_sequence_ids=[onboarding.pk, sequence.pk]))
    sequence.refresh_from_db()
    assert sequence.exclude_sequence_ids == [onboarding.pk]  # never itself
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=onboarding, subscriber=reader, now=MONDAY)
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)

    def both_advance(now: datetime) -> None:
        sequences_advance(now=now)
        send_queued(*messages(sequence).values(), *messages(onboarding).values())

    both_advance(MONDAY)  # Welcome sent; One skipped while the onboarding runs
    assert received(reader) == ["Welcome"]
    both_advance(MONDAY + DAY)  # Two skipped (the course is looked at first); Tips ends it
    assert received(reader) == ["Welcome", "Tips"]
    assert Subscription.objects.get(sequence=onboarding).state == SubState.COMPLETED
    both_advance(MONDAY + 2 * DAY - timedelta(hours=1))  # Wednesday 09:00: Three, on time
    assert received(reader) == ["Welcome", "Tips", "Three"]
    both_advance(MONDAY + 5 * DAY)
    assert received(reader) == ["Welcome", "Tips", "Three", "Four"]


@pytest.mark.django_db
def test_an_hour_delay_after_a_skipped_email_counts_real_hours_across_a_clock_change(
    make_sequence, smtp_sink
):
    """An excluded subscriber passes "Two" at its local due time (midnight in New York before
    the spring change); "Three", three hours later, is three real hours later (04:00 EDT)."""
    sequence = make_sequence(
        emails=[("One", 0, "days"), ("Two", 1, "days"), ("Three", 3, "hours")],
        time_zone="America/New_York",
        send_hour=0,
    )
    vip = TagFactory(account=sequence.account, name="vip")
    sequence_update(**settings_of(sequence, exclude_tag_ids=[vip.pk]))
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    Tagging.objects.create(account=sequence.account, tag=vip, subscriber=reader)
    saturday = datetime(2026, 3, 7, 15, tzinfo=UTC)  # 10:00 EST
    subscriber_enrol(sequence=sequence, subscriber=reader, now=saturday)
    advance_and_send(sequence, saturday)  # One skipped
    advance_and_send(sequence, datetime(2026, 3, 8, 6, tzinfo=UTC))  # Two skipped (due 05:00)
    assert Subscription.objects.get(subscriber=reader).next_due_at == datetime(
        2026, 3, 8, 8, tzinfo=UTC
    )


@pytest.mark.django_db
def test_a_deleted_tag_excludes_nobody(make_sequence, smtp_sink):
    sequence = make_sequence(emails=[("One", 0, "days")])
    vip = TagFactory(account=sequence.account, name="vip")
    sequence_update(**settings_of(sequence, exclude_tag_ids=[vip.pk]))
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    Tagging.objects.create(account=sequence.account, tag=vip, subscriber=reader)
    tag_delete(tag=vip)
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    assert received(reader) == ["One"]


def plan_segment(account, *, name: str = "Pro plan"):
    """A segment of the subscribers whose custom field "plan" is "pro"."""
    if not CustomField.objects.filter(account=account, key="plan").exists():
        CustomFieldFactory(account=account, key="plan", label="Plan")
    return segment_create(
        account=account,
        name=name,
        field_conditions=[{"key": "plan", "op": "equals", "value": "pro"}],
    )


@pytest.mark.django_db
def test_subscribers_in_an_excluded_segment_skip_what_falls_due_until_they_leave_it(
    make_sequence, smtp_sink
):
    sequence = make_sequence(emails=FOUR_EMAILS)
    pro = plan_segment(sequence.account)
    sequence_update(**settings_of(sequence, exclude_segment_ids=[pro.pk]))
    excluded = SubscriberFactory(
        account=sequence.account, email="excluded@example.org", fields={"plan": "pro"}
    )
    other = SubscriberFactory(
        account=sequence.account, email="other@example.org", fields={"plan": "free"}
    )
    for reader in (excluded, other):
        subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)

    advance_and_send(sequence, MONDAY)
    advance_and_send(sequence, MONDAY + DAY)
    assert received(excluded) == [] and received(other) == ["One", "Two"]

    Subscriber.objects.filter(pk=excluded.pk).update(fields={"plan": "free"})  # leaves it
    advance_and_send(sequence, MONDAY + 2 * DAY - timedelta(hours=1, minutes=1))
    assert received(excluded) == []
    advance_and_send(sequence, MONDAY + 2 * DAY - timedelta(hours=1))  # Wednesday 09:00
    assert received(excluded) == ["Three"]
    advance_and_send(sequence, MONDAY + 10 * DAY)
    assert smtp_sink.copies == {"excluded@example.org": 2, "other@example.org": 4}


@pytest.mark.django_db
def test_a_deleted_segment_excludes_nobody(make_sequence, smtp_sink):
    sequence = make_sequence(emails=[("One", 0, "days")])
    pro = plan_segment(sequence.account)
    sequence_update(**settings_of(sequence, exclude_segment_ids=[pro.pk]))
    reader = SubscriberFactory(account=sequence.account, fields={"plan": "pro"})
    segment_delete(segment=pro)
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    assert received(reader) == ["One"]


@pytest.mark.django_db
def test_an_exclusion_naming_another_accounts_segment_excludes_nobody(make_sequence, smtp_sink):
    """Stored by hand (sequence_update refuses it, below): another account's segment whose
    conditions the subscriber meets holds nobody of this account back."""
    sequence = make_sequence(emails=[("One", 0, "days")])
    foreign = plan_segment(AccountFactory(name="Charlie's Garage"))
    Sequence.objects.filter(pk=sequence.pk).update(exclude_segment_ids=[foreign.pk])
    sequence.refresh_from_db()
    CustomFieldFactory(account=sequence.account, key="plan", label="Plan")
    reader = SubscriberFactory(account=sequence.account, fields={"plan": "pro"})
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    assert received(reader) == ["One"]


@pytest.mark.django_db
def test_an_exclusion_naming_another_accounts_tag_excludes_nobody(make_sequence, smtp_sink):
    """Stored by hand (sequence_update refuses it, below): even a tagging that joins a
    subscriber to another account's tag does not hold them back."""
    sequence = make_sequence(emails=[("One", 0, "days")])
    foreign = TagFactory(account=AccountFactory(name="Charlie's Garage"), name="vip")
    Sequence.objects.filter(pk=sequence.pk).update(exclude_tag_ids=[foreign.pk])
    sequence.refresh_from_db()
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    Tagging.objects.create(account=foreign.account, tag=foreign, subscriber=reader)
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    assert received(reader) == ["One"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exclude_tag_ids": ["foreign tag"]}, "tags of this account only"),
        ({"exclude_tag_ids": [10**12]}, "tags of this account only"),
        ({"exclude_tag_ids": ["not an id"]}, "tags of this account only"),
        ({"exclude_sequence_ids": ["foreign sequence"]}, "sequences of this account only"),
        ({"exclude_segment_ids": ["foreign segment"]}, "segments of this account only"),
        ({"exclude_segment_ids": [10**12]}, "segments of this account only"),
        ({"send_hour": 24}, "between 0 and 23"),
        ({"send_hour": -1}, "between 0 and 23"),
        ({"send_days": [0, 7]}, "Monday to Sunday"),
        ({"time_zone": "../../etc/passwd"}, "not a time zone name"),
        ({"time_zone": "Mars/Olympus_Mons"}, "not a time zone name"),
        ({"name": "   "}, "Give the sequence a name"),
    ],
)
def test_sequence_update_refuses_bad_settings_and_changes_nothing(make_sequence, changes, message):
    sequence = make_sequence(emails=[("One", 0, "days")])
    mine = TagFactory(account=sequence.account, name="mine")
    charlie = AccountFactory(name="Charlie's Garage")
    foreign = {
        "foreign tag": TagFactory(account=charlie, name="vip").pk,
        "foreign sequence": make_sequence(account=charlie).pk,
        "foreign segment": plan_segment(charlie).pk,
    }
    changes = {
        key: [foreign.get(item, item) for item in value] if isinstance(value, list) else value
        for key, value in changes.items()
    }
    if "exclude_tag_ids" in changes:
        changes["exclude_tag_ids"] = [mine.pk, *changes["exclude_tag_ids"]]
    before = Sequence.objects.filter(pk=sequence.pk).values().get()

    with pytest.raises(SequenceInvalid, match=message):
        sequence_update(**settings_of(sequence, **{"name": "Renamed", **changes}))

    assert Sequence.objects.filter(pk=sequence.pk).values().get() == before


# 7. Pause, no send days, emails unpublished or deleted under queued deliveries ----------------


@pytest.mark.django_db
@pytest.mark.parametrize("hold", ["pause", "no send days"])
def test_a_held_sequence_keeps_everyone_in_place_and_resumes_where_they_were(
    hold, make_sequence, smtp_sink, django_capture_on_commit_callbacks
):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    readers_create(sequence.account, 3)
    enrol_all(sequence, now=MONDAY)
    sequences_advance(now=MONDAY)  # One queued for all three, not sent yet
    one = messages(sequence)["One"]
    assert one.delivery_set.filter(state=S.QUEUED).count() == 3

    if hold == "pause":
        assert sequence_pause(sequence=sequence)
    else:
        sequence_update(**settings_of(sequence, send_days=[]))
    in_place = Subscription.objects.order_by("id").values_list(
        "position_key", "next_due_at", "anchor_at"
    )
    held = list(in_place)
    for day in (1, 2, 5):
        advance_and_send(sequence, MONDAY + day * DAY)
    assert sum(smtp_sink.copies.values()) == 0
    assert one.delivery_set.filter(state=S.QUEUED).count() == 3
    assert Delivery.objects.count() == 3
    assert list(in_place.all()) == held

    with django_capture_on_commit_callbacks(execute=True):
        if hold == "pause":
            assert sequence_resume(sequence=sequence)
        else:
            sequence_update(**settings_of(sequence, send_days=list(range(7))))
    resumed_at = MONDAY + 6 * DAY
    advance_and_send(sequence, resumed_at)  # One sent; Two, long due, follows on the next pass
    advance_and_send(sequence, resumed_at)
    assert smtp_sink.copies == {f"reader{n}@example.org": 2 for n in range(3)}
    assert set(deliveries_per_recipient(sequence).values()) == {1}


@pytest.mark.django_db
def test_queued_deliveries_of_a_paused_sequence_are_not_sent_by_the_workers(
    make_sequence, smtp_sink
):
    sequence = make_sequence(emails=[("One", 0, "days")])
    readers_create(sequence.account, 3)
    enrol_all(sequence, now=MONDAY)
    sequences_advance(now=MONDAY)
    sequence_pause(sequence=sequence)
    one = messages(sequence)["One"]
    for first_id, last_id in pipeline.queued_ranges(broadcast_id=one.pk, size=100):
        assert pipeline.send_batch(broadcast_id=one.pk, first_id=first_id, last_id=last_id) is None
    assert sum(smtp_sink.copies.values()) == 0
    assert set(one.delivery_set.values_list("state", flat=True)) == {S.QUEUED}


@pytest.mark.django_db
@pytest.mark.parametrize("take_out", [email_unpublish, email_delete])
def test_an_email_taken_out_under_queued_deliveries_cancels_them_and_nobody_is_stranded(
    take_out, make_sequence, smtp_sink
):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days"), ("Three", 1, "days")])
    readers_create(sequence.account, 3)
    enrol_all(sequence, now=MONDAY)
    sequences_advance(now=MONDAY)  # One queued, not sent
    email = sequence.emails.get(message__subject="One")

    take_out(email=email)
    advance_and_send(sequence, MONDAY)

    one = messages(sequence)["One"]
    assert set(one.delivery_set.values_list("state", flat=True)) == {S.CANCELLED}
    assert one.cancelled_count == 3 and one.sent_count == 0
    advance_and_send(sequence, MONDAY + DAY)
    advance_and_send(sequence, MONDAY + 2 * DAY)
    assert smtp_sink.copies == {f"reader{n}@example.org": 2 for n in range(3)}
    assert set(Subscription.objects.values_list("state", flat=True)) == {SubState.COMPLETED}


@pytest.mark.django_db(transaction=True)
def test_an_email_unpublished_while_its_batch_is_being_sent_cancels_the_rest(
    make_sequence, smtp_sink
):
    """Unpublished mid-batch: the deliveries claimed but not yet sent are cancelled too, not
    left queued on a message that will never be sent."""
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    readers_create(sequence.account, 60)
    enrol_all(sequence, now=MONDAY)
    sequences_advance(now=MONDAY)
    email = sequence.emails.get(message__subject="One")

    def unpublish_mid_batch(recipient: str) -> None:
        if recipient == "reader5@example.org":
            email_unpublish(email=email)
            connection.close()  # this thread's own

    smtp_sink.on_data = unpublish_mid_batch
    send_queued(messages(sequence)["One"])
    # What the beat does meanwhile.
    pipeline.sweep(now=timezone.now())

    one = messages(sequence)["One"]
    states = Counter(one.delivery_set.values_list("state", flat=True))
    assert S.QUEUED not in states and S.CLAIMED not in states
    assert states[S.SENT] == sum(smtp_sink.copies.values()) < 60
    assert states[S.SENT] + states[S.CANCELLED] == 60
    assert one.cancelled_count == states[S.CANCELLED]
    # Everyone goes on to Two.
    advance_and_send(sequence, MONDAY + DAY)
    assert messages(sequence)["Two"].delivery_set.filter(state=S.SENT).count() == 60


# 8. Subscribers deleted or suppressed mid-sequence -------------------------------------------


@pytest.mark.django_db
def test_a_subscriber_deleted_mid_sequence_takes_their_subscription_with_them(
    make_sequence, smtp_sink
):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    gone = SubscriberFactory(account=sequence.account, email="gone@example.org")
    stays = SubscriberFactory(account=sequence.account, email="stays@example.org")
    for reader in (gone, stays):
        subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    sequences_advance(now=MONDAY + DAY)  # Two queued for both

    subscriber_delete(subscriber=gone)

    assert not Subscription.objects.filter(subscriber_id=gone.pk).exists()
    assert not Delivery.objects.filter(subscriber_id=gone.pk).exists()
    advance_and_send(sequence, MONDAY + 5 * DAY)
    assert smtp_sink.copies == {"gone@example.org": 1, "stays@example.org": 2}


@pytest.mark.django_db
def test_a_subscriber_row_gone_without_the_orm_is_taken_out_not_a_crash(make_sequence, smtp_sink):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days")])
    gone = SubscriberFactory(account=sequence.account, email="gone@example.org")
    subscriber_enrol(sequence=sequence, subscriber=gone, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM subscribers_subscriber WHERE id = %s", [gone.pk])
    report = sequences_advance(now=MONDAY + DAY)
    assert (report.claimed, report.sent) == (1, 0)
    subscription = Subscription.objects.get(subscriber_id=gone.pk)
    assert (subscription.state, subscription.next_due_at) == (SubState.REMOVED, None)


@pytest.mark.django_db
@pytest.mark.parametrize("state", [Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED])
def test_a_bounced_or_complained_subscriber_stops_at_once(state, make_sequence, smtp_sink):
    sequence = make_sequence(emails=[("One", 0, "days"), ("Two", 1, "days"), ("Three", 1, "days")])
    reader = SubscriberFactory(account=sequence.account, email="reader@example.org")
    subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY)
    advance_and_send(sequence, MONDAY)
    sequences_advance(now=MONDAY + DAY)  # Two queued

    subscriber_suppress(subscriber=reader, state=state, reason="test")
    advance_and_send(sequence, MONDAY + DAY)
    advance_and_send(sequence, MONDAY + 5 * DAY)

    assert received(reader) == ["One"]
    assert smtp_sink.copies == {"reader@example.org": 1}
    two = messages(sequence)["Two"]
    assert list(two.delivery_set.values_list("state", flat=True)) == [S.SKIPPED]
    subscription = Subscription.objects.get(subscriber=reader)
    assert (subscription.state, subscription.next_due_at) == (SubState.STOPPED, None)
    with pytest.raises(SubscribeRefused, match=state):
        subscriber_enrol(sequence=sequence, subscriber=reader, now=MONDAY + 6 * DAY)


# 9. The due query on its index -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_due_queries_use_the_due_index_not_a_scan(make_sequence):
    """Speed sanity, not a timing: with 60,000 subscriptions in three sequences (two thirds due),
    the claim of a batch and the probe for due sequences read the subscription_due index."""
    sequences = [make_sequence(emails=[("One", 0, "days")]) for _ in range(3)]
    with connection.cursor() as cursor:
        for sequence in sequences:
            cursor.execute(
                """
                INSERT INTO sequences_subscription (account_id, sequence_id, subscriber_id,
                    state, round, sent_count, anchor_at, next_due_at, subscribed_at)
                SELECT %(account)s, %(sequence)s, n, 0, 0, 0, %(now)s,
                       %(now)s + make_interval(mins => (n %% 3 - 1) * 60 * 24), %(now)s
                FROM generate_series(1, 20000) AS n
                """,
                {"account": sequence.account_id, "sequence": sequence.pk, "now": MONDAY},
            )
        cursor.execute("ANALYZE sequences_subscription")

    with CaptureQueriesContext(connection) as captured:
        assert [s.pk for s in sequences_due(now=MONDAY)] == [s.pk for s in sequences]
        report = subscriptions_advance(sequence=sequences[1], now=MONDAY, limit=500)
    assert report.claimed == 500
    due_probe = next(q["sql"] for q in captured if "EXISTS" in q["sql"])
    claim = next(q["sql"] for q in captured if "SKIP LOCKED" in q["sql"])
    for sql in (due_probe, claim):
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "subscription_due" in plan, plan
        assert "Seq Scan on sequences_subscription" not in plan, plan
