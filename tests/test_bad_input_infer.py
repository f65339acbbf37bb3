"""The inference commands under careless or hostile input: files that are not regular files,
endless stdin, images too large for the memory budget, options out of range, outputs that cannot
be written, and model and style files that lie about themselves. Each answer is one line and an
exit code, never a hang, a traceback or a file written before the options were checked."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from processes import run_together
from safetensors.torch import save_file
from test_infer import make_run, noise
from typer.testing import CliRunner

from munit_cli import checkpoint, config, demo, infer, inputs, interpolate, models, styles, stylefiles, translate
from munit_cli.cli import app
from munit_cli.errors import MunitError

REPO = Path(__file__).resolve().parents[1]
NAMES = ("outline", "filled")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-infer")
    run = make_run(root / "run", "fp-bad")
    good = noise(root / "good.png", 40, 32, seed=1)
    huge = root / "huge.png"
    Image.new("1", (13000, 13000)).save(huge)  # 169 megapixels, a few KB: under the decode limit
    thin = root / "thin.png"
    Image.new("RGB", (1, 3_000_000)).save(thin)  # 16 x 3000000 at the least
    fifo = root / "pipe.png"
    os.mkfifo(fifo)
    return {"root": root, "run": run, "model": run / "checkpoints" / "gen_00000010.safetensors", "good": good,
            "huge": huge, "thin": thin, "fifo": fifo}  # fmt: skip


def cli(*args, stdin=None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    return result


def munit_command(*args: str, **kwargs) -> dict:
    """`subprocess.Popen` arguments of a real `munit` process (for what CliRunner cannot fake:
    closed and full standard streams)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    kwargs.setdefault("stdout", subprocess.PIPE)
    return {"args": [sys.executable, "-m", "munit_cli", *map(str, args)], "stderr": subprocess.PIPE, "env": env, **kwargs}


def munit(*args: str, timeout: int = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(**munit_command(*args, **kwargs), timeout=timeout)


def shell_munit(command: str) -> dict:
    """`munit_command` as a shell command line (for redirections), with text output."""
    return {**munit_command(), "args": f"{sys.executable} -m munit_cli {command}", "shell": True, "text": True}


def one_error_line(stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return [line.startswith("error:") for line in lines].count(True) == 1 and "Traceback" not in stderr


# ---------------------------------------------------------------------------------------------
# Files that are not regular files, endless stdin


def test_a_fifo_or_device_among_inputs_is_skipped_with_the_reason(world, tmp_path, reliability):
    """A FIFO named *.png would block a reader forever, /dev/zero never ends: both are skipped."""
    reliability.add("bad_inputs", 2)
    reliability.add("endless_inputs", 2)
    proc = munit("translate", world["fifo"], "/dev/zero", world["good"], "-m", world["run"], "--out", tmp_path / "o", timeout=60)
    stderr = proc.stderr.decode()
    assert proc.returncode == 3, stderr
    assert "pipe.png: not a regular file" in stderr and "/dev/zero: not a regular file" in stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["good_seed0.png"]


def test_a_fifo_as_style_reference_or_style_image_is_refused(world, tmp_path, reliability):
    reliability.add("bad_inputs", 3)
    result = cli("translate", world["good"], "-m", world["run"], "--style", world["fifo"], "--out", tmp_path / "o")
    assert result.exit_code == 2 and "not a regular file" in result.stderr
    result = cli("style", "encode", world["fifo"], "-m", world["run"], "-o", tmp_path / "s.safetensors")
    assert result.exit_code == 1 and "not a regular file" in result.stderr
    result = cli("interpolate", world["fifo"], "-m", world["run"], "--out", tmp_path / "i")
    assert result.exit_code == 1 and "not a regular file" in result.stderr
    assert not (tmp_path / "s.safetensors").exists() and not (tmp_path / "i").exists()


class Endless:
    """A stdin that never ends (like `cat /dev/zero`), counting what was taken from it."""

    def __init__(self):
        self.taken = 0

    def isatty(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise AssertionError("read everything from an endless stream")
        self.taken += n
        return bytes(n)


def test_endless_stdin_is_read_up_to_the_limit(monkeypatch):
    monkeypatch.setattr(inputs, "MAX_STDIN_BYTES", 4096)
    stream = Endless()
    items = inputs.expand_inputs(["-"], stream)
    assert stream.taken == 4097  # the limit and one byte to tell that there is more
    assert items[0].problem == "more than 0.00390625 MiB; munit reads at most that much"


def test_stdin_over_the_limit_is_one_failed_input(world, monkeypatch, reliability):
    reliability.add("bad_inputs", 1)
    reliability.add("endless_inputs", 1)
    monkeypatch.setattr(inputs, "MAX_STDIN_BYTES", 1000)
    result = cli("translate", "-", "-m", world["run"], "--out", "-", stdin=b"\0" * 5000)
    assert result.exit_code == 1, result.output
    assert "stdin: more than" in result.stderr and "no input could be translated" in result.stderr


# ---------------------------------------------------------------------------------------------
# The memory budget


def test_images_too_large_to_tile_within_the_budget_are_skipped_and_the_rest_translated(world, tmp_path, reliability, monkeypatch):
    """Over the budget for one pass an input is tiled; only one whose blend buffers (input and
    outputs in float32) would not fit is refused, from its header."""
    reliability.add("bad_inputs", 2)
    reliability.add("oversized_images", 2)
    monkeypatch.setattr(infer, "MEMORY_BUDGET", 64 << 20)
    out = tmp_path / "o"
    result = cli("translate", world["huge"], world["thin"], world["good"], "-m", world["run"], "--out", out)
    assert result.exit_code == 3, result.output
    assert "huge.png: tiled at 13000x13000, 1 translation would need 5.7 GiB of blend buffers" in result.stderr
    assert "over the 0.0625 GiB memory budget" in result.stderr and "--size to work smaller" in result.stderr
    assert "thin.png: tiled at" in result.stderr
    assert "2 of 3 inputs failed" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good_seed0.png"]


def test_style_encode_and_evaluate_refuse_images_over_the_budget(world, tmp_path, reliability):
    reliability.add("bad_inputs", 2)
    result = cli("style", "encode", world["huge"], "-m", world["run"], "-o", tmp_path / "s.safetensors")
    assert result.exit_code == 1 and "memory budget" in result.stderr and "--size" in result.stderr
    assert not (tmp_path / "s.safetensors").exists()
    # evaluate prepares at the training size, so only a shape too thin for any size is refused
    tr = infer.Translator.open(world["run"], "B", "cpu")
    with pytest.raises(MunitError, match="too unequal"):
        tr.read_image(world["thin"], size=tr.loaded.cfg.data.load_size, whole=True)


def test_outputs_that_would_not_fit_in_memory_are_refused_per_input(world, monkeypatch):
    tr = infer.Translator.open(world["run"], "B", "cpu")
    monkeypatch.setattr(infer, "OUTPUT_BUDGET", 40 * 32 * 3 * 10)
    tr.check_fits(40, 32, "x", outputs=10)
    with pytest.raises(MunitError, match="11 translations at 40x32 would hold"):
        tr.check_fits(40, 32, "x", outputs=11)


def test_batches_are_split_to_stay_within_the_budget(world, monkeypatch):
    """Three inputs of one size in a batch of 3, with room for two per pass: the same pixels."""
    tr = infer.Translator.open(world["run"], "B", "cpu")
    items = inputs.expand_inputs([str(world["good"])] * 3)
    codes = styles.sample_style(0, 0, tr.style_dim)[None]
    whole = [r.outputs[0].tobytes() for r in infer.translate_items(tr, items, codes, batch_size=1)]
    monkeypatch.setattr(infer, "MEMORY_BUDGET", 2 * 40 * 32 * infer.BYTES_PER_PIXEL_PER_DIM * tr.loaded.cfg.model.dim)
    passes = []
    monkeypatch.setattr(tr, "translate_batch", lambda x, s: passes.append(len(x)) or infer.Translator.translate_batch(tr, x, s))
    split = [r.outputs[0].tobytes() for r in infer.translate_items(tr, items, codes, batch_size=3)]
    assert passes == [2, 1] and split == whole


# ---------------------------------------------------------------------------------------------
# Options: bounded, and checked before any work


@pytest.mark.parametrize(
    "args, message",
    [
        (["translate", "{good}", "--num-styles", "1001"], "--num-styles must be from 1 to 1000"),
        (["translate", "{good}", "--size", "100000"], "--size 100000 is too large"),
        (["translate", "{good}", "--truncation", "nan"], "--truncation must be in (0, 1]"),
        (["interpolate", "{good}", "--steps", "100000000"], "--steps must be from 2 to 10000"),
        (["interpolate", "{good}", "--fps", "nan", "--gif"], "--fps must be from 0.01 to 100"),
        (["interpolate", "{good}", "--fps", "0.0001", "--gif"], "--fps must be from 0.01 to 100"),
        (["interpolate", "{good}", "--fps", "inf", "--gif"], "--fps must be from 0.01 to 100"),
        (["interpolate", "{good}", "--size", "100000"], "--size 100000 is too large"),
        (["evaluate", "--test-a", "{root}", "--test-b", "{root}", "--num-styles", "100000"], "--num-styles must be from 1 to 1000"),
        (["translate", "{good}", "--out", "{out}/result.webp"], "munit writes .png or .jpg images, not .webp"),
        (["translate", "{good}", *["--style", "seed:1"] * 1001], "at most 1000 styles, got 1001"),
        (["evaluate", "--test-a", "{root}", "--test-b", "{root}", "--batch-size", "100000"], "--batch-size must be from 1 to 256"),
        (["translate", "{good}", "--out", "{out}/anim.gif"], "a video file holds the translation of one video input"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(world, tmp_path, args, message, reliability):
    reliability.add("bad_inputs", 1)
    out = tmp_path / "out"
    args = [a.format(good=world["good"], root=world["root"], out=out) for a in args]
    result = cli(*args, "-m", world["run"], *([] if "--out" in args or args[0] == "evaluate" else ["--out", out]))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not out.exists()


def test_long_work_stops_on_ctrl_c_with_whole_files(world, tmp_path, monkeypatch):
    """Ctrl-C between two inputs' translations: exit 130, the finished outputs whole, nothing else."""
    calls = []
    original = infer.Translator.translate_batch

    def interrupted_second_time(self, x, codes):
        calls.append(len(codes))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, x, codes)

    monkeypatch.setattr(infer.Translator, "translate_batch", interrupted_second_time)
    out = tmp_path / "o"
    result = cli("translate", world["good"], world["good"], world["good"], "-n", "3", "-m", world["run"], "--out", out)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(["good_seed0.png", "good_seed0-1.png", "good_seed0-2.png"])
    assert all(Image.open(p).size == (40, 32) for p in out.iterdir())


def test_out_naming_an_existing_file_for_several_outputs(world, tmp_path, reliability):
    reliability.add("bad_inputs", 2)
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for args in (["translate", world["good"], "-n", "2"], ["interpolate", world["good"]]):
        result = cli(*args, "-m", world["run"], "--out", afile)
        assert result.exit_code == 1 and "afile: exists and is not a folder" in result.stderr
    assert afile.read_text() == "keep"


def test_pictures_of_many_translations_stay_within_what_munit_reads_back(world, tmp_path, monkeypatch):
    """A grid of every input (to a file or stdout) and the interpolation strip and GIF are bounded
    by the decode limit: the grid is refused before anything is written; the strip and GIF are left
    out with a warning, the frames are written."""
    for module in (translate, interpolate):  # less than a strip of 3 frames
        monkeypatch.setattr(module, "MAX_PICTURE_PIXELS", 3 * 40 * 32)
    result = cli("translate", world["good"], world["good"], "-m", world["run"], "--out", tmp_path / "all.png")
    assert result.exit_code == 1 and "more than 0 megapixels in one picture" in result.stderr, result.output
    assert not (tmp_path / "all.png").exists()
    assert cli("translate", world["good"], "-m", world["run"], "--out", tmp_path / "one.png").exit_code == 0

    result = cli("interpolate", world["good"], "-m", world["run"], "--steps", "3", "--gif", "--out", tmp_path / "i", "--json")
    assert result.exit_code == 0, result.output
    assert "strip.png and interpolation.gif not written" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["strip"] is None and summary["gif"] is None and len(summary["frames"]) == 3
    assert sorted(p.name for p in (tmp_path / "i").iterdir()) == ["frames"]


def test_interpolation_frames_sort_in_order_past_999():
    names = [interpolate.frame_path(Path("o"), "x", t, 1001).name for t in (0, 9, 999, 1000)]
    assert names == ["x_0000.png", "x_0009.png", "x_0999.png", "x_1000.png"] == sorted(names)
    assert interpolate.frame_path(Path("o"), "x", 7, 8).name == "x_007.png"


# ---------------------------------------------------------------------------------------------
# Outputs that cannot be written


def test_translate_to_a_full_or_closed_stdout(world, reliability):
    reliability.add("bad_inputs", 2)
    with open("/dev/full", "wb") as full:
        proc, closed = run_together(
            munit_command("translate", world["good"], "-m", world["run"], "--out", "-", stdout=full),
            shell_munit(f"translate {world['good']} -m {world['run']} --out - >&-"),
        )
    stderr = proc.stderr.decode()
    assert proc.returncode == 1 and one_error_line(stderr), stderr
    assert "could not write to stdout: No space left on device" in stderr
    assert closed.returncode == 1 and one_error_line(closed.stderr), closed.stderr
    assert "stdout is closed" in closed.stderr


def test_json_records_to_a_full_stdout_and_stdin_closed(world, tmp_path, reliability):
    reliability.add("bad_inputs", 2)
    with open("/dev/full", "wb") as full:
        proc, closed = run_together(
            munit_command("translate", world["good"], "-m", world["run"], "--out", tmp_path / "o", "--json", stdout=full),
            shell_munit(f"translate - -m {world['run']} --out {tmp_path}/x.png <&-"),
        )
    stderr = proc.stderr.decode()
    assert proc.returncode == 1 and one_error_line(stderr) and "No space left on device" in stderr, stderr
    assert closed.returncode == 2 and one_error_line(closed.stderr) and "stdin is closed" in closed.stderr, closed.stderr


def test_export_into_a_path_under_a_file_or_a_device(world, tmp_path, reliability):
    reliability.add("bad_inputs", 2)
    afile = tmp_path / "afile"
    afile.write_text("")
    for out, message in ((afile / "sub", "could not create"), (Path("/dev/full"), "exists and is not a folder")):
        result = cli("export", world["model"], "--format", "bundle", "--out", out)
        assert result.exit_code == 1 and message in result.stderr, result.output


# ---------------------------------------------------------------------------------------------
# Model and style files that lie


def tiny_generator():
    cfg = config.resolve("tiny", overrides={"model": {"dim": 8, "mlp_dim": 16, "n_res": 1}})
    torch.manual_seed(0)
    return models.build(cfg.model)[0], cfg


def test_a_model_with_nan_weights_is_refused(tmp_path, world, reliability):
    reliability.add("bad_inputs", 1)
    gen, cfg = tiny_generator()
    with torch.no_grad():
        next(gen.parameters())[0] = float("nan")
    path = tmp_path / "nan.safetensors"
    checkpoint.save_generator(path, gen, cfg, NAMES, 1, "fp")
    result = cli("translate", world["good"], "-m", path, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "holds NaN or infinite values" in result.stderr
    assert not (tmp_path / "o").exists()


def test_model_and_style_files_without_a_checksum_are_refused(tmp_path, world, reliability):
    """Removing the checksum must not turn verification off: munit writes one into every file."""
    reliability.add("bad_inputs", 2)
    tensors, meta = checkpoint.read_tensors(world["model"], checkpoint.GENERATOR_KIND)
    meta.pop(checkpoint.CHECKSUM_KEY)
    stripped = tmp_path / "stripped.safetensors"
    save_file(tensors, str(stripped), metadata=meta)
    result = cli("translate", world["good"], "-m", stripped, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "no checksum" in result.stderr
    foreign = tmp_path / "foreign.safetensors"  # the same weights, as another tool would save them
    save_file(tensors, str(foreign))
    result = cli("translate", world["good"], "-m", foreign, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "not a munit generator file" in result.stderr

    style = stylefiles.sample_style_file(model=world["run"], domain="B", out=tmp_path / "s.safetensors").path
    tensors, meta = checkpoint.read_tensors(style, styles.STYLE_KIND)
    meta.pop(checkpoint.CHECKSUM_KEY)
    save_file(tensors, str(style), metadata=meta)
    result = cli("translate", world["good"], "-m", world["run"], "--style", style, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "no checksum" in result.stderr


def test_deeply_nested_or_hostile_metadata_is_refused_in_one_line(tmp_path, world, reliability):
    reliability.add("bad_inputs", 4)
    gen, cfg = tiny_generator()
    nested = tmp_path / "nested.safetensors"
    meta = checkpoint.generator_metadata(cfg, NAMES, 1, "fp")
    meta["config"] = "[" * 100_000 + "]" * 100_000
    checkpoint.save_tensors(nested, gen.state_dict(), meta)
    hostile = {
        "escape": ["\x1b]0;pwned\x07\x1b[31mred", "b"],
        "long": ["x" * 100_000, "b"],
        "bidi": ["abc\u202edcba", "b"],
    }
    for name, names in hostile.items():
        checkpoint.save_generator(tmp_path / f"{name}.safetensors", gen, cfg, names, 1, "fp")
    for name in ("nested", *hostile):
        result = cli("translate", world["good"], "-m", tmp_path / f"{name}.safetensors", "--out", tmp_path / "o")
        assert result.exit_code == 1 and result.output.count("error:") == 1, (name, result.output)
        assert "\x1b" not in result.output and "x" * 200 not in result.output and "\u202e" not in result.output
    assert "nested too deeply" in cli("export", nested, "--out", tmp_path / "e").stderr


def test_names_with_emoji_joiners_and_accents_are_accepted(tmp_path, world):
    gen, cfg = tiny_generator()
    path = tmp_path / "emoji.safetensors"
    checkpoint.save_generator(path, gen, cfg, ("\U0001f469\u200d\U0001f3a8 artists", "peintures é"), 1, "fp")
    result = cli("translate", world["good"], "-m", path, "--to", "peintures é", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output


def test_a_style_file_with_hostile_labels_is_refused(tmp_path, world, reliability):
    reliability.add("bad_inputs", 1)
    tr = infer.Translator.open(world["run"], "A", "cpu")
    path = tmp_path / "s.safetensors"
    meta = styles.style_metadata(tr, "a", "seed:1")
    meta["domain_name"] = "\x1b[2J" + "y" * 10
    checkpoint.save_tensors(path, {"style": torch.zeros(tr.style_dim)}, meta)
    result = cli("translate", world["good"], "-m", world["run"], "--style", path, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "metadata 'domain_name': holds control characters" in result.stderr
    assert "\x1b" not in result.output


# ---------------------------------------------------------------------------------------------
# demo --overwrite


def test_demo_overwrite_refuses_a_folder_the_demo_did_not_make(tmp_path, reliability):
    reliability.add("bad_inputs", 2)
    mine = tmp_path / "mine"
    (mine / "run").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    result = cli("demo", "--out", mine, "--overwrite")
    assert result.exit_code == 1 and "munit demo did not make" in result.stderr
    assert (mine / "thesis.tex").read_text() == "years of work" and (mine / "run").is_dir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = cli("demo", "--out", afile, "--overwrite")
    assert result.exit_code == 1 and "not a folder" in result.stderr and afile.read_text() == "x"


def test_demo_overwrite_removes_only_what_the_demo_wrote(tmp_path):
    out, elsewhere = tmp_path / "demo", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.png").write_text("keep")
    (out / "data" / "trainA").mkdir(parents=True)
    (out / demo.MARKER).write_text("")
    (out / "translations.png").write_text("old")
    (out / "notes.txt").write_text("mine")
    (out / "run").symlink_to(elsewhere)  # a link is removed, not followed
    demo.clear_demo_folder(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([demo.MARKER, "notes.txt"])
    assert (elsewhere / "precious.png").read_text() == "keep"


def test_evaluate_warns_when_fid_comes_from_few_images(world, tmp_path, monkeypatch):
    from test_metrics import StandInInception

    from munit_cli import evaluate, metrics, synthetic

    monkeypatch.setattr(metrics, "load_inception", lambda device="cpu": StandInInception().to(device))
    synthetic.make_shapes(tmp_path / "data", n_train=0, n_test=3, size=32)
    os.mkfifo(tmp_path / "data" / "testA" / "zz_pipe.png")  # skipped with the reason, never waited on
    args = ["evaluate", "-m", world["run"], "--test-a", tmp_path / "data" / "testA", "--test-b",
            tmp_path / "data" / "testB", "-n", "1", "--device", "cpu", "--json"]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "warning: FID and KID from 3 images per set are unreliable" in result.stderr
    report = json.loads(result.stdout)
    assert len(report["warnings"]) == 1 and "from 3 images" in report["warnings"][0]
    assert "zz_pipe.png: not a regular file" in result.stderr and report["skipped"][0].endswith("zz_pipe.png")
    assert evaluate.few_images_warnings(50, 60) == [] and len(evaluate.few_images_warnings(60, 49)) == 1


# ---------------------------------------------------------------------------------------------
# Fuzzed metadata and oversized images

FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # a failure is shown as found: shrinking costs minutes
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Text as files may carry it: control characters, bidi overrides, line separators, long runs.
LABELS = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=300) | st.sampled_from(
    ["\x1b[2J", "a\u202eb", "\u2028", "x" * 5000, "", " ", "photo\n"]
)


def printable(text: str) -> bool:
    import unicodedata

    return all(unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") or ch == "\n" for ch in text)


@FUZZ
@given(names=st.tuples(LABELS, LABELS), fingerprint=LABELS)
def test_fuzzed_model_labels_never_reach_the_terminal_raw(world, tmp_path, reliability, names, fingerprint):
    gen, cfg = tiny_generator()
    path = tmp_path / "fuzzed.safetensors"
    checkpoint.save_generator(path, gen, cfg, names, 1, fingerprint)
    reliability.add("bad_inputs")
    result = cli("translate", world["good"], "-m", path, "--out", "-")
    assert result.exit_code in (0, 1), result.output
    assert printable(result.stderr) and len(result.stderr) < 2000
    if result.exit_code == 1:
        assert result.stderr.count("error:") == 1


@FUZZ
@given(field=st.sampled_from(styles.STYLE_TEXT_KEYS), value=LABELS)
def test_fuzzed_style_metadata_is_refused_or_used_never_printed_raw(world, tmp_path, reliability, field, value):
    tr = infer.Translator.open(world["run"], "B", "cpu")
    path = tmp_path / "fuzzed-style.safetensors"
    meta = styles.style_metadata(tr, "b", "seed:1")
    meta[field] = value
    checkpoint.save_tensors(path, {"style": torch.zeros(tr.style_dim)}, meta)
    reliability.add("bad_inputs")
    result = cli("translate", world["good"], "-m", world["run"], "--style", path, "--out", "-")
    assert result.exit_code in (0, 1), result.output
    assert printable(result.stderr) and len(result.stderr) < 2000


@settings(FUZZ, max_examples=6)
@given(width=st.integers(16, 20_000), over=st.floats(1.01, 7.0))
def test_fuzzed_oversized_images_are_skipped_without_decoding(world, tmp_path, reliability, width, over):
    """Images too large to tile within the budget (here 64 MiB: blend buffers for about 1.9
    megapixels, up to 7 times that): each is skipped from its header with the budget named, and
    the other input is translated."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(infer, "MEMORY_BUDGET", 64 << 20)
        tr = infer.Translator.open(world["run"], "B", "cpu")
        limit = infer.MEMORY_BUDGET // (3 * 3 * 4)
        height = math.ceil(limit * over / width)
        assume(height <= 2_000_000)  # PNG rows cost time to write, not to refuse
        work_w, work_h = tr.work_size(width, height)
        assume(work_w * work_h > limit)
        path = tmp_path / "big.png"
        Image.new("1", (width, height)).save(path)
        reliability.add("bad_inputs")
        result = cli("translate", path, world["good"], "-m", world["run"], "--out", tmp_path / "o", "--overwrite")
    assert result.exit_code == 3, result.output
    assert "memory budget" in result.stderr and "1 of 2 inputs failed" in result.stderr
