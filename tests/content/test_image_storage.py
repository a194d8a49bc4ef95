"""The "images" storage: configured from the environment (failing loudly on a bad value), and an
S3-compatible bucket proven end to end against a real S3 server on 127.0.0.1 (moto's, in a
thread): upload -> public URL -> the same bytes, without credentials; delete removes the
objects."""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from moto.server import ThreadedMotoServer

from content.images.services import image_delete, image_upload, image_urls
from content.models import Image
from tests.content.images import image_bytes, jpeg_with_gps_and_orientation
from tests.convertkit.test_settings import SETUP, _fails_with, _python

BUCKET = "newsletter-images"
PRINT_IMAGES_STORAGE = (
    f"{SETUP}; import json; from django.conf import settings; "
    "print(json.dumps(settings.STORAGES['images'], default=str))"
)


def images_storage_from_env(**env: str) -> dict:
    result = _python(PRINT_IMAGES_STORAGE, DEBUG="true", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_images_live_on_the_filesystem_under_local_media_by_default():
    storage = images_storage_from_env()
    assert storage["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert storage["OPTIONS"]["location"].endswith("/.local/media")
    assert storage["OPTIONS"]["base_url"] == "http://localhost:8000/media/"


def test_an_s3_bucket_is_configured_from_the_environment(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t\n")

    storage = images_storage_from_env(
        IMAGE_STORAGE="s3",
        IMAGE_S3_BUCKET=BUCKET,
        IMAGE_S3_ENDPOINT_URL="https://s3.example.net",
        IMAGE_S3_REGION="eu-west-3",
        IMAGE_S3_ACCESS_KEY_ID="AKIAEXAMPLE",
        IMAGE_S3_SECRET_ACCESS_KEY_FILE=str(secret_file),
        IMAGE_S3_PUBLIC_URL="https://images.example.net/news/",
        IMAGE_S3_DEFAULT_ACL="public-read",
    )

    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    options = storage["OPTIONS"]
    assert options["bucket_name"] == BUCKET
    assert options["endpoint_url"] == "https://s3.example.net"
    assert options["region_name"] == "eu-west-3"
    assert (options["access_key"], options["secret_key"]) == ("AKIAEXAMPLE", "s3cr3t")
    assert (options["url_protocol"], options["custom_domain"]) == (
        "https:",
        "images.example.net/news",
    )
    assert options["querystring_auth"] is False
    assert options["default_acl"] == "public-read"
    assert options["object_parameters"] == {"CacheControl": "public, max-age=31536000, immutable"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMAGE_STORAGE": "ftp"}, "Unexpected value IMAGE_STORAGE=ftp, use filesystem or s3"),
        ({"IMAGE_STORAGE": "s3"}, "IMAGE_S3_BUCKET is required when IMAGE_STORAGE=s3"),
        (
            {"IMAGE_STORAGE": "s3", "IMAGE_S3_BUCKET": BUCKET, "IMAGE_S3_PUBLIC_URL": "cdn.x"},
            "Unexpected value IMAGE_S3_PUBLIC_URL=cdn.x, use https://host[/path]",
        ),
        (
            {"IMAGE_STORAGE": "s3", "IMAGE_S3_BUCKET": BUCKET, "IMAGE_S3_ADDRESSING_STYLE": "x"},
            "Unexpected value IMAGE_S3_ADDRESSING_STYLE=x, use auto, path or virtual",
        ),
        ({"IMAGE_MAX_BYTES": "10MB"}, "Unexpected value IMAGE_MAX_BYTES=10MB, use a whole number"),
        ({"IMAGE_MAX_PIXELS": "10"}, "Unexpected value IMAGE_MAX_PIXELS=10, use at least 10000"),
    ],
)
def test_bad_image_storage_settings_are_refused(env, message):
    _fails_with(message, DEBUG="true", **env)


@pytest.fixture(scope="module")
def s3_server():
    """A real S3-compatible server on 127.0.0.1 (a free port), for this module's tests."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server, settings):
    """An empty bucket, and the images storage in it as IMAGE_STORAGE=s3 configures it."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    )
    client.create_bucket(Bucket=BUCKET)
    storage = images_storage_from_env(
        IMAGE_STORAGE="s3",
        IMAGE_S3_BUCKET=BUCKET,
        IMAGE_S3_ENDPOINT_URL=s3_server,
        IMAGE_S3_REGION="us-east-1",
        IMAGE_S3_ACCESS_KEY_ID="test-key",
        IMAGE_S3_SECRET_ACCESS_KEY="test-secret",
        IMAGE_S3_ADDRESSING_STYLE="path",
        IMAGE_S3_DEFAULT_ACL="public-read",
    )
    settings.STORAGES = {**settings.STORAGES, "images": storage}
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def object_keys(client) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def fetch(url: str):
    """GET without credentials or proxies, as a mail client would."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.read(), response.headers


@pytest.mark.django_db
def test_an_image_in_a_bucket_is_served_by_its_public_url_and_deleted_with_it(
    bucket, s3_server, account_a, django_capture_on_commit_callbacks
):
    upload = SimpleUploadedFile("hero.jpg", jpeg_with_gps_and_orientation(size=(1600, 1300)))
    image = image_upload(account=account_a, file=upload)

    assert object_keys(bucket) == sorted(image.file_names())
    urls = image_urls(image)
    assert urls.email == f"{s3_server}/{BUCKET}/{image.file_name('w600')}"
    for url, label in ((urls.email, "w600"), (urls.retina, "w1200"), (urls.thumb, "thumb")):
        body, headers = fetch(url)
        stored = bucket.get_object(Bucket=BUCKET, Key=image.file_name(label))["Body"].read()
        assert body == stored and b"Exif" not in body
        assert headers["Content-Type"] == "image/jpeg"
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    grants = bucket.get_object_acl(Bucket=BUCKET, Key=image.file_name("w600"))["Grants"]
    assert any(
        grant["Grantee"].get("URI", "").endswith("/global/AllUsers")
        and grant["Permission"] == "READ"
        for grant in grants
    )

    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=image)

    assert object_keys(bucket) == []
    assert not Image.objects.exists()


@pytest.mark.django_db
def test_a_refused_image_leaves_nothing_in_the_bucket(bucket, account_a):
    from content.images.processing import ImageRefused

    with pytest.raises(ImageRefused):
        image_upload(account=account_a, file=SimpleUploadedFile("a.png", b"not an image"))
    image_upload(account=account_a, file=SimpleUploadedFile("b.png", image_bytes("PNG")))
    assert len(object_keys(bucket)) == 2  # the PNG's original and thumbnail only
