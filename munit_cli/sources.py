"""Scanning the source folders of `munit prepare`: which files are a domain's images.

The walk itself (hidden files, links, loops, kinds of file) is `images.scan_images`, shared with
training and translation; this module turns it into the list of source files prepare works on,
with the size and time a rerun compares, and manifest entries for what the walk skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from munit_cli.errors import UsageError
from munit_cli.files import printable
from munit_cli.images import no_images_found, scan_images
from munit_cli.manifest import PAIRED, Entry, State


class SourceFile(NamedTuple):
    domain: str
    rel: bytes  # path under its source folder, exact bytes
    path: str
    size: int
    mtime_ns: int


def source_folders(src_a: Path | None, src_b: Path | None, split_paired: bool) -> dict[str, Path]:
    if split_paired:
        if src_a is None or src_b is not None:
            raise UsageError("--split-paired takes one folder of side-by-side A|B images")
        return {PAIRED: Path(src_a)}
    if src_a is None or src_b is None:
        raise UsageError(
            "prepare needs two source folders (domain A, domain B)", hint="or --split-paired DIR, or --synthetic shapes"
        )
    real_a, real_b = os.path.realpath(src_a), os.path.realpath(src_b)
    if within(real_a, real_b) or within(real_b, real_a):
        same = "the same folder" if real_a == real_b else "one folder inside the other"
        raise UsageError(
            f"the two domains' source folders are {same} ({printable(src_a)}, {printable(src_b)})",
            hint="give one folder of images per domain, neither inside the other",
        )
    return {"A": Path(src_a), "B": Path(src_b)}


def within(path: str, folder: str) -> bool:
    """Whether real path `path` is `folder` or inside it."""
    return os.path.commonpath([path, folder]) == folder


def scan_sources(sources: dict[str, Path]) -> tuple[list[SourceFile], list[Entry]]:
    """The image files of every source folder, and entries for the links that were not followed."""
    found, unfollowed = [], []
    for domain, root in sources.items():
        scan = scan_images(root)
        if not scan.found:
            raise no_images_found(root, scan)
        for path in scan.found:
            try:
                st = path.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # gone since the scan: never matches the manifest, so it is retried and reported
                size = mtime = -1
            found.append(SourceFile(domain, os.fsencode(path.relative_to(root)), str(path), size, mtime))
        for path, reason in scan.skipped:
            rel = os.fsencode(path.relative_to(root))
            unfollowed.append(Entry(domain, rel, -1, -1, State.SKIPPED, reason=printable(reason), retry=True))
    return found, unfollowed
