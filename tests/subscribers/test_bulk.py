from __future__ import annotations

import pytest
from django.urls import reverse

from convertkit.models import Job
from subscribers import bulk
from subscribers.models import StateChange, Subscriber, Suppression, Tag, Tagging, email_hash
from tests.factories import (
    SubscriberFactory,
    TagFactory,
    TaggingFactory,
    tagged_and_bounced_mix,
)

BULK_URL = reverse("subscriber_bulk")


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Several batches even with a handful of rows, so the walk and the cursor are exercised."""
    monkeypatch.setattr(bulk, "BATCH_SIZE", 2)


@pytest.fixture
def vip(account_a):
    return TagFactory(account=account_a, name="vip")


def start_job(client, data, django_capture_on_commit_callbacks) -> Job:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(BULK_URL, {**data, "confirmed": "yes"})
    assert response.status_code == 302, response.content.decode()
    job = Job.objects.get()
    assert response["Location"] == reverse("job_detail", args=[job.id])
    assert len(callbacks) == 1  # run_bulk_action.delay_on_commit
    return job


def test_the_bulk_action_confirms_with_the_count_before_starting(alice_client, account_a, vip):
    for _ in range(3):
        SubscriberFactory(account=account_a, email=f"ann{_}@example.com")
    SubscriberFactory(account=account_a, email="bob@example.com")
    data = {"q": "ann", "state": "", "tag": "", "action": "tag", "target_tag": vip.id}
    response = alice_client.post(BULK_URL, data)
    body = response.content.decode()
    assert response.status_code == 200
    assert "Tag 3 subscribers with &#x27;vip&#x27;?" in body
    assert 'name="confirmed" value="yes"' in body
    assert not Job.objects.exists()


def test_confirming_creates_the_job_and_shows_its_progress_bar(
    alice_client, alice, account_a, vip, django_capture_on_commit_callbacks
):
    for _ in range(3):
        SubscriberFactory(account=account_a, state=Subscriber.State.ACTIVE)
    SubscriberFactory(account=account_a, state=Subscriber.State.BOUNCED)
    job = start_job(
        alice_client,
        {"q": "", "state": "active", "tag": "", "action": "tag", "target_tag": vip.id},
        django_capture_on_commit_callbacks,
    )
    assert job.kind == Job.Kind.BULK_TAG
    assert job.state == Job.State.QUEUED
    assert job.title == "Tag 3 subscribers with 'vip'"
    assert job.account == account_a and job.created_by == alice
    assert job.params["state"] == "active" and job.params["tag"] is None
    assert job.params["target_tag"] == vip.id
    body = alice_client.get(reverse("job_detail", args=[job.id])).content.decode()
    assert f'hx-get="{reverse("job_progress", args=[job.id])}"' in body
    assert 'role="progressbar"' in body
    assert not Tagging.objects.exists()  # the worker does the work


def test_a_capped_count_shows_in_the_title(alice_client, account_a, vip, monkeypatch):
    monkeypatch.setattr("subscribers.selectors.COUNT_CAP", 2)
    for _ in range(4):
        SubscriberFactory(account=account_a, email=f"ann{_}@example.com")
    body = alice_client.post(
        BULK_URL, {"q": "ann", "action": "tag", "target_tag": vip.id}
    ).content.decode()
    assert "Tag 2+ subscribers with &#x27;vip&#x27;?" in body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "tag", "target_tag": ""}, "Choose the tag to add or remove"),
        ({"action": "untag"}, "Choose the tag to add or remove"),
        ({"action": "tag", "target_tag": "999999"}, "Select a valid choice"),
        ({"action": "tag", "target_tag": "abc"}, "Select a valid choice"),
        ({"action": "explode"}, "Select a valid choice"),
        ({"action": "delete", "state": "gone"}, "This filter cannot be used"),
        ({"action": "delete", "tag": "999999"}, "This filter cannot be used"),
    ],
)
def test_bad_bulk_input_is_explained_and_starts_nothing(alice_client, account_a, data, message):
    SubscriberFactory(account=account_a)
    response = alice_client.post(BULK_URL, {**data, "confirmed": "yes"})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Job.objects.exists()


def test_a_tag_of_another_account_cannot_be_used_in_a_bulk_action(
    alice_client, account_a, account_b
):
    foreign = TagFactory(account=account_b, name="theirs")
    SubscriberFactory(account=account_a)
    for data in (
        {"action": "tag", "target_tag": foreign.id},
        {"action": "delete", "tag": foreign.id},
    ):
        response = alice_client.post(BULK_URL, {**data, "confirmed": "yes"})
        assert response.status_code == 400
    assert not Job.objects.exists()
    assert Subscriber.objects.filter(account=account_a).count() == 1
    assert not Tagging.objects.exists()


def make_job(account, user, action, *, tag=None, **filters) -> Job:
    from subscribers.selectors import SubscriberFilter, Total

    return bulk.bulk_job_create(
        account=account,
        user=user,
        action=action,
        filters=SubscriberFilter(**filters),
        tag=tag,
        total=Total(0),
    )


def test_bulk_tag_tags_the_filtered_set_in_batches_and_reports_progress(
    account_a, account_b, alice, vip
):
    targets = [SubscriberFactory(account=account_a, first_name="Ann") for _ in range(5)]
    TaggingFactory(tag=vip, subscriber=targets[0])
    SubscriberFactory(account=account_a, first_name="Bob")
    SubscriberFactory(account=account_b, first_name="Ann")
    job = make_job(account_a, alice, "tag", tag=vip, q="ann")

    bulk.bulk_job_run(job_id=job.id)

    job.refresh_from_db()
    assert job.state == Job.State.DONE
    assert (job.total, job.processed) == (5, 5)
    assert job.summary == {"affected": 4}
    assert job.message == "4 subscribers tagged"
    assert job.percent == 100
    assert set(Tagging.objects.values_list("subscriber_id", flat=True)) == {t.id for t in targets}
    vip.refresh_from_db()
    assert vip.subscriber_count == 5


def test_a_second_run_of_a_finished_job_changes_nothing(account_a, alice, vip):
    for _ in range(3):
        SubscriberFactory(account=account_a)
    job = make_job(account_a, alice, "unsubscribe")
    bulk.bulk_job_run(job_id=job.id)
    job.refresh_from_db()
    finished = (job.state, job.processed, job.summary, job.finished_at)
    SubscriberFactory(account=account_a)  # would be caught by a re-walk

    bulk.bulk_job_run(job_id=job.id)

    job.refresh_from_db()
    assert (job.state, job.processed, job.summary, job.finished_at) == finished
    assert StateChange.objects.count() == 3
    assert Subscriber.objects.filter(state=Subscriber.State.ACTIVE).count() == 1


def test_a_job_killed_between_batches_finishes_exactly_when_run_again(
    account_a, alice, vip, monkeypatch
):
    for _ in range(5):
        SubscriberFactory(account=account_a)
    job = make_job(account_a, alice, "tag", tag=vip)
    real_apply = bulk.APPLY[Job.Kind.BULK_TAG]
    calls = []

    def dies_on_second_batch(**kwargs):
        calls.append(kwargs["ids"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the worker process is killed mid-batch
        return real_apply(**kwargs)

    monkeypatch.setitem(bulk.APPLY, Job.Kind.BULK_TAG, dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        bulk.bulk_job_run(job_id=job.id)
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING
    assert job.processed == 2
    assert Tagging.objects.count() == 2

    monkeypatch.setitem(bulk.APPLY, Job.Kind.BULK_TAG, real_apply)
    bulk.bulk_job_run(job_id=job.id)

    job.refresh_from_db()
    assert job.state == Job.State.DONE
    assert (job.total, job.processed, job.summary) == (5, 5, {"affected": 5})
    assert Tagging.objects.count() == 5


def test_subscribers_added_after_the_job_started_are_left_alone(account_a, alice, monkeypatch):
    early = [SubscriberFactory(account=account_a) for _ in range(3)]
    job = make_job(account_a, alice, "delete")
    real_apply = bulk.APPLY[Job.Kind.BULK_DELETE]
    late = []

    def add_one_meanwhile(**kwargs):
        if not late:
            late.append(SubscriberFactory(account=account_a))
        return real_apply(**kwargs)

    monkeypatch.setitem(bulk.APPLY, Job.Kind.BULK_DELETE, add_one_meanwhile)
    bulk.bulk_job_run(job_id=job.id)

    assert list(Subscriber.objects.all()) == late
    assert not Subscriber.objects.filter(id__in=[s.id for s in early]).exists()


def test_bulk_untag_removes_only_that_tag(account_a, alice, vip):
    other = TagFactory(account=account_a, name="other")
    for _ in range(3):
        subscriber = TaggingFactory(tag=vip).subscriber
        TaggingFactory(tag=other, subscriber=subscriber)
    job = make_job(account_a, alice, "untag", tag=vip, tag_id=vip.id)
    bulk.bulk_job_run(job_id=job.id)
    job.refresh_from_db()
    assert job.summary == {"affected": 3}
    assert not Tagging.objects.filter(tag=vip).exists()
    assert Tagging.objects.filter(tag=other).count() == 3
    vip.refresh_from_db()
    assert vip.subscriber_count == 0


def test_bulk_unsubscribe_moves_only_subscribed_people_and_records_history(account_a, alice):
    active = SubscriberFactory(account=account_a, state=Subscriber.State.ACTIVE)
    unconfirmed = SubscriberFactory(account=account_a, state=Subscriber.State.UNCONFIRMED)
    bounced = SubscriberFactory(account=account_a, state=Subscriber.State.BOUNCED)
    job = make_job(account_a, alice, "unsubscribe")
    bulk.bulk_job_run(job_id=job.id)

    job.refresh_from_db()
    assert job.summary == {"affected": 2}
    for subscriber in (active, unconfirmed):
        subscriber.refresh_from_db()
        assert subscriber.state == Subscriber.State.UNSUBSCRIBED
        assert subscriber.unsubscribed_at is not None
    bounced.refresh_from_db()
    assert bounced.state == Subscriber.State.BOUNCED
    changes = {c.subscriber_id: c for c in StateChange.objects.all()}
    assert set(changes) == {active.id, unconfirmed.id}
    assert changes[unconfirmed.id].from_state == "unconfirmed"
    assert changes[active.id].reason == "unsubscribed in bulk by alice@example.com"


def test_bulk_delete_erases_the_set_and_keeps_what_suppression_needs(
    alice_client, account_a, account_b, alice, vip
):
    doomed = [TaggingFactory(tag=vip).subscriber for _ in range(3)]
    Subscriber.objects.filter(pk=doomed[2].pk).update(state=Subscriber.State.BOUNCED)
    StateChange.objects.create(account=account_a, subscriber=doomed[0], to_state="active")
    kept = SubscriberFactory(account=account_a)
    elsewhere = SubscriberFactory(account=account_b, email=doomed[0].email)
    job = make_job(account_a, alice, "delete", tag_id=vip.id)

    bulk.bulk_job_run(job_id=job.id)

    job.refresh_from_db()
    assert job.summary == {"affected": 3}
    assert job.message == "3 subscribers deleted"
    assert set(Subscriber.objects.values_list("id", flat=True)) == {kept.id, elsewhere.id}
    assert not Tagging.objects.exists() and not StateChange.objects.exists()
    # The hash computed in SQL is the one Python computes; a bounce stays known after erasure.
    assert set(Suppression.objects.values_list("account_id", "email_hash", "reason")) == {
        (account_a.id, email_hash(s.email), "bounced" if s is doomed[2] else "deleted")
        for s in doomed
    }

    response = alice_client.post(reverse("subscriber_create"), {"email": doomed[1].email})
    assert response.status_code == 400
    response = alice_client.post(
        reverse("subscriber_create"), {"email": doomed[1].email, "readd": "on"}
    )
    assert response.status_code == 302


def test_a_tag_deleted_before_the_job_runs_fails_it_with_a_reason(account_a, alice, vip):
    SubscriberFactory(account=account_a)
    job = make_job(account_a, alice, "tag", tag=vip)
    vip.delete()
    bulk.bulk_job_run(job_id=job.id)
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert job.message == "The tag 'vip' was deleted, so the job stopped."
    assert job.finished_at is not None
    assert not Tagging.objects.exists()


def test_an_unexpected_error_fails_the_job_with_a_message(account_a, alice, monkeypatch):
    SubscriberFactory(account=account_a)
    job = make_job(account_a, alice, "unsubscribe")

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setitem(bulk.APPLY, Job.Kind.BULK_UNSUBSCRIBE, broken)
    bulk.bulk_job_run(job_id=job.id)
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert "Start the action again" in job.message
    assert Subscriber.objects.get().state == Subscriber.State.ACTIVE


def test_only_bulk_jobs_are_run(account_a, alice):
    SubscriberFactory(account=account_a)
    job = Job.objects.create(account=account_a, kind=Job.Kind.IMPORT, title="Import")
    bulk.bulk_job_run(job_id=job.id)
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED
    assert Subscriber.objects.count() == 1


def test_an_empty_set_finishes_at_once(account_a, alice, vip):
    job = make_job(account_a, alice, "tag", tag=vip, state="bounced")
    bulk.bulk_job_run(job_id=job.id)
    job.refresh_from_db()
    assert (job.state, job.total, job.summary) == (Job.State.DONE, 0, {"affected": 0})
    assert job.message == "0 subscribers tagged"
    assert Tag.objects.get().subscriber_count == 0


def test_a_bulk_action_on_a_tag_and_a_state_touches_exactly_that_set(account_a, alice, vip):
    expected = set(tagged_and_bounced_mix(tag=vip, count=9))
    kept = set(Subscriber.objects.values_list("id", flat=True)) - expected
    job = make_job(account_a, alice, "delete", tag_id=vip.id, state="bounced")

    bulk.bulk_job_run(job_id=job.id)

    job.refresh_from_db()
    assert job.summary == {"affected": len(expected)} and job.total == len(expected)
    assert set(Subscriber.objects.values_list("id", flat=True)) == kept
