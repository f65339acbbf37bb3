"""Images per second delivered to the training loop: packed uint8 shards vs decoding image files.

    python benchmarks/data_loading.py                      # synthetic shapes at 256 px
    python benchmarks/data_loading.py --source DIR --size 256 --crop 256

Every row goes through the training code path (`data.DomainStream`: shuffled order, random crop and
flip, float batches in [-1, 1]) in this one process. The file rows decode every image every time
(the in-memory cache is off), as with a data set larger than memory; the packed row slices raw
uint8 bytes out of memory-mapped safetensors shards written by `munit prepare --pack`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from munit_cli import data, prepare, synthetic
from munit_cli.config import DataConfig
from munit_cli.shards import PackedDomain


def prepared_copies(work: Path, source: Path | None, size: int, count: int) -> dict[str, Path]:
    """The same images prepared as PNG and as JPEG (q95, with a pack); returns the folders to read."""
    raw = work / "raw"
    synthetic.make_shapes(raw, n_train=0 if source else count, n_test=1, size=size)
    # Only domain A is measured; prepare needs a second, separate folder, a one-image stand-in.
    other = raw / "testB"
    if source is None:
        source = raw / "trainB"  # textures on noisy or graded backgrounds: the harder one to compress
    common = {"size": size, "test_fraction": 0.0}
    prepare.run(source, other, work / "png", fmt="png", pack=True, **common)
    prepare.run(source, other, work / "jpg", fmt="jpg", quality=95, **common)
    return {
        "png": work / "png" / "trainA",
        "jpg": work / "jpg" / "trainA",
        "packed": work / "png" / "packed" / "trainA",
    }


class Meter:
    """Feeds one loader through the training stream, accumulating images, wall time and CPU time."""

    def __init__(self, source: data.Source, cfg: DataConfig, batch_size: int):
        self.stream = data.DomainStream(source, cfg, batch_size, seed=0, domain="a", shard=data.Shard())
        self.stream.batch(0)  # warm up: open files and shards, fault in the first pages
        self.images, self.wall, self.cpu, self.step = 0, 0.0, 0.0, 1

    def run_for(self, seconds: float) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - wall < seconds:
            self.images += self.stream.batch(self.step).shape[0]
            self.step += 1
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu


def run_benchmark(
    source: Path | None = None,
    size: int = 256,
    crop: int = 256,
    count: int = 128,
    batch_size: int = 8,
    seconds: float = 3.0,
    rounds: int = 6,
) -> list[tuple[str, int, float, float]]:
    """(loader, images in the set, images per wall second, images per CPU second) for PNG files,
    JPEG files and packed shards. Loaders take turns in `rounds` slices, so a machine whose load
    changes during the run affects them alike."""
    cfg = DataConfig(load_size=size, crop_size=crop, flip=True)
    with tempfile.TemporaryDirectory(prefix="munit-bench-") as tmp:
        folders = prepared_copies(Path(tmp), source, size, count)
        sources: dict[str, data.Source] = {
            "PNG files (PIL decode)": data.FolderSource(folders["png"], size, 3, cache_bytes=0),
            "JPEG q95 files (PIL decode)": data.FolderSource(folders["jpg"], size, 3, cache_bytes=0),
            "packed uint8 shards (mmap)": PackedDomain(folders["packed"]),
        }
        meters = {name: Meter(src, cfg, batch_size) for name, src in sources.items()}
        for _ in range(rounds):
            for meter in meters.values():
                meter.run_for(seconds / rounds)
        return [(name, len(sources[name]), m.images / m.wall, m.images / m.cpu) for name, m in meters.items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, help="a folder of images (default: synthetic shapes)")
    parser.add_argument("--size", type=int, default=256, help="shorter side after prepare (default 256)")
    parser.add_argument("--crop", type=int, default=256, help="training crop (default 256)")
    parser.add_argument("--count", type=int, default=128, help="synthetic images to make (default 128)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per loader (default 3)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1, as in each DataLoader worker)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run_benchmark(args.source, args.size, args.crop, args.count, args.batch_size, args.seconds)
    print(f"{args.size} px images, {args.crop} px crops, batch {args.batch_size}, torch threads {args.threads}")
    print(f"{'loader':<30} {'images':>7} {'images/s':>9} {'per CPU s':>10} {'vs PNG':>7}")
    for name, n, wall_rate, cpu_rate in rows:
        print(f"{name:<30} {n:>7} {wall_rate:>9.0f} {cpu_rate:>10.0f} {wall_rate / rows[0][2]:>6.1f}x")


if __name__ == "__main__":
    sys.exit(main())
