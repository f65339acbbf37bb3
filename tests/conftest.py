"""Shared fixtures: a tiny config factory and two small folders of structured images."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

# A configuration that trains in tens of milliseconds per step on one CPU core: the same
# architecture family as the paper preset, with small widths and 32 px crops.
TINY: dict[str, dict[str, Any]] = {
    "model": {
        "dim": 8,
        "n_res": 1,
        "style_dim": 4,
        "mlp_dim": 16,
        "dis_dim": 8,
        "dis_n_layer": 3,
        "dis_num_scales": 2,
    },
    "data": {"load_size": 32, "crop_size": 32},
    "train": {
        "iters": 6,
        "batch_size": 2,
        "seed": 0,
        "device": "cpu",
        "log_every": 1,
        "sample_every": 3,
        "checkpoint_every": 3,
        "keep_checkpoints": 3,
        "num_preview": 2,
        "ema_decay": 0.9,
        "ema_start": 2,  # average (not copy) from step 3, so short runs exercise the EMA
    },
}


def _merged(sections: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged = copy.deepcopy(TINY)
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    return merged


@pytest.fixture(scope="session")
def tiny_cfg():
    """`tiny_cfg(train={"iters": 4}, model={"input_dim": 1})`: the paper preset with TINY and the
    given per-section overrides applied through `config.resolve` (so they are validated)."""
    from munit_cli import config

    def make(**sections: dict[str, Any]):
        return config.resolve("paper", overrides=_merged(sections))

    return make


@pytest.fixture(scope="session")
def tiny_set_args():
    """The same tiny config as command-line arguments: `["--set", "model.dim=8", ...]`."""

    def make(**sections: dict[str, Any]) -> list[str]:
        args: list[str] = []
        for section, values in _merged(sections).items():
            for key, value in values.items():
                args += ["--set", f"{section}.{key}={value}"]
        return args

    return make


def write_shape_images(folder: Path, filled: bool, count: int = 5, seed: int = 0) -> list[Path]:
    """`count` PNGs of varied (non-square) sizes: black rectangle/ellipse outlines on white, or the
    same kind of shapes filled with a random colour on a random background."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        w, h = int(rng.integers(36, 60)), int(rng.integers(36, 60))
        background = tuple(int(v) for v in rng.integers(0, 256, 3)) if filled else (255, 255, 255)
        img = Image.new("RGB", (w, h), background)
        draw = ImageDraw.Draw(img)
        x0, y0 = int(rng.integers(2, w // 2)), int(rng.integers(2, h // 2))
        box = [x0, y0, x0 + int(rng.integers(8, w // 2)), y0 + int(rng.integers(8, h // 2))]
        shape = draw.ellipse if i % 2 else draw.rectangle
        if filled:
            shape(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        else:
            shape(box, outline=(0, 0, 0), width=2)
        path = folder / f"img_{i:02d}.png"
        img.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def image_folders(tmp_path) -> tuple[Path, Path]:
    """Two unpaired domain folders, `outlines/` and `filled/`, with 5 small PNGs each."""
    a, b = tmp_path / "data" / "outlines", tmp_path / "data" / "filled"
    write_shape_images(a, filled=False, seed=1)
    write_shape_images(b, filled=True, seed=2)
    return a, b


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks: OpenMP's thread handoffs cost more than the maths (and collapse when other
    processes share the two cores); one thread also matches the zygote's arithmetic bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def private_feature_cache(tmp_path_factory, monkeypatch):
    """Each test caches Inception features in a folder of its own: some tests use a stand-in
    network, whose features must reach neither the user's cache nor another test."""
    monkeypatch.setenv("MUNIT_CACHE", str(tmp_path_factory.mktemp("munit-cache")))
