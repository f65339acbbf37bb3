"""`munit evaluate` end to end, on an untrained tiny model with a stand-in feature network (the
metrics themselves are tested in test_metrics.py)."""

from __future__ import annotations

import json

import pytest
import torch
from test_metrics import StandInInception, lpips_weights
from typer.testing import CliRunner

from munit_cli import checkpoint, config, evaluate, metrics, models, synthetic
from munit_cli.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(metrics, "load_inception", lambda device="cpu": StandInInception().to(device))
    monkeypatch.setattr(metrics, "inception_path", lambda: metrics.Path("stand-in"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    synthetic.make_shapes(root / "data", n_train=0, n_test=3, size=32)
    small = {"model": {"dim": 8, "mlp_dim": 16, "n_res": 1, "dis_num_scales": 2}, "data": {"load_size": 32, "crop_size": 32}}
    cfg = config.resolve("tiny", overrides=small)
    torch.manual_seed(0)
    gen, _ = models.build(cfg.model)
    checkpoint.save_generator(root / "gen.safetensors", gen, cfg, ("outline", "filled"), 7, "fp")
    return root


def test_evaluate_cli_json(stand_in, tiny_model):
    data = tiny_model / "data"
    args = ["evaluate", "--model", str(tiny_model / "gen.safetensors"), "--test-a", str(data / "testA"),
            "--test-b", str(data / "testB"), "--num-styles", "3", "--device", "cpu", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["step"] == 7 and report["num_styles"] == 3 and report["weights"] == "raw"
    for key, label in (("a_to_b", "A (outline) -> B (filled)"), ("b_to_a", "B (filled) -> A (outline)")):
        d = report["directions"][key]
        assert d["direction"] == label and d["inputs"] == 3 and d["reference_images"] == 3
        assert d["kid_std"] >= 0 and d["fid"] >= 0 and d["diversity_l1"] > 0 and d["diversity_lpips"] is None
        assert "not LPIPS" in d["diversity_metric"]
        assert d["paired"]["pairs"] == 3 and -1 <= d["paired"]["ssim"] <= 1
    assert "KID" in result.stderr and "diversity_l1 (not LPIPS)" in result.stderr
    again = CliRunner().invoke(app, args)
    assert json.loads(again.stdout) == report  # seeded: the same numbers every run


def test_unpaired_folders_have_no_paired_metrics(stand_in, tiny_model, tmp_path):
    data = tiny_model / "data"
    renamed = tmp_path / "b"
    renamed.mkdir()
    for path in sorted((data / "testB").iterdir()):
        (renamed / f"other_{path.name}").write_bytes(path.read_bytes())
    result = evaluate.evaluate(tiny_model / "gen.safetensors", data / "testA", renamed, num_styles=1, device="cpu")
    for d in result.directions.values():
        assert d.paired is None and d.diversity_l1 is None and d.diversity_lpips is None  # one style: no pairs


def test_evaluate_without_the_extra_exits_1_with_the_hint(monkeypatch, tiny_model):
    monkeypatch.setattr(metrics, "INCEPTION_PACKAGE", "munit_no_such_package")
    metrics.load_inception.cache_clear()
    data = tiny_model / "data"
    args = ["evaluate", "-m", str(tiny_model / "gen.safetensors"), "--test-a", str(data / "testA"),
            "--test-b", str(data / "testB")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    metrics.load_inception.cache_clear()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "munit-cli[eval]" in result.stderr


def test_evaluate_with_lpips_weights_reports_lpips_diversity(stand_in, tiny_model, tmp_path):
    data = tiny_model / "data"
    weights = lpips_weights(tmp_path / "alex.safetensors")
    result = evaluate.evaluate(
        tiny_model / "gen.safetensors", data / "testA", data / "testB", num_styles=2, device="cpu", lpips_weights=weights
    )
    for d in result.directions.values():
        assert d.diversity_lpips is not None and d.diversity_lpips > 0 and d.diversity_l1 is None
        assert d.diversity_metric.startswith("diversity_lpips")


def test_save_writes_the_scores_into_the_run_for_the_report(stand_in, tiny_model, tmp_path):
    from munit_cli import report

    data = tiny_model / "data"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "gen_00000007.safetensors").write_bytes((tiny_model / "gen.safetensors").read_bytes())
    (run / "run.json").write_text(json.dumps({"names": ["outline", "filled"], "run_id": "r"}))
    args = ["evaluate", "--test-a", str(data / "testA"), "--test-b", str(data / "testB"), "--num-styles", "2",
            "--device", "cpu", "--json", "--save"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--model", str(run)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    saved = run / "evaluations" / "step_00000007_raw.json"
    assert printed["saved"] == str(saved) and json.loads(saved.read_text()) == printed
    page = report.write_report(run).read_text()
    assert f"{printed['directions']['a_to_b']['fid']:.1f}"[:3] in page and "outline" in page

    outside = CliRunner().invoke(app, [*args, "--model", str(tiny_model / "gen.safetensors")])
    assert outside.exit_code == 2 and "not inside a training run" in outside.output
    assert not (tiny_model / "evaluations").exists()
