"""Uploaded images checked, cleaned and resized for email, with Pillow.

What is accepted is decided by decoding the file, never by its name or the browser's content
type: JPEG, PNG, GIF and WebP only. Every stored file is re-encoded from the decoded pixels, so
EXIF (camera, GPS position, date), XMP and comments are dropped; the ICC colour profile is kept
so colours stay right, and the EXIF orientation is applied to the pixels first so the picture
stays upright.

The stored format is one that every mail client shows:
- JPEG stays JPEG; PNG stays PNG; a still GIF becomes PNG (lossless, resizes better);
- an animated GIF or WebP stays animated, as GIF (the only animation mail clients play; Outlook
  on Windows shows its first frame); an animated PNG keeps its first frame;
- a still WebP becomes PNG when it has transparency, else JPEG (Outlook and older clients cannot
  show WebP).
Copies: one per width of EMAIL_WIDTHS narrower than the image (never upscaled), and a thumbnail
for the library page.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

# An email is 600 pixels wide; 1200 is the same width on a high-density (retina) screen.
EMAIL_WIDTH = 600
EMAIL_WIDTHS = (EMAIL_WIDTH, 2 * EMAIL_WIDTH)
THUMB_BOX = (400, 400)
JPEG_QUALITY = 85
# Frames of an animation beyond which it is refused whatever their size.
MAX_FRAMES = 1000
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
ACCEPTED_TEXT = "a JPEG, PNG, GIF or WebP image"
_SAVE_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)


class ImageRefused(Exception):
    """An upload that is not stored, with a message for the creator."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Rendition:
    """One file to store: "original", "thumb" or "w<width>"."""

    label: str
    width: int
    height: int
    data: bytes


@dataclass(frozen=True)
class ProcessedImage:
    content_type: str
    width: int
    height: int
    renditions: list[Rendition]

    @property
    def widths(self) -> list[int]:
        return [r.width for r in self.renditions if r.label.startswith("w")]

    @property
    def original(self) -> Rendition:
        return next(r for r in self.renditions if r.label == "original")


def size_text(size: int) -> str:
    """A byte count as a creator reads it: "10 MB", "500 KB"."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):,.0f} MB"
    return f"{max(1, size // 1024):,} KB"


def too_large_message(max_bytes: int) -> str:
    return (
        f"This image is larger than {size_text(max_bytes)}. Save it smaller (as a JPEG, or about "
        "2400 pixels wide: emails show 600) and upload it again."
    )


def image_process(file) -> ProcessedImage:
    """The files to store for an uploaded image (a file object, read from its start), or
    ImageRefused.

    1. Refuse a file over IMAGE_MAX_BYTES before reading it, and an empty one.
    2. Identify it among the accepted formats only (an SVG or anything else is refused), check
       its pixel count (and the frames' for an animation) against IMAGE_MAX_PIXELS before
       decoding, then verify its structure.
    3. Decode it again (verify leaves the image unusable), turn it upright, and encode the
       original, the copies and the thumbnail from the pixels alone.
    """
    max_bytes = settings.IMAGE_MAX_BYTES
    size = _file_size(file)
    if size > max_bytes:
        raise ImageRefused(too_large_message(max_bytes))
    if size == 0:
        raise ImageRefused("The file is empty. Choose an image file.")
    with warnings.catch_warnings():
        # Pillow's own bomb check warns below twice its limit: a refusal here, like above it.
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            frames = _check(file)
            file.seek(0)
            with PILImage.open(file, formats=ACCEPTED_FORMATS) as image:
                return _encode(image, animated=frames > 1)
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
            raise ImageRefused(_too_many_pixels_message()) from None
        except _DECODE_ERRORS as exc:
            raise ImageRefused(
                "This image could not be read: the file seems damaged or incomplete. Export it "
                "again and upload the new file."
            ) from exc


def _file_size(file) -> int:
    size = getattr(file, "size", None)
    if size is None:
        file.seek(0, io.SEEK_END)
        size = file.tell()
    file.seek(0)
    return size


def _too_many_pixels_message(detail: str = "") -> str:
    megapixels = settings.IMAGE_MAX_PIXELS / 1_000_000
    return (
        f"This image is too large{detail}: we accept up to {megapixels:,.0f} megapixels. "
        "Resize it (emails show images 600 pixels wide) and upload it again."
    )


def _check(file) -> int:
    """The number of frames of an accepted, sane image; ImageRefused otherwise."""
    head = file.read(512)
    file.seek(0)
    try:
        image = PILImage.open(file, formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        if b"<svg" in head.lower() or head.lstrip().startswith((b"<?xml", b"<!DOCTYPE svg")):
            raise ImageRefused(
                "SVG images cannot be used: most email clients do not show them. Export it as a "
                "PNG and upload that."
            ) from None
        raise ImageRefused(
            f"This file is not an image we can use. Upload {ACCEPTED_TEXT}."
        ) from None
    with image:
        width, height = image.size
        if width * height > settings.IMAGE_MAX_PIXELS:
            raise ImageRefused(_too_many_pixels_message(f" ({width:,} × {height:,} pixels)"))
        frames = _frame_count(image) if image.format in ("GIF", "WEBP") else 1
        if frames > MAX_FRAMES or frames * width * height > settings.IMAGE_MAX_PIXELS:
            raise ImageRefused(
                f"This animation is too large: {frames:,} frames of {width:,} × {height:,} "
                "pixels. Make it shorter or smaller and upload it again."
            )
        image.verify()
    return frames


def _frame_count(image) -> int:
    """Frames of an animation, counted up to one past MAX_FRAMES (a file may declare many)."""
    if not getattr(image, "is_animated", False):
        return 1
    frames = 1
    while frames <= MAX_FRAMES:
        try:
            image.seek(frames)
        except EOFError:
            break
        frames += 1
    image.seek(0)
    return frames


def _encode(image, *, animated: bool) -> ProcessedImage:
    source_format = image.format
    icc_profile = image.info.get("icc_profile")
    if animated:
        frames, durations, loop = _animation_frames(image)
        content_type = "image/gif"
        first = frames[0]
    else:
        image.load()
        first = _upright(image)
        content_type = _still_content_type(source_format, first)
        frames, durations, loop = [first], [], 0
    width, height = first.size

    def encode(size: tuple[int, int] | None, label: str) -> Rendition:
        if content_type == "image/gif":
            # Animated: every frame resized; the thumbnail keeps the first frame only.
            shown = frames if label != "thumb" else frames[:1]
            resized = [_resized(frame, size) for frame in shown]
        else:
            resized = [_resized(first, size)]
        data = _save(resized, content_type, durations=durations, loop=loop, icc=icc_profile)
        return Rendition(label, resized[0].width, resized[0].height, data)

    renditions = [encode(None, "original")]
    for copy_width in EMAIL_WIDTHS:
        if copy_width < width:
            size = (copy_width, max(1, round(height * copy_width / width)))
            renditions.append(encode(size, f"w{copy_width}"))
    thumb = first.copy()
    thumb.thumbnail(THUMB_BOX, PILImage.Resampling.LANCZOS)
    renditions.append(encode(thumb.size, "thumb"))
    return ProcessedImage(content_type, width, height, renditions)


def _upright(image):
    """The pixels turned as the EXIF orientation says, in a mode every encoder takes."""
    upright = ImageOps.exif_transpose(image) or image
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    if upright.mode in ("RGB", "RGBA", "L", "LA") and "transparency" not in upright.info:
        return upright
    return upright.convert("RGBA" if has_alpha else "RGB")


def _still_content_type(source_format: str, image) -> str:
    if source_format == "JPEG":
        return "image/jpeg"
    if source_format == "WEBP" and not _has_transparency(image):
        return "image/jpeg"
    return "image/png"


def _has_transparency(image) -> bool:
    if image.mode not in ("RGBA", "LA"):
        return False
    low, _high = image.getchannel("A").getextrema()
    return low < 255


def _animation_frames(image) -> tuple[list, list[int], int]:
    """Each frame as full RGBA pixels (Pillow composes GIF and WebP frames), their durations in
    milliseconds and the loop count."""
    frames, durations = [], []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        image.load()
        frames.append(image.convert("RGBA"))
        durations.append(int(image.info.get("duration") or 100))
    return frames, durations, int(image.info.get("loop", 0) or 0)


def _resized(image, size: tuple[int, int] | None):
    if size is None or size == image.size:
        return image
    return image.resize(size, PILImage.Resampling.LANCZOS)


def _save(frames: list, content_type: str, *, durations: list[int], loop: int, icc) -> bytes:
    """The frames encoded from their pixels alone: whatever metadata the decoder found (EXIF,
    XMP, comments, text chunks) is not written, only the colour profile."""
    out = io.BytesIO()
    first = frames[0]
    first.info = {}
    options: dict = {"icc_profile": icc} if icc and content_type != "image/gif" else {}
    if content_type == "image/jpeg":
        if first.mode not in ("RGB", "L"):
            first = first.convert("RGB")
        options.update(quality=JPEG_QUALITY, optimize=True, progressive=True)
    elif content_type == "image/gif" and len(frames) > 1:
        for frame in frames:
            frame.info = {}
        options.update(
            save_all=True,
            append_images=frames[1:],
            duration=durations[: len(frames)],
            loop=loop,
            disposal=2,
        )
    first.save(out, format=_SAVE_FORMAT[content_type], **options)
    return out.getvalue()
