from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.utils import timezone

from convertkit.models import Account, Membership, User
from subscribers.models import CustomField, Subscriber, SubscriberCount, Tag, Tagging
from subscribers.seeding import DOMAINS, demo_data_seed
from subscribers.selectors import subscriber_counts
from subscribers.validation import normalize_email
from tests.factories import AccountFactory, SubscriberFactory, TagFactory


def assert_counters_exact(account: Account) -> None:
    real = dict(
        Subscriber.objects.filter(account=account)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    counted = {
        state: count
        for state, count in subscriber_counts(account=account).items()
        if count and state != "total"
    }
    assert counted == real
    for tag in Tag.objects.filter(account=account):
        assert tag.subscriber_count == Tagging.objects.filter(tag=tag).count(), tag.name


def seed(account: Account, count: int, **options):
    return demo_data_seed(account=account, subscribers=count, **options)


def test_seeded_subscribers_keep_the_trigger_counters_exact(account_a):
    existing = SubscriberFactory(account=account_a, state=Subscriber.State.UNSUBSCRIBED)
    TagFactory(account=account_a, name="Newsletter")

    result = seed(account_a, 2_500, batch_size=700, seed=1)

    assert Subscriber.objects.filter(account=account_a).exclude(pk=existing.pk).count() == 2_500
    assert result.taggings == Tagging.objects.filter(account=account_a).count() > 1_000
    assert_counters_exact(account_a)


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_taggings_written_on_a_second_connection_are_counted_exactly():
    account = AccountFactory()

    result = seed(account, 3_000, batch_size=500, seed=2)

    assert Subscriber.objects.filter(account=account).count() == 3_000
    assert result.taggings == Tagging.objects.filter(account=account).count() > 1_500
    assert_counters_exact(account)


def test_seeded_data_looks_like_a_real_list(account_a):
    seed(account_a, 3_000, seed=3)
    subscribers = Subscriber.objects.filter(account=account_a)

    states = dict(subscribers.values_list("state").annotate(n=Count("id")))
    assert states["active"] > 2_250
    assert all(states.get(state, 0) > 20 for state in ("unconfirmed", "unsubscribed", "bounced"))
    for subscriber in subscribers.order_by("?")[:200]:
        assert normalize_email(subscriber.email) == subscriber.email
        local, domain = subscriber.email.split("@")
        assert domain in DOMAINS
        assert local.endswith(f"+{subscriber.id}")
        assert subscriber.source
        assert (subscriber.confirmed_at is None) == (subscriber.state == "unconfirmed")
        assert (subscriber.unsubscribed_at is not None) == (subscriber.state == "unsubscribed")
    assert subscribers.filter(fields__has_key="city").count() > 1_000
    assert set(CustomField.objects.filter(account=account_a).values_list("key", flat=True)) == {
        "city",
        "company",
    }
    assert subscribers.exclude(first_name="").count() > 2_500


def test_signup_dates_span_two_years_and_grow_with_the_id(account_a):
    seed(account_a, 2_000, batch_size=600)

    dates = list(
        Subscriber.objects.filter(account=account_a)
        .order_by("id")
        .values_list("created_at", flat=True)
    )
    assert dates == sorted(dates)
    now = timezone.now()
    assert now - dates[0] > timedelta(days=700)
    assert now - dates[-1] < timedelta(days=2)


def test_each_subscriber_carries_zero_to_three_tags_and_tag_sizes_differ(account_a):
    result = seed(account_a, 3_000, tags=10)

    per_subscriber = dict(
        Tagging.objects.filter(account=account_a)
        .values_list("subscriber_id")
        .annotate(n=Count("id"))
    )
    assert set(per_subscriber.values()) == {1, 2, 3}
    assert 0 < len(per_subscriber) < 3_000
    sizes = sorted(tag.subscriber_count for tag in result.tags)
    assert sizes[0] > 0
    assert sizes[-1] > 2 * sizes[0]
    assert len({tag.name for tag in result.tags}) == 10


def test_seeding_twice_adds_new_addresses_and_reuses_the_tags(account_a):
    seed(account_a, 1_000, tags=5)
    tags_before = set(Tag.objects.filter(account=account_a).values_list("id", flat=True))
    newest_before = Subscriber.objects.filter(account=account_a).latest("id")

    seed(account_a, 1_000, tags=5)

    subscribers = Subscriber.objects.filter(account=account_a)
    assert subscribers.count() == 2_000
    assert subscribers.values("email").distinct().count() == 2_000
    assert set(Tag.objects.filter(account=account_a).values_list("id", flat=True)) == tags_before
    assert not subscribers.filter(
        id__gt=newest_before.id, created_at__lt=newest_before.created_at
    ).exists()
    assert_counters_exact(account_a)


def test_the_same_seed_generates_the_same_people(account_a, account_b):
    seed(account_a, 500, seed=42, batch_size=200)
    seed(account_b, 500, seed=42, batch_size=200)

    def people(account):
        return [
            (re.sub(r"\+\d+@", "@", email), first_name, state, source, tags)
            for email, first_name, state, source, tags in Subscriber.objects.filter(account=account)
            .annotate(tags=Count("taggings"))
            .order_by("id")
            .values_list("email", "first_name", "state", "source", "tags")
        ]

    assert people(account_a) == people(account_b)


def test_nothing_is_seeded_into_another_account(account_a, account_b):
    seed(account_a, 300)

    assert not Subscriber.objects.filter(account=account_b).exists()
    assert not Tag.objects.filter(account=account_b).exists()
    assert not SubscriberCount.objects.filter(account=account_b, count__gt=0).exists()


def run_command(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_command_creates_a_demo_account_and_prints_the_new_login():
    out, err = run_command("--subscribers", "300", "--tags", "4")

    account = Account.objects.get(name="Demo newsletter")
    owner = User.objects.get(email="demo@example.com")
    assert Membership.objects.filter(user=owner, account=account, role="owner").exists()
    assert Subscriber.objects.filter(account=account).count() == 300
    assert Tag.objects.filter(account=account).count() == 4
    assert "Added 300 subscribers" in out
    password = re.search(r"with the password (\S+)", out).group(1)
    assert owner.check_password(password)
    assert "300 of 300 subscribers" in err


@pytest.mark.django_db
def test_command_keeps_an_existing_owners_password():
    owner = User.objects.create_user(email="demo@example.com", password="kept secret 123")

    out, _ = run_command("--subscribers", "10")

    owner.refresh_from_db()
    assert owner.check_password("kept secret 123")
    assert "password" not in out
    assert Account.objects.filter(memberships__user=owner).count() == 1


def test_command_adds_to_an_account_given_by_id_or_name(account_a):
    run_command("--subscribers", "100", "--account", str(account_a.pk))
    run_command("--subscribers", "50", "--account", "ann's kitchen")

    assert Subscriber.objects.filter(account=account_a).count() == 150
    assert Account.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "No such list"], "No account is named “No such list”"),
        (["--account", "999999"], "No account has the id 999999"),
        (["--subscribers", "-5"], "--subscribers cannot be negative"),
        (["--tags", "5000"], "--tags must be between 0 and 1000"),
        (["--owner", "not-an-email"], "is not an email address"),
    ],
)
def test_command_explains_bad_arguments_and_creates_nothing(account_a, args, message):
    with pytest.raises(CommandError, match=message):
        run_command(*args)

    assert Account.objects.count() == 1
    assert not Subscriber.objects.exists()


def test_command_asks_for_an_id_when_two_accounts_share_the_name(account_a):
    AccountFactory(name=account_a.name)

    with pytest.raises(CommandError, match="Several accounts are named"):
        run_command("--account", account_a.name)
