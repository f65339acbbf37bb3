"""The commands as people type them: the default run folder of `munit train`, the default model of
every command that takes `--model`, and styles saved by name."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_infer import NAMES, make_run
from typer.testing import CliRunner

from munit_cli import checkpoint, runs, styles
from munit_cli.cli import app
from munit_cli.errors import MunitError, UsageError

pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*args, env: dict[str, str] | None = None):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    return result


def fake_run(run: Path, steps=(4,)) -> Path:
    """A run folder as training leaves it, without training: run.json, generator checkpoints, a log."""
    make_run(run, f"fp-{run.name}", steps=steps)
    (run / "run.json").write_text(json.dumps({"names": list(NAMES), "run_id": run.name}))
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    return run


def age(run: Path, seconds_ago: float) -> None:
    """Make everything training wrote in `run` `seconds_ago` old."""
    when = time.time() - seconds_ago
    for name in runs.TRAINING_ENTRIES:
        if (run / name).exists():
            os.utime(run / name, (when, when))


def image(path: Path, seed: int, size=(40, 36)) -> Path:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    small.resize(size, Image.Resampling.BILINEAR).save(path)
    return path


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(checkpoint.MODEL_ENV, raising=False)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# The default run folder


def test_default_run_folder_names(tmp_path):
    root = tmp_path / "runs"
    a, b = tmp_path / "photos", tmp_path / "paintings"
    assert runs.default_run_folder([a, b], None, root=root) == root / "photos2paintings"
    assert runs.default_run_folder([a, b], ("day", "night"), root=root) == root / "day2night"
    # one prepared dataset: its own name, also when given as "." or with a trailing slash
    (tmp_path / "art").mkdir()
    assert runs.default_run_folder([tmp_path / "art"], None, root=root) == root / "art"
    assert runs.default_run_folder([Path(f"{tmp_path}/art/.")], None, root=root) == root / "art"
    # names made safe for one folder entry: no separators, no leading dot or dash, Unicode letters kept
    unsafe = runs.default_run_folder([a, b], ("../my photos", "-x:y\n"), root=root)
    assert unsafe == root / "my_photos2x_y"
    assert runs.default_run_folder([a, b], (".hidden", "фото"), root=root) == root / "hidden2фото"
    assert runs.default_run_folder([a, b], ("...", "a" * 200), root=root) == root / f"A2{'a' * runs.MAX_NAME_CHARS}"
    wide = runs.default_run_folder([a, b], ("猫" * 60, "犬" * 60), root=root)  # 3 bytes a character
    assert wide.name == "猫" * 40 + "2" + "犬" * 40 and len(os.fsencode(wide.name + "-10000")) <= 255


def test_default_run_folder_never_reuses_a_folder_unless_resuming(tmp_path):
    root = tmp_path / "runs"
    data = [tmp_path / "x", tmp_path / "y"]

    def folder(reuse=False):
        return runs.default_run_folder(data, None, reuse=reuse, root=root)

    assert folder() == root / "x2y" and folder(reuse=True) == root / "x2y"  # nothing there yet
    (root / "x2y").mkdir(parents=True)
    assert folder() == root / "x2y-2"
    assert folder(reuse=True) == root / "x2y"
    for name in ("x2y-2", "x2y-3", "x2y-10", "x2y-02", "x2y-1", "x2y-abc", "x2y-4.bak"):
        (root / name).mkdir()
    assert folder() == root / "x2y-4"  # the first free number
    assert folder(reuse=True) == root / "x2y-10"  # the newest of the series; -02, -1, -abc are not in it
    (root / "x2y-4").write_text("a file takes the name too")
    assert folder() == root / "x2y-5"


def test_train_without_out_writes_runs_a2b_then_a2b_2(in_tmp, image_folders, tiny_set_args):
    args = ["train", *image_folders, *tiny_set_args(train={"iters": 2, "sample_every": 2, "checkpoint_every": 2})]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    run = Path("runs") / "outlines2filled"
    assert f"into {run}" in first.stderr  # at the start
    assert f"report: {run / 'report.html'}" in first.stderr
    assert f"run:       {run}\n" in first.stderr  # and in the summary
    assert (run / "checkpoints" / "gen_00000002.safetensors").is_file()
    assert (run / "report.html").is_file()

    second = cli(*args, "--json")
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    run2 = Path("runs") / "outlines2filled-2"
    assert summary["run"] == str(run2)
    assert summary["generator"] == str(run2 / "checkpoints" / "gen_00000002.safetensors")
    assert summary["samples"] == str(run2 / "samples") and summary["report"] == str(run2 / "report.html")
    for key in ("generator", "samples", "report"):
        assert Path(summary[key]).exists()
    assert (run / "checkpoints" / "gen_00000002.safetensors").is_file()  # the first run is untouched

    # --resume continues the newest of the series, --out still wins
    resumed = cli(*args, "--iters", "4", "--resume", "auto")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from step 2" in resumed.stderr
    assert (run2 / "checkpoints" / "gen_00000004.safetensors").is_file()
    assert not (run / "checkpoints" / "gen_00000004.safetensors").exists()
    named = cli(*args, "--out", "mine", "--names", "line art,colour")
    assert named.exit_code == 0, named.output
    assert Path("mine/run.json").is_file() and sorted(p.name for p in Path("runs").iterdir()) == [
        "outlines2filled",
        "outlines2filled-2",
    ]


# ---------------------------------------------------------------------------------------------
# The default model


def test_model_falls_back_on_the_env_then_the_newest_trained_run(in_tmp):
    old = fake_run(Path("runs") / "old", steps=(2, 6))
    new = fake_run(Path("runs") / "new", steps=(3,))
    unfinished = Path("runs") / "started"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps({"names": list(NAMES), "run_id": "x"}))
    age(old, 200)
    age(new, 100)  # `started` is the newest run, but it has no checkpoint yet

    result = cli("style", "sample", "--seed", "7", "--name", "s1")
    assert result.exit_code == 0, result.output
    assert f"using {new} (step 3)" in result.stderr
    assert (new / "styles" / "s1.safetensors").is_file()

    age(old, 0)  # training logged into the older run: it is the newest now
    result = cli("style", "sample", "--seed", "7", "--name", "s1")
    assert result.exit_code == 0, result.output
    assert f"using {old} (step 6)" in result.stderr
    assert (old / "styles" / "s1.safetensors").is_file()

    # $MUNIT_MODEL comes before ./runs, and --model before both (then nothing is said)
    result = cli("style", "sample", "--name", "s2", env={checkpoint.MODEL_ENV: str(new)})
    assert result.exit_code == 0, result.output
    assert f"using {new} (step 3) (from $MUNIT_MODEL)" in result.stderr
    assert (new / "styles" / "s2.safetensors").is_file()
    result = cli("style", "sample", "--name", "s3", "--model", new, env={checkpoint.MODEL_ENV: str(old)})
    assert result.exit_code == 0, result.output
    assert "using" not in result.stderr and (new / "styles" / "s3.safetensors").is_file()

    # every command that takes --model resolves it the same way
    x = image(Path("x.png"), seed=1)
    result = cli("translate", x, "--out", "out.png")
    assert result.exit_code == 0, result.output
    assert f"using {old} (step 6)" in result.stderr and Path("out.png").is_file()
    result = cli("export", "--out", "export", "--format", "bundle")
    assert result.exit_code == 0, result.output
    assert f"using {old} (step 6)" in result.stderr and Path("export/bundle.safetensors").is_file()


def test_no_model_anywhere_names_every_way_to_give_one(in_tmp):
    fake_run(Path("elsewhere") / "run")  # not under ./runs
    Path("runs").mkdir()
    for args in (["translate", image(Path("x.png"), seed=1)], ["style", "sample", "--name", "s1"], ["export", "--out", "e"]):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert "--model (not given)" in result.stderr and "$MUNIT_MODEL (not set)" in result.stderr
        assert "no run with a checkpoint under runs" in result.stderr
        assert "export MUNIT_MODEL=" in result.stderr
    assert not Path("e").exists() and not Path("translated").exists()


# ---------------------------------------------------------------------------------------------
# Named styles


def translated_pixels(*args) -> np.ndarray:
    result = CliRunner().invoke(app, ["translate", *map(str, args), "--out", "-"])
    assert result.exit_code == 0, result.output
    return np.asarray(Image.open(io.BytesIO(result.stdout_bytes)).convert("RGB"))


def test_named_styles_are_saved_in_the_run_found_by_name_and_listed(in_tmp):
    run = fake_run(Path("runs") / "a2b")
    x, ref = image(Path("x.png"), seed=1), image(Path("ref.png"), seed=2)
    assert cli("style", "sample", "--seed", "7", "--name", "s1").exit_code == 0
    assert cli("style", "sample", "--seed", "8", "--index", "2", "--domain", "A", "--name", "s2").exit_code == 0
    result = cli("style", "encode", ref, "--name", "warm", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(run / "styles" / "warm.safetensors")

    # a name gives exactly the style it was saved from
    assert (translated_pixels(x, "--style", "s1") == translated_pixels(x, "--style", "seed:7")).all()
    assert (translated_pixels(x, "--style", "warm") == translated_pixels(x, "--style", ref)).all()
    assert not (translated_pixels(x, "--style", "s1") == translated_pixels(x, "--style", "warm")).all()
    wrong = cli("translate", x, "--style", "s2", "--out", "o")  # s2 is a style for domain A
    assert wrong.exit_code == 1 and "a style for domain A" in wrong.stderr

    result = cli("interpolate", x, "--style-a", "s1", "--style-b", "warm", "--steps", "3", "--out", "morph")
    assert result.exit_code == 0, result.output
    first = np.asarray(Image.open("morph/frames/x_000.png").convert("RGB"))
    assert (first == translated_pixels(x, "--style", "s1")).all()

    listed = cli("style", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["name", "domain", "source", "created"]
    rows = [line.split() for line in lines[1:]]
    assert [r[:4] for r in rows] == [
        ["s1", "B", "(filled)", "seed:7"],
        ["s2", "A", "(outline)", "seed:8:2"],
        ["warm", "B", "(filled)", "ref.png"],
    ]
    as_json = json.loads(cli("style", "list", "--json").stdout)
    assert as_json["run"] == str(run)
    assert [(s["name"], s["domain"], s["source"], s["problem"]) for s in as_json["styles"]] == [
        ("s1", "B (filled)", "seed:7", None),
        ("s2", "A (outline)", "seed:8:2", None),
        ("warm", "B (filled)", "ref.png", None),
    ]
    assert all(s["created"].endswith("UTC") for s in as_json["styles"])

    # a damaged style file is listed with its problem, and refused when used
    (run / "styles" / "bad.safetensors").write_bytes(b"not a style")
    as_json = json.loads(cli("style", "list", "--json").stdout)
    bad = [s for s in as_json["styles"] if s["name"] == "bad"]
    assert len(bad) == 1 and bad[0]["problem"] and bad[0]["domain"] == "?"
    assert cli("translate", x, "--style", "bad", "--out", "o").exit_code == 1


def test_a_spec_naming_two_kinds_of_style_is_refused(in_tmp):
    run = fake_run(Path("runs") / "a2b")
    x = image(Path("x.png"), seed=1)
    assert cli("style", "sample", "--seed", "3", "--name", "x.png").exit_code == 0  # a saved style named x.png
    result = cli("translate", x, "--style", "x.png", "--out", "o")
    assert result.exit_code == 2
    assert "ambiguous" in result.stderr
    assert "a saved style (runs/a2b/styles/x.png.safetensors)" in result.stderr and "a file (x.png)" in result.stderr
    assert not Path("o").exists()
    # the path of either one is not ambiguous
    assert cli("translate", x, "--style", "./x.png", "--out", "o1").exit_code == 0
    assert cli("translate", x, "--style", run / "styles" / "x.png.safetensors", "--out", "o2").exit_code == 0

    # a seed spec that is also a file's name (munit never saves a name with ':', but a file may have one)
    Path("seed:4").write_bytes(b"")
    result = cli("interpolate", x, "--style-a", "seed:4", "--out", "m")
    assert result.exit_code == 2 and "a seed spec; a file (seed:4)" in result.stderr

    # a name that is nothing at all says where it looked
    result = cli("translate", x, "--style", "nope", "--out", "o3")
    assert result.exit_code == 2
    assert "no such file, and no style of that name is saved in runs/a2b/styles" in result.stderr


@pytest.mark.parametrize("name", ["../up", "a/b", ".hidden", "-x", "a:b", "seed:1", "x" * 65, "", "dot.", "a b", "ü"])
def test_bad_style_names_are_refused_before_anything_is_loaded(in_tmp, name):
    with pytest.raises(UsageError, match="bad style name"):
        styles.check_style_name(name)
    result = cli("style", "sample", "--name", name, "--model", "no-such-model")
    assert result.exit_code == 2
    assert "bad style name" in result.stderr  # before the model is looked for


def test_name_or_out_and_overwrite(in_tmp):
    run = fake_run(Path("runs") / "a2b")
    both = cli("style", "sample", "--name", "s1", "--out", "s.safetensors")
    assert both.exit_code == 2 and "not both" in both.stderr
    neither = cli("style", "sample")
    assert neither.exit_code == 2 and "--name NAME" in neither.stderr
    assert cli("style", "sample", "--seed", "1", "--out", "s.safetensors").exit_code == 0  # the old way stays
    assert Path("s.safetensors").is_file() and not (run / "styles").exists()

    saved = run / "styles" / "s1.safetensors"
    assert cli("style", "sample", "--seed", "1", "--name", "s1").exit_code == 0
    before = saved.read_bytes()
    again = cli("style", "sample", "--seed", "2", "--name", "s1")
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert saved.read_bytes() == before
    assert cli("style", "sample", "--seed", "2", "--name", "s1", "--overwrite").exit_code == 0
    assert saved.read_bytes() != before

    # a model outside any run (an export bundle) has nowhere to keep names
    assert cli("export", "--out", "export", "--format", "bundle").exit_code == 0
    result = cli("style", "sample", "--name", "s9", "--model", "export/bundle.safetensors")
    assert result.exit_code == 2
    assert "not inside a training run" in result.stderr and "--out FILE.safetensors" in result.stderr
    listed = cli("style", "list", "--model", "export/bundle.safetensors")
    assert listed.exit_code == 2 and "no saved styles" in listed.stderr


def test_a_file_named_like_the_styles_folder_is_named_and_kept(in_tmp):
    run = fake_run(Path("runs") / "a2b")
    (run / "styles").write_text("my notes")
    for args in (("style", "sample", "--name", "s1"), ("style", "list")):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert f"{run / 'styles'} exists and is not a folder" in result.stderr
    assert (run / "styles").read_text() == "my notes"
    assert cli("style", "sample", "--out", "s.safetensors").exit_code == 0  # a style file still works


def test_a_file_named_runs_is_named_not_written_over(tmp_path):
    root = tmp_path / "runs"
    root.write_text("my notes")
    for reuse in (False, True):
        with pytest.raises(MunitError, match="runs/, but .*runs exists and is not a folder") as caught:
            runs.default_run_folder([tmp_path / "x", tmp_path / "y"], None, reuse=reuse, root=root)
        assert "--out" in caught.value.hint
    assert root.read_text() == "my notes"
