"""Engagement filters of a broadcast's audience: "opened or clicked in the last N days" (and its
negation) and "did not open broadcast X", alone and with tags; the recipient count and the
fan-out's Delivery rows agree; machine opens and clicks are not engagement; the editor refuses
bad values inline; "Resend to non-openers" makes a draft for those who did not open.

Opens and clicks are written through tracking's store, as the drain writes them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from broadcasts import pipeline
from broadcasts.audience import audience_count
from broadcasts.models import Broadcast, Delivery
from broadcasts.services import (
    ResendRefused,
    SendRefused,
    broadcast_resend_unopened,
    broadcast_send,
)
from subscribers.models import Subscriber
from tests.broadcasts.conftest import wait_until
from tests.broadcasts.test_views import HTMX, page_inputs, stored, url
from tests.factories import AccountFactory, SubscriberFactory, TagFactory, TaggingFactory
from tracking.models import EventKind, Link, Machine
from tracking.store import TrackedEvent, events_store

OPEN, CLICK = EventKind.OPEN, EventKind.CLICK


def people(account, *names: str) -> dict[str, Subscriber]:
    return {name: SubscriberFactory(account=account, email=f"{name}@example.org") for name in names}


def sent_to(
    recipients: list[Subscriber],
    *,
    subject: str = "Soup season",
    at: datetime | None = None,
    failed: tuple[Subscriber, ...] = (),
) -> Broadcast:
    """A broadcast of the recipients' account sent at `at` (60 days ago by default): a SENT
    delivery to each recipient (FAILED for those in `failed`), and one link."""
    at = at or timezone.now() - timedelta(days=60)
    account = recipients[0].account
    broadcast = Broadcast.objects.create(
        account=account,
        subject=subject,
        body="Hello",
        state=Broadcast.State.SENT,
        send_started_at=at,
        sent_at=at,
        recipient_count=len(recipients),
    )
    for subscriber in recipients:
        Delivery.objects.create(
            broadcast=broadcast,
            account=account,
            subscriber=subscriber,
            state=Delivery.State.FAILED if subscriber in failed else Delivery.State.SENT,
            attempts=1,
            sent_at=at,
        )
    Link.objects.create(account=account, broadcast=broadcast, url="https://example.com/soup")
    return broadcast


def track(
    broadcast: Broadcast,
    subscriber: Subscriber,
    kind: int,
    *,
    at: datetime,
    machine: int = Machine.HUMAN,
) -> None:
    """Records an open or a click (on the broadcast's link) by `subscriber`, via the store."""
    delivery = Delivery.objects.get(broadcast=broadcast, subscriber=subscriber)
    link_id = broadcast.links.get().pk if kind == CLICK else 0
    result = events_store([TrackedEvent(kind, at, delivery.pk, link_id, machine)])
    assert result.stored == 1


def days_ago(days: float) -> datetime:
    return timezone.now() - timedelta(days=days)


def draft(account, **audience) -> Broadcast:
    return Broadcast.objects.create(
        account=account, subject="Bread week", body="Hello {{ subscriber.first_name }}", **audience
    )


def count_and_fan_out(broadcast: Broadcast) -> set[str]:
    """The addresses of the Delivery rows the fan-out makes for the broadcast, after checking
    that the recipient count shown before sending said as many."""
    counted = audience_count(audience=broadcast)
    assert broadcast_send(broadcast=broadcast)
    pipeline.fan_out(broadcast_id=broadcast.pk)
    emails = set(
        Delivery.objects.filter(broadcast=broadcast).values_list("subscriber__email", flat=True)
    )
    assert counted == len(emails)
    return {email.removesuffix("@example.org") for email in emails}


# --- Opened or clicked in the last N days -------------------------------------------------------


@pytest.fixture
def engagement_mix(db):
    """An account whose subscribers engaged in every way that matters to the filter."""
    account = AccountFactory()
    who = people(
        account,
        "opened_lately",
        "clicked_lately",
        "opened_long_ago",
        "proxy_opened",
        "scanner_clicked",
        "never",
        "gone",
    )
    old = sent_to(list(who.values()), at=days_ago(50))
    recent = sent_to(list(who.values()), at=days_ago(10), subject="Bread")
    track(recent, who["opened_lately"], OPEN, at=days_ago(3))
    track(old, who["clicked_lately"], CLICK, at=days_ago(5))  # a late click on an old email
    track(old, who["opened_long_ago"], OPEN, at=days_ago(45))
    track(recent, who["proxy_opened"], OPEN, at=days_ago(2), machine=Machine.PRIVACY_PROXY)
    track(recent, who["scanner_clicked"], CLICK, at=days_ago(2), machine=Machine.SCANNER_AGENT)
    track(recent, who["gone"], OPEN, at=days_ago(1))
    Subscriber.objects.filter(pk=who["gone"].pk).update(state=Subscriber.State.UNSUBSCRIBED)
    return account


def test_opened_or_clicked_in_the_last_n_days_goes_to_people_who_engaged_since(engagement_mix):
    engaged = draft(engagement_mix, engagement="engaged", engagement_days=30)
    assert count_and_fan_out(engaged) == {"opened_lately", "clicked_lately"}


def test_a_longer_window_takes_in_older_opens(engagement_mix):
    engaged = draft(engagement_mix, engagement="engaged", engagement_days=60)
    assert count_and_fan_out(engaged) == {"opened_lately", "clicked_lately", "opened_long_ago"}


def test_has_not_opened_or_clicked_goes_to_the_rest_of_the_active_list(engagement_mix):
    unengaged = draft(engagement_mix, engagement="not_engaged", engagement_days=30)
    assert count_and_fan_out(unengaged) == {
        "opened_long_ago",
        "proxy_opened",
        "scanner_clicked",
        "never",
    }


def test_machine_opens_and_scanner_clicks_are_not_engagement_until_a_person_opens(db):
    account = AccountFactory()
    who = people(account, "reader")
    broadcast = sent_to([who["reader"]], at=days_ago(1))
    engaged = draft(account, engagement="engaged", engagement_days=7)
    track(broadcast, who["reader"], OPEN, at=days_ago(0.9), machine=Machine.PRIVACY_PROXY)
    track(broadcast, who["reader"], CLICK, at=days_ago(0.9), machine=Machine.SCANNER_AGENT)
    # The store takes a click seconds after delivery for a scanner's.
    track(broadcast, who["reader"], CLICK, at=broadcast.sent_at + timedelta(seconds=2))
    assert audience_count(audience=engaged) == 0

    track(broadcast, who["reader"], OPEN, at=days_ago(0.5))
    assert count_and_fan_out(engaged) == {"reader"}


# --- Did not open broadcast X ---------------------------------------------------------------


@pytest.fixture
def soup_season(db):
    """A broadcast sent to some of an account's subscribers, who did various things with it."""
    account = AccountFactory()
    who = people(
        account,
        "opened",
        "proxy_opened",
        "clicked_only",
        "ignored",
        "failed",
        "joined_later",
        "gone",
    )
    sent = [who[name] for name in who if name != "joined_later"]
    broadcast = sent_to(sent, failed=(who["failed"],))
    track(broadcast, who["opened"], OPEN, at=days_ago(59))
    track(broadcast, who["proxy_opened"], OPEN, at=days_ago(59), machine=Machine.PRIVACY_PROXY)
    track(broadcast, who["clicked_only"], CLICK, at=days_ago(59))
    Subscriber.objects.filter(pk=who["gone"].pk).update(state=Subscriber.State.UNSUBSCRIBED)
    # Their opens of another broadcast are not opens of this one.
    other = sent_to([who["ignored"]], subject="Bread")
    track(other, who["ignored"], OPEN, at=days_ago(1))
    return broadcast


def test_did_not_open_goes_to_those_sent_it_who_did_not_open_it(soup_season):
    resend = draft(soup_season.account, not_opened_broadcast_id=soup_season.pk)
    # Not: who opened, who clicked (images blocked: a click without a pixel is still a read),
    # who was never sent it (joined later, or the send failed), who left.
    assert count_and_fan_out(resend) == {"proxy_opened", "ignored"}


def test_did_not_open_a_broadcast_of_another_account_or_a_deleted_one_is_nobody(soup_season):
    theirs = draft(AccountFactory(), not_opened_broadcast_id=soup_season.pk)
    SubscriberFactory(account=theirs.account)
    assert audience_count(audience=theirs) == 0

    mine = draft(soup_season.account, not_opened_broadcast_id=soup_season.pk)
    assert audience_count(audience=mine) == 2
    soup_season.delete()
    assert audience_count(audience=mine) == 0
    with pytest.raises(SendRefused, match="Nobody is in the audience"):
        broadcast_send(broadcast=mine)


# --- With tags --------------------------------------------------------------------------------


def test_engagement_filters_narrow_the_tag_audience(db):
    account = AccountFactory()
    soup, vip = TagFactory(account=account, name="soup"), TagFactory(account=account, name="vip")
    who = people(account, "soup_opened", "soup_vip_opened", "soup_quiet", "plain_opened")
    for name in ("soup_opened", "soup_vip_opened", "soup_quiet"):
        TaggingFactory(tag=soup, subscriber=who[name])
    TaggingFactory(tag=vip, subscriber=who["soup_vip_opened"])
    broadcast = sent_to(list(who.values()), at=days_ago(20))
    for name in ("soup_opened", "soup_vip_opened", "plain_opened"):
        track(broadcast, who[name], OPEN, at=days_ago(19))
    tags = {"include_tag_ids": [soup.id], "exclude_tag_ids": [vip.id]}

    engaged = draft(account, engagement="engaged", engagement_days=30, **tags)
    assert count_and_fan_out(engaged) == {"soup_opened"}
    unengaged = draft(account, engagement="not_engaged", engagement_days=30, **tags)
    assert count_and_fan_out(unengaged) == {"soup_quiet"}
    soup_non_openers = draft(account, not_opened_broadcast_id=broadcast.pk, **tags)
    assert count_and_fan_out(soup_non_openers) == {"soup_quiet"}
    both = draft(
        account,
        engagement="engaged",
        engagement_days=30,
        not_opened_broadcast_id=broadcast.pk,
        include_tag_ids=[soup.id],
    )
    assert audience_count(audience=both) == 0


# --- The editor -------------------------------------------------------------------------------


@pytest.fixture
def editing(alice_client, account_a):
    """alice's draft in the editor, beside a broadcast of hers already sent (to 3 people, one of
    whom opened it): (draft, the sent broadcast, the editor's inputs)."""
    who = people(account_a, "ann", "ben", "cat")
    sent = sent_to(list(who.values()))
    track(sent, who["ann"], OPEN, at=days_ago(59))
    broadcast = draft(account_a)
    return broadcast, sent, page_inputs(alice_client.get(url("broadcast_edit", broadcast)))


def test_the_editor_offers_the_filters_and_says_machine_opens_do_not_count(alice_client, editing):
    broadcast, sent, _inputs = editing
    body = alice_client.get(url("broadcast_edit", broadcast)).content.decode()
    assert 'name="engagement" value="engaged"' in body
    assert 'name="engagement" value="not_engaged"' in body
    assert 'name="engagement_days"' in body
    assert f'<option value="{sent.pk}">Soup season (' in body
    assert "Apple Mail Privacy Protection" in body


def test_the_editor_without_sent_broadcasts_explains_did_not_open(alice_client, account_a):
    broadcast = draft(account_a)
    body = alice_client.get(url("broadcast_edit", broadcast)).content.decode()
    assert "Once a broadcast has gone out, you can send to those who did not open it." in body
    assert 'name="not_opened_broadcast_id"' not in body


def test_saving_stores_the_filters_and_the_editor_shows_them_again(alice_client, editing):
    broadcast, sent, inputs = editing
    data = {
        **inputs,
        "engagement": "not_engaged",
        "engagement_days": "90",
        "not_opened_broadcast_id": str(sent.pk),
    }
    response = alice_client.post(url("broadcast_edit", broadcast), data)
    assert response.status_code == 302
    saved = stored(broadcast)
    assert saved["engagement"] == "not_engaged"
    assert saved["engagement_days"] == 90
    assert saved["not_opened_broadcast_id"] == sent.pk
    again = page_inputs(alice_client.get(response.url))
    assert again["engagement"] == "not_engaged"
    assert again["engagement_days"] == "90"
    body = alice_client.get(response.url).content.decode()
    assert f'<option value="{sent.pk}" selected>' in body

    alice_client.post(url("broadcast_edit", broadcast), {**data, "engagement": ""})
    saved = stored(broadcast)
    assert (saved["engagement"], saved["engagement_days"]) == ("", None)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"engagement": "engaged", "engagement_days": "0"}, "Enter at least 1 day."),
        ({"engagement": "not_engaged", "engagement_days": "-5"}, "Enter at least 1 day."),
        ({"engagement": "engaged", "engagement_days": "thirty"}, "Enter a number of days"),
        ({"engagement": "engaged", "engagement_days": ""}, "Enter the number of days"),
        ({"engagement": "engaged", "engagement_days": "99999"}, "less than or equal to 3650"),
        ({"engagement": "lately", "engagement_days": "30"}, "Select a valid choice"),
        ({"not_opened_broadcast_id": "nope"}, "Choose one of your broadcasts that was sent."),
    ],
)
def test_bad_filter_values_are_refused_inline_and_nothing_is_saved(
    alice_client, editing, changes, error
):
    broadcast, _sent, inputs = editing
    before = stored(broadcast)
    response = alice_client.post(url("broadcast_edit", broadcast), {**inputs, **changes})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was saved" in body
    assert error in body
    assert stored(broadcast) == before


def test_days_typed_while_anyone_is_chosen_are_ignored(alice_client, editing):
    broadcast, _sent, inputs = editing
    data = {**inputs, "engagement": "", "engagement_days": "0"}
    assert alice_client.post(url("broadcast_edit", broadcast), data).status_code == 302
    assert stored(broadcast)["engagement_days"] is None


def test_a_broadcast_of_another_account_a_draft_or_a_deleted_one_cannot_be_chosen(
    alice_client, editing, account_b
):
    broadcast, sent, inputs = editing
    theirs = sent_to([SubscriberFactory(account=account_b)])
    unsent = draft(broadcast.account)
    deleted = sent_to([SubscriberFactory(account=broadcast.account)])
    deleted.delete()
    before = stored(broadcast)
    for chosen in (theirs, unsent, deleted):
        data = {**inputs, "not_opened_broadcast_id": str(chosen.pk)}
        response = alice_client.post(url("broadcast_edit", broadcast), data)
        assert response.status_code == 400
        assert "Choose one of your broadcasts that was sent." in response.content.decode()
        assert stored(broadcast) == before
        count = alice_client.get(url("broadcast_count", broadcast), data, **HTMX)
        assert "<strong>4</strong> recipients" in count.content.decode()  # the saved audience


def test_a_saved_broadcast_deleted_since_stays_chosen_and_the_audience_is_empty(
    alice_client, editing
):
    broadcast, sent, inputs = editing
    data = {**inputs, "not_opened_broadcast_id": str(sent.pk)}
    assert alice_client.post(url("broadcast_edit", broadcast), data).status_code == 302
    sent_id = sent.pk
    sent.delete()
    page = alice_client.get(url("broadcast_edit", broadcast)).content.decode()
    assert f'<option value="{sent_id}" selected>A deleted broadcast: nobody' in page
    count = alice_client.get(url("broadcast_count", broadcast), data, **HTMX).content.decode()
    assert "<strong>0</strong> recipients" in count
    assert alice_client.post(url("broadcast_edit", broadcast), data).status_code == 302
    assert stored(broadcast)["not_opened_broadcast_id"] == sent_id


def test_the_recipient_count_follows_the_filters_chosen_before_saving(alice_client, editing):
    broadcast, sent, inputs = editing
    count_url = url("broadcast_count", broadcast)

    def counted(**changes) -> str:
        return alice_client.get(count_url, {**inputs, **changes}, **HTMX).content.decode()

    assert "<strong>3</strong> recipients" in counted()
    assert "<strong>1</strong> recipient right now" in counted(
        engagement="engaged", engagement_days="60"
    )
    assert "<strong>0</strong> recipients" in counted(engagement="engaged", engagement_days="30")
    assert "<strong>2</strong> recipients" in counted(not_opened_broadcast_id=str(sent.pk))
    assert stored(broadcast)["not_opened_broadcast_id"] is None


def test_the_send_confirmation_describes_the_filters(alice_client, editing):
    broadcast, sent, inputs = editing
    data = {
        **inputs,
        "engagement": "not_engaged",
        "engagement_days": "1",
        "not_opened_broadcast_id": str(sent.pk),
    }
    response = alice_client.post(url("broadcast_send", broadcast), data)
    body = alice_client.get(response.url).content.decode()
    assert (
        "All active subscribers who have not opened or clicked in the last 1 day and did not "
        "open “Soup season”." in body
    )
    assert "Send to 2 recipients" in body


# --- Resend to non-openers --------------------------------------------------------------------


def test_resend_makes_a_draft_for_those_who_did_not_open_and_opens_it(alice_client, account_a):
    who = people(account_a, "ann", "ben", "cat")
    soup = TagFactory(account=account_a, name="soup")
    for subscriber in who.values():
        TaggingFactory(tag=soup, subscriber=subscriber)
    sent = sent_to(list(who.values()))
    Broadcast.objects.filter(pk=sent.pk).update(
        preview_text="Five soups", body="Soup is back.", include_tag_ids=[soup.id]
    )
    track(sent, who["ann"], OPEN, at=days_ago(59))

    response = alice_client.post(reverse("broadcast_resend_unopened", kwargs={"pk": sent.pk}))
    resend = Broadcast.objects.exclude(pk=sent.pk).get()
    assert response.status_code == 302
    assert response.url == url("broadcast_edit", resend)
    assert resend.state == Broadcast.State.DRAFT
    assert (resend.subject, resend.preview_text, resend.body) == (
        "Soup season",
        "Five soups",
        "Soup is back.",
    )
    assert (resend.include_tag_ids, resend.not_opened_broadcast_id) == ([soup.id], sent.pk)
    body = alice_client.get(response.url).content.decode()
    assert "A new draft for those who did not open it." in body
    assert f'<option value="{sent.pk}" selected>Soup season (' in body
    assert audience_count(audience=resend) == 2


@pytest.mark.parametrize(
    "state",
    [Broadcast.State.DRAFT, Broadcast.State.SCHEDULED, Broadcast.State.SENDING],
)
def test_resend_is_refused_until_the_broadcast_is_sent(alice_client, account_a, state):
    broadcast = draft(account_a, state=state)
    with pytest.raises(ResendRefused, match="Only a sent broadcast can be resent"):
        broadcast_resend_unopened(broadcast=broadcast)

    response = alice_client.post(
        reverse("broadcast_resend_unopened", kwargs={"pk": broadcast.pk}), follow=True
    )
    assert "Only a sent broadcast can be resent to those who did not open it" in (
        response.content.decode()
    )
    assert Broadcast.objects.count() == 1


def test_resend_of_another_accounts_broadcast_is_404_and_makes_nothing(
    charlie_client, alice_client, account_a
):
    sent = sent_to([SubscriberFactory(account=account_a)])
    resend_url = reverse("broadcast_resend_unopened", kwargs={"pk": sent.pk})
    assert charlie_client.post(resend_url).status_code == 404
    assert charlie_client.get(resend_url).status_code == 404
    assert alice_client.get(resend_url).status_code == 302  # a GET changes nothing
    assert Broadcast.objects.count() == 1


def test_non_openers_get_the_resend_and_openers_do_not(make_broadcast, smtp_sink, db):
    """The whole way: send, a person and Apple's proxy open, resend to non-openers, send."""
    original = make_broadcast(recipients=3)
    assert broadcast_send(broadcast=original)
    pipeline.fan_out(broadcast_id=original.pk)
    for first_id, last_id in pipeline.queued_ranges(broadcast_id=original.pk, size=100):
        pipeline.send_batch(broadcast_id=original.pk, first_id=first_id, last_id=last_id)
    wait_until(lambda: sum(smtp_sink.copies.values()) == 3)
    original.refresh_from_db()
    assert original.state == Broadcast.State.SENT
    readers = {s.email: s for s in Subscriber.objects.filter(account=original.account)}
    opened_at = timezone.now()
    track(original, readers["reader0@example.org"], OPEN, at=opened_at)
    track(
        original, readers["reader1@example.org"], OPEN, at=opened_at, machine=Machine.PRIVACY_PROXY
    )

    resend = broadcast_resend_unopened(broadcast=original)
    smtp_sink.copies.clear()
    assert count_and_fan_out(resend) == {"reader1", "reader2"}
    for first_id, last_id in pipeline.queued_ranges(broadcast_id=resend.pk, size=100):
        pipeline.send_batch(broadcast_id=resend.pk, first_id=first_id, last_id=last_id)
    wait_until(lambda: sum(smtp_sink.copies.values()) == 2)
    assert set(smtp_sink.copies) == {"reader1@example.org", "reader2@example.org"}
