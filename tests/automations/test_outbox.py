"""Every change a rule or an automation may react to writes its events in its own transaction
(the outbox): exactly the events of what changed, none when nothing changed, none when the
change rolls back."""

from __future__ import annotations

import contextlib
import datetime as dt
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.db.models.signals import post_save
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from automations.models import Event, EventKind, Rule, Trigger
from convertkit.models import Account
from sequences.engine import sequences_advance
from sequences.entry import form_sequences_set, subscriber_ids_enrol
from sequences.models import Sequence, Subscription
from sequences.services import subscriptions_confirmed
from subscribers.csv import importer
from subscribers.models import CustomField, Signup, Subscriber, Tag
from subscribers.services import (
    subscriber_create,
    subscriber_tags_add,
    subscriber_unsubscribe,
    subscriber_update,
)
from subscribers.signup_forms.services import form_create
from subscribers.signup_forms.signup import signup_confirm, signup_submit
from subscribers.unsubscribe import LINK_REASON, unsubscribe_token
from tests.factories import SubscriberFactory, TagFactory, TaggingFactory
from tests.sequences.conftest import email_add
from tests.subscribers.csv.test_import import run_import
from tracking.models import EventKind as TrackedKind
from tracking.models import Machine
from tracking.services import esp_event_record, unsubscribe_record
from tracking.store import TrackedEvent, events_store

pytestmark = pytest.mark.django_db

FORM_JOINED, FIELD_CHANGED, TAG_ADDED = (
    EventKind.FORM_JOINED,
    EventKind.FIELD_CHANGED,
    EventKind.TAG_ADDED,
)
SEQUENCE_SUBSCRIBED, SEQUENCE_COMPLETED = (
    EventKind.SEQUENCE_SUBSCRIBED,
    EventKind.SEQUENCE_COMPLETED,
)
LINK_CLICKED, UNSUBSCRIBED = EventKind.LINK_CLICKED, EventKind.UNSUBSCRIBED
MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
WEBHOOK_ONLY_KINDS = (
    EventKind.CREATED,
    EventKind.ACTIVATED,
    EventKind.BOUNCED,
    EventKind.COMPLAINED,
)


def listen_to_everything(account) -> None:
    """A (disabled) rule of the account listening for every kind of event a rule can name,
    about any object: only then does every change write its event. (The kinds only outgoing
    webhooks listen for are tests/webhooks/test_events.py's.)"""
    rule = Rule.objects.create(account=account, name="Everything", enabled=False)
    Trigger.objects.bulk_create(
        Trigger(account=account, role="rule", kind=kind, rule=rule)
        for kind in EventKind.values
        if kind not in WEBHOOK_ONLY_KINDS
    )


@pytest.fixture(autouse=True)
def _listening(db):
    """Every account these tests make listens to everything (the paths are what is tested);
    test_a_change_nothing_listens_for_writes_no_event turns it off."""

    def created(sender, instance, created, **kwargs):
        if created:
            listen_to_everything(instance)

    for account in Account.objects.all():
        listen_to_everything(account)
    post_save.connect(created, sender=Account, dispatch_uid="test_outbox_listening")
    yield
    post_save.disconnect(sender=Account, dispatch_uid="test_outbox_listening")


def events() -> set[tuple[str, int | None, str, int]]:
    """The outbox as (kind, object_id, detail, subscriber_id) rows."""
    return set(Event.objects.values_list("kind", "object_id", "detail", "subscriber_id"))


def event_count() -> int:
    return Event.objects.count()


def clear_events() -> None:
    Event.objects.all().delete()


class _Rollback(Exception):
    pass


def rolled_back(change) -> tuple[int, int]:
    """(events seen inside the change's transaction, events left once it rolled back)."""
    inside = 0
    with contextlib.suppress(_Rollback), transaction.atomic():
        change()
        inside = event_count()
        raise _Rollback
    return inside, event_count()


# Forms ------------------------------------------------------------------------------------------


@pytest.fixture
def city(account_a):
    return CustomField.objects.create(account=account_a, key="city", label="City")


def _form(account, *, double_opt_in: bool):
    return form_create(
        account=account,
        name="Newsletter",
        fields=[{"key": "email"}, {"key": "first_name"}, {"key": "city"}],
        tag_names=["newsletter"],
        double_opt_in=double_opt_in,
    )


@pytest.fixture
def single_form(account_a, city):
    return _form(account_a, double_opt_in=False)


@pytest.fixture
def double_form(account_a, city):
    return _form(account_a, double_opt_in=True)


def _submit(form, email="reader@example.org", **data):
    return signup_submit(form=form, email=email, data=data, ip="203.0.113.7")


def test_a_single_opt_in_signup_records_its_fields_tags_and_form_joined(single_form):
    result = _submit(single_form, first_name="Rita", fields={"city": "Lyon"})

    reader = result.signup.subscriber
    newsletter = Tag.objects.get(name="newsletter")
    assert result.outcome == "subscribed"
    assert events() == {
        (FIELD_CHANGED, None, "city", reader.pk),
        (TAG_ADDED, newsletter.pk, "", reader.pk),
        (FORM_JOINED, single_form.pk, "", reader.pk),
    }
    assert set(Event.objects.values_list("account_id", flat=True)) == {single_form.account_id}


def test_an_unconfirmed_subscriber_subscribing_at_once_records_all_their_values(
    single_form, account_a, sequence
):
    reader = SubscriberFactory(
        account=account_a,
        email="reader@example.org",
        state=Subscriber.State.UNCONFIRMED,
        fields={"plan": "pro"},
    )
    subscriber_ids_enrol(sequence=sequence, subscriber_ids=[reader.pk])

    assert _submit(single_form, fields={"city": "Lyon"}).outcome == "subscribed"

    newsletter = Tag.objects.get(name="newsletter")
    assert events() == {
        (FIELD_CHANGED, None, "city", reader.pk),
        (FIELD_CHANGED, None, "plan", reader.pk),
        (TAG_ADDED, newsletter.pk, "", reader.pk),
        (SEQUENCE_SUBSCRIBED, sequence.pk, "", reader.pk),
        (FORM_JOINED, single_form.pk, "", reader.pk),
    }


def test_a_pending_double_opt_in_signup_records_nothing_until_it_is_confirmed(double_form):
    result = _submit(double_form, fields={"city": "Lyon"})
    assert result.outcome == "confirmation"
    assert event_count() == 0

    assert signup_confirm(signup=result.signup)

    reader = result.signup.subscriber
    newsletter = Tag.objects.get(name="newsletter")
    assert events() == {
        (FIELD_CHANGED, None, "city", reader.pk),
        (TAG_ADDED, newsletter.pk, "", reader.pk),
        (FORM_JOINED, double_form.pk, "", reader.pk),
    }


def test_a_second_confirmation_records_nothing_more(double_form):
    result = _submit(double_form, fields={"city": "Lyon"})
    signup_confirm(signup=result.signup)
    before = event_count()

    assert not signup_confirm(signup=result.signup)
    assert event_count() == before == 3


def test_an_active_subscriber_signing_up_again_records_form_joined_and_nothing_else(
    single_form, account_a
):
    reader = SubscriberFactory(
        account=account_a, email="reader@example.org", fields={"city": "Nice"}
    )
    TaggingFactory(tag=Tag.objects.get(name="newsletter"), subscriber=reader)

    result = _submit(single_form, fields={"city": "Lyon"})

    assert result.outcome == "tagged"
    assert events() == {(FORM_JOINED, single_form.pk, "", reader.pk)}


def test_a_confirmation_after_unsubscribing_records_only_the_fields_that_changed(
    double_form, account_a
):
    reader = SubscriberFactory(
        account=account_a,
        email="reader@example.org",
        state=Subscriber.State.UNSUBSCRIBED,
        fields={"city": "Lyon", "plan": "pro"},
    )
    TaggingFactory(tag=Tag.objects.get(name="newsletter"), subscriber=reader)
    same = _submit(double_form, fields={"city": "Lyon"})
    signup_confirm(signup=same.signup)
    assert events() == {(FORM_JOINED, double_form.pk, "", reader.pk)}

    clear_events()
    Subscriber.objects.filter(pk=reader.pk).update(state=Subscriber.State.UNSUBSCRIBED)
    moved = _submit(double_form, fields={"city": "Paris"})
    signup_confirm(signup=moved.signup)
    assert events() == {
        (FIELD_CHANGED, None, "city", reader.pk),
        (FORM_JOINED, double_form.pk, "", reader.pk),
    }


def test_a_signup_rolled_back_records_nothing(single_form, double_form):
    assert rolled_back(lambda: _submit(single_form, fields={"city": "Lyon"})) == (3, 0)
    pending = _submit(double_form, email="other@example.org", fields={"city": "Lyon"})
    assert rolled_back(lambda: signup_confirm(signup=pending.signup)) == (3, 0)
    assert Signup.objects.get(pk=pending.signup.pk).outcome == Signup.Outcome.PENDING


# Sequences --------------------------------------------------------------------------------------


@pytest.fixture
def sequence(account_a):
    return Sequence.objects.create(account=account_a, name="Course", time_zone="UTC", repeat=True)


def test_enrolling_records_sequence_subscribed_for_the_active_added_and_restarted_only(
    sequence, account_a
):
    new, again, done, inside, unconfirmed = (SubscriberFactory(account=account_a) for _ in range(5))
    gone = SubscriberFactory(account=account_a, state=Subscriber.State.UNSUBSCRIBED)
    subscriber_ids_enrol(sequence=sequence, subscriber_ids=[again.pk, done.pk, inside.pk])
    Subscription.objects.filter(subscriber=again).update(state=Subscription.State.REMOVED)
    Subscription.objects.filter(subscriber=done).update(state=Subscription.State.COMPLETED)
    Subscriber.objects.filter(pk=unconfirmed.pk).update(state=Subscriber.State.UNCONFIRMED)
    clear_events()

    result = subscriber_ids_enrol(
        sequence=sequence,
        subscriber_ids=[new.pk, again.pk, done.pk, inside.pk, unconfirmed.pk, gone.pk],
    )

    assert (result.added, result.restarted, result.refused) == (3, 1, 2)
    assert events() == {
        (SEQUENCE_SUBSCRIBED, sequence.pk, "", new.pk),
        (SEQUENCE_SUBSCRIBED, sequence.pk, "", again.pk),
        (SEQUENCE_SUBSCRIBED, sequence.pk, "", done.pk),
    }


def test_an_unconfirmed_subscriber_is_subscribed_to_the_sequence_when_they_confirm(
    sequence, account_a
):
    reader = SubscriberFactory(account=account_a, state=Subscriber.State.UNCONFIRMED)
    subscriber_ids_enrol(sequence=sequence, subscriber_ids=[reader.pk])
    assert event_count() == 0

    assert subscriptions_confirmed(subscriber_id=reader.pk) == 1
    assert subscriptions_confirmed(subscriber_id=reader.pk) == 0
    assert events() == {(SEQUENCE_SUBSCRIBED, sequence.pk, "", reader.pk)}


def test_a_form_that_adds_to_a_sequence_records_it_at_the_confirmation(double_form, sequence):
    form_sequences_set(form=double_form, sequence_ids=[sequence.pk])
    pending = _submit(double_form)
    assert event_count() == 0

    signup_confirm(signup=pending.signup)

    reader = pending.signup.subscriber
    assert (SEQUENCE_SUBSCRIBED, sequence.pk, "", reader.pk) in events()
    assert Event.objects.filter(kind=SEQUENCE_SUBSCRIBED).count() == 1


def test_an_enrolment_rolled_back_records_nothing(sequence, account_a):
    reader = SubscriberFactory(account=account_a)
    enrol = lambda: subscriber_ids_enrol(sequence=sequence, subscriber_ids=[reader.pk])  # noqa: E731
    assert rolled_back(enrol) == (1, 0)


def test_completing_a_sequence_records_sequence_completed_once(make_sequence):
    sequence = make_sequence(emails=[("One", 0, "days")])
    finisher = SubscriberFactory(account=sequence.account)
    waiting = SubscriberFactory(account=sequence.account, state=Subscriber.State.UNCONFIRMED)
    subscriber_ids_enrol(sequence=sequence, subscriber_ids=[finisher.pk, waiting.pk], now=MONDAY)
    clear_events()

    assert sequences_advance(now=MONDAY).completed == 1
    assert events() == {(SEQUENCE_COMPLETED, sequence.pk, "", finisher.pk)}
    sequences_advance(now=MONDAY + timedelta(days=30))
    assert event_count() == 1


def test_a_later_email_keeps_them_in_and_records_nothing(make_sequence):
    sequence = make_sequence(emails=[("One", 0, "days")])
    reader = SubscriberFactory(account=sequence.account)
    subscriber_ids_enrol(sequence=sequence, subscriber_ids=[reader.pk], now=MONDAY)
    email_add(sequence, subject="Two", delay=2)
    clear_events()

    sequences_advance(now=MONDAY)
    assert event_count() == 0
    sequences_advance(now=MONDAY + timedelta(days=3))
    assert events() == {(SEQUENCE_COMPLETED, sequence.pk, "", reader.pk)}


def test_a_scheduler_pass_rolled_back_records_nothing(make_sequence):
    sequence = make_sequence(emails=[("One", 0, "days")])
    subscriber_ids_enrol(
        sequence=sequence, subscriber_ids=[SubscriberFactory(account=sequence.account).pk]
    )
    clear_events()
    assert rolled_back(lambda: sequences_advance(now=timezone.now() + timedelta(days=1))) == (1, 0)


# Clicks -----------------------------------------------------------------------------------------


def test_a_persons_first_click_of_each_link_records_link_clicked_once(sent_broadcast):
    broadcast = sent_broadcast(recipients=4)
    d1, d2, d3, d4 = broadcast.delivery_set.order_by("id")
    soup, bread = broadcast.links.order_by("position")
    now = timezone.now()

    events_store(
        [
            TrackedEvent(TrackedKind.CLICK, now, d1.pk, soup.pk),
            TrackedEvent(TrackedKind.CLICK, now, d1.pk, soup.pk),
            TrackedEvent(TrackedKind.CLICK, now, d1.pk, bread.pk),
            TrackedEvent(TrackedKind.CLICK, now, d2.pk, soup.pk, machine=Machine.SCANNER_AGENT),
            TrackedEvent(TrackedKind.OPEN, now, d3.pk),
            TrackedEvent(TrackedKind.CLICK, now, d4.pk),  # a click of no known link
        ]
    )
    assert events() == {
        (LINK_CLICKED, soup.pk, "", d1.subscriber_id),
        (LINK_CLICKED, bread.pk, "", d1.subscriber_id),
    }
    assert set(Event.objects.values_list("account_id", flat=True)) == {broadcast.account_id}

    clear_events()
    events_store(
        [
            TrackedEvent(TrackedKind.CLICK, now, d1.pk, soup.pk),
            TrackedEvent(TrackedKind.CLICK, now, d2.pk, soup.pk),
        ]
    )
    # d1 clicked soup before; d2's scanner did, and now its person does.
    assert events() == {(LINK_CLICKED, soup.pk, "", d2.subscriber_id)}


def test_clicks_taken_for_a_scanners_record_nothing(sent_broadcast):
    just_sent = sent_broadcast(recipients=1, sent_ago=dt.timedelta(seconds=1))
    older = sent_broadcast(
        recipients=2, links=("https://a.example", "https://b.example", "https://c.example")
    )
    scanned, read = older.delivery_set.order_by("id")
    links = list(older.links.order_by("position"))
    now = timezone.now()

    events_store(
        [
            TrackedEvent(
                TrackedKind.CLICK, now, just_sent.delivery_set.get().pk, just_sent.links.first().pk
            ),
            *(TrackedEvent(TrackedKind.CLICK, now, scanned.pk, link.pk) for link in links),
            TrackedEvent(TrackedKind.CLICK, now, read.pk, links[0].pk),
        ]
    )
    assert events() == {(LINK_CLICKED, links[0].pk, "", read.subscriber_id)}


def test_a_drained_batch_stored_again_records_nothing_more(sent_broadcast):
    broadcast = sent_broadcast(recipients=1)
    delivery, soup = broadcast.delivery_set.get(), broadcast.links.order_by("position").first()
    batch = [TrackedEvent(TrackedKind.CLICK, timezone.now(), delivery.pk, soup.pk)]
    events_store(batch, batch_key="batch-1")
    assert events_store(batch, batch_key="batch-1").already_drained
    assert events() == {(LINK_CLICKED, soup.pk, "", delivery.subscriber_id)}


def test_a_store_rolled_back_records_no_click(sent_broadcast):
    broadcast = sent_broadcast(recipients=1)
    delivery, soup = broadcast.delivery_set.get(), broadcast.links.order_by("position").first()
    batch = [TrackedEvent(TrackedKind.CLICK, timezone.now(), delivery.pk, soup.pk)]
    assert rolled_back(lambda: events_store(batch)) == (1, 0)


# Imports ----------------------------------------------------------------------------------------


def test_an_import_records_each_new_tagging_and_each_field_value_it_changes(account_a, city):
    CustomField.objects.create(account=account_a, key="plan", label="Plan")
    vip = TagFactory(account=account_a, name="vip")
    chosen = TagFactory(account=account_a, name="imported")
    kept = SubscriberFactory(
        account=account_a, email="kept@example.org", fields={"city": "Lyon", "plan": "pro"}
    )
    moved = SubscriberFactory(
        account=account_a, email="moved@example.org", fields={"city": "Lyon", "plan": "pro"}
    )
    TaggingFactory(tag=vip, subscriber=kept)
    TaggingFactory(tag=chosen, subscriber=kept)
    waiting = SubscriberFactory(
        account=account_a, email="waiting@example.org", state=Subscriber.State.UNCONFIRMED
    )

    job = run_import(
        account_a,
        "email,city,plan,tags\n"
        "kept@example.org,Lyon,pro,vip\n"
        "moved@example.org,Paris,,vip\n"
        "new@example.org,Nice,free,\n"
        "waiting@example.org,Nice,,\n",
        tags=["imported"],
    )

    new = Subscriber.objects.get(email="new@example.org")
    assert (job.summary["created"], job.summary["updated"]) == (1, 2)
    assert events() == {
        (FIELD_CHANGED, None, "city", moved.pk),
        (FIELD_CHANGED, None, "city", new.pk),
        (FIELD_CHANGED, None, "plan", new.pk),
        (TAG_ADDED, vip.pk, "", moved.pk),
        (TAG_ADDED, chosen.pk, "", moved.pk),
        (TAG_ADDED, chosen.pk, "", new.pk),
        (TAG_ADDED, chosen.pk, "", waiting.pk),
    }


def test_an_import_of_new_tags_and_a_sequence_records_their_events(account_a, sequence):
    job = importer.import_job_create(
        account=account_a,
        created_by=None,
        file_name="list.csv",
        chunks=[b"email,tags\nann@example.org,Cooks\ngone@example.org,\n"],
    )
    importer.import_job_start(
        job=job,
        mapping=["email", "tags"],
        tag_names=[],
        encoding="utf-8",
        consent_by="tests",
        enqueue=False,
        sequence=sequence,
    )
    SubscriberFactory(
        account=account_a, email="gone@example.org", state=Subscriber.State.UNSUBSCRIBED
    )
    importer.import_job_run(job_id=job.pk)

    ann = Subscriber.objects.get(email="ann@example.org")
    cooks = Tag.objects.get(account=account_a, name="Cooks")
    assert events() == {
        (TAG_ADDED, cooks.pk, "", ann.pk),
        (SEQUENCE_SUBSCRIBED, sequence.pk, "", ann.pk),
    }


def test_an_import_that_changes_nothing_records_nothing(account_a, city):
    tag = TagFactory(account=account_a, name="vip")
    reader = SubscriberFactory(account=account_a, email="ann@example.org", fields={"city": "Lyon"})
    TaggingFactory(tag=tag, subscriber=reader)

    job = run_import(account_a, "email,city,tags\nann@example.org,Lyon,vip\n")

    assert job.summary["unchanged"] == 1
    assert event_count() == 0


def test_an_import_into_an_account_nothing_listens_to_records_no_tag_or_field_event(
    account_a, city
):
    Trigger.objects.filter(account=account_a).delete()
    run_import(account_a, "email,city,tags\nann@example.org,Lyon,vip\n")
    assert event_count() == 0


def test_an_import_rolled_back_records_nothing(account_a, city):
    def change():
        run_import(account_a, "email,city,tags\nann@example.org,Lyon,vip\n")

    assert rolled_back(change) == (2, 0)
    assert not Subscriber.objects.filter(email="ann@example.org").exists()


# Subscribers edited by the creator --------------------------------------------------------------


def test_adding_a_subscriber_records_each_field_value_and_tag(account_a, city):
    reader = subscriber_create(
        account=account_a,
        email="ann@example.org",
        fields={"city": "Lyon", "plan": ""},
        tag_names=["vip"],
    )
    vip = Tag.objects.get(account=account_a, name="vip")
    assert events() == {
        (FIELD_CHANGED, None, "city", reader.pk),
        (TAG_ADDED, vip.pk, "", reader.pk),
    }


def test_editing_a_subscriber_records_the_fields_that_changed_only(account_a, city):
    reader = SubscriberFactory(account=account_a, fields={"city": "Lyon", "plan": "pro"})
    subscriber_update(
        subscriber=reader,
        email=reader.email,
        first_name="Ann",
        fields={"city": "Lyon", "plan": "", "size": "L"},
    )
    assert events() == {
        (FIELD_CHANGED, None, "plan", reader.pk),
        (FIELD_CHANGED, None, "size", reader.pk),
    }


def test_adding_a_subscriber_rolled_back_records_nothing(account_a, city):
    def change():
        subscriber_create(account=account_a, email="ann@example.org", fields={"city": "Lyon"})

    assert rolled_back(change) == (1, 0)


# Unsubscribes -----------------------------------------------------------------------------------


def test_the_unsubscribe_link_and_one_click_post_record_unsubscribed_once(account_a):
    by_link, by_one_click = (SubscriberFactory(account=account_a) for _ in range(2))
    mail_client = Client(enforce_csrf_checks=True)

    for _ in range(2):
        path = reverse("unsubscribe", kwargs={"token": unsubscribe_token(subscriber=by_link)})
        assert mail_client.post(path, {}).status_code == 200
        path = reverse("unsubscribe", kwargs={"token": unsubscribe_token(subscriber=by_one_click)})
        response = mail_client.post(path, {"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200

    assert events() == {
        (UNSUBSCRIBED, None, "", by_link.pk),
        (UNSUBSCRIBED, None, "", by_one_click.pk),
    }


def test_an_esp_unsubscribe_records_unsubscribed_once(sent_broadcast):
    broadcast = sent_broadcast(recipients=1)
    delivery = broadcast.delivery_set.get()
    for event_id in ("evt-1", "evt-1", "evt-2"):
        esp_event_record(
            esp_name="postmark",
            event_id=event_id,
            message_id=delivery.esp_message_id,
            kind=TrackedKind.UNSUBSCRIBE,
            occurred_at=timezone.now(),
        )
    assert events() == {(UNSUBSCRIBED, None, "", delivery.subscriber_id)}


def test_an_unsubscribe_of_someone_already_gone_or_rolled_back_records_nothing(account_a):
    gone = SubscriberFactory(account=account_a, state=Subscriber.State.BOUNCED)
    assert not subscriber_unsubscribe(subscriber=gone, reason="test")
    assert event_count() == 0

    reader = SubscriberFactory(account=account_a)
    assert rolled_back(lambda: unsubscribe_record(subscriber=reader, reason=LINK_REASON)) == (1, 0)


# Nobody listening --------------------------------------------------------------------------------


def test_a_change_nothing_listens_for_writes_no_event(account_a):
    Trigger.objects.filter(account=account_a).delete()
    customer, other = TagFactory(account=account_a), TagFactory(account=account_a)
    reader = SubscriberFactory(account=account_a)

    subscriber_tags_add(subscriber=reader, tag_ids=[other.pk])
    assert event_count() == 0

    rule = Rule.objects.create(account=account_a, name="Customers")
    Trigger.objects.create(
        account=account_a, role="rule", kind=TAG_ADDED, object_id=customer.pk, rule=rule
    )
    subscriber_tags_add(subscriber=reader, tag_ids=[customer.pk])
    subscriber_unsubscribe(subscriber=reader, reason="test")
    # Listened for: the customer tag. Not: the unsubscribe.
    assert events() == {(TAG_ADDED, customer.pk, "", reader.pk)}
