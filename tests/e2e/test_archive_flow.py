"""The public archive in Chromium: the creator publishes a sent broadcast from its progress
page; a reader, signed out in a browser of their own, finds it listed on the archive, opens it,
and reads it as nobody in particular, the signup form below it."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import Page, expect

from broadcasts.models import Broadcast
from subscribers.signup_forms.services import form_create
from tests.e2e.steps import session_share


def test_a_published_broadcast_is_read_on_the_archive_signed_out(
    site: str, page: Page, browser, settings, alice_client, account_a
):
    settings.SITE_URL = site
    form = form_create(account=account_a, name="Newsletter", button_text="Join the kitchen")
    account_a.archive_form_id = form.pk
    account_a.save()
    broadcast = Broadcast.objects.create(
        account=account_a,
        subject="Soup season, {{ subscriber.first_name | default: 'friend' }}",
        preview_text="Five soups for cold evenings",
        body="Hello {{ subscriber.first_name | default: 'friend' }},\n\n**Soup** is back.",
        state=Broadcast.State.SENT,
        send_started_at=timezone.now() - timedelta(minutes=5),
        sent_at=timezone.now(),
    )

    session_share(page, site, alice_client)
    page.goto(f"{site}/broadcasts/{broadcast.pk}/progress/")
    archive = page.locator("#archive")
    archive.get_by_role("button", name="Publish to the archive").click()
    expect(page.get_by_text("Published to the archive.")).to_be_visible()
    link = page.locator("#archive").get_by_role("link")
    entry_url = link.get_attribute("href")
    assert entry_url == f"{site}/p/anns-kitchen/{broadcast.pk}/soup-season-friend/"

    reader = browser.new_context().new_page()
    reader.set_default_timeout(15_000)
    reader.goto(f"{site}/p/anns-kitchen/")
    expect(reader.get_by_role("heading", name="Ann's Kitchen", level=1)).to_be_visible()
    reader.get_by_role("link", name="Soup season, friend").click()
    expect(reader).to_have_url(entry_url)
    expect(reader.get_by_role("heading", name="Soup season, friend", level=1)).to_be_visible()
    expect(reader.locator("article")).to_contain_text("Hello friend,")
    expect(reader.locator("article strong")).to_have_text("Soup")
    expect(reader.get_by_role("button", name="Join the kitchen")).to_be_visible()
    reader.context.close()
