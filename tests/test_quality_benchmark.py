"""benchmarks/quality.py's rows: parsing, the order of their --set overrides, and the up-front
check that stops a benchmark on a bad row before anything trains (fast; no training here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from munit_cli import config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality_benchmark", REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def data_folder(tmp_path: Path) -> Path:
    for name in ("line", "flat"):
        (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
    return tmp_path / "data"


def base_args(tmp_path: Path) -> list[str]:
    return ["--data", str(data_folder(tmp_path)), "--a", "line", "--b", "flat", "--out", str(tmp_path / "out")]


def test_a_row_is_label_preset_and_overrides(quality):
    row = quality.Row.parse("lr4:cpu:optim.lr=4e-4:loss.recon_x_cyc_w=10")
    assert (row.label, row.preset, row.overrides) == ("lr4", "cpu", ["optim.lr=4e-4", "loss.recon_x_cyc_w=10"])
    for bad in ("lr4", "lr4:cpu:lr=4e-4", "a b:cpu"):
        with pytest.raises(ValueError):
            quality.Row.parse(bad)


def test_a_rows_own_sets_come_after_the_benchmarks_so_they_win(quality, tmp_path):
    args = quality.arguments([*base_args(tmp_path), "--seed", "3", "--size", "128", "--row", "s1:cpu:train.seed=1"])
    row = next(r for r in args.rows if r.label == "s1")
    sets = quality.row_sets(row, args)
    assert sets.index("train.seed=3") < sets.index("train.seed=1") == len(sets) - 1
    resolved = config.resolve(row.preset, overrides=config.parse_set(sets))
    assert (resolved.train.seed, resolved.data.crop_size, resolved.preset) == (1, 128, "cpu")


def test_a_bad_row_stops_the_benchmark_before_training(quality, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        quality.arguments([*base_args(tmp_path), "--skip", "paper", "--row", "nd0:cpu:model.n_downsample=0"])
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert "--row nd0" in message and "model.n_downsample" in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        quality.arguments([*base_args(tmp_path), "--row", "typo:cpu:loss.no_such_key=1"])
    assert "no_such_key" in capsys.readouterr().err
