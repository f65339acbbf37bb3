"""Writing the prepared dataset folder: staging decoded images, placing them in their splits,
packing shards, removing what munit prepare wrote, and the summary of a run.

Layout of the folder:
  trainA/ trainB/ testA/ testB/   prepared images, named by content hash (<16 hex digits>.png|.jpg)
  packed/trainA/ packed/trainB/   with pack=True: the training images as uint8 shards (shards.py)
  manifest.json                   the options, and per source file: path, sha256, size, split and
                                  outputs, or why it was skipped (manifest.py)
  .pending/A .pending/B           decoded images of a run in progress, until their split is known

Only files named the way prepare names them, in its own folders, are ever removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
from pathlib import Path

from munit_cli import files, manifest
from munit_cli.decode import Decoded
from munit_cli.errors import MunitError
from munit_cli.files import printable, remove_stale_temporaries, write_atomic
from munit_cli.images import list_images, open_image, to_tensor
from munit_cli.manifest import Entry, Manifest, State
from munit_cli.results import Result
from munit_cli.sources import SourceFile
from munit_cli.splits import OUTPUT_NAME, SPLIT_DIRS, final_name, output_domains, staged_name

MANIFEST = manifest.NAME
PENDING = ".pending"
OWNED = SPLIT_DIRS + ("masks", "packed", PENDING, MANIFEST)  # the names munit prepare writes in --out
# What --overwrite and rebuilds remove: files named the way munit names them, in its own folders.
_SYNTHETIC_NAME = re.compile(r"^[0-9]{4,}\.png$")
_SHARD_NAME = re.compile(r"^[0-9a-f]{8}-[0-9]{5}\.safetensors$|^index\.json$")


@dataclasses.dataclass
class DomainCounts(Result):
    found: int = 0
    train: int = 0
    test: int = 0
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason kind -> files


@dataclasses.dataclass
class Prepared(Result):
    """What `run` did: per domain the files found, kept per split and skipped per reason, plus how
    many files were decoded now, reused from the previous run, and removed as stale."""

    out: Path
    kind: str
    domains: dict[str, DomainCounts]
    decoded: int
    reused: int
    removed: int  # prepared images deleted (only with overwrite): sources gone or changed, or a rebuild
    packed: dict[str, int] | None
    rebuilt: bool
    manifest: Path
    removed_sources: list[str] = dataclasses.field(default_factory=list)  # whose prepared images went
    rebuilt_because: list[str] = dataclasses.field(default_factory=list)  # what changed since the last run


def locate(out: Path, entry: Entry, domain: str, ext: str) -> Path | None:
    """Where an entry's output for `domain` is now: staged, or in either split."""
    candidates = [out / PENDING / domain / staged_name(entry, ext)]
    candidates += [out / f"{split}{domain}" / final_name(entry, domain, split, ext) for split in ("train", "test")]
    return next((path for path in candidates if path.is_file()), None)


def has_outputs(out: Path, entry: Entry, ext: str) -> bool:
    return all(locate(out, entry, domain, ext) is not None for domain in output_domains(entry))


def stage_entry(out: Path, src: SourceFile, result: Decoded, ext: str) -> Entry:
    """The manifest entry for a decoded file; its outputs are staged unless already on disk."""
    entry = Entry(
        domain=src.domain,
        source=src.rel,
        size=src.size,
        mtime_ns=src.mtime_ns,
        state=result.state,
        sha256=result.sha256,
        width=result.width,
        height=result.height,
        reason=None if result.reason is None else printable(result.reason),
        retry=result.retry,
    )
    for domain, data in result.encoded.items():
        if locate(out, entry, domain, ext) is None:
            write_atomic(out / PENDING / domain / staged_name(entry, ext), data)
    return entry


def place(out: Path, entries: list[Entry], ext: str) -> set[Path]:
    """Move every kept output to <split><domain>/<name>; returns the set of placed paths."""
    placed = set()
    for entry in entries:
        if entry.state is not State.KEPT:
            continue
        entry.outputs = {}
        for domain in output_domains(entry):
            target = out / f"{entry.split}{domain}" / final_name(entry, domain, entry.split or "", ext)
            if not target.is_file():
                current = locate(out, entry, domain, ext)
                if current is None:
                    raise MunitError(f"{target}: a prepared image disappeared during the run", hint="run prepare again")
                files.move_into_place(current, target)
            entry.outputs[domain] = target.relative_to(out).as_posix()
            placed.add(target)
    for name in SPLIT_DIRS:
        (out / name).mkdir(parents=True, exist_ok=True)
    return placed


def remove_stale(out: Path, placed: set[Path]) -> int:
    """Delete prepared images that no entry places any more (sources gone or changed, allowed by
    the plan; or left by a run killed after it dropped them) and what a killed run left staged."""
    removed = 0
    for name in SPLIT_DIRS:
        for path in (out / name).iterdir():
            if path not in placed and OUTPUT_NAME.match(path.name) and not path.is_symlink():
                path.unlink()
                removed += 1
    shutil.rmtree(out / PENDING, ignore_errors=True)
    return removed


def remove_leftovers(out: Path) -> None:
    """The temporary files of a run that was killed mid-write; its finished files are reused."""
    folders = [out, *(out / name for name in SPLIT_DIRS), *(out / PENDING / d for d in "AB")]
    remove_stale_temporaries(folders + [out / "packed" / name for name in ("trainA", "trainB")])


def clear_outputs(out: Path) -> int:
    """Remove what munit prepare wrote in `out` (files named as it names them, in its own folders,
    and folders left empty); returns how many prepared images went."""
    removed = 0
    for name in SPLIT_DIRS:
        removed += _remove_named(out / name, (OUTPUT_NAME, _SYNTHETIC_NAME))
    for name in SPLIT_DIRS:
        _remove_named(out / "masks" / name, (_SYNTHETIC_NAME,))
        _remove_named(out / "packed" / name, (_SHARD_NAME,))
    for folder in (out / "masks", out / "packed"):
        with contextlib.suppress(OSError):
            folder.rmdir()
    shutil.rmtree(out / PENDING, ignore_errors=True)
    return removed


def _remove_named(folder: Path, names: tuple[re.Pattern, ...]) -> int:
    try:
        entries = list(os.scandir(folder))
    except OSError:  # not there
        return 0
    removed = 0
    for entry in entries:
        if any(pattern.match(entry.name) for pattern in names) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
            removed += 1
    with contextlib.suppress(OSError):  # still holds files munit did not write
        folder.rmdir()
    return removed


def drop_pack(out: Path) -> None:
    for name in ("trainA", "trainB"):
        _remove_named(out / "packed" / name, (_SHARD_NAME,))
    with contextlib.suppress(OSError):
        (out / "packed").rmdir()


def pack_shards(out: Path, mode: str) -> dict[str, int]:
    """Pack trainA and trainB as uint8 shards, unless the existing pack already holds exactly them."""
    # torch: only needed here, and kept out of the worker processes
    from munit_cli import shards

    counts = {}
    for name in ("trainA", "trainB"):
        found = list_images(out / name, recursive=False)
        target = out / "packed" / name
        channels = 3 if mode == "RGB" else 1
        try:
            index = shards.read_index(target)
            current = index["names"] == [f.name for f in found] and index["channels"] == channels
        except MunitError:
            current = False
        if not current:
            shards.write_packed(((f.name, to_tensor(open_image(f, mode))) for f in found), target)
        counts[name] = len(found)
    return counts


def reason_kind(reason: str) -> str:
    """The reason without its particulars: 'too large (200000000 pixels)' -> 'too large'."""
    return reason.split(" (")[0]


def summarise(
    out: Path, record: Manifest, decoded: int, reused: int, removed: int, packed: dict | None, rebuilt: bool
) -> Prepared:
    domains: dict[str, DomainCounts] = {}
    for entry in record.files:
        stats = domains.setdefault(entry.domain, DomainCounts())
        stats.found += 1
        if entry.state is State.KEPT and entry.split == "test":
            stats.test += 1
        elif entry.state is State.KEPT:
            stats.train += 1
        else:
            why = "duplicate" if entry.state is State.DUPLICATE else reason_kind(entry.reason or "")
            stats.skipped[why] = stats.skipped.get(why, 0) + 1
    return Prepared(
        out, record.kind, dict(sorted(domains.items())), decoded, reused, removed, packed, rebuilt, out / MANIFEST
    )


def require_usable(result: Prepared) -> None:
    """A domain without one training image is no dataset: say so, after the manifest with every
    file's reason is written."""
    for domain, counts in result.domains.items():
        if not counts.train + counts.test:
            reasons = ", ".join(f"{why}: {n}" for why, n in sorted(counts.skipped.items()))
            raise MunitError(
                f"domain {domain}: none of its {counts.found} source files could be used ({reasons})",
                hint=f"each file's reason is in {printable(result.manifest)}",
            )
        if not counts.train:
            raise MunitError(
                f"domain {domain}: all {counts.test} usable images went to the test split, none is left for training",
                hint="pass a smaller --test-count or --test-fraction",
            )
