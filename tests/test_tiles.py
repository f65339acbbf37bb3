"""Tiled translation on an untrained tiny model: tiles with the whole image's statistics match the
whole translation, without seams; tiles with their own statistics do not."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from munit_cli import checkpoint, config, infer, models, tiles
from munit_cli.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTH, HEIGHT, TILE = 128, 96, 80

# the scene and the measures of benchmarks/tiles.py, so the test checks what the benchmark reports
_spec = importlib.util.spec_from_file_location("tiles_benchmark", Path(__file__).resolve().parents[1] / "benchmarks" / "tiles.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
scene, levels = bench.scene, bench.levels


@pytest.fixture(scope="module")
def tr(tmp_path_factory) -> infer.Translator:
    cfg = config.resolve("tiny", overrides={"model": {"dim": 8, "mlp_dim": 16, "n_res": 1}})
    torch.manual_seed(0)
    gen, _ = models.build(cfg.model)
    path = tmp_path_factory.mktemp("tiles") / "gen.safetensors"
    checkpoint.save_generator(path, gen, cfg, ("outline", "filled"), 10, "fp-tiles")
    return infer.Translator.open(path, to="B", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def case(tr):
    x = scene(WIDTH, HEIGHT)
    torch.manual_seed(1)
    styles = torch.randn(2, tr.style_dim)
    whole = [y[0] for y in tr.translate_batch(x, styles)]
    return x, styles, whole


def test_tiled_matches_whole_without_seams(tr, case):
    x, styles, whole = case
    calls = []
    tiled = tiles.translate_tiled(tr, x, styles, TILE, on_tile=lambda: calls.append(1))
    assert len(calls) == tiles.count_tiles(WIDTH, HEIGHT, TILE, tiles.default_overlap(TILE, 4), 4) == 4
    border = bench.border_mask(WIDTH, HEIGHT, TILE, 4)
    for got, want in zip(tiled, whole):
        assert got.shape == want.shape
        diff = (levels(got) - levels(want)).abs()
        assert diff.mean(dim=(1, 2)).max() <= 2.0
        per_pixel = diff.amax(dim=0)
        assert per_pixel[border].max() <= per_pixel[~border].max()


def test_own_tile_statistics_are_far_off(tr, case):
    """The mechanism matters: tiles normalised on their own statistics differ several times more."""
    x, styles, whole = case
    shared = tiles.translate_tiled(tr, x, styles, TILE)
    own = tiles.translate_tiled(tr, x, styles, TILE, statistics="tile")
    for a, b, want in zip(shared, own, whole):
        assert (levels(b) - levels(want)).abs().mean() > 5 * (levels(a) - levels(want)).abs().mean()


def test_one_tile_over_the_whole_image_is_the_whole_translation(tr, case):
    """Statistics recorded and replayed over the same pixels give the plain forward (to rounding:
    the replayed norms are composed by hand, not torch's fused kernel)."""
    x, styles, whole = case
    for got, want in zip(tiles.translate_tiled(tr, x, styles, 128), whole):
        assert torch.allclose(got, want, atol=1e-4)


def test_inactive_norms_are_todays_code_bit_for_bit(tr, case):
    x, styles, whole = case
    torch.manual_seed(2)
    a = torch.randn(2, 8, 12, 10)
    weight, bias = torch.rand(8), torch.randn(8)
    assert torch.equal(models.instance_norm(a), F.instance_norm(a, eps=models.NORM_EPS))
    std, mean = torch.std_mean(a.flatten(1), dim=1, correction=1)
    plain = (a - mean[:, None, None, None]) / (std[:, None, None, None] + models.NORM_EPS)
    assert torch.equal(models.layer_norm(a, weight, bias), plain * weight[None, :, None, None] + bias[None, :, None, None])
    tiles.translate_tiled(tr, x, styles, TILE)  # leaves no statistics source behind
    for got, want in zip(tr.translate_batch(x, styles), whole):
        assert torch.equal(got[0], want)


def test_downscaled_statistics_when_the_image_is_too_large(tr, case):
    """Past `stats_pixels` the statistics come from a shrunk copy: approximate, closer than own tiles."""
    x, styles, whole = case
    scaled = tiles.translate_tiled(tr, x, styles, TILE, stats_pixels=WIDTH * HEIGHT // 4)
    own = tiles.translate_tiled(tr, x, styles, TILE, statistics="tile")
    for a, b, want in zip(scaled, own, whole):
        assert (levels(a) - levels(want)).abs().mean() < (levels(b) - levels(want)).abs().mean()


@pytest.mark.parametrize(
    "width, height, tile, overlap",
    [(128, 96, 80, 20), (100, 36, 32, 8), (64, 64, 64, 16), (20, 200, 48, 12), (4000, 3000, 1024, 256), (16, 16, 64, 16)],
)
def test_plan_covers_every_pixel_aligned_and_overlapping(width, height, tile, overlap):
    boxes = tiles.plan_tiles(width, height, tile, overlap, 4)
    assert len(boxes) == tiles.count_tiles(width, height, tile, overlap, 4)
    covered = torch.zeros(height, width, dtype=torch.int32)
    for left, top, right, bottom in boxes:
        assert all(v % 4 == 0 for v in (left, top, right, bottom))
        assert right - left == min(tile, width) and bottom - top == min(tile, height)
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1
    for starts, side, size in (
        (sorted({b[0] for b in boxes}), width, tile),
        (sorted({b[1] for b in boxes}), height, tile),
    ):
        assert starts[0] == 0 and starts[-1] + min(size, side) == side
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))


def test_bad_tile_names_the_limits(tr):
    x = scene(32, 32)
    largest = math.isqrt(tr.max_pixels) // 4 * 4
    for bad in (30, 8, largest + 4):
        with pytest.raises(UsageError, match=f"16 to {largest} px in steps of 4"):
            tiles.translate_tiled(tr, x, torch.zeros(1, tr.style_dim), bad)


def test_auto_tiling_and_default_tile(tr):
    tile = tiles.default_tile(tr)
    assert tile % 4 == 0 and tile**2 <= tr.max_pixels // 2 < (tile + 4) ** 2
    side = math.isqrt(tr.max_pixels)
    assert not tiles.needs_tiling(tr, side // 2, side // 2)
    assert tiles.needs_tiling(tr, 2 * side, side)
