"""safetensors checkpoints: a generator file (all translation needs) and a training-state file
(its discriminators and optimizers: `trainstate`).

Nothing here ever unpickles. Files are written atomically (temporary file, fsync, rename, fsync of
the folder), so a crash leaves either the old file or the new one, never half of one. Every file
carries the resolved config, the domain names and a format version in its metadata, and a sha256
of its header and tensor data, so a file damaged later (a bad disk, a partial copy) is refused
instead of silently loading wrong weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from munit_cli import config as config_mod
from munit_cli import files, runs
from munit_cli.errors import MunitError, UsageError, first_line

FORMAT_VERSION = "1"
GENERATOR_KIND = "munit-generator"
STATE_KIND = "munit-train-state"
BUNDLE_KIND = "munit-bundle"  # written by `munit export`: one set of generator weights, any dtype
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^(gen|state)_(\d{8,})\.safetensors$")
CHECKSUM_KEY = "checksum"  # metadata entry: sha256 of the rest of the header and of the tensor data


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """A safetensors file with `metadata` and a checksum entry that `read_tensors` verifies."""
    from safetensors.torch import save

    data = save(_unshared(tensors), metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    body = memoryview(data)[8 + size :]
    header.setdefault("__metadata__", {})[CHECKSUM_KEY] = _checksum(header, [body])
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # as safetensors does: the tensor data stays 8-byte aligned
    files.write_atomic(path, len(head).to_bytes(8, "little"), head, body, durable=True)


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each in memory of its own: safetensors refuses tensors that share
    memory, as a content encoder serving both domains does under its two names."""
    out, seen = {}, set()
    for key, value in tensors.items():
        t = value.detach().contiguous().cpu()
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def _checksum(header: dict, body: Iterable[bytes | memoryview]) -> str:
    """sha256 of the header in a canonical form, without the checksum entry, then the tensor data:
    it covers names, dtypes, shapes, offsets and metadata as well as every weight."""
    meta = {k: v for k, v in header.get("__metadata__", {}).items() if k != CHECKSUM_KEY}
    digest = hashlib.sha256(json.dumps({**header, "__metadata__": meta}, sort_keys=True).encode())
    for chunk in body:
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _verify_checksum(path: Path, expected: str) -> None:
    """Called after safetensors has validated the layout, so the header length can be trusted."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        found = _checksum(header, iter(lambda: f.read(1 << 20), b""))
    if found != expected:
        raise MunitError(f"{path}: damaged (its contents no longer match the checksum written with it)")


def read_tensors(path: Path, expect_kind: str | tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file of ours, turning every way it can be broken into a MunitError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MunitError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            kinds = (expect_kind,) if isinstance(expect_kind, str) else expect_kind
            if metadata.get("format") not in kinds:
                raise MunitError(
                    f"{path}: not a munit {kinds[0].removeprefix('munit-')} file "
                    f"(format {metadata.get('format')!r})"
                )
            if CHECKSUM_KEY in metadata:  # files of munit before checksums have none
                _verify_checksum(path, metadata[CHECKSUM_KEY])
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except MunitError:
        raise
    except Exception as exc:  # safetensors raises its own and OS errors for damaged files
        raise MunitError(f"{path}: damaged or not a safetensors file ({first_line(exc)})") from None
    return tensors, metadata


# ---------------------------------------------------------------------------------------------
# Generator files


@dataclass
class LoadedGenerator:
    model: Any  # models.MUNIT
    cfg: config_mod.Config
    names: tuple[str, str]
    step: int
    fingerprint: str
    path: Path
    metadata: dict[str, str]
    # per domain ("a", "b"), the fitted style prior (mean, L) of the weights loaded, if the file has one
    priors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def model_fingerprint(run_id: str, cfg: config_mod.Config) -> str:
    """Identifies a trained model family (a run and its architecture), shared by all its checkpoints,
    so a style saved from one checkpoint of a run stays valid for later ones."""
    arch = json.dumps(cfg.to_dict()["model"], sort_keys=True)
    return hashlib.sha256(f"{run_id}\n{arch}".encode()).hexdigest()[:16]


def generator_metadata(cfg, names, step: int, fingerprint: str, **extra: str) -> dict[str, str]:
    return {
        "format": GENERATOR_KIND,
        "format_version": FORMAT_VERSION,
        "config": cfg.to_json(),
        "names": json.dumps(list(names)),
        "step": str(step),
        "fingerprint": fingerprint,
        **extra,
    }


EMA_PREFIX = "ema."


PRIOR_PREFIX = "style_prior."


def prior_tensors(priors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A fitted style prior per domain as file tensors: style_prior.D.mean and style_prior.D.scale_tril."""
    out = {}
    for domain, (mean, scale_tril) in priors.items():
        out[f"{PRIOR_PREFIX}{domain}.mean"] = mean.detach().float().cpu()
        out[f"{PRIOR_PREFIX}{domain}.scale_tril"] = scale_tril.detach().float().cpu()
    return out


def split_priors(
    tensors: dict[str, torch.Tensor], style_dim: int, path: Path
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
    """The style priors among a file's weights (checked: shapes, finite, a lower-triangular factor
    with a positive diagonal), and the weights without them."""
    weights = {k: v for k, v in tensors.items() if not k.startswith(PRIOR_PREFIX)}
    priors = {}
    for domain in "ab":
        mean, scale_tril = (tensors.get(f"{PRIOR_PREFIX}{domain}.{part}") for part in ("mean", "scale_tril"))
        if mean is None and scale_tril is None:
            continue
        good = (
            mean is not None
            and scale_tril is not None
            and mean.shape == (style_dim,)
            and scale_tril.shape == (style_dim, style_dim)
            and bool(torch.isfinite(mean).all() and torch.isfinite(scale_tril).all())
            and bool(torch.equal(scale_tril, scale_tril.tril()) and (scale_tril.diagonal() > 0).all())
        )
        if not good:
            raise MunitError(f"{path}: the style prior of domain {domain.upper()} is damaged", hint="use another checkpoint of the run")
        priors[domain] = (mean.float(), scale_tril.float())
    return priors, weights


def save_generator(
    path: Path,
    gen: torch.nn.Module,
    cfg,
    names,
    step: int,
    fingerprint: str,
    ema: torch.nn.Module | None = None,
    priors: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] | None = None,
) -> None:
    """Both generators; with `ema`, its averaged weights too (keys prefixed `ema.`); with `priors`
    ({"raw": {domain: (mean, L)}, "ema": ...}), the style prior fitted for each set of weights."""
    priors = priors or {}
    tensors = {**gen.state_dict(), **prior_tensors(priors.get("raw", {}))}
    if ema is not None:
        ema_tensors = {**ema.state_dict(), **prior_tensors(priors.get("ema", {}))}
        tensors.update({EMA_PREFIX + k: v for k, v in ema_tensors.items()})
    save_tensors(path, tensors, generator_metadata(cfg, names, step, fingerprint, has_ema=str(ema is not None).lower()))


def parse_metadata(path: Path, metadata: dict[str, str]) -> tuple[config_mod.Config, tuple[str, str], int]:
    if metadata.get("format_version") != FORMAT_VERSION:
        raise MunitError(f"{path}: unsupported format version {metadata.get('format_version')!r}")
    try:
        cfg = config_mod.from_json(metadata["config"])
        config_mod.validate(cfg)
        names = tuple(json.loads(metadata["names"]))
        step = int(metadata.get("step", "0"))
    except (KeyError, ValueError, TypeError, MunitError) as exc:
        raise MunitError(f"{path}: broken metadata ({first_line(exc)})") from None
    if len(names) != 2 or not all(isinstance(n, str) for n in names):
        raise MunitError(f"{path}: broken metadata (names)")
    return cfg, names, step  # type: ignore[return-value]


def load_state_dict_checked(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Compare keys and shapes before loading, so a file for another architecture is a clear error."""
    expected = module.state_dict()
    check_fits(expected, tensors, path)
    check_shared_agree(expected, tensors, path)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})


def check_shared_agree(expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A weight the module shares under two names (one content encoder for both domains) must be
    stored twice with the same values; otherwise the later name would silently win."""
    first: dict[int, str] = {}
    for key, weight in expected.items():
        if not weight.numel():
            continue
        other = first.setdefault(weight.data_ptr(), key)
        if other != key and not torch.equal(tensors[key], tensors[other]):
            raise MunitError(f"{path}: {other} and {key} are one shared weight but the file holds different values")


def check_fits(expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], path: Path) -> None:
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise MunitError(f"{path}: weights do not fit this architecture ({detail})")
    for key, value in expected.items():
        if tensors[key].shape != value.shape:
            raise MunitError(
                f"{path}: weights do not fit this architecture "
                f"({key}: {tuple(tensors[key].shape)} vs {tuple(value.shape)})"
            )


def split_ema(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    raw = {k: v for k, v in tensors.items() if not k.startswith(EMA_PREFIX)}
    ema = {k[len(EMA_PREFIX) :]: v for k, v in tensors.items() if k.startswith(EMA_PREFIX)}
    return raw, ema


def load_generator(path: Path, device: str | torch.device = "cpu", use_ema: bool = True) -> LoadedGenerator:
    """The generators for inference, from a generator file (its EMA weights when it has them and
    `use_ema`) or an export bundle. Weights always load as float32, so a float16 or bfloat16 bundle
    runs on any CPU; the bundle's own dtype stays in `metadata['dtype']`."""
    from munit_cli.models import MUNIT

    path = Path(path)
    tensors, metadata = read_tensors(path, (GENERATOR_KIND, BUNDLE_KIND))
    cfg, names, step = parse_metadata(path, metadata)
    raw, ema = split_ema(tensors)
    priors, weights = split_priors(ema if (use_ema and ema) else raw, cfg.model.style_dim, path)
    with torch.device("meta"):  # the architecture the metadata claims, sized without allocating it
        claimed = MUNIT(cfg.model)
    check_fits(claimed.state_dict(), weights, path)  # so a forged config cannot make us allocate terabytes
    model = MUNIT(cfg.model)
    load_state_dict_checked(model, weights, path)
    model.to(device).eval().requires_grad_(False)
    return LoadedGenerator(model, cfg, names, step, metadata.get("fingerprint", ""), path, metadata, priors)


# ---------------------------------------------------------------------------------------------
# Run folders


def checkpoint_paths(run_dir: Path, step: int) -> tuple[Path, Path]:
    folder = Path(run_dir) / CHECKPOINT_DIR
    return folder / f"gen_{step:08d}.safetensors", folder / f"state_{step:08d}.safetensors"


def list_steps(run_dir: Path, kind: str = "state") -> list[int]:
    """Steps with a complete file of `kind` ('gen' or 'state'), oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    steps = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m and m.group(1) == kind:
            steps.append(int(m.group(2)))
    return sorted(steps)


def prune(run_dir: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoint pairs."""
    for step in list_steps(run_dir, "gen")[:-keep] if keep > 0 else []:
        for p in checkpoint_paths(run_dir, step):
            p.unlink(missing_ok=True)
    for step in list_steps(run_dir, "state")[:-keep] if keep > 0 else []:
        checkpoint_paths(run_dir, step)[1].unlink(missing_ok=True)


def newest_generator(run_dir: Path) -> Path | None:
    steps = list_steps(run_dir, "gen")
    return checkpoint_paths(run_dir, steps[-1])[0] if steps else None


# ---------------------------------------------------------------------------------------------
# The model a command runs: where it is, and what its file may claim


MODEL_ENV = "MUNIT_MODEL"
MAX_NAME_CHARS = 100  # domain names and other labels from files, as they reach the terminal
# Characters a label read from a file must not hold: control characters (a terminal executes
# escape sequences), line and paragraph separators, and format characters such as bidi overrides.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})
_JOINERS = frozenset("\u200c\u200d")  # format characters that emoji and some scripts need in names


def resolve_model_path(spec: str | os.PathLike | None, runs_root: Path = runs.RUNS_ROOT) -> Path:
    """The weights file for MODEL: a run folder gives its newest generator checkpoint; a file (a
    generator or an export bundle) is used as is. Nothing given falls back to $MUNIT_MODEL, then
    to the run under `runs_root` that training changed last among those with a checkpoint; a
    fallback says on stderr what it uses. The error says everything that was tried."""
    if spec is not None and str(spec) != "":
        return _model_file(Path(spec), f"--model {spec}")
    env = os.environ.get(MODEL_ENV)
    if env:
        path = _model_file(Path(env), f"${MODEL_ENV}={env}")
        _say_using(path, f" (from ${MODEL_ENV})")
        return path
    run = runs.latest_run(runs_root, usable=lambda folder: newest_generator(folder) is not None)
    if run is None:
        raise UsageError(
            "no model given: tried --model (not given) and $MUNIT_MODEL (not set), and found no run with "
            f"a checkpoint under {files.display_path(runs_root)}",
            hint="pass --model RUN_FOLDER (or a generator or bundle .safetensors), or export MUNIT_MODEL=..., "
            "or train one first (munit train A B writes runs/A2B)",
        )
    path = _model_file(run, f"the newest run {files.display_path(run)}")
    _say_using(path, "")
    return path


def _say_using(path: Path, origin: str) -> None:
    """'using runs/x2y (step 2500)' on stderr: which model a command picked by itself."""
    from munit_cli.console import err

    match = _NAME.match(path.name)
    run = run_folder(path)
    if match and run is not None:
        err.print(f"using {files.display_path(run)} (step {int(match.group(2))}){origin}")
    else:
        err.print(f"using {files.display_path(path)}{origin}")


def _model_file(path: Path, origin: str) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = newest_generator(path)
        if found is None:
            folder = path / CHECKPOINT_DIR
            raise MunitError(
                f"{origin}: a folder, but no generator checkpoint in it "
                f"(tried {files.display_path(folder)}/gen_*.safetensors)",
                hint="pass a training run folder (munit train --out ...) or a generator or bundle .safetensors file",
            )
        return found
    if path.exists():
        raise MunitError(f"{origin}: not a regular file or folder")
    raise MunitError(f"{origin}: no such file or folder")


def run_folder(model_path: Path) -> Path | None:
    """The training run a generator file belongs to (the folder above its checkpoints/), if any."""
    model_path = Path(model_path)
    if model_path.is_dir():
        return model_path
    if model_path.parent.name == CHECKPOINT_DIR:
        return model_path.parent.parent
    return None


def check_text(value: object, what: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """`value` when it is text fit for the terminal: a str of at most `max_chars` characters with
    no control or format characters. The error names `what`, never the value itself."""
    if not isinstance(value, str):
        raise MunitError(f"{what}: expected text, found {type(value).__name__}")
    if not value or len(value) > max_chars:
        raise MunitError(f"{what}: must be 1 to {max_chars} characters, found {len(value)}")
    if any(unicodedata.category(ch) in _UNPRINTABLE and ch not in _JOINERS for ch in value):
        raise MunitError(f"{what}: holds control characters")
    return value


def load_model(spec: str | os.PathLike | None, device: str | torch.device = "cpu", use_ema: bool = True) -> LoadedGenerator:
    """The generators an inference command runs (`resolve_model_path`, then `load_generator`), refused
    when the file has no checksum (munit writes one into every file, so it was altered or made
    elsewhere), when its labels are not printable text, or when a weight is NaN or infinite (a
    diverged run would otherwise translate into black images)."""
    path = resolve_model_path(spec)
    name = files.display_path(path)
    try:
        loaded = load_generator(path, device, use_ema=use_ema)
    except RecursionError:
        raise MunitError(f"{name}: broken metadata (JSON nested too deeply)") from None
    if CHECKSUM_KEY not in loaded.metadata:
        raise MunitError(
            f"{name}: no checksum in the file, so its contents cannot be verified; refusing to load it",
            hint="munit writes a checksum into every model file: use a file written by munit train or munit export",
        )
    for index, domain in enumerate(loaded.names):
        check_text(domain, f"{name}: domain name {index + 1}")
    for key in ("fingerprint", "weights", "dtype"):
        if key in loaded.metadata:
            check_text(loaded.metadata[key], f"{name}: metadata {key!r}")
    for key, weight in loaded.model.state_dict().items():
        if weight.is_floating_point() and not bool(torch.isfinite(weight).all()):
            raise MunitError(
                f"{name}: weight {key} holds NaN or infinite values (a diverged or damaged model); refusing to use it",
                hint="use an earlier checkpoint of the run",
            )
    return loaded

