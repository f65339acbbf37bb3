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
from munit_cli import checkpoint, config, losses, train
from munit_cli.cli import app
from munit_cli.errors import MunitError

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
    assert summary["step"] == 6
    assert summary["names"] == ["outlines", "filled"]  # the folder names
    assert Path(summary["generator"]) == out / "checkpoints" / "gen_00000006.safetensors"

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
    common = [str(a), str(b), *tiny_set_args(train=dict(checkpoint_every=3, sample_every=3))]
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
    assert np.array_equal(pixels(split / "samples" / "step_00000006.png"), pixels(straight / "samples" / "step_00000006.png"))


def test_resume_with_another_architecture_is_refused(tiny_cfg, image_folders, tmp_path):
    a, b = image_folders
    out = tmp_path / "run"
    train.run(tiny_cfg(train={"iters": 3}), [a, b], out)
    with pytest.raises(MunitError, match="do not fit"):
        train.run(tiny_cfg(model={"dim": 16}, train={"iters": 6}), [a, b], out, resume="auto")
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
    assert summary["step"] == 4
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
    assert "--resume" in info.value.hint and "--overwrite" in info.value.hint
    assert [p.name for p in out.iterdir()] == ["precious.txt"]

    r = CliRunner().invoke(app, ["train", str(a), str(b), "--out", str(out), *tiny_set_args(train=dict(iters=2))])
    assert r.exit_code == 1 and "not empty" in r.output
    assert [p.name for p in out.iterdir()] == ["precious.txt"]

    summary = train.run(tiny_cfg(train={"iters": 2}), [a, b], out, overwrite=True)
    assert summary["step"] == 2
    assert not (out / "precious.txt").exists()


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
    with train.run_lock(out):
        with pytest.raises(MunitError, match="in use"):
            train.run(tiny_cfg(train={"iters": 6}), [a, b], out, resume="auto")
    assert checkpoint.list_steps(out) == before
    # once the lock is released, resuming works
    assert train.run(tiny_cfg(train={"iters": 4}), [a, b], out, resume="auto")["step"] == 4


@pytest.mark.parametrize("mode", ["resume", "overwrite"])
def test_refused_second_trainer_leaves_the_locked_folder_untouched(tiny_cfg, finished_run, mode):
    a, b, out = finished_run
    before = _folder_snapshot(out)
    kwargs = {"resume": "auto"} if mode == "resume" else {"overwrite": True}
    with train.run_lock(out):
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
    assert resumed["step"] == stop + 2
    assert f"resuming from step {stop}" in capsys.readouterr().err
    # ... exactly: the same weights as a run that was never interrupted
    straight = tmp_path / "straight"
    train.run(tiny_cfg(train={**long, "iters": stop + 2}), [a, b], straight)
    for kind, name in ((checkpoint.GENERATOR_KIND, "gen"), (checkpoint.STATE_KIND, "state")):
        assert_same_tensors(
            all_tensors(straight / "checkpoints" / f"{name}_{stop + 2:08d}.safetensors", kind),
            all_tensors(out / "checkpoints" / f"{name}_{stop + 2:08d}.safetensors", kind),
        )
