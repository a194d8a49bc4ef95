from __future__ import annotations

import factory

from convertkit.models import Account, Membership, User
from subscribers.models import CustomField, Segment, Subscriber, Tag, Tagging


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"creator{n}@example.com")
    password = factory.django.Password("correct horse battery staple")


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"Newsletter {n}")
    sender_name = "Ann Example"
    sender_email = factory.Sequence(lambda n: f"news{n}@example.com")
    postal_address = "1 Main Street, Springfield"
    time_zone = "Europe/Paris"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    account = factory.SubFactory(AccountFactory)
    role = Membership.Role.MEMBER


class SubscriberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscriber

    account = factory.SubFactory(AccountFactory)
    email = factory.Sequence(lambda n: f"reader{n}@example.org")
    # Deterministic: a random name such as "Annette" would match the "ann" searches of the tests.
    first_name = factory.Sequence(lambda n: f"Reader{n}")
    state = Subscriber.State.ACTIVE
    source = "manual"


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"tag-{n}")


class TaggingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tagging

    tag = factory.SubFactory(TagFactory)
    subscriber = factory.SubFactory(
        SubscriberFactory, account=factory.SelfAttribute("..tag.account")
    )
    account = factory.SelfAttribute("tag.account")


class CustomFieldFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CustomField

    account = factory.SubFactory(AccountFactory)
    key = factory.Sequence(lambda n: f"field_{n}")
    label = factory.Sequence(lambda n: f"Field {n}")


class SegmentFactory(factory.django.DjangoModelFactory):
    """A segment saved as is (tests of bad stored values need that): the pages and the API
    save through subscribers.segments.services, which checks every value."""

    class Meta:
        model = Segment

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"Segment {n}")


def tagged_and_bounced_mix(*, tag: Tag, count: int) -> list[int]:
    """`count` subscribers of the tag's account: some tagged, some bounced, some both, some
    neither, so that neither the tag nor the state alone picks the set. Returns the ids of the
    bounced ones with the tag, oldest first."""
    both = []
    for n in range(count):
        state = Subscriber.State.BOUNCED if n % 3 else Subscriber.State.ACTIVE
        subscriber = SubscriberFactory(account=tag.account, state=state)
        if n % 2:
            TaggingFactory(tag=tag, subscriber=subscriber)
            if state == Subscriber.State.BOUNCED:
                both.append(subscriber.id)
    return both
