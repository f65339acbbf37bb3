"""TensorBoard logging: what a run writes reads back with TensorBoard's own event reader."""

from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from munit_cli.errors import MunitError
from munit_cli.tensorboard import TensorBoardLog


def read_events(log_dir):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="the [tensorboard] extra is not installed (pip install 'munit-cli[tensorboard]')",
    )
    events = accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_scalars_and_sample_grids_read_back(tmp_path):
    pytest.importorskip("tensorboard", reason="the [tensorboard] extra is not installed")
    png = tmp_path / "step_00000003.png"
    pixels = np.zeros((10, 6, 3), np.uint8)
    pixels[:, :3] = (255, 0, 0)
    Image.fromarray(pixels).save(png)
    with TensorBoardLog(tmp_path / "run") as tb:
        tb.scalars(1, {"gen_total": 3.5, "dis_total": 1.25, "recon_x_a": None, "recon_x_b": math.nan})
        tb.scalars(2, {"gen_total": 2.5, "dis_total": 1.0})
        tb.scalars(2, {"lr": 1e-4}, group="optim")
        tb.image(3, png)
        tb.image(6, torch.full((3, 4, 5), -1.0))

    events = read_events(tmp_path / "run" / "tensorboard")
    tags = events.Tags()
    assert sorted(tags["scalars"]) == ["loss/dis_total", "loss/gen_total", "optim/lr"]  # null and NaN left out
    assert [(e.step, e.value) for e in events.Scalars("loss/gen_total")] == [(1, 3.5), (2, 2.5)]
    assert [(e.step, e.value) for e in events.Scalars("loss/dis_total")] == [(1, 1.25), (2, 1.0)]
    assert events.Scalars("optim/lr")[0].value == pytest.approx(1e-4)

    grids = events.Images("samples")
    assert [(g.step, g.width, g.height) for g in grids] == [(3, 6, 10), (6, 5, 4)]
    first = np.asarray(Image.open(io.BytesIO(grids[0].encoded_image_string)).convert("RGB"))
    assert (first == pixels).all()
    black = np.asarray(Image.open(io.BytesIO(grids[1].encoded_image_string)).convert("RGB"))
    assert black.max() == 0  # -1 in the models' range is black


def test_missing_extra_names_the_install(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "torch.utils.tensorboard"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    with pytest.raises(MunitError) as caught:
        TensorBoardLog(tmp_path)
    assert "munit-cli[tensorboard]" in caught.value.hint
    assert not (tmp_path / "tensorboard").exists()
