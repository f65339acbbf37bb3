"""Fault injection: training killed with kill -9 at random moments (during checkpoint writes too)
and resumed to bit-exact weights; damaged newest checkpoints; saves that fail for lack of space;
SIGINT / SIGTERM during prepare; two trainers on one run folder; outputs never overwritten
without --overwrite.

Training processes are forked from a warm zygote (tests/zygote.py): real processes running the
real command line, started in milliseconds, so a schedule of dozens of kills stays cheap. The
moments are drawn from a seeded random generator; kills during a checkpoint write are aimed by
watching the checkpoints folder with inotify and freezing the trainer (SIGSTOP) the moment a
temporary file appears, then killing it: no hook in the library. `pytest -m slow` runs longer
schedules.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import random
import re
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import munit_cli
from munit_cli import checkpoint, files, prepare, rundir, synthetic
from munit_cli.cli import app

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses inotify, fork and flock")

REPO = Path(munit_cli.__file__).resolve().parent.parent
ITERS = 16
TRAIN = [
    "--preset", "tiny", "--set", "model.dim=8", "--set", "model.mlp_dim=16", "--set", "model.n_res=1",
    "--set", "model.dis_num_scales=2", "--size", "32", "--batch-size", "1", "--device", "cpu", "--iters", str(ITERS),
    "--set", "train.checkpoint_every=2", "--set", "train.log_every=2", "--set", "train.sample_every=6",
]  # fmt: skip
TEMP = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")  # files.temp_path
CKPT = re.compile(r"^(gen|state)_(\d{8})\.safetensors$")
KINDS = {"gen": checkpoint.GENERATOR_KIND, "state": checkpoint.STATE_KIND}


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MUNIT_DEBUG"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


@pytest.fixture(scope="module")
def zygote():
    from zygote import Zygote

    z = Zygote(child_env())
    yield z
    z.close()


@pytest.fixture(autouse=True)
def no_child_left(request):
    """A failed test must not leave a running child behind for the next one."""
    yield
    if "zygote" in request.fixturenames:
        request.getfixturevalue("zygote").stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory, zygote):
    """Synthetic data and an uninterrupted reference run of TRAIN."""
    root = tmp_path_factory.mktemp("faults")
    synthetic.make_shapes(root / "data", n_train=8, n_test=2, size=32)
    world = {"root": root, "data": root / "data"}
    world["reference"] = reference_run(zygote, world)
    return world


def reference_run(zygote, world, extra: tuple[str, ...] = ()) -> Path:
    """The uninterrupted run of TRAIN (+ `extra`), made once."""
    run = world["root"] / ("reference" + "".join(extra).replace("=", "-").replace("--set", "_"))
    if not run.is_dir():
        log = run.parent / f"{run.name}.log"
        assert zygote.run(train_args(run, *extra), world["root"], log) == 0, log.read_text()
    return run


def train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "data", "--out", str(out), "--resume", "auto", *TRAIN, *extra]


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TEMP.match(p.name)]


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]


def assert_same_run(run: Path, reference: Path) -> None:
    """The same checkpoints, bit for bit in every tensor, the same logs and the same last sample.
    A kill while old checkpoints were pruned may leave one file of an old pair that the end of the
    run does not prune (pruning counts pairs); a whole extra pair would be a missed pruning."""
    names = {p.name for p in (run / "checkpoints").iterdir()}
    wanted = {p.name for p in (reference / "checkpoints").iterdir()}
    assert wanted <= names
    steps = [CKPT.match(name).group(2) for name in names]
    assert all(steps.count(CKPT.match(name).group(2)) == 1 for name in names - wanted), names
    for kind, name in ((checkpoint.GENERATOR_KIND, "gen"), (checkpoint.STATE_KIND, "state")):
        path = f"checkpoints/{name}_{ITERS:08d}.safetensors"
        got, want = checkpoint.read_tensors(run / path, kind)[0], checkpoint.read_tensors(reference / path, kind)[0]
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), (path, key)
    assert metrics(run) == metrics(reference)
    last = f"samples/step_{ITERS:08d}.png"
    assert np.array_equal(np.asarray(Image.open(run / last)), np.asarray(Image.open(reference / last)))
    assert temporaries(run) == []


def check_checkpoints(run: Path, reliability) -> int:
    """Every file under a checkpoint name reads back whole; returns the newest complete step."""
    ok: dict[int, set[str]] = {}
    folder = run / "checkpoints"
    for path in folder.iterdir() if folder.is_dir() else ():
        found = CKPT.match(path.name)
        if not found:
            continue
        reliability.add("files_checked")
        try:
            checkpoint.read_tensors(path, KINDS[found.group(1)])
        except checkpoint.MunitError as exc:
            reliability.add("files_lost")
            pytest.fail(f"a checkpoint under its final name is damaged after a kill: {exc}")
        ok.setdefault(int(found.group(2)), set()).add(found.group(1))
    return max((step for step, kinds in ok.items() if kinds == {"gen", "state"}), default=0)


# ---------------------------------------------------------------------------------------------
# kill -9


class FolderWatch:
    """inotify on one folder: (event, name) for files created, renamed into it or deleted."""

    CREATE, MOVED_TO, DELETE = 0x100, 0x80, 0x200

    def __init__(self, folder: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        mask = self.CREATE | self.MOVED_TO | self.DELETE
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(folder), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {folder}")

    def events(self, timeout: float) -> list[tuple[int, str]]:
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        data, found, i = os.read(self.fd, 1 << 16), [], 0
        while i < len(data):
            _, mask, _, length = struct.unpack_from("iIII", data, i)
            found.append((mask, data[i + 16 : i + 16 + length].rstrip(b"\0").decode()))
            i += 16 + length
        return found

    def close(self) -> None:
        os.close(self.fd)


def aim(rng: random.Random, watchable: bool) -> tuple[str, float]:
    """Where the next kill lands: after a random time, or at the k-th temporary checkpoint file
    created, the k-th generator file renamed into place (its state file not written yet), or the
    k-th old checkpoint deleted (half a pair pruned)."""
    if not watchable:
        return "time", rng.uniform(0.0, 1.5)
    mode = rng.choices(["time", "write", "rename", "prune"], weights=[3, 4, 2, 1])[0]
    return mode, rng.uniform(0.0, 1.5) if mode == "time" else rng.randint(1, 4 if mode == "write" else 2)


def matches(mode: str, mask: int, name: str) -> bool:
    if mode == "write":
        return bool(mask & FolderWatch.CREATE) and TEMP.match(name) is not None
    if mode == "rename":
        return bool(mask & FolderWatch.MOVED_TO) and name.startswith("gen_")
    return bool(mask & FolderWatch.DELETE) and CKPT.match(name) is not None


def strike(zygote, pid: int, mode: str, at: float, folder: Path) -> tuple[int, bool]:
    """Run the child until the aimed moment, freeze it, note whether it was writing a checkpoint,
    kill it. Returns (status, whether a temporary checkpoint file of this child existed)."""
    watch = FolderWatch(folder) if mode != "time" else None
    try:
        if watch is None:
            status = zygote.wait(at)
        else:
            status, seen, deadline = None, 0, time.monotonic() + 120
            while status is None and seen < at and time.monotonic() < deadline:
                seen += sum(matches(mode, mask, name) for mask, name in watch.events(0.01))
                if seen < at:
                    status = zygote.wait(0)
        if status is not None:
            return status, False  # it finished first
        os.kill(pid, signal.SIGSTOP)
        names = [TEMP.match(p.name) for p in folder.iterdir()] if folder.is_dir() else []
        writing = any(found and found.group(1) == str(pid) for found in names)
        os.kill(pid, signal.SIGKILL)
        return zygote.wait(60), writing
    finally:
        if watch is not None:
            watch.close()


def kill_until_done(zygote, world, run: Path, rng: random.Random, kills_wanted: int, reliability, extra=()) -> int:
    """Start `munit train --resume auto` on `run` again and again, killing it at aimed moments
    until `kills_wanted` kills, then let it finish. Checks after every kill that each checkpoint
    file is whole and that the next start resumes from the newest complete one. Returns the kills."""
    kills = launches = 0
    expect_resume = None
    while True:
        launches += 1
        assert launches <= kills_wanted + 30, "no progress"
        log = run.parent / f"{run.name}-{launches:03d}.log"
        pid = zygote.start(train_args(run, *extra), world["root"], log)
        if kills < kills_wanted:
            folder = run / "checkpoints"
            mode, at = aim(rng, folder.is_dir())
            status, writing = strike(zygote, pid, mode, at, folder)
        else:
            status, writing = zygote.wait(300), False
        text = log.read_text()
        assert "Traceback" not in text and "internal error" not in text, text
        if expect_resume is not None and "training " in text:  # it got as far as loading a checkpoint
            resumed = re.search(r"resuming from step (\d+)", text)
            if (int(resumed.group(1)) if resumed else 0) != expect_resume:
                reliability.add("files_lost")
                pytest.fail(f"the newest complete checkpoint was step {expect_resume}, but: {text}")
        if status == 0:
            return kills
        assert status == -signal.SIGKILL, f"exit {status}: {text}"
        kills += 1
        reliability.add("kills")
        reliability.add("kills_in_write", int(writing))
        expect_resume = check_checkpoints(run, reliability)


def kill_schedule(zygote, world, reliability, seed: int, kills_wanted: int, extra: tuple[str, ...] = ()) -> None:
    """Runs with the same arguments as a reference run, killed `kills_wanted` times in all; each
    must end bit-exact to the reference."""
    reference = reference_run(zygote, world, extra)
    rng = random.Random(seed)
    kills, number = 0, 0
    while kills < kills_wanted:
        number += 1
        run = world["root"] / f"killed-{seed}-{number}"
        kills += kill_until_done(zygote, world, run, rng, kills_wanted - kills, reliability, extra)
        assert_same_run(run, reference)
        reliability.add("exact_runs")


def test_kill_9_at_random_moments_then_resume_is_exact(zygote, world, reliability):
    kill_schedule(zygote, world, reliability, seed=0, kills_wanted=20)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed, extra",
    [
        (1, ()),
        (2, ("--set", "train.keep_checkpoints=1")),  # every save prunes the previous pair right away
        (3, ("--set", "data.prefetch_threads=2")),  # batches prefetched on threads while the kills land
    ],
    ids=["default", "keep-1", "prefetch"],
)
def test_kill_9_long_schedules(zygote, world, reliability, seed, extra):
    kill_schedule(zygote, world, reliability, seed=seed, kills_wanted=40, extra=extra)


# ---------------------------------------------------------------------------------------------
# Two trainers, damaged checkpoints, failed saves


def snapshot(folder: Path) -> dict[str, bytes]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"]
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_second_trainer_is_refused_and_the_lock_survives_a_crash(zygote, world, reliability):
    root, run = world["root"], world["root"] / "locked"
    first = subprocess.Popen(
        [sys.executable, "-m", "munit_cli", *train_args(run)], cwd=root, env=child_env(), stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text()):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1]
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)  # holding the lock, mid-run
        before = snapshot(run)
        for extra in ([], ["--overwrite"]):  # to continue it, or to start over: both refused
            args = train_args(run) if not extra else ["train", "data", "--out", str(run), *TRAIN, *extra]
            log = root / "second.log"
            assert zygote.run(args, root, log) == 1
            text = log.read_text()
            assert error_lines(text) == [f"error: {run} is in use by another munit train process"], text
            assert "Traceback" not in text
            assert snapshot(run) == before  # the refused trainer changed nothing
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(60) == -signal.SIGKILL
        reliability.add("kills")
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    check_checkpoints(run, reliability)
    assert zygote.run(train_args(run), root, root / "third.log") == 0, (root / "third.log").read_text()
    assert_same_run(run, world["reference"])
    reliability.add("exact_runs")


def test_damaged_newest_checkpoints_are_named_and_skipped(zygote, world, reliability):
    root, run = world["root"], world["root"] / "damaged"
    assert zygote.run(train_args(run, "--iters", "6"), root, root / "damaged-1.log") == 0
    gen_4 = run / "checkpoints" / "gen_00000004.safetensors"
    state_6 = run / "checkpoints" / "state_00000006.safetensors"
    state_6.write_bytes(state_6.read_bytes()[: state_6.stat().st_size // 2])  # cut short
    data = bytearray(gen_4.read_bytes())
    data[-1000] ^= 0x10  # one bit of one weight: the layout stays valid, only the checksum can tell
    gen_4.write_bytes(bytes(data))

    log = root / "damaged-2.log"
    assert zygote.run(train_args(run), root, log) == 0
    text = log.read_text()
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, text
    assert str(state_6) in warnings[0] and "damaged" in warnings[0]
    assert str(gen_4) in warnings[1] and "no longer match the checksum" in warnings[1]
    assert "resuming from step 2" in text
    reliability.add("damaged_checkpoints", 2)
    assert_same_run(run, world["reference"])
    reliability.add("exact_runs")


def test_file_too_large_during_a_save_keeps_the_previous_checkpoint(zygote, world, reliability):
    """A real partial write: the kernel refuses bytes past RLIMIT_FSIZE in the middle of the state
    file (EFBIG, as a full disk refuses them with ENOSPC)."""
    root, run = world["root"], world["root"] / "too-large"
    assert zygote.run(train_args(run, "--iters", "2"), root, root / "large-1.log") == 0
    state_2 = run / "checkpoints" / "state_00000002.safetensors"
    log = root / "large-2.log"
    assert zygote.run(train_args(run), root, log, max_file_bytes=state_2.stat().st_size // 2) == 1
    text = log.read_text()
    state_4 = run / "checkpoints" / "state_00000004.safetensors"
    assert error_lines(text) == [f"error: could not write {state_4}: File too large"], text
    assert "Traceback" not in text and not state_4.exists()
    assert check_checkpoints(run, reliability) == 2 and temporaries(run) == []
    reliability.add("failed_saves")
    assert zygote.run(train_args(run), root, root / "large-3.log") == 0
    assert_same_run(run, world["reference"])
    reliability.add("exact_runs")


def test_no_space_left_during_a_save(zygote, world, reliability, monkeypatch, one_thread):
    root, run = world["root"], world["root"] / "disk-full"
    state_4 = run / "checkpoints" / "state_00000004.safetensors"

    class FullDisk:
        """The file of state_4's temporary name: half of the data fits, then the disk is full."""

        def __init__(self, file):
            self.file, self.room = file, 1 << 20

        def write(self, data):
            if len(data) > self.room:
                self.file.write(memoryview(data)[: self.room])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= len(data)
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    real_open = open

    def opener(path, *args, **kwargs):
        file = real_open(path, *args, **kwargs)
        return FullDisk(file) if Path(path).name.startswith(f".{state_4.name}.") else file

    monkeypatch.setattr(files, "open", opener, raising=False)  # the one atomic writer
    args = train_args(run)
    args[1] = str(world["data"])
    result = CliRunner().invoke(app, args)
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    assert error_lines(result.output) == [f"error: could not write {state_4}: No space left on device"], result.output
    assert "Traceback" not in result.output and not state_4.exists()
    assert check_checkpoints(run, reliability) == 2 and temporaries(run) == []
    with rundir.run_lock(run):  # the run stopped and let go of its folder
        pass
    reliability.add("failed_saves")
    assert zygote.run(train_args(run), root, root / "full-2.log") == 0
    assert_same_run(run, world["reference"])
    reliability.add("exact_runs")


# ---------------------------------------------------------------------------------------------
# Signals during prepare


@pytest.fixture(scope="module")
def photo_folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sources")
    synthetic.make_shapes(root, n_train=300, n_test=0, size=64)
    return root / "trainA", root / "trainB"


def default_sigint() -> None:
    """A job a terminal starts in the foreground has Ctrl-C's default action; one a script starts in
    the background (`pytest &`) inherits SIGINT ignored, and a program rightly keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def prepare_under_way(a: Path, b: Path, out: Path, **popen) -> subprocess.Popen:
    """`munit prepare` with two decoding workers in a session of its own, returned once it has
    staged 10 images (so it is in the middle of its work)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "munit_cli", "prepare", str(a), str(b), "--out", str(out), "--size", "32",
         "--workers", "2"],
        env=child_env(), start_new_session=True, **popen,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list((out / ".pending").rglob("*.png"))) < 10:
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"prepare did not get under way: {proc.communicate()}")
        time.sleep(0.01)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_prepare_keeps_only_whole_files(photo_folders, tmp_path, reliability, signum):
    a, b = photo_folders
    out = tmp_path / "prepared"
    proc = prepare_under_way(a, b, out, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # Ctrl-C in a terminal reaches the whole process group
        else:
            proc.send_signal(signum)  # `kill PID`: only the main process
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reliability.add("stop_signals")
    assert proc.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    stopped = f"error: {name}: prepare stopped; finished images are kept, run the same command again to continue"
    assert error_lines(err) == [stopped], err
    assert "Traceback" not in err
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []
    manifest = json.loads((out / prepare.MANIFEST).read_text())
    assert manifest["complete"] is False and 0 < len(manifest["files"]) < 600
    for path in [p for p in out.rglob("*.png")]:
        reliability.add("files_checked")
        Image.open(path).load()  # every file there decodes whole

    summary = prepare.run(a, b, out, size=32, workers=1)
    assert summary.reused > 0 and summary.reused + summary.decoded == 600
    assert json.loads((out / prepare.MANIFEST).read_text())["complete"] is True


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc: psutil is not a dependency)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # it ended meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    """Running: a zombie (dead, not yet reaped by whoever adopted it) does not count."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_prepare_takes_its_workers_with_it(photo_folders, tmp_path, reliability):
    a, b = photo_folders
    proc = prepare_under_way(a, b, tmp_path / "prepared", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        workers = children(proc.pid)
        assert len(workers) >= 2
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if alive(pid)]
        reliability.add("prepare_kills")
        # nothing holds the caller's pipes open any more: reading them ends
        assert proc.stdout.read() == b"" and proc.stderr.read() is not None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# Outputs are replaced only with --overwrite


def test_no_command_replaces_an_existing_output_without_overwrite(world, tmp_path, one_thread):
    model, image = str(world["reference"]), str(sorted((world["data"] / "testA").iterdir())[0])
    stem = Path(image).stem
    cases = {
        "translate to a file": (["translate", image, "-m", model, "--out", "{o}/t.png"], ["t.png"]),
        "translate to a folder": (["translate", image, "-m", model, "--out", "{o}/dir"], [f"dir/{stem}_seed0.png"]),
        "translate --grid": (["translate", image, "-m", model, "--grid", "--out", "{o}/g"], [f"g/{stem}_grid.png"]),
        "translate --save-styles": (
            ["translate", image, "-m", model, "--out", "{o}/d2", "--save-styles", "{o}/styles"],
            ["styles/seed0.safetensors"],
        ),
        "style sample": (["style", "sample", "-m", model, "-o", "{o}/s.safetensors"], ["s.safetensors"]),
        "style encode": (["style", "encode", image, "-m", model, "-o", "{o}/e.safetensors"], ["e.safetensors"]),
        "interpolate frames": (
            ["interpolate", image, "-m", model, "-k", "2", "--out", "{o}/m1"], [f"m1/frames/{stem}_001.png"]
        ),
        "interpolate strip": (["interpolate", image, "-m", model, "-k", "2", "--out", "{o}/m2"], ["m2/strip.png"]),
        "interpolate gif": (
            ["interpolate", image, "-m", model, "-k", "2", "--gif", "--out", "{o}/m3"], ["m3/interpolation.gif"]
        ),
        "export": (["export", model, "--format", "bundle", "--out", "{o}/x"], ["x/bundle.safetensors"]),
    }
    runner = CliRunner()
    for name, (args, existing) in cases.items():
        o = tmp_path / name.replace(" ", "_")
        args = [a.format(o=o) for a in args]
        for rel in existing:
            (o / rel).parent.mkdir(parents=True, exist_ok=True)
            (o / rel).write_bytes(b"precious")
        before = snapshot(o)
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (name, result.output)
        assert "already exist" in result.output and "--overwrite" in result.output, (name, result.output)
        assert snapshot(o) == before, name  # refused before writing anything
        result = runner.invoke(app, [*args, "--overwrite"])
        assert result.exit_code == 0, (name, result.output)
        assert all((o / rel).read_bytes() != b"precious" for rel in existing), name

    # the folders of train, demo and prepare: a non-empty folder is refused without --overwrite
    for args in (
        ["train", str(world["data"]), *TRAIN, "--out", "{o}"],
        ["demo", "--out", "{o}"],
        ["prepare", str(world["data"] / "trainA"), str(world["data"] / "trainB"), "--out", "{o}"],
    ):
        o = tmp_path / args[0]
        o.mkdir()
        (o / "notes.txt").write_bytes(b"precious")
        result = runner.invoke(app, [a.format(o=o) for a in args])
        assert result.exit_code in (1, 2) and "--overwrite" in result.output, result.output
        assert snapshot(o) == {"notes.txt": b"precious"}
