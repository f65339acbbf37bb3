"""Packed uint8 image shards: a domain's prepared images in a few safetensors files, read memory-mapped.

Decoding PNG/JPEG costs far more than copying raw pixels, so `munit prepare --pack` stores each
training folder once as raw uint8 and training only slices bytes out of the page cache.

Layout of a packed folder (e.g. DATA/packed/trainA/):
  index.json              {"format": "munit-packed", "version": 1, "count", "channels",
                           "names": [...], "shards": [{"file", "count"}, ...]}
  <token>-00000.safetensors, ...
Each shard holds three tensors: `pixels` (uint8, 1-D: every image's C x H x W bytes back to back,
so images may differ in size without padding), `offsets` (int64, count + 1: image i is
pixels[offsets[i]:offsets[i + 1]]) and `shapes` (int64, count x 3: C, H, W).
`token` is new for every pack and index.json is replaced last and atomically, so an interrupted
repack leaves the previous pack intact.
"""

from __future__ import annotations

import bisect
import json
import uuid
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from munit_cli.errors import MunitError
from munit_cli.files import write_atomic

FORMAT = "munit-packed"
VERSION = 1
INDEX = "index.json"
DEFAULT_SHARD_BYTES = 256 << 20


def write_packed(
    images: Iterable[tuple[str, torch.Tensor]], folder: Path, shard_bytes: int = DEFAULT_SHARD_BYTES
) -> dict:
    """Pack (name, uint8 C x H x W tensor) pairs into `folder`, one shard in memory at a time; returns
    the index written. Files of a previous pack in `folder` are removed once the new index is in place."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]  # new shard names never clobber the pack that index.json still describes
    names: list[str] = []
    channels: set[int] = set()
    shards = []
    for number, group in enumerate(_groups(images, shard_bytes)):
        file = f"{token}-{number:05d}.safetensors"
        write_atomic(folder / file, _shard_bytes([t for _, t in group]))
        shards.append({"file": file, "count": len(group)})
        names.extend(name for name, _ in group)
        channels.update(int(t.shape[0]) for _, t in group)
    if len(channels) > 1:
        raise MunitError(f"{folder}: cannot pack images with different channel counts {sorted(channels)}")
    index = {
        "format": FORMAT,
        "version": VERSION,
        "count": len(names),
        "channels": channels.pop() if channels else 3,
        "names": names,
        "shards": shards,
    }
    write_atomic(folder / INDEX, json.dumps(index, indent=1).encode())
    keep = {s["file"] for s in shards}
    for old in folder.glob("*.safetensors"):
        if old.name not in keep:
            old.unlink()
    return index


def _groups(items: Iterable[tuple[str, torch.Tensor]], shard_bytes: int) -> Iterable[list]:
    group, size = [], 0
    for item in items:
        if group and size + item[1].numel() > shard_bytes:
            yield group
            group, size = [], 0
        group.append(item)
        size += item[1].numel()
    if group:
        yield group


def _shard_bytes(tensors: list[torch.Tensor]) -> bytes:
    for t in tensors:
        if t.dtype != torch.uint8 or t.dim() != 3:
            raise MunitError(f"packed images must be uint8 C x H x W tensors, got {t.dtype} {tuple(t.shape)}")
    sizes = torch.tensor([0] + [t.numel() for t in tensors], dtype=torch.int64)
    return safetensors_bytes(
        {
            "pixels": torch.cat([t.reshape(-1) for t in tensors]),
            "offsets": torch.cumsum(sizes, 0),
            "shapes": torch.tensor([list(t.shape) for t in tensors], dtype=torch.int64),
        },
        metadata={"format": FORMAT, "version": str(VERSION)},
    )


def read_index(folder: Path) -> dict:
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MunitError(f"{folder}: not a packed image folder (no {INDEX})") from None
    except (OSError, ValueError) as exc:
        raise MunitError(f"{path}: unreadable pack index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise MunitError(f"{path}: not a munit pack index")
    if index.get("version") != VERSION:
        raise MunitError(
            f"{path}: pack format version {index.get('version')} is not supported (this munit reads {VERSION})",
            hint="rerun munit prepare with --pack to rebuild it",
        )
    return index


def find_packed(root: Path) -> tuple[Path, Path] | None:
    """The packed trainA/trainB folders of a prepared dataset, or None if it was not packed."""
    folders = (Path(root) / "packed" / "trainA", Path(root) / "packed" / "trainB")
    return folders if all((f / INDEX).is_file() for f in folders) else None


class PackedDomain:
    """Random access to a packed folder: `len`, and `self[i]` / `get(i)` give a uint8 (C, H, W) tensor.

    Shards are opened lazily in the process that reads them, so instances can be handed to
    DataLoader workers (each maps the files itself)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.name = self.folder.name
        index = read_index(self.folder)
        self.names: list[str] = index["names"]
        self.channels: int = index["channels"]
        self._files = [self.folder / s["file"] for s in index["shards"]]
        counts = [s["count"] for s in index["shards"]]
        self._starts = [sum(counts[:k]) for k in range(len(counts))]
        if sum(counts) != len(self.names):
            raise MunitError(f"{self.folder / INDEX}: shard counts do not add up to the {len(self.names)} names")
        self._open: list | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} out of range for {len(self)} packed images")
        i %= len(self)
        shard = bisect.bisect_right(self._starts, i) - 1
        handle, offsets, shapes = self._shard(shard)
        local = i - self._starts[shard]
        flat = handle.get_slice("pixels")[int(offsets[local]) : int(offsets[local + 1])]
        return flat.reshape(tuple(shapes[local]))

    def get(self, i: int) -> torch.Tensor:
        return self[i]

    def _shard(self, k: int) -> tuple:
        if self._open is None:
            self._open = [None] * len(self._files)
        if self._open[k] is None:
            try:
                handle = safe_open(str(self._files[k]), framework="pt")
            except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
                raise MunitError(f"{self._files[k]}: unreadable shard ({exc})") from None
            self._open[k] = (handle, handle.get_tensor("offsets").tolist(), handle.get_tensor("shapes").tolist())
        return self._open[k]

    def __getstate__(self) -> dict:
        # Open file handles cannot cross process boundaries; each process reopens its shards.
        return {**self.__dict__, "_open": None}
