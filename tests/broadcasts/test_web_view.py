"""A message's web version ("View in browser", /w/<token>/): linked from every email, rendered
for nobody (no recipient's data, no unsubscribe link, no pixel, original links), sanitised, for
broadcasts, sequence emails and automation emails alike; a token that does not verify is 404."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client

from broadcasts.models import Broadcast
from broadcasts.public.links import web_view_url
from broadcasts.rendering import BroadcastRenderer, frozen_parts, preview
from broadcasts.services import broadcast_send
from subscribers.models import Subscriber
from subscribers.signup_forms.services import form_create
from tracking.models import Event
from tracking.tokens import open_token, web_view_token

pytestmark = pytest.mark.django_db

BODY = (
    "Hello {{ subscriber.first_name | default: 'friend' }} ({{ subscriber.email }}),\n\n"
    "Read [the recipes](https://ann.example/recipes).\n\n"
    "[Leave]({{ unsubscribe_url }})"
)


@pytest.fixture
def reader(account_a):
    return Subscriber.objects.create(account=account_a, email="rita@example.org", first_name="Rita")


@pytest.fixture
def sent(account_a, reader, eager_celery, django_capture_on_commit_callbacks):
    broadcast = Broadcast.objects.create(
        account=account_a, subject="Soup, {{ subscriber.first_name }}", body=BODY
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert broadcast_send(broadcast=broadcast)
    broadcast.refresh_from_db()
    return broadcast


def path_of(url: str) -> str:
    assert url.startswith(settings.SITE_URL + "/w/")
    return url.removeprefix(settings.SITE_URL)


def test_every_sent_email_links_to_its_web_version_untracked(sent, reader):
    url = web_view_url(sent)
    delivery = sent.delivery_set.get()

    message = BroadcastRenderer(sent).message(delivery_id=delivery.pk, subscriber=reader)
    html = message.alternatives[0][0]

    assert re.search(rf'<a href="{re.escape(url)}"[^>]*>View in browser</a>', html)
    assert "/t/c/" in html  # the body's links are tracked; the web view link is not
    assert "View in browser" not in frozen_parts(sent).text


def test_web_view_shows_no_personal_data_no_unsubscribe_link_and_no_pixel(sent):
    response = Client().get(path_of(web_view_url(sent)))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Hello friend ()," in html
    assert "Rita" not in html and "rita@example.org" not in html
    assert "Unsubscribe" not in html and "/u/" not in html
    assert "/t/o/" not in html and "/t/c/" not in html
    assert 'href="https://ann.example/recipes"' in html
    assert "View in browser" not in html


def test_viewing_records_no_subscriber_and_no_event(sent):
    Client().get(path_of(web_view_url(sent)))

    assert list(Subscriber.objects.values_list("email", flat=True)) == ["rita@example.org"]
    assert not Event.objects.exists()


def test_footer_links_to_the_archive_form_instead_of_unsubscribing(sent, account_a):
    form = form_create(account=account_a, name="Newsletter")
    account_a.archive_form_id = form.pk
    account_a.save()

    html = Client().get(path_of(web_view_url(sent))).content.decode()

    hosted = re.escape(f'<a href="{settings.SITE_URL}/f/{form.uid}/"')
    assert re.search(hosted + "[^>]*>Subscribe</a>", html)
    assert re.search(hosted + "[^>]*>Leave</a>", html)


@pytest.mark.parametrize(
    "change",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),
        lambda token: token[:-2],
        lambda token: token + "x",
        lambda token: "",
    ],
)
def test_tampered_token_is_404(sent, change):
    token = web_view_token(broadcast_id=sent.pk)

    assert Client().get(f"/w/{change(token)}/").status_code == 404


def test_an_open_token_is_no_web_view_token(sent):
    token = open_token(broadcast_id=sent.pk, delivery_id=sent.pk)

    assert Client().get(f"/w/{token}/").status_code == 404


def test_token_of_a_deleted_message_is_404(account_a):
    broadcast = Broadcast.objects.create(account=account_a, subject="Gone", body="Gone")
    path = path_of(web_view_url(broadcast))
    broadcast.delete()

    assert Client().get(path).status_code == 404


def test_url_is_stable_and_names_one_message(account_a):
    first = Broadcast.objects.create(account=account_a, subject="One", body="One")
    second = Broadcast.objects.create(account=account_a, subject="Two", body="Two")

    assert web_view_url(first) == web_view_url(first)
    assert web_view_url(first) != web_view_url(second)
    assert str(first.pk) not in path_of(web_view_url(first)).strip("/w")


@pytest.mark.parametrize(
    "kind",
    [Broadcast.Kind.SEQUENCE_EMAIL, Broadcast.Kind.AUTOMATION_EMAIL, Broadcast.Kind.BROADCAST],
)
def test_works_for_every_kind_of_message_even_a_draft(account_a, kind):
    message = Broadcast.objects.create(
        account=account_a, kind=kind, subject="Day 1", body="Welcome, {{ subscriber.first_name }}!"
    )

    response = Client().get(path_of(web_view_url(message)))

    assert response.status_code == 200
    assert "Welcome, !" in response.content.decode()


def test_hostile_body_is_sanitised_and_the_page_runs_no_script(account_a):
    message = Broadcast.objects.create(
        account=account_a,
        body_format=Broadcast.BodyFormat.HTML,
        subject="Hi",
        body=(
            '<script>alert(1)</script><img src="https://x.example/a.png" onerror="alert(2)">'
            '<a href="javascript:alert(3)">click</a><p style="color:red">ok</p>'
            "{{ '<script>alert(4)</script>' }}"
        ),
    )

    response = Client().get(path_of(web_view_url(message)))

    html = response.content.decode()
    assert "<script" not in html.lower()
    assert "onerror" not in html and "javascript:" not in html
    assert "alert(1)" not in html and "alert(4)" not in html
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "img-src 'self' https:" in policy
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Robots-Tag"] == "noindex"


def test_a_draft_with_template_mistakes_still_shows(account_a):
    message = Broadcast.objects.create(
        account=account_a, subject="Hi", body="Hello {{ subscriber.nope }}\n\n{% if %}"
    )

    response = Client().get(path_of(web_view_url(message)))

    assert response.status_code == 200


def test_the_preview_links_to_the_web_version(account_a):
    message = Broadcast.objects.create(account=account_a, subject="Hi", body="Hello")

    assert f'href="{web_view_url(message)}"' in preview(message).html


def test_web_view_url_is_absolute_on_site_url(account_a):
    message = Broadcast.objects.create(account=account_a, subject="Hi", body="Hello")

    assert re.fullmatch(
        re.escape(settings.SITE_URL) + r"/w/[A-Za-z0-9_-]{10,30}/", web_view_url(message)
    )
