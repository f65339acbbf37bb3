"""Unpaired training data: image sources per domain and a deterministic batch stream.

Every batch is a pure function of (seed, domain, step, rank): which images (a fresh shuffle each
epoch), their crops and flips. That makes resume exact without saving loader state, lets a
background pool prefetch ahead safely, and lets ranks of a distributed run take disjoint slices
of one global batch.
"""

from __future__ import annotations

import random
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from rich.markup import escape

from munit_cli import images
from munit_cli.config import DataConfig
from munit_cli.console import err
from munit_cli.errors import MunitError, UsageError
from munit_cli.files import display_path


class Source(Protocol):
    """A domain's images: `len` and `get(i)` giving a uint8 (C, H, W) tensor, or None if unreadable."""

    name: str
    folder: Path

    def __len__(self) -> int: ...

    def get(self, i: int) -> torch.Tensor | None: ...


# Training crops squares from images whose shorter side is scaled to data.load_size, so a thin
# image (a 1 x 1,000,000 PNG is a valid file of a few KB) would be scaled to gigabytes of pixels
# for one crop. Such images are skipped with a warning.
MAX_ASPECT = 16


def elongation(height: int, width: int) -> str | None:
    """Why an image of this size is not used for training, or None."""
    if max(height, width) > MAX_ASPECT * min(height, width):
        return f"{width} x {height} pixels: more than {MAX_ASPECT} times longer than wide (training crops squares)"
    return None


def warn_skipped(what: str, why: str) -> None:
    err.print(f"[yellow]warning:[/] skipping {escape(what)}: {escape(why)}", markup=True)


class FolderSource:
    """Images decoded from a folder (recursive), resized so the shorter side is `load_size`.
    Decoded images are cached in memory up to `cache_bytes` (small datasets then decode once)."""

    def __init__(self, folder: Path, load_size: int, channels: int, cache_bytes: int = 2 << 30):
        self.folder = Path(folder)
        self.name = self.folder.name
        if not self.folder.is_dir():
            raise MunitError(f"{self.folder}: no such folder")
        scan = images.scan_images(self.folder)
        if not scan.found:
            raise images.no_images_found(self.folder, scan)
        if scan.skipped:
            warn_skipped(f"entries of {display_path(self.folder)}", f"{images.skipped_summary(scan.skipped)}; {images.LINK_RULE}")
        self.paths = scan.found
        self.load_size, self.mode = load_size, "L" if channels == 1 else "RGB"
        self._cache: dict[int, torch.Tensor] = {}
        self._cache_left = cache_bytes
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> torch.Tensor | None:
        if i in self._cache:
            return self._cache[i]
        if i in self._warned:
            return None
        try:
            img = images.open_image(self.paths[i], mode=self.mode)
        except MunitError as exc:
            self._warned.add(i)
            err.print(f"[yellow]warning:[/] skipping {escape(str(exc))}", markup=True)
            return None
        why = elongation(img.height, img.width)
        if why:
            self._warned.add(i)
            warn_skipped(display_path(self.paths[i]), why)
            return None
        t = images.to_tensor(images.resize_shorter(img, self.load_size))
        if self._cache_left >= t.numel():
            self._cache[i] = t
            self._cache_left -= t.numel()
        return t


def open_sources(paths: list[Path], cfg: DataConfig, channels: int) -> tuple[Source, Source]:
    """Two folders, or one prepared folder (`munit prepare` output: trainA/trainB, packed or not)."""
    if len(paths) == 1:
        root = Path(paths[0])
        packed = _packed_sources(root, channels)
        if packed:
            return packed
        a, b = root / "trainA", root / "trainB"
        if not (a.is_dir() and b.is_dir()):
            raise MunitError(
                f"{root}: expected a prepared dataset (trainA/ and trainB/ inside) or two folders",
                hint="usage: munit train A_DIR B_DIR  or  munit train PREPARED_DIR",
            )
        paths = [a, b]
    if len(paths) != 2:
        raise MunitError("train takes two image folders (domain A, domain B) or one prepared dataset")
    if Path(paths[0]).resolve() == Path(paths[1]).resolve():
        raise UsageError(
            f"both domains are the same folder ({display_path(paths[0])})",
            hint="give one folder of images per domain: munit train A_DIR B_DIR",
        )
    return FolderSource(paths[0], cfg.load_size, channels), FolderSource(paths[1], cfg.load_size, channels)


def _packed_sources(root: Path, channels: int) -> tuple[Source, Source] | None:
    from munit_cli import shards

    found = shards.find_packed(root)
    if found is None:
        return None
    domains = shards.PackedDomain(found[0]), shards.PackedDomain(found[1])
    for domain in domains:
        if domain.channels != channels:
            kind = {1: "grayscale", 3: "RGB"}.get(domain.channels, "other")
            raise UsageError(
                f"{display_path(domain.folder)}: the packed images have {domain.channels} channel"
                f"{'s' if domain.channels != 1 else ''} ({kind}), but model.input_dim is {channels}",
                hint=f"train with --set model.input_dim={domain.channels}",
            )
    return domains


# ---------------------------------------------------------------------------------------------
# Augmentation on tensors


def augment(img: torch.Tensor, cfg: DataConfig, rng: random.Random, train: bool = True) -> torch.Tensor:
    """uint8 (C, H, W) -> float (C, crop, crop) in [-1, 1]: resize shorter side, crop, flip.
    Random crop and flip for training; a centre crop for fixed previews."""
    c, h, w = img.shape
    x = img.float()
    if min(h, w) != cfg.load_size:
        scale = cfg.load_size / min(h, w)
        size = (max(cfg.load_size, round(h * scale)), max(cfg.load_size, round(w * scale)))
        x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        h, w = size
    crop = cfg.crop_size
    if train:
        top, left = rng.randint(0, h - crop), rng.randint(0, w - crop)
    else:
        top, left = (h - crop) // 2, (w - crop) // 2
    x = x[:, top : top + crop, left : left + crop]
    if train and cfg.flip and rng.random() < 0.5:
        x = x.flip(-1)
    return x.clamp(0, 255) / 127.5 - 1.0


# ---------------------------------------------------------------------------------------------
# Deterministic batch stream


@dataclass
class Shard:
    """Which slice of the global batch this process takes (a single process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1


class DomainStream:
    def __init__(self, source: Source, cfg: DataConfig, batch_size: int, seed: int, domain: str, shard: Shard):
        self.source, self.cfg, self.batch_size = source, cfg, batch_size
        self.key = f"{seed}:{domain}"
        self.shard = shard
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            order = list(range(len(self.source)))
            random.Random(f"{self.key}:epoch{epoch}").shuffle(order)
            self._perms = {epoch: order}  # only the current epoch is ever needed again
        return self._perms[epoch]

    def positions(self, step: int) -> list[int]:
        """Global stream positions of this rank's samples at `step` (0-based)."""
        start = (step * self.shard.world + self.shard.rank) * self.batch_size
        return list(range(start, start + self.batch_size))

    def _sample(self, position: int) -> torch.Tensor:
        n = len(self.source)
        for attempt in range(n):
            p = position + attempt
            index = self._perm(p // n)[p % n]
            img = self.source.get(index)
            if img is not None:
                return augment(img, self.cfg, random.Random(f"{self.key}:{position}"))
        raise MunitError(f"{getattr(self.source, 'name', 'a domain')}: none of its images could be read")

    def batch(self, step: int) -> torch.Tensor:
        return torch.stack([self._sample(p) for p in self.positions(step)])


class Prefetcher:
    """Builds the next batches on `threads` background threads (decoding releases the GIL) while
    the model trains; the result is the same as calling `make(step)` in order. 0 threads: built
    in the training thread when needed."""

    def __init__(self, make, start_step: int, threads: int, depth: int = 2):
        self.make = make
        self.pool = ThreadPoolExecutor(threads) if threads > 0 else None
        self.pending: dict[int, Future] = {}
        self.next_step, self.depth = start_step, depth

    def get(self, step: int):
        if self.pool is None:
            return self.make(step)
        while self.next_step <= step + self.depth:
            self.pending[self.next_step] = self.pool.submit(self.make, self.next_step)
            self.next_step += 1
        return self.pending.pop(step).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def preview_batch(source: Source, cfg: DataConfig, count: int, spread: bool = False) -> torch.Tensor:
    """The first `count` readable images of a domain, centre-cropped: the fixed sample-grid inputs.
    `spread`: every k-th image instead, so that they come from all over the domain's order."""
    picked = []
    stride = max(1, len(source) // count) if spread else 1
    for i in range(0, len(source), stride):
        img = source.get(i)
        if img is not None:
            picked.append(augment(img, cfg, random.Random(0), train=False))
        if len(picked) == count:
            break
    if not picked:
        raise MunitError(f"{getattr(source, 'name', 'a domain')}: none of its images could be read")
    return torch.stack(picked)


def colourfulness(batch: torch.Tensor) -> float:
    """How far from grey a batch of images in [-1, 1] is: each pixel's spread between its largest
    and smallest channel, averaged, from 0 (all grey) to 1."""
    return float((batch.amax(1) - batch.amin(1)).mean() / 2)
