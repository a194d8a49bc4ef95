"""The segment pages: the keyset-paged list, create and edit (with every refusal: another
account's tag or form, an unknown comparison, a date that is not one, no name, no condition, a
name taken; nothing is saved), the segment's page with its live member count, delete; and the
broadcast editor's Segment select."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from broadcasts.audience import audience_count
from broadcasts.models import Broadcast
from broadcasts.services import broadcast_resend_unopened
from subscribers.models import Segment, Signup
from subscribers.segments.services import SegmentInvalid, segment_create
from subscribers.signup_forms.services import form_create
from tests.broadcasts.test_views import HTMX, page_inputs, stored
from tests.factories import (
    CustomFieldFactory,
    SegmentFactory,
    SubscriberFactory,
    TagFactory,
    TaggingFactory,
)
from tests.list_pages import keyset_walk_check, queries_for_page

LIST_URL = reverse("segment_list")
CREATE_URL = reverse("segment_create")


def names_on(response) -> list[str]:
    return re.findall(
        r'<a href="/subscribers/segments/\d+/">([^<]+)</a>', response.content.decode()
    )


def management(rows: int = 2, **values) -> dict:
    """The custom field conditions' formset as the page posts it: `rows` rows, blank unless
    given (field-0-key=...)."""
    data = {
        "field-TOTAL_FORMS": str(rows),
        "field-INITIAL_FORMS": "0",
        "field-MIN_NUM_FORMS": "0",
        "field-MAX_NUM_FORMS": "10",
    }
    for n in range(rows):
        data |= {f"field-{n}-key": "", f"field-{n}-op": "equals", f"field-{n}-value": ""}
    return data | values


def posted(name: str = "Soup lovers", **values) -> dict:
    return {"name": name, "include_match": "any", "engagement": "", **management(), **values}


@pytest.fixture
def soup(account_a):
    """The tag soup, on ann and ben (active) and cat (unsubscribed); dan has no tag."""
    tag = TagFactory(account=account_a, name="soup")
    for name in ("ann", "ben", "cat"):
        state = "unsubscribed" if name == "cat" else "active"
        subscriber = SubscriberFactory(account=account_a, email=f"{name}@example.org", state=state)
        TaggingFactory(tag=tag, subscriber=subscriber)
    SubscriberFactory(account=account_a, email="dan@example.org")
    return tag


# --- List -------------------------------------------------------------------------------------


def test_an_account_without_segments_is_invited_to_create_one(alice_client):
    body = alice_client.get(LIST_URL).content.decode()
    assert "Group subscribers with a segment" in body
    assert f'href="{CREATE_URL}"' in body
    assert "<table" not in body


def test_the_list_shows_the_accounts_segments_newest_first(alice_client, account_a, account_b):
    SegmentFactory(account=account_a, name="Soup lovers")
    SegmentFactory(account=account_a, name="Bread people")
    SegmentFactory(account=account_b, name="Charlie's segment")
    assert names_on(alice_client.get(LIST_URL)) == ["Bread people", "Soup lovers"]


def test_older_and_newer_links_walk_every_segment_once_without_offset(alice_client, account_a):
    segments = [SegmentFactory(account=account_a, name=f"Segment {n}") for n in range(120)]
    newest_first = [segment.name for segment in reversed(segments)]
    keyset_walk_check(alice_client, LIST_URL, names_on=names_on, newest_first=newest_first)


def test_the_list_costs_the_same_queries_for_3_segments_as_for_30(alice_client, account_a):
    for n in range(3):
        SegmentFactory(account=account_a, name=f"Few {n}")
    few = queries_for_page(alice_client, LIST_URL)
    for n in range(27):
        SegmentFactory(account=account_a, name=f"More {n}")
    assert queries_for_page(alice_client, LIST_URL) == few


def test_the_subscriber_list_leads_to_the_segments_and_their_pages_sit_under_subscribers(
    alice_client, account_a
):
    assert f'href="{LIST_URL}"' in alice_client.get(reverse("subscriber_list")).content.decode()
    body = alice_client.get(LIST_URL).content.decode()
    assert re.search(r'href="/subscribers/"[^>]*aria-current="page"', body)


# --- Create -----------------------------------------------------------------------------------


def test_creating_a_segment_opens_its_page_which_counts_its_active_members(
    alice_client, account_a, soup
):
    response = alice_client.post(CREATE_URL, posted(include_tag_ids=[soup.id]))

    segment = Segment.objects.get()
    assert (segment.account, segment.name, segment.include_tag_ids) == (
        account_a,
        "Soup lovers",
        [soup.id],
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("segment_detail", args=[segment.id])
    page = alice_client.get(response["Location"]).content.decode()
    assert "Segment “Soup lovers” created." in page
    assert "All active subscribers tagged with any of “soup”." in page
    assert f'hx-get="{reverse("segment_count", args=[segment.id])}"' in page
    count = alice_client.get(reverse("segment_count", args=[segment.id]), **HTMX)
    assert "<strong>2</strong> active subscribers in this segment" in count.content.decode()


def test_without_javascript_the_count_link_counts_in_the_page(alice_client, account_a, soup):
    segment = SegmentFactory(account=account_a, include_tag_ids=[soup.id])
    response = alice_client.get(reverse("segment_count", args=[segment.id]))
    assert response["Location"] == reverse("segment_detail", args=[segment.id]) + "?count=1"
    page = alice_client.get(response["Location"]).content.decode()
    assert "<strong>2</strong> active subscribers" in page


def test_the_count_shown_is_the_broadcast_audience_count(alice_client, account_a, soup):
    segment = SegmentFactory(
        account=account_a, include_tag_ids=[soup.id], engagement="not_engaged", engagement_days=9
    )
    broadcast = Broadcast.objects.create(account=account_a, segment_id=segment.id)
    count = alice_client.get(reverse("segment_count", args=[segment.id]), **HTMX)
    assert audience_count(audience=broadcast) == 2
    assert "<strong>2</strong>" in count.content.decode()


def test_every_condition_is_saved_and_described(alice_client, account_a, soup):
    vip = TagFactory(account=account_a, name="vip")
    home = form_create(account=account_a, name="Home")
    CustomFieldFactory(account=account_a, key="city", label="City")
    CustomFieldFactory(account=account_a, key="joined", label="Joined")
    data = posted(
        name="  Paris   soup  ",
        include_tag_ids=[soup.id],
        exclude_tag_ids=[vip.id],
        form_ids=[home.id],
        engagement="engaged",
        engagement_days="30",
        **management(
            3,
            **{
                "field-0-key": "city",
                "field-0-op": "contains",
                "field-0-value": " Paris ",
                "field-1-key": "joined",
                "field-1-op": "before",
                "field-1-value": "2025-03-31",
            },
        ),
    )
    response = alice_client.post(CREATE_URL, data)
    assert response.status_code == 302
    segment = Segment.objects.get()
    assert segment.name == "Paris soup"
    assert (segment.exclude_tag_ids, segment.form_ids) == ([vip.id], [home.id])
    assert (segment.engagement, segment.engagement_days) == ("engaged", 30)
    assert segment.field_conditions == [
        {"key": "city", "op": "contains", "value": "Paris"},
        {"key": "joined", "op": "before", "value": "2025-03-31"},
    ]
    page = alice_client.get(response["Location"]).content.decode()
    assert (
        "All active subscribers who opened or clicked in the last 30 days, tagged with any of "
        "“soup”, who subscribed through “Home”, whose City contains “Paris” and Joined is "
        "before “2025-03-31”, except those tagged with “vip”." in page
    )


def refused(client, url: str, data: dict, message: str) -> None:
    before = list(Segment.objects.order_by("id").values())
    response = client.post(url, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was saved" in body
    assert message in body, body
    assert list(Segment.objects.order_by("id").values()) == before


def test_another_accounts_tag_is_refused(alice_client, account_a, account_b, soup):
    theirs = TagFactory(account=account_b, name="theirs")
    refused(
        alice_client,
        CREATE_URL,
        posted(include_tag_ids=[soup.id, theirs.id]),
        f"Choose among your tags: {theirs.id} is not one of them.",
    )
    refused(
        alice_client,
        CREATE_URL,
        posted(exclude_tag_ids=[theirs.id]),
        f"Choose among your tags: {theirs.id} is not one of them.",
    )


def test_another_accounts_form_is_refused(alice_client, account_a, account_b):
    theirs = form_create(account=account_b, name="Theirs")
    refused(
        alice_client,
        CREATE_URL,
        posted(form_ids=[theirs.id]),
        f"Choose among your forms: {theirs.id} is not one of them.",
    )


@pytest.mark.parametrize(
    "row, message",
    [
        (
            {"field-0-key": "city", "field-0-op": "matches", "field-0-value": "x"},
            "Choose how to compare among those offered.",
        ),
        (
            {"field-0-key": "city", "field-0-op": "before", "field-0-value": "next week"},
            "“is before” compares dates: enter one such as 2025-03-31 (year-month-day).",
        ),
        (
            {"field-0-key": "city", "field-0-op": "after", "field-0-value": "2025-02-30"},
            "“is after” compares dates",
        ),
        (
            {"field-0-key": "plan", "field-0-op": "equals", "field-0-value": "pro"},
            "Choose one of your custom fields: “plan” is not one of them.",
        ),
        (
            {"field-0-key": "city", "field-0-op": "equals", "field-0-value": ""},
            "Enter the value to compare with.",
        ),
        (
            {"field-0-key": "", "field-0-op": "equals", "field-0-value": "Paris"},
            "Choose the custom field to compare.",
        ),
        (
            {"field-0-key": "city", "field-0-op": "equals", "field-0-value": "Pa\nris"},
            "Enter a value on one line",
        ),
    ],
    ids=[
        "unknown op",
        "not a date",
        "no such date",
        "foreign field",
        "no value",
        "no field",
        "two lines",
    ],
)
def test_a_bad_field_condition_is_refused(alice_client, account_a, account_b, row, message):
    CustomFieldFactory(account=account_a, key="city", label="City")
    CustomFieldFactory(account=account_b, key="plan", label="Plan")
    refused(alice_client, CREATE_URL, posted(**management(**row)), message)


def test_a_segment_needs_a_name_and_a_condition_and_a_name_of_its_own(
    alice_client, account_a, soup
):
    refused(alice_client, CREATE_URL, posted(name="   ", include_tag_ids=[soup.id]), "required")
    refused(
        alice_client,
        CREATE_URL,
        posted(),
        "Add at least one condition: without any, the segment would be your whole list.",
    )
    SegmentFactory(account=account_a, name="Soup lovers")
    refused(
        alice_client,
        CREATE_URL,
        posted(name="SOUP LOVERS", include_tag_ids=[soup.id]),
        "You already have a segment named “SOUP LOVERS”.",
    )


def test_a_tampered_conditions_formset_is_refused(alice_client, account_a, soup):
    data = posted(include_tag_ids=[soup.id])
    del data["field-TOTAL_FORMS"]
    refused(alice_client, CREATE_URL, data, "ManagementForm data is missing")
    refused(
        alice_client,
        CREATE_URL,
        posted(include_tag_ids=[soup.id], **management(11)),
        "Please submit at most 10 forms.",
    )


def test_the_service_refuses_what_the_form_would_not_offer(account_a, account_b, soup):
    """The API will call the services without the page's form: they check every value too."""
    theirs = TagFactory(account=account_b)
    CustomFieldFactory(account=account_a, key="city", label="City")
    cases = [
        ({"include_tag_ids": [theirs.id]}, f"Not one of your tags: {theirs.id}."),
        ({"form_ids": [form_create(account=account_b, name="X").id]}, "Not one of your forms"),
        (
            {"field_conditions": [{"key": "city", "op": "like", "value": "%"}]},
            "Choose how to compare",
        ),
        ({"field_conditions": [{"key": "city", "op": "after", "value": "x"}]}, "compares dates"),
        ({"include_tag_ids": [soup.id], "include_match": "most"}, "Match any or all"),
        ({"engagement": "engaged", "engagement_days": 0}, "number of days"),
        ({"not_opened_broadcast_id": 10**12}, "Choose one of your broadcasts that was sent."),
        ({"field_conditions": ["city is Paris"]}, "Give each field condition as a key"),
        ({"field_conditions": [{"key": "city", "op": "is_set"}] * 11}, "up to 10 field"),
        ({}, "Add at least one condition"),
    ]
    for filters, message in cases:
        with pytest.raises(SegmentInvalid, match=re.escape(message)):
            segment_create(account=account_a, name="Any", **filters)
    assert not Segment.objects.exists()


# --- Edit -------------------------------------------------------------------------------------


def test_editing_shows_the_saved_conditions_and_saves_the_changes(alice_client, account_a, soup):
    CustomFieldFactory(account=account_a, key="city", label="City")
    segment = segment_create(
        account=account_a,
        name="Soup lovers",
        include_tag_ids=[soup.id],
        field_conditions=[{"key": "city", "op": "equals", "value": "Paris"}],
    )
    url = reverse("segment_edit", args=[segment.id])
    page = alice_client.get(url)
    body = page.content.decode()
    assert 'value="Soup lovers"' in body
    assert re.search(rf'value="{soup.id}"[^>]*checked', body)
    assert 'name="field-0-value" value="Paris"' in body
    # The saved condition and two blank rows.
    assert body.count('name="field-2-key"') == 1 and 'name="field-3-key"' not in body

    data = page_inputs(page, "segment-form")
    data |= {"name": "Soup fans", "field-0-value": "Lyon", "field-1-key": "city"}
    data |= {"field-1-op": "is_set"}
    response = alice_client.post(url, data)
    assert response.status_code == 302
    segment.refresh_from_db()
    assert segment.name == "Soup fans"
    assert segment.field_conditions == [
        {"key": "city", "op": "equals", "value": "Lyon"},
        {"key": "city", "op": "is_set", "value": ""},
    ]


def test_a_deleted_tag_stays_in_the_segment_when_it_is_saved_again(alice_client, account_a, soup):
    bread = TagFactory(account=account_a, name="bread")
    segment = segment_create(
        account=account_a, name="Both", include_tag_ids=[soup.id, bread.id], include_match="all"
    )
    bread_id = bread.id
    bread.delete()
    url = reverse("segment_edit", args=[segment.id])
    page = alice_client.get(url)
    assert "A deleted tag" in page.content.decode()

    data = page_inputs(page, "segment-form") | {"name": "Both, renamed"}
    assert alice_client.post(url, data).status_code == 302
    segment.refresh_from_db()
    assert segment.include_tag_ids == sorted([soup.id, bread_id])
    assert audience_count(audience=segment) == 0


# --- Delete -----------------------------------------------------------------------------------


def test_deleting_asks_first_then_its_broadcasts_go_to_nobody(alice_client, account_a, soup):
    segment = SegmentFactory(account=account_a, name="Soup lovers", include_tag_ids=[soup.id])
    segment_id = segment.id
    draft = Broadcast.objects.create(account=account_a, subject="Soup", segment_id=segment_id)
    url = reverse("segment_delete", args=[segment_id])

    confirm = alice_client.get(url).content.decode()
    assert "Delete the segment “Soup lovers”?" in confirm
    assert "1 broadcast not yet sent is addressed to it" in confirm
    assert Segment.objects.exists()

    response = alice_client.post(url)
    assert response["Location"] == LIST_URL
    assert not Segment.objects.exists()
    assert audience_count(audience=draft) == 0
    editor = alice_client.get(reverse("broadcast_edit", args=[draft.id])).content.decode()
    assert f'<option value="{segment_id}" selected>A deleted segment: nobody' in editor


# --- The broadcast editor's Segment ---------------------------------------------------------


@pytest.fixture
def editing(alice_client, account_a, soup):
    segment = SegmentFactory(account=account_a, name="Soup lovers", include_tag_ids=[soup.id])
    broadcast = Broadcast.objects.create(account=account_a, subject="Soup season", body="Hi")
    page = alice_client.get(reverse("broadcast_edit", args=[broadcast.id]))
    return segment, broadcast, page_inputs(page), page.content.decode()


def test_the_editor_offers_the_accounts_segments_and_counts_the_one_chosen(
    alice_client, account_a, account_b, editing
):
    segment, broadcast, inputs, body = editing
    SegmentFactory(account=account_b, name="Charlie's segment")
    assert f'<option value="{segment.id}">Soup lovers</option>' in body
    assert "Charlie's segment" not in body
    count_url = reverse("broadcast_count", args=[broadcast.id])
    everyone = alice_client.get(count_url, inputs, **HTMX).content.decode()
    assert "<strong>3</strong> recipients" in everyone  # ann, ben, dan
    chosen = alice_client.get(count_url, {**inputs, "segment_id": segment.id}, **HTMX)
    assert "<strong>2</strong> recipients" in chosen.content.decode()

    response = alice_client.post(
        reverse("broadcast_edit", args=[broadcast.id]), {**inputs, "segment_id": segment.id}
    )
    assert response.status_code == 302
    assert stored(broadcast)["segment_id"] == segment.id
    confirm = alice_client.post(
        reverse("broadcast_send", args=[broadcast.id]), {**inputs, "segment_id": segment.id}
    )
    page = alice_client.get(confirm["Location"]).content.decode()
    assert "All active subscribers in the segment “Soup lovers”." in page


def test_the_editor_refuses_another_accounts_segment(alice_client, account_b, editing):
    _segment, broadcast, inputs, _body = editing
    theirs = SegmentFactory(account=account_b, name="Theirs")
    before = stored(broadcast)
    response = alice_client.post(
        reverse("broadcast_edit", args=[broadcast.id]), {**inputs, "segment_id": theirs.id}
    )
    assert response.status_code == 400
    assert "Choose one of your segments." in response.content.decode()
    assert stored(broadcast) == before


def test_signups_count_only_through_the_accounts_own_form(alice_client, account_a):
    """A smoke test of the form condition through the pages: ann joined through Home."""
    home = form_create(account=account_a, name="Home")
    ann = SubscriberFactory(account=account_a, email="ann@example.org")
    Signup.objects.create(
        account=account_a, form=home, subscriber=ann, wording_version=1, outcome="confirmed"
    )
    SubscriberFactory(account=account_a, email="ben@example.org")
    response = alice_client.post(CREATE_URL, posted(name="Home people", form_ids=[home.id]))
    segment = Segment.objects.get()
    assert response["Location"] == reverse("segment_detail", args=[segment.id])
    count = alice_client.get(reverse("segment_count", args=[segment.id]), **HTMX)
    assert "<strong>1</strong> active subscriber in this segment" in count.content.decode()


def test_a_resend_to_non_openers_keeps_the_segment(account_a, soup):
    segment = SegmentFactory(account=account_a, include_tag_ids=[soup.id])
    sent = Broadcast.objects.create(
        account=account_a, subject="Soup", state=Broadcast.State.SENT, segment_id=segment.id
    )
    resend = broadcast_resend_unopened(broadcast=sent)
    assert (resend.segment_id, resend.not_opened_broadcast_id) == (segment.id, sent.id)
