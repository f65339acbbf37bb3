"""The run folder of `munit train`: what may go into it, its lock, its identity (run.json), where a
resumed run starts, and the files that are not checkpoints (metrics, previews).

A run folder holds only what munit writes (`RUN_ENTRIES`); `--overwrite` clears those entries of a
folder that munit recognises as a run folder, and nothing else.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.markup import escape

from munit_cli import checkpoint, files, images
from munit_cli.console import err
from munit_cli.errors import MunitError

RUN_FILE = "run.json"
CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
# Everything munit writes at the top of a run folder (report, saved scores, named styles and
# TensorBoard logs included): the only entries `--overwrite` may remove.
RUN_ENTRIES = frozenset(
    {
        RUN_FILE, CONFIG_FILE, METRICS_FILE, LOCK_FILE, checkpoint.CHECKPOINT_DIR, "samples", "preview",
        "styles", "report.html", "dataset.json", "evaluations", "tensorboard",
    }
)  # fmt: skip


@dataclass
class RunInfo:
    """Identity of a run that outlives its checkpoints: the domain names and the seed of the model
    fingerprint (so a state file of another run is told apart)."""

    names: tuple[str, str]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_bytes(self) -> bytes:
        return json.dumps({"names": list(self.names), "run_id": self.run_id}).encode()

    @classmethod
    def read(cls, out: Path) -> RunInfo | None:
        """The run's stored identity; None when there is none or it is not one of ours."""
        try:
            stored = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
            names, run_id = stored["names"], stored["run_id"]
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if not (isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) for n in names)):
            return None
        return cls((names[0], names[1]), run_id) if isinstance(run_id, str) else None


# ---------------------------------------------------------------------------------------------
# Checks before anything is written


def _own(name: str) -> bool:
    return name in RUN_ENTRIES or files.TEMP_NAME.match(name) is not None


def _visible_entries(out: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(out) if e.name != LOCK_FILE) if out.is_dir() else []


def is_run_folder(out: Path) -> bool:
    """Recognised by its marker files: a valid run.json, or (a run killed before writing it) a
    config.toml among entries that are all munit's, or (killed while writing run.json, its first
    file) nothing but the hidden temporary files of munit's atomic writes."""
    entries = _visible_entries(out)
    if RunInfo.read(out) is not None:
        return True
    if entries and all(files.TEMP_NAME.match(name) for name in entries):
        return True
    return CONFIG_FILE in entries and all(_own(name) for name in entries)


def has_progress(out: Path) -> bool:
    """Whether the run got anywhere worth keeping: a checkpoint or a logged step."""
    metrics = out / METRICS_FILE
    logged = metrics.is_file() and metrics.stat().st_size > 0
    return logged or bool(checkpoint.list_steps(out, "gen") or checkpoint.list_steps(out, "state"))


def check_out_path(out: Path) -> None:
    """The run folder can be made and written: not a file, not under a file, not read-only."""
    for parent in (out, *out.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                what = "is a file" if parent == out else f"is under {files.display_path(parent)}, which is a file"
                raise MunitError(f"--out {files.display_path(out)} {what}", hint="choose a folder for the run")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise MunitError(f"cannot write into {files.display_path(parent)} (permission denied)")
            return


def check_data_apart(out: Path, data_folders: list[Path]) -> None:
    """The run folder and the training images never share a folder: the run would list its own
    samples as training images, and `--overwrite` could remove the data."""
    target = out.resolve()
    for folder in data_folders:
        where = Path(folder).resolve()
        if target == where or where.is_relative_to(target) or target.is_relative_to(where):
            raise MunitError(
                f"--out {files.display_path(out)} overlaps the training data {files.display_path(folder)}",
                hint="train into a folder outside the data, e.g. runs/NAME",
            )


def check_run_dir(out: Path, resume: str | None, overwrite: bool) -> None:
    """A non-empty folder is used only when munit recognises it as a run folder, and then only to
    continue it (--resume), to start over (--overwrite), or when it holds no progress yet (a run
    that failed before its first logged step)."""
    entries = _visible_entries(out)
    if not entries:
        return
    if not is_run_folder(out):
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise MunitError(
            f"{files.display_path(out)} is not empty and is not a munit run folder (it holds {shown})",
            hint="train into a new or empty --out folder; --overwrite only clears run folders that munit made",
        )
    if resume is None and not overwrite and has_progress(out):
        raise MunitError(
            f"{files.display_path(out)} already exists and is not empty",
            hint="continue it with --resume auto, or start over with --overwrite",
        )


def recipe_file(out: Path, resume: str | None) -> Path | None:
    """On resume, the run continues with its own recipe: its config.toml, when there is one."""
    path = Path(out) / CONFIG_FILE
    return path if resume and path.is_file() else None


# ---------------------------------------------------------------------------------------------
# Making the folder


def create(out: Path) -> None:
    check_out_path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MunitError(f"could not create {files.display_path(out)}: {exc.strerror or exc}") from None


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """One trainer per run folder. flock is released by the OS when a process dies, so a crash
    never leaves the folder locked."""
    import fcntl

    path = out / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise MunitError(f"could not open {files.display_path(path)}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise MunitError(
            f"{out} is in use by another munit train process",
            hint="wait for it to finish, or train into another --out folder",
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def run_info(out: Path, names: tuple[str, str], resume: str | None) -> RunInfo:
    """The identity the run will have: the stored one when continuing, a new one otherwise."""
    stored = RunInfo.read(out) if resume else None
    return stored or RunInfo(names)


def clear(out: Path) -> None:
    """Remove munit's own entries of a run folder (the lock stays: it is held); others stay."""
    for entry in sorted(out.iterdir()):
        if entry.name != LOCK_FILE and _own(entry.name):
            files.remove(entry)


def prepare_run_dir(out: Path, cfg, info: RunInfo, resume: str | None, overwrite: bool) -> None:
    """Write the run's identity and recipe; call while holding the lock, after the recipe was
    checked against the checkpoints it resumes from. A fresh start (--overwrite, or a run with no
    progress yet) clears munit's entries first."""
    check_run_dir(out, resume, overwrite)
    if resume is None:
        clear(out)
    # what a trainer killed mid-write (kill -9, power loss) left behind
    files.remove_stale_temporaries(
        [out, out / checkpoint.CHECKPOINT_DIR, out / "samples", *(out / "preview").glob("*")]
    )
    files.write_atomic(out / RUN_FILE, info.to_bytes(), durable=True)
    # before any step: a run killed right after this resumes with it, even when no flags are given again
    files.write_atomic(out / CONFIG_FILE, cfg.to_toml().encode(), durable=True)


# ---------------------------------------------------------------------------------------------
# Resuming


@dataclass
class ResumePoint:
    """A checkpoint pair already read and verified, so resuming reads each file once."""

    state_path: Path
    state: tuple[dict[str, torch.Tensor], dict[str, str]]
    gen_path: Path
    gen_tensors: dict[str, torch.Tensor]
    gen_fingerprint: str
    gen_model: dict  # the network settings it was trained with (the `model` table of its config)


def _read_pair(state_path: Path) -> ResumePoint:
    gen_path = state_path.with_name(state_path.name.replace("state_", "gen_"))
    state = checkpoint.read_tensors(state_path, checkpoint.STATE_KIND)
    gen_tensors, gen_metadata = checkpoint.read_tensors(gen_path, checkpoint.GENERATOR_KIND)
    gen_cfg = checkpoint.parse_metadata(gen_path, gen_metadata)[0]
    fingerprint = gen_metadata.get("fingerprint", "")
    return ResumePoint(state_path, state, gen_path, gen_tensors, fingerprint, gen_cfg.to_dict()["model"])


def find_resume_point(out: Path, resume: str) -> ResumePoint | None:
    """`auto`: the newest checkpoint pair that reads back whole; a path: exactly that state file."""
    if resume != "auto":
        path = Path(resume)
        if not path.is_file():
            raise MunitError(f"--resume {resume}: no such checkpoint file")
        return _read_pair(path)
    for step in reversed(checkpoint.list_steps(out, "state")):
        try:
            return _read_pair(checkpoint.checkpoint_paths(out, step)[1])
        except MunitError as exc:
            err.print(f"[yellow]warning:[/] {escape(str(exc))}; trying the previous checkpoint", markup=True)
    return None


def check_architecture(point: ResumePoint, model: dict) -> None:
    """Resuming with other network settings than the checkpoint's is refused before any weight
    loads, naming the keys: some (model.shared_content_encoder) keep every weight's name and shape,
    so the weights alone would load and the mismatch would surface later, as a puzzle."""
    changed = [key for key in model if point.gen_model[key] != model[key]]  # both full `model` tables
    if changed:
        found = ", ".join(f"model.{k} {json.dumps(point.gen_model[k])} (now {json.dumps(model[k])})" for k in changed)
        raise MunitError(
            f"{files.display_path(point.gen_path)} was trained with other network settings: {found}",
            hint="resume with the run's own settings: drop --preset, --config and --set model.* "
            "(the run's config.toml is then used), or start a new run in another folder",
        )


def check_fingerprint(point: ResumePoint, extra: dict, fingerprint: str) -> None:
    """A state file continues only the run that wrote it: its model fingerprint (run id and
    architecture) must be this run folder's."""
    for path, found in ((point.state_path, extra.get("fingerprint")), (point.gen_path, point.gen_fingerprint)):
        if found != fingerprint:
            raise MunitError(
                f"{files.display_path(path)} is a checkpoint of another run, not of this run folder",
                hint="resume a run in its own folder (--resume auto), or copy that run folder and resume the copy",
            )


def truncate_metrics(path: Path, step: int) -> None:
    """After a resume, drop log lines from steps the resumed run will redo, and a last line that a
    crash (or a full disk) cut short."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line)
    files.write_atomic(path, ("\n".join(kept) + "\n" if kept else "").encode(), durable=True)


def save_previews(out: Path, preview_a: torch.Tensor, preview_b: torch.Tensor) -> None:
    """The fixed inputs of the sample grids, kept as PNGs so `munit interpolate` can reuse them."""
    for domain, batch in (("A", preview_a), ("B", preview_b)):
        folder = out / "preview" / domain
        folder.mkdir(parents=True, exist_ok=True)
        for i, x in enumerate(batch):
            images.save_png(x, folder / f"{i:02d}.png")
