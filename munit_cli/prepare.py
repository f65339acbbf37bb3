"""`munit prepare`: messy image folders in, a clean, split, optionally packed training set out.

Layout of the output folder:
  trainA/ trainB/ testA/ testB/   prepared images, named by content hash (<16 hex digits>.png|.jpg)
  packed/trainA/ packed/trainB/   with pack=True: the training images as uint8 shards (shards.py)
  manifest.json                   the options, and per source file: path, sha256, size, split and
                                  outputs, or why it was skipped

Design choices:
- Names come from content hashes, so odd source names (spaces, non-UTF-8 bytes) never reach the
  output, and the train/test split (a threshold on the hash) does not move existing files when
  files are added.
- A rerun reuses every source whose size and mtime match the manifest; new results are staged in
  .pending/ and moved into place once all splits are known. Every file, the manifest included, is
  written under a temporary name and renamed, so an interrupted run never leaves a half-written file.
- Side-by-side A|B sources (split_paired) keep their pairing in the test split (testA/X and testB/X
  are the two halves of one source) and lose it in training: there each half is named by a hash of
  (source hash, side), which shuffles the two folders independently yet deterministically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageColor

from munit_cli import synthetic
from munit_cli.errors import Interrupted, MunitError, UsageError
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
from munit_cli.files import display_path, remove_stale_temporaries, write_atomic

FORMAT = "munit-prepare"
VERSION = 1
MANIFEST = "manifest.json"
PENDING = ".pending"
PAIRED = "pair"  # the domain name of side-by-side A|B sources
SPLIT_DIRS = ("trainA", "trainB", "testA", "testB")
OWNED = SPLIT_DIRS + ("masks", "packed", PENDING, MANIFEST)  # what --overwrite and rebuilds may delete
DEFAULT_SIZE = 256
DEFAULT_SYNTHETIC_SIZE = 64
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_SYNTHETIC_TEST_COUNT = 16
_OUTPUT_NAME = re.compile(r"^[0-9a-f]{16}\.(png|jpg)$")
# Starting worker processes costs about as much as decoding this many images.
_MIN_PARALLEL_JOBS = 32

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
    rel: str  # path under its source folder, printable
    path: str
    bytes: int
    mtime_ns: int


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
) -> dict[str, Any]:
    """Prepare `out` from two folders, one folder of side-by-side pairs, or synthetic shapes.

    Returns a summary: per domain the files found, kept per split and skipped per reason, plus
    how many files were decoded now, reused from the previous run, and removed as stale."""
    out = Path(out)
    _check_common(size, min_size, quality, test_fraction, test_count, channels, workers)
    with _stop_on_signals():
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
        return _run_folders(sources, out, proc, split, workers or _cpu_count(), pack, overwrite, progress)


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


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# The output folder


def _claim_out(out: Path, overwrite: bool, sources: list[Path]) -> dict | None:
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
    previous = read_manifest(out)
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


def read_manifest(out: Path) -> dict | None:
    """The manifest of a prepared folder, or None if there is none (or it is not ours)."""
    try:
        manifest = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ours = isinstance(manifest, dict) and manifest.get("format") == FORMAT and manifest.get("version") == VERSION
    return manifest if ours else None


def _clear(out: Path) -> None:
    for name in OWNED:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _write_manifest(out: Path, header: dict, entries: list[dict], complete: bool) -> None:
    files = sorted(entries, key=lambda e: (e["domain"], e["source"]))
    manifest = {"format": FORMAT, "version": VERSION, "complete": complete, **header, "files": files}
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1).encode())


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
) -> dict[str, Any]:
    scanned = _scan(sources)
    previous = _claim_out(out, overwrite, list(sources.values()))
    _remove_leftovers(out)
    header = {
        "kind": "paired" if proc.paired else "folders",
        "sources": {domain: str(path.resolve()) for domain, path in sources.items()},
        "options": proc.as_json(),
        "split": split,
    }
    rebuilt = previous is not None and any(previous.get(k) != header[k] for k in ("kind", "sources", "options"))
    if rebuilt:
        _clear(out)
        previous = None
    ext = "." + proc.fmt
    known = {(e["domain"], e["source"]): e for e in previous["files"]} if previous else {}
    entries, todo = [], []
    for src in scanned:
        old = known.get((src.domain, src.rel))
        if old is not None and _reusable(out, old, src, ext):
            entries.append(_revived(old))
        else:
            todo.append(src)
    reused = len(entries)
    _write_manifest(out, header, entries, complete=False)  # from now on the folder is recognisably ours

    try:
        with _reporter(progress, len(todo)) as tick, contextlib.closing(_process_all(todo, proc, workers)) as results:
            for src, result in results:
                entries.append(_record(out, src, result, ext))
                tick()
    except KeyboardInterrupt:
        _write_manifest(out, header, entries, complete=False)
        raise
    except BrokenProcessPool:
        _write_manifest(out, header, entries, complete=False)
        raise MunitError(
            "a decoding worker process stopped unexpectedly; finished images are kept",
            hint="run the same command again to continue, or pass --workers 1 (a worker may have run out of memory)",
        ) from None

    _dedupe(entries)
    _assign_splits(entries, split, keep_previous=previous is not None and previous.get("split") == split)
    placed = _place(out, entries, ext)
    removed = _remove_stale(out, placed)
    packed = _pack(out, proc.mode) if pack else None
    if not pack:
        _drop_pack(out)
    _write_manifest(out, header, entries, complete=True)
    return _summary(out, header["kind"], entries, len(todo), reused, removed, packed, rebuilt)


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
            found.append(SourceFile(domain, display_path(path.relative_to(root)), str(path), size, mtime))
    return found


def _output_domains(entry: dict) -> tuple[str, ...]:
    return ("A", "B") if entry["domain"] == PAIRED else (entry["domain"],)


def _final_name(entry: dict, domain: str, split: str, ext: str) -> str:
    digest = entry["sha256"]
    if entry["domain"] == PAIRED and split == "train":
        digest = hashlib.sha256(f"{digest}:{domain}".encode()).hexdigest()
    return digest[:16] + ext


def _locate(out: Path, entry: dict, domain: str, ext: str) -> Path | None:
    """Where an entry's output for `domain` is now: staged, or in either split."""
    candidates = [out / PENDING / domain / (entry["sha256"][:16] + ext)]
    candidates += [out / f"{split}{domain}" / _final_name(entry, domain, split, ext) for split in ("train", "test")]
    return next((path for path in candidates if path.is_file()), None)


def _reusable(out: Path, old: dict, src: SourceFile, ext: str) -> bool:
    if old.get("retry") or old.get("bytes") != src.bytes or old.get("mtime_ns") != src.mtime_ns:
        return False
    if old["status"] == "skipped":
        return True
    return all(_locate(out, old, domain, ext) is not None for domain in _output_domains(old))


def _revived(old: dict) -> dict:
    """A previous entry as if freshly decoded: duplicates and outputs are worked out again."""
    entry = {k: v for k, v in old.items() if k not in ("duplicate_of", "outputs")}
    if entry["status"] == "duplicate":
        entry["status"] = "kept"
    return entry


# ---------------------------------------------------------------------------------------------
# Decoding (runs in worker processes)


def _process_all(todo: list[SourceFile], proc: Processing, workers: int) -> Iterator[tuple[SourceFile, dict]]:
    jobs = [(src.domain, src.path, proc) for src in todo]
    if workers == 1 or len(jobs) < _MIN_PARALLEL_JOBS:
        yield from zip(todo, map(_process, jobs))
        return
    # spawn, not fork: the parent may hold threads (torch, rich) that a forked child would inherit locked.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        with _stop_signals_blocked():  # map() starts the workers: they inherit the mask
            results = pool.map(_process, jobs, chunksize=max(1, min(16, len(jobs) // (8 * workers))))
        yield from zip(todo, results)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Ctrl-C (and a SIGTERM sent to the process group) reaches every worker, even one still
    importing modules; only the parent should react: it stops the pool after the images in flight
    and writes the manifest. So workers are born with both signals blocked for good, and the
    parent gets any that arrived meanwhile as soon as the mask is restored."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Terminated(KeyboardInterrupt):
    """SIGTERM raised where the program is, like Ctrl-C's KeyboardInterrupt, so both stop a run
    through the same cleanup (temporary files removed, the manifest written)."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the run as Interrupted (exit 130 / 143); what is finished is kept."""

    def terminate(signum, frame):
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
        installed = True
    except ValueError:  # not the main thread: signals are the caller's business
        installed = False
    try:
        yield
    except KeyboardInterrupt as exc:
        signum = signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT
        raise Interrupted(
            f"{signal.Signals(signum).name}: prepare stopped; finished images are kept, "
            "run the same command again to continue",
            signum,
        ) from None
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)


def _process(job: tuple[str, str, Processing]) -> dict[str, Any]:
    """Read, hash, decode, check and convert one source file; never raises for a bad file."""
    domain, path, proc = job
    try:
        data = read_bytes(Path(path))
    except ImageError as exc:
        return {"status": "skipped", "reason": exc.reason, "retry": True}
    result: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest()}
    try:
        img = open_image(data, proc.mode, proc.background, proc.max_pixels, name=display_path(path))
        result.update(width=img.width, height=img.height)
        parts = _halves(img) if proc.paired else {domain: img}
        if min(min(part.size) for part in parts.values()) < max(proc.min_size, 1):
            return {**result, "status": "skipped", "reason": f"too small ({img.width}x{img.height})"}
        encoded = {d: encode_image(_fit(part, proc), proc.fmt, proc.quality) for d, part in parts.items()}
    except ImageError as exc:
        return {**result, "status": "skipped", "reason": exc.reason}
    except Exception as exc:  # noqa: BLE001 - one undecodable file must not stop a run over thousands
        return {**result, "status": "skipped", "reason": f"cannot decode ({type(exc).__name__})"}
    return {**result, "status": "kept", "encoded": encoded}


def _halves(img: Image.Image) -> dict[str, Image.Image]:
    half = img.width // 2
    return {"A": img.crop((0, 0, half, img.height)), "B": img.crop((img.width - half, 0, img.width, img.height))}


def _fit(img: Image.Image, proc: Processing) -> Image.Image:
    if proc.size:
        img = resize_shorter(img, proc.size)
    return center_crop(img, min(img.size)) if proc.center_crop else img


def _record(out: Path, src: SourceFile, result: dict, ext: str) -> dict:
    """The manifest entry for a decoded file; its outputs are staged unless already on disk."""
    encoded = result.pop("encoded", {})
    entry = {"domain": src.domain, "source": src.rel, "bytes": src.bytes, "mtime_ns": src.mtime_ns, **result}
    for domain, data in encoded.items():
        if _locate(out, entry, domain, ext) is None:
            write_atomic(out / PENDING / domain / (entry["sha256"][:16] + ext), data)
    return entry


# ---------------------------------------------------------------------------------------------
# Duplicates, splits, placement


def _dedupe(entries: list[dict]) -> None:
    """Keep the first source (by path) of each content hash per domain; mark the others."""
    first: dict[tuple[str, str], str] = {}
    for entry in sorted(entries, key=lambda e: (e["domain"], e["source"])):
        if entry["status"] != "kept":
            continue
        key = (entry["domain"], entry["sha256"])
        if key in first:
            entry.update(status="duplicate", duplicate_of=first[key], split=None)
        else:
            first[key] = entry["source"]


def split_value(sha256: str) -> float:
    """A uniform number in [0, 1) fixed by the content: files below the test fraction are test files."""
    return int(sha256[:8], 16) / 2**32


def _assign_splits(entries: list[dict], split: dict, keep_previous: bool) -> None:
    """By a threshold on the hash (test_fraction), or the `test_count` smallest hashes per domain.

    With test_count, files that already have a split keep it on a rerun with the same options;
    new files only fill the test split up to the count, so adding files never moves old ones."""
    kept = sorted((e for e in entries if e["status"] == "kept"), key=lambda e: e["sha256"])
    if split["test_count"] is None:
        for entry in kept:
            entry["split"] = "test" if split_value(entry["sha256"]) < split["test_fraction"] else "train"
        return
    for domain in {e["domain"] for e in kept}:
        group = [e for e in kept if e["domain"] == domain]
        settled = [e for e in group if keep_previous and e.get("split")]
        n_test = sum(e["split"] == "test" for e in settled)
        for entry in (e for e in group if not (keep_previous and e.get("split"))):
            entry["split"] = "test" if n_test < split["test_count"] else "train"
            n_test += entry["split"] == "test"


def _place(out: Path, entries: list[dict], ext: str) -> set[Path]:
    """Move every kept output to <split><domain>/<name>; returns the set of placed paths."""
    placed = set()
    for entry in entries:
        if entry["status"] != "kept":
            continue
        entry["outputs"] = {}
        for domain in _output_domains(entry):
            target = out / f"{entry['split']}{domain}" / _final_name(entry, domain, entry["split"], ext)
            if not target.is_file():
                current = _locate(out, entry, domain, ext)
                if current is None:
                    raise MunitError(f"{target}: a prepared image disappeared during the run", hint="run prepare again")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(current, target)
            entry["outputs"][domain] = target.relative_to(out).as_posix()
            placed.add(target)
    for name in SPLIT_DIRS:
        (out / name).mkdir(parents=True, exist_ok=True)
    return placed


def _remove_stale(out: Path, placed: set[Path]) -> int:
    """Delete outputs whose source is gone or changed, and what an interrupted run left staged."""
    removed = 0
    for name in SPLIT_DIRS:
        for path in (out / name).iterdir():
            if path not in placed and _OUTPUT_NAME.match(path.name):
                path.unlink()
                removed += 1
    shutil.rmtree(out / PENDING, ignore_errors=True)
    return removed


# ---------------------------------------------------------------------------------------------
# Packing


def _pack(out: Path, mode: str) -> dict[str, int]:
    """Pack trainA and trainB as uint8 shards, unless the existing pack already holds exactly them."""
    from munit_cli import shards  # torch: only needed here, and kept out of the worker processes

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
) -> dict[str, Any]:
    if kind != "shapes":
        raise UsageError(f"unknown synthetic data set {kind!r}", hint="available: shapes")
    _claim_out(out, overwrite, [])
    _remove_leftovers(out)
    header = {
        "kind": "synthetic",
        "sources": {"synthetic": kind},
        "options": {"size": size, "channels": channels, "seed": seed, "count": count, "test_count": test_count},
    }
    _clear(out)  # regenerating takes seconds; cheaper than checking what is still valid
    _write_manifest(out, header, [], complete=False)
    synthetic.make_shapes(out, n_train=count, n_test=test_count, size=size, seed=seed, channels=channels)
    packed = _pack(out, "RGB" if channels == 3 else "L") if pack else None
    _write_manifest(out, header, [], complete=True)
    domains = {d: {"found": count + test_count, "train": count, "test": test_count, "skipped": {}} for d in "AB"}
    return {
        "out": str(out),
        "kind": "synthetic",
        "domains": domains,
        "decoded": 0,
        "reused": 0,
        "removed": 0,
        "packed": packed,
        "rebuilt": False,
        "manifest": str(out / MANIFEST),
    }


# ---------------------------------------------------------------------------------------------
# Reporting


@contextlib.contextmanager
def _reporter(progress: Progress | None, total: int) -> Iterator[Callable[[], None]]:
    """A tick() per decoded file: the caller's callback, else a rich bar when stderr is a terminal."""
    if progress is not None:
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            progress(done, total)

        yield tick
    elif total and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("preparing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("prepare", total=total)
            yield lambda: bar.advance(task)
    else:
        yield lambda: None


def reason_kind(reason: str) -> str:
    """The reason without its particulars: 'too large (200000000 pixels)' -> 'too large'."""
    return reason.split(" (")[0]


def _summary(
    out: Path,
    kind: str,
    entries: list[dict],
    decoded: int,
    reused: int,
    removed: int,
    packed: dict | None,
    rebuilt: bool,
) -> dict[str, Any]:
    domains: dict[str, dict] = {}
    for entry in entries:
        stats = domains.setdefault(entry["domain"], {"found": 0, "train": 0, "test": 0, "skipped": {}})
        stats["found"] += 1
        if entry["status"] == "kept":
            stats[entry["split"]] += 1
        else:
            why = "duplicate" if entry["status"] == "duplicate" else reason_kind(entry["reason"])
            stats["skipped"][why] = stats["skipped"].get(why, 0) + 1
    return {
        "out": str(out),
        "kind": kind,
        "domains": dict(sorted(domains.items())),
        "decoded": decoded,
        "reused": reused,
        "removed": removed,
        "packed": packed,
        "rebuilt": rebuilt,
        "manifest": str(out / MANIFEST),
    }
