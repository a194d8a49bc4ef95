"""Image files made in memory for the image library's tests."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import ExifTags, Image, PngImagePlugin


def image_bytes(fmt: str = "JPEG", size=(80, 60), mode: str = "RGB", color="red", **options):
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format=fmt, **options)
    return out.getvalue()


def jpeg_with_gps_and_orientation(size=(200, 100)) -> bytes:
    """A landscape JPEG whose EXIF says "rotate 90° clockwise" and where it was taken."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "SecretCam"
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (48.0, 51.0, 24.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (2.0, 21.0, 3.0),
    }
    return image_bytes("JPEG", size, exif=exif.tobytes(), comment=b"secret comment")


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Secret Author")
    return image_bytes("PNG", (50, 50), "RGBA", (0, 0, 255, 128), pnginfo=info)


def animated_gif(frames: int = 3, size=(120, 80)) -> bytes:
    colours = ["red", "green", "blue", "yellow", "purple"]
    images = [Image.new("RGB", size, colours[i % len(colours)]) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=150, loop=0)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims width x height pixels (a decompression
    bomb: decoding it would take width x height x 3 bytes of memory)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


SVG_WITH_SCRIPT = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<script>alert(document.cookie)</script><rect width="10" height="10"/></svg>'
)
