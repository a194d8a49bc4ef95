"""The image library on a phone (375 px) without JavaScript: a creator uploads a picture through
the plain form, sees its thumbnail served by the public file URL, copies nothing off-screen (no
sideways scrolling), and deletes it after confirming."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from content.models import Image
from tests.content.images import image_bytes
from tests.e2e.steps import session_share

PHONE = {"width": 375, "height": 667}


@pytest.fixture
def browser_context_args(browser_context_args):
    return {
        **browser_context_args,
        "viewport": PHONE,
        "is_mobile": True,
        "java_script_enabled": False,
    }


@pytest.fixture
def site(page: Page, live_server, alice_client, settings, tmp_path):
    page.set_default_timeout(15_000)
    settings.STORAGES = {
        **settings.STORAGES,
        "images": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "media", "base_url": f"{live_server.url}/media/"},
        },
    }
    session_share(page, live_server.url, alice_client)
    return live_server.url


def test_a_creator_uploads_sees_and_deletes_an_image_on_a_phone(page: Page, site, tmp_path):
    picture = tmp_path / "sunset.jpg"
    picture.write_bytes(image_bytes("JPEG", (1600, 900), color="orange"))

    page.goto(f"{site}/images/")
    expect(page.get_by_role("heading", name="No images yet")).to_be_visible()
    page.get_by_label("Image file", exact=True).set_input_files(str(picture))
    page.get_by_role("button", name="Upload").click()

    expect(page.get_by_text("“sunset.jpg” was added to your images.")).to_be_visible()
    thumb = page.get_by_role("img", name="sunset.jpg")
    expect(thumb).to_be_visible()
    assert thumb.evaluate("img => img.naturalWidth") == 400
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    image = Image.objects.get()
    expect(page.get_by_label("Email URL")).to_have_value(
        f"{site}/media/images/{image.key}/w600.jpg"
    )
    page.screenshot(path=str(tmp_path / "library.png"), full_page=True)

    page.get_by_role("link", name="Delete the image sunset.jpg").click()
    page.get_by_role("button", name="Delete for good").click()
    expect(page.get_by_text("“sunset.jpg” was deleted.")).to_be_visible()
    assert not Image.objects.exists()
