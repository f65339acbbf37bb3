"""Hand-made image files, good and broken, shared by the image and prepare tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noisy_png(size: int = 64, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encoded(Image.fromarray(pixels), "PNG")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (one row of pixel data follows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def left_red_right_blue(width: int = 40, height: int = 20) -> Image.Image:
    img = Image.new("RGB", (width, height), BLUE)
    img.paste(RED, (0, 0, width // 2, height))
    return img


def exif_rotated_jpeg(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(img, "JPEG", quality=95, exif=exif.tobytes())


def palette_png_with_transparency() -> bytes:
    """Three pixels: transparent (index 0), red, blue."""
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    img.putdata([0, 1, 2])
    return encoded(img, "PNG", transparency=0)


def gray16_png(values: list[int]) -> bytes:
    return encoded(Image.fromarray(np.array([values], dtype=np.uint16)), "PNG")


def cmyk_red_jpeg(size: int = 16) -> bytes:
    return encoded(Image.new("CMYK", (size, size), (0, 255, 255, 0)), "JPEG", quality=95)


BROKEN = {
    "empty.png": (b"", "empty file"),
    "notes.jpg": (b"this is not a picture\n" * 20, "not an image"),
    "cut.png": (noisy_png()[:3000], "truncated or corrupt"),
    "cut.jpg": (encoded(Image.new("RGB", (64, 64), RED), "JPEG")[:300], "truncated or corrupt"),
    "bomb.png": (png_header_only(100_000, 100_000), "too large (10000000000 pixels)"),
}
