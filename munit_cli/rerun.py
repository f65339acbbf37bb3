"""The rerun plan of `munit prepare`: may this output folder be written, what the last run made
that is reused, what must be decoded, and what a rerun would remove or rebuild.

A rerun only adds. Removing a prepared image (its source is gone or changed) or rebuilding them
all (the options changed) needs `overwrite`; without it the run stops before writing anything and
names what would go.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

from munit_cli import manifest
from munit_cli.dataset import MANIFEST, OWNED, has_outputs
from munit_cli.errors import MunitError, UsageError
from munit_cli.files import printable
from munit_cli.images import ImageError, read_bytes
from munit_cli.manifest import Entry, Manifest, State
from munit_cli.sources import SourceFile, within

_LISTED = 5  # names shown when a rerun refuses to remove files


def claim_out(out: Path, overwrite: bool, sources: list[Path]) -> tuple[Manifest | None, list[str]]:
    """Check that `out` may be written. Returns the previous run's manifest if `out` is a prepared
    folder, and why it must be rebuilt when its manifest is damaged (only with `overwrite`)."""
    real_out = os.path.realpath(out)
    for src in sources:
        real_src = os.path.realpath(src)
        if within(real_out, real_src):
            raise UsageError(
                f"--out {printable(out)} is inside the source folder {printable(src)}", hint="choose a folder outside it"
            )
        if any(within(real_src, os.path.join(real_out, name)) for name in OWNED):
            raise UsageError(
                f"source folder {printable(src)} is inside the output's own folders", hint="choose another --out"
            )
    if os.path.lexists(out) and not out.is_dir():
        raise UsageError(f"--out {printable(out)} exists and is not a folder")
    if not out.exists():
        return None, []
    links = [name for name in OWNED if (out / name).is_symlink()]
    if links:
        raise UsageError(
            f"{printable(out / links[0])} is a link; munit prepare writes only its own folders",
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
            f"{printable(out)} holds {', '.join(foreign)} but was not made by munit prepare "
            f"(no {MANIFEST} of its own); nothing was changed",
            hint="--overwrite only replaces what munit prepare wrote: choose a new --out, or move those away",
        )
    if any(out.iterdir()) and not overwrite:
        raise UsageError(
            f"{printable(out)} is not empty and was not made by munit prepare",
            hint="choose a new --out folder, or pass --overwrite to add the dataset's folders next to what "
            "is there (nothing of it is removed)",
        )
    return None, []


def changes(old: Manifest, new: Manifest, growable: tuple[str, ...] = ()) -> list[str]:
    """What differs between the last run's settings and these, as 'size 16 -> 8'. Options in
    `growable` may grow (more images are added), not shrink."""
    if old.kind != new.kind:
        return [f"kind {old.kind} -> {new.kind}"]
    changes = []
    for domain in sorted(set(old.sources) | set(new.sources)):
        before, after = old.sources.get(domain), new.sources.get(domain)
        if before != after:
            changes.append(f"source {domain} {printable(str(before))} -> {printable(str(after))}")
    for key in sorted(set(old.options) | set(new.options)):
        before, after = old.options.get(key), new.options.get(key)
        grows = key in growable and type(before) is int and type(after) is int and after >= before
        if before != after and not grows:
            changes.append(f"{key} {printable(json.dumps(before))} -> {printable(json.dumps(after))}")
    return changes


def refuse_rebuild(out: Path, reasons: list[str], previous: Manifest | None) -> None:
    kept = sum(e.state is State.KEPT for e in previous.files) if previous else 0
    raise MunitError(
        f"{printable(out)} was prepared with other settings ({'; '.join(reasons)}); "
        f"this run would remove and rebuild its prepared images{f' ({kept} sources)' if kept else ''}; "
        "nothing was changed",
        hint="pass --overwrite to rebuild it, or choose a new --out folder",
    )


def check_pack_kept(out: Path, pack: bool, overwrite: bool) -> None:
    # Without --pack the pack would go stale as the folders change (training reads it), so it goes.
    if not pack and not overwrite and (out / "packed").exists():
        raise MunitError(
            f"{printable(out)} has packed shards (--pack) that this run would remove; nothing was changed",
            hint="pass --pack to keep them up to date, or --overwrite to remove them",
        )


class Plan(NamedTuple):
    reused: list[Entry]  # previous entries still valid
    todo: list[SourceFile]  # to decode
    doomed: list[tuple[Entry, str]]  # previous entries whose prepared images this run removes, and why


def plan_rerun(out: Path, previous: Manifest | None, scanned: list[SourceFile], ext: str) -> Plan:
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
            old.state is State.SKIPPED or has_outputs(out, old, ext)
        ):
            reused.append(revived(old))
        elif old.state is not State.SKIPPED and has_outputs(out, old, ext) and _sha256(src.path) == old.sha256:
            reused.append(revived(dataclasses.replace(old, size=src.size, mtime_ns=src.mtime_ns)))  # touched
        else:
            todo.append(src)
            candidates.append((old, "changed"))
    candidates += [(old, "gone") for old in known.values()]
    kept = {(e.domain, e.sha256) for e in reused if e.state is not State.SKIPPED}
    candidates = [
        (old, why)
        for old, why in candidates
        if old.state is State.KEPT and (old.domain, old.sha256) not in kept and has_outputs(out, old, ext)
    ]
    if candidates:  # a new source with the same content (a renamed file) keeps the image
        sizes = {old.size for old, _ in candidates}
        new = {(src.domain, _sha256(src.path)) for src in todo if src.size in sizes}
        candidates = [(old, why) for old, why in candidates if (old.domain, old.sha256) not in new]
    return Plan(reused, todo, sorted(candidates, key=lambda c: c[0].key))


def _sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(read_bytes(Path(path))).hexdigest()
    except ImageError:
        return None


def refuse_removal(doomed: list[tuple[Entry, str]]) -> None:
    listed = ", ".join(f"{printable(entry.domain)}/{printable(entry.name)} ({why})" for entry, why in doomed[:_LISTED])
    more = f" and {len(doomed) - _LISTED} more" if len(doomed) > _LISTED else ""
    raise MunitError(
        f"this run would remove the prepared images of {len(doomed)} source file(s) that are gone or changed: "
        f"{listed}{more}; nothing was changed",
        hint="pass --overwrite to remove them, restore the sources, or choose a new --out folder",
    )


def revived(old: Entry) -> Entry:
    """A previous entry as if freshly decoded: duplicates and outputs are worked out again."""
    state = State.KEPT if old.state is State.DUPLICATE else old.state
    return dataclasses.replace(old, state=state, duplicate_of=None, outputs={})
