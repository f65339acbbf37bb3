"""`munit demo`: the whole product on built-in data, in minutes on a CPU.

Synthetic shapes (outlines <-> filled, textured shapes) are generated, the tiny preset trains on
them, and the results are written next to the run: the test outlines translated in several
styles, and an animated interpolation between two styles.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from munit_cli import config, infer, synthetic, train
from munit_cli.console import err
from munit_cli.errors import MunitError

DEMO_TRAIN_IMAGES = 400
DEMO_TEST_IMAGES = 8
DEMO_STYLES = 5
DEMO_STEPS = 8


def run(out: Path, iters: int | None = None, seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise MunitError(f"{out} already exists and is not empty", hint="pass --overwrite or another --out")
        shutil.rmtree(out)
    data_dir, run_dir = out / "data", out / "run"
    err.print(f"making synthetic shapes in {data_dir}")
    synthetic.make_shapes(data_dir, n_train=DEMO_TRAIN_IMAGES, n_test=DEMO_TEST_IMAGES, size=64, seed=seed)
    overrides: dict[str, dict[str, Any]] = {"train": {"seed": seed, "device": "auto"}}
    if iters is not None:
        overrides["train"]["iters"] = iters
    cfg = config.resolve("tiny", overrides=overrides)
    summary = train.run(cfg, [data_dir / "trainA", data_dir / "trainB"], run_dir, names=("outline", "filled"))
    samples = sorted((run_dir / "samples").glob("*.png"))
    translations, interpolation = show_translations(out, data_dir / "testA", summary["generator"], seed)
    return {
        "data": str(data_dir),
        "run": str(run_dir),
        "model": summary["generator"],
        "sample_grid": str(samples[-1]) if samples else "",
        "translations": translations,
        "interpolation": interpolation,
    }


def show_translations(out: Path, test_a: Path, model: str, seed: int) -> tuple[str, str]:
    """The test outlines filled in DEMO_STYLES sampled styles (one grid), and a GIF morphing them
    between two of those styles."""
    grid = out / "translations.png"
    err.print(f"translating {test_a} in {DEMO_STYLES} styles")
    infer.translate([str(test_a)], model=model, to="B", num_styles=DEMO_STYLES, seed=seed, out=grid).raise_for_failures()
    morph = infer.interpolate(
        str(test_a),
        model=model,
        to="B",
        style_a=infer.seed_label(seed, 0),
        style_b=infer.seed_label(seed, 1),
        steps=DEMO_STEPS,
        gif=True,
        out=out / "interpolation",
    )
    morph.raise_for_failures()
    return str(grid), str(morph.gif)
