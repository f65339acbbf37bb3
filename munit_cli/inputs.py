"""What the inference commands read and where their result bytes go: input files, folders, globs
and stdin as a list of items; stdout for image bytes and JSON records.

Files are read by `images.read_bytes`, which refuses anything but a regular file (a FIFO or a
device named *.png would block or never end) and caps the size; stdin is read up to a limit too,
so no input can hang a command or fill memory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

from rich.markup import escape

from munit_cli import files, images
from munit_cli.console import err
from munit_cli.errors import MunitError, UsageError

STDIN = "-"
# What stdin may hold: far more than an image munit can translate within its memory budget, so
# only an endless or runaway stream (cat /dev/zero) reaches it.
MAX_STDIN_BYTES = 256 << 20


@dataclass
class InputItem:
    """One image to translate. `stem` names its outputs (unique within a run); `problem` marks an
    input known to be unusable before reading it (a glob that matched nothing, stdin too long)."""

    name: str
    stem: str
    path: Path | None = None
    data: bytes | None = None
    problem: str | None = None

    def read(self) -> bytes:
        """The item's bytes; an unusable item raises `images.ImageError` with the reason."""
        if self.problem:
            raise images.ImageError(self.name, self.problem)
        if self.data is not None:
            return self.data
        if self.path is None:
            raise images.ImageError(self.name, "no data")
        return images.read_bytes(self.path)


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or name-2, name-3, ... when taken; the result is added to `taken`."""
    unique, n = name, 1
    while unique in taken:
        n += 1
        unique = f"{name}-{n}"
    taken.add(unique)
    return unique


def read_stdin(stream: BinaryIO | None = None) -> bytes:
    """Image bytes from stdin, at most MAX_STDIN_BYTES (more raises `images.ImageError`)."""
    if stream is None:
        if sys.stdin is None:
            raise UsageError("'-' reads image bytes from stdin, but stdin is closed", hint="cat in.png | munit ... -")
        stream = sys.stdin.buffer
    if stream.isatty():
        raise UsageError("'-' reads image bytes from stdin, but stdin is a terminal", hint="cat in.png | munit ... -")
    try:
        data = stream.read(MAX_STDIN_BYTES + 1)
    except OSError as exc:
        raise images.ImageError("stdin", f"unreadable ({exc.strerror or exc})") from None
    if len(data) > MAX_STDIN_BYTES:
        raise images.ImageError("stdin", f"more than {MAX_STDIN_BYTES / (1 << 20):g} MiB; munit reads at most that much")
    return data


def expand_inputs(specs: Sequence[str], stdin: BinaryIO | None = None) -> list[InputItem]:
    """Files, folders (recursively, sorted), globs (sorted) and '-' (stdin, once) as input items,
    in the order given. Missing files stay in the list: reading them fails per input, later."""
    items: list[InputItem] = []
    stems: set[str] = set()

    def add(name: str, stem: str, **kwargs) -> None:
        items.append(InputItem(name, unique_name(stem, stems), **kwargs))

    def add_path(path: Path, name: str) -> None:
        if path.is_dir():
            scan = images.scan_images(path)
            if not scan.found:
                add(name, path.name or "folder", problem=images.no_images_reason(scan))
            elif scan.skipped:
                err.print(f"[yellow]warning:[/] {escape(name)}: {escape(images.skipped_summary(scan.skipped))}; {images.LINK_RULE}", markup=True)
            for p in scan.found:
                add(files.display_path(p), p.relative_to(path).with_suffix("").as_posix(), path=p)
        else:
            add(name, path.stem or "image", path=path)

    if list(specs).count(STDIN) > 1:
        raise UsageError("'-' (stdin) can be given only once")
    for spec in specs:
        if spec == STDIN:
            try:
                add("stdin", "stdin", data=read_stdin(stdin))
            except images.ImageError as exc:
                add("stdin", "stdin", problem=exc.reason)
        elif any(ch in spec for ch in "*?[") and not Path(spec).exists():
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                add(spec, Path(spec).stem or "glob", problem="no files match this pattern")
            for match in matches:
                add_path(Path(match), files.display_path(match))
        else:
            add_path(Path(spec), files.display_path(spec))
    if not items:
        raise UsageError("no inputs given")
    return items


def stdout_is_terminal() -> bool:
    return sys.stdout is not None and sys.stdout.isatty()


def write_stdout(data: bytes) -> None:
    """Result bytes on stdout. A closed stdout, a full disk or a closed pipe is one MunitError; the
    bytes still buffered are dropped, so the interpreter's exit does not fail on them again."""
    if sys.stdout is None:
        raise MunitError("stdout is closed, so the results cannot be written", hint="redirect stdout, or pass --out")
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except (OSError, ValueError) as exc:  # ValueError: the stream was closed
        _drop_stdout()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise MunitError(f"could not write to stdout: {reason}") from None


def _drop_stdout() -> None:
    """Point stdout at /dev/null (as Python's documentation advises for a broken pipe)."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor behind it (a test's buffer)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
