"""The image library: what is accepted (decided by decoding), what is stored (upright, no
metadata, resized for email, never upscaled), all or nothing, tenancy, and public files."""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from content.images import services
from content.images.processing import ImageRefused, image_process
from content.images.services import image_delete, image_upload, image_urls
from content.models import Image
from tests.content.images import (
    SVG_WITH_SCRIPT,
    animated_gif,
    image_bytes,
    jpeg_with_gps_and_orientation,
    png_declaring,
    png_with_text,
)

pytestmark = pytest.mark.django_db

SITE = "http://localhost:8000"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """The images storage in a folder of the test's own."""
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "images": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": root, "base_url": f"{SITE}/media/"},
        },
    }
    return root


def stored_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/png")


def stored(image: Image, label: str = "original") -> bytes:
    with storages["images"].open(image.file_name(label), "rb") as file:
        return file.read()


def decoded(data: bytes) -> PILImage.Image:
    image = PILImage.open(io.BytesIO(data))
    image.load()
    return image


# --- What is accepted -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("photo.jpg", image_bytes("JPEG"), "image/jpeg"),
        ("logo.png", image_bytes("PNG", mode="RGBA", color=(0, 0, 0, 0)), "image/png"),
        ("still.gif", image_bytes("GIF", mode="P"), "image/png"),
        ("moving.gif", animated_gif(), "image/gif"),
        ("photo.webp", image_bytes("WEBP"), "image/jpeg"),
        ("cutout.webp", image_bytes("WEBP", mode="RGBA", color=(0, 255, 0, 100)), "image/png"),
    ],
)
def test_each_accepted_format_is_stored_in_a_format_every_mail_client_shows(
    account_a, media, name, data, content_type
):
    image = image_upload(account=account_a, file=upload(name, data))

    assert image.content_type == content_type
    assert image.name == name
    assert decoded(stored(image)).format == {"image/jpeg": "JPEG", "image/png": "PNG"}.get(
        content_type, "GIF"
    )
    assert image.byte_size == len(stored(image))
    assert stored_files(media) == sorted(image.file_names())


def test_the_format_is_decided_by_decoding_not_by_the_name(account_a):
    image = image_upload(account=account_a, file=upload("really-a-png.jpg", image_bytes("PNG")))
    assert image.content_type == "image/png"
    assert image.file_name("original").endswith(".png")


def test_an_animated_gif_keeps_its_frames_and_their_timing(account_a):
    image = image_upload(account=account_a, file=upload("moving.gif", animated_gif(frames=4)))

    original = PILImage.open(io.BytesIO(stored(image)))
    assert original.n_frames == 4
    assert original.info["duration"] == 150
    assert PILImage.open(io.BytesIO(stored(image, "thumb"))).n_frames == 1


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.png", b"Dear diary, this is plain text.\n" * 20, "This file is not an image"),
        ("drawing.svg", SVG_WITH_SCRIPT, "SVG images cannot be used"),
        ("drawing.png", SVG_WITH_SCRIPT, "SVG images cannot be used"),
        ("cut.png", image_bytes("PNG", (300, 300), color="blue")[:200], "damaged or incomplete"),
        ("cut.jpg", image_bytes("JPEG", (300, 300), color="blue")[:400], "damaged or incomplete"),
        ("report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "This file is not an image"),
        ("empty.png", b"", "The file is empty"),
        ("bomb.png", png_declaring(8_000, 8_000), "too large (8,000 × 8,000 pixels)"),
        ("huge-bomb.png", png_declaring(100_000, 100_000), "This image is too large"),
        ("long.gif", animated_gif(frames=5, size=(100, 100)), "This animation is too large"),
    ],
)
def test_what_is_not_an_acceptable_image_is_refused_and_nothing_is_stored(
    account_a, media, settings, name, data, message
):
    if name == "long.gif":
        settings.IMAGE_MAX_PIXELS = 4 * 100 * 100
    with pytest.raises(ImageRefused) as refused:
        image_upload(account=account_a, file=upload(name, data))

    assert message in refused.value.message
    assert not Image.objects.exists()
    assert stored_files(media) == []


def test_a_decompression_bomb_is_refused_before_its_pixels_are_decoded(account_a):
    started = time.monotonic()
    with pytest.raises(ImageRefused, match="too large"):
        image_process(io.BytesIO(png_declaring(40_000, 40_000)))
    # Decoding 1.6 billion pixels would take gigabytes and many seconds.
    assert time.monotonic() - started < 1


class _CountingFile(File):
    """A file that records how many bytes were read from it."""

    read_bytes = 0

    def read(self, size=-1):
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def test_a_50_mb_file_is_refused_without_being_read(account_a, tmp_path, media):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as sparse:
        sparse.truncate(50 * 1024 * 1024)  # 50 MB on paper, no memory nor disk used
    with open(path, "rb") as raw:
        file = _CountingFile(raw, name="huge.jpg")
        with pytest.raises(ImageRefused, match="larger than 10 MB"):
            image_upload(account=account_a, file=file)
        assert file.read_bytes == 0
    assert not Image.objects.exists() and stored_files(media) == []


# --- What is stored ---------------------------------------------------------------------------


def test_exif_with_the_location_is_stripped_and_the_photo_stays_upright(account_a, media):
    data = jpeg_with_gps_and_orientation(size=(200, 100))
    assert b"SecretCam" in data and b"secret comment" in data  # the test's input has them

    image = image_upload(account=account_a, file=upload("holiday.jpg", data))

    for path in media.rglob("*.jpg"):
        raw = path.read_bytes()
        assert b"Exif" not in raw and b"SecretCam" not in raw and b"secret comment" not in raw
        assert not decoded(raw).getexif()
    # Orientation 6: the 200 x 100 pixels are a portrait photo once turned.
    assert (image.width, image.height) == (100, 200)
    assert decoded(stored(image)).size == (100, 200)


def test_png_text_chunks_are_stripped(account_a, media):
    image = image_upload(account=account_a, file=upload("logo.png", png_with_text()))
    raw = stored(image)
    assert b"Secret Author" not in raw
    assert decoded(raw).mode == "RGBA"  # the transparency is kept


@pytest.mark.parametrize(
    ("size", "widths", "email", "retina"),
    [
        ((2000, 1000), [600, 1200], "w600", "w1200"),
        ((800, 400), [600], "w600", "original"),
        ((1200, 900), [600], "w600", "original"),
        ((300, 150), [], "original", "original"),
    ],
)
def test_copies_are_made_for_email_widths_and_never_upscaled(
    account_a, size, widths, email, retina
):
    image = image_upload(account=account_a, file=upload("wide.jpg", image_bytes("JPEG", size)))

    assert image.widths == widths
    assert (image.width, image.height) == size
    for width in widths:
        assert decoded(stored(image, f"w{width}")).size == (width, image.height_at(width))
    thumb = decoded(stored(image, "thumb"))
    assert max(thumb.size) == min(400, max(size))
    urls = image_urls(image)
    assert urls.email == f"{SITE}/media/{image.file_name(email)}"
    assert urls.retina == f"{SITE}/media/{image.file_name(retina)}"
    assert (urls.email_width, urls.email_height) == (
        min(600, size[0]),
        image.height_at(min(600, size[0])),
    )


# --- All or nothing ---------------------------------------------------------------------------


def test_a_storage_failure_midway_leaves_no_file_and_no_row(account_a, media, monkeypatch):
    storage = storages["images"]
    real_save = storage.save
    calls = []

    def failing_save(name, content, **kwargs):
        calls.append(name)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_save(name, content, **kwargs)

    monkeypatch.setattr(storage, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        image_upload(account=account_a, file=upload("wide.jpg", image_bytes("JPEG", (2000, 900))))

    assert len(calls) == 3
    assert not Image.objects.exists()
    assert stored_files(media) == []


def test_a_failed_row_removes_the_files_already_written(account_a, media, monkeypatch):
    monkeypatch.setattr(services.secrets, "token_urlsafe", lambda n: "same-key-every-time-xyz")
    image_upload(account=account_a, file=upload("one.jpg", image_bytes("JPEG")))
    before = stored_files(media)

    with pytest.raises(IntegrityError), transaction.atomic():
        image_upload(account=account_a, file=upload("two.png", image_bytes("PNG")))

    assert Image.objects.count() == 1
    assert stored_files(media) == before


def test_deleting_an_image_deletes_its_files(account_a, media, django_capture_on_commit_callbacks):
    kept = image_upload(account=account_a, file=upload("kept.jpg", image_bytes("JPEG")))
    image = image_upload(
        account=account_a, file=upload("wide.jpg", image_bytes("JPEG", (2000, 900)))
    )
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=image)

    assert list(Image.objects.all()) == [kept]
    assert stored_files(media) == sorted(kept.file_names())


# --- The pages --------------------------------------------------------------------------------

UPLOAD_URL = "/images/upload/"


def test_the_library_page_shows_the_upload_form_and_the_images(alice_client, account_a):
    image = image_upload(account=account_a, file=upload("cat.jpg", image_bytes("JPEG")))
    response = alice_client.get(reverse("image_library"))

    body = response.content.decode()
    assert response.status_code == 200
    assert 'enctype="multipart/form-data"' in body and 'name="file"' in body
    assert image_urls(image).thumb in body and "cat.jpg" in body
    assert reverse("image_delete", args=[image.id]) in body


def test_a_form_upload_redirects_to_the_library(alice_client, account_a):
    response = alice_client.post(UPLOAD_URL, {"file": upload("cat.png", image_bytes("PNG"))})

    assert response.status_code == 302 and response["Location"] == reverse("image_library")
    assert Image.objects.get().account == account_a
    assert "“cat.png” was added" in alice_client.get(response["Location"]).content.decode()


def test_a_fetch_upload_answers_201_with_the_email_url(alice_client, account_a):
    data = image_bytes("JPEG", (1500, 1000))
    response = alice_client.post(
        UPLOAD_URL, {"file": upload("hero.jpg", data)}, headers={"Accept": "application/json"}
    )

    assert response.status_code == 201
    image = Image.objects.get()
    assert response.json() == {
        "id": image.id,
        "url": f"{SITE}/media/{image.file_name('w600')}",
        "retina_url": f"{SITE}/media/{image.file_name('w1200')}",
        "thumb_url": f"{SITE}/media/{image.file_name('thumb')}",
        "width": 600,
        "height": 400,
        "name": "hero.jpg",
    }


def test_a_refused_upload_answers_json_or_the_page_with_the_message(alice_client, media):
    svg = upload("logo.svg", SVG_WITH_SCRIPT)
    response = alice_client.post(UPLOAD_URL, {"file": svg}, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert "SVG images cannot be used" in response.json()["error"]

    response = alice_client.post(UPLOAD_URL, {"file": upload("notes.png", b"hello")})
    assert response.status_code == 400
    assert "This file is not an image we can use" in response.content.decode()
    response = alice_client.post(UPLOAD_URL, {}, headers={"Accept": "application/json"})
    assert response.status_code == 400 and response.json() == {
        "error": "Choose an image file to upload."
    }
    assert not Image.objects.exists() and stored_files(media) == []


def test_a_declared_50_mb_upload_is_refused_before_reading_the_body(alice_client, media):
    response = alice_client.post(
        UPLOAD_URL,
        data=b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(50 * 1024 * 1024),
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 413
    assert "larger than 10 MB" in response.json()["error"]
    assert not Image.objects.exists() and stored_files(media) == []


def test_an_upload_over_the_limit_is_stopped_while_it_streams_in(alice_client, settings, media):
    settings.IMAGE_MAX_BYTES = 4096
    big = image_bytes("PNG", (400, 400), color=None) + b"\0" * 8000  # within the envelope room
    response = alice_client.post(UPLOAD_URL, {"file": upload("big.png", big)})
    assert response.status_code == 413
    assert "larger than 4 KB" in response.content.decode()
    assert not Image.objects.exists() and stored_files(media) == []


def test_an_upload_needs_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(UPLOAD_URL, {"file": upload("cat.png", image_bytes("PNG"))})
    assert response.status_code == 403
    assert not Image.objects.exists()


def test_the_library_json_lists_newest_first_in_pages(alice_client, account_a, monkeypatch):
    from content.images import views

    monkeypatch.setattr(views, "JSON_PAGE_SIZE", 2)
    images = [
        image_upload(account=account_a, file=upload(f"{n}.png", image_bytes("PNG")))
        for n in range(3)
    ]
    first = alice_client.get(reverse("image_library_json")).json()
    assert [item["id"] for item in first["images"]] == [images[2].id, images[1].id]
    assert first["images"][0] == {
        "id": images[2].id,
        "url": image_urls(images[2]).email,
        "retina_url": image_urls(images[2]).retina,
        "thumb_url": image_urls(images[2]).thumb,
        "width": 80,
        "height": 60,
        "name": "2.png",
    }
    second = alice_client.get(
        reverse("image_library_json"), {"before": first["next_before"]}
    ).json()
    assert [item["id"] for item in second["images"]] == [images[0].id]
    assert second["next_before"] is None


# --- Tenancy ----------------------------------------------------------------------------------


def test_charlie_sees_and_deletes_nothing_of_account_a(alice_client, charlie_client, account_a):
    image = image_upload(account=account_a, file=upload("secret.jpg", image_bytes("JPEG")))
    delete_url = reverse("image_delete", args=[image.id])

    assert charlie_client.get(delete_url).status_code == 404
    assert charlie_client.post(delete_url).status_code == 404
    assert charlie_client.get(reverse("image_library_json")).json() == {
        "images": [],
        "next_before": None,
    }
    assert "secret.jpg" not in charlie_client.get(reverse("image_library")).content.decode()
    assert Image.objects.filter(pk=image.pk).exists()
    assert len(stored(image)) == image.byte_size
    # Alice can.
    assert alice_client.get(delete_url).status_code == 200
    assert alice_client.post(delete_url).status_code == 302
    assert not Image.objects.exists()


def test_an_upload_goes_to_the_uploaders_account(charlie_client, account_a, account_b):
    charlie_client.post(UPLOAD_URL, {"file": upload("mine.png", image_bytes("PNG"))})
    assert Image.objects.get().account == account_b


def test_the_pages_need_a_login(client, account_a):
    for url in (reverse("image_library"), reverse("image_library_json")):
        assert client.get(url).status_code == 302
    assert client.post(UPLOAD_URL, {"file": upload("a.png", image_bytes("PNG"))}).status_code == 302
    assert not Image.objects.exists()


# --- Public files -----------------------------------------------------------------------------


def test_the_public_url_serves_the_bytes_without_a_login(account_a):
    image = image_upload(
        account=account_a, file=upload("wide.jpg", image_bytes("JPEG", (900, 300)))
    )
    visitor = Client()

    for url, label in ((image_urls(image).email, "w600"), (image_urls(image).thumb, "thumb")):
        response = visitor.get(url.removeprefix(SITE))
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == stored(image, label)
        assert response["Content-Type"] == "image/jpeg"
        assert response["Cache-Control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    "path",
    [
        "/media/images/doesnotexistdoesnotexist/original.jpg",
        "/media/images/../../convertkit/settings.py",
        "/media/images/",
        "/media/notes.txt",
    ],
)
def test_the_public_files_answer_404_for_anything_else(account_a, media, path):
    (media / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (media / "notes.txt").write_text("not an image")
    assert Client().get(path).status_code == 404


def test_the_library_json_is_json(alice_client):
    response = alice_client.get(reverse("image_library_json"))
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"images": [], "next_before": None}


def test_content_file_uploads_work_from_code(account_a):
    image = image_upload(account=account_a, file=ContentFile(image_bytes("PNG"), name="x.png"))
    assert image.name == "x.png"
