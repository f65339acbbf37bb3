"""`munit demo`: the whole product on built-in data, in minutes on a CPU.

Synthetic shapes (outlines <-> filled, textured shapes) are generated, the `cpu` preset trains on
them for a short run (DEMO_TRAIN), and the results are written next to the run: the test
outlines translated in several styles, and an animated interpolation between two styles.

The demo folder holds a marker file first of all; `--overwrite` removes only a folder that has
it, and in it only what the demo writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from munit_cli import config, files, interpolate, synthetic, train, translate
from munit_cli.console import err
from munit_cli.errors import MunitError
from munit_cli.results import Result
from munit_cli.styles import seed_label

DEMO_TRAIN_IMAGES = 400
DEMO_TEST_IMAGES = 8
# The recommended CPU setting, for 2000 steps at batch 2, with tiny's shorter weight average: the
# preset's spans about the last 1000 steps, too long for a run this short (shapes quality gate, one
# thread, content IoU after 2000 steps: 0.71 with EMA 0.99, 0.62 with 0.999). Batch 2 instead of
# the preset's 4: a step costs 0.62 of one at batch 4 on two cores, and 2000 of them fill as well
# and vary more (IoU 0.67, diversity 0.42; batch 4: 0.71 and 0.36) (docs/benchmarks.md). Random
# styles from N(0, I), not the preset's fitted prior: the shapes' encoded styles lie close
# together, and styles drawn there fill the shapes in muted, alike colours (diversity 0.36) where
# N(0, I) draws give the vivid, clearly different fills the demo is for. Each domain keeps its own
# content encoder: on the shapes one shared encoder filled as well (IoU 0.70) but its styles
# differed less (diversity 0.22 against 0.34-0.36), under the gate's 0.25. The cycle and learning
# rate the demo was measured with (the gate above), not the preset's newer ones for line art.
DEMO_PRESET = "cpu"
DEMO_TRAIN = {"iters": 2000, "batch_size": 2, "ema_decay": 0.99}
DEMO_MODEL = {"shared_content_encoder": False, "style_prior": "normal"}
DEMO_LOSS = {"cycle_detach": ""}
DEMO_OPTIM = {"lr": 4e-4}
DEMO_STYLES = 5
DEMO_STEPS = 8
MARKER = ".munit-demo"
DATA, RUN, TRANSLATIONS, INTERPOLATION = "data", "run", "translations.png", "interpolation"
DEMO_ENTRIES = (DATA, RUN, TRANSLATIONS, INTERPOLATION)  # what the demo writes besides its marker


@dataclass
class DemoResult(Result):
    data: Path
    run: Path
    model: Path
    sample_grid: Path | None
    translations: Path
    interpolation: Path | None


def run(out: Path, iters: int | None = None, seed: int = 0, overwrite: bool = False) -> DemoResult:
    out = Path(out)
    clear_demo_folder(out, overwrite)
    files.write_atomic(out / MARKER, b"made by munit demo: munit demo --overwrite may replace what it wrote here\n")
    data_dir, run_dir = out / DATA, out / RUN
    err.print(f"making synthetic shapes in {files.display_path(data_dir)}")
    synthetic.make_shapes(data_dir, n_train=DEMO_TRAIN_IMAGES, n_test=DEMO_TEST_IMAGES, size=64, seed=seed)
    train_settings: dict[str, Any] = {"seed": seed, "device": "auto"}
    if iters is not None:
        train_settings["iters"] = iters
    cfg = config.resolve(DEMO_PRESET, overrides=overrides(**train_settings))
    trained = train.run(cfg, [data_dir / "trainA", data_dir / "trainB"], run_dir, names=("outline", "filled"))
    if trained is None:
        raise MunitError("the demo ran as a worker of a distributed run, which it does not support")
    samples = sorted((run_dir / "samples").glob("*.png"))
    translations, interpolation = show_translations(out, data_dir / "testA", trained.generator, seed)
    return DemoResult(data_dir, run_dir, trained.generator, samples[-1] if samples else None, translations, interpolation)


def overrides(**train_settings: Any) -> dict[str, dict[str, Any]]:
    """The demo's changes to its preset, with `train_settings` on top (the quality gate uses this)."""
    return {"model": dict(DEMO_MODEL), "loss": dict(DEMO_LOSS), "optim": dict(DEMO_OPTIM), "train": {**DEMO_TRAIN, **train_settings}}


def clear_demo_folder(out: Path, overwrite: bool) -> None:
    """Make room for a demo in `out`. A non-empty folder needs `overwrite`, and then must carry the
    demo's marker: only the demo's own entries are removed, so nothing munit did not write is lost."""
    name = files.display_path(out)
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise MunitError(f"{name}: exists and is not a folder", hint="choose another --out")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise MunitError(f"{name} already exists and is not empty", hint="pass --overwrite or another --out")
    if not (out / MARKER).is_file():
        raise MunitError(
            f"{name}: refusing to overwrite a folder munit demo did not make (it has no {MARKER} marker file)",
            hint="choose another --out; --overwrite only replaces an earlier demo's folder",
        )
    for entry in DEMO_ENTRIES:
        files.remove(out / entry)


def show_translations(out: Path, test_a: Path, model: Path, seed: int) -> tuple[Path, Path | None]:
    """The test outlines filled in DEMO_STYLES sampled styles (one grid), and a GIF morphing them
    between two of those styles."""
    grid = out / TRANSLATIONS
    err.print(f"translating {files.display_path(test_a)} in {DEMO_STYLES} styles")
    translate.translate_files([str(test_a)], model=model, to="B", num_styles=DEMO_STYLES, seed=seed, out=grid).raise_for_failures()
    morph = interpolate.interpolate(
        str(test_a),
        model=model,
        to="B",
        style_a=seed_label(seed, 0),
        style_b=seed_label(seed, 1),
        steps=DEMO_STEPS,
        gif=True,
        out=out / INTERPOLATION,
    )
    morph.raise_for_failures()
    return grid, Path(morph.gif) if morph.gif else None
