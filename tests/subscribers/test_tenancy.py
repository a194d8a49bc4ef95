"""charlie (account B) gets 404 for every object of account A, by GET and by POST, and nothing
changes; bob (a member of A) can use the same pages."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, reverse

from convertkit.models import Job, JobError
from sequences.models import Sequence, SequenceTrigger, Subscription
from sequences.services import subscriber_enrol
from subscribers import urls as subscriber_urls
from subscribers.models import CustomField, StateChange, Subscriber, Suppression, Tag, Tagging
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory, TaggingFactory

# The import views (another module) have their own tenancy tests.
OTHER_MODULES = {"subscriber_import_map"}


@pytest.fixture
def objects_of_a(account_a):
    subscriber = SubscriberFactory(account=account_a, email="ann@example.com", first_name="Ann")
    tag = TagFactory(account=account_a, name="vip")
    TaggingFactory(tag=tag, subscriber=subscriber)
    custom_field = CustomFieldFactory(account=account_a, key="company", label="Company")
    course = Sequence.objects.create(account=account_a, name="Course")
    subscriber_enrol(sequence=course, subscriber=subscriber)
    welcome = Sequence.objects.create(account=account_a, name="Welcome")
    return {
        "subscriber": subscriber,
        "tag": tag,
        "custom_field": custom_field,
        "course": course,
        "welcome": welcome,
    }


def requests_for(objects) -> dict[str, tuple[str, dict]]:
    """Every subscribers view that takes an id: its URL and a POST that would change something."""
    subscriber, tag, field = objects["subscriber"], objects["tag"], objects["custom_field"]
    course, welcome = objects["course"], objects["welcome"]
    return {
        "subscriber_detail": (reverse("subscriber_detail", args=[subscriber.id]), {}),
        "subscriber_edit": (
            reverse("subscriber_edit", args=[subscriber.id]),
            {"email": "stolen@example.com", "first_name": "Mallory"},
        ),
        "subscriber_tag": (reverse("subscriber_tag", args=[subscriber.id]), {"name": "pwned"}),
        "subscriber_untag": (reverse("subscriber_untag", args=[subscriber.id, tag.id]), {}),
        "subscriber_sequence_add": (
            reverse("subscriber_sequence_add", args=[subscriber.id]),
            {"sequence": welcome.id},
        ),
        "subscriber_sequence_remove": (
            reverse("subscriber_sequence_remove", args=[subscriber.id, course.id]),
            {},
        ),
        "subscriber_unsubscribe": (reverse("subscriber_unsubscribe", args=[subscriber.id]), {}),
        "subscriber_delete": (reverse("subscriber_delete", args=[subscriber.id]), {}),
        "tag_detail": (reverse("tag_detail", args=[tag.id]), {"sequences": [welcome.id]}),
        "tag_delete": (reverse("tag_delete", args=[tag.id]), {}),
        "custom_field_delete": (reverse("custom_field_delete", args=[field.id]), {}),
    }


def snapshot() -> list:
    return [
        list(Subscriber.objects.order_by("id").values()),
        list(Tag.objects.order_by("id").values()),
        list(Tagging.objects.order_by("id").values()),
        list(CustomField.objects.order_by("id").values()),
        list(StateChange.objects.order_by("id").values()),
        list(Suppression.objects.order_by("id").values()),
        list(Job.objects.order_by("id").values()),
        list(Subscription.objects.order_by("id").values()),
        list(SequenceTrigger.objects.order_by("id").values()),
    ]


def test_every_subscribers_view_with_an_id_is_covered(objects_of_a):
    with_ids = {
        pattern.name
        for pattern in subscriber_urls.urlpatterns
        if isinstance(pattern, URLPattern) and "<int:" in str(pattern.pattern)
    }
    assert with_ids - OTHER_MODULES == set(requests_for(objects_of_a))


@pytest.mark.parametrize(
    "name",
    [
        "subscriber_detail",
        "subscriber_edit",
        "subscriber_tag",
        "subscriber_untag",
        "subscriber_sequence_add",
        "subscriber_sequence_remove",
        "subscriber_unsubscribe",
        "subscriber_delete",
        "tag_detail",
        "tag_delete",
        "custom_field_delete",
    ],
)
def test_charlie_gets_404_for_account_a_objects_and_changes_nothing(
    charlie_client, objects_of_a, name
):
    url, data = requests_for(objects_of_a)[name]
    before = snapshot()
    assert charlie_client.get(url).status_code == 404
    assert charlie_client.post(url, data).status_code == 404
    assert snapshot() == before


def _detail_url(objects) -> str:
    return reverse("subscriber_detail", args=[objects["subscriber"].id])


# name: (bob's GET status, bob's POST status, where the POST redirects, what it changed; None:
# nothing, the snapshot is the same). A GET answered 200 shows the object it is about.
BOB_CASES = {
    "subscriber_detail": (200, 200, None, None),
    "subscriber_edit": (
        200,
        302,
        _detail_url,
        lambda o: Subscriber.objects.get().email == "stolen@example.com",
    ),
    "subscriber_tag": (302, 302, _detail_url, lambda o: Tag.objects.filter(name="pwned").exists()),
    "subscriber_untag": (302, 302, _detail_url, lambda o: not Tagging.objects.exists()),
    "subscriber_sequence_add": (
        302,
        302,
        _detail_url,
        lambda o: Subscription.objects.filter(sequence=o["welcome"]).exists(),
    ),
    "subscriber_sequence_remove": (
        302,
        302,
        _detail_url,
        lambda o: (
            Subscription.objects.get(sequence=o["course"]).state == Subscription.State.REMOVED
        ),
    ),
    "subscriber_unsubscribe": (
        200,
        302,
        _detail_url,
        lambda o: Subscriber.objects.get().state == Subscriber.State.UNSUBSCRIBED,
    ),
    "subscriber_delete": (
        200,
        302,
        lambda o: reverse("subscriber_list"),
        lambda o: not Subscriber.objects.exists(),
    ),
    "tag_detail": (
        200,
        302,
        lambda o: reverse("tag_detail", args=[o["tag"].id]),
        lambda o: SequenceTrigger.objects.filter(tag=o["tag"], sequence=o["welcome"]).exists(),
    ),
    "tag_delete": (200, 302, lambda o: reverse("tag_list"), lambda o: not Tag.objects.exists()),
    "custom_field_delete": (
        200,
        302,
        lambda o: reverse("custom_field_list"),
        lambda o: not CustomField.objects.exists(),
    ),
}


def test_every_view_bob_uses_is_covered(objects_of_a):
    assert set(BOB_CASES) == set(requests_for(objects_of_a))


@pytest.mark.parametrize("name", sorted(BOB_CASES))
def test_bob_a_member_of_account_a_can_use_the_same_pages(bob_client, objects_of_a, name):
    """Exact statuses and targets: a redirect to the login page, or a page that changed
    nothing, would not pass."""
    get_status, post_status, post_target, changed = BOB_CASES[name]
    url, data = requests_for(objects_of_a)[name]
    before = snapshot()

    get = bob_client.get(url)
    assert get.status_code == get_status
    if get_status == 200:
        shown = {"tag_delete": "vip", "tag_detail": "vip", "custom_field_delete": "Company"}.get(
            name, "ann@example.com"
        )
        assert shown in get.content.decode()
    response = bob_client.post(url, data)

    assert response.status_code == post_status
    if post_target is None:
        assert objects_of_a["subscriber"].email.encode() in response.content
        assert snapshot() == before
    else:
        assert response["Location"] == post_target(objects_of_a)
        assert changed(objects_of_a)


def test_a_tag_of_another_account_cannot_be_removed_through_ones_own_subscriber(
    alice_client, account_a, account_b
):
    subscriber = SubscriberFactory(account=account_a)
    foreign = TaggingFactory(tag=TagFactory(account=account_b)).tag
    url = reverse("subscriber_untag", args=[subscriber.id, foreign.id])
    before = snapshot()
    assert alice_client.post(url).status_code == 404
    assert snapshot() == before


def test_tagging_by_name_never_reaches_a_tag_of_another_account(alice_client, account_a, account_b):
    theirs = TagFactory(account=account_b, name="vip")
    subscriber = SubscriberFactory(account=account_a)
    alice_client.post(reverse("subscriber_tag", args=[subscriber.id]), {"name": "VIP"})
    tag = subscriber.taggings.get().tag
    assert tag.account == account_a and tag != theirs
    theirs.refresh_from_db()
    assert theirs.subscriber_count == 0


@pytest.fixture
def job_of_a(account_a, alice):
    job = Job.objects.create(
        account=account_a, created_by=alice, kind=Job.Kind.BULK_TAG, title="Tag 3 subscribers"
    )
    JobError.objects.create(job=job, line=2, value="secret@example.com", message="bad")
    return job


@pytest.mark.parametrize("name", ["job_detail", "job_progress", "job_errors_csv"])
def test_charlie_gets_404_for_account_a_jobs(charlie_client, bob_client, job_of_a, name):
    url = reverse(name, args=[job_of_a.id])
    assert charlie_client.get(url).status_code == 404
    assert charlie_client.post(url).status_code == 404
    response = bob_client.get(url)
    assert response.status_code == 200
    if name == "job_errors_csv":
        assert "secret@example.com" in b"".join(response.streaming_content).decode()
