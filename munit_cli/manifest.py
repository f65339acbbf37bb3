"""`manifest.json` of a prepared folder: what `munit prepare` wrote and why, as typed entries.

On disk the manifest is plain JSON (format "munit-prepare", version 1): the options, and per source
file its path, size, mtime, sha256, state and split, or why it was skipped. In memory each file is
an `Entry` with a `State`. The file is checked field by field when read: it decides what a rerun
reuses and which file names it moves, so an edited or damaged manifest is refused with the field
that is wrong, never trusted.

Source paths are kept as their exact bytes (`os.fsencode`): two files whose names print alike
(b"caf\\xe9.png" and "caf\\ufffd.png") stay two entries. JSON holds text, so "source" is the
printable form and "source_raw" the bytes in hex, written only when the two differ. Manifests from
before "source_raw" existed read their "source" as UTF-8.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from pathlib import Path
from typing import Any

from munit_cli.errors import MunitError
from munit_cli.files import display_path, write_atomic
from munit_cli.images import ImageError, read_bytes

FORMAT = "munit-prepare"
VERSION = 1
NAME = "manifest.json"
KINDS = ("folders", "paired", "synthetic")
PAIRED = "pair"  # the domain name of side-by-side A|B sources
SPLITS = ("train", "test")
_MAX_TEXT = 4096  # longest path or reason a manifest may hold
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEX = re.compile(r"^(?:[0-9a-f]{2})+$")


class State(enum.Enum):
    KEPT = "kept"
    SKIPPED = "skipped"
    DUPLICATE = "duplicate"


@dataclasses.dataclass
class Entry:
    """One source file: kept (with a split and outputs), a duplicate of another, or skipped."""

    domain: str  # "A", "B", or PAIRED
    source: bytes  # path under its source folder, exactly as the file system names it
    size: int  # bytes; -1 when it could not be read
    mtime_ns: int
    state: State
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    reason: str | None = None  # why it was skipped
    retry: bool = False  # skipped for a reason that may go away (permissions): read again next run
    split: str | None = None
    duplicate_of: bytes | None = None
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)  # domain -> path under the folder

    @property
    def name(self) -> str:
        """The source path as printable text."""
        return display_path(self.source)

    @property
    def key(self) -> tuple[str, bytes]:
        return (self.domain, self.source)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"domain": self.domain, "source": self.name}
        if self.name.encode("utf-8") != self.source:
            record["source_raw"] = self.source.hex()
        record.update(bytes=self.size, mtime_ns=self.mtime_ns)
        optional = {"sha256": self.sha256, "width": self.width, "height": self.height}
        record.update({k: v for k, v in optional.items() if v is not None})
        record["status"] = self.state.value
        if self.reason is not None:
            record["reason"] = self.reason
        if self.retry:
            record["retry"] = True
        if self.state is State.DUPLICATE:
            record.update(duplicate_of=display_path(self.duplicate_of or b""), split=None)
        elif self.split is not None:
            record["split"] = self.split
        if self.outputs:
            record["outputs"] = dict(self.outputs)
        return record


@dataclasses.dataclass
class Manifest:
    kind: str
    sources: dict[str, str]
    options: dict[str, Any]
    split: dict[str, Any] | None  # None for synthetic data, which has a fixed split
    files: list[Entry]
    complete: bool

    def header(self) -> dict[str, Any]:
        header = {"kind": self.kind, "sources": self.sources, "options": self.options}
        return header if self.split is None else {**header, "split": self.split}


class DamagedManifest(MunitError):
    """A manifest that claims to be ours but does not read back as one munit writes."""


def write(folder: Path, manifest: Manifest) -> None:
    files = sorted(manifest.files, key=lambda e: e.key)
    record = {"format": FORMAT, "version": VERSION, "complete": manifest.complete, **manifest.header()}
    record["files"] = [entry.to_json() for entry in files]
    write_atomic(Path(folder) / NAME, json.dumps(record, indent=1).encode())


def read(folder: Path) -> Manifest | None:
    """The manifest of a prepared folder; None when there is none or it is not munit prepare's.
    Raises `DamagedManifest` when it claims to be ours but any field is not what munit writes."""
    path = Path(folder) / NAME
    try:
        record = _load(path)
    except (ImageError, ValueError, RecursionError):  # missing, not a file, not JSON
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    try:
        return _parse(record)
    except _Bad as exc:
        raise DamagedManifest(
            f"{display_path(path)}: {exc}; it was edited or damaged, so nothing in it is used",
            hint="pass --overwrite to rebuild the prepared folder (only what munit prepare wrote is removed)",
        ) from None


def _load(path: Path) -> Any:
    """The parsed JSON; `read_bytes` refuses a pipe or device named manifest.json and caps the size."""
    return json.loads(read_bytes(path).decode("utf-8"))


class _Bad(Exception):
    """A field that is not what munit writes; the message names it."""


def _parse(record: dict) -> Manifest:
    if record.get("version") != VERSION:
        raise _Bad(f"version {_shown(record.get('version'))} (this munit reads {VERSION})")
    kind = _field(record, "kind", str, "manifest")
    if kind not in KINDS:
        raise _Bad(f"kind {_shown(kind)} is not one of {', '.join(KINDS)}")
    sources = _field(record, "sources", dict, "manifest")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items()):
        raise _Bad("sources must map names to folder paths")
    options = _field(record, "options", dict, "manifest")
    split = None if kind == "synthetic" else _field(record, "split", dict, "manifest")
    complete = _field(record, "complete", bool, "manifest")
    raw_files = _field(record, "files", list, "manifest")
    domains = (PAIRED,) if kind == "paired" else ("A", "B")
    files, keys = [], set()
    for i, raw in enumerate(raw_files):
        entry = _entry(raw, f"files[{i}]", domains)
        if entry.key in keys:
            raise _Bad(f"files[{i}]: {entry.name} is listed twice")
        keys.add(entry.key)
        files.append(entry)
    return Manifest(kind, sources, options, split, files, complete)


def _entry(raw: Any, where: str, domains: tuple[str, ...]) -> Entry:
    if not isinstance(raw, dict):
        raise _Bad(f"{where} is not an object")
    domain = _field(raw, "domain", str, where)
    if domain not in domains:
        raise _Bad(f"{where}.domain {_shown(domain)} is not one of {', '.join(domains)}")
    state_text = _field(raw, "status", str, where)
    try:
        state = State(state_text)
    except ValueError:
        raise _Bad(f"{where}.status {_shown(state_text)} is not one of kept, skipped, duplicate") from None
    entry = Entry(
        domain=domain,
        source=_source(raw, where),
        size=_int(raw, "bytes", where, low=-1),
        mtime_ns=_int(raw, "mtime_ns", where, low=-(2**63)),
        state=state,
        sha256=_sha256(raw, where, required=state is not State.SKIPPED),
        width=_int(raw, "width", where, low=1, required=False),
        height=_int(raw, "height", where, low=1, required=False),
        reason=_text(raw, "reason", where, required=state is State.SKIPPED, printable=True),
        retry=_field(raw, "retry", bool, where, required=False) or False,
        split=None,
    )
    split = _field(raw, "split", str, where, required=False)
    if split is not None and split not in SPLITS:
        raise _Bad(f"{where}.split {_shown(split)} is not train or test")
    entry.split = split if state is State.KEPT else None
    if state is State.DUPLICATE:
        entry.duplicate_of = (_text(raw, "duplicate_of", where, required=False) or "").encode("utf-8")
    return entry


def _field(raw: dict, key: str, kind: type, where: str, required: bool = True) -> Any:
    value = raw.get(key)
    if value is None:
        if required:
            raise _Bad(f"{where}.{key} is missing")
        return None
    # bool is an int in Python; a manifest with "bytes": true is not one munit wrote
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _Bad(f"{where}.{key} is not a {kind.__name__}")
    return value


def _int(raw: dict, key: str, where: str, low: int, required: bool = True) -> int | None:
    value = _field(raw, key, int, where, required)
    if value is not None and not low <= value < 2**63:
        raise _Bad(f"{where}.{key} {value} is out of range")
    return value


def _text(raw: dict, key: str, where: str, required: bool, printable: bool = False) -> str | None:
    """A string field; `printable` ones are shown on the terminal as they are."""
    value = _field(raw, key, str, where, required)
    if value is not None and (len(value) > _MAX_TEXT or (printable and not value.isprintable())):
        raise _Bad(f"{where}.{key} is too long{' or holds control characters' if printable else ''}")
    return value


def _sha256(raw: dict, where: str, required: bool) -> str | None:
    value = _field(raw, "sha256", str, where, required)
    if value is not None and not _SHA256.match(value):
        raise _Bad(f"{where}.sha256 is not 64 lowercase hex digits")
    return value


def _source(raw: dict, where: str) -> bytes:
    shown = _field(raw, "source", str, where)
    if not shown or len(shown) > _MAX_TEXT:
        raise _Bad(f"{where}.source is empty or too long")
    hexed = _field(raw, "source_raw", str, where, required=False)
    if hexed is None:
        return shown.encode("utf-8", "surrogateescape")
    if len(hexed) > 2 * _MAX_TEXT or not _HEX.match(hexed):
        raise _Bad(f"{where}.source_raw is not a hex string")
    return bytes.fromhex(hexed)


def _shown(value: Any) -> str:
    """A value from the file, short and without control characters, for an error message."""
    return ascii(value)[:60]
