"""munit export: bundles in three dtypes, ONNX graphs checked against PyTorch, the torch-free example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from munit_cli import checkpoint, config, export, images, models
from munit_cli.cli import app
from munit_cli.errors import MunitError, UsageError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_translate.py"
NAMES = ("sketch", "photo")
FINGERPRINT = "0123456789abcdef"
INSTALL = "pip install 'munit-cli[export]'"


def tiny_model(seed: int = 0, shared_content_encoder: bool = False, **model_keys):
    torch.manual_seed(seed)
    model = {"dim": 8, "mlp_dim": 16, "n_res": 1, "shared_content_encoder": shared_content_encoder, **model_keys}
    cfg = config.resolve("tiny", overrides={"model": model})
    gen, _ = models.build(cfg.model)
    return gen, cfg


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """One content encoder for both domains, as the `cpu` preset's models have: every bundle and
    ONNX test below runs on such a model (the graphs do not depend on it)."""
    gen, cfg = tiny_model(shared_content_encoder=True)
    path = tmp_path_factory.mktemp("model") / "gen.safetensors"
    checkpoint.save_generator(path, gen, cfg, NAMES, 42, FINGERPRINT)
    return path


@pytest.fixture(scope="module")
def reference(model_file) -> models.MUNIT:
    return checkpoint.load_generator(model_file).model


@pytest.fixture(scope="module")
def onnx_export(model_file, tmp_path_factory) -> tuple[Path, dict]:
    """One full export through the command line (the slow part of this file: about 10 s)."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)
    out = tmp_path_factory.mktemp("export")
    result = CliRunner().invoke(app, ["export", str(model_file), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def translate_torch(model: models.MUNIT, x: torch.Tensor, style: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
    source, target = (model.gen_a, model.gen_b) if direction == "a2b" else (model.gen_b, model.gen_a)
    with torch.no_grad():
        return target.decode(source.content_encoder(x), style)


def random_image(path: Path, width: int, height: int, seed: int) -> Path:
    """Smooth colour gradients with a little noise: closer to a photo than pure noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width, yy / height, (xx + yy) / (width + height)], axis=-1) * 200
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def as_input(img: Image.Image) -> torch.Tensor:
    return images.to_tensor(img).float()[None] / 127.5 - 1


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


# ---------------------------------------------------------------------------------------------
# Bundle


def test_bundle_metadata_round_trip(model_file, tmp_path):
    summary = export.run(model_file, tmp_path, "bundle", "float16")
    assert summary.bundle is not None and summary.onnx is None
    path = Path(summary.bundle.path)
    assert summary.bundle.dtype == "float16" and summary.to_json()["onnx"] is None

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
        keys = set(f.keys())
    source = checkpoint.load_generator(model_file)
    assert dtypes == {torch.float16}
    assert keys == set(source.model.state_dict())  # generators only: no EMA copy, no discriminators
    assert meta["format"] == "munit-bundle" and meta["format_version"] == checkpoint.FORMAT_VERSION
    assert meta["dtype"] == "float16" and meta["weights"] == "raw"
    assert meta["input_range"] == "[-1, 1]" and meta["normalisation"] == "x/127.5 - 1 from 0..255 RGB"
    assert meta["channels"] == "3"

    loaded = checkpoint.load_generator(path)
    assert loaded.names == NAMES and loaded.step == 42 and loaded.fingerprint == FINGERPRINT
    assert loaded.cfg.to_dict() == source.cfg.to_dict()
    assert loaded.metadata["dtype"] == "float16"
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


@pytest.mark.parametrize(
    "dtype, max_tol, mean_tol", [("float32", 0.0, 0.0), ("float16", 2e-2, 2e-3), ("bfloat16", 1e-1, 1e-2)]
)
def test_bundle_translates_like_float32(model_file, reference, tmp_path, dtype, max_tol, mean_tol):
    export.run(model_file, tmp_path, "bundle", dtype)
    bundle = checkpoint.load_generator(tmp_path / export.BUNDLE_NAME).model
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    style = torch.randn(2, 8, generator=torch.Generator().manual_seed(2))
    diff = (translate_torch(bundle, x, style) - translate_torch(reference, x, style)).abs()
    assert diff.max().item() <= max_tol and diff.mean().item() <= mean_tol


def test_bundle_keeps_a_shared_content_encoder_shared(model_file, reference, tmp_path):
    assert reference.gen_a.content_encoder is reference.gen_b.content_encoder
    export.run(model_file, tmp_path, "bundle", "float32")
    bundle = checkpoint.load_generator(tmp_path / export.BUNDLE_NAME).model
    assert bundle.gen_a.content_encoder is bundle.gen_b.content_encoder
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    style = torch.randn(1, 8, generator=torch.Generator().manual_seed(2))
    for direction in ("a2b", "b2a"):
        assert torch.equal(translate_torch(bundle, x, style, direction), translate_torch(reference, x, style, direction))


def test_bundle_takes_ema_weights_by_default(tmp_path):
    gen, cfg = tiny_model(0)
    ema, _ = tiny_model(1)
    model = tmp_path / "gen.safetensors"
    checkpoint.save_generator(model, gen, cfg, NAMES, 5, FINGERPRINT, ema=ema)

    default = export.run(model, tmp_path / "ema", "bundle")
    raw = export.run(model, tmp_path / "raw", "bundle", use_ema=False)
    assert (default.weights, raw.weights) == ("ema", "raw")
    assert default.bundle is not None and raw.bundle is not None
    key = "gen_a.mlp.model.0.weight"
    from_ema = checkpoint.load_generator(default.bundle.path).model.state_dict()[key]
    from_raw = checkpoint.load_generator(raw.bundle.path).model.state_dict()[key]
    assert torch.equal(from_ema, ema.state_dict()[key]) and torch.equal(from_raw, gen.state_dict()[key])

    again = export.run(default.bundle.path, tmp_path / "again", "bundle", "bfloat16")  # a bundle re-exports
    assert again.weights == "ema"


def test_translate_command_takes_a_bundle(model_file, tmp_path):
    export.run(model_file, tmp_path, "bundle", "float32")
    photo = random_image(tmp_path / "in.png", 36, 28, seed=3)
    runner = CliRunner()
    outputs = []
    for model in (model_file, tmp_path / export.BUNDLE_NAME):
        out = tmp_path / f"out_{model.stem}.png"
        args = ["translate", str(photo), "--model", str(model), "--out", str(out), "--device", "cpu"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


# ---------------------------------------------------------------------------------------------
# Failures


def test_missing_extra_gives_install_hint(model_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MunitError, match="onnxruntime") as info:
        export.run(model_file, tmp_path / "out", "all")
    assert info.value.hint == INSTALL
    assert not (tmp_path / "out").exists()  # checked before anything is written

    result = CliRunner().invoke(app, ["export", str(model_file), "--format", "onnx", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and INSTALL in result.output
    assert export.run(model_file, tmp_path / "out", "bundle").bundle is not None  # the bundle needs no extra


def test_corrupted_model_is_a_clear_error(model_file, tmp_path):
    data = model_file.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a model" * 50)
    for path in (truncated, garbage):
        with pytest.raises(MunitError, match="damaged or not a safetensors file"):
            export.run(path, tmp_path / "out", "bundle")

    result = CliRunner().invoke(app, ["export", str(truncated), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "error:" in result.output and "truncated.safetensors" in result.output and "Traceback" not in result.output
    with pytest.raises(MunitError, match="no such file"):
        export.run(tmp_path / "missing.safetensors", tmp_path / "out", "bundle")


def test_bad_options_are_usage_errors(model_file, tmp_path):
    for fmt, dtype in (("tflite", "float32"), ("bundle", "int8"), ("onnx", "float16")):
        with pytest.raises(UsageError):
            export.run(model_file, tmp_path, fmt, dtype)
    result = CliRunner().invoke(app, ["export", str(model_file), "--out", str(tmp_path), "--format", "tflite"])
    assert result.exit_code == 2


def test_failed_verification_writes_no_graph(model_file, tmp_path, monkeypatch):
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)
    monkeypatch.setattr(export, "ONNX_TOLERANCE", -1.0)  # any difference, even none, is now too much
    with pytest.raises(MunitError, match="differs from PyTorch"):
        export.run(model_file, tmp_path, "onnx")
    assert not list(tmp_path.glob("*.onnx")) and not (tmp_path / export.SIDECAR_NAME).exists()


# ---------------------------------------------------------------------------------------------
# ONNX


def test_onnx_export_summary_and_files(onnx_export):
    onnx = pytest.importorskip("onnx")
    out, summary = onnx_export
    print(f"export's own check: max abs difference {summary['onnx']['max_abs_diff']:.2e}")
    assert summary["onnx"]["max_abs_diff"] <= export.ONNX_TOLERANCE
    assert summary["bundle"]["dtype"] == "float32"
    sidecar = json.loads((out / export.SIDECAR_NAME).read_text())
    assert sidecar["names"] == list(NAMES) and sidecar["style_dim"] == 8 and sidecar["channels"] == 3
    assert sidecar["fingerprint"] == FINGERPRINT and sidecar["size_multiple"] == 4 and sidecar["min_size"] == 16
    assert sidecar["normalisation"] == "x/127.5 - 1 from 0..255 RGB"
    for shape in (v["shape"] for v in sidecar["verified"].values()):
        assert shape[0] == 3  # checked at another batch than the export's 2

    for name in ("translate_a2b.onnx", "translate_b2a.onnx", "encode_style_a.onnx", "encode_style_b.onnx"):
        proto = onnx.load(str(out / name))
        assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert [bool(d.dim_param) for d in dims] == [True, False, True, True]  # batch, C, H, W
        assert json.loads({p.key: p.value for p in proto.metadata_props}["names"]) == list(NAMES)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("height, width", [(20, 28), (44, 36)])
def test_onnx_matches_pytorch(onnx_export, reference, batch, height, width):
    ort = pytest.importorskip("onnxruntime")
    out, _ = onnx_export
    gen = torch.Generator().manual_seed(batch * 1000 + height)
    x = torch.rand(batch, 3, height, width, generator=gen) * 2 - 1
    style = torch.randn(batch, 8, generator=gen)
    diffs = {}
    for direction in ("a2b", "b2a"):
        session = ort.InferenceSession(str(out / f"translate_{direction}.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": x.numpy(), "style": style.numpy()})[0]
        diffs[direction] = np.abs(got - translate_torch(reference, x, style, direction).numpy()).max()
    for domain, generator in (("a", reference.gen_a), ("b", reference.gen_b)):
        session = ort.InferenceSession(str(out / f"encode_style_{domain}.onnx"), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            want = generator.style_encoder(x).numpy()
        diffs[domain] = np.abs(session.run(None, {"image": x.numpy()})[0] - want).max()
    print(f"batch {batch}, {height}x{width}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= 1e-4


def test_onnx_of_a_bilinear_decoder_matches_pytorch(tmp_path):
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)
    gen, cfg = tiny_model(upsample="bilinear")
    path = tmp_path / "gen.safetensors"
    checkpoint.save_generator(path, gen, cfg, NAMES, 42, FINGERPRINT)
    loaded = checkpoint.load_generator(path)
    graph = export.graphs(loaded)["translate_a2b.onnx"]  # the graph the decoder is in
    proto = export.export_graph(graph, export.sample_inputs(cfg.model, graph, (2, 32, 48)), models.min_size(cfg.model))
    # checked at another batch and size than it was traced at: the interpolation is not fixed to one
    args = export.sample_inputs(cfg.model, graph, (1, 40, 56))
    assert export.compare("translate_a2b.onnx", graph, proto.SerializeToString(), args) <= 1e-4
    want = translate_torch(loaded.model, *args)
    loaded.model.gen_b.decoder.upsample[0].mode = "nearest"  # the same weights, repeating pixels
    assert (translate_torch(loaded.model, *args) - want).abs().max() > 1e-3


def run_example(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The example in a fresh interpreter where importing torch fails, so it provably needs none."""
    blocker = tmp_path / "no_torch"
    (blocker / "torch").mkdir(parents=True, exist_ok=True)
    (blocker / "torch" / "__init__.py").write_text("raise ImportError('the ONNX example must not import torch')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, env=env, timeout=120)


def test_example_translates_like_pytorch(onnx_export, reference, tmp_path):
    out, _ = onnx_export
    photo = random_image(tmp_path / "photo.png", 44, 36, seed=7)
    args = (str(out), str(photo), str(tmp_path / "seeded.png"), "--to", "photo", "--style-seed", "5")
    result = run_example(*args, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    got = Image.open(tmp_path / "seeded.png")
    assert got.format == "PNG" and got.size == (44, 36)

    style = torch.from_numpy(np.random.default_rng(5).standard_normal((1, 8)).astype(np.float32))
    want = images.tensor_to_image(translate_torch(reference, as_input(images.open_image(photo)), style)[0])
    assert np.abs(pixels(got) - pixels(want)).max() <= 1


def test_example_with_reference_keeps_the_input_size(onnx_export, reference, tmp_path):
    out, _ = onnx_export
    photo = random_image(tmp_path / "photo.png", 42, 30, seed=8)  # not multiples of 4: worked at 40x32
    style_image = random_image(tmp_path / "style.png", 13, 30, seed=9)  # narrower than min_size: worked at 16x32
    result = run_example(
        str(out), str(photo), str(tmp_path / "out.png"), "--to", "A", "--reference", str(style_image), tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    got = Image.open(tmp_path / "out.png")
    assert got.size == (42, 30)

    with torch.no_grad():
        style = reference.gen_a.style_encoder(as_input(images.resize(images.open_image(style_image), (16, 32))))
    x = as_input(images.resize(images.open_image(photo), (40, 32)))
    want = images.resize(images.tensor_to_image(translate_torch(reference, x, style, "b2a")[0]), (42, 30))
    assert np.abs(pixels(got) - pixels(want)).max() <= 2

    bad = run_example(str(out), str(photo), str(tmp_path / "x.png"), "--to", "cats", tmp_path=tmp_path)
    assert bad.returncode == 1 and "unknown domain 'cats'" in bad.stderr
