"""translate, style and interpolate: on an untrained tiny model in a fake run folder (the networks'
quality does not matter here, only that every path through the commands is exact and robust)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from processes import run_together
from typer.testing import CliRunner

from munit_cli import checkpoint, config, files, infer, interpolate, models, styles, tiles, video
from munit_cli.cli import app
from munit_cli.errors import MunitError, UsageError

REPO = Path(__file__).resolve().parents[1]
NAMES = ("outline", "filled")

pytestmark = pytest.mark.usefixtures("one_thread")


def make_run(run: Path, fingerprint: str, seed: int = 0, steps=(10,)) -> Path:
    """A run folder as training leaves it: generator checkpoints and preview PNGs per domain."""
    cfg = config.resolve("tiny", overrides={"model": {"dim": 8, "mlp_dim": 16, "n_res": 1}})
    torch.manual_seed(seed)
    gen, _ = models.build(cfg.model)
    for step in steps:
        path = checkpoint.checkpoint_paths(run, step)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save_generator(path, gen, cfg, NAMES, step, fingerprint)
    for d, domain in enumerate("AB"):
        for i in range(2):
            noise(run / "preview" / domain / f"{i:02d}.png", 32, 32, seed=10 * d + i)
    return run


def noise(path: Path, width: int, height: int, seed: int) -> Path:
    """Smooth random colours (a noisy upsampled grid), so translations differ visibly per input."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    small.resize((width, height), Image.Resampling.BILINEAR).save(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    run = make_run(root / "run", "fp-main", steps=(5, 10))
    other = make_run(root / "other", "fp-other", seed=1)
    inputs = root / "inputs"
    for i, (w, h) in enumerate([(45, 30), (32, 32), (40, 52)]):
        noise(inputs / f"im{i}.png", w, h, seed=100 + i)
    return {"root": root, "run": run, "other": other, "inputs": inputs, "x": inputs / "im0.png"}


def cli(*args: str, stdin: bytes | None = None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    assert "Traceback" not in result.output, result.output
    return result


def png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def read_style(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """Code and metadata (safetensors writes metadata keys in no fixed order, so not the bytes)."""
    tensors, meta = checkpoint.read_tensors(path, styles.STYLE_KIND)
    return tensors["style"].numpy(), meta


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Pipelines through real processes


def test_stdin_to_stdout_pipeline_keeps_the_size(world, tmp_path):
    """45 x 30 is not divisible by 4: the networks work at 44 x 32 and the output is 45 x 30 again."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop(checkpoint.MODEL_ENV, None)
    piped_line = f"cat {world['x']} | {sys.executable} -m munit_cli translate - --to B --model {world['run']} > {tmp_path}/out.png"
    # the same through $MUNIT_MODEL, with --json records parsed by a consumer downstream
    consumed_line = (
        f"{sys.executable} -m munit_cli translate {world['inputs']} --num-styles 2 --out {tmp_path}/dir --json"
        f" | {sys.executable} -c \"import json,sys; print(sum(1 for l in sys.stdin if json.loads(l)['path']))\""
    )
    shell = {"shell": True, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    piped, consumed = run_together(
        {"args": piped_line, "env": env, **shell}, {"args": consumed_line, "env": {**env, checkpoint.MODEL_ENV: str(world["run"])}, **shell}
    )
    assert piped.returncode == 0, piped.stderr
    img = png((tmp_path / "out.png").read_bytes())
    assert (img.format, img.size, img.mode) == ("PNG", (45, 30), "RGB")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.strip() == "6"


# ---------------------------------------------------------------------------------------------
# translate


def test_same_inputs_and_seed_give_identical_bytes(world, tmp_path):
    args = [world["inputs"], "--model", world["run"], "--num-styles", "2", "--seed", "3"]
    assert cli("translate", *args, "--out", tmp_path / "one").exit_code == 0
    assert cli("translate", *args, "--out", tmp_path / "two").exit_code == 0
    first = sorted((tmp_path / "one").iterdir())
    assert [p.name for p in first] == [p.name for p in sorted((tmp_path / "two").iterdir())]
    assert len(first) == 6
    assert all(p.read_bytes() == (tmp_path / "two" / p.name).read_bytes() for p in first)
    # a different seed gives other styles
    assert cli("translate", world["x"], "--model", world["run"], "--seed", "4", "--out", tmp_path / "four").exit_code == 0
    assert (tmp_path / "four" / "im0_seed4.png").read_bytes() != (tmp_path / "one" / "im0_seed3.png").read_bytes()


def test_styles_do_not_depend_on_batch_size_number_or_order_of_inputs(world, tmp_path):
    ims = sorted(world["inputs"].glob("*.png"))
    common = ["--model", world["run"], "--num-styles", "3", "--seed", "5"]
    runs = {
        "all": (ims, "1"),
        "reversed": (ims[::-1], "1"),
        "batched": (ims, "3"),
        "one": (ims[2:], "1"),
    }
    for name, (inputs, batch) in runs.items():
        out = tmp_path / name
        result = cli("translate", *inputs, *common, "--batch-size", batch, "--out", out, "--save-styles", out / "styles")
        assert result.exit_code == 0, result.output
    for style in ("seed5", "seed5-1", "seed5-2"):
        saved = [read_style(tmp_path / name / "styles" / f"{style}.safetensors") for name in runs]
        assert all(code.tobytes() == saved[0][0].tobytes() and meta == saved[0][1] for code, meta in saved)
        for name in runs:  # the last input's translations, however it was reached
            out = tmp_path / name / f"im2_{style}.png"
            if name == "batched":  # batched convolutions round differently in the last bit
                assert np.abs(pixels(out) - pixels(tmp_path / "all" / out.name)).max() <= 1
            else:
                assert out.read_bytes() == (tmp_path / "all" / out.name).read_bytes()
    # the k-th sampled style is exactly seed:N:K
    tr = infer.Translator.open(world["run"], "B", "cpu")
    sampled = styles.resolve_styles(tr, num_styles=3, seed=5)
    assert [s.label for s in sampled] == ["seed:5", "seed:5:1", "seed:5:2"]
    assert torch.equal(styles.resolve_style("seed:5:2", tr).code, sampled[2].code)
    half = styles.resolve_styles(tr, num_styles=3, seed=5, truncation=0.5)
    assert torch.allclose(half[1].code, sampled[1].code * 0.5)


def test_work_size_is_divisible_and_keeps_the_aspect(world):
    tr = infer.Translator.open(world["run"], "B", "cpu")
    assert tr.work_size(45, 30) == (44, 32)
    assert tr.work_size(3, 2) == (16, 16)  # never below what the networks' padding allows
    tr.size = 64
    assert tr.work_size(45, 30) == (96, 64)
    assert tr.work_size(300, 600) == (64, 128)


def test_outputs_to_a_file_a_grid_and_stdout(world, tmp_path):
    model = ["--model", world["run"]]
    assert cli("translate", world["x"], *model, "--out", tmp_path / "one.jpg").exit_code == 0
    assert png((tmp_path / "one.jpg").read_bytes()).format == "JPEG"

    result = cli("translate", world["x"], *model, "--num-styles", "3", "--grid", "--out", tmp_path / "grids")
    assert result.exit_code == 0, result.output
    grid = Image.open(tmp_path / "grids" / "im0_grid.png")
    assert grid.size == (2 + 4 * (45 + 2), 2 + 30 + 2)  # the input, then 3 translations

    # stdin and a file, two styles: 2 rows of input + 2 translations; cells fit the largest image
    result = cli("translate", "-", world["inputs"] / "im2.png", *model, "-n", "2", "--out", "-", stdin=world["x"].read_bytes())
    assert result.exit_code == 0, result.stderr
    assert png(result.stdout_bytes).size == (2 + 3 * (45 + 2), 2 + 2 * (52 + 2))

    result = cli("translate", world["x"], *model, "--size", "16", "--out", "-")
    assert png(result.stdout_bytes).size == (45, 30)


def test_json_records_one_per_output(world, tmp_path):
    styles = ["--style", "seed:2", "--style", str(world["inputs"] / "im1.png")]
    result = cli("translate", world["inputs"], "--model", world["run"], *styles, "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 6
    assert {r["style"] for r in records} == {"seed:2", str(world["inputs"] / "im1.png")}
    keys = {"input", "style", "path", "full_name", "frames", "fps", "duration"}
    assert all(set(r) == keys and Path(r["path"]).is_file() and r["frames"] is None for r in records)
    assert all(r["full_name"] is None for r in records)
    assert records[0]["input"].endswith("im0.png") and records[0]["path"].endswith("im0_seed2.png")
    assert records[1]["path"].endswith("im0_im1.png")  # a reference image's style is named after it


def test_one_bad_input_among_good_ones(world, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "text.png").write_text("not an image")
    (bad / "cut.png").write_bytes(world["x"].read_bytes()[:60])
    inputs = [world["x"], bad / "text.png", bad / "missing.png", bad / "cut.png", world["inputs"] / "im1.png"]
    result = cli("translate", *inputs, "--model", world["run"], "--out", tmp_path / "out")
    assert result.exit_code == 3, result.output
    assert "text.png: not an image" in result.stderr
    assert "missing.png: file not found" in result.stderr
    assert "cut.png: truncated or corrupt" in result.stderr
    assert "3 of 5 inputs failed" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["im0_seed0.png", "im1_seed0.png"]

    result = cli("translate", bad / "text.png", "--model", world["run"], "--out", tmp_path / "none")
    assert result.exit_code == 1
    assert "no input could be translated" in result.stderr


def test_unwritable_outputs_are_clear_errors(world, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for extra in (["--out", blocker / "sub"], ["--out", tmp_path / "ok", "--save-styles", blocker / "styles"]):
        result = cli("translate", world["x"], "--model", world["run"], *extra)
        assert result.exit_code == 1, result.output
        assert "could not write" in result.stderr


def test_model_resolution(world, tmp_path, monkeypatch):
    monkeypatch.delenv(checkpoint.MODEL_ENV, raising=False)
    with pytest.raises(UsageError, match=r"--model \(not given\) and \$MUNIT_MODEL \(not set\)"):
        checkpoint.resolve_model_path(None)
    newest = world["run"] / "checkpoints" / "gen_00000010.safetensors"
    assert checkpoint.resolve_model_path(world["run"]) == newest
    monkeypatch.setenv(checkpoint.MODEL_ENV, str(world["run"]))
    assert checkpoint.resolve_model_path(None) == newest
    with pytest.raises(MunitError, match=r"tried .*checkpoints/gen_\*\.safetensors"):
        checkpoint.resolve_model_path(tmp_path)
    with pytest.raises(MunitError, match="no such file or folder"):
        checkpoint.resolve_model_path(tmp_path / "nope")
    assert checkpoint.run_folder(newest) == world["run"]
    assert checkpoint.run_folder(world["x"]) is None


def test_domains_by_name_or_letter():
    assert [infer.resolve_domain(v, NAMES) for v in ("B", "b", "filled", "FILLED", "A", "outline")] == list("bbbbaa")
    with pytest.raises(UsageError, match=r"between A \(outline\) and B \(filled\)"):
        infer.resolve_domain("photo", NAMES)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--truncation", "0"], "--truncation must be in (0, 1]"),
        (["--truncation", "1.5"], "--truncation must be in (0, 1]"),
        (["--to", "C"], "unknown domain 'C'"),
        (["--num-styles", "0"], "--num-styles must be from 1 to 1000"),
        (["--num-styles", "2", "--style", "seed:1"], "not both"),
        (["--style", "seed:x"], "expected seed:N"),
        (["--style", "nowhere.safetensors"], "no such file"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--size", "0"], "--size must be a positive"),
        (["--out", "-", "--json"], "both write to stdout"),
        (["--frobnicate"], "No such option"),
    ],
)
def test_bad_arguments_exit_2_without_traceback(world, args, message):
    result = cli("translate", world["x"], "--model", world["run"], *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_stdin_twice_and_bad_interpolation_arguments(world):
    assert "only once" in cli("translate", "-", "-", "--model", world["run"], stdin=b"").output
    for args, message in ((["--steps", "1"], "from 2 to 10000"), (["--mode", "cubic"], "unknown --mode")):
        result = cli("interpolate", world["x"], "--model", world["run"], *args)
        assert result.exit_code == 2 and message in result.output


# ---------------------------------------------------------------------------------------------
# style files


def test_style_file_round_trip(world, tmp_path):
    run, ref = world["run"], world["inputs"] / "im2.png"
    assert cli("style", "encode", ref, "--domain", "filled", "--model", run, "-o", tmp_path / "s1.safetensors").exit_code == 0
    assert cli("style", "sample", "--seed", "7", "--model", run, "-o", tmp_path / "s2.safetensors").exit_code == 0
    tr = infer.Translator.open(run, "B", "cpu")
    assert torch.equal(styles.load_style(tmp_path / "s1.safetensors", tr, "b"), tr.encode_style(tr.read_image(ref)))
    assert torch.equal(styles.load_style(tmp_path / "s2.safetensors", tr, "b"), styles.sample_style(7, 0, tr.style_dim))

    # a saved style translates exactly like the spec it was made from
    same = [("s1.safetensors", str(ref)), ("s2.safetensors", "seed:7")]
    for saved, spec in same:
        a = cli("translate", world["x"], "--model", run, "--style", tmp_path / saved, "--out", "-").stdout_bytes
        b = cli("translate", world["x"], "--model", run, "--style", spec, "--out", "-").stdout_bytes
        assert a == b and png(a).size == (45, 30)


def test_ema_weights_by_default_and_raw_ones_with_no_ema(world, tmp_path):
    """A file holding raw and EMA weights translates, interpolates and encodes styles like a file
    holding only the EMA weights; with --no-ema like a file holding only the raw ones."""
    cfg = config.resolve("tiny", overrides={"model": {"dim": 8, "mlp_dim": 16, "n_res": 1}})
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(models.build(cfg.model)[0])
    raw, ema = nets
    both, raw_only, ema_only = (tmp_path / f"{n}.safetensors" for n in ("both", "raw", "ema"))
    checkpoint.save_generator(both, raw, cfg, NAMES, 10, "fp-ema", ema=ema)
    checkpoint.save_generator(raw_only, raw, cfg, NAMES, 10, "fp-ema")
    checkpoint.save_generator(ema_only, ema, cfg, NAMES, 10, "fp-ema")
    ref = world["inputs"] / "im2.png"

    def outputs(model: Path, *flags: str) -> tuple[bytes, bytes, np.ndarray]:
        translated = cli("translate", world["x"], "--model", model, "-n", "1", "--out", "-", *flags).stdout_bytes
        morph = tmp_path / f"morph_{model.stem}_{len(flags)}"
        assert cli("interpolate", world["x"], "--model", model, "--steps", "3", "--out", morph, *flags).exit_code == 0
        style = tmp_path / f"style_{model.stem}_{len(flags)}.safetensors"
        assert cli("style", "encode", ref, "--model", model, "-o", style, *flags).exit_code == 0
        return translated, (morph / "frames" / "im0_001.png").read_bytes(), read_style(style)[0]

    default, no_ema = outputs(both), outputs(both, "--no-ema")
    want_ema, want_raw = outputs(ema_only), outputs(raw_only)
    for got, want in ((default, want_ema), (no_ema, want_raw)):
        assert got[:2] == want[:2] and np.array_equal(got[2], want[2])
    assert default[0] != no_ema[0] and default[1] != no_ema[1] and not np.array_equal(default[2], no_ema[2])


def test_style_from_another_model_or_domain_is_a_clear_error(world, tmp_path):
    theirs = tmp_path / "theirs.safetensors"
    assert cli("style", "sample", "--seed", "1", "--model", world["other"], "-o", theirs).exit_code == 0
    result = cli("translate", world["x"], "--model", world["run"], "--style", theirs, "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert "made by another model" in result.stderr

    for_a = tmp_path / "for_a.safetensors"
    assert cli("style", "sample", "--domain", "A", "--model", world["run"], "-o", for_a).exit_code == 0
    result = cli("translate", world["x"], "--model", world["run"], "--style", for_a, "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert "a style for domain A (outline), but this needs one for B (filled)" in result.stderr
    assert cli("translate", world["x"], "--model", world["run"], "--to", "A", "--style", for_a, "--out", tmp_path / "o").exit_code == 0

    with pytest.raises(MunitError, match="not a munit style file"):
        styles.load_style(world["run"] / "checkpoints" / "gen_00000010.safetensors", infer.Translator.open(world["run"], "B"), "b")


# ---------------------------------------------------------------------------------------------
# interpolate


@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_interpolation_ends_equal_translate(world, tmp_path, mode):
    ref = world["inputs"] / "im1.png"
    out = tmp_path / "morph"
    args = ["--model", world["run"], "--size", "40"]
    result = cli("interpolate", world["x"], *args, "--style-a", "seed:3", "--style-b", ref, "--steps", "5", "--mode", mode, "--gif", "--out", out)
    assert result.exit_code == 0, result.output
    frames = sorted((out / "frames").iterdir())
    assert [p.name for p in frames] == [f"im0_{t:03d}.png" for t in range(5)]
    for frame, style in ((frames[0], "seed:3"), (frames[-1], str(ref))):
        assert frame.read_bytes() == cli("translate", world["x"], *args, "--style", style, "--out", "-").stdout_bytes
    assert frames[1].read_bytes() != frames[0].read_bytes()
    gif = Image.open(out / "interpolation.gif")
    assert gif.n_frames == 5 and gif.size == (45, 30)  # one input: the frames themselves
    assert Image.open(out / "strip.png").size == (2 + 5 * (45 + 2), 2 + 30 + 2)


def test_interpolating_again_with_fewer_frames_names_the_earlier_ones(world, tmp_path):
    out, args = tmp_path / "morph", ["--model", world["run"], "--size", "40", "--out", tmp_path / "morph"]
    assert cli("interpolate", world["x"], *args, "--steps", "5").exit_code == 0
    result = cli("interpolate", world["x"], *args, "--steps", "3", "--overwrite")
    assert result.exit_code == 0, result.output
    assert "also holds 2 other PNG files" in result.stderr and "im0_003.png, im0_004.png" in result.stderr
    assert sorted(p.name for p in (out / "frames").iterdir()) == [f"im0_{t:03d}.png" for t in range(5)]  # kept
    again = cli("interpolate", world["x"], *args, "--steps", "5", "--overwrite")
    assert again.exit_code == 0 and "other PNG" not in again.stderr


def test_interpolation_styles():
    s1, s2 = torch.randn(8), torch.randn(8)
    for mode in interpolate.MODES:
        codes = interpolate.interpolate_styles(s1, s2, 4, mode)
        assert codes.shape == (4, 8) and torch.equal(codes[0], s1) and torch.equal(codes[-1], s2)
    linear = interpolate.interpolate_styles(s1, s2, 3, "linear")
    assert torch.allclose(linear[1], (s1 + s2) / 2)
    unit = interpolate.interpolate_styles(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 3, "slerp")
    assert torch.allclose(unit[1].norm(), torch.tensor(1.0))  # along the circle, not the chord


def test_interpolate_without_input_uses_the_run_previews(world, tmp_path):
    gen_file = world["run"] / "checkpoints" / "gen_00000010.safetensors"
    result = cli("interpolate", "--model", gen_file, "--steps", "3", "--out", tmp_path / "p", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [Path(p).name for p in summary["frames"]] == [f"{i:02d}_{t:03d}.png" for i in range(2) for t in range(3)]
    assert summary["gif"] is None and Path(summary["strip"]).is_file()
    # B -> A reads the B previews; stdin works too
    result = cli("interpolate", "--model", world["run"], "--to", "A", "--steps", "2", "--out", tmp_path / "q")
    assert result.exit_code == 0 and len(list((tmp_path / "q" / "frames").iterdir())) == 4
    result = cli("interpolate", "-", "--model", world["run"], "--steps", "2", "--out", tmp_path / "s", stdin=world["x"].read_bytes())
    assert result.exit_code == 0 and sorted(p.name for p in (tmp_path / "s" / "frames").iterdir()) == ["stdin_000.png", "stdin_001.png"]

    stray = tmp_path / "gen.safetensors"
    stray.write_bytes(gen_file.read_bytes())
    result = cli("interpolate", "--model", stray, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "not inside a training run" in result.stderr


def test_demo_shows_translations_in_five_styles_and_a_gif(world, tmp_path):
    from munit_cli import demo

    grid, gif = demo.show_translations(tmp_path, world["inputs"], world["run"], seed=0)
    cell_w, cell_h = 45, 52  # the largest input's width and height
    assert Image.open(grid).size == (2 + (1 + demo.DEMO_STYLES) * (cell_w + 2), 2 + 3 * (cell_h + 2))
    assert gif is not None
    assert Image.open(gif).n_frames == demo.DEMO_STEPS


def test_bf16_translation_stays_within_a_pixel_level_of_float32(world):
    """The CPU fast path (bf16 autocast, channels_last) against the float32 reference, on the same
    inputs and styles: the documented tolerance is a mean absolute difference of at most 1.5 levels
    of 256 per channel, and 99% of values within 6 levels (measured on this untrained test model: 1.0
    and 4; on a model trained 20 steps: 0.4 and 2)."""
    outputs = {}
    for precision in ("fp32", "bf16"):
        tr = infer.Translator.open(world["run"], "B", "cpu", precision=precision)
        assert tr.precision == precision
        styles_b = torch.randn(3, tr.style_dim, generator=torch.Generator().manual_seed(0))
        outputs[precision] = []
        for path in sorted(world["inputs"].iterdir()):
            img = tr.read_image(path)
            for y in tr.translate_batch(tr.to_input(img), styles_b):
                outputs[precision].append(np.asarray(tr.to_output(y[0], img.size), dtype=np.float64))
    diffs = np.concatenate([np.abs(a - b).ravel() for a, b in zip(outputs["fp32"], outputs["bf16"])])
    assert diffs.size == 3 * (45 * 30 + 32 * 32 + 40 * 52) * 3  # 3 styles, RGB
    assert diffs.mean() <= 1.5 and np.percentile(diffs, 99) <= 6, (diffs.mean(), np.percentile(diffs, 99))
    assert diffs.max() > 0  # the two paths really differ: bf16 ran


# ---------------------------------------------------------------------------------------------
# Names longer than a file system takes


LONG_STEMS = {
    "ascii235": "x" * 235,
    "ascii250": "y" * 250,
    "utf8_250": "é" * 125,  # 2 bytes each
    "utf8_cjk": "日" * 83,  # 3 bytes each: 249
}


def test_fit_name_cuts_at_a_character_and_keeps_long_names_apart():
    assert files.fit_name("short", "_seed0.png") == "short_seed0.png"
    for stem in LONG_STEMS.values():
        name = files.fit_name(stem, "_seed0-1.png")
        assert len(os.fsencode(name)) <= 255 and name.endswith("_seed0-1.png")
        name.encode("utf-8")  # no character cut in half
        if len(os.fsencode(stem + "_seed0-1.png")) > 255:
            assert name.startswith(stem[:50]) and "~" in name
    twins = [files.fit_name("z" * 300 + end, ".png") for end in ("a", "b")]
    assert twins[0] != twins[1] and twins[0][:240] == twins[1][:240]
    assert len(os.fsencode(files.temp_path(Path("d") / ("x" * 255)).name)) <= 255


def test_long_input_names_give_outputs_within_255_bytes(world, tmp_path):
    folder = tmp_path / "long"
    for stem in LONG_STEMS.values():
        noise(folder / f"{stem}.png", 32, 24, seed=len(stem))
    out = tmp_path / "out"
    result = cli("translate", folder, "--model", world["run"], "-n", "2", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 8 and len({r["path"] for r in records}) == 8
    for r in records:
        name = Path(r["path"]).name
        assert Path(r["path"]).is_file() and len(os.fsencode(name)) <= 255
        stem = Path(r["input"]).stem
        full = f"{stem}_{Path(r['path']).stem.rsplit('_', 1)[1]}.png"
        assert r["full_name"] == (None if name == full else full)
        assert stem in LONG_STEMS.values()
    shortened = [r for r in records if r["full_name"]]
    assert len(shortened) == 6  # all but the 235-byte name's, which fit as they are
    assert result.stderr.count("6 output names would be longer than 255 bytes") == 1
    assert sorted(os.listdir(out)) == sorted(Path(r["path"]).name for r in records)  # no temporaries left

    long_ref = folder / f"{LONG_STEMS['ascii250']}.png"
    styles_dir = tmp_path / "styles"
    result = cli("translate", world["x"], "--model", world["run"], "--style", long_ref, "--out", tmp_path / "o2",
                 "--save-styles", styles_dir, "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["style"] == str(long_ref)  # the full reference name
    (saved,) = os.listdir(styles_dir)
    assert len(os.fsencode(saved)) <= 64 + len(".safetensors") and "~" in saved

    result = cli("interpolate", folder / f"{LONG_STEMS['utf8_cjk']}.png", "--model", world["run"], "--steps", "3",
                 "--out", tmp_path / "morph", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert len(summary["frames"]) == 3 and set(summary["full_names"]) == set(summary["frames"])
    assert all(len(os.fsencode(Path(p).name)) <= 255 and Path(p).is_file() for p in summary["frames"])
    assert sorted(summary["full_names"].values()) == [f"{LONG_STEMS['utf8_cjk']}_{t:03d}.png" for t in range(3)]
    assert result.stderr.count("3 output names would be longer") == 1


def test_a_folder_of_links_translates_and_names_what_it_skipped(world, tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    for path in sorted(world["inputs"].glob("*.png")):
        os.symlink(path, links / path.name)
    os.symlink(tmp_path / "gone.png", links / "gone.png")
    (links / "sub").mkdir()
    os.symlink(links, links / "sub" / "up")  # a loop: the folder above
    os.symlink(tmp_path, links / "out")  # a folder outside
    result = cli("translate", links, "--model", world["run"], "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "out")) == ["im0_seed0.png", "im1_seed0.png", "im2_seed0.png"]
    assert "3 skipped: 1 broken link, 1 link leaves the folder, 1 link loops to a folder above it" in result.stderr
    assert pixels(tmp_path / "out" / "im0_seed0.png").shape == (30, 45, 3)


# ---------------------------------------------------------------------------------------------
# Any size (tiles) and any length (videos), through the command line


def test_tiled_translation_matches_the_whole_one_without_seams(world, tmp_path, monkeypatch):
    big = noise(tmp_path / "big.png", 128, 96, seed=7)
    whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
    assert cli("translate", big, "--model", world["run"], "--out", whole).exit_code == 0
    done = []
    real = tiles.translate_tiled
    monkeypatch.setattr(tiles, "translate_tiled", lambda tr, x, s, tile, on_tile: real(tr, x, s, tile, lambda: done.append(tile) or on_tile()))
    result = cli("translate", big, "--model", world["run"], "--tile", "96", "--out", tiled)  # two tiles, one seam
    assert result.exit_code == 0, result.output
    assert done == [96, 96]
    a, b = pixels(whole), pixels(tiled)
    assert a.shape == b.shape == (96, 128, 3)
    assert np.abs(a - b).mean(axis=(0, 1)).max() <= 2.0
    bad = cli("translate", big, "--model", world["run"], "--tile", "30", "--out", tmp_path / "x.png")
    assert bad.exit_code == 2 and "--tile 30" in bad.stderr and not (tmp_path / "x.png").exists()


def test_a_large_input_is_tiled_instead_of_refused(world, tmp_path, monkeypatch):
    """Over the memory budget, an input is tiled automatically (it used to be refused)."""
    big = noise(tmp_path / "big.png", 128, 96, seed=8)
    whole = tmp_path / "whole.png"
    assert cli("translate", big, "--model", world["run"], "--out", whole).exit_code == 0
    tr = infer.Translator.open(world["run"], "B", "cpu")
    monkeypatch.setattr(infer, "MEMORY_BUDGET", 64 * 64 * infer.BYTES_PER_PIXEL_PER_DIM * tr.loaded.cfg.model.dim)
    assert tr.tiled(128, 96) and not tr.tiled(48, 32)
    calls = []
    real = tiles.translate_tiled
    monkeypatch.setattr(tiles, "translate_tiled", lambda tr, x, *rest: calls.append(x.shape) or real(tr, x, *rest))
    result = cli("translate", big, world["x"], "--model", world["run"], "--out", tmp_path / "auto")
    assert result.exit_code == 0, result.output
    assert calls == [(1, 3, 96, 128)]  # the large one tiled, the small one whole
    assert pixels(tmp_path / "auto" / "big_seed0.png").shape == (96, 128, 3)


def test_a_video_translates_frame_by_frame_with_its_sound(world, tmp_path):
    import test_video

    clip = test_video.make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "clip_b.mp4"
    result = cli("translate", clip, "--model", world["run"], "--style", "seed:3", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    source = video.probe(clip)
    assert (record["frames"], record["fps"], record["path"]) == (source.frames, source.fps, str(out))
    assert abs(record["duration"] - source.duration) < 1 / source.fps
    assert test_video.audio_packets(out) == test_video.audio_packets(clip)
    frames = test_video.decoded(out)
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    still = tmp_path / "still.png"
    Image.fromarray(test_video.decoded(clip)[0].astype(np.uint8)).save(still)
    assert cli("translate", still, "--model", world["run"], "--style", "seed:3", "--out", tmp_path / "f.png").exit_code == 0
    first = pixels(tmp_path / "f.png")
    assert np.abs(frames[0].astype(np.int32) - first).mean() < 12  # the same translation, through a lossy codec

    folder = tmp_path / "many"
    result = cli("translate", clip, world["x"], "--model", world["run"], "-n", "2", "--out", folder)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(folder)) == ["clip_seed0-1.mp4", "clip_seed0.mp4", "im0_seed0-1.png", "im0_seed0.png"]

    for args, said in (
        (["--out", "-"], "is a video: its translation goes to a folder"),
        (["-n", "2", "--out", tmp_path / "two.mp4"], "holds one style's translation"),
    ):
        result = cli("translate", clip, "--model", world["run"], *args)
        assert result.exit_code == 2 and said in result.stderr, result.output
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    result = cli("translate", fake, world["x"], "--model", world["run"], "--out", tmp_path / "mixed")
    assert result.exit_code == 3 and "fake.mp4 is not a video file" in result.stderr, result.output
    assert sorted(os.listdir(tmp_path / "mixed")) == ["im0_seed0.png"]


def test_interpolate_writes_an_mp4_morph(world, tmp_path):
    result = cli("interpolate", world["x"], "--model", world["run"], "--steps", "4", "--fps", "4", "--mp4", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mp4"] == str(tmp_path / "interpolation.mp4")
    info = video.probe(tmp_path / "interpolation.mp4")
    assert (info.frames, info.fps) == (4, 4.0)
