"""Training runs end to end on tiny configs: the run folder, exact resume, bad data, refusals,
NaN detection, and Ctrl-C / SIGTERM handling in a real subprocess."""

from __future__ import annotations

import json
import math
import os
import re
import signal
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
from munit_cli import checkpoint, config, losses, rundir, runtime, train, updates
from munit_cli.cli import app
from munit_cli.errors import MunitError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(munit_cli.__file__).resolve().parent.parent


def ckpt_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def all_tensors(path: Path, kind: str) -> dict[str, torch.Tensor]:
    return checkpoint.read_tensors(path, kind)[0]


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


# ---------------------------------------------------------------------------------------------
# A short run and its files


def test_short_run_writes_the_expected_files(tiny_cfg, image_folders, tmp_path):
    a, b = image_folders
    out = tmp_path / "run"
    cfg = tiny_cfg(
        train={"iters": 6, "log_every": 2, "sample_every": 3, "checkpoint_every": 2, "keep_checkpoints": 2, "num_preview": 3}
    )
    summary = train.run(cfg, [a, b], out)
    assert summary.step == 6
    assert summary.names == ["outlines", "filled"]  # the folder names
    assert summary.generator == out / "checkpoints" / "gen_00000006.safetensors"
    assert summary.to_json()["generator"] == str(summary.generator) and "rank" not in summary.to_json()

    # the resolved config, parseable and complete
    stored = tomllib.loads((out / "config.toml").read_text())
    assert stored == cfg.to_dict()
    assert config.resolve(config_file=out / "config.toml").to_dict() == cfg.to_dict()

    # metrics at every log step, finite
    records = read_metrics(out)
    assert [r["step"] for r in records] == [2, 4, 6]
    for r in records:
        for key in ("gen_total", "dis_total", "adv_a", "adv_b", "recon_x_a", "recon_x_b", "recon_s_a", "recon_c_b"):
            assert math.isfinite(r[key]), (r["step"], key)
        assert r["lr"] == pytest.approx(1e-4)
        assert r["dis_total"] > 0 and r["gen_total"] > 0

    # preview inputs: num_preview per domain, at the crop size
    for domain in ("A", "B"):
        files = sorted((out / "preview" / domain).iterdir())
        assert [f.name for f in files] == ["00.png", "01.png", "02.png"]
        assert all(Image.open(f).size == (32, 32) for f in files)

    # sample grids: 2 x num_preview rows (A->B then B->A), 4 columns, 32 px cells with 2 px padding
    samples = sorted(p.name for p in (out / "samples").iterdir())
    assert samples == ["step_00000003.png", "step_00000006.png"]
    grid = pixels(out / "samples" / "step_00000006.png")
    assert grid.shape == (6 * 34 + 2, 4 * 34 + 2, 3)

    def cell(row, col):
        return grid[2 + 34 * row : 34 * (row + 1), 2 + 34 * col : 34 * (col + 1)]

    # the first column holds the fixed inputs: A's previews, then B's
    for i in range(3):
        assert np.abs(cell(i, 0) - pixels(out / "preview" / "A" / f"{i:02d}.png")).max() <= 1
        assert np.abs(cell(3 + i, 0) - pixels(out / "preview" / "B" / f"{i:02d}.png")).max() <= 1
    # the other columns are network outputs, not copies of the input
    assert np.abs(cell(0, 2) - cell(0, 0)).mean() > 1

    # checkpoints every 2 steps, the newest 2 kept
    assert ckpt_names(out) == [
        "gen_00000004.safetensors",
        "gen_00000006.safetensors",
        "state_00000004.safetensors",
        "state_00000006.safetensors",
    ]
    loaded = checkpoint.load_generator(out / "checkpoints" / "gen_00000006.safetensors")
    assert loaded.names == ("outlines", "filled")
    assert loaded.step == 6
    assert loaded.cfg.to_dict() == cfg.to_dict()
    # nothing half-written left behind
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_domain_names_flag(tiny_set_args, image_folders, tmp_path):
    a, b = image_folders
    result = CliRunner().invoke(
        app, ["train", str(a), str(b), "--out", str(tmp_path / "run"), "--names", "edges,shoes", "--json",
              *tiny_set_args(train=dict(iters=2))],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["names"] == ["edges", "shoes"]
    assert checkpoint.load_generator(summary["generator"]).names == ("edges", "shoes")


# ---------------------------------------------------------------------------------------------
# Exact resume


def test_exact_resume_through_the_cli(tiny_set_args, image_folders, tmp_path):
    a, b = image_folders
    runner = CliRunner()
    # lr_step 4: the learning rate halves at iteration 3 (0-based), after the resume point
    common = [str(a), str(b), *tiny_set_args(train=dict(checkpoint_every=3, sample_every=3), optim=dict(lr_step=4))]
    straight, split = tmp_path / "straight", tmp_path / "split"

    r = runner.invoke(app, ["train", *common, "--out", str(straight), "--iters", "6"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", *common, "--out", str(split), "--iters", "3"])
    assert r.exit_code == 0, r.output
    assert checkpoint.list_steps(split) == [3]
    # the resumed run reads its recipe from the run folder: only --iters is given again
    r = runner.invoke(app, ["train", str(a), str(b), "--out", str(split), "--resume", "auto", "--iters", "6"])
    assert r.exit_code == 0, r.output
    assert "resuming from step 3" in r.output

    for kind, name in ((checkpoint.GENERATOR_KIND, "gen"), (checkpoint.STATE_KIND, "state")):
        want = all_tensors(straight / "checkpoints" / f"{name}_00000006.safetensors", kind)
        got = all_tensors(split / "checkpoints" / f"{name}_00000006.safetensors", kind)
        assert any(k.startswith("ema.") for k in want) or kind == checkpoint.STATE_KIND
        assert_same_tensors(want, got)
    # the logs agree too, one line per step
    drop_time = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert drop_time(read_metrics(split)) == drop_time(read_metrics(straight))
    assert [r["step"] for r in read_metrics(split)] == [1, 2, 3, 4, 5, 6]
    assert [r["lr"] for r in read_metrics(split)] == [1e-4] * 3 + [5e-5] * 3
    assert np.array_equal(pixels(split / "samples" / "step_00000006.png"), pixels(straight / "samples" / "step_00000006.png"))


# one content encoder for both domains keeps every weight's name and shape: only the stored
# settings tell that run apart
@pytest.mark.parametrize("change, said", [
    ({"dim": 16}, "model.dim 8 (now 16)"),
    ({"shared_content_encoder": True}, "model.shared_content_encoder false (now true)"),
])  # fmt: skip
def test_resume_with_another_architecture_is_refused(tiny_cfg, image_folders, tmp_path, change, said):
    a, b = image_folders
    out = tmp_path / "run"
    train.run(tiny_cfg(train={"iters": 3}), [a, b], out)
    with pytest.raises(MunitError, match="other network settings") as info:
        train.run(tiny_cfg(model=change, train={"iters": 6}), [a, b], out, resume="auto")
    assert said in str(info.value)
    assert checkpoint.list_steps(out) == [3]


# ---------------------------------------------------------------------------------------------
# Bad data


def test_unreadable_image_is_skipped_with_one_warning(tiny_cfg, image_folders, tmp_path, capsys):
    a, b = image_folders
    (a / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = (a / "img_00.png").read_bytes()
    (a / "sub").mkdir()
    (a / "sub" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated, in a subfolder
    out = tmp_path / "run"
    summary = train.run(tiny_cfg(train={"iters": 4, "batch_size": 4, "num_preview": 4}), [a, b], out)
    assert summary.step == 4
    err = capsys.readouterr().err
    assert err.count("broken.png") == 1
    assert err.count("cut.png") == 1
    assert "warning" in err
    assert len(list((out / "preview" / "A").iterdir())) == 4
    assert all(math.isfinite(r["gen_total"]) for r in read_metrics(out))


def test_folder_of_only_unreadable_images_is_a_clear_error(tiny_cfg, image_folders, tmp_path):
    a, b = image_folders
    bad = tmp_path / "bad_domain"
    bad.mkdir()
    for i in range(3):
        (bad / f"x{i}.png").write_bytes(b"garbage")
    out = tmp_path / "run"
    with pytest.raises(MunitError) as info:
        train.run(tiny_cfg(), [bad, b], out)
    assert "bad_domain" in str(info.value)
    assert not out.exists()  # found before any work starts, like an empty folder


@pytest.mark.parametrize("which", ["empty", "missing", "no-images"])
def test_empty_or_missing_folder_fails_before_any_work(tiny_cfg, tiny_set_args, image_folders, tmp_path, which):
    a, b = image_folders
    target = tmp_path / "domain_b"
    if which != "missing":
        target.mkdir()
    if which == "no-images":
        (target / "notes.txt").write_text("not an image")
    out = tmp_path / "run"
    with pytest.raises(MunitError) as info:
        train.run(tiny_cfg(), [a, target], out)
    assert str(target) in str(info.value)
    assert not out.exists()

    result = CliRunner().invoke(app, ["train", str(a), str(target), "--out", str(out), *tiny_set_args()])
    assert result.exit_code == 1
    assert "error:" in result.output and str(target) in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_missing_vgg_weights_fail_before_any_work(tiny_cfg, image_folders, tmp_path):
    a, b = image_folders
    out = tmp_path / "run"
    cfg = tiny_cfg(loss={"vgg_w": 1.0, "vgg_weights": str(tmp_path / "vgg16.safetensors")})
    with pytest.raises(MunitError, match="VGG"):
        train.run(cfg, [a, b], out)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Refusals


def test_non_empty_out_is_refused_without_resume_or_overwrite(tiny_cfg, tiny_set_args, image_folders, tmp_path):
    a, b = image_folders
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("do not delete")
    with pytest.raises(MunitError, match="not empty") as info:
        train.run(tiny_cfg(train={"iters": 2}), [a, b], out)
    assert "not a munit run folder" in str(info.value) and "precious.txt" in str(info.value)
    assert "--overwrite only clears run folders" in info.value.hint
    assert [p.name for p in out.iterdir()] == ["precious.txt"]

    r = CliRunner().invoke(app, ["train", str(a), str(b), "--out", str(out), *tiny_set_args(train=dict(iters=2))])
    assert r.exit_code == 1 and "not empty" in r.output
    assert [p.name for p in out.iterdir()] == ["precious.txt"]

    # --overwrite clears only run folders munit made: this one is refused, its file kept
    with pytest.raises(MunitError, match="not a munit run folder"):
        train.run(tiny_cfg(train={"iters": 2}), [a, b], out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_a_run_killed_while_writing_its_first_file_can_start_again(tiny_cfg, image_folders, tmp_path):
    """kill -9 during the atomic write of run.json leaves only its hidden temporary file: the folder
    is munit's, the retry starts and clears it. A look-alike name next to a user's file is not
    enough."""
    a, b = image_folders
    out = tmp_path / "run"
    out.mkdir()
    leftover = out / ".run.json.999999.0badcafe.tmp"
    leftover.write_bytes(b'{"run_id": "')
    assert train.run(tiny_cfg(train={"iters": 2}), [a, b], out).step == 2
    assert not leftover.exists() and (out / rundir.RUN_FILE).is_file()

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / ".run.json.999999.0badcafe.tmp").write_bytes(b"{")
    (mixed / "notes.txt").write_text("mine")
    with pytest.raises(MunitError, match="not a munit run folder"):
        train.run(tiny_cfg(train={"iters": 2}), [a, b], mixed, overwrite=True)
    assert sorted(p.name for p in mixed.iterdir()) == [".run.json.999999.0badcafe.tmp", "notes.txt"]


@pytest.fixture
def finished_run(tiny_cfg, image_folders, tmp_path):
    a, b = image_folders
    out = tmp_path / "run"
    train.run(tiny_cfg(train={"iters": 3}), [a, b], out)
    return a, b, out


def _folder_snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_second_trainer_on_a_locked_folder_is_refused(tiny_cfg, finished_run):
    a, b, out = finished_run
    before = checkpoint.list_steps(out)
    with rundir.run_lock(out):
        with pytest.raises(MunitError, match="in use"):
            train.run(tiny_cfg(train={"iters": 6}), [a, b], out, resume="auto")
    assert checkpoint.list_steps(out) == before
    # once the lock is released, resuming works
    assert train.run(tiny_cfg(train={"iters": 4}), [a, b], out, resume="auto").step == 4


@pytest.mark.parametrize("mode", ["resume", "overwrite"])
def test_refused_second_trainer_leaves_the_locked_folder_untouched(tiny_cfg, finished_run, mode):
    a, b, out = finished_run
    before = _folder_snapshot(out)
    kwargs = {"resume": "auto"} if mode == "resume" else {"overwrite": True}
    with rundir.run_lock(out):
        with pytest.raises(MunitError, match="in use"):
            train.run(tiny_cfg(train={"iters": 6, "seed": 5}), [a, b], out, **kwargs)
    assert _folder_snapshot(out) == before


# ---------------------------------------------------------------------------------------------
# NaN / Inf


@pytest.mark.parametrize("target", ["total_generator_loss", "dis_loss"])
def test_nan_loss_stops_without_saving_that_step(tiny_cfg, image_folders, tmp_path, monkeypatch, target):
    a, b = image_folders
    out = tmp_path / "run"
    real = getattr(losses, target)
    calls = {"n": 0}
    per_step = 1 if target == "total_generator_loss" else 2  # dis_loss: once per domain

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return value * float("nan") if calls["n"] > 3 * per_step else value  # from step 4 on

    monkeypatch.setattr(losses, target, poisoned)
    cfg = tiny_cfg(train={"iters": 6, "log_every": 1, "checkpoint_every": 2})
    with pytest.raises(MunitError, match="NaN") as info:
        train.run(cfg, [a, b], out)
    assert "step 4" in str(info.value)
    assert "step 2" in (info.value.hint or "")  # where the last good checkpoint is
    assert checkpoint.list_steps(out, "gen") == [2]
    assert checkpoint.list_steps(out, "state") == [2]
    records = read_metrics(out)
    assert [r["step"] for r in records][:3] == [1, 2, 3] and records[-1]["step"] <= 4  # stopped at 4
    assert all(math.isfinite(r["gen_total"]) and math.isfinite(r["dis_total"]) for r in records[:3])
    good = checkpoint.load_generator(out / "checkpoints" / "gen_00000002.safetensors", use_ema=False)
    assert all(torch.isfinite(p).all() for p in good.model.parameters())


def test_nan_weights_between_log_steps_are_caught_at_the_checkpoint(tiny_cfg, image_folders, tmp_path, monkeypatch):
    a, b = image_folders
    out = tmp_path / "run"
    real = losses.total_generator_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return value * float("nan") if calls["n"] == 3 else value  # only step 3

    monkeypatch.setattr(losses, "total_generator_loss", poisoned)
    cfg = tiny_cfg(train={"iters": 6, "log_every": 100, "checkpoint_every": 2})
    with pytest.raises(MunitError, match="NaN") as info:
        train.run(cfg, [a, b], out)
    assert "step 4" in str(info.value)
    assert checkpoint.list_steps(out, "gen") == [2]


# ---------------------------------------------------------------------------------------------
# Signals, in a real process


def _start_training(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())  # same arithmetic as this process
    env.pop("MUNIT_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "munit_cli", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(REPO),
    )


def _wait_for_metrics(proc: subprocess.Popen, run: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    metrics = run / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_text().strip():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training exited early ({proc.returncode}): {err[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no metrics line within the timeout")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_exits(tiny_cfg, tiny_set_args, image_folders, tmp_path, capsys, signum, code):
    a, b = image_folders
    out = tmp_path / "run"
    long = {"iters": 100_000, "log_every": 1, "checkpoint_every": 100_000, "sample_every": 100_000}
    proc = _start_training([str(a), str(b), "--out", str(out), *tiny_set_args(train=long)])
    try:
        _wait_for_metrics(proc, out)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    found = re.search(r"stopped at step (\d+)", err)
    assert found, err[-2000:]
    stop = int(found.group(1))
    assert stop >= 1
    assert signal.Signals(signum).name in err and "--resume auto" in err
    assert checkpoint.list_steps(out, "gen") == [stop]
    assert checkpoint.list_steps(out, "state") == [stop]
    assert checkpoint.load_generator(out / "checkpoints" / f"gen_{stop:08d}.safetensors").step == stop

    if signum != signal.SIGINT:
        return  # the same save path as SIGINT, whose resume is checked below
    # it resumes from there ...
    capsys.readouterr()
    resumed = train.run(tiny_cfg(train={**long, "iters": stop + 2}), [a, b], out, resume="auto")
    assert resumed.step == stop + 2
    assert f"resuming from step {stop}" in capsys.readouterr().err
    # ... exactly: the same weights as a run that was never interrupted
    straight = tmp_path / "straight"
    train.run(tiny_cfg(train={**long, "iters": stop + 2}), [a, b], straight)
    for kind, name in ((checkpoint.GENERATOR_KIND, "gen"), (checkpoint.STATE_KIND, "state")):
        assert_same_tensors(
            all_tensors(straight / "checkpoints" / f"{name}_{stop + 2:08d}.safetensors", kind),
            all_tensors(out / "checkpoints" / f"{name}_{stop + 2:08d}.safetensors", kind),
        )


# ---------------------------------------------------------------------------------------------
# What --overwrite may remove, and run folders that cannot be made


def _run_cli(*args) -> object:
    return CliRunner().invoke(app, ["train", *map(str, args)])


def _one_error(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_overwrite_never_clears_the_training_data(tiny_set_args, image_folders, reliability):
    a, b = image_folders
    before = {p: p.read_bytes() for p in sorted(a.parent.rglob("*")) if p.is_file()}
    for out in (a, a.parent):  # the data folder itself, and a folder holding it
        result = _run_cli(a, b, "--out", out, "--overwrite", *tiny_set_args(train=dict(iters=1)))
        assert result.exit_code == 1
        assert "overlaps the training data" in _one_error(result)
        reliability.add("refused_overwrites")
    assert {p: p.read_bytes() for p in sorted(a.parent.rglob("*")) if p.is_file()} == before


def test_overwrite_refuses_a_folder_munit_did_not_make(tiny_set_args, image_folders, tmp_path, reliability):
    a, b = image_folders
    dataset = tmp_path / "photos"
    dataset.mkdir()
    (dataset / "holiday.jpg").write_bytes(b"precious")
    (dataset / "config.toml").write_text("# mine")  # one marker name is not enough
    result = _run_cli(a, b, "--out", dataset, "--overwrite", *tiny_set_args(train=dict(iters=1)))
    assert result.exit_code == 1
    assert "is not a munit run folder" in _one_error(result) and "holiday.jpg" in result.output
    assert "--overwrite only clears run folders that munit made" in result.output
    assert sorted(p.name for p in dataset.iterdir()) == ["config.toml", "holiday.jpg"]
    assert (dataset / "holiday.jpg").read_bytes() == b"precious"
    reliability.add("refused_overwrites")


def test_overwrite_clears_only_munits_entries_of_a_run_folder(tiny_cfg, finished_run):
    a, b, out = finished_run
    (out / "notes.txt").write_text("mine")
    (out / "extra").mkdir()
    old_id = json.loads((out / "run.json").read_text())["run_id"]
    summary = train.run(tiny_cfg(train={"iters": 2}), [a, b], out, overwrite=True)
    assert summary.step == 2
    assert (out / "notes.txt").read_text() == "mine" and (out / "extra").is_dir()
    assert checkpoint.list_steps(out) == [2]  # step 3 of the old run is gone
    assert [r["step"] for r in read_metrics(out)] == [1, 2]
    assert json.loads((out / "run.json").read_text())["run_id"] != old_id  # a new run


@pytest.mark.parametrize("where", ["a file", "under a file", "unwritable"])
def test_an_out_that_cannot_be_a_folder_is_one_line(tiny_set_args, image_folders, tmp_path, where):
    a, b = image_folders
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = {"a file": afile, "under a file": afile / "run", "unwritable": Path("/sys/munit-run-test")}[where]
    result = _run_cli(a, b, "--out", out, *tiny_set_args(train=dict(iters=1)))
    assert result.exit_code == 1, result.output
    line = _one_error(result)
    assert str(out) in line or str(afile) in line, line
    assert "internal error" not in result.output
    assert afile.read_text() == "x"


def test_a_run_that_failed_before_its_first_step_does_not_block_the_retry(
    tiny_cfg, image_folders, tmp_path, monkeypatch
):
    a, b = image_folders
    out = tmp_path / "run"

    def failing_step(self, x_a, x_b, step, budget_used):
        raise MunitError("out of memory (simulated)")

    with monkeypatch.context() as m:
        m.setattr(updates.Trainer, "step", failing_step)
        with pytest.raises(MunitError, match="simulated"):
            train.run(tiny_cfg(train={"iters": 2}), [a, b], out)
    assert (out / "run.json").is_file() and not checkpoint.list_steps(out)  # a half-made folder
    summary = train.run(tiny_cfg(train={"iters": 2}), [a, b], out)  # the corrected retry: no --overwrite
    assert summary.step == 2 and checkpoint.list_steps(out) == [2]


def test_settings_that_cannot_work_fail_before_the_folder_is_touched(tiny_set_args, image_folders, tmp_path):
    from munit_cli.shards import write_packed

    gray = tmp_path / "gray"
    for domain in ("trainA", "trainB"):
        images = [(f"{i}.png", torch.full((1, 32, 32), 40 * i, dtype=torch.uint8)) for i in range(3)]
        write_packed(iter(images), gray / "packed" / domain)
    out = tmp_path / "run"
    result = _run_cli(gray, "--out", out, *tiny_set_args(train=dict(iters=1)))
    assert result.exit_code == 2
    assert "grayscale" in _one_error(result) and "--set model.input_dim=1" in result.output
    assert not out.exists()
    result = _run_cli(gray, "--out", out, *tiny_set_args(train=dict(iters=1), model=dict(input_dim=1)))
    assert result.exit_code == 0, result.output

    same = image_folders[0]
    result = _run_cli(same, same, "--out", tmp_path / "run2", *tiny_set_args(train=dict(iters=1)))
    assert result.exit_code == 2 and "same folder" in _one_error(result)
    assert not (tmp_path / "run2").exists()


# ---------------------------------------------------------------------------------------------
# Resume checks before anything is written


def test_a_refused_resume_leaves_the_recipe_as_it_was(tiny_set_args, image_folders, tmp_path):
    a, b = image_folders
    out = tmp_path / "run"
    assert _run_cli(a, b, "--out", out, *tiny_set_args(train=dict(iters=2))).exit_code == 0
    recipe = (out / "config.toml").read_text()
    result = _run_cli(a, b, "--out", out, "--resume", "auto", "--iters", "4", "--set", "model.dim=16")
    assert result.exit_code == 1 and "other network settings: model.dim" in _one_error(result)
    assert (out / "config.toml").read_text() == recipe  # checked first, nothing written
    result = _run_cli(a, b, "--out", out, "--resume", "auto", "--iters", "4")  # the plain resume still works
    assert result.exit_code == 0, result.output
    assert "resuming from step 2" in result.output and checkpoint.list_steps(out)[-1] == 4


def test_resume_from_another_runs_state_file_is_refused(tiny_cfg, image_folders, tmp_path, finished_run):
    a, b, other = finished_run
    other_state = checkpoint.checkpoint_paths(other, 3)[1]
    out = tmp_path / "mine"
    train.run(tiny_cfg(train={"iters": 2}), [a, b], out)
    before = _folder_snapshot(out)
    for target in (out, tmp_path / "fresh"):
        with pytest.raises(MunitError, match="checkpoint of another run") as info:
            train.run(tiny_cfg(train={"iters": 6}), [a, b], target, resume=str(other_state))
        assert str(other_state) in str(info.value)
    assert _folder_snapshot(out) == before
    assert [p.name for p in (tmp_path / "fresh").iterdir()] == [".lock"]  # nothing but the lock
    # its own state file resumes
    own = checkpoint.checkpoint_paths(out, 2)[1]
    assert train.run(tiny_cfg(train={"iters": 3}), [a, b], out, resume=str(own)).step == 3


def test_minutes_budget_saves_says_so_and_resume_continues(image_folders, tiny_cfg, tmp_path):
    a, b = image_folders
    out = tmp_path / "run"
    # a budget already spent when the first step ends: stop there, save, report it, no error
    first = train.run(tiny_cfg(train={"iters": 6}), [a, b], out, minutes=1e-6)
    assert first.out_of_time and first.step == 1
    assert checkpoint.list_steps(out, "state") == [1] and first.generator.is_file()
    rest = train.run(tiny_cfg(train={"iters": 6}), [a, b], out, resume="auto", minutes=60)
    assert not rest.out_of_time and rest.step == 6
    for bad in (0, -1, float("nan")):
        with pytest.raises(UsageError):
            train.run(tiny_cfg(), [a, b], tmp_path / "never", minutes=bad)
    assert not (tmp_path / "never").exists()


def test_minutes_flag_exits_0_and_tells_how_to_continue(image_folders, tiny_set_args, tmp_path):
    a, b = image_folders
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(a), str(b), "--out", str(out), "--minutes", "0.000001", *tiny_set_args()])
    assert result.exit_code == 0, result.output
    assert "time budget reached" in result.output and "--resume auto" in result.output
    assert checkpoint.list_steps(out, "gen") == [1]


def test_a_run_resumed_at_its_end_prunes_what_a_killed_pruning_left(image_folders, tiny_cfg, tmp_path):
    a, b = image_folders
    out = tmp_path / "run"
    train.run(tiny_cfg(train={"iters": 6, "keep_checkpoints": 1}), [a, b], out)
    # as if killed after saving step 6 and before pruning step 3: an old pair is back
    for src, dst in zip(checkpoint.checkpoint_paths(out, 6), checkpoint.checkpoint_paths(out, 3)):
        dst.write_bytes(src.read_bytes())
    assert train.run(tiny_cfg(train={"iters": 6, "keep_checkpoints": 1}), [a, b], out, resume="auto").step == 6
    assert ckpt_names(out) == ["gen_00000006.safetensors", "state_00000006.safetensors"]


def test_thread_tuner_drops_to_one_thread_when_two_collapse_and_returns_when_they_recover():
    set_to = []
    tuner = runtime.ThreadTuner(2, window=4, every=10, first=2, set_threads=set_to.append)
    speed = {2: 0.1, 1: 0.25}  # two threads fast: the trial of one thread is slower, nothing changes
    messages = [tuner.observe(speed[tuner_threads(set_to, 2)]) for _ in range(40)]
    assert tuner.current == 2 and not any(messages) and set_to[:2] == [1, 2]
    speed = {2: 0.6, 1: 0.25}  # another program took a core: two threads collapse
    messages = [tuner.observe(speed[tuner_threads(set_to, 2)]) for _ in range(40)]
    assert tuner.current == 1 and set_to[-1] == 1
    assert [m for m in messages if m] == ["training on 1 CPU thread now: 2.4x faster (other programs are using the cores)"]
    speed = {2: 0.1, 1: 0.25}  # the core is free again
    messages = [tuner.observe(speed[tuner_threads(set_to, 2)]) for _ in range(40)]
    assert tuner.current == 2 and "the cores are free again" in [m for m in messages if m][0]
    assert [threads for _, threads in tuner.switches] == [1, 2]


def tuner_threads(set_to: list[int], start: int) -> int:
    return set_to[-1] if set_to else start


def test_thread_tuner_is_idle_with_one_thread():
    set_to = []
    tuner = runtime.ThreadTuner(1, window=2, every=3, first=1, set_threads=set_to.append)
    assert [tuner.observe(1.0) for _ in range(20)] == [None] * 20 and set_to == []


def test_training_reports_every_step_to_the_thread_tuner_and_restores_the_thread_count(
    tiny_cfg, image_folders, tmp_path, capsys, monkeypatch
):
    seen = []

    class Recording(runtime.ThreadTuner):
        def observe(self, seconds):
            seen.append(seconds)
            if len(seen) == 2:
                torch.set_num_threads(1)
                return "training on 1 CPU thread now: 2.0x faster (other programs are using the cores)"
            return None

    monkeypatch.setattr(runtime, "ThreadTuner", Recording)
    before = torch.get_num_threads()
    train.run(tiny_cfg(train={"iters": 3}), list(image_folders), tmp_path / "run")
    assert len(seen) == 3 and all(s > 0 for s in seen)
    assert "step 2: training on 1 CPU thread now" in capsys.readouterr().err
    assert torch.get_num_threads() == before
