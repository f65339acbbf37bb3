"""`munit prepare`: messy image folders in, a clean, split, optionally packed training set out.

One run, top to bottom: scan the sources (sources.py), check the output folder and plan the rerun
(rerun.py), decode what is new in worker processes (decode.py, pool.py), then stage, split, place
and pack the results (dataset.py, splits.py) and write the manifest (manifest.py).

Design choices:
- Names come from content hashes, so odd source names (spaces, non-UTF-8 bytes, any length) never
  reach the output, and the split (splits.py) does not move existing files when files are added.
- A rerun reuses every source whose size and mtime (or, failing that, content) match the manifest;
  new results are staged in .pending/ and moved into place once all splits are known. Every file,
  the manifest included, is written under a temporary name and renamed, so an interrupted run never
  leaves a half-written file.
- Decoding runs in worker processes (pool.py); only this process writes files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import NamedTuple

from munit_cli import console, manifest, pool, synthetic
from munit_cli.dataset import (
    MANIFEST,
    DomainCounts,
    Prepared,
    clear_outputs,
    drop_pack,
    pack_shards,
    place,
    remove_leftovers,
    remove_stale,
    require_usable,
    stage_entry,
    summarise,
)
from munit_cli.decode import Processing, decode_file, image_format, parse_colour
from munit_cli.errors import MunitError, UsageError
from munit_cli.files import printable
from munit_cli.images import DEFAULT_MAX_PIXELS
from munit_cli.manifest import Manifest
from munit_cli.rerun import changes, check_pack_kept, claim_out, plan_rerun, refuse_rebuild, refuse_removal
from munit_cli.sources import SourceFile, scan_sources, source_folders
from munit_cli.splits import assign_splits, mark_duplicates

DEFAULT_SIZE = 256
DEFAULT_SYNTHETIC_SIZE = 64
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_SYNTHETIC_TEST_COUNT = 16
# Bounds that keep one image, and one run, within a machine: an 8192 px training image is already
# 200 MB as floats; synthetic shapes are drawn 4x supersampled.
MAX_SIZE = 8192
MAX_SYNTHETIC_SIZE = 1024
MAX_SYNTHETIC_COUNT = 100_000
STOPPED = "prepare stopped; finished images are kept, run the same command again to continue"

Progress = Callable[[int, int], None]


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
            sources = source_folders(src_a, src_b, split_paired)
            if size is not None and not 0 <= size <= MAX_SIZE:
                raise UsageError(f"--size must be between 0 (keep) and {MAX_SIZE}, got {size}")
            proc = Processing(
                size=DEFAULT_SIZE if size is None else size,
                center_crop=center_crop,
                min_size=min_size,
                fmt=image_format(fmt),
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
            raise MunitError(f"could not write {printable(exc.filename or out)}: {exc.strerror or exc}") from None


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
    scanned, unfollowed = scan_sources(sources)
    previous, rebuild = claim_out(out, overwrite, list(sources.values()))
    record = Manifest(
        kind="paired" if proc.paired else "folders",
        sources={domain: str(path.resolve()) for domain, path in sources.items()},
        options=proc.as_json(),
        split=split,
        files=[],
        complete=False,
    )
    if previous is not None:
        rebuild += changes(previous, record)
    if rebuild and not overwrite:
        refuse_rebuild(out, rebuild, previous)
    check_pack_kept(out, pack, overwrite)
    ext = "." + proc.fmt
    plan = plan_rerun(out, None if rebuild else previous, scanned, ext)
    if plan.doomed and not overwrite:
        refuse_removal(plan.doomed)
    remove_leftovers(out)
    removed = clear_outputs(out) if rebuild else 0
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
    placed = place(out, record.files, ext)
    removed += remove_stale(out, placed)
    packed = pack_shards(out, proc.mode) if pack else None
    if not pack:
        drop_pack(out)
    record.complete = True
    manifest.write(out, record)
    result = summarise(out, record, len(plan.todo), len(plan.reused), removed, packed, bool(rebuild))
    result.removed_sources = [printable(entry.name) for entry, _ in plan.doomed]
    result.rebuilt_because = rebuild
    require_usable(result)
    return result


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
        for done, (src, result) in enumerate(zip(todo, pool.run_jobs(decode_file, jobs, workers)), 1):
            record.files.append(stage_entry(out, src, result, ext))
            bar.update()
            if progress is not None:
                progress(done, len(todo))


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
        raise UsageError(f"unknown synthetic data set {printable(kind)}", hint="available: shapes")
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
    previous, rebuild = claim_out(out, overwrite, [])
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
        rebuild += changes(previous, record, growable=("count", "test_count"))
    if rebuild and not overwrite:
        refuse_rebuild(out, rebuild, previous)
    check_pack_kept(out, pack, overwrite)
    remove_leftovers(out)
    removed = clear_outputs(out) if rebuild else 0
    manifest.write(out, record)
    # The same options give the same bytes, so images already there are rewritten unchanged.
    synthetic.make_shapes(
        out, n_train=options.count, n_test=options.test_count, size=options.size, seed=options.seed,
        channels=options.channels,
    )  # fmt: skip
    packed = pack_shards(out, "RGB" if options.channels == 3 else "L") if pack else None
    if not pack:
        drop_pack(out)
    record.complete = True
    manifest.write(out, record)
    counts = DomainCounts(found=options.count + options.test_count, train=options.count, test=options.test_count)
    domains = {d: dataclasses.replace(counts, skipped={}) for d in "AB"}
    result = Prepared(out, "synthetic", domains, 0, 0, removed, packed, bool(rebuild), out / MANIFEST)
    result.rebuilt_because = rebuild
    return result
