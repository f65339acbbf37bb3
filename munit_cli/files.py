"""Writing files safely: atomic replacement, leftovers of killed writers, refusing to overwrite,
names that fit the file system.

This is the one module that puts a file or folder under its final name: every file munit writes
goes through `write_atomic` (or is finished under `temp_path` and moved with `move_into_place`),
so an interrupted run never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from munit_cli.errors import MunitError


def display_path(path: str | os.PathLike) -> str:
    """A printable form of a path whose name may not be valid UTF-8 (undecodable bytes become U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")


def printable(value: str | bytes | os.PathLike) -> str:
    """A path or an option value fit for a terminal: undecodable bytes as U+FFFD, control
    characters escaped."""
    text = value if isinstance(value, str) else display_path(value)
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


# Most file systems (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units) take at most 255 bytes per name.
MAX_NAME_BYTES = 255
HASH_CHARS = 8


def fit_name(stem: str, tail: str = "", limit: int = MAX_NAME_BYTES) -> str:
    """`stem + tail` as one file name of at most `limit` bytes in UTF-8. A name that is too long
    keeps `tail` (suffix, style tag, frame number) and the start of `stem`, cut at a character
    boundary, followed by '~' and a short hash of the whole stem, so that two long names that
    share their start still give two files."""
    name = stem + tail
    if len(os.fsencode(name)) <= limit:
        return name
    digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:HASH_CHARS]
    room = limit - len(os.fsencode(tail)) - len(digest) - 1
    if room < 1:
        raise MunitError(f"cannot make a file name of at most {limit} bytes ending in {printable(tail)!r}")
    kept = os.fsencode(stem)[:room].decode("utf-8", "ignore")  # drops a character cut in half
    return f"{kept}~{digest}{tail}"


def is_shortened(stem: str, tail: str = "") -> bool:
    return fit_name(stem, tail) != stem + tail


def temp_path(path: Path) -> Path:
    """The unique hidden name next to `path` that an atomic write fills before renaming it to `path`.
    It holds the writer's pid, so `remove_stale_temporaries` can tell a crashed writer's leftovers;
    it fits in a name's 255 bytes whenever `path`'s name does."""
    return path.with_name(fit_name(f".{path.name}", f".{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"))


TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def write_atomic(path: Path, *chunks: bytes | memoryview, durable: bool = False) -> None:
    """`path` becomes the concatenated chunks, all or nothing: written under a temporary name in the
    same folder, then renamed. `durable` also fsyncs the file and its folder, so the new content
    survives a power loss once this returns (checkpoints and run records need that; images do not)."""
    path = Path(path)
    # Created with open() (not mkstemp) so the file gets the usual umask permissions.
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the folder itself may be what failed
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MunitError(f"could not write {display_path(path)}: {exc.strerror or exc}") from None
        raise
    if durable:
        _fsync_dir(path.parent)


def move_into_place(current: Path, target: Path) -> None:
    """Give a finished file or folder (written under `temp_path(target)`, or staged elsewhere on
    the same file system) its final name in one rename, creating the target's folder if needed.
    A folder replaces only an empty folder or nothing; a file replaces a file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(current, target)
    except OSError as exc:
        raise MunitError(f"could not move {display_path(current)} to {display_path(target)}: {exc.strerror or exc}") from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Delete a file or a folder tree; a symbolic link is removed itself, never followed."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
    except OSError as exc:
        raise MunitError(f"could not remove {display_path(path)}: {exc.strerror or exc}") from None


def remove_stale_temporaries(folders: Sequence[Path]) -> int:
    """Delete the temporary files that writers killed mid-write (kill -9, power loss) left in
    `folders` (not recursive); files of a live writer are kept. Returns how many were removed."""
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:  # a folder that does not exist (yet) holds nothing stale
            continue
        for entry in entries:
            found = TEMP_NAME.match(entry.name)
            if found and not _pid_alive(int(found.group(1))) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or not a real pid: keep
        return True
    return True


def refuse_overwrite(paths: Sequence[Path], overwrite: bool) -> None:
    """Before any work: outputs that would replace existing files are an error, unless `overwrite`."""
    existing = [] if overwrite else [p for p in paths if os.path.lexists(p)]
    if existing:
        listed = ", ".join(display_path(p) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise MunitError(
            f"{listed}{more} already exist{'s' if len(existing) == 1 else ''}; nothing was written",
            hint="pass --overwrite to replace existing files, or choose another output",
        )
