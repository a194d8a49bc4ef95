"""A creator's whole content journey in Chromium: a sign-off written as a snippet in the visual
editor; a broadcast written in it with a heading, an image dropped from the desktop into the
text (uploaded to the library), a button and the snippet from the personalisation menu; the
image given its alt text; the phone-width preview; a test to herself, read in the captured
message (HTML and plain text), the image's public URL fetched signed out; then the broadcast
sent to her subscribers and published, and read on her public archive by a signed-out
visitor, nobody's unsubscribe link in it. A snippet block detached in the editor becomes the
email's own content, autosaved; a snippet's editor never offers the snippet itself."""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.request

import pytest
from PIL import Image as PillowImage
from playwright.sync_api import Page, expect

from broadcasts.models import Broadcast
from content.images.services import image_urls
from content.models import Image
from content.snippets.services import snippet_create
from convertkit.models import Account
from subscribers.models import Subscriber
from tests.content.test_snippets import paragraph, snippet_block
from tests.e2e.steps import session_share, sign_up, wait_for_messages

READERS = 3
HEADING = "Soup season"
SIGN_OFF = "Warmly, Ann"
ALT = "A pot of tomato soup"
BUTTON_URL = "https://example.com/soups"


@pytest.fixture
def images_on_the_live_server(live_server, settings, tmp_path):
    """Uploaded images stored in the test's directory, their public URLs on the live server."""
    settings.STORAGES = {
        **settings.STORAGES,
        "images": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "media", "base_url": f"{live_server.url}/media/"},
        },
    }


def png_bytes() -> bytes:
    picture = PillowImage.new("RGB", (320, 160), "tomato")
    picture.paste((255, 255, 255), (0, 0, 160, 80))
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


def pixels(data: bytes) -> bytes:
    return PillowImage.open(io.BytesIO(data)).convert("RGB").tobytes()


def html_and_text(message) -> tuple[str, str]:
    html = message.get_body(preferencelist=("html",)).get_content()
    text = message.get_body(preferencelist=("plain",)).get_content()
    return html, text


def drop_file(page: Page, target, *, name: str, data: bytes, mime: str) -> None:
    """Drops a file from the desktop onto `target`, in its middle, as a drag from the file
    manager would."""
    transfer = page.evaluate_handle(
        """([name, mime, encoded]) => {
            const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""",
        [name, mime, base64.b64encode(data).decode()],
    )
    box = target.bounding_box()
    point = {"clientX": box["x"] + box["width"] / 2, "clientY": box["y"] + box["height"] / 2}
    for kind in ("dragenter", "dragover", "drop"):
        target.dispatch_event(kind, {"dataTransfer": transfer, **point})


def test_a_visual_email_with_an_image_a_button_and_a_snippet_from_editor_to_archive(
    site: str, page: Page, browser, settings, mail_sink, images_on_the_live_server
):
    settings.SITE_URL = site
    sign_up(page, site, email="ann@example.com", account_name="Ann's Kitchen")
    page.goto(f"{site}/settings/")
    page.get_by_label("From address").fill("news@ann.example")
    page.get_by_label("Postal address").fill("1 Main Street, Springfield")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    account = Account.objects.get(name="Ann's Kitchen")
    Subscriber.objects.bulk_create(
        Subscriber(account=account, email=f"reader{n}@example.org", first_name=f"Reader{n}")
        for n in range(READERS)
    )

    # A snippet, written in the visual editor.
    page.goto(f"{site}/snippets/")
    page.get_by_role("link", name="New snippet").first.click()
    page.get_by_label("Name").fill("Sign-off")
    snippet_text = page.get_by_label("Snippet content")
    snippet_text.click()
    page.keyboard.type(SIGN_OFF)
    page.get_by_role("button", name="Create snippet").click()
    expect(page.get_by_text("Snippet “Sign-off” saved: {{ snippet.sign-off }}.")).to_be_visible()

    # A new broadcast opens in the visual editor.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Broadcasts").click()
    page.get_by_role("button", name="New broadcast").click()
    expect(page.locator("[data-email-editor][data-ready]")).to_be_visible()
    form = page.locator("#broadcast-form")
    form.get_by_label("Subject").fill("Soup season is here")
    text = page.get_by_label("Email content")
    toolbar = page.get_by_role("toolbar", name="Formatting")
    text.click()
    toolbar.get_by_label("Text style").select_option(label="Heading 1")
    page.keyboard.type(HEADING)
    page.keyboard.press("Enter")
    expect(text.locator("h1")).to_have_text(HEADING)

    # An image dropped into the text is uploaded to the library and shown where it fell.
    picture = png_bytes()
    drop_file(page, text.locator("p").last, name="soup.png", data=picture, mime="image/png")
    expect(page.get_by_role("status").filter(has_text="Uploaded soup.png.")).to_be_visible()
    image = Image.objects.get(account=account)
    url = image_urls(image).email
    editor_image = text.locator(f'img[src="{url}"]')
    expect(editor_image).to_be_visible()
    # Its alt text is the creator's to write, never the file's name read out to the blind.
    expect(editor_image).to_have_attribute("alt", "")

    # A button.
    text.locator("p").last.click()
    toolbar.get_by_role("button", name="Button", exact=True).click()
    page.get_by_label("Button text").fill("See the recipes")
    page.get_by_label("Button text").press("Enter")
    page.get_by_label("Button link").fill(BUTTON_URL)
    page.get_by_label("Button link").press("Enter")
    expect(text.get_by_text("See the recipes")).to_be_visible()

    # The snippet, from the personalisation menu: it goes after the button, which stays.
    toolbar.get_by_label("Insert personalisation").select_option(label="Sign-off")
    expect(text.get_by_text("Snippet: Sign-off")).to_be_visible()
    expect(text.get_by_text("See the recipes")).to_be_visible()

    # The image's alt text.
    editor_image.click()
    page.get_by_label("Alt text").fill(ALT)
    page.get_by_label("Alt text").press("Enter")
    expect(editor_image).to_have_attribute("alt", ALT)

    # The preview at phone width shows it all, the image loaded.
    page.get_by_label("Mobile").check()
    expect(page.locator(".email-frame")).to_have_css("width", "375px")
    email = page.frame_locator("#broadcast-preview iframe")
    expect(email.get_by_role("heading", name=HEADING, exact=True)).to_be_visible()
    preview_image = email.get_by_role("img", name=ALT)
    expect(preview_image).to_have_attribute("src", url)
    expect(preview_image).to_have_js_property("naturalWidth", 320)  # loaded
    expect(email.get_by_role("link", name="See the recipes")).to_have_attribute("href", BUTTON_URL)
    expect(email.get_by_text(SIGN_OFF)).to_be_visible()

    # A test to herself: everything in the message, the image served to anyone.
    form.get_by_role("button", name="Send a test to me").click()
    expect(page.get_by_text("A test is on its way to ann@example.com.")).to_be_visible()
    (test_copy,) = wait_for_messages(mail_sink, 1)
    html, plain = html_and_text(test_copy)
    assert re.search(rf"<h1[^>]*>{HEADING}</h1>", html)
    (img_tag,) = re.findall(r"<img [^>]*>", html)
    assert f'src="{url}"' in img_tag and f'alt="{ALT}"' in img_tag
    assert f'href="{BUTTON_URL}"' in html
    assert SIGN_OFF in html
    for part in (HEADING, ALT, "See the recipes", BUTTON_URL, SIGN_OFF):
        assert part in plain, part
    with urllib.request.urlopen(url) as response:
        assert response.headers["Content-Type"] == "image/png"
        served = response.read()
    assert served.startswith(b"\x89PNG\r\n\x1a\n")
    assert pixels(served) == pixels(picture)

    # Published to the archive, sent to the subscribers.
    form.get_by_label("Publish to the archive").check()
    form.get_by_role("button", name="Send…").click()
    page.get_by_role("button", name=f"Send to {READERS} recipients").click()
    expect(page.get_by_text("Sending has started.")).to_be_visible()
    expect(page.locator("#broadcast-progress")).to_contain_text("Done", timeout=60_000)
    messages = wait_for_messages(mail_sink, 1 + READERS)
    broadcast = Broadcast.objects.get(account=account)
    assert broadcast.public
    html, _ = html_and_text(messages[-1])
    assert f'src="{url}"' in html and SIGN_OFF in html
    web_view = re.search(r'<a [^>]*href="([^"]+)"[^>]*>View in browser', html)[1]

    # A visitor, signed out, reads it on the archive.
    reader = browser.new_context().new_page()
    reader.set_default_timeout(15_000)
    account.refresh_from_db()
    reader.goto(f"{site}/p/{account.public_slug}/")
    reader.get_by_role("link", name="Soup season is here").click()
    article = reader.locator("article")
    expect(article.get_by_role("heading", name=HEADING, exact=True)).to_be_visible()
    archived_image = article.get_by_role("img", name=ALT)
    expect(archived_image).to_have_attribute("src", url)
    expect(archived_image).to_have_js_property("naturalWidth", 320)  # loaded
    expect(article.get_by_text(SIGN_OFF)).to_be_visible()
    hrefs = reader.locator("a[href]").evaluate_all("links => links.map((a) => a.href)")
    assert not [href for href in hrefs if "/u/" in href or "unsubscribe" in href], hrefs

    # A subscriber's "View in browser" shows the same email.
    reader.goto(web_view)
    expect(reader.get_by_role("heading", name=HEADING, exact=True)).to_be_visible()
    expect(reader.get_by_role("img", name=ALT)).to_have_js_property("naturalWidth", 320)
    expect(reader.get_by_text(SIGN_OFF)).to_be_visible()
    reader.context.close()


def test_a_detached_snippet_becomes_the_emails_own_content_and_is_autosaved(
    page: Page, live_server, alice_client, account_a, images_on_the_live_server
):
    def doc(*blocks) -> str:
        return json.dumps({"type": "doc", "attrs": {"layout": "center"}, "content": list(blocks)})

    sign_off = {"type": "paragraph", "content": [{"type": "text", "text": SIGN_OFF}]}
    snippet_create(account=account_a, name="Sign-off", body=doc(sign_off))
    snippet_create(account=account_a, name="Footer", body=doc(snippet_block("sign-off")))
    snippet_create(account=account_a, name="Sponsor", body=doc(paragraph("Brought by Pots")))
    heading = {
        "type": "heading",
        "attrs": {"level": 1},
        "content": [{"type": "text", "text": HEADING}],
    }
    broadcast = Broadcast.objects.create(
        account=account_a,
        subject="Soup",
        body_format="visual",
        body=doc(heading, snippet_block("sign-off")),
    )
    page.set_default_timeout(15_000)
    session_share(page, live_server.url, alice_client)

    page.goto(f"{live_server.url}/broadcasts/{broadcast.pk}/")
    text = page.get_by_label("Email content")
    expect(text.get_by_text("Snippet: Sign-off")).to_be_visible()
    text.get_by_role("button", name="Detach the snippet Sign-off").click()
    expect(text.locator("p", has_text=SIGN_OFF)).to_be_visible()
    expect(text.get_by_text("Snippet: Sign-off")).to_have_count(0)
    expect(page.locator("[data-autosave-status]")).to_have_text(re.compile(r"^Saved \d\d:\d\d$"))
    broadcast.refresh_from_db()
    assert json.loads(broadcast.body)["content"] == [heading, sign_off]

    # An image dropped on the toolbar (outside the text) is uploaded, not opened by the browser.
    toolbar = page.get_by_role("toolbar", name="Formatting")
    drop_file(page, toolbar, name="pot.png", data=png_bytes(), mime="image/png")
    expect(page.get_by_role("status").filter(has_text="Uploaded pot.png.")).to_be_visible()
    expect(text.locator("img")).to_have_count(1)
    drop_file(page, toolbar, name="notes.txt", data=b"soup", mime="text/plain")
    expect(page.get_by_role("alert").filter(has_text="Only images")).to_be_visible()

    # A snippet's own editor shows its content, and offers neither it nor what includes it.
    page.goto(f"{live_server.url}/snippets/")
    page.get_by_role("link", name="Sign-off").click()
    expect(page.get_by_label("Snippet content").locator("p")).to_have_text(SIGN_OFF)
    menu = page.get_by_label("Insert personalisation")
    expect(menu.locator("optgroup[label=Snippets] option")).to_have_text(["Sponsor"])

    # Written in Markdown, a snippet block is its Liquid (which the server expands), and a
    # snippet on a line of its own is a block again back in the visual editor.
    other = Broadcast.objects.create(
        account=account_a,
        subject="Soup",
        body_format="visual",
        body=doc(heading, snippet_block("sign-off")),
    )
    page.goto(f"{live_server.url}/broadcasts/{other.pk}/")
    page.get_by_label("Markdown").check()
    expect(page.get_by_label("Body")).to_have_value(f"# {HEADING}\n\n{{{{ snippet.sign-off }}}}")
    page.get_by_label("Visual").check()
    expect(page.get_by_label("Email content").get_by_text("Snippet: Sign-off")).to_be_visible()
