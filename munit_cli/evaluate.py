"""`munit evaluate`: a model's quality in the numbers the literature uses, per direction.

For A -> B: every test A image is translated with `num_styles` random styles. KID and FID compare
the first translation of each input (each with its own random style, so the set samples the
model's whole output distribution) with the real test B images; diversity is the mean pairwise
distance between one input's translations. When testA and testB share file names (ground-truth
pairs), each A image is also translated with the style encoded from its B twin, and L1, PSNR and
SSIM compare the result with the twin. B -> A swaps the roles.

Images are prepared as the model was trained (shorter side to data.load_size, centre crop of
data.crop_size) and translations are scored as the 8-bit pixels a saved PNG would hold. Style k
of input i (in sorted order) is `seed:SEED:(i * num_styles + k)`, so `munit translate --style`
reproduces any translation scored here.

FID and KID need many images: below MIN_RELIABLE_IMAGES per set the result carries a warning.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from rich.markup import escape

from munit_cli import checkpoint, files, images, infer, metrics, styles
from munit_cli.console import err, progress
from munit_cli.errors import MunitError, UsageError
from munit_cli.export import weights_used
from munit_cli.results import Result
from munit_cli.runtime import pick_device

DIRECTIONS = (("a", "b"), ("b", "a"))
# FID's bias shrinks only with thousands of images; below this many per set the scores are too
# noisy even to rank two models, and the result says so.
MIN_RELIABLE_IMAGES = 50
MAX_BATCH = 256  # Inception at 299 px holds tens of MB of activations per image


@dataclass
class PairedScores(Result):
    """Mean L1, PSNR and SSIM of example-guided translations against their ground truth."""

    pairs: int
    l1: float
    psnr: float
    ssim: float


@dataclass
class DirectionScores(Result):
    direction: str
    inputs: int
    reference_images: int
    kid_mean: float
    kid_std: float
    fid: float
    diversity_metric: str
    diversity_lpips: float | None = None  # one of the two diversities is set, the other None
    diversity_l1: float | None = None
    paired: PairedScores | None = None
    # with paired test folders: of the twins' white pixels, the fraction the random-style
    # translations colour (colour past the outlines); lower is better
    colour_on_white: float | None = None


@dataclass
class EvaluateResult(Result):
    model: str
    step: int
    weights: str
    names: list[str]
    num_styles: int
    seed: int
    image_size: int
    inception: dict[str, str]
    skipped: list[str]
    directions: dict[str, DirectionScores]
    warnings: list[str] = field(default_factory=list)
    saved: str | None = None  # where --save wrote these scores (RUN/evaluations/), for `munit report`


EVALUATIONS_DIR = "evaluations"


@dataclass
class DomainImages:
    """One domain's test images: sorted keys (relative path without extension, for pairing), the
    prepared images and the same pixels as a uint8 (N, C, H, W) tensor."""

    keys: list[str]
    images: list[Image.Image]
    pixels: torch.Tensor


def prepare(img: Image.Image, cfg) -> Image.Image:
    return images.center_crop(images.resize_shorter(img, cfg.data.load_size), cfg.data.crop_size)


def load_images(folder: Path, tr: infer.Translator, skipped: list[str]) -> DomainImages:
    """The readable images of `folder`; unreadable ones (and files that are not regular files, or
    too large to prepare within the memory budget) are reported and their names appended to `skipped`."""
    paths = images.list_images(Path(folder))
    keys, prepared = [], []
    for path in paths:
        try:
            img = prepare(tr.read_image(path, size=tr.loaded.cfg.data.load_size, whole=True), tr.loaded.cfg)
        except MunitError as exc:
            err.print(f"[yellow]skipped:[/] {escape(str(exc))}", markup=True)
            skipped.append(files.display_path(path))
            continue
        keys.append(path.relative_to(folder).with_suffix("").as_posix())
        prepared.append(img)
    if len(prepared) < 2:
        raise MunitError(
            f"{files.display_path(folder)}: {len(prepared)} readable image(s); evaluation needs at least 2"
        )
    return DomainImages(keys, prepared, torch.stack([images.to_tensor(img) for img in prepared]))


def quantised(x: torch.Tensor) -> torch.Tensor:
    """A translation (1, C, H, W) in [-1, 1] as the uint8 (C, H, W) pixels its PNG would hold."""
    return images.to_tensor(images.tensor_to_image(x[0]))


def direction_label(tr: infer.Translator) -> str:
    return f"{tr.domain_label(tr.source)} -> {tr.domain_label(tr.target)}"


def evaluate_direction(
    tr: infer.Translator,
    source: DomainImages,
    target: DomainImages,
    target_features: torch.Tensor,
    *,
    num_styles: int,
    seed: int,
    lpips: metrics.LPIPS | None,
    net,
    batch_size: int,
    kid_subsets: int,
    bar,
    precision: str = "auto",
    prior: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DirectionScores:
    """`precision` is the Inception network's (the real set's features must be made the same way).
    The random styles come from the model's fitted style prior where it has one, or from `prior`
    (mean, L) where given: mean + L z instead of z ~ N(0, I), z the same seeded draws."""
    prior = prior if prior is not None else tr.loaded.priors.get(tr.target)
    first, spreads, on_twins = [], [], []
    pairs = dict(twin_index(source, target))
    for i, img in enumerate(source.images):
        codes = torch.stack([styles.sample_style(seed, i * num_styles + k, tr.style_dim, prior=prior) for k in range(num_styles)])
        outputs = torch.stack([quantised(x) for x in tr.translate_batch(tr.to_input(img), codes)])
        first.append(outputs[0])
        if i in pairs:
            on_twins.append(outputs)
        if num_styles > 1:
            spreads.append(metrics.diversity(outputs, lpips))
        bar.update(1)
    fake = metrics.features(torch.stack(first), net, tr.device, batch_size, bar, precision)
    kid_mean, kid_std = metrics.kid(target_features, fake, subsets=kid_subsets, seed=seed)
    key, label = metrics.diversity_name(lpips)
    diversity = sum(spreads) / len(spreads) if spreads else None
    return DirectionScores(
        direction_label(tr),
        len(source.images),
        len(target.images),
        kid_mean,
        kid_std,
        metrics.fid(target_features, fake),
        label,
        diversity_lpips=diversity if key == metrics.DIVERSITY_LPIPS else None,
        diversity_l1=diversity if key == metrics.DIVERSITY_L1 else None,
        paired=paired_metrics(tr, source, target, bar),
        colour_on_white=(
            metrics.colour_on_white(torch.stack(on_twins), target.pixels[list(pairs.values())]) if pairs else None
        ),
    )


def twin_index(source: DomainImages, target: DomainImages) -> list[tuple[int, int]]:
    """(source index, target index) of every input that has a twin of the same name in the target set."""
    twins = {key: j for j, key in enumerate(target.keys)}
    return [(i, twins[key]) for i, key in enumerate(source.keys) if key in twins]


def paired_metrics(tr: infer.Translator, source: DomainImages, target: DomainImages, bar) -> PairedScores | None:
    """Example-guided translation of every input that has a twin of the same name in the target
    set: its content with the twin's encoded style, scored against the twin."""
    pairs = twin_index(source, target)
    if not pairs:
        return None
    outputs, truths = [], []
    for i, j in pairs:
        style = tr.encode_style(target.images[j])[None]
        outputs.append(quantised(tr.translate_batch(tr.to_input(source.images[i]), style)[0]))
        truths.append(target.pixels[j])
        bar.update(1)
    return paired_scores(torch.stack(outputs), torch.stack(truths))


def paired_scores(x: torch.Tensor, y: torch.Tensor) -> PairedScores:
    """Mean L1, PSNR and SSIM of uint8 images x against their ground truth y."""
    return PairedScores(
        len(x), float(metrics.l1(x, y).mean()), float(metrics.psnr(x, y).mean()), float(metrics.ssim(x, y).mean())
    )


def evaluate(
    model: str | os.PathLike | None,
    test_a: Path,
    test_b: Path,
    *,
    num_styles: int = 10,
    seed: int = 0,
    use_ema: bool = True,
    lpips_weights: Path | None = None,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "auto",
    kid_subsets: int = metrics.KID_SUBSETS,
    save: bool = False,
) -> EvaluateResult:
    """Both directions' KID, FID, diversity and (with paired test folders) L1, PSNR and SSIM.
    `save` also writes them into the model's run folder (RUN/evaluations/step_N.json), where
    `munit report` shows them."""
    styles.check_num_styles(num_styles)
    if not 1 <= batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be from 1 to {MAX_BATCH}, got {batch_size}")
    dev = pick_device(device)
    inception_precision = metrics.inception_precision(dev, precision)
    net = metrics.load_inception(str(dev))  # first: a missing [eval] extra should cost nothing
    lpips = metrics.LPIPS(Path(lpips_weights)).to(dev) if lpips_weights is not None else None
    loaded = checkpoint.load_model(model, dev, use_ema=use_ema)
    saved = saved_path(loaded, use_ema) if save else None  # before the work: a model outside a run cannot save
    translators = {target: infer.Translator.of(loaded, target, dev, precision=precision) for target in "ab"}
    skipped: list[str] = []
    sets = {
        "a": load_images(Path(test_a), translators["a"], skipped),
        "b": load_images(Path(test_b), translators["b"], skipped),
    }
    pairs = len(set(sets["a"].keys) & set(sets["b"].keys))
    n_a, n_b = len(sets["a"].keys), len(sets["b"].keys)
    # counted in images: real and translated sets through Inception, inputs, example-guided pairs
    total = 2 * (n_a + n_b) + (n_a + n_b) + 2 * pairs
    directions: dict[str, DirectionScores] = {}
    with progress("evaluate", total) as bar:
        # the real sets recur from run to run: their features come from the cache after the first
        real = {d: metrics.features(sets[d].pixels, net, dev, batch_size, bar, inception_precision, cache=True) for d in "ab"}
        for source, target in DIRECTIONS:
            directions[f"{source}_to_{target}"] = evaluate_direction(
                translators[target],
                sets[source],
                sets[target],
                real[target],
                num_styles=num_styles,
                seed=seed,
                lpips=lpips,
                net=net,
                batch_size=batch_size,
                kid_subsets=kid_subsets,
                bar=bar,
                precision=inception_precision,
            )
    warnings = few_images_warnings(n_a, n_b)
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", markup=True)
    result = EvaluateResult(
        files.display_path(loaded.path),
        loaded.step,
        weights_used(loaded, use_ema),
        list(loaded.names),
        num_styles,
        seed,
        loaded.cfg.data.crop_size,
        {"file": str(metrics.inception_path()), "sha256": metrics.INCEPTION_SHA256, "precision": inception_precision},
        skipped,
        directions,
        warnings,
        files.display_path(saved) if saved else None,
    )
    if saved is not None:
        files.write_atomic(saved, (json.dumps(result.to_json(), indent=1) + "\n").encode(), durable=True)
    return result


def saved_path(loaded: checkpoint.LoadedGenerator, use_ema: bool) -> Path:
    run = checkpoint.run_folder(loaded.path)
    if run is None:
        raise UsageError(
            f"--save: {files.display_path(loaded.path)} is not inside a training run, so there is no run folder to save into",
            hint="give the run folder (or a checkpoint inside it) as --model, or leave out --save and use --json",
        )
    suffix = "" if weights_used(loaded, use_ema) == "ema" else "_raw"
    return run / EVALUATIONS_DIR / f"step_{loaded.step:08d}{suffix}.json"


def few_images_warnings(*counts: int) -> list[str]:
    fewest = min(counts)
    if fewest >= MIN_RELIABLE_IMAGES:
        return []
    return [
        f"FID and KID from {fewest} images per set are unreliable (FID's bias shrinks only with thousands; "
        f"use at least {MIN_RELIABLE_IMAGES} test images per domain even for a rough comparison)"
    ]


def table(result: EvaluateResult):
    """The result as a rich table: one row per metric, one column per direction. Title and caption
    are Text, never read as markup, since they carry a path and the domain names."""
    from rich.table import Table
    from rich.text import Text

    directions = list(result.directions.values())
    a, b = result.names
    t = Table(title=Text(f"{result.model} (step {result.step}, {result.weights} weights)"))
    t.add_column("metric", no_wrap=True)
    for key in result.directions:
        t.add_column(key.upper().replace("_TO_", " -> "), justify="right", no_wrap=True)

    def row(label: str, values: list[Any], fmt: str) -> None:
        t.add_row(label, *("-" if v is None else format(v, fmt) for v in values))

    row("KID x 1000 (mean)", [d.kid_mean * 1000 for d in directions], ".2f")
    row("KID x 1000 (std)", [d.kid_std * 1000 for d in directions], ".2f")
    row("FID", [d.fid for d in directions], ".1f")
    if any(d.diversity_lpips is not None for d in directions):
        row("diversity (LPIPS)", [d.diversity_lpips for d in directions], ".4f")
    if any(d.diversity_l1 is not None for d in directions):
        row("diversity_l1 (not LPIPS)", [d.diversity_l1 for d in directions], ".4f")
    if any(d.paired for d in directions):
        row("paired L1", [d.paired and d.paired.l1 for d in directions], ".4f")
        row("paired PSNR (dB)", [d.paired and d.paired.psnr for d in directions], ".2f")
        row("paired SSIM", [d.paired and d.paired.ssim for d in directions], ".4f")
    if any(d.colour_on_white is not None for d in directions):
        row("colour on white", [d.colour_on_white for d in directions], ".4f")
    t.caption = Text(
        f"A = {a}, B = {b}; {result.num_styles} styles per input, seed {result.seed}, {result.image_size} px"
    )
    return t
