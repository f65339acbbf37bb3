"""`munit style encode|sample|list`: style files made from a reference image or a seed, saved
by path or by name in the model's run folder, and the list of a run's named styles."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from munit_cli import checkpoint, files
from munit_cli import styles as styles_mod
from munit_cli.errors import UsageError
from munit_cli.infer import Translator
from munit_cli.results import Result


@dataclass
class StyleFileResult(Result):
    path: Path
    domain: str
    source: str


def check_style_destination(out: Path | None, name: str | None, overwrite: bool) -> None:
    """Exactly one of `--out FILE` and `--name NAME`, checked before any model is loaded."""
    if (out is None) == (name is None):
        raise UsageError(
            "give --name NAME (saved in the model's run folder) or --out FILE.safetensors" + (", not both" if name else ""),
        )
    if name is not None:
        styles_mod.check_style_name(name)
    else:
        files.refuse_overwrite([Path(out)], overwrite)


def style_destination(tr: Translator, out: Path | None, name: str | None, overwrite: bool) -> Path:
    if name is None:
        return Path(out)
    path = styles_mod.named_style_destination(tr.loaded.path, name)
    files.refuse_overwrite([path], overwrite)
    return path


def encode_style_file(
    image: Path,
    *,
    model: str | os.PathLike | None,
    domain: str,
    out: Path | None = None,
    name: str | None = None,
    size: int | None = None,
    device: str = "auto",
    use_ema: bool = True,
    precision: str = "auto",
    overwrite: bool = False,
) -> StyleFileResult:
    """The style of `image` as seen by `domain`'s style encoder, saved as the style file `out`, or
    under `name` in the model's run folder (RUN/styles/NAME.safetensors)."""
    check_style_destination(out, name, overwrite)
    tr = Translator.open(model, domain, device, size, use_ema, precision)
    path = style_destination(tr, out, name, overwrite)
    source = files.display_path(image)
    path = styles_mod.save_style(path, tr.reference_style(Path(image)), tr, tr.target, source)
    return StyleFileResult(path, tr.domain_label(tr.target), source)


def sample_style_file(
    *,
    model: str | os.PathLike | None,
    domain: str,
    out: Path | None = None,
    name: str | None = None,
    seed: int = 0,
    index: int = 0,
    truncation: float = 1.0,
    overwrite: bool = False,
) -> StyleFileResult:
    """Style seed:SEED[:INDEX] (the same one `--style seed:SEED` gives), saved as the style file
    `out`, or under `name` in the model's run folder."""
    styles_mod.check_truncation(truncation)
    if index < 0:
        raise UsageError(f"--index must be 0 or more, got {index}")
    check_style_destination(out, name, overwrite)
    tr = Translator.open(model, domain, "cpu")
    path = style_destination(tr, out, name, overwrite)
    code = styles_mod.sample_style(seed, index, tr.style_dim, truncation, tr.loaded.priors.get(tr.target))
    label = styles_mod.seed_label(seed, index)
    return StyleFileResult(styles_mod.save_style(path, code, tr, tr.target, label), tr.domain_label(tr.target), label)


@dataclass
class StyleListResult(Result):
    run: Path
    styles: list[styles_mod.SavedStyle]


def list_styles(model: str | os.PathLike | None) -> StyleListResult:
    """The styles saved by name in the run that MODEL belongs to (no weights are loaded)."""
    path = checkpoint.resolve_model_path(model)
    run = checkpoint.run_folder(path)
    if run is None:
        raise UsageError(
            f"{files.display_path(path)} is not inside a training run, so it has no saved styles",
            hint="named styles live in RUN/styles: pass --model RUN",
        )
    return StyleListResult(run, styles_mod.saved_styles(run))
