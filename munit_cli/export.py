"""`munit export`: the trained generators in forms other programs can run.

- bundle: one safetensors file with both domains' encoders, MLPs and decoders (no discriminators,
  no optimizer state, one set of weights) in float32, float16 or bfloat16. `load_generator` reads it
  like a generator file, so every munit command takes it as `--model`.
- onnx: per direction a graph `translate(image, style) -> translated`, per domain a graph
  `encode_style(image) -> style`, plus `munit-onnx.json` saying how to feed them. Each graph is
  checked against PyTorch with onnxruntime before it is written, so a bad export leaves no file.

The ONNX graphs come from torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`), which
handles the dynamic batch and spatial dimensions of these networks, so the TorchScript exporter is
not used.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from munit_cli import __version__, checkpoint, files, models
from munit_cli.config import ModelConfig
from munit_cli.errors import MunitError, UsageError, first_line
from munit_cli.results import Result

FORMATS = ("bundle", "onnx", "all")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
BUNDLE_NAME = "bundle.safetensors"
SIDECAR_NAME = "munit-onnx.json"
ONNX_KIND = "munit-onnx"
ONNX_FORMAT_VERSION = "1"
OPSET = 18
ONNX_TOLERANCE = 1e-3  # max abs difference from PyTorch allowed for float32 graphs
INSTALL_HINT = "pip install 'munit-cli[export]'"
INPUT_RANGE = "[-1, 1]"


def normalisation(channels: int) -> str:
    return f"x/127.5 - 1 from 0..255 {'RGB' if channels == 3 else 'grayscale'}"


@dataclass
class BundleInfo(Result):
    path: str
    dtype: str
    bytes: int


@dataclass
class OnnxInfo(Result):
    files: list[str]
    sidecar: str
    opset: int
    max_abs_diff: float
    verified: dict[str, dict[str, Any]]


@dataclass
class ExportResult(Result):
    model: str
    out: str
    format: str
    names: list[str]
    step: int
    weights: str
    bundle: BundleInfo | None = None
    onnx: OnnxInfo | None = None
    seconds: float = 0.0


def run(
    model: str | os.PathLike | None,
    out_dir: Path,
    fmt: str = "all",
    dtype: str = "float32",
    use_ema: bool = True,
    overwrite: bool = False,
) -> ExportResult:
    """Export MODEL (a run folder, a generator file or a bundle; see `checkpoint.resolve_model_path`)
    into `out_dir`. Files already in `out_dir` are only replaced with `overwrite`."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}", hint=f"formats: {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}", hint=f"dtypes: {', '.join(DTYPES)}")
    if fmt == "onnx" and dtype != "float32":
        raise UsageError("--dtype applies to the bundle; ONNX graphs are always float32")
    started = time.monotonic()
    loaded = checkpoint.load_model(model, "cpu", use_ema=use_ema)
    if fmt in ("onnx", "all"):
        require_onnx()  # before anything is written, so a missing extra leaves no half export
    out_dir = Path(out_dir)
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise MunitError(f"{files.display_path(out_dir)}: exists and is not a folder")
    planned = [out_dir / BUNDLE_NAME] if fmt in ("bundle", "all") else []
    if fmt in ("onnx", "all"):
        planned += [out_dir / name for name in graphs(loaded)] + [out_dir / SIDECAR_NAME]
    files.refuse_overwrite(planned, overwrite)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MunitError(f"could not create {files.display_path(out_dir)}: {exc.strerror or exc}") from None
    weights = weights_used(loaded, use_ema)
    result = ExportResult(
        files.display_path(loaded.path), files.display_path(out_dir), fmt, list(loaded.names), loaded.step, weights
    )
    if fmt in ("bundle", "all"):
        result.bundle = write_bundle(loaded, out_dir / BUNDLE_NAME, dtype, weights)
    if fmt in ("onnx", "all"):
        result.onnx = write_onnx(loaded, out_dir, weights)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def weights_used(loaded: checkpoint.LoadedGenerator, use_ema: bool) -> str:
    """'ema' or 'raw': what `load_generator` took from the file (a bundle says what it was made from)."""
    if loaded.metadata.get("format") == checkpoint.BUNDLE_KIND:
        return loaded.metadata.get("weights", "raw")
    return "ema" if use_ema and loaded.metadata.get("has_ema") == "true" else "raw"


def describe(loaded: checkpoint.LoadedGenerator, weights: str) -> dict[str, Any]:
    """What a consumer needs besides the weights: domains, style size, how to feed images."""
    m = loaded.cfg.model
    return {
        "names": list(loaded.names),
        "fingerprint": loaded.fingerprint,
        "step": loaded.step,
        "weights": weights,
        "channels": m.input_dim,
        "style_dim": m.style_dim,
        "input_range": INPUT_RANGE,
        "normalisation": normalisation(m.input_dim),
        "size_multiple": models.size_multiple(m),
        "min_size": models.min_size(m),
        # random styles: mean + scale_tril @ z with z ~ N(0, I) where the model fitted a prior, else z itself
        "style_prior": {
            d: {"mean": mean.tolist(), "scale_tril": scale_tril.tolist()} for d, (mean, scale_tril) in loaded.priors.items()
        },
    }


# ---------------------------------------------------------------------------------------------
# Bundle


def write_bundle(loaded: checkpoint.LoadedGenerator, path: Path, dtype: str, weights: str) -> BundleInfo:
    channels = loaded.cfg.model.input_dim
    tensors = {k: v.to(DTYPES[dtype]) for k, v in loaded.model.state_dict().items()}
    tensors.update(checkpoint.prior_tensors(loaded.priors))  # float32 whatever the dtype: 2 x 72 numbers
    metadata = {
        **checkpoint.generator_metadata(loaded.cfg, loaded.names, loaded.step, loaded.fingerprint),
        "format": checkpoint.BUNDLE_KIND,
        "dtype": dtype,
        "weights": weights,
        "channels": str(channels),
        "input_range": INPUT_RANGE,
        "normalisation": normalisation(channels),
        "munit_version": __version__,
    }
    checkpoint.save_tensors(path, tensors, metadata)
    return BundleInfo(str(path), dtype, path.stat().st_size)


# ---------------------------------------------------------------------------------------------
# ONNX


def require_onnx() -> None:
    """The optional `[export]` extra: onnx and onnxscript for the exporter, onnxruntime to verify."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MunitError(f"ONNX export needs {', '.join(missing)}, which is not installed", hint=INSTALL_HINT)


class Translate(nn.Module):
    """Content from the source domain's encoder, decoded by the target domain's decoder with `style`."""

    def __init__(self, source: nn.Module, target: nn.Module):
        super().__init__()
        self.source, self.target = source, target

    def forward(self, image: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.target.decode(self.source.content_encoder(image), style)


@dataclass
class Graph:
    module: nn.Module
    inputs: tuple[str, ...]
    output: str
    multiple: int  # image sides must be multiples of this (1: any size)


def graphs(loaded: checkpoint.LoadedGenerator) -> dict[str, Graph]:
    """File name -> graph. Only translation needs sides that are multiples of `size_multiple`; the
    style encoder pools globally, so a style reference may have any size."""
    model, step = loaded.model, models.size_multiple(loaded.cfg.model)
    return {
        "encode_style_a.onnx": Graph(model.gen_a.style_encoder, ("image",), "style", 1),
        "encode_style_b.onnx": Graph(model.gen_b.style_encoder, ("image",), "style", 1),
        "translate_a2b.onnx": Graph(Translate(model.gen_a, model.gen_b).eval(), ("image", "style"), "translated", step),
        "translate_b2a.onnx": Graph(Translate(model.gen_b, model.gen_a).eval(), ("image", "style"), "translated", step),
    }


def sample_inputs(m: ModelConfig, graph: Graph, shape: tuple[int, int, int]) -> tuple[torch.Tensor, ...]:
    batch, height, width = shape
    gen = torch.Generator().manual_seed(batch * 100_003 + height * 1009 + width)
    image = torch.rand(batch, m.input_dim, height, width, generator=gen) * 2 - 1
    if len(graph.inputs) == 1:
        return (image,)
    return image, torch.randn(batch, m.style_dim, generator=gen)


def write_onnx(loaded: checkpoint.LoadedGenerator, out_dir: Path, weights: str) -> OnnxInfo:
    import onnx

    m = loaded.cfg.model
    info = describe(loaded, weights)
    step, low = info["size_multiple"], info["min_size"]
    base = max(low, 32)
    props = {key: value if isinstance(value, str) else json.dumps(value) for key, value in info.items()}
    verified: dict[str, dict[str, Any]] = {}
    serialized: dict[str, bytes] = {}
    for name, graph in graphs(loaded).items():
        # Traced at one shape and checked at another (batch and both sides), so a dimension the
        # exporter fixed by mistake fails the check instead of reaching users.
        export_shape = (2, fit(base, graph.multiple), fit(base + 2 * step, graph.multiple))
        check_shape = (3, fit(base + step + 1, graph.multiple), fit(base + 3 * step + 1, graph.multiple))
        proto = export_graph(graph, sample_inputs(m, graph, export_shape), low)
        onnx.helper.set_model_props(proto, props)
        data = proto.SerializeToString()
        diff = compare(name, graph, data, sample_inputs(m, graph, check_shape))
        if diff > ONNX_TOLERANCE:
            raise MunitError(
                f"{name}: onnxruntime differs from PyTorch by {diff:.2e} (more than {ONNX_TOLERANCE:g}); "
                "no ONNX file written"
            )
        serialized[name] = data
        verified[name] = {"shape": list(check_shape), "max_abs_diff": diff}
    # only a fully verified set is written, so a folder never mixes graphs of two exports
    for name, data in serialized.items():
        files.write_atomic(out_dir / name, data, durable=True)
    sidecar = {
        "format": ONNX_KIND,
        "format_version": ONNX_FORMAT_VERSION,
        **info,
        "opset": OPSET,
        "translate": {"a2b": "translate_a2b.onnx", "b2a": "translate_b2a.onnx"},
        "encode_style": {"a": "encode_style_a.onnx", "b": "encode_style_b.onnx"},
        "output_range": INPUT_RANGE,
        "verified": verified,
        "munit_version": __version__,
    }
    files.write_atomic(out_dir / SIDECAR_NAME, (json.dumps(sidecar, indent=2) + "\n").encode(), durable=True)
    return OnnxInfo(
        [str(out_dir / name) for name in verified],
        str(out_dir / SIDECAR_NAME),
        OPSET,
        max(v["max_abs_diff"] for v in verified.values()),
        verified,
    )


def fit(n: int, multiple: int) -> int:
    return n // multiple * multiple


def export_graph(graph: Graph, args: tuple[torch.Tensor, ...], low: int):
    """One dynamo export with a dynamic batch, and height and width of at least `low` pixels."""
    dims = []
    for side in ("height", "width"):
        if graph.multiple == 1:
            dims.append(torch.export.Dim(side, min=low))
        else:
            dims.append(graph.multiple * torch.export.Dim(f"{side}_div{graph.multiple}", min=low // graph.multiple))
    batch = torch.export.Dim("batch", min=1)
    dynamic = [{0: batch, 2: dims[0], 3: dims[1]}] + [{0: batch}] * (len(graph.inputs) - 1)
    try:
        with warnings.catch_warnings():
            # the exporter's notes about axis naming are not the user's business
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            program = torch.onnx.export(
                graph.module,
                args,
                input_names=list(graph.inputs),
                output_names=[graph.output],
                dynamic_shapes=dynamic,
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; all mean this model did not export
        raise MunitError(f"ONNX export failed: {first_line(exc)}") from None
    return program.model_proto


def compare(name: str, graph: Graph, data: bytes, args: tuple[torch.Tensor, ...]) -> float:
    """Max abs difference between onnxruntime on the serialized graph and PyTorch on `args`."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {name: arg.numpy() for name, arg in zip(graph.inputs, args)})[0]
    with torch.no_grad():
        want = graph.module(*args).numpy()
    if got.shape != want.shape:
        raise MunitError(f"{name}: onnxruntime gives shape {got.shape}, PyTorch {want.shape}")
    return float(np.abs(got - want).max())
