"""Duplicates, the train/test split and output names of prepared images: pure functions of the
manifest entries, so the rules can be read (and tested) apart from decoding and file moves.

- The split is a threshold on the content hash (`test_fraction`), or the `test_count` smallest
  hashes per domain, so adding files never moves an existing file between splits.
- Outputs are named by content hash. Side-by-side A|B sources (domain PAIRED) keep their pairing in
  the test split (testA/X and testB/X are the halves of one source) and lose it in training: there
  each half is named by a hash of (source hash, side), which shuffles the two folders independently
  yet deterministically.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from munit_cli.manifest import PAIRED, Entry, State

SPLIT_DIRS = ("trainA", "trainB", "testA", "testB")
OUTPUT_NAME = re.compile(r"^[0-9a-f]{16}\.(png|jpg)$")


def output_domains(entry: Entry) -> tuple[str, ...]:
    return ("A", "B") if entry.domain == PAIRED else (entry.domain,)


def staged_name(entry: Entry, ext: str) -> str:
    """The name of an output while the split is not known yet."""
    return (entry.sha256 or "")[:16] + ext


def final_name(entry: Entry, domain: str, split: str, ext: str) -> str:
    digest = entry.sha256 or ""
    if entry.domain == PAIRED and split == "train":
        digest = hashlib.sha256(f"{digest}:{domain}".encode()).hexdigest()
    return digest[:16] + ext


def mark_duplicates(entries: list[Entry]) -> None:
    """Keep the first source (by path) of each content hash per domain; mark the others."""
    first: dict[tuple[str, str | None], bytes] = {}
    for entry in sorted(entries, key=lambda e: e.key):
        if entry.state is not State.KEPT:
            continue
        content = (entry.domain, entry.sha256)
        if content in first:
            entry.state, entry.duplicate_of, entry.split = State.DUPLICATE, first[content], None
        else:
            first[content] = entry.source


def split_value(sha256: str) -> float:
    """A uniform number in [0, 1) fixed by the content: files below the test fraction are test files."""
    return int(sha256[:8], 16) / 2**32


def assign_splits(entries: list[Entry], split: dict[str, Any], keep_previous: bool) -> None:
    """By a threshold on the hash (test_fraction), or the `test_count` smallest hashes per domain.

    With test_count, files that already have a split keep it on a rerun with the same options;
    new files only fill the test split up to the count, so adding files never moves old ones."""
    kept = sorted((e for e in entries if e.state is State.KEPT), key=lambda e: e.sha256 or "")
    if split["test_count"] is None:
        for entry in kept:
            entry.split = "test" if split_value(entry.sha256 or "") < split["test_fraction"] else "train"
        return
    for domain in sorted({e.domain for e in kept}):
        group = [e for e in kept if e.domain == domain]
        settled = [e for e in group if keep_previous and e.split]
        n_test = sum(e.split == "test" for e in settled)
        for entry in (e for e in group if not (keep_previous and e.split)):
            entry.split = "test" if n_test < split["test_count"] else "train"
            n_test += entry.split == "test"
