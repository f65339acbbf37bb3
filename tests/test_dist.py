"""Distributed training on CPU with the gloo backend: two torchrun workers on a tiny config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from munit_cli import checkpoint, synthetic
from munit_cli.cli import app

TINY = [
    "--preset", "tiny", "--set", "model.dim=8", "--set", "model.mlp_dim=16", "--set", "model.n_res=1",
    "--set", "model.dis_num_scales=2", "--size", "32", "--set", "train.log_every=2", "--set", "train.checkpoint_every=2",
    "--set", "train.sample_every=100", "--set", "train.ema_start=1", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    synthetic.make_shapes(root, n_train=24, n_test=0, size=32, seed=3)
    return root


def train(shapes: Path, out: Path, *extra: str) -> dict:
    """The run's --json summary, with the messages it wrote under "stderr"."""
    cmd = [sys.executable, "-m", "munit_cli", "train", str(shapes / "trainA"), str(shapes / "trainB")]
    cmd += ["--out", str(out), *TINY, "--json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"only rank 0 prints the summary, got {proc.stdout!r}"
    return json.loads(lines[0]) | {"stderr": proc.stderr}


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"gen_{step:08d}.safetensors"))


def test_two_workers_match_one_process_and_resume_exactly(shapes, tmp_path):
    # the float32 reference path: the comparison is of the algorithm, not of bf16 rounding
    ddp = train(shapes, tmp_path / "ddp", "--iters", "4", "--batch-size", "2", "--gpus", "2", "--precision", "fp32")
    assert ddp["world_size"] == 2 and ddp["global_batch"] == 4 and ddp["step"] == 4

    # Only rank 0 writes: one metrics line per log step, not two.
    steps = [json.loads(line)["step"] for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == [
        "gen_00000002.safetensors", "gen_00000004.safetensors",
        "state_00000002.safetensors", "state_00000004.safetensors",
    ]  # fmt: skip

    # One process with the same global batch sees the same data and styles in the same order.
    single = train(shapes, tmp_path / "single", "--iters", "4", "--batch-size", "4", "--precision", "fp32")
    assert single["world_size"] == 1
    for key in ("gen_total", "dis_total", "recon_x_a"):
        assert ddp["losses"][key] == pytest.approx(single["losses"][key], rel=1e-4)
    a, b = weights(tmp_path / "ddp", 4), weights(tmp_path / "single", 4)
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    # Gradients are averaged in another order than one batch's sum: tiny float noise, which Adam
    # can magnify for near-zero gradients up to about one learning rate (2e-4) in rare elements.
    assert diff.mean() < 1e-6 and diff.max() < 2e-3

    # Resume under DDP from step 2 of a copy of that run (as if stopped there) to 4 == 4 straight.
    shutil.copytree(tmp_path / "ddp", tmp_path / "resumed")
    for path in checkpoint.checkpoint_paths(tmp_path / "resumed", 4):
        path.unlink()
    resume = ("--resume", "auto", "--precision", "fp32")  # TINY names the preset, so the flags apply again
    resumed = train(shapes, tmp_path / "resumed", "--iters", "4", "--batch-size", "2", *resume, "--gpus", "2")
    assert resumed["stderr"].count("resuming from step 2 ") == 1  # rank 0 only, and not from scratch
    r = weights(tmp_path / "resumed", 4)
    assert all(torch.equal(a[k], r[k]) for k in a)


def test_gpus_without_gpus_is_a_clear_error(shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    result = CliRunner().invoke(
        app, ["train", str(shapes / "trainA"), str(shapes / "trainB"), "--out", str(tmp_path / "x"), "--gpus", "2"]
    )
    assert result.exit_code == 1
    assert "--gpus 2 asked for, but 0 CUDA GPUs found" in result.output
    assert "--device cpu" in result.output
    assert "Traceback" not in result.output


def test_two_workers_with_the_fast_path_share_the_budget_schedule(shapes, tmp_path):
    """DDP together with bf16 autocast, channels_last, fused Adam, the shared translation pass and
    one content encoder for both domains, and optim.lr_policy=linear with --minutes: the ranks'
    clocks differ, yet their learning rates must not. The run ends with both ranks holding the same
    weights (checked by the trainer itself)."""
    fast = [
        "--precision", "bf16", "--set", "train.channels_last=true", "--set", "optim.fused=true",
        "--set", "train.share_translations=true", "--set", "model.shared_content_encoder=true",
    ]  # fmt: skip
    linear = ["--set", "optim.lr_policy=linear", "--set", "optim.lr=1e-3", "--minutes", "60"]
    summary = train(shapes, tmp_path / "fast", "--iters", "4", "--batch-size", "2", "--gpus", "2", *fast, *linear)
    assert summary["world_size"] == 2 and summary["step"] == 4
    assert all(v is not None and v == v for v in summary["losses"].values())  # finite, not NaN
    stored = (tmp_path / "fast" / "config.toml").read_text()
    assert 'precision = "bf16"' in stored and "share_translations = true" in stored
    assert "shared_content_encoder = true" in stored
    rates = [json.loads(line)["lr"] for line in (tmp_path / "fast" / "metrics.jsonl").read_text().splitlines()]
    assert rates == pytest.approx([7.5e-4, 2.5e-4], rel=1e-2)  # steps 1 and 3 of 4: the hour has barely begun
    # a budget of 3 seconds leads the schedule: each rank's own clock would give each its own rate
    short = train(shapes, tmp_path / "short", "--iters", "100000", "--batch-size", "2", "--gpus", "2", *linear[:4], "--minutes", "0.05")
    assert short["world_size"] == 2 and 0 < short["step"] < 100000
