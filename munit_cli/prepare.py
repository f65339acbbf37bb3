"""`munit prepare`: messy image folders in, a clean, split, optionally packed training set out.

Layout of the output folder:
  trainA/ trainB/ testA/ testB/   prepared images, named by content hash (<16 hex digits>.png|.jpg)
  packed/trainA/ packed/trainB/   with pack=True: the training images as uint8 shards (shards.py)
  manifest.json                   the options, and per source file: path, sha256, size, split and
                                  outputs, or why it was skipped (manifest.py)

Design choices:
- Names come from content hashes, so odd source names (spaces, non-UTF-8 bytes) never reach the
  output, and the split (splits.py) does not move existing files when files are added.
- A rerun reuses every source whose size and mtime (or, failing that, content) match the manifest;
  new results are staged in .pending/ and moved into place once all splits are known. Every file,
  the manifest included, is written under a temporary name and renamed, so an interrupted run never
  leaves a half-written file.
- A rerun only adds. Removing a prepared image (its source is gone or changed) or rebuilding them
  all (the options changed) needs `overwrite`; without it the run stops before writing anything and
  names what would go. Even then only files named the way prepare names them, in its own folders,
  are removed.
- Decoding runs in worker processes (pool.py); only this process writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
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
    scan_images,
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
OWNED = SPLIT_DIRS + ("masks", "packed", PENDING, MANIFEST)  # the names munit prepare writes in --out
DEFAULT_SIZE = 256
DEFAULT_SYNTHETIC_SIZE = 64
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_SYNTHETIC_TEST_COUNT = 16
# Bounds that keep one image, and one run, within a machine: an 8192 px training image is already
# 200 MB as floats; synthetic shapes are drawn 4x supersampled.
MAX_SIZE = 8192
MAX_SYNTHETIC_SIZE = 1024
MAX_SYNTHETIC_COUNT = 100_000
# What --overwrite and rebuilds remove: files named the way munit names them, in its own folders.
_SYNTHETIC_NAME = re.compile(r"^[0-9]{4,}\.png$")
_SHARD_NAME = re.compile(r"^[0-9a-f]{8}-[0-9]{5}\.safetensors$|^index\.json$")
_LISTED = 5  # names shown when a rerun refuses to remove files
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
    removed: int  # prepared images deleted (only with overwrite): sources gone or changed, or a rebuild
    packed: dict[str, int] | None
    rebuilt: bool
    manifest: Path
    removed_sources: list[str] = dataclasses.field(default_factory=list)  # whose prepared images went
    rebuilt_because: list[str] = dataclasses.field(default_factory=list)  # what changed since the last run


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

    A rerun adds what is new and reuses the rest. Without `overwrite` it never removes a prepared
    image: when sources are gone or changed, or the options differ from the last run's, it stops
    and names what would go. `progress(done, total)` is called after each decoded file."""
    out = Path(out)
    _check_common(min_size, quality, test_fraction, test_count, channels, workers)
    with pool.stop_on_signals(STOPPED):
        try:
            if synthetic_kind is not None:
                if src_a is not None or src_b is not None or split_paired or test_fraction is not None:
                    raise UsageError(
                        "--synthetic makes its own data: give no source folders, --split-paired or --test-fraction"
                    )
                options = _synthetic_options(synthetic_kind, size, synthetic_count, test_count, channels, seed)
                return _run_synthetic(options, out, pack, overwrite)
            sources = _source_folders(src_a, src_b, split_paired)
            if size is not None and not 0 <= size <= MAX_SIZE:
                raise UsageError(f"--size must be between 0 (keep) and {MAX_SIZE}, got {size}")
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
        except OSError as exc:  # the output folder: read-only, full, a file where a folder should be
            raise MunitError(f"could not write {_shown(exc.filename or out)}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------
# Arguments


def _check_common(min_size, quality, test_fraction, test_count, channels, workers) -> None:
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
    if workers is not None and not 1 <= workers <= pool.MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {pool.MAX_WORKERS}, got {workers}")


def _source_folders(src_a: Path | None, src_b: Path | None, split_paired: bool) -> dict[str, Path]:
    if split_paired:
        if src_a is None or src_b is not None:
            raise UsageError("--split-paired takes one folder of side-by-side A|B images")
        return {PAIRED: Path(src_a)}
    if src_a is None or src_b is None:
        raise UsageError(
            "prepare needs two source folders (domain A, domain B)", hint="or --split-paired DIR, or --synthetic shapes"
        )
    real_a, real_b = os.path.realpath(src_a), os.path.realpath(src_b)
    if _within(real_a, real_b) or _within(real_b, real_a):
        same = "the same folder" if real_a == real_b else "one folder inside the other"
        raise UsageError(
            f"the two domains' source folders are {same} ({_shown(src_a)}, {_shown(src_b)})",
            hint="give one folder of images per domain, neither inside the other",
        )
    return {"A": Path(src_a), "B": Path(src_b)}


def _within(path: str, folder: str) -> bool:
    """Whether real path `path` is `folder` or inside it."""
    return os.path.commonpath([path, folder]) == folder


def _format(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in ("png", "jpg"):
        raise UsageError(f"--format must be png or jpg, got {_shown(fmt)}")
    return fmt


def parse_colour(text: str) -> tuple[int, int, int]:
    """'white', 'black', '#rrggbb', 'rgb(1,2,3)': anything Pillow's colour names understand."""
    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        raise UsageError(f"unknown colour {_shown(text)}", hint="use a name such as white or black, or #rrggbb") from None
    return (rgb[0], rgb[1], rgb[2])


def _shown(value: str | bytes | os.PathLike) -> str:
    """A path or an option value fit for a terminal: undecodable bytes as U+FFFD, control
    characters escaped."""
    text = value if isinstance(value, str) else display_path(value)
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


# ---------------------------------------------------------------------------------------------
# The output folder


def _claim_out(out: Path, overwrite: bool, sources: list[Path]) -> tuple[Manifest | None, list[str]]:
    """Check that `out` may be written. Returns the previous run's manifest if `out` is a prepared
    folder, and why it must be rebuilt when its manifest is damaged (only with `overwrite`)."""
    real_out = os.path.realpath(out)
    for src in sources:
        real_src = os.path.realpath(src)
        if _within(real_out, real_src):
            raise UsageError(
                f"--out {_shown(out)} is inside the source folder {_shown(src)}", hint="choose a folder outside it"
            )
        if any(_within(real_src, os.path.join(real_out, name)) for name in OWNED):
            raise UsageError(
                f"source folder {_shown(src)} is inside the output's own folders", hint="choose another --out"
            )
    if os.path.lexists(out) and not out.is_dir():
        raise UsageError(f"--out {_shown(out)} exists and is not a folder")
    if not out.exists():
        return None, []
    links = [name for name in OWNED if (out / name).is_symlink()]
    if links:
        raise UsageError(
            f"{_shown(out / links[0])} is a link; munit prepare writes only its own folders",
            hint="choose a new --out folder",
        )
    try:
        previous = manifest.read(out)
    except manifest.DamagedManifest as exc:
        if not overwrite:
            raise
        return None, [f"{MANIFEST} was damaged ({exc})"]
    if previous is not None:
        return previous, []
    foreign = [name for name in OWNED if (out / name).exists()]
    if foreign:
        raise UsageError(
            f"{_shown(out)} holds {', '.join(foreign)} but was not made by munit prepare "
            f"(no {MANIFEST} of its own); nothing was changed",
            hint="--overwrite only replaces what munit prepare wrote: choose a new --out, or move those away",
        )
    if any(out.iterdir()) and not overwrite:
        raise UsageError(
            f"{_shown(out)} is not empty and was not made by munit prepare",
            hint="choose a new --out folder, or pass --overwrite to add the dataset's folders next to what "
            "is there (nothing of it is removed)",
        )
    return None, []


def _remove_leftovers(out: Path) -> None:
    """The temporary files of a run that was killed mid-write; its finished files are reused."""
    folders = [out, *(out / name for name in SPLIT_DIRS), *(out / PENDING / d for d in "AB")]
    remove_stale_temporaries(folders + [out / "packed" / name for name in ("trainA", "trainB")])


def _clear(out: Path) -> int:
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


def _changes(old: Manifest, new: Manifest, growable: tuple[str, ...] = ()) -> list[str]:
    """What differs between the last run's settings and these, as 'size 16 -> 8'. Options in
    `growable` may grow (more images are added), not shrink."""
    if old.kind != new.kind:
        return [f"kind {old.kind} -> {new.kind}"]
    changes = []
    for domain in sorted(set(old.sources) | set(new.sources)):
        before, after = old.sources.get(domain), new.sources.get(domain)
        if before != after:
            changes.append(f"source {domain} {_shown(str(before))} -> {_shown(str(after))}")
    for key in sorted(set(old.options) | set(new.options)):
        before, after = old.options.get(key), new.options.get(key)
        grows = key in growable and type(before) is int and type(after) is int and after >= before
        if before != after and not grows:
            changes.append(f"{key} {_shown(json.dumps(before))} -> {_shown(json.dumps(after))}")
    return changes


def _refuse_rebuild(out: Path, reasons: list[str], previous: Manifest | None) -> None:
    kept = sum(e.state is State.KEPT for e in previous.files) if previous else 0
    raise MunitError(
        f"{_shown(out)} was prepared with other settings ({'; '.join(reasons)}); "
        f"this run would remove and rebuild its prepared images{f' ({kept} sources)' if kept else ''}; "
        "nothing was changed",
        hint="pass --overwrite to rebuild it, or choose a new --out folder",
    )


def _check_pack_kept(out: Path, pack: bool, overwrite: bool) -> None:
    # Without --pack the pack would go stale as the folders change (training reads it), so it goes.
    if not pack and not overwrite and (out / "packed").exists():
        raise MunitError(
            f"{_shown(out)} has packed shards (--pack) that this run would remove; nothing was changed",
            hint="pass --pack to keep them up to date, or --overwrite to remove them",
        )


def _drop_pack(out: Path) -> None:
    for name in ("trainA", "trainB"):
        _remove_named(out / "packed" / name, (_SHARD_NAME,))
    with contextlib.suppress(OSError):
        (out / "packed").rmdir()


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
    scanned, unfollowed = _scan(sources)
    previous, rebuild = _claim_out(out, overwrite, list(sources.values()))
    record = Manifest(
        kind="paired" if proc.paired else "folders",
        sources={domain: str(path.resolve()) for domain, path in sources.items()},
        options=proc.as_json(),
        split=split,
        files=[],
        complete=False,
    )
    if previous is not None:
        rebuild += _changes(previous, record)
    if rebuild and not overwrite:
        _refuse_rebuild(out, rebuild, previous)
    _check_pack_kept(out, pack, overwrite)
    ext = "." + proc.fmt
    plan = _plan(out, None if rebuild else previous, scanned, ext)
    if plan.doomed and not overwrite:
        _refuse_removal(plan.doomed)
    _remove_leftovers(out)
    removed = _clear(out) if rebuild else 0
    record.files = plan.reused + unfollowed
    manifest.write(out, record)  # from now on the folder is recognisably ours

    try:
        _decode_all(out, plan.todo, proc, workers, record, ext, progress)
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
    keep_previous = not rebuild and previous is not None and previous.split == split
    assign_splits(record.files, split, keep_previous=keep_previous)
    placed = _place(out, record.files, ext)
    removed += _remove_stale(out, placed)
    packed = _pack(out, proc.mode) if pack else None
    if not pack:
        _drop_pack(out)
    record.complete = True
    manifest.write(out, record)
    result = _summary(out, record, len(plan.todo), len(plan.reused), removed, packed, bool(rebuild))
    result.removed_sources = [_shown(entry.name) for entry, _ in plan.doomed]
    result.rebuilt_because = rebuild
    _require_usable(result)
    return result


def _scan(sources: dict[str, Path]) -> tuple[list[SourceFile], list[Entry]]:
    """The image files of every source folder, and entries for the links that were not followed."""
    found, unfollowed = [], []
    for domain, root in sources.items():
        scan = scan_images(root)
        if not scan.found:
            raise MunitError(
                f"{_shown(root)}: no images found",
                hint=f"looked for {', '.join(sorted(IMAGE_EXTENSIONS))} files, recursively; links that leave "
                "the folder are not followed",
            )
        for path in scan.found:
            try:
                st = path.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # a broken link: never matches the manifest, so it is retried and reported
                size = mtime = -1
            found.append(SourceFile(domain, os.fsencode(path.relative_to(root)), str(path), size, mtime))
        for path, reason in scan.skipped:
            rel = os.fsencode(path.relative_to(root))
            unfollowed.append(Entry(domain, rel, -1, -1, State.SKIPPED, reason=_shown(reason), retry=True))
    return found, unfollowed


def _locate(out: Path, entry: Entry, domain: str, ext: str) -> Path | None:
    """Where an entry's output for `domain` is now: staged, or in either split."""
    candidates = [out / PENDING / domain / staged_name(entry, ext)]
    candidates += [out / f"{split}{domain}" / final_name(entry, domain, split, ext) for split in ("train", "test")]
    return next((path for path in candidates if path.is_file()), None)


def _has_outputs(out: Path, entry: Entry, ext: str) -> bool:
    return all(_locate(out, entry, domain, ext) is not None for domain in output_domains(entry))


class _Plan(NamedTuple):
    reused: list[Entry]  # previous entries still valid
    todo: list[SourceFile]  # to decode
    doomed: list[tuple[Entry, str]]  # previous entries whose prepared images this run removes, and why


def _plan(out: Path, previous: Manifest | None, scanned: list[SourceFile], ext: str) -> _Plan:
    """Match the sources with the previous run: what is reused, what is decoded, what would go.

    A prepared image goes only when no source has its content any more: a source that was
    deleted, or changed. A file that was merely touched or renamed keeps its image; both are
    told apart by hashing just the files that could be such a case."""
    known = {e.key: e for e in previous.files} if previous else {}
    reused, todo, candidates = [], [], []
    for src in scanned:
        old = known.pop((src.domain, src.rel), None)
        if old is None or old.retry:
            todo.append(src)
        elif old.size == src.size and old.mtime_ns == src.mtime_ns and (
            old.state is State.SKIPPED or _has_outputs(out, old, ext)
        ):
            reused.append(_revived(old))
        elif old.state is not State.SKIPPED and _has_outputs(out, old, ext) and _sha256(src.path) == old.sha256:
            reused.append(_revived(dataclasses.replace(old, size=src.size, mtime_ns=src.mtime_ns)))  # touched
        else:
            todo.append(src)
            candidates.append((old, "changed"))
    candidates += [(old, "gone") for old in known.values()]
    kept = {(e.domain, e.sha256) for e in reused if e.state is not State.SKIPPED}
    candidates = [
        (old, why)
        for old, why in candidates
        if old.state is State.KEPT and (old.domain, old.sha256) not in kept and _has_outputs(out, old, ext)
    ]
    if candidates:  # a new source with the same content (a renamed file) keeps the image
        sizes = {old.size for old, _ in candidates}
        new = {(src.domain, _sha256(src.path)) for src in todo if src.size in sizes}
        candidates = [(old, why) for old, why in candidates if (old.domain, old.sha256) not in new]
    return _Plan(reused, todo, sorted(candidates, key=lambda c: c[0].key))


def _sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(read_bytes(Path(path))).hexdigest()
    except ImageError:
        return None


def _refuse_removal(doomed: list[tuple[Entry, str]]) -> None:
    listed = ", ".join(f"{_shown(entry.domain)}/{_shown(entry.name)} ({why})" for entry, why in doomed[:_LISTED])
    more = f" and {len(doomed) - _LISTED} more" if len(doomed) > _LISTED else ""
    raise MunitError(
        f"this run would remove the prepared images of {len(doomed)} source file(s) that are gone or changed: "
        f"{listed}{more}; nothing was changed",
        hint="pass --overwrite to remove them, restore the sources, or choose a new --out folder",
    )


def _revived(old: Entry) -> Entry:
    """A previous entry as if freshly decoded: duplicates and outputs are worked out again."""
    state = State.KEPT if old.state is State.DUPLICATE else old.state
    return dataclasses.replace(old, state=state, duplicate_of=None, outputs={})


def _require_usable(result: Prepared) -> None:
    """A domain without one training image is no dataset: say so, after the manifest with every
    file's reason is written."""
    for domain, counts in result.domains.items():
        if not counts.train + counts.test:
            reasons = ", ".join(f"{why}: {n}" for why, n in sorted(counts.skipped.items()))
            raise MunitError(
                f"domain {domain}: none of its {counts.found} source files could be used ({reasons})",
                hint=f"each file's reason is in {_shown(result.manifest)}",
            )
        if not counts.train:
            raise MunitError(
                f"domain {domain}: all {counts.test} usable images went to the test split, none is left for training",
                hint="pass a smaller --test-count or --test-fraction",
            )


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
        scale = proc.size / min(img.size)
        pixels = round(img.width * scale) * round(img.height * scale)
        if pixels > proc.max_pixels:  # a long, thin image scaled up to --size on its short side
            raise ImageError("", f"too large after resizing ({pixels} pixels)")
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
        reason=None if result.reason is None else _shown(result.reason),
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


# ---------------------------------------------------------------------------------------------
# Synthetic data


class _Synthetic(NamedTuple):
    kind: str
    size: int
    count: int
    test_count: int
    channels: int
    seed: int


def _synthetic_options(
    kind: str, size: int | None, count: int, test_count: int | None, channels: int, seed: int
) -> _Synthetic:
    if kind != "shapes":
        raise UsageError(f"unknown synthetic data set {_shown(kind)}", hint="available: shapes")
    size = DEFAULT_SYNTHETIC_SIZE if size is None else size
    test_count = DEFAULT_SYNTHETIC_TEST_COUNT if test_count is None else test_count
    if not 16 <= size <= MAX_SYNTHETIC_SIZE:
        raise UsageError(f"--size with --synthetic must be between 16 and {MAX_SYNTHETIC_SIZE}, got {size}")
    if not 0 <= count <= MAX_SYNTHETIC_COUNT or test_count > MAX_SYNTHETIC_COUNT:
        raise UsageError(
            f"--synthetic-count and --test-count must be between 0 and {MAX_SYNTHETIC_COUNT}, got {count} and {test_count}"
        )
    if not 0 <= seed < 2**63:
        raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {seed}")
    return _Synthetic(kind, size, count, test_count, channels, seed)


def _run_synthetic(options: _Synthetic, out: Path, pack: bool, overwrite: bool) -> Prepared:
    previous, rebuild = _claim_out(out, overwrite, [])
    record = Manifest(
        kind="synthetic",
        sources={"synthetic": options.kind},
        options={"size": options.size, "channels": options.channels, "seed": options.seed,
                 "count": options.count, "test_count": options.test_count},
        split=None,
        files=[],
        complete=False,
    )  # fmt: skip
    if previous is not None:
        rebuild += _changes(previous, record, growable=("count", "test_count"))
    if rebuild and not overwrite:
        _refuse_rebuild(out, rebuild, previous)
    _check_pack_kept(out, pack, overwrite)
    _remove_leftovers(out)
    removed = _clear(out) if rebuild else 0
    manifest.write(out, record)
    # The same options give the same bytes, so images already there are rewritten unchanged.
    synthetic.make_shapes(
        out, n_train=options.count, n_test=options.test_count, size=options.size, seed=options.seed,
        channels=options.channels,
    )  # fmt: skip
    packed = _pack(out, "RGB" if options.channels == 3 else "L") if pack else None
    if not pack:
        _drop_pack(out)
    record.complete = True
    manifest.write(out, record)
    counts = DomainCounts(found=options.count + options.test_count, train=options.count, test=options.test_count)
    domains = {d: dataclasses.replace(counts, skipped={}) for d in "AB"}
    result = Prepared(out, "synthetic", domains, 0, 0, removed, packed, bool(rebuild), out / MANIFEST)
    result.rebuilt_because = rebuild
    return result


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
