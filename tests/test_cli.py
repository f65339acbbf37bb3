"""The `munit` command through Typer's CliRunner: help, version, usage errors (exit 2, a message,
no traceback), and a help that answers without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import munit_cli
from munit_cli import __version__
from munit_cli.cli import app

REPO = Path(munit_cli.__file__).resolve().parent.parent
runner = CliRunner()


def command_names(typer_app) -> list[str]:
    """The top-level commands and groups as click sees them, including those merged in from the
    command modules' apps (added without a group name)."""
    return list(typer.main.get_command(typer_app).commands)


def assert_usage_error(result, *needles: str):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in result.output, (needle, result.output)


@pytest.fixture
def folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return [str(a), str(b), "--out", str(tmp_path / "run")]


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    names = command_names(app)
    assert {"train", "demo"} <= set(names)
    for name in names:
        assert name in result.output, name
    assert "Usage" in result.output


def test_no_arguments_shows_help():
    result = runner.invoke(app, [])
    assert "train" in result.output and "Usage" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["train", "demo"])
def test_command_help_has_an_example(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert f"munit {name}" in result.output  # an example line


def test_demo_help_names_the_demos_preset_and_steps():
    from munit_cli import demo

    result = runner.invoke(app, ["demo", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert f"default: {demo.DEMO_TRAIN['iters']}" in result.output and f"the {demo.DEMO_PRESET} preset" in result.output


def test_demo_trains_its_preset_with_the_demos_changes(tmp_path, monkeypatch):
    from munit_cli import config, demo
    from munit_cli.errors import MunitError

    trained = []
    monkeypatch.setattr(demo.train, "run", lambda cfg, *args, **kwargs: trained.append(cfg))  # returns None
    with pytest.raises(MunitError, match="worker of a distributed run"):
        demo.run(tmp_path / "demo", iters=7, seed=3)
    (cfg,) = trained
    assert cfg.preset == demo.DEMO_PRESET == "cpu"
    assert (cfg.train.iters, cfg.train.ema_decay, cfg.train.seed) == (7, 0.99, 3)
    # the preset's one content encoder is left out: on the shapes its styles differed too little
    assert config.resolve("cpu").model.shared_content_encoder and not cfg.model.shared_content_encoder
    # and it trains with the learning rate and cycle its shapes gate was measured with
    assert (cfg.optim.lr, cfg.loss.cycle_detach) == (4e-4, "")


def test_every_command_help_answers():
    for name in command_names(app):
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Traceback" not in result.output


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    result = runner.invoke(app, [flag])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"munit {__version__}"


def test_unknown_option(folders):
    assert_usage_error(runner.invoke(app, ["train", *folders, "--bogus"]), "--bogus")


def test_unknown_command():
    assert_usage_error(runner.invoke(app, ["trian"]), "trian")


def test_missing_required_option(tmp_path):
    # train has a default run folder (runs/A2B); prepare and export still need --out
    assert_usage_error(runner.invoke(app, ["prepare", str(tmp_path)]), "--out")
    assert_usage_error(runner.invoke(app, ["export", str(tmp_path)]), "--out")


def test_option_of_the_wrong_type(folders):
    assert_usage_error(runner.invoke(app, ["train", *folders, "--iters", "many"]), "--iters")


def test_unknown_preset(folders, tmp_path):
    result = runner.invoke(app, ["train", *folders, "--preset", "nope"])
    assert_usage_error(result, "nope", "tiny")  # names the bad preset and lists the known ones
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("item", ["modeldim=8", "model.dim", "model.=8", "=8"])
def test_bad_set_syntax(folders, item):
    assert_usage_error(runner.invoke(app, ["train", *folders, "--set", item]), "SECTION.KEY=VALUE")


@pytest.mark.parametrize(
    "item, needle",
    [("model.dim=abc", "model.dim"), ("train.iters=1.5", "train.iters"), ("data.flip=maybe", "data.flip"), ("optim.lr=fast", "optim.lr")],
)
def test_wrong_type_in_set(folders, item, needle):
    assert_usage_error(runner.invoke(app, ["train", *folders, "--set", item]), needle)


@pytest.mark.parametrize("item, needle", [("model.dimm=8", "model.dimm"), ("modle.dim=8", "modle")])
def test_unknown_key_in_set(folders, item, needle):
    assert_usage_error(runner.invoke(app, ["train", *folders, "--set", item]), needle)


def test_invalid_value_in_set(folders):
    assert_usage_error(runner.invoke(app, ["train", *folders, "--set", "data.crop_size=30"]), "crop_size")


def test_crop_too_small_for_the_discriminators(folders):
    result = runner.invoke(app, ["train", *folders, "--preset", "tiny", "--size", "32"])  # tiny: 4 layers, 3 scales
    assert_usage_error(result, "data.crop_size 32 is too small", "at least 64", "model.dis_num_scales")


def test_unknown_key_in_config_file(folders, tmp_path):
    path = tmp_path / "my.toml"
    path.write_text("[model]\ndim = 16\nstyle_dimm = 4\n")
    result = runner.invoke(app, ["train", *folders, "--config", str(path)])
    assert_usage_error(result, "model.style_dimm", str(path))
    assert not (tmp_path / "run").exists()


def test_unknown_section_in_config_file(folders, tmp_path):
    path = tmp_path / "my.toml"
    path.write_text("[modle]\ndim = 16\n")
    assert_usage_error(runner.invoke(app, ["train", *folders, "--config", str(path)]), "modle")


def test_broken_or_missing_config_file(folders, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[model\ndim = ")
    assert_usage_error(runner.invoke(app, ["train", *folders, "--config", str(path)]), str(path))
    missing = tmp_path / "missing.toml"
    assert_usage_error(runner.invoke(app, ["train", *folders, "--config", str(missing)]), str(missing))


def test_vgg_weight_without_file(folders):
    result = runner.invoke(app, ["train", *folders, "--set", "loss.vgg_w=1"])
    assert_usage_error(result, "vgg_weights")


@pytest.mark.parametrize("names", ["edges", "a,b,c", "same,same", ",b"])
def test_bad_names(folders, names):
    assert_usage_error(runner.invoke(app, ["train", *folders, "--preset", "tiny", "--names", names]), "--names")


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "import munit_cli.cli as cli\n"
        "runner = CliRunner()\n"
        "codes = [runner.invoke(cli.app, args).exit_code for args in (['--help'], ['--version'], ['train', '--help'])]\n"
        "print(codes, 'torch' in sys.modules)\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 0, 0] False"


def test_module_entry_point_version():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "munit_cli", "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0
    assert result.stdout.strip() == f"munit {__version__}"
