"""Tiled translation: images of any size through networks that see one tile at a time.

The image is cut into overlapping tiles, each translated on the device on its own and blended on
the CPU with feathered weights, so the device only ever holds one tile's activations. Every
normalisation in MUNIT is per image (instance norm in the content encoder, AdaIN and LayerNorm in
the decoder), and a tile normalised with its own statistics comes out in another tone than the
same pixels of the whole image. So a first pass over the whole image, scaled
down to fit the memory budget (not at all when it fits), records every normalisation's mean and
variance in call order, and every tile is normalised with those (`models.norm_statistics`).
The decoder's statistics depend on the style, so they are recorded once per style.

benchmarks/tiles.py measures how close this comes to the whole translation (paper networks, 512x384,
256 px tiles: 0.08 levels of 256 with the whole image's statistics, 5.4 with those of the image
shrunk to a quarter of its pixels, 23.6 with each tile's own), and what a huge image costs.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Callable, Iterator, Literal

import torch
import torch.nn.functional as F

from munit_cli import runtime
from munit_cli.errors import UsageError
from munit_cli.models import min_size, norm_statistics, own_statistics, size_multiple

if TYPE_CHECKING:
    from munit_cli.infer import Translator

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)
Stats = list[tuple[str, torch.Tensor, torch.Tensor]]


def _starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Tile starts along one axis, multiples of `multiple`, the first at 0 and the last ending at
    `length` (a multiple itself), spread evenly so neighbours overlap by at least `overlap`."""
    if length <= tile:
        return [0]
    units, size, keep = length // multiple, tile // multiple, overlap // multiple
    n = 1 + math.ceil((units - size) / (size - keep))
    # consecutive floors of i * spacing differ by at most ceil(spacing) <= size - keep units
    return [multiple * (i * (units - size) // (n - 1)) for i in range(n)]


def plan_tiles(width: int, height: int, tile: int, overlap: int, multiple: int) -> list[Box]:
    """Boxes covering a width x height image (sides multiples of `multiple`) row by row, each
    tile x tile or the whole side where the image is smaller; `tile` and `overlap` are multiples
    of `multiple` with overlap < tile."""
    xs = _starts(width, tile, overlap, multiple)
    ys = _starts(height, tile, overlap, multiple)
    return [(x, y, min(x + tile, width), min(y + tile, height)) for y in ys for x in xs]


def count_tiles(width: int, height: int, tile: int, overlap: int, multiple: int) -> int:
    return len(_starts(width, tile, overlap, multiple)) * len(_starts(height, tile, overlap, multiple))


def default_overlap(tile: int, multiple: int) -> int:
    """A quarter of the tile: far enough for the reflection padding at a tile's sides to fade.
    With it, 256 px tiles of the paper's networks come within 0.08 levels of 256 of the whole
    translation (benchmarks/tiles.py)."""
    return max(multiple, tile // 4 // multiple * multiple)


def needs_tiling(tr: Translator, width: int, height: int) -> bool:
    """Whether an input of this size would not fit the memory budget in one forward pass."""
    w, h = tr.work_size(width, height)
    return w * h > tr.max_pixels


def default_tile(tr: Translator) -> int:
    """The largest aligned side whose square fits half the memory budget: the other half is left
    to the image, its blend buffers and the outputs, which live in the same memory on the CPU."""
    step = size_multiple(tr.loaded.cfg.model)
    return math.isqrt(tr.max_pixels // 2) // step * step


def check_tile(tr: Translator, tile: int) -> None:
    m = tr.loaded.cfg.model
    step, smallest, largest = size_multiple(m), min_size(m), math.isqrt(tr.max_pixels) // size_multiple(m) * size_multiple(m)
    if tile % step or not smallest <= tile <= largest:
        raise UsageError(
            f"--tile {tile}: this model takes tiles of {smallest} to {largest} px in steps of {step} "
            f"(the largest fits the memory budget of inference)"
        )


def _recorder(stats: Stats) -> Callable[[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    def record(kind: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = own_statistics(kind, x)
        stats.append((kind, mean, var))
        return mean, var

    return record


def _replayer(stats: Stats) -> Callable[[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    recorded: Iterator[tuple[str, torch.Tensor, torch.Tensor]] = iter(stats)

    def replay(kind: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recorded_kind, mean, var = next(recorded)
        assert recorded_kind == kind, "the tile pass normalised in another order than the statistics pass"
        return mean, var

    return replay


def _scaled(x: torch.Tensor, pixels: int, multiple: int, smallest: int) -> torch.Tensor:
    """x shrunk (antialiased) so it works at no more than `pixels`, sides aligned."""
    h, w = x.shape[-2:]
    scale = math.sqrt(pixels / (h * w))
    size = (max(smallest, int(h * scale) // multiple * multiple), max(smallest, int(w * scale) // multiple * multiple))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def _ramp(start: int, end: int, length: int, overlap: int) -> torch.Tensor:
    """Blend weights along one axis of a tile: at a side where another tile takes over (not the
    image's edges), near 0 over the outer quarter of the overlap, where padding shows most, then
    rising linearly over its middle half. Cutting over the middle half rather than feathering over
    the whole overlap took the tiled-vs-whole difference from 1.8 to 1.3 levels of 256 (the tests'
    model and scene). Never exactly 0, so every pixel keeps a weight."""
    w = torch.ones(end - start)
    ramp = ((torch.arange(min(overlap, end - start)) + 0.5 - overlap / 4) / (overlap / 2)).clamp(1e-3, 1)
    if start > 0:
        w[: len(ramp)] = torch.minimum(w[: len(ramp)], ramp)
    if end < length:
        w[len(w) - len(ramp) :] = torch.minimum(w[len(w) - len(ramp) :], ramp.flip(0))
    return w


@torch.no_grad()
def translate_tiled(
    tr: Translator,
    x_a: torch.Tensor,
    styles: torch.Tensor,
    tile: int,
    on_tile: Callable[[], None] | None = None,
    statistics: Literal["image", "tile"] = "image",
    stats_pixels: int | None = None,
) -> list[torch.Tensor]:
    """x_a (1, C, H, W) on the CPU in [-1, 1], sides multiples of `size_multiple` -> one (C, H, W)
    float32 CPU tensor per style (K, style_dim), as `Translator.translate_batch` gives for a whole image.
    `on_tile` is called after each tile (all styles), `count_tiles` times.

    statistics='image' (the default) normalises every tile with the whole image's statistics,
    from a pass over the image shrunk to at most `stats_pixels` (default: the budget, so exact
    where the image fits it whole; else half the budget); 'tile' lets each tile use its own (the
    naive way, for comparisons)."""
    check_tile(tr, tile)
    m = tr.loaded.cfg.model
    step = size_multiple(m)
    _, channels, height, width = x_a.shape
    gen_a = tr.loaded.model.generator(tr.source)
    gen_b = tr.loaded.model.generator(tr.target)
    layout = torch.channels_last if tr.precision == "bf16" else torch.contiguous_format
    styles = styles.to(tr.device)

    def on_device(x: torch.Tensor) -> torch.Tensor:
        return x.to(tr.device).contiguous(memory_format=layout)

    encoder_stats: Stats = []
    decoder_stats: list[Stats] = [[] for _ in styles]
    if statistics != "tile":
        if stats_pixels is None:
            stats_pixels = tr.max_pixels if height * width <= tr.max_pixels else tr.max_pixels // 2
        sample = x_a if height * width <= stats_pixels else _scaled(x_a, stats_pixels, step, min_size(m))
        sample = on_device(sample)
        with runtime.autocast(tr.device, tr.precision):
            with norm_statistics(_recorder(encoder_stats)):
                c_a = gen_a.content_encoder(sample)
            for s_b, stats in zip(styles, decoder_stats):
                with norm_statistics(_recorder(stats)):
                    gen_b.decode(c_a, s_b[None])
        del sample, c_a

    outputs = [torch.zeros(channels, height, width) for _ in styles]
    weights = torch.zeros(height, width)
    overlap = default_overlap(tile, step)
    for left, top, right, bottom in plan_tiles(width, height, tile, overlap, step):
        weight = _ramp(top, bottom, height, overlap)[:, None] * _ramp(left, right, width, overlap)[None, :]
        piece = on_device(x_a[:, :, top:bottom, left:right])
        with runtime.autocast(tr.device, tr.precision):
            with _replaying(encoder_stats):
                c_a = gen_a.content_encoder(piece)
            for s_b, stats, out in zip(styles, decoder_stats, outputs):
                with _replaying(stats):
                    y = gen_b.decode(c_a, s_b[None])[0].float().cpu()
                out[:, top:bottom, left:right] += y * weight
        weights[top:bottom, left:right] += weight
        if on_tile is not None:
            on_tile()
    for out in outputs:
        out /= weights
    return outputs


def _replaying(stats: Stats) -> contextlib.AbstractContextManager:
    """Normalise with recorded statistics; with none recorded (statistics='tile'), as usual."""
    return norm_statistics(_replayer(stats)) if stats else contextlib.nullcontext()
