"""`munit prepare`: messy image folders in, a clean, split, optionally packed training set out.

Layout of the output folder:
  trainA/ trainB/ testA/ testB/   prepared images, named by content hash (<16 hex digits>.png|.jpg)
  packed/trainA/ packed/trainB/   with pack=True: the training images as uint8 shards (shards.py)
  manifest.json                   the options, and per source file: path, sha256, size, split and
                                  outputs, or why it was skipped (manifest.py)

Design choices:
- Names come from content hashes, so odd source names (spaces, non-UTF-8 bytes) never reach the
  output, and the split (splits.py) does not move existing files when files are added.
- A rerun reuses every source whose size and mtime match the manifest; new results are staged in
  .pending/ and moved into place once all splits are known. Every file, the manifest included, is
  written under a temporary name and renamed, so an interrupted run never leaves a half-written file.
- Decoding runs in worker processes (pool.py); only this process writes files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageColor

from munit_cli import console, manifest, pool, synthetic
from munit_cli.errors import MunitError, UsageError
from munit_cli.files import display_path, remove_stale_temporaries, write_atomic
from munit_cli.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageError,
    center_crop,
    encode_image,
    list_images,
    open_image,
    read_bytes,
    resize_shorter,
    to_tensor,
)
from munit_cli.manifest import PAIRED, Entry, Manifest, State
from munit_cli.results import Result
from munit_cli.splits import (
    OUTPUT_NAME,
    SPLIT_DIRS,
    assign_splits,
    final_name,
    mark_duplicates,
    output_domains,
    staged_name,
)

MANIFEST = manifest.NAME
PENDING = ".pending"
OWNED = SPLIT_DIRS + ("masks", "packed", PENDING, MANIFEST)  # what --overwrite and rebuilds may delete
DEFAULT_SIZE = 256
DEFAULT_SYNTHETIC_SIZE = 64
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_SYNTHETIC_TEST_COUNT = 16
STOPPED = "prepare stopped; finished images are kept, run the same command again to continue"

Progress = Callable[[int, int], None]


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


class SourceFile(NamedTuple):
    domain: str
    rel: bytes  # path under its source folder, exact bytes
    path: str
    size: int
    mtime_ns: int


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
    removed: int
    packed: dict[str, int] | None
    rebuilt: bool
    manifest: Path


def run(
    src_a: Path | None,
    src_b: Path | None,
    out: Path,
    *,
    size: int | None = None,
    center_crop: bool = False,
    min_size: int = 0,
    fmt: str = "png",
    quality: int = 95,
    test_fraction: float | None = None,
    test_count: int | None = None,
    split_paired: bool = False,
    background: str = "white",
    channels: int = 3,
    pack: bool = False,
    workers: int | None = None,
    overwrite: bool = False,
    synthetic_kind: str | None = None,
    synthetic_count: int = 400,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
) -> Prepared:
    """Prepare `out` from two folders, one folder of side-by-side pairs, or synthetic shapes.
    `progress(done, total)` is called after each decoded file."""
    out = Path(out)
    _check_common(size, min_size, quality, test_fraction, test_count, channels, workers)
    with pool.stop_on_signals(STOPPED):
        if synthetic_kind is not None:
            if src_a is not None or src_b is not None or split_paired or test_fraction is not None:
                raise UsageError(
                    "--synthetic makes its own data: give no source folders, --split-paired or --test-fraction"
                )
            return _run_synthetic(
                synthetic_kind,
                out,
                size or DEFAULT_SYNTHETIC_SIZE,
                synthetic_count,
                DEFAULT_SYNTHETIC_TEST_COUNT if test_count is None else test_count,
                channels,
                seed,
                pack,
                overwrite,
            )
        sources = _source_folders(src_a, src_b, split_paired)
        proc = Processing(
            size=DEFAULT_SIZE if size is None else size,
            center_crop=center_crop,
            min_size=min_size,
            fmt=_format(fmt),
            quality=quality,
            background=parse_colour(background),
            mode="RGB" if channels == 3 else "L",
            max_pixels=max_pixels,
            paired=split_paired,
        )
        split = {"test_fraction": test_fraction, "test_count": test_count}
        if test_fraction is None and test_count is None:
            split["test_fraction"] = DEFAULT_TEST_FRACTION
        return _run_folders(sources, out, proc, split, workers or pool.cpu_count(), pack, overwrite, progress)


# ---------------------------------------------------------------------------------------------
# Arguments


def _check_common(size, min_size, quality, test_fraction, test_count, channels, workers) -> None:
    if size is not None and size < 0:
        raise UsageError(f"--size must be 0 (keep) or more, got {size}")
    if min_size < 0:
        raise UsageError(f"--min-size must be 0 or more, got {min_size}")
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality must be between 1 and 100, got {quality}")
    if test_fraction is not None and test_count is not None:
        raise UsageError("give --test-fraction or --test-count, not both")
    if test_fraction is not None and not 0 <= test_fraction < 1:
        raise UsageError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if test_count is not None and test_count < 0:
        raise UsageError(f"--test-count must be 0 or more, got {test_count}")
    if channels not in (1, 3):
        raise UsageError(f"--channels must be 1 or 3, got {channels}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")


def _source_folders(src_a: Path | None, src_b: Path | None, split_paired: bool) -> dict[str, Path]:
    if split_paired:
        if src_a is None or src_b is not None:
            raise UsageError("--split-paired takes one folder of side-by-side A|B images")
        return {PAIRED: Path(src_a)}
    if src_a is None or src_b is None:
        raise UsageError(
            "prepare needs two source folders (domain A, domain B)", hint="or --split-paired DIR, or --synthetic shapes"
        )
    return {"A": Path(src_a), "B": Path(src_b)}


def _format(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in ("png", "jpg"):
        raise UsageError(f"--format must be png or jpg, got {fmt!r}")
    return fmt


def parse_colour(text: str) -> tuple[int, int, int]:
    """'white', 'black', '#rrggbb', 'rgb(1,2,3)': anything Pillow's colour names understand."""
    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        raise UsageError(f"unknown colour {text!r}", hint="use a name such as white or black, or #rrggbb") from None
    return (rgb[0], rgb[1], rgb[2])


# ---------------------------------------------------------------------------------------------
# The output folder


def _claim_out(out: Path, overwrite: bool, sources: list[Path]) -> Manifest | None:
    """Check that `out` may be written; return the previous run's manifest if it is a prepare folder."""
    real_out = out.resolve()
    for src in sources:
        real_src = src.resolve()
        if real_out == real_src or real_src in real_out.parents:
            raise UsageError(f"--out {out} is inside the source folder {src}", hint="choose a folder outside it")
        if any(real_src == (real_out / name) or (real_out / name) in real_src.parents for name in OWNED):
            raise UsageError(f"source folder {src} is inside the output's own folders", hint="choose another --out")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    previous = manifest.read(out)
    if overwrite:
        _clear(out)
        return None
    if previous is None and out.exists() and any(out.iterdir()):
        raise UsageError(
            f"{out} is not empty and was not made by munit prepare",
            hint=f"choose a new --out folder, or pass --overwrite (it replaces {', '.join(OWNED)}; nothing else)",
        )
    return previous


def _remove_leftovers(out: Path) -> None:
    """The temporary files of a run that was killed mid-write; its finished files are reused."""
    folders = [out, *(out / name for name in SPLIT_DIRS), *(out / PENDING / d for d in "AB")]
    remove_stale_temporaries(folders + [out / "packed" / name for name in ("trainA", "trainB")])


def _clear(out: Path) -> None:
    for name in OWNED:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


# ---------------------------------------------------------------------------------------------
# Folders


def _run_folders(
    sources: dict[str, Path],
    out: Path,
    proc: Processing,
    split: dict,
    workers: int,
    pack: bool,
    overwrite: bool,
    progress: Progress | None,
) -> Prepared:
    scanned = _scan(sources)
    previous = _claim_out(out, overwrite, list(sources.values()))
    _remove_leftovers(out)
    record = Manifest(
        kind="paired" if proc.paired else "folders",
        sources={domain: str(path.resolve()) for domain, path in sources.items()},
        options=proc.as_json(),
        split=split,
        files=[],
        complete=False,
    )
    rebuilt = previous is not None and any(
        getattr(previous, k) != getattr(record, k) for k in ("kind", "sources", "options")
    )
    if rebuilt:
        _clear(out)
        previous = None
    ext = "." + proc.fmt
    known = {e.key: e for e in previous.files} if previous else {}
    todo = []
    for src in scanned:
        old = known.get((src.domain, src.rel))
        if old is not None and _reusable(out, old, src, ext):
            record.files.append(_revived(old))
        else:
            todo.append(src)
    reused = len(record.files)
    manifest.write(out, record)  # from now on the folder is recognisably ours

    try:
        _decode_all(out, todo, proc, workers, record, ext, progress)
    except KeyboardInterrupt:
        manifest.write(out, record)
        raise
    except BrokenProcessPool:
        manifest.write(out, record)
        raise MunitError(
            "a decoding worker process stopped unexpectedly; finished images are kept",
            hint="run the same command again to continue, or pass --workers 1 (a worker may have run out of memory)",
        ) from None

    mark_duplicates(record.files)
    keep_previous = previous is not None and previous.split == split
    assign_splits(record.files, split, keep_previous=keep_previous)
    placed = _place(out, record.files, ext)
    removed = _remove_stale(out, placed)
    packed = _pack(out, proc.mode) if pack else None
    if not pack:
        _drop_pack(out)
    record.complete = True
    manifest.write(out, record)
    return _summary(out, record, len(todo), reused, removed, packed, rebuilt)


def _scan(sources: dict[str, Path]) -> list[SourceFile]:
    found = []
    for domain, root in sources.items():
        paths = list_images(root)
        if not paths:
            raise MunitError(
                f"{display_path(root)}: no images found",
                hint=f"looked for {', '.join(sorted(IMAGE_EXTENSIONS))} files, recursively",
            )
        for path in paths:
            try:
                st = path.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # a broken link: never matches the manifest, so it is retried and reported
                size = mtime = -1
            found.append(SourceFile(domain, os.fsencode(path.relative_to(root)), str(path), size, mtime))
    return found


def _locate(out: Path, entry: Entry, domain: str, ext: str) -> Path | None:
    """Where an entry's output for `domain` is now: staged, or in either split."""
    candidates = [out / PENDING / domain / staged_name(entry, ext)]
    candidates += [out / f"{split}{domain}" / final_name(entry, domain, split, ext) for split in ("train", "test")]
    return next((path for path in candidates if path.is_file()), None)


def _reusable(out: Path, old: Entry, src: SourceFile, ext: str) -> bool:
    if old.retry or old.size != src.size or old.mtime_ns != src.mtime_ns:
        return False
    if old.state is State.SKIPPED:
        return True
    return all(_locate(out, old, domain, ext) is not None for domain in output_domains(old))


def _revived(old: Entry) -> Entry:
    """A previous entry as if freshly decoded: duplicates and outputs are worked out again."""
    state = State.KEPT if old.state is State.DUPLICATE else old.state
    return dataclasses.replace(old, state=state, duplicate_of=None, outputs={})


# ---------------------------------------------------------------------------------------------
# Decoding (runs in worker processes)


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


def _decode_all(
    out: Path,
    todo: list[SourceFile],
    proc: Processing,
    workers: int,
    record: Manifest,
    ext: str,
    progress: Progress | None,
) -> None:
    """Decode `todo`, staging each output and adding its entry to `record` as it arrives."""
    jobs = [(src.domain, src.path, proc) for src in todo]
    with console.progress("preparing", total=len(todo), enabled=bool(todo)) as bar:
        for done, (src, result) in enumerate(zip(todo, pool.run_jobs(_decode, jobs, workers)), 1):
            record.files.append(_record(out, src, result, ext))
            bar.update()
            if progress is not None:
                progress(done, len(todo))


def _decode(job: tuple[str, str, Processing]) -> Decoded:
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
        img = resize_shorter(img, proc.size)
    return center_crop(img, min(img.size)) if proc.center_crop else img


def _record(out: Path, src: SourceFile, result: Decoded, ext: str) -> Entry:
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
        reason=result.reason,
        retry=result.retry,
    )
    for domain, data in result.encoded.items():
        if _locate(out, entry, domain, ext) is None:
            write_atomic(out / PENDING / domain / staged_name(entry, ext), data)
    return entry


# ---------------------------------------------------------------------------------------------
# Placement


def _place(out: Path, entries: list[Entry], ext: str) -> set[Path]:
    """Move every kept output to <split><domain>/<name>; returns the set of placed paths."""
    placed = set()
    for entry in entries:
        if entry.state is not State.KEPT:
            continue
        entry.outputs = {}
        for domain in output_domains(entry):
            target = out / f"{entry.split}{domain}" / final_name(entry, domain, entry.split or "", ext)
            if not target.is_file():
                current = _locate(out, entry, domain, ext)
                if current is None:
                    raise MunitError(f"{target}: a prepared image disappeared during the run", hint="run prepare again")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(current, target)
            entry.outputs[domain] = target.relative_to(out).as_posix()
            placed.add(target)
    for name in SPLIT_DIRS:
        (out / name).mkdir(parents=True, exist_ok=True)
    return placed


def _remove_stale(out: Path, placed: set[Path]) -> int:
    """Delete outputs whose source is gone or changed, and what an interrupted run left staged."""
    removed = 0
    for name in SPLIT_DIRS:
        for path in (out / name).iterdir():
            if path not in placed and OUTPUT_NAME.match(path.name):
                path.unlink()
                removed += 1
    shutil.rmtree(out / PENDING, ignore_errors=True)
    return removed


# ---------------------------------------------------------------------------------------------
# Packing


def _pack(out: Path, mode: str) -> dict[str, int]:
    """Pack trainA and trainB as uint8 shards, unless the existing pack already holds exactly them."""
    # torch: only needed here, and kept out of the worker processes
    from munit_cli import shards

    counts = {}
    for name in ("trainA", "trainB"):
        files = list_images(out / name, recursive=False)
        target = out / "packed" / name
        channels = 3 if mode == "RGB" else 1
        try:
            index = shards.read_index(target)
            current = index["names"] == [f.name for f in files] and index["channels"] == channels
        except MunitError:
            current = False
        if not current:
            shards.write_packed(((f.name, to_tensor(open_image(f, mode))) for f in files), target)
        counts[name] = len(files)
    return counts


def _drop_pack(out: Path) -> None:
    # A pack left from an earlier --pack run would go stale as the folders change; training would read it.
    shutil.rmtree(out / "packed", ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Synthetic data


def _run_synthetic(
    kind: str, out: Path, size: int, count: int, test_count: int, channels: int, seed: int, pack: bool, overwrite: bool
) -> Prepared:
    if kind != "shapes":
        raise UsageError(f"unknown synthetic data set {kind!r}", hint="available: shapes")
    _claim_out(out, overwrite, [])
    _remove_leftovers(out)
    record = Manifest(
        kind="synthetic",
        sources={"synthetic": kind},
        options={"size": size, "channels": channels, "seed": seed, "count": count, "test_count": test_count},
        split=None,
        files=[],
        complete=False,
    )
    _clear(out)  # regenerating takes seconds; cheaper than checking what is still valid
    manifest.write(out, record)
    synthetic.make_shapes(out, n_train=count, n_test=test_count, size=size, seed=seed, channels=channels)
    packed = _pack(out, "RGB" if channels == 3 else "L") if pack else None
    record.complete = True
    manifest.write(out, record)
    domains = {d: DomainCounts(found=count + test_count, train=count, test=test_count) for d in "AB"}
    return Prepared(out, "synthetic", domains, 0, 0, 0, packed, False, out / MANIFEST)


# ---------------------------------------------------------------------------------------------
# Reporting


def reason_kind(reason: str) -> str:
    """The reason without its particulars: 'too large (200000000 pixels)' -> 'too large'."""
    return reason.split(" (")[0]


def _summary(
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
