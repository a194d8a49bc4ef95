"""The public archive (/p/<slug>/): an account's published, sent broadcasts, each on a page of
its own with link preview tags and the account's signup form, and as RSS; everything shown is
sanitised or escaped, whatever the creator (or anyone) typed. The creator publishes in the
editor or, once sent, on the progress page, and sets the archive's address and form."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from broadcasts.models import Broadcast
from convertkit.services import account_public_slug_ensure
from subscribers.models import Subscriber
from subscribers.signup_forms.services import form_create
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

HOSTILE = '"><script>alert(1)</script>'


def sent_broadcast(account, *, public=True, state=Broadcast.State.SENT, **fields) -> Broadcast:
    values = {
        "subject": "Soup season, {{ subscriber.first_name | default: 'friend' }}",
        "preview_text": "Five soups for cold evenings",
        "body": "Hello {{ subscriber.first_name | default: 'friend' }},\n\nSoup is back.",
        **fields,
    }
    return Broadcast.objects.create(
        account=account,
        public=public,
        state=state,
        send_started_at=timezone.now() - timedelta(hours=1),
        sent_at=timezone.now() if state == Broadcast.State.SENT else None,
        **values,
    )


@pytest.fixture
def visitor():
    return Client(REMOTE_ADDR="203.0.113.7")


@pytest.fixture
def slug(account_a):
    return account_public_slug_ensure(account=account_a)


def entry_path(slug: str, broadcast: Broadcast, title: str) -> str:
    return f"/p/{slug}/{broadcast.pk}/{title}/"


# The list ------------------------------------------------------------------------------------


def test_archive_lists_only_the_accounts_public_sent_broadcasts_newest_first(
    account_a, account_b, slug, visitor
):
    older = sent_broadcast(account_a, subject="Older one")
    sending = sent_broadcast(account_a, subject="Going out now", state=Broadcast.State.SENDING)
    sent_broadcast(account_a, subject="Private one", public=False)
    sent_broadcast(account_a, subject="Draft one", state=Broadcast.State.DRAFT)
    sent_broadcast(account_a, subject="Cancelled one", state=Broadcast.State.CANCELLED)
    sent_broadcast(account_a, subject="Course day", kind=Broadcast.Kind.SEQUENCE_EMAIL)
    sent_broadcast(account_b, subject="Charlie's public one")

    response = visitor.get(f"/p/{slug}/")

    assert response.status_code == 200
    titles = re.findall(r'<li><a href="[^"]+">([^<]+)</a>', response.content.decode())
    assert titles == ["Going out now", "Older one"]
    assert f'href="{settings.SITE_URL}/p/{slug}/{sending.pk}/going-out-now/"' in (
        response.content.decode()
    )
    assert older.pk


def test_titles_are_the_subject_rendered_for_nobody(account_a, slug, visitor):
    sent_broadcast(account_a)

    page = visitor.get(f"/p/{slug}/").content.decode()

    assert "Soup season, friend" in page
    assert "Jane" not in page and "{{" not in page


def test_archive_is_paged(account_a, slug, visitor):
    for n in range(21):
        sent_broadcast(account_a, subject=f"Issue {n}")

    first = visitor.get(f"/p/{slug}/").content.decode()
    older = re.search(r'href="(/p/[^"]+\?after=\d+)"', first)[1]
    second = visitor.get(older).content.decode()

    assert "Issue 20" in first and "Issue 1<" in first and "Issue 0<" not in first
    assert "Issue 0<" in second


def test_unknown_slug_and_an_empty_archive_are_404(account_a, slug, visitor):
    sent_broadcast(account_a, public=False)

    assert visitor.get("/p/nobody-here/").status_code == 404
    assert visitor.get(f"/p/{slug}/").status_code == 404
    assert visitor.get(f"/p/{slug}/feed.xml").status_code == 404
    assert visitor.get("/p/..%2F/").status_code == 404


# One broadcast --------------------------------------------------------------------------------


def test_entry_shows_title_date_content_and_link_preview_tags(account_a, slug, visitor):
    broadcast = sent_broadcast(
        account_a,
        body_format=Broadcast.BodyFormat.HTML,
        body='<p>Hello {{ subscriber.first_name | default: "friend" }}</p>'
        '<img src="https://cdn.ann.example/soup.jpg" alt="Soup"><img src="https://x.example/2.png">',
    )
    url = f"{settings.SITE_URL}/p/{slug}/{broadcast.pk}/soup-season-friend/"

    response = visitor.get(entry_path(slug, broadcast, "soup-season-friend"))

    page = response.content.decode()
    assert response.status_code == 200
    assert '<h1 class="break">Soup season, friend</h1>' in page
    assert "<p>Hello friend</p>" in page
    assert timezone.localtime(broadcast.sent_at).strftime("%Y") in page
    assert f'<link rel="canonical" href="{url}">' in page
    assert '<meta property="og:title" content="Soup season, friend">' in page
    assert '<meta property="og:description" content="Five soups for cold evenings">' in page
    assert f'<meta property="og:url" content="{url}">' in page
    assert '<meta property="og:type" content="article">' in page
    assert '<meta property="og:image" content="https://cdn.ann.example/soup.jpg">' in page
    assert '<meta name="twitter:card" content="summary_large_image">' in page
    assert "Unsubscribe" not in page and "/t/o/" not in page


def test_entry_with_the_wrong_title_or_none_redirects_to_its_url(account_a, slug, visitor):
    broadcast = sent_broadcast(account_a)
    url = f"{settings.SITE_URL}/p/{slug}/{broadcast.pk}/soup-season-friend/"

    wrong = visitor.get(entry_path(slug, broadcast, "old-title"))
    bare = visitor.get(f"/p/{slug}/{broadcast.pk}/")

    assert (wrong.status_code, wrong["Location"]) == (301, url)
    assert (bare.status_code, bare["Location"]) == (301, url)


@pytest.mark.parametrize("case", ["private", "draft", "other_account", "missing"])
def test_entry_of_what_is_not_archived_here_is_404(account_a, account_b, slug, visitor, case):
    sent_broadcast(account_a)
    broadcast = {
        "private": lambda: sent_broadcast(account_a, public=False),
        "draft": lambda: sent_broadcast(account_a, state=Broadcast.State.DRAFT),
        "other_account": lambda: sent_broadcast(account_b),
        "missing": lambda: Broadcast(pk=999_999),
    }[case]()

    assert visitor.get(entry_path(slug, broadcast, "soup-season-friend")).status_code == 404


def test_hostile_subject_preview_text_body_and_name_are_escaped_or_removed(
    account_a, slug, visitor
):
    account_a.name = f"Ann {HOSTILE}"
    account_a.save()
    broadcast = sent_broadcast(
        account_a,
        subject=f"Hi {HOSTILE}",
        preview_text=f"Read {HOSTILE}",
        body_format=Broadcast.BodyFormat.HTML,
        body=(
            '<script>alert(2)</script><img src="https://x.example/a.png" onerror="alert(3)">'
            '<a href="javascript:alert(4)">click</a><svg onload="alert(5)"></svg>'
            '<img src="javascript:alert(6)">'
        ),
    )
    pages = [
        visitor.get(f"/p/{slug}/"),
        visitor.get(f"/p/{slug}/{broadcast.pk}/", follow=True),
    ]

    for response in pages:
        page = response.content.decode()
        assert response.status_code == 200
        assert "<script" not in page.lower()
        assert "onerror" not in page and "onload" not in page and "javascript:" not in page
        assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "default-src 'none'" in response["Content-Security-Policy"]
        assert response["X-Content-Type-Options"] == "nosniff"
    entry = pages[1].content.decode()
    assert (
        '<meta property="og:title" content="Hi &quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">'
        in entry
    )
    assert 'content="https://x.example/a.png"' in entry


# The feed -----------------------------------------------------------------------------------


def test_feed_is_valid_rss_with_escaped_sanitised_content(account_a, slug, visitor):
    sent_broadcast(account_a, subject="Older")
    hostile = sent_broadcast(
        account_a,
        subject=f"Hi {HOSTILE} ]]>",
        body_format=Broadcast.BodyFormat.HTML,
        body='<p>Hello ]]> <b>friend</b></p><script>alert(2)</script><a href="javascript:x">x</a>',
    )
    sent_broadcast(account_a, subject="Private", public=False)

    response = visitor.get(f"/p/{slug}/feed.xml")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/rss+xml")
    channel = ET.fromstring(response.content).find("channel")
    assert channel.findtext("title") == "Ann's Kitchen"
    assert channel.findtext("link") == f"{settings.SITE_URL}/p/{slug}/"
    items = channel.findall("item")
    assert [item.findtext("title") for item in items] == [f"Hi {HOSTILE} ]]>", "Older"]
    description = items[0].findtext("description")
    assert "<p>Hello ]]&gt; <b>friend</b></p>" in description
    assert "script" not in description and "javascript:" not in description
    assert items[0].findtext("link") == (
        f"{settings.SITE_URL}/p/{slug}/{hostile.pk}/hi-scriptalert1script/"
    )
    assert b"<script" not in response.content


# The signup form at the bottom ----------------------------------------------------------------


def test_the_archive_form_at_the_bottom_subscribes(account_a, slug, visitor):
    form = form_create(account=account_a, name="Newsletter", double_opt_in=False)
    account_a.archive_form_id = form.pk
    account_a.save()
    broadcast = sent_broadcast(account_a)

    page = visitor.get(entry_path(slug, broadcast, "soup-season-friend")).content.decode()
    action = re.search(r'<form action="([^"]+)" method="post"', page)[1]
    response = visitor.post(action.removeprefix(settings.SITE_URL), {"email": "new@example.org"})

    assert response.status_code == 200
    assert Subscriber.objects.get(account=account_a, email="new@example.org")
    assert page.index("<article>") < page.index(action)


def test_an_archived_form_or_another_accounts_shows_no_form(account_a, account_b, slug, visitor):
    other = form_create(account=account_b, name="Charlie's")
    account_a.archive_form_id = other.pk
    account_a.save()
    broadcast = sent_broadcast(account_a)

    page = visitor.get(entry_path(slug, broadcast, "soup-season-friend")).content.decode()

    assert "<form" not in page and other.uid not in page


# Publishing ---------------------------------------------------------------------------------


def test_publishing_a_sent_broadcast_from_its_progress_page(alice_client, account_a):
    broadcast = sent_broadcast(account_a, public=False)

    response = alice_client.post(f"/broadcasts/{broadcast.pk}/public/", {"public": "1"})

    broadcast.refresh_from_db()
    account_a.refresh_from_db()
    assert response.status_code == 302
    assert broadcast.public and account_a.public_slug == "anns-kitchen"
    progress = alice_client.get(f"/broadcasts/{broadcast.pk}/progress/").content.decode()
    assert f"{settings.SITE_URL}/p/anns-kitchen/{broadcast.pk}/soup-season-friend/" in progress
    assert "Take it out of the archive" in progress


def test_taking_it_out_of_the_archive(bob_client, account_a, slug, visitor):
    broadcast = sent_broadcast(account_a)

    bob_client.post(f"/broadcasts/{broadcast.pk}/public/", {"public": "0"})

    broadcast.refresh_from_db()
    assert not broadcast.public
    assert visitor.get(entry_path(slug, broadcast, "soup-season-friend")).status_code == 404


def test_another_accounts_broadcast_cannot_be_published(charlie_client, account_a):
    broadcast = sent_broadcast(account_a, public=False)

    response = charlie_client.post(f"/broadcasts/{broadcast.pk}/public/", {"public": "1"})

    broadcast.refresh_from_db()
    account_a.refresh_from_db()
    assert response.status_code == 404
    assert not broadcast.public and account_a.public_slug is None


@pytest.mark.parametrize("value", ["", "yes", "2"])
def test_a_bad_toggle_value_changes_nothing(alice_client, account_a, value):
    broadcast = sent_broadcast(account_a, public=False)

    alice_client.post(f"/broadcasts/{broadcast.pk}/public/", {"public": value})

    broadcast.refresh_from_db()
    assert not broadcast.public


def test_the_editor_saves_publish_to_the_archive(alice_client, account_a):
    broadcast = Broadcast.objects.create(account=account_a, subject="Hi", body="Hello")
    data = {
        "subject": "Hi",
        "preview_text": "",
        "body_format": "markdown",
        "body": "Hello",
        "description": "",
        "include_match": "any",
        "engagement": "",
        "public": "on",
    }

    page = alice_client.get(f"/broadcasts/{broadcast.pk}/").content.decode()
    response = alice_client.post(f"/broadcasts/{broadcast.pk}/", data)

    broadcast.refresh_from_db()
    assert "Publish to the archive" in page
    assert response.status_code == 302
    assert broadcast.public


def test_handles_come_from_the_name_and_are_unique(db):
    first = AccountFactory(name="Ann's Kitchen")
    second = AccountFactory(name="Ann’s  Kitchen!")
    tiny = AccountFactory(name="A")
    symbols = AccountFactory(name="★★★")

    assert account_public_slug_ensure(account=first) == "anns-kitchen"
    assert account_public_slug_ensure(account=second) == "anns-kitchen-2"
    assert account_public_slug_ensure(account=first) == "anns-kitchen"
    assert account_public_slug_ensure(account=tiny) == "a-news"
    assert account_public_slug_ensure(account=symbols) == "newsletter"


# Settings -----------------------------------------------------------------------------------


def test_archive_settings_save_the_address_and_form(alice_client, account_a):
    form = form_create(account=account_a, name="Newsletter")

    page = alice_client.get("/settings/archive/").content.decode()
    response = alice_client.post(
        "/settings/archive/", {"public_slug": "Ann-Soups", "archive_form_id": str(form.pk)}
    )

    account_a.refresh_from_db()
    assert 'value="anns-kitchen"' in page
    assert response.status_code == 302
    assert (account_a.public_slug, account_a.archive_form_id) == ("ann-soups", form.pk)
    assert (
        f"{settings.SITE_URL}/p/ann-soups/"
        in alice_client.get("/settings/archive/").content.decode()
    )


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("ab", "Use 3 to 50 characters."),
        ("ann soups", "lower-case letters, digits and single hyphens"),
        ("-ann", "lower-case letters, digits and single hyphens"),
        ("ann--soups", "lower-case letters, digits and single hyphens"),
        ('"><script>', "lower-case letters, digits and single hyphens"),
        ("charlies-garage", "“charlies-garage” is taken."),
    ],
)
def test_a_bad_or_taken_address_is_refused_and_changes_nothing(
    alice_client, account_a, account_b, slug, message
):
    account_public_slug_ensure(account=account_b)
    account_public_slug_ensure(account=account_a)

    response = alice_client.post("/settings/archive/", {"public_slug": slug, "archive_form_id": ""})

    account_a.refresh_from_db()
    assert response.status_code == 400
    assert message in response.content.decode()
    assert account_a.public_slug == "anns-kitchen"
    assert '"><script>' not in response.content.decode()


def test_another_accounts_form_is_refused_and_changes_nothing(alice_client, account_a, account_b):
    other = form_create(account=account_b, name="Charlie's")

    response = alice_client.post(
        "/settings/archive/", {"public_slug": "ann-soups", "archive_form_id": str(other.pk)}
    )

    account_a.refresh_from_db()
    assert response.status_code == 400
    assert "Choose one of your forms." in response.content.decode()
    assert (account_a.public_slug, account_a.archive_form_id) == (None, None)
