"""The embed code pasted on a creator's own site (another origin), with ck-embed.js: inline
submission, field errors from the server, the modal and slide-in styles, and a phone's screen."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from playwright.sync_api import Page, expect

from subscribers.models import Subscriber
from subscribers.signup_forms.counters import form_views_pending
from subscribers.signup_forms.embed import embed_script_url, form_action_url, form_embed_code
from subscribers.signup_forms.services import form_create
from subscribers.validation import normalize_email
from tests.factories import AccountFactory

PHONE = {"width": 375, "height": 667}


class HostSite:
    """A creator's website: a tiny HTTP server on its own port, so a different origin from the
    live server, serving whatever pages a test gives it."""

    def __init__(self):
        pages: dict[str, str] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write((body or "Not found").encode())

            def log_message(self, *args):
                pass

        self.pages = pages
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, body: str, path: str = "/blog/") -> str:
        self.pages[path] = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>Ann's Kitchen blog</title></head><body>"
            "<h1>Ann's Kitchen</h1><p>Seasonal recipes, every week.</p>"
            f"{body}</body></html>"
        )
        return self.url + path

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host():
    site = HostSite()
    yield site
    site.close()


@pytest.fixture
def embed_site(site, settings, host):
    """The live server as the site the embed code points at, and a host site on another origin."""
    settings.SITE_URL = site
    return host


def with_delay(embed_code: str, seconds: float) -> str:
    """The embed code with data-ck-delay on its container (the builder does not write one yet)."""
    return embed_code.replace(" data-ck-style=", f' data-ck-delay="{seconds}" data-ck-style=', 1)


def wait_for_the_script(page: Page) -> None:
    expect(page.locator(".ck-form.ck-js")).to_be_attached()


def views_counted(form, *, expected: int, page: Page) -> int:
    """The form's views waiting in Redis, once they reach `expected` (or after 5 s)."""
    for _ in range(50):
        views = form_views_pending(forms=[form]).get(form.pk, 0)
        if views >= expected:
            break
        page.wait_for_timeout(100)
    return views


def no_horizontal_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_an_inline_form_on_another_site_subscribes_without_leaving_the_page(embed_site, page: Page):
    account = AccountFactory(name="Ann's Kitchen")
    form = form_create(
        account=account,
        name="Blog footer",
        headline="Weekly recipes",
        success_message="Almost there: check your inbox to confirm.",
        double_opt_in=True,
    )
    # The script twice on one page (two embeds, say) must still send each signup once.
    script = f'<script src="{embed_script_url()}" async></script>'
    blog = embed_site.publish(form_embed_code(form) + script)
    posts = []
    page.on("request", lambda request: request.method == "POST" and posts.append(request))

    page.goto(blog)
    wait_for_the_script(page)
    page.get_by_label("Email address").fill("zoe@example.net")
    page.get_by_role("button", name="Subscribe").click()

    expect(page.get_by_role("status")).to_have_text("Almost there: check your inbox to confirm.")
    expect(page.get_by_label("Email address")).to_be_hidden()
    expect(page.get_by_role("button", name="Subscribe")).to_be_hidden()
    expect(page.get_by_role("heading", name="Weekly recipes")).to_be_visible()
    assert page.url == blog
    assert [(post.url, post.resource_type) for post in posts] == [(form_action_url(form), "fetch")]
    assert posts[0].headers["accept"] == "application/json"
    assert page.locator("#ck-embed-css").count() == 1
    assert views_counted(form, expected=1, page=page) == 1  # the image, as the page loaded
    subscriber = Subscriber.objects.get(account=account, email="zoe@example.net")
    assert subscriber.state == Subscriber.State.UNCONFIRMED


def test_an_invalid_address_shows_the_servers_error_under_the_field_and_creates_no_one(
    embed_site, page: Page
):
    account = AccountFactory()
    form = form_create(account=account, name="Sidebar", double_opt_in=True)
    with pytest.raises(ValidationError) as invalid:
        normalize_email("zoe-at-example.net")
    page.goto(embed_site.publish(form_embed_code(form)))
    wait_for_the_script(page)
    email = page.get_by_label("Email address")
    button = page.get_by_role("button", name="Subscribe")

    email.fill("zoe-at-example.net")
    button.click()

    error = page.locator(f"#ck-{form.uid}-email-error")
    expect(error).to_have_text(invalid.value.messages[0])
    expect(error).to_have_class("ck-error")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_attribute("aria-describedby", f"ck-{form.uid}-email-error")
    expect(email).to_be_focused()
    expect(button).to_be_enabled()
    assert not Subscriber.objects.filter(account=account).exists()

    email.fill("zoe@example.net")
    button.click()
    expect(page.get_by_role("status")).to_have_text(form.success_message)
    expect(page.locator(".ck-error")).to_have_count(0)
    assert Subscriber.objects.filter(account=account, email="zoe@example.net").exists()


def test_a_refusal_from_the_server_is_shown_and_the_form_can_be_sent_again(
    embed_site, page: Page, settings
):
    settings.SIGNUP_LIMIT_PER_IP = (1, 600)
    account = AccountFactory()
    form = form_create(account=account, name="Sidebar")
    page.goto(embed_site.publish(form_embed_code(form)))
    wait_for_the_script(page)
    email = page.get_by_label("Email address")
    button = page.get_by_role("button", name="Subscribe")
    message = page.get_by_role("status")

    email.fill("zoe-at-example.net")
    button.click()
    expect(page.locator(".ck-error")).to_have_count(1)

    email.fill("zoe@example.net")
    button.click()
    expect(message).to_contain_text("Too many signups from here just now.")
    expect(message).to_have_class("ck-message ck-message--error")
    expect(page.locator(".ck-error")).to_have_count(0)
    expect(button).to_be_enabled()
    assert not Subscriber.objects.filter(account=account).exists()


def test_when_the_server_cannot_be_reached_the_form_says_so_and_works_once_it_can(
    embed_site, page: Page
):
    account = AccountFactory()
    form = form_create(account=account, name="Sidebar")
    page.goto(embed_site.publish(form_embed_code(form)))
    wait_for_the_script(page)
    page.route(form_action_url(form), lambda route: route.abort("connectionrefused"))

    page.get_by_label("Email address").fill("zoe@example.net")
    page.get_by_role("button", name="Subscribe").click()
    message = page.get_by_role("status")
    expect(message).to_have_text("Could not reach the server, please try again.")
    expect(message).to_have_class("ck-message ck-message--error")
    expect(page.get_by_role("button", name="Subscribe")).to_be_focused()

    page.unroute(form_action_url(form))
    page.get_by_role("button", name="Subscribe").click()
    expect(message).to_have_text(form.success_message)
    assert Subscriber.objects.filter(account=account, email="zoe@example.net").exists()


def test_a_modal_form_opens_after_its_delay_closes_with_esc_and_stays_closed_after_reload(
    embed_site, page: Page
):
    account = AccountFactory()
    form = form_create(account=account, name="Popup", style="modal", headline="Join the club")
    blog = embed_site.publish(
        '<button type="button">Read more</button>' + with_delay(form_embed_code(form), 2)
    )
    dialog = page.get_by_role("dialog", name="Join the club")

    page.goto(blog)
    page.get_by_role("button", name="Read more").focus()
    wait_for_the_script(page)
    expect(dialog).to_be_hidden()
    assert form_views_pending(forms=[form]) == {}  # not seen yet, so not a view
    expect(dialog).to_be_visible()
    assert views_counted(form, expected=1, page=page) == 1
    expect(dialog).to_have_attribute("aria-modal", "true")
    expect(dialog.get_by_label("Email address")).to_be_focused()

    # Focus stays in the dialog.
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Subscribe")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(dialog.get_by_role("button", name="Subscribe")).to_be_focused()

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Read more")).to_be_focused()

    page.reload()
    wait_for_the_script(page)
    page.wait_for_timeout(3000)  # Longer than the delay: it would have opened by now.
    expect(dialog).to_be_hidden()
    assert form_views_pending(forms=[form]) == {form.pk: 1}


def test_on_a_phone_the_modal_fits_the_screen_subscribes_and_does_not_come_back(
    embed_site, page: Page
):
    page.set_viewport_size(PHONE)
    account = AccountFactory()
    form = form_create(
        account=account,
        name="Popup",
        style="modal",
        headline="Join the club",
        description="One recipe a week, no spam.",
        double_opt_in=False,
    )
    page.goto(embed_site.publish(with_delay(form_embed_code(form), 0)))
    dialog = page.get_by_role("dialog", name="Join the club")
    expect(dialog).to_be_visible()

    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"]
    assert no_horizontal_scroll(page)
    close = dialog.get_by_role("button", name="Close").bounding_box()
    assert close["width"] >= 40 and close["x"] + close["width"] <= box["x"] + box["width"]

    dialog.get_by_label("Email address").fill("zoe@example.net")
    dialog.get_by_role("button", name="Subscribe").click()
    expect(dialog.get_by_role("status")).to_have_text(form.success_message)
    expect(dialog.get_by_role("status")).to_be_focused()
    subscriber = Subscriber.objects.get(account=account, email="zoe@example.net")
    assert subscriber.state == Subscriber.State.ACTIVE
    # Only the close button is left to focus, and focus stays in the dialog.
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()

    page.reload()
    wait_for_the_script(page)
    page.wait_for_timeout(1000)
    expect(dialog).to_be_hidden()


def test_on_a_phone_the_slidein_spans_the_bottom_of_the_screen_and_closes_for_a_day(
    embed_site, page: Page
):
    page.set_viewport_size(PHONE)
    page.emulate_media(reduced_motion="reduce")  # No slide animation: measure where it rests.
    account = AccountFactory()
    form = form_create(account=account, name="Corner", style="slidein", headline="Get the recipes")
    page.goto(embed_site.publish(with_delay(form_embed_code(form), 0.5)))
    panel = page.get_by_role("region", name="Get the recipes")
    expect(panel).to_be_visible()

    box = panel.bounding_box()
    assert box["x"] == 0 and box["width"] == PHONE["width"]
    assert box["y"] + box["height"] == pytest.approx(PHONE["height"], abs=1)
    assert no_horizontal_scroll(page)
    # The host page stays usable under a slide-in (it is not modal).
    expect(page.get_by_role("heading", name="Ann's Kitchen")).to_be_visible()

    panel.get_by_role("button", name="Close").click()
    expect(panel).to_be_hidden()
    page.reload()
    wait_for_the_script(page)
    page.wait_for_timeout(1500)
    expect(panel).to_be_hidden()


def test_an_inline_form_fits_a_phone_screen_and_adds_nothing_else_to_the_page(
    embed_site, page: Page
):
    page.set_viewport_size(PHONE)
    form = form_create(account=AccountFactory(), name="Footer", headline="Weekly recipes")
    page.goto(embed_site.publish(form_embed_code(form)))
    wait_for_the_script(page)
    expect(page.locator("body")).not_to_contain_text("{#")  # No template source shows.
    email = page.get_by_label("Email address").bounding_box()
    assert email["x"] >= 0 and email["x"] + email["width"] <= PHONE["width"]
    assert no_horizontal_scroll(page)


def test_a_form_added_to_the_page_after_the_script_is_enhanced_too(embed_site, page: Page):
    account = AccountFactory()
    form = form_create(account=account, name="Later")
    embed_code = form_embed_code(form)
    snippet, script = embed_code.rsplit("<script", 1)
    blog = embed_site.publish(
        f"<script{script}<template>{snippet}</template>"
        '<button type="button" onclick="document.body.append('
        "document.querySelector('template').content.cloneNode(true))\">Show the form</button>"
    )
    page.goto(blog)
    page.wait_for_function("window.__ckEmbed")
    page.get_by_role("button", name="Show the form").click()
    wait_for_the_script(page)

    page.get_by_label("Email address").fill("zoe@example.net")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("status")).to_have_text(form.success_message)
    assert page.url == blog
    assert Subscriber.objects.filter(account=account, email="zoe@example.net").exists()


def test_a_form_that_redirects_takes_the_visitor_to_its_thank_you_page(embed_site, page: Page):
    account = AccountFactory()
    thanks = embed_site.publish("<h2>Thank you for joining</h2>", path="/thanks/")
    form = form_create(
        account=account, name="Footer", success_action="redirect", redirect_url=thanks
    )
    page.goto(embed_site.publish(form_embed_code(form)))
    wait_for_the_script(page)

    page.get_by_label("Email address").fill("zoe@example.net")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Thank you for joining")).to_be_visible()
    assert page.url == thanks
    assert Subscriber.objects.filter(account=account, email="zoe@example.net").exists()


def test_on_a_desktop_a_modal_form_opens_when_the_mouse_leaves_through_the_top(
    embed_site, page: Page
):
    form = form_create(account=AccountFactory(), name="Popup", style="modal", headline="Wait!")
    page.goto(embed_site.publish(with_delay(form_embed_code(form), 600)))
    wait_for_the_script(page)
    dialog = page.get_by_role("dialog", name="Wait!")
    page.mouse.move(300, 200)
    page.mouse.move(300, 100)
    expect(dialog).to_be_hidden()

    page.mouse.move(300, -5)
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Email address")).to_be_focused()
