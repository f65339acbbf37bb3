"""Where runs live when no folder is named: `./runs/<A>2<B>` for a new run, and the run that
training changed last for commands that read one (`munit report`, the default `--model`).

Torch-free on purpose: `munit report` and the error paths of every command read folders only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from munit_cli.errors import MunitError
from munit_cli.files import display_path

RUNS_ROOT = Path("runs")
RUN_FILE = "run.json"
# What training writes as it goes (the log at every log interval): a run's age is judged by these,
# not by the folder's own time, which writing a report or a style changes too.
TRAINING_ENTRIES = (RUN_FILE, "metrics.jsonl", "checkpoints", "samples")
# Per domain in a default folder name, in characters and in UTF-8 bytes: two of them, the '2'
# between and a '-N' suffix stay within a file name's 255 bytes in any script.
MAX_NAME_CHARS = 60
MAX_NAME_BYTES = 120
MAX_SUFFIX = 10_000
_UNSAFE = re.compile(r"[^\w.-]+")  # \w is Unicode-aware: letters of any script stay


def folder_safe(name: str, fallback: str) -> str:
    """`name` as one folder-name component: runs of anything but letters, digits, '.', '-' and
    '_' become '_'; no leading '.', '-' or '_' (hidden, read as an option); at most
    MAX_NAME_CHARS characters and MAX_NAME_BYTES bytes; `fallback` when nothing is left."""
    safe = _UNSAFE.sub("_", name).lstrip("._-")[:MAX_NAME_CHARS]
    safe = safe.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip("._-")
    return safe or fallback


def _series_index(name: str, base: str) -> int | None:
    """1 for `base` itself, N for `base-N` (N >= 2), None for any other name."""
    if name == base:
        return 1
    suffix = name.removeprefix(f"{base}-")
    if suffix != name and suffix.isascii() and suffix.isdigit() and not suffix.startswith("0") and int(suffix) >= 2:
        return int(suffix)
    return None


def default_run_folder(
    data_paths: Sequence[Path], names: tuple[str, str] | None, reuse: bool = False, root: Path = RUNS_ROOT
) -> Path:
    """The run folder of `munit train` without `--out`: ROOT/<A>2<B> from the domain names (`--names`,
    else the two folders' names; one prepared dataset folder gives its own name).

    A new run never reuses a folder: when ROOT/<A>2<B> exists it goes to <A>2<B>-2, -3, ... (the
    first that does not exist). With `reuse` (`--resume` or `--overwrite`) it is the newest folder
    of that series instead: the one with the highest number, which is the one made last."""
    if names is not None:
        base = f"{folder_safe(names[0], 'A')}2{folder_safe(names[1], 'B')}"
    elif len(data_paths) == 1:
        base = folder_safe(Path(data_paths[0]).resolve().name, "run")
    else:
        first, second = (Path(p).resolve().name for p in data_paths[:2])
        base = f"{folder_safe(first, 'A')}2{folder_safe(second, 'B')}"
    root = Path(root)
    if os.path.lexists(root) and not root.is_dir():
        raise MunitError(
            f"runs without --out go into {display_path(root)}/, but {display_path(root)} exists and is not a folder",
            hint="name the run folder with --out, or move that file away",
        )
    if reuse:
        existing = [(index, p) for p in _entries(root) if (index := _series_index(p.name, base)) is not None]
        return max(existing)[1] if existing else root / base
    for index in range(1, MAX_SUFFIX + 1):
        candidate = root / (base if index == 1 else f"{base}-{index}")
        if not (candidate.exists() or candidate.is_symlink()):
            return candidate
    raise MunitError(f"{display_path(root / base)}: {MAX_SUFFIX} runs of this name exist", hint="name the run folder with --out")


def _entries(root: Path) -> list[Path]:
    try:
        return list(root.iterdir()) if root.is_dir() else []
    except OSError:
        return []


def last_trained(folder: Path) -> float:
    times = []
    for name in TRAINING_ENTRIES:
        try:
            times.append((folder / name).stat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


def latest_run(root: Path = RUNS_ROOT, usable: Callable[[Path], bool] = lambda run: True) -> Path | None:
    """The run folder directly under `root` (one with a run.json) that training changed last,
    among those `usable` accepts; None when there is none."""
    runs = [p for p in _entries(root) if (p / RUN_FILE).is_file() and usable(p)]
    return max(runs, key=last_trained, default=None)
