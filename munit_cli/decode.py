"""Decoding and checking one source file of `munit prepare` (runs in worker processes).

Nothing here writes: a worker returns the encoded output bytes, and the parent process stages them
(dataset.py), so a killed worker can never leave a half-written file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageColor

from munit_cli.errors import UsageError
from munit_cli.files import display_path, printable
from munit_cli.images import ImageError, center_crop, encode_image, open_image, read_bytes, resize_shorter
from munit_cli.manifest import State


@dataclasses.dataclass(frozen=True)
class Processing:
    """What turns a source file into output pixels; a change means every output is rebuilt."""

    size: int  # shorter side after resizing; 0 keeps the original size
    center_crop: bool
    min_size: int
    fmt: str
    quality: int
    background: tuple[int, int, int]
    mode: str
    max_pixels: int
    paired: bool

    def as_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def image_format(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in ("png", "jpg"):
        raise UsageError(f"--format must be png or jpg, got {printable(fmt)}")
    return fmt


def parse_colour(text: str) -> tuple[int, int, int]:
    """'white', 'black', '#rrggbb', 'rgb(1,2,3)': anything Pillow's colour names understand."""
    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        raise UsageError(f"unknown colour {printable(text)}", hint="use a name such as white or black, or #rrggbb") from None
    return (rgb[0], rgb[1], rgb[2])


@dataclasses.dataclass
class Decoded:
    """What a worker made of one source file; `encoded` holds the output bytes per domain."""

    state: State
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    reason: str | None = None
    retry: bool = False
    encoded: dict[str, bytes] = dataclasses.field(default_factory=dict)


def decode_file(job: tuple[str, str, Processing]) -> Decoded:
    """Read, hash, decode, check and convert one source file; never raises for a bad file."""
    domain, path, proc = job
    try:
        data = read_bytes(Path(path))
    except ImageError as exc:
        return Decoded(State.SKIPPED, reason=exc.reason, retry=True)
    result = Decoded(State.KEPT, sha256=hashlib.sha256(data).hexdigest())
    try:
        img = open_image(data, proc.mode, proc.background, proc.max_pixels, name=display_path(path))
        result.width, result.height = img.width, img.height
        parts = _halves(img) if proc.paired else {domain: img}
        if min(min(part.size) for part in parts.values()) < max(proc.min_size, 1):
            return _skipped(result, f"too small ({img.width}x{img.height})")
        result.encoded = {d: encode_image(_fit(part, proc), proc.fmt, proc.quality) for d, part in parts.items()}
    except ImageError as exc:
        return _skipped(result, exc.reason)
    except Exception as exc:  # noqa: BLE001 - one undecodable file must not stop a run over thousands
        return _skipped(result, f"cannot decode ({type(exc).__name__})")
    return result


def _skipped(result: Decoded, reason: str) -> Decoded:
    return dataclasses.replace(result, state=State.SKIPPED, reason=reason, encoded={})


def _halves(img: Image.Image) -> dict[str, Image.Image]:
    half = img.width // 2
    return {"A": img.crop((0, 0, half, img.height)), "B": img.crop((img.width - half, 0, img.width, img.height))}


def _fit(img: Image.Image, proc: Processing) -> Image.Image:
    if proc.size:
        scale = proc.size / min(img.size)
        pixels = round(img.width * scale) * round(img.height * scale)
        if pixels > proc.max_pixels:  # a long, thin image scaled up to --size on its short side
            raise ImageError("", f"too large after resizing ({pixels} pixels)")
        img = resize_shorter(img, proc.size)
    return center_crop(img, min(img.size)) if proc.center_crop else img
