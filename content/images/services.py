"""The image library's writes: upload (all or nothing) and delete (row and files), and the
public URLs of an image's files."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction

from content.images.processing import EMAIL_WIDTH, image_process
from content.models import Image
from convertkit.models import Account

logger = logging.getLogger(__name__)


def images_storage():
    """The "images" storage of settings.STORAGES: the filesystem or an S3-compatible bucket."""
    return storages["images"]


def image_upload(*, account: Account, file) -> Image:
    """Stores an uploaded image with its resized copies; ImageRefused (and nothing stored) when
    it is not an image we accept.

    All or nothing: the files are written once every one of them was made, and removed again
    when a write or the row fails. Call it outside a transaction that may roll back later (the
    files would then stay behind, unreachable).
    """
    processed = image_process(file)
    key = secrets.token_urlsafe(24)
    image = Image(
        account=account,
        name=(getattr(file, "name", "") or "image").rsplit("/", 1)[-1][:255],
        content_type=processed.content_type,
        width=processed.width,
        height=processed.height,
        byte_size=len(processed.original.data),
        key=key,
        widths=processed.widths,
    )
    storage = images_storage()
    stored: list[str] = []
    try:
        for rendition in processed.renditions:
            wanted = image.file_name(rendition.label)
            stored.append(storage.save(wanted, ContentFile(rendition.data)))
            if stored[-1] != wanted:
                raise RuntimeError(f"The images storage saved {wanted} as {stored[-1]}")
        image.save()
    except BaseException:
        _files_delete(stored)
        raise
    return image


def image_delete(*, image: Image) -> None:
    """Deletes the image and, once that is committed, its files: emails already sent that show it
    show a broken image from then on."""
    names = image.file_names()
    image.delete()
    transaction.on_commit(lambda: _files_delete(names))


def _files_delete(names: list[str]) -> None:
    storage = images_storage()
    for name in names:
        try:
            storage.delete(name)
        except Exception:
            logger.exception("Could not delete the image file %s", name)


@dataclass(frozen=True)
class ImageUrls:
    """Absolute, public URLs of an image's files, for emails and the library page."""

    # The copy an email shows (600 pixels wide, or the original when narrower), its size.
    email: str
    email_width: int
    email_height: int
    # The copy twice as wide for high-density screens (the widest copy up to 1200 pixels).
    retina: str
    thumb: str
    original: str


def image_urls(image: Image) -> ImageUrls:
    storage = images_storage()
    original = storage.url(image.file_name("original"))
    email_width = min(image.width, EMAIL_WIDTH)
    retina_width = max((w for w in image.widths if w <= 2 * EMAIL_WIDTH), default=None)
    retina_is_copy = retina_width is not None and retina_width > email_width
    return ImageUrls(
        email=storage.url(image.file_name(f"w{EMAIL_WIDTH}"))
        if EMAIL_WIDTH in image.widths
        else original,
        email_width=email_width,
        email_height=image.height_at(email_width),
        retina=storage.url(image.file_name(f"w{retina_width}")) if retina_is_copy else original,
        thumb=storage.url(image.file_name("thumb")),
        original=original,
    )
