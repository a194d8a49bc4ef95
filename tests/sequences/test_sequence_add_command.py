"""`manage.py sequence_add`: addresses, a tag or every active subscriber of the sequence's
account, with a progress bar and a summary; never another account's subscribers or tags."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from sequences import entry
from sequences.models import Sequence, Subscription
from sequences.services import subscriber_enrol
from subscribers.models import Subscriber
from tests.factories import AccountFactory, SubscriberFactory, TagFactory, TaggingFactory

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("sequence_add", *[str(arg) for arg in args], stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def sequence(account_a):
    return Sequence.objects.create(account=account_a, name="Welcome course")


def in_sequence(sequence) -> set[str]:
    return set(
        Subscription.objects.filter(sequence=sequence).values_list("subscriber__email", flat=True)
    )


def test_addresses_are_added_and_unknown_ones_named(sequence, account_a):
    SubscriberFactory(account=account_a, email="ann@example.org")
    SubscriberFactory(account=account_a, email="gone@example.org", state="bounced")
    SubscriberFactory(account=AccountFactory(), email="theirs@example.org")

    out, err = run(
        sequence.pk,
        "--email",
        "Ann@Example.org",
        "--email",
        "gone@example.org",
        "--email",
        "theirs@example.org",
    )

    assert in_sequence(sequence) == {"ann@example.org"}
    assert "1 added, 0 restarted at its first email, 1 refused" in out
    assert "Not on the account's list, so not added: theirs@example.org" in err


def test_a_tag_adds_everyone_with_it_in_batches_with_a_progress_bar(
    sequence, account_a, monkeypatch
):
    monkeypatch.setattr(entry, "ENROL_BATCH", 2)
    tag = TagFactory(account=account_a, name="vip")
    tagged = [SubscriberFactory(account=account_a) for _ in range(5)]
    for reader in tagged:
        TaggingFactory(tag=tag, subscriber=reader)
    SubscriberFactory(account=account_a)  # no tag
    subscriber_enrol(sequence=sequence, subscriber=tagged[0])

    out, err = run(sequence.pk, "--tag", tag.pk)

    assert in_sequence(sequence) == {reader.email for reader in tagged}
    assert "4 added, 0 restarted at its first email, 1 refused" in out
    assert "5 of 5 subscribers" in err
    out, _ = run(sequence.pk, "--tag", tag.pk)  # again: nobody twice
    assert "0 added, 0 restarted at its first email, 5 refused" in out
    assert Subscription.objects.count() == 5


def test_all_active_leaves_out_everyone_else(sequence, account_a):
    active = SubscriberFactory(account=account_a)
    for state in ("unconfirmed", "unsubscribed", "bounced", "complained"):
        SubscriberFactory(account=account_a, state=state)
    SubscriberFactory(account=AccountFactory())

    out, _ = run(sequence.pk, "--all-active")

    assert in_sequence(sequence) == {active.email}
    assert "1 added" in out


def test_another_accounts_tag_and_missing_sequences_are_refused_with_nothing_done(
    sequence, account_a
):
    theirs = TagFactory(account=AccountFactory())
    TaggingFactory(tag=theirs, subscriber=SubscriberFactory(account=theirs.account))
    with pytest.raises(CommandError, match=f"has no tag {theirs.pk}"):
        run(sequence.pk, "--tag", theirs.pk)
    with pytest.raises(CommandError, match="There is no sequence 999999"):
        run(999999, "--all-active")
    with pytest.raises(CommandError, match="not-an-address"):
        run(sequence.pk, "--email", "not-an-address")
    assert not Subscription.objects.exists()


def test_one_way_of_choosing_who_is_required(sequence):
    with pytest.raises(CommandError):
        run(sequence.pk)
    with pytest.raises(CommandError):
        run(sequence.pk, "--all-active", "--tag", "1")


def test_a_paused_sequence_says_they_wait(sequence, account_a):
    Sequence.objects.filter(pk=sequence.pk).update(state=Sequence.State.PAUSED)
    SubscriberFactory(account=account_a)
    out, _ = run(sequence.pk, "--all-active")
    assert "The sequence is paused" in out
    assert Subscription.objects.get().subscriber.state == Subscriber.State.ACTIVE


def test_the_import_command_adds_the_file_to_a_sequence_of_the_account_only(
    sequence, account_a, tmp_path
):
    path = tmp_path / "people.csv"
    path.write_text("email,time_zone\nann@example.org,Europe/Paris\n")
    theirs = Sequence.objects.create(account=AccountFactory(), name="Theirs")
    args = ["import_subscribers", str(path), "--account", str(account_a.pk), "--in-process"]
    with pytest.raises(CommandError, match=f"no sequence {theirs.pk}"):
        call_command(
            *args, "--sequence", str(theirs.pk), stdout=io.StringIO(), stderr=io.StringIO()
        )
    assert not Subscriber.objects.exists()

    out = io.StringIO()
    call_command(*args, "--sequence", str(sequence.pk), stdout=out, stderr=io.StringIO())
    assert in_sequence(sequence) == {"ann@example.org"}
    assert Subscriber.objects.get().time_zone == "Europe/Paris"
    assert "added to “Welcome course”: 1" in out.getvalue()
