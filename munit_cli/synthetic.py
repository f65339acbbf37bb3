"""Embedded demo data: nothing can be downloaded, so `munit demo` and the tests train on this.

Domain A is content only: black outline drawings of random shapes on white. Domain B is the same
family of shapes filled with random colours and textures on random backgrounds, without outline.
The training split is unpaired; the test split is paired (same geometry under the same name in
testA and testB), and masks/ holds each shape's filled region as ground truth for evaluation.

Every image draws from its own generator seeded by (seed, stream, index), so the output is
byte-identical for the same arguments and the first images do not change when counts grow.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from munit_cli.errors import UsageError
from munit_cli.files import write_atomic
from munit_cli.images import png_bytes

SHAPES = ("circle", "ellipse", "rectangle", "triangle", "star", "polygon")
FILLS = ("solid", "stripes", "checker", "dots", "gradient")
BACKGROUNDS = ("solid", "gradient", "noise")
SUPERSAMPLE = 4  # shapes are drawn this many times larger, then box-reduced, for smooth edges

# Minimum colour distance so the shape stands out from the background and two-colour textures show.
# Euclidean RGB distance for colour data, luma difference for grayscale data.
_MIN_CONTRAST = {3: (110.0, 80.0), 1: (60.0, 45.0)}

# Independent random streams per image kind.
_TRAIN_A, _TRAIN_B, _TEST_SHAPE, _TEST_STYLE = range(4)


class Shape(NamedTuple):
    vertices: np.ndarray  # (N, 2) polygon in output pixel coordinates
    cx: float
    cy: float
    radius: float  # every vertex lies within this distance of (cx, cy)


def make_shapes(
    out: Path, n_train: int = 400, n_test: int = 16, size: int = 64, seed: int = 0, channels: int = 3
) -> dict:
    """Write trainA/B, testA/B and masks/<split> as PNGs under `out`; return the counts and folders."""
    if n_train < 0 or n_test < 0 or seed < 0:
        raise UsageError("synthetic image counts and seed must be 0 or more")
    if size < 16:
        raise UsageError(f"synthetic image size must be at least 16, got {size}")
    if channels not in (1, 3):
        raise UsageError(f"synthetic images have 1 or 3 channels, got {channels}")
    out = Path(out)
    folders = {name: out / name for name in ("trainA", "trainB", "testA", "testB")}
    folders.update({f"masks/{name}": out / "masks" / name for name in ("trainA", "trainB", "testA", "testB")})

    for i in range(n_train):
        for stream, domain in ((_TRAIN_A, "A"), (_TRAIN_B, "B")):
            rng = _rng(seed, stream, i)
            shape = random_shape(rng, size)
            image = outline_image(shape, size) if domain == "A" else filled_image(rng, shape, size, channels)
            _write(folders, f"train{domain}", f"{i:04d}.png", shape, image, size, channels)
    for i in range(n_test):
        shape = random_shape(_rng(seed, _TEST_SHAPE, i), size)
        _write(folders, "testA", f"{i:04d}.png", shape, outline_image(shape, size), size, channels)
        style = filled_image(_rng(seed, _TEST_STYLE, i), shape, size, channels)
        _write(folders, "testB", f"{i:04d}.png", shape, style, size, channels)

    counts = {"trainA": n_train, "trainB": n_train, "testA": n_test, "testB": n_test}
    return {"root": out, "counts": counts, "folders": folders}


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _write(folders: dict, split: str, name: str, shape: Shape, image: Image.Image, size: int, channels: int) -> None:
    mode = "RGB" if channels == 3 else "L"
    write_atomic(folders[split] / name, png_bytes(image.convert(mode)))
    write_atomic(folders[f"masks/{split}"] / name, png_bytes(shape_mask(shape, size)))


def random_shape(rng: np.random.Generator, size: int) -> Shape:
    """A random shape whose bounding circle spans 42-80% of the image side, rotated, fully inside the image."""
    kind = SHAPES[rng.integers(len(SHAPES))]
    unit = _unit_polygon(kind, rng)
    radius = rng.uniform(0.21, 0.40) * size
    margin = _stroke(size) + 1.0
    cx, cy = rng.uniform(radius + margin, size - radius - margin, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return Shape(unit @ rotation.T * radius + (cx, cy), float(cx), float(cy), float(radius))


def _unit_polygon(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices centred on the origin with the farthest one at distance 1 (curves as fine polygons)."""
    if kind in ("circle", "ellipse"):
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        minor = 1.0 if kind == "circle" else rng.uniform(0.55, 0.8)
        return np.stack([np.cos(t), minor * np.sin(t)], axis=1)
    if kind == "rectangle":
        aspect = rng.uniform(0.5, 1.0)
        corners = np.array([[1, aspect], [-1, aspect], [-1, -aspect], [1, -aspect]])
        return corners / math.hypot(1, aspect)
    if kind == "star":
        t = np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.5)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    sides = 3 if kind == "triangle" else int(rng.integers(5, 7))
    t = np.arange(sides) * 2 * math.pi / sides
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _stroke(size: int) -> float:
    return max(1.0, size / 32)  # 2 px at 64 px, scaled with the image


def _big_canvas(size: int, fill: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), fill)
    return canvas, ImageDraw.Draw(canvas)


def _big_points(shape: Shape) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in shape.vertices * SUPERSAMPLE]


def shape_coverage(shape: Shape, size: int) -> np.ndarray:
    """Fraction of each pixel the filled shape covers, as uint8 0-255 (antialiased)."""
    canvas, draw = _big_canvas(size, 0)
    draw.polygon(_big_points(shape), fill=255)
    return np.asarray(canvas.reduce(SUPERSAMPLE))


def shape_mask(shape: Shape, size: int) -> Image.Image:
    """Binary mask: 255 where the shape covers at least half the pixel."""
    return Image.fromarray(np.where(shape_coverage(shape, size) >= 128, 255, 0).astype(np.uint8), "L")


def outline_image(shape: Shape, size: int) -> Image.Image:
    """Domain A: the shape's black outline on white."""
    canvas, draw = _big_canvas(size, 255)
    points = _big_points(shape)
    draw.line(points + points[:1], fill=0, width=round(_stroke(size) * SUPERSAMPLE), joint="curve")
    return canvas.reduce(SUPERSAMPLE)


def filled_image(rng: np.random.Generator, shape: Shape, size: int, channels: int) -> Image.Image:
    """Domain B: the shape filled with a random texture on a random background, no outline (RGB)."""
    background, avoid = _background(rng, size)
    fill = _texture(rng, shape, size, avoid, channels)
    alpha = shape_coverage(shape, size)[:, :, None] / 255.0
    return Image.fromarray(np.rint(alpha * fill + (1 - alpha) * background).astype(np.uint8), "RGB")


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A light or dark background and the colours a fill must stay away from."""
    light = rng.random() < 0.5
    base = rng.uniform(165, 255, 3) if light else rng.uniform(0, 90, 3)
    style = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    if style == "solid":
        return np.broadcast_to(base, (size, size, 3)), [base]
    if style == "gradient":
        other = np.clip(base + rng.uniform(-50, 50, 3), 0, 255)
        t = _ramp(_rotated_coords(rng.uniform(0, 2 * math.pi), size / 2, size / 2, size, 1)[0], size / 2)
        return base + t[:, :, None] * (other - base), [base, other]
    noise = rng.normal(0, 14, (size, size, 1))
    return np.clip(base + noise, 0, 255), [base]


def _texture(rng: np.random.Generator, shape: Shape, size: int, avoid: list[np.ndarray], channels: int) -> np.ndarray:
    """A (size, size, 3) float fill pattern, computed supersampled and box-reduced so it is antialiased.

    The pattern is anchored on the shape's centre and turned by its own random angle."""
    style = FILLS[rng.integers(len(FILLS))]
    first = _pick_colour(rng, avoid, channels)
    second = _pick_colour(rng, avoid, channels, partner=first)
    scale = size / 64  # pattern periods are tuned for 64 px images
    u, v = _rotated_coords(rng.uniform(0, math.pi), shape.cx, shape.cy, size, SUPERSAMPLE)
    if style == "solid":
        return np.broadcast_to(first, (size, size, 3))
    if style == "gradient":
        t = _ramp(u, shape.radius)
    elif style == "stripes":
        t = np.floor(u / (rng.uniform(2.5, 5.0) * scale)) % 2
    elif style == "checker":
        cell = rng.uniform(4.0, 8.0) * scale
        t = (np.floor(u / cell) + np.floor(v / cell)) % 2
    else:  # dots
        period = rng.uniform(7.0, 11.0) * scale
        du, dv = u % period - period / 2, v % period - period / 2
        t = (du**2 + dv**2 < (0.3 * period) ** 2).astype(np.float64)
    t = t.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    return first + t[:, :, None] * (second - first)


def _rotated_coords(angle: float, cx: float, cy: float, size: int, oversample: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates relative to (cx, cy), turned by `angle`, on an oversampled grid."""
    axis = (np.arange(size * oversample) + 0.5) / oversample
    x, y = np.meshgrid(axis - cx, axis - cy)
    cos, sin = math.cos(angle), math.sin(angle)
    return x * cos + y * sin, -x * sin + y * cos


def _ramp(u: np.ndarray, half_width: float) -> np.ndarray:
    return np.clip((u / half_width + 1) / 2, 0, 1)


def _pick_colour(
    rng: np.random.Generator, background: list[np.ndarray], channels: int, partner: np.ndarray | None = None
) -> np.ndarray:
    """A random colour that stands out from the background colours and from the texture's other colour."""
    far_from_background, far_from_partner = _MIN_CONTRAST[channels]
    while True:
        colour = rng.uniform(0, 255, 3)
        if all(_distance(colour, c, channels) >= far_from_background for c in background) and (
            partner is None or _distance(colour, partner, channels) >= far_from_partner
        ):
            return colour


def _distance(a: np.ndarray, b: np.ndarray, channels: int) -> float:
    if channels == 1:
        luma = np.array([0.299, 0.587, 0.114])
        return abs(float((a - b) @ luma))
    return float(np.linalg.norm(a - b))
