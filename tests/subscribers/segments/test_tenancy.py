"""charlie (account B) gets 404 for every segment URL of account A, by GET and by POST, and
nothing changes; bob (a member of A) can use the same pages."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, reverse

from broadcasts.models import Broadcast
from subscribers.models import Segment
from subscribers.segments import urls as segment_urls
from tests.factories import SegmentFactory, SubscriberFactory, TagFactory, TaggingFactory

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def segment_of_a(account_a):
    tag = TagFactory(account=account_a, name="soup")
    TaggingFactory(tag=tag, subscriber=SubscriberFactory(account=account_a))
    return SegmentFactory(account=account_a, name="Soup lovers", include_tag_ids=[tag.id])


def requests_for(segment: Segment) -> dict[str, tuple[str, dict]]:
    """Every segment view that takes an id: its URL and a POST that would change something."""
    posted = {
        "name": "Stolen",
        "include_match": "any",
        "include_tag_ids": segment.include_tag_ids,
        "field-TOTAL_FORMS": "0",
        "field-INITIAL_FORMS": "0",
    }
    return {
        name: (reverse(name, args=[segment.id]), posted if name == "segment_edit" else {})
        for name in ("segment_detail", "segment_count", "segment_edit", "segment_delete")
    }


def snapshot() -> list:
    return [
        list(Segment.objects.order_by("id").values()),
        list(Broadcast.objects.order_by("id").values()),
    ]


def test_every_segment_view_with_an_id_is_covered(segment_of_a):
    with_ids = {
        pattern.name
        for pattern in segment_urls.urlpatterns
        if isinstance(pattern, URLPattern) and "<int:" in str(pattern.pattern)
    }
    assert with_ids == set(requests_for(segment_of_a))


@pytest.mark.parametrize(
    "name", ["segment_detail", "segment_count", "segment_edit", "segment_delete"]
)
def test_charlie_gets_404_for_account_a_segments_and_changes_nothing(
    charlie_client, segment_of_a, name
):
    url, data = requests_for(segment_of_a)[name]
    before = snapshot()
    assert charlie_client.get(url).status_code == 404
    assert charlie_client.get(url, **HTMX).status_code == 404
    assert charlie_client.post(url, data).status_code == 404
    assert snapshot() == before


def test_charlies_list_and_broadcast_editor_never_show_account_a_segments(
    bob_client, charlie_client, account_b, segment_of_a
):
    assert "Soup lovers" in bob_client.get(reverse("segment_list")).content.decode()
    assert "Soup lovers" not in charlie_client.get(reverse("segment_list")).content.decode()
    theirs = Broadcast.objects.create(account=account_b, subject="Charlie's")
    editor = charlie_client.get(reverse("broadcast_edit", args=[theirs.id])).content.decode()
    assert "Soup lovers" not in editor
    before = snapshot()
    response = charlie_client.post(
        reverse("broadcast_edit", args=[theirs.id]),
        {"subject": "x", "body_format": "markdown", "segment_id": segment_of_a.id},
    )
    assert response.status_code == 400
    assert snapshot() == before


# name: (bob's GET status, what the page shows, bob's POST status, where it redirects, what
# changed)
BOB_CASES = {
    "segment_detail": (200, "Soup lovers", 200, None, None),
    "segment_count": (
        200,
        "<strong>1</strong> active subscriber",
        200,
        None,
        None,
    ),
    "segment_edit": (
        200,
        'value="Soup lovers"',
        302,
        lambda s: reverse("segment_detail", args=[s.id]),
        lambda s: Segment.objects.get(pk=s.pk).name == "Stolen",
    ),
    "segment_delete": (
        200,
        "Delete the segment “Soup lovers”?",
        302,
        lambda s: reverse("segment_list"),
        lambda s: not Segment.objects.exists(),
    ),
}


def test_every_view_bob_uses_is_covered(segment_of_a):
    assert set(BOB_CASES) == set(requests_for(segment_of_a))


@pytest.mark.parametrize("name", sorted(BOB_CASES))
def test_bob_a_member_of_account_a_can_use_the_same_pages(bob_client, segment_of_a, name):
    get_status, shown, post_status, target, changed = BOB_CASES[name]
    url, data = requests_for(segment_of_a)[name]
    before = snapshot()
    response = bob_client.get(url, **HTMX)
    assert response.status_code == get_status
    assert shown in response.content.decode()
    response = bob_client.post(url, data, **HTMX)
    assert response.status_code == post_status
    if target is None:
        assert snapshot() == before
    else:
        assert response["Location"] == target(segment_of_a)
        assert changed(segment_of_a)
