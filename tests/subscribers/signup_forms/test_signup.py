"""Signing up through a public form and confirming by email: the rules of subscribers/signup_forms/signup.py,
driven through the public endpoint as a visitor's browser would."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from subscribers.models import CustomField, Signup, StateChange, Subscriber, Suppression
from subscribers.services import subscriber_delete, subscriber_unsubscribe
from subscribers.signup_forms.services import form_create, form_update
from subscribers.signup_forms.signup import signup_submit
from tests.factories import SubscriberFactory, TagFactory

CONFIRM_RE = re.compile(r"http://testserver(/f/confirm/[^/\s]+/)")


@pytest.fixture
def form(account_a):
    CustomField.objects.create(account=account_a, key="city", label="City")
    return form_create(
        account=account_a,
        name="Newsletter",
        headline="Get the weekly recipe",
        fields=[{"key": "email"}, {"key": "first_name"}, {"key": "city"}],
        tag_names=["newsletter"],
    )


@pytest.fixture
def visitor():
    return Client(HTTP_USER_AGENT="Mozilla/5.0 (Visitor)", REMOTE_ADDR="203.0.113.7")


@pytest.fixture
def sign_up(visitor, form, eager_celery, django_capture_on_commit_callbacks, settings):
    settings.SITE_URL = "http://testserver"

    def submit(email="reader@example.org", *, through=None, **fields):
        target = through or form
        with django_capture_on_commit_callbacks(execute=True):
            return visitor.post(
                f"/f/{target.uid}/subscribe",
                {"email": email, **fields},
                HTTP_REFERER="https://ann.example/recipes",
            )

    return submit


def confirm_path(message) -> str:
    return CONFIRM_RE.search(message.body)[1]


def test_new_address_on_a_double_opt_in_form_waits_unconfirmed_with_a_consent_record(sign_up, form):
    response = sign_up("Reader@Example.org", first_name="Rita", city="Lyon")

    assert response.status_code == 200
    assert b"check your email" in response.content
    subscriber = Subscriber.objects.get(email="reader@example.org")
    assert subscriber.state == Subscriber.State.UNCONFIRMED
    assert (subscriber.first_name, subscriber.fields) == ("Rita", {"city": "Lyon"})
    assert not subscriber.taggings.exists()  # tags wait for the confirmation
    signup = Signup.objects.get(subscriber=subscriber)
    assert signup.form == form
    assert signup.outcome == Signup.Outcome.PENDING
    assert signup.wording_version == form.wording_version
    assert (signup.ip, signup.user_agent) == ("203.0.113.7", "Mozilla/5.0 (Visitor)")
    assert signup.page_url == "https://ann.example/recipes"
    assert signup.confirmed_at is None
    (message,) = mail.outbox
    assert message.to == ["Rita <reader@example.org>"]
    assert message.subject == "Please confirm your subscription"
    assert "Hi Rita," in message.body
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "1 Main Street, Springfield" in message.body  # the account's postal address
    form.refresh_from_db()
    assert (form.signup_count, form.subscriber_count) == (1, 0)


def test_following_the_confirmation_link_activates_tags_and_records_consent(sign_up, form, visitor):
    sign_up(first_name="Rita")
    path = confirm_path(mail.outbox[0])

    page = visitor.get(path)
    assert b"Confirm my subscription" in page.content
    assert Subscriber.objects.get().state == Subscriber.State.UNCONFIRMED  # GET changes nothing

    response = visitor.post(path)

    assert b"You are subscribed" in response.content
    subscriber = Subscriber.objects.get()
    assert subscriber.state == Subscriber.State.ACTIVE
    assert subscriber.confirmed_at is not None
    assert subscriber.consent_method == "form “Newsletter” (double opt-in)"
    assert str(subscriber.consent_ip) == "203.0.113.7"
    assert [t.tag.name for t in subscriber.taggings.select_related("tag")] == ["newsletter"]
    signup = Signup.objects.get()
    assert signup.outcome == Signup.Outcome.CONFIRMED
    assert signup.confirmed_at == subscriber.confirmed_at
    form.refresh_from_db()
    assert form.subscriber_count == 1
    assert StateChange.objects.filter(subscriber=subscriber, to_state="active").count() == 1


def test_following_the_confirmation_link_twice_is_harmless(sign_up, form, visitor):
    sign_up()
    path = confirm_path(mail.outbox[0])
    visitor.post(path)
    first = Subscriber.objects.get()

    again = visitor.post(path)

    assert again.status_code == 200
    assert b"You are subscribed" in again.content
    after = Subscriber.objects.get()
    assert after.confirmed_at == first.confirmed_at
    assert StateChange.objects.filter(subscriber=after).count() == 1
    form.refresh_from_db()
    assert form.subscriber_count == 1


def test_single_opt_in_form_subscribes_at_once_with_tags(sign_up, form):
    form_update(form=form, values={"double_opt_in": False})

    sign_up(first_name="Sam")

    subscriber = Subscriber.objects.get()
    assert subscriber.state == Subscriber.State.ACTIVE
    assert subscriber.consent_method == "form “Newsletter” (single opt-in)"
    assert subscriber.taggings.count() == 1
    assert Signup.objects.get().outcome == Signup.Outcome.SUBSCRIBED
    assert mail.outbox == []  # no incentive, so nothing to send
    form.refresh_from_db()
    assert (form.signup_count, form.subscriber_count) == (1, 1)


def test_active_subscriber_signing_up_again_gets_the_new_tags_and_keeps_their_data(
    sign_up, form, account_a
):
    reader = SubscriberFactory(
        account=account_a, email="reader@example.org", first_name="Rita", fields={"city": "Nice"}
    )

    sign_up(first_name="Mallory", city="Nowhere")

    reader.refresh_from_db()
    assert reader.state == Subscriber.State.ACTIVE
    assert (reader.first_name, reader.fields) == ("Rita", {"city": "Nice"})
    assert [t.tag.name for t in reader.taggings.select_related("tag")] == ["newsletter"]
    assert Signup.objects.get().outcome == Signup.Outcome.TAGGED
    assert mail.outbox == []


def test_unsubscribed_subscriber_must_confirm_afresh_and_their_data_waits(
    sign_up, form, account_a, visitor
):
    form_update(form=form, values={"double_opt_in": False})  # even on a single opt-in form
    reader = SubscriberFactory(
        account=account_a,
        email="reader@example.org",
        first_name="Rita",
        state=Subscriber.State.UNSUBSCRIBED,
    )

    sign_up(first_name="Rita B")

    reader.refresh_from_db()
    assert (reader.state, reader.first_name) == (Subscriber.State.UNSUBSCRIBED, "Rita")
    assert not reader.taggings.exists()
    (message,) = mail.outbox  # the one email an unsubscribed address may get: this confirmation
    assert message.to == ["Rita <reader@example.org>"]

    visitor.post(confirm_path(message))

    reader.refresh_from_db()
    assert (reader.state, reader.first_name) == (Subscriber.State.ACTIVE, "Rita B")
    assert reader.unsubscribed_at is None
    assert reader.taggings.count() == 1


@pytest.mark.parametrize("state", [Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED])
def test_bounced_or_complained_subscriber_is_not_reactivated_and_gets_no_email(
    sign_up, form, account_a, state
):
    reader = SubscriberFactory(account=account_a, email="reader@example.org", state=state)

    response = sign_up(first_name="Rita")

    assert response.status_code == 200  # the same answer as anyone's: the list stays private
    reader.refresh_from_db()
    assert reader.state == state
    assert not reader.taggings.exists()
    assert not Signup.objects.exists()
    assert mail.outbox == []


def test_subscriber_who_bounces_before_confirming_is_not_activated_by_the_link(sign_up, visitor):
    sign_up()
    Subscriber.objects.update(state=Subscriber.State.BOUNCED)

    response = visitor.post(confirm_path(mail.outbox[0]))

    assert b"cannot be subscribed" in response.content
    assert Subscriber.objects.get().state == Subscriber.State.BOUNCED
    assert Signup.objects.get().outcome == Signup.Outcome.PENDING


def test_erased_address_signing_up_must_confirm_and_only_then_leaves_suppression(
    sign_up, form, account_a, visitor
):
    form_update(form=form, values={"double_opt_in": False})
    subscriber_delete(subscriber=SubscriberFactory(account=account_a, email="reader@example.org"))

    sign_up()

    assert Subscriber.objects.get().state == Subscriber.State.UNCONFIRMED
    assert Suppression.objects.filter(account=account_a).exists()
    visitor.post(confirm_path(mail.outbox[0]))
    assert Subscriber.objects.get().state == Subscriber.State.ACTIVE
    assert not Suppression.objects.filter(account=account_a).exists()


def test_at_most_one_confirmation_email_per_address_per_hour(sign_up, form, account_a):
    other_form = form_create(account=account_a, name="Second")
    sign_up()
    sign_up()
    sign_up(through=other_form)

    assert len(mail.outbox) == 1
    assert Signup.objects.count() == 3  # every signup is still recorded
    Signup.objects.update(email_sent_at=timezone.now() - timedelta(minutes=61))

    sign_up()

    assert len(mail.outbox) == 2


def test_unconfirmed_address_is_updated_by_a_new_signup(sign_up):
    sign_up(first_name="Rita", city="Lyon")
    sign_up(first_name="Rita", city="Paris")

    assert Subscriber.objects.get().fields == {"city": "Paris"}


def test_changed_wording_gives_later_signups_the_new_version_with_its_text(sign_up, form):
    sign_up("first@example.org")
    form_update(form=form, values={"consent_text": "We email weekly; unsubscribe any time."})

    sign_up("second@example.org")

    versions = dict(Signup.objects.values_list("subscriber__email", "wording_version"))
    assert versions == {"first@example.org": 1, "second@example.org": 2}
    wording = form.wordings.get(version=2)
    assert wording.consent_text == "We email weekly; unsubscribe any time."
    assert form.wordings.get(version=1).consent_text.startswith("We respect your privacy")


def test_incentive_is_emailed_after_confirmation(
    sign_up, form, visitor, django_capture_on_commit_callbacks
):
    form_update(form=form, values={"incentive_url": "https://ann.example/free-recipes.pdf"})
    sign_up()
    assert len(mail.outbox) == 1

    with django_capture_on_commit_callbacks(execute=True):
        response = visitor.post(confirm_path(mail.outbox[0]))

    assert b"https://ann.example/free-recipes.pdf" in response.content
    incentive = mail.outbox[1]
    assert incentive.subject == "Here is your download"
    assert "https://ann.example/free-recipes.pdf" in incentive.body


def test_tags_deleted_after_signup_are_simply_not_applied(sign_up, form, visitor):
    sign_up()
    form.tags.all().delete()

    visitor.post(confirm_path(mail.outbox[0]))

    assert Subscriber.objects.get().state == Subscriber.State.ACTIVE


def test_a_form_applies_only_its_own_accounts_tags(sign_up, form, account_b):
    foreign = TagFactory(account=account_b, name="newsletter")
    b_form = form_create(
        account=account_b, name="B's form", tag_names=["newsletter"], double_opt_in=False
    )

    sign_up(through=b_form)

    subscriber = Subscriber.objects.get()
    assert subscriber.account == account_b
    assert [tagging.tag for tagging in subscriber.taggings.select_related("tag")] == [foreign]
    assert not form.tags.get().taggings.exists()  # account A's own "newsletter" tag


def test_a_used_confirmation_link_never_says_subscribed_to_someone_who_left(sign_up, visitor):
    sign_up()
    path = confirm_path(mail.outbox[0])
    visitor.post(path)
    subscriber_unsubscribe(subscriber=Subscriber.objects.get(), reason="Unsubscribe link")

    for page in (visitor.get(path), visitor.post(path)):
        assert b"You are subscribed" not in page.content
        assert b"is not subscribed" in page.content
    assert Subscriber.objects.get().state == Subscriber.State.UNSUBSCRIBED


def test_single_opt_in_signup_gets_the_incentive_at_once(sign_up, form):
    form_update(
        form=form,
        values={"double_opt_in": False, "incentive_url": "https://ann.example/free-recipes.pdf"},
    )

    sign_up()

    (message,) = mail.outbox
    assert message.subject == "Here is your download"
    assert "https://ann.example/free-recipes.pdf" in message.body


def test_active_subscriber_signing_up_again_gets_the_incentive_at_most_once_an_hour(
    sign_up, form, account_a
):
    form_update(form=form, values={"incentive_url": "https://ann.example/free-recipes.pdf"})
    SubscriberFactory(account=account_a, email="reader@example.org")

    sign_up()
    sign_up()

    (message,) = mail.outbox
    assert "https://ann.example/free-recipes.pdf" in message.body
    assert list(Signup.objects.values_list("outcome", flat=True)) == ["tagged", "tagged"]


@pytest.mark.parametrize("existing", [None, Subscriber.State.UNSUBSCRIBED])
def test_simultaneous_signups_of_one_address_make_one_subscriber_and_one_email(
    transactional_db, account_a, eager_celery, existing
):
    form = form_create(account=account_a, name="Newsletter")
    if existing:
        SubscriberFactory(account=account_a, email="reader@example.org", state=existing)
    start = threading.Barrier(4)
    problems = []
    outcomes = []

    def submit(n: int) -> None:
        try:
            start.wait(10)
            result = signup_submit(
                form=form, email="reader@example.org", data={}, ip=f"203.0.113.{n}"
            )
            outcomes.append(result.outcome)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            problems.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert problems == []
    assert sorted(outcomes) == ["confirmation"] + ["confirmation, email held (one per hour)"] * 3
    assert Subscriber.objects.get().state == (existing or Subscriber.State.UNCONFIRMED)
    assert Signup.objects.count() == 4
    assert Signup.objects.exclude(email_sent_at=None).count() == 1
    assert len(mail.outbox) == 1


@pytest.mark.parametrize("state", [Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED])
def test_an_erased_bounced_or_complained_address_gets_not_even_a_confirmation(
    sign_up, form, account_a, state
):
    subscriber_delete(
        subscriber=SubscriberFactory(account=account_a, email="reader@example.org", state=state)
    )
    assert Suppression.objects.get(account=account_a).reason == state

    response = sign_up(first_name="Rita")

    assert response.status_code == 200  # the same answer as anyone's
    assert not Subscriber.objects.exists()
    assert not Signup.objects.exists()
    assert mail.outbox == []
