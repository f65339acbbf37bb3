"""Tiled translation: how close tiles come to the whole translation, and what a huge image costs.

    python benchmarks/tiles.py                                  # both parts, a few minutes on 2 cores
    python benchmarks/tiles.py --skip-big --preset paper --size 512 384 --tile 256

Accuracy: an untrained model of `--preset` (random init; the normalisations behave the same) on a
scene of gradients and shapes that fits the memory budget whole, translated whole and tiled, with
every tile normalised by the whole image's statistics (exact here), by those of the image shrunk
to a quarter of its pixels (what a too-large image gets), and by its own (the naive way).
Differences are in levels of 256: the mean absolute difference per channel (the worst channel and
style), and the largest per-pixel difference within 2 px of a tile border against inside tiles.

Huge image: a `--big` PNG made here, translated tiled with the default tile by a child process
(the model of `--big-preset`, precision auto), timed, with its peak resident memory against the
memory budget.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from munit_cli import checkpoint, config, images, infer, models, tiles

STYLES = 2


def make_model(preset: str, folder: Path, seed: int = 0) -> Path:
    cfg = config.resolve(preset)
    torch.manual_seed(seed)
    gen, _ = models.build(cfg.model)
    path = folder / f"{preset}.safetensors"
    checkpoint.save_generator(path, gen, cfg, ("a", "b"), 0, f"bench-{preset}")
    return path


def scene(width: int, height: int) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1]: smooth gradients, a rectangle and a disc."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    img = torch.stack([x, y, x * y])
    img[:, height // 4 : height // 2, width // 5 : width // 2] = 0.8
    img[2, (x**2 + y**2).sqrt() < 0.3] = -0.9
    return img[None]


def levels(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(-1, 1) + 1) * 127.5


def border_mask(width: int, height: int, tile: int, step: int) -> torch.Tensor:
    """True on the two pixels either side of every line where a tile starts or ends inside the image."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for left, top, right, bottom in tiles.plan_tiles(width, height, tile, tiles.default_overlap(tile, step), step):
        for edge in (left, right):
            if 0 < edge < width:
                mask[:, edge - 2 : edge + 2] = True
        for edge in (top, bottom):
            if 0 < edge < height:
                mask[edge - 2 : edge + 2, :] = True
    return mask


def accuracy(preset: str, width: int, height: int, tile: int, folder: Path) -> None:
    tr = infer.Translator.open(make_model(preset, folder), to="B", device="cpu", precision="fp32")
    step = models.size_multiple(tr.loaded.cfg.model)
    x = scene(width, height)
    torch.manual_seed(1)
    styles = torch.randn(STYLES, tr.style_dim)
    start = time.perf_counter()
    whole = [y[0] for y in tr.translate_batch(x, styles)]
    print(f"\naccuracy: {preset} (random init), {width}x{height}, tile {tile} "
          f"({tiles.count_tiles(width, height, tile, tiles.default_overlap(tile, step), step)} tiles), "
          f"{STYLES} styles, fp32; whole in {time.perf_counter() - start:.1f} s")
    border = border_mask(width, height, tile, step)
    print(f"{'statistics':<34} {'mean/ch':>8} {'max':>6} {'border':>7} {'inside':>7} {'s':>6}")
    rows = [
        ("whole image (exact)", {}),
        ("image shrunk to 1/4 of its pixels", {"stats_pixels": width * height // 4}),
        ("each tile its own", {"statistics": "tile"}),
    ]
    for name, options in rows:
        start = time.perf_counter()
        tiled = tiles.translate_tiled(tr, x, styles, tile, **options)
        seconds = time.perf_counter() - start
        diffs = [(levels(a) - levels(b)).abs() for a, b in zip(tiled, whole)]
        mean = max(d.mean(dim=(1, 2)).max().item() for d in diffs)
        per_pixel = torch.stack([d.amax(dim=0) for d in diffs]).amax(dim=0)
        print(f"{name:<34} {mean:8.2f} {per_pixel.max():6.1f} {per_pixel[border].max():7.1f} "
              f"{per_pixel[~border].max():7.1f} {seconds:6.1f}")


def translate_big(model: str, source: str, target: str) -> None:
    """The child: read, translate tiled with the default tile, write; as translate would."""
    tr = infer.Translator.open(model, to="B", device="cpu")
    img = images.open_image(Path(source).read_bytes(), mode=tr.mode, name=source)
    x = (images.to_tensor(img).float() / 127.5 - 1.0)[None]
    tile = tiles.default_tile(tr)
    overlap = tiles.default_overlap(tile, models.size_multiple(tr.loaded.cfg.model))
    total, done = tiles.count_tiles(img.width, img.height, tile, overlap, models.size_multiple(tr.loaded.cfg.model)), []

    def on_tile() -> None:
        done.append(1)
        print(f"  tile {len(done)}/{total}", file=sys.stderr, flush=True)

    torch.manual_seed(1)
    (y,) = tiles.translate_tiled(tr, x, torch.randn(1, tr.style_dim), tile, on_tile)
    del x
    tr.to_output(y, img.size).save(target)
    print(f"{tile} {total} {tr.precision}")


def big(preset: str, width: int, height: int, folder: Path) -> None:
    model = make_model(preset, folder)
    source, target = folder / "big.png", folder / "big-out.png"
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    small.resize((width, height), Image.Resampling.BILINEAR).save(source, compress_level=1)
    del small
    start = time.perf_counter()
    child = subprocess.run(
        [sys.executable, __file__, "--child", str(model), str(source), str(target)],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    seconds = time.perf_counter() - start
    tile, count, precision = child.stdout.split()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kilobytes on Linux
    with Image.open(target) as out:
        size = out.size
    print(f"\nhuge image: {preset} (random init), {width}x{height} PNG -> {size[0]}x{size[1]}, precision {precision}, "
          f"tile {tile} ({count} tiles)")
    print(f"wall {seconds:.0f} s (process start, read, translate, write); peak RSS {peak / 2**30:.2f} GiB "
          f"of the {infer.MEMORY_BUDGET / 2**30:g} GiB budget")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        translate_big(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", help="model of the accuracy table (default paper)")
    parser.add_argument("--size", type=int, nargs=2, default=[512, 384], metavar=("W", "H"))
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--big-preset", default="cpu", help="model of the huge image (default cpu)")
    parser.add_argument("--big", type=int, nargs=2, default=[8000, 6000], metavar=("W", "H"))
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_accuracy:
            accuracy(args.preset, *args.size, args.tile, Path(tmp))
        if not args.skip_big:
            big(args.big_preset, *args.big, Path(tmp))


if __name__ == "__main__":
    main()
