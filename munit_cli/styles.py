"""Style codes: sampled from a seed, encoded from a reference image, or read from a style file.

A style is a code s (style_dim,) for one domain of one model. `seed:N[:K]` names the K-th code
drawn for seed N, the same whatever else is sampled; a style file (safetensors) holds one code and
metadata naming the model (its fingerprint) and the domain, so it is refused anywhere else.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import torch

from munit_cli import checkpoint, files, images
from munit_cli.errors import MunitError, UsageError
from munit_cli.inputs import unique_name
from munit_cli.results import Result
from munit_cli.runtime import hash_seed

STYLE_KIND = "munit-style"
STYLE_FORMAT_VERSION = "1"
SEED_PREFIX = "seed:"
STYLE_TEXT_KEYS = ("format_version", "domain", "domain_name", "style_dim", "fingerprint")  # the ones munit reads
MAX_STYLES = 1000  # --num-styles or --style: every style is a full decoder pass per input, its output kept in memory
STYLES_DIR = "styles"  # a run's named styles: RUN/styles/NAME.safetensors
# A name is one folder entry: no path separator, no leading '.' (hidden) or '-' (read as an option),
# and no ':' (so it never reads as seed:N).
STYLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class StyleModel(Protocol):
    """What resolving a style needs of a loaded model and direction (`infer.Translator` is one)."""

    loaded: checkpoint.LoadedGenerator
    target: str

    @property
    def style_dim(self) -> int: ...

    def domain_name(self, domain: str) -> str: ...

    def domain_label(self, domain: str) -> str: ...

    def reference_style(self, path: Path) -> torch.Tensor: ...


@dataclass
class Style:
    """A style code for the target domain. `label` is a spec that gives it back (seed:7:2, a file);
    `tag` is a short unique name for files made with it."""

    label: str
    tag: str
    code: torch.Tensor  # (style_dim,)
    full_tag: str | None = None  # the tag before it was shortened to TAG_BYTES, when it was


# A style's part of an output name (a reference image's name can be long): the input's name keeps
# the rest of a file name's 255 bytes.
TAG_BYTES = 64


def domain_letter(domain: str) -> str:
    return domain.upper()


Prior = tuple[torch.Tensor, torch.Tensor]  # (mean, L): styles mean + L z, z ~ N(0, I)


def sample_style(seed: int, index: int, style_dim: int, truncation: float = 1.0, prior: Prior | None = None) -> torch.Tensor:
    """Style `index` of `seed`, drawn from N(0, I) by a generator of its own, so it is the same
    whatever else is sampled, translated or batched; scaled by `truncation` toward the mean. With a
    model's fitted `prior` (mean, L), the same draw z becomes mean + L z."""
    g = torch.Generator().manual_seed(hash_seed(seed, "style", index))
    z = torch.randn(style_dim, generator=g) * truncation
    return z if prior is None else prior[0] + prior[1] @ z


def fit_prior(codes: torch.Tensor) -> Prior:
    """A Gaussian fitted to style codes (N, style_dim): their mean and the Cholesky factor of their
    covariance (with a little added to its diagonal, so a flat direction stays drawable)."""
    codes = codes.double()
    cov = torch.cov(codes.T) + 1e-6 * torch.eye(codes.shape[1], dtype=torch.float64)
    return codes.mean(0).float(), torch.linalg.cholesky(cov).float()


def check_truncation(truncation: float) -> None:
    if not 0 < truncation <= 1:  # also refuses nan
        raise UsageError(f"--truncation must be in (0, 1], got {truncation}")


def check_num_styles(num_styles: int | None) -> None:
    if num_styles is not None and not 1 <= num_styles <= MAX_STYLES:
        raise UsageError(f"--num-styles must be from 1 to {MAX_STYLES}, got {num_styles}")


def seed_label(seed: int, index: int) -> str:
    return f"{SEED_PREFIX}{seed}" if index == 0 else f"{SEED_PREFIX}{seed}:{index}"


def parse_seed_spec(spec: str) -> tuple[int, int]:
    parts = spec[len(SEED_PREFIX) :].split(":")
    try:
        if len(parts) > 2:
            raise ValueError
        seed, index = int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise UsageError(f"bad style {spec!r}: expected seed:N or seed:N:K (integers)") from None
    if index < 0:
        raise UsageError(f"bad style {spec!r}: the style index K must be 0 or more")
    return seed, index


def style_metadata(model: StyleModel, domain: str, source: str) -> dict[str, str]:
    return {
        "format": STYLE_KIND,
        "format_version": STYLE_FORMAT_VERSION,
        "domain": domain_letter(domain),
        "domain_name": model.domain_name(domain),
        "style_dim": str(model.style_dim),
        "fingerprint": model.loaded.fingerprint,
        "source": source,
    }


def save_style(path: Path, code: torch.Tensor, model: StyleModel, domain: str, source: str) -> Path:
    """A style file: the code as tensor 'style' (style_dim,), and metadata naming its model and domain."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MunitError(f"could not write {files.display_path(path)}: {exc.strerror or exc}") from None
    checkpoint.save_tensors(path, {"style": code.float().reshape(-1)}, style_metadata(model, domain, source))
    return path


def read_style_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A style file's tensors and metadata, refused unless it carries a checksum and every label
    in it is short printable text (they reach the terminal in messages)."""
    name = files.display_path(path)
    tensors, meta = checkpoint.read_tensors(path, STYLE_KIND)
    if checkpoint.CHECKSUM_KEY not in meta:
        raise MunitError(
            f"{name}: no checksum in the style file, so its contents cannot be verified; refusing to load it",
            hint="make the style again with `munit style encode` or `munit style sample`",
        )
    for key in STYLE_TEXT_KEYS:
        checkpoint.check_text(meta.get(key), f"{name}: metadata {key!r}")
    return tensors, meta


def load_style(path: Path, model: StyleModel, domain: str) -> torch.Tensor:
    """The code of a style file made by this model for `domain`; anything else is a clear error."""
    tensors, meta = read_style_file(path)
    name = files.display_path(path)
    if meta["format_version"] != STYLE_FORMAT_VERSION:
        raise MunitError(f"{name}: unsupported style format version {meta['format_version']!r}")
    if meta["fingerprint"] != model.loaded.fingerprint:
        raise MunitError(
            f"{name}: this style was made by another model (fingerprint {meta['fingerprint']!r}, "
            f"this model {model.loaded.fingerprint!r})",
            hint="a style works only with the run that made it: make one for this model with "
            "`munit style encode` or `munit style sample`",
        )
    if meta["domain"] != domain_letter(domain):
        raise MunitError(
            f"{name}: a style for domain {meta['domain']} ({meta['domain_name']}), "
            f"but this needs one for {model.domain_label(domain)}",
            hint=f"translate with --to {meta['domain']}, or make a style for {domain_letter(domain)}",
        )
    code = tensors.get("style")
    if code is None or code.numel() != model.style_dim:
        raise MunitError(f"{name}: broken style file (expected a 'style' tensor of {model.style_dim} values)")
    if not bool(torch.isfinite(code).all()):
        raise MunitError(f"{name}: broken style file (the code holds NaN or infinite values)")
    return code.float().reshape(-1)


def check_style_name(name: str) -> str:
    if not STYLE_NAME.match(name) or name.endswith("."):
        raise UsageError(
            f"bad style name {name!r}: use 1 to 64 letters, digits, '.', '-' or '_', starting with a letter, "
            "digit or '_' (no path separators, no ':')"
        )
    return name


def named_style_path(run: Path, name: str) -> Path:
    return Path(run) / STYLES_DIR / f"{check_style_name(name)}.safetensors"


def named_style_destination(model_path: Path, name: str) -> Path:
    """Where `--name NAME` saves a style: the styles/ folder of the run the model belongs to."""
    run = checkpoint.run_folder(model_path)
    if run is None:
        raise UsageError(
            f"--name {name}: named styles are kept in the model's run folder, and "
            f"{files.display_path(model_path)} is not inside a training run",
            hint="write a style file instead: --out FILE.safetensors",
        )
    styles_folder(run)
    return named_style_path(run, name)


def styles_folder(run: Path) -> Path:
    """RUN/styles, where styles are kept by name; refused when a file has taken its name."""
    folder = Path(run) / STYLES_DIR
    if os.path.lexists(folder) and not folder.is_dir():
        raise MunitError(
            f"{files.display_path(folder)} exists and is not a folder, so the run can keep no styles by name",
            hint="move that file away; a style file can still be written anywhere with --out FILE.safetensors",
        )
    return folder


def _style_kinds(spec: str, run: Path | None) -> dict[str, Path | None]:
    """Every kind of style `spec` could name: a seed spec, a style saved in the run under that
    name, a file (style file or reference image)."""
    kinds: dict[str, Path | None] = {}
    if spec.startswith(SEED_PREFIX):
        kinds["a seed spec"] = None
    name_like = spec not in ("", ".", "..") and "/" not in spec and os.sep not in spec
    if run is not None and name_like and (saved := Path(run) / STYLES_DIR / f"{spec}.safetensors").is_file():
        kinds["a saved style"] = saved
    if os.path.lexists(spec):
        kinds["a file"] = Path(spec)
    return kinds


def resolve_style(spec: str, model: StyleModel, truncation: float = 1.0) -> Style:
    """A style for the target domain from `seed:N[:K]`, the name of a style saved in the model's run
    (RUN/styles/NAME.safetensors), a style file or a reference image (encoded by the target
    domain's style encoder). A spec that could be two of these is refused, naming both.
    Truncation applies to sampled styles only."""
    run = checkpoint.run_folder(model.loaded.path)
    kinds = _style_kinds(spec, run)
    if len(kinds) > 1:
        where = "; ".join(f"{kind} ({files.display_path(path)})" if path else kind for kind, path in kinds.items())
        raise UsageError(
            f"style {spec!r} is ambiguous: it is {where}",
            hint="name the file by its path (./NAME for one in this folder, RUN/styles/NAME.safetensors for a saved style)",
        )
    if "a seed spec" in kinds:
        seed, index = parse_seed_spec(spec)
        tag = f"seed{seed}" if index == 0 else f"seed{seed}-{index}"
        prior = model.loaded.priors.get(model.target)
        return Style(seed_label(seed, index), tag, sample_style(seed, index, model.style_dim, truncation, prior))
    if "a saved style" in kinds:
        return Style(spec, spec, load_style(kinds["a saved style"], model, model.target))
    path = Path(spec)
    if not kinds:
        saved = f", and no style of that name is saved in {files.display_path(Path(run) / STYLES_DIR)}" if run else ""
        raise UsageError(
            f"style {spec!r}: no such file{saved}",
            hint="a style is seed:N, a saved style's name (munit style list), a style file (.safetensors) or a reference image",
        )
    if not path.is_file():
        raise UsageError(f"style {spec!r}: not a regular file")
    if path.suffix.lower() in images.IMAGE_EXTENSIONS:
        code = model.reference_style(path)
    else:
        code = load_style(path, model, model.target)
    tag = path.stem or "style"
    short = files.fit_name(tag, limit=TAG_BYTES)
    return Style(spec, short, code, full_tag=tag if short != tag else None)


def resolve_styles(
    model: StyleModel, specs: Sequence[str] = (), num_styles: int | None = None, seed: int = 0, truncation: float = 1.0
) -> list[Style]:
    """`--style` specs in order, or `num_styles` sampled styles seed:SEED, seed:SEED:1, ...
    (one when neither is given). Tags are made unique."""
    if specs and num_styles is not None:
        raise UsageError("give --style or --num-styles, not both", hint="add seed:N to --style for sampled styles")
    if len(specs) > MAX_STYLES:
        raise UsageError(f"at most {MAX_STYLES} styles, got {len(specs)} --style options")
    specs = list(specs) or [seed_label(seed, k) for k in range(num_styles or 1)]
    styles = [resolve_style(spec, model, truncation) for spec in specs]
    tags: set[str] = set()
    for style in styles:
        style.tag = unique_name(style.tag, tags)
    return styles


def style_paths(folder: Path, styles: Sequence[Style]) -> list[Path]:
    return [Path(folder) / f"{s.tag}.safetensors" for s in styles]


def save_styles(folder: Path, styles: Sequence[Style], model: StyleModel) -> list[Path]:
    return [save_style(path, s.code, model, model.target, s.label) for path, s in zip(style_paths(folder, styles), styles)]


@dataclass
class SavedStyle(Result):
    """A named style of a run, as `munit style list` shows it; `problem` says why one is unusable."""

    name: str
    domain: str
    source: str
    created: str
    path: Path
    problem: str | None = None


def saved_styles(run: Path) -> list[SavedStyle]:
    """The styles saved in RUN/styles by name, sorted; a damaged file is listed with its problem."""
    found = []
    for path in sorted(styles_folder(run).glob("*.safetensors")):
        name = path.name.removesuffix(".safetensors")
        if not STYLE_NAME.match(name) or not path.is_file():
            continue
        created = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        try:
            _, meta = read_style_file(path)
            source = checkpoint.check_text(meta.get("source", "?"), "source", max_chars=400)
            found.append(SavedStyle(name, f"{meta['domain']} ({meta['domain_name']})", source, created, path))
        except MunitError as exc:
            found.append(SavedStyle(name, "?", "?", created, path, problem=str(exc)))
    return found
