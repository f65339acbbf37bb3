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
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from munit_cli.data import elongation, warn_skipped
from munit_cli.errors import MunitError, first_line
from munit_cli.files import display_path, write_atomic

FORMAT = "munit-packed"
VERSION = 1
INDEX = "index.json"
DEFAULT_SHARD_BYTES = 256 << 20
SHARD_NAME = re.compile(r"^[0-9a-f]{8}-\d{5}\.safetensors$")  # what write_packed names them: a plain name
MAX_SIDE = 1 << 16  # far above any prepared image; bounds what a lying shard can make us allocate


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
    """The pack's index, every field checked against what `write_packed` writes."""
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MunitError(f"{folder}: not a packed image folder (no {INDEX})") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise MunitError(f"{path}: unreadable pack index ({first_line(exc)})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise MunitError(f"{path}: not a munit pack index")
    if index.get("version") != VERSION:
        raise MunitError(
            f"{path}: pack format version {index.get('version')} is not supported (this munit reads {VERSION})",
            hint="rerun munit prepare with --pack to rebuild it",
        )
    _check_index(path, index)
    return index


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_index(path: Path, index: dict) -> None:
    def broken(what: str) -> MunitError:
        return MunitError(f"{path}: broken pack index ({what})", hint="rerun munit prepare with --pack to rebuild it")

    names, shards = index.get("names"), index.get("shards")
    if not _count(index.get("count")):
        raise broken("count is not a number of images")
    if index.get("channels") not in (1, 3):
        raise broken(f"channels must be 1 or 3, got {index.get('channels')!r}")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)) or len(names) != index["count"]:
        raise broken("names must be a list of count strings")
    if not (isinstance(shards, list) and all(isinstance(s, dict) for s in shards)):
        raise broken("shards must be a list of tables")
    for shard in shards:
        if not (isinstance(shard.get("file"), str) and SHARD_NAME.match(shard["file"])):
            raise broken(f"shard file {shard.get('file')!r} is not a shard name of this folder")
        if not _count(shard.get("count")):
            raise broken(f"shard {shard['file']}: count is not a number of images")
    if sum(s["count"] for s in shards) != index["count"]:
        raise broken(f"shard counts do not add up to the {index['count']} names")


def find_packed(root: Path) -> tuple[Path, Path] | None:
    """The packed trainA/trainB folders of a prepared dataset, or None if it was not packed."""
    folders = (Path(root) / "packed" / "trainA", Path(root) / "packed" / "trainB")
    return folders if all((f / INDEX).is_file() for f in folders) else None


class PackedDomain:
    """Random access to a packed folder: `len`, and `self[i]` / `get(i)` give a uint8 (C, H, W) tensor.
    Shards are opened (memory-mapped) on first use, and their tables checked then."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.name = self.folder.name
        index = read_index(self.folder)
        self.names: list[str] = index["names"]
        self.channels: int = index["channels"]
        self._files = [self.folder / s["file"] for s in index["shards"]]
        self._counts = [s["count"] for s in index["shards"]]
        self._starts = [sum(self._counts[:k]) for k in range(len(self._counts))]
        self._open: list = [None] * len(self._files)
        self._warned: set[int] = set()

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

    def get(self, i: int) -> torch.Tensor | None:
        """Image i for training; None (with one warning) for an image too thin to crop squares from."""
        image = self[i]
        why = elongation(image.shape[1], image.shape[2])
        if why is None:
            return image
        if i not in self._warned:
            self._warned.add(i)
            warn_skipped(f"{self.names[i]} in {display_path(self.folder)}", why)
        return None

    def _shard(self, k: int) -> tuple:
        if self._open[k] is None:
            path = self._files[k]
            try:
                handle = safe_open(str(path), framework="pt")
                tables = {key: handle.get_tensor(key) for key in ("offsets", "shapes")}
                pixels = handle.get_slice("pixels")
                layout = (pixels.get_dtype(), pixels.get_shape())
            except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
                raise MunitError(f"{path}: unreadable shard ({first_line(exc)})") from None
            offsets, shapes = self._checked_tables(path, self._counts[k], tables, layout)
            self._open[k] = (handle, offsets, shapes)
        return self._open[k]

    def _checked_tables(self, path: Path, count: int, tables: dict, layout: tuple) -> tuple[list, list]:
        """The shard's tables as `write_packed` makes them, or an error: every image's bytes lie
        inside `pixels` and its shape accounts for exactly those bytes."""
        offsets, shapes = tables["offsets"], tables["shapes"]
        dtype, pixels_shape = layout
        ok = (
            dtype == "U8"
            and len(pixels_shape) == 1
            and offsets.dtype == torch.int64
            and tuple(offsets.shape) == (count + 1,)
            and shapes.dtype == torch.int64
            and tuple(shapes.shape) == (count, 3)
        )
        if ok and count:
            sizes = offsets[1:] - offsets[:-1]
            ok = (
                int(offsets[0]) == 0
                and int(offsets[-1]) == pixels_shape[0]
                and bool((shapes[:, 0] == self.channels).all())
                and bool(((shapes[:, 1:] >= 1) & (shapes[:, 1:] <= MAX_SIDE)).all())
                and bool((sizes == shapes.prod(dim=1)).all())
            )
        if not ok:
            raise MunitError(
                f"{path}: broken shard (its tables do not describe {count} {self.channels}-channel images)",
                hint="rerun munit prepare with --pack to rebuild it",
            )
        return offsets.tolist(), shapes.tolist()
