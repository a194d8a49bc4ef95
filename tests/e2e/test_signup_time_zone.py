"""The browser's own time zone travels with a signup, from the hosted page and from the embed
code on another site, so that sequences can send at the subscriber's hour."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from subscribers.models import Subscriber
from subscribers.signup_forms.embed import form_embed_code, form_hosted_url
from subscribers.signup_forms.services import form_create
from tests.e2e.test_embed_script import HostSite, wait_for_the_script
from tests.factories import AccountFactory


def test_the_hosted_page_and_the_embed_code_send_the_browsers_time_zone(
    site: str, page: Page, settings
):
    settings.SITE_URL = site
    account = AccountFactory(name="Ann's Kitchen")
    form = form_create(account=account, name="Footer", double_opt_in=False)
    host = HostSite()
    try:
        in_auckland = page.context.browser.new_context(timezone_id="Pacific/Auckland")
        hosted = in_auckland.new_page()
        hosted.goto(form_hosted_url(form))
        hosted.get_by_label("Email address").fill("kiri@example.org")
        hosted.get_by_role("button", name="Subscribe").click()
        expect(hosted.get_by_text("Thanks!")).to_be_visible()

        in_sao_paulo = page.context.browser.new_context(timezone_id="America/Sao_Paulo")
        blog = in_sao_paulo.new_page()
        blog.goto(host.publish(form_embed_code(form)))
        wait_for_the_script(blog)
        blog.get_by_label("Email address").fill("ana@example.org")
        blog.get_by_role("button", name="Subscribe").click()
        expect(blog.get_by_role("status")).to_contain_text("Thanks!")
    finally:
        host.close()

    zones = dict(Subscriber.objects.filter(account=account).values_list("email", "time_zone"))
    assert zones == {"kiri@example.org": "Pacific/Auckland", "ana@example.org": "America/Sao_Paulo"}
