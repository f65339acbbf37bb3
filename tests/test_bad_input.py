"""Bad input: random and mutated bytes for translate, prepare, style and model files (hypothesis);
malicious safetensors files; paths with spaces, unicode, brackets and leading dashes; and a check
that nothing in the project unpickles. Config values are fuzzed in test_config.py.

Every failure must be one `error:` line (and perhaps a hint), a non-zero exit code and no
traceback, within bounded time and memory. The examples are derandomized, so the default run is
reproducible; `pytest -m slow` tries many more.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import tokenize
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from processes import run_together
from typer.testing import CliRunner

import munit_cli
from munit_cli import checkpoint, config, models, stylefiles, synthetic
from munit_cli.cli import app

REPO = Path(munit_cli.__file__).resolve().parent.parent
NAMES = ("outline", "filled")
TINY_MODEL = {"model": {"dim": 8, "mlp_dim": 16, "n_res": 1}}
SLOW_SECONDS = 10.0  # per example; a busy two-core machine included

pytestmark = pytest.mark.usefixtures("one_thread")


def fuzz_settings(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,  # timed below instead: hypothesis' deadline flakes on a loaded machine
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An untrained tiny model in a run folder, a style file for it, and small images of six formats."""
    root = tmp_path_factory.mktemp("bad-input")
    cfg = config.resolve("tiny", overrides=TINY_MODEL)
    torch.manual_seed(0)
    gen, _ = models.build(cfg.model)
    model = checkpoint.checkpoint_paths(root / "run", 1)[0]
    model.parent.mkdir(parents=True)
    checkpoint.save_generator(model, gen, cfg, NAMES, 1, "fp-bad-input")
    style = stylefiles.sample_style_file(model=model, domain="B", out=root / "style.safetensors", seed=3).path
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    formats = {}
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        formats[fmt] = buffer.getvalue()
    return {"root": root, "model": model, "style": style, "images": formats}


def invoke(*args, stdin: bytes | None = None):
    """The result, the seconds it took, and the Python warnings a user would have seen on stderr."""
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    result.warnings = [str(w.message) for w in caught]
    return result, time.monotonic() - start


def check_answer(result, seconds: float, reliability) -> None:
    """Success, or exactly one `error:` line (plus an optional hint) and a non-zero exit code; never a
    traceback or a stray warning, and quickly."""
    reliability.add("bad_inputs")
    out = result.output
    unclear = (
        result.warnings
        or "Traceback" in out
        or "internal error" in out
        or not (result.exception is None or isinstance(result.exception, SystemExit))
        or (result.exit_code != 0 and [line.startswith("error:") for line in out.splitlines()].count(True) != 1)
    )
    if unclear:
        reliability.add("unclear_failures")
        pytest.fail(f"unclear answer (exit {result.exit_code}): {out!r} {result.exception!r} {result.warnings}")
    assert seconds < SLOW_SECONDS, f"took {seconds:.1f} s"


# ---------------------------------------------------------------------------------------------
# Mutations


@st.composite
def mutated(draw, original: bytes, header: int = 0) -> bytes:
    """`original` with a few byte flips, overwrites, insertions, deletions or a truncation; with
    `header`, half of the edits land in the first `header` bytes (where parsers decide things)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        end = max(1, min(header, len(data)) if header and draw(st.booleans()) else len(data))
        at = draw(st.integers(0, end - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[at : at + 1] = bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) if at < len(data) else b""
        elif kind == "set":
            data[at : at + 1] = bytes([draw(st.integers(0, 255))])
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


def image_bytes(world) -> st.SearchStrategy[bytes]:
    originals = list(world["images"].values())
    return st.one_of(
        st.binary(max_size=2048),
        st.sampled_from(originals).flatmap(lambda data: mutated(data, header=64)),
    )


def safetensors_header_size(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


# ---------------------------------------------------------------------------------------------
# translate, prepare, style and model files


def fuzz_translate(world, reliability, examples: int) -> None:
    @fuzz_settings(examples)
    @given(data=image_bytes(world), through_stdin=st.booleans(), ext=st.sampled_from([".png", ".jpg", ".gif", ".webp"]))
    def run(data, through_stdin, ext):
        if through_stdin:
            result, seconds = invoke("translate", "-", "-m", world["model"], "--out", "-", stdin=data)
        else:
            path = world["root"] / f"input{ext}"
            path.write_bytes(data)
            result, seconds = invoke("translate", path, "-m", world["model"], "--out", "-")
        check_answer(result, seconds, reliability)
        if result.exit_code == 0:  # it was still a decodable image: the answer is one
            Image.open(io.BytesIO(result.stdout_bytes)).load()

    run()


def fuzz_prepare(world, tmp_path, reliability, examples: int) -> None:
    counter = iter(range(10**6))

    @fuzz_settings(examples)
    @given(
        files=st.lists(image_bytes(world), min_size=1, max_size=4),
        ext=st.sampled_from([".png", ".jpg", ".bmp", ".tif"]),
    )
    def run(files, ext):
        root = tmp_path / f"p{next(counter)}"
        for domain in "AB":
            (root / domain).mkdir(parents=True)
            for i, data in enumerate(files):
                (root / domain / f"{i}{ext}").write_bytes(data[::-1] if domain == "B" and i else data)
        args = ("prepare", root / "A", root / "B", "--out", root / "out", "--size", "16", "--workers", "1")
        result, seconds = invoke(*args)
        check_answer(result, seconds, reliability)
        if result.exit_code == 0:
            manifest = json.loads((root / "out" / "manifest.json").read_text())
            assert manifest["complete"] and len(manifest["files"]) == 2 * len(files)
            assert all(e["status"] != "skipped" or e["reason"] for e in manifest["files"])
            for path in (root / "out").rglob("*.png"):
                Image.open(path).load()

    run()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
MANIFEST_FIELDS = ("domain", "source", "source_raw", "bytes", "mtime_ns", "sha256", "width", "height", "status",
                   "reason", "retry", "split", "duplicate_of", "outputs")  # fmt: skip


def fuzz_manifest(world, tmp_path, reliability, examples: int) -> None:
    """A prepared folder whose manifest.json had one field set to any JSON value: the rerun uses it
    or names it, and never touches anything outside the folder."""
    root = tmp_path / "manifest-fuzz"
    for domain in "AB":
        (root / domain).mkdir(parents=True)
        for i, fmt in enumerate(("PNG", "BMP")):
            data = world["images"][fmt]
            (root / domain / f"{i}.{fmt.lower()}").write_bytes(data[::-1] if domain == "B" and i else data)
    (root / "B" / "0.png").write_bytes(world["images"]["GIF"])
    base = root / "base"
    args = ("--size", "16", "--workers", "1", "--test-fraction", "0")
    result, _ = invoke("prepare", root / "A", root / "B", "--out", base, *args)
    assert result.exit_code == 0, result.output
    sources = {p: p.read_bytes() for p in root.glob("[AB]/*")}
    counter = iter(range(10**6))

    @fuzz_settings(examples)
    @given(
        where=st.one_of(
            st.tuples(st.just("top"), st.sampled_from(["format", "version", "complete", "kind", "sources",
                                                        "options", "split", "files"])),
            st.tuples(st.integers(0, 3), st.sampled_from(MANIFEST_FIELDS)),
        ),  # fmt: skip
        value=JSON_VALUES,
    )
    def run(where, value):
        out = root / f"out{next(counter)}"
        shutil.copytree(base, out)
        record = json.loads((out / "manifest.json").read_text())
        target = record if where[0] == "top" else record["files"][where[0]]
        target[where[1]] = value
        (out / "manifest.json").write_text(json.dumps(record))
        result, seconds = invoke("prepare", root / "A", root / "B", "--out", out, *args)
        check_answer(result, seconds, reliability)
        assert {p: p.read_bytes() for p in root.glob("[AB]/*")} == sources
        assert sorted(p.name for p in root.iterdir() if not p.name.startswith("out")) == ["A", "B", "base"]
        if result.exit_code == 0:
            for path in out.rglob("*.png"):
                Image.open(path).load()

    run()


def fuzz_weights_file(world, reliability, examples: int, which: str) -> None:
    """Mutated model files (as --model) or style files (as --style)."""
    original = world[which].read_bytes()
    target = world["root"] / f"mutated-{which}.safetensors"
    image = world["root"] / "photo.png"
    image.write_bytes(world["images"]["PNG"])

    @fuzz_settings(examples)
    @given(data=mutated(original, header=safetensors_header_size(original)))
    def run(data):
        target.write_bytes(data)
        model, style = (target, "seed:0") if which == "model" else (world["model"], target)
        result, seconds = invoke("translate", image, "-m", model, "--style", style, "--out", "-")
        check_answer(result, seconds, reliability)

    run()


def test_translate_random_and_mutated_images(world, reliability):
    fuzz_translate(world, reliability, 40)


def test_prepare_folders_of_random_and_mutated_images(world, tmp_path, reliability):
    fuzz_prepare(world, tmp_path, reliability, 15)


def test_prepare_with_a_mutated_manifest(world, tmp_path, reliability):
    fuzz_manifest(world, tmp_path, reliability, 30)


@pytest.mark.parametrize("which", ["model", "style"])
def test_mutated_model_and_style_files(world, reliability, which):
    fuzz_weights_file(world, reliability, 25, which)


@pytest.mark.slow
def test_many_more_bad_inputs(world, tmp_path, reliability):
    fuzz_translate(world, reliability, 400)
    fuzz_prepare(world, tmp_path, reliability, 100)
    fuzz_manifest(world, tmp_path, reliability, 300)
    fuzz_weights_file(world, reliability, 300, "model")
    fuzz_weights_file(world, reliability, 300, "style")


def test_bad_stdin_in_a_real_process(world, reliability):
    """End to end: bytes on a real stdin, a message on a real stderr, nothing on stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("MUNIT_DEBUG", None)
    command = [sys.executable, "-m", "munit_cli", "translate", "-", "-m", str(world["model"])]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    data = (os.urandom(3000), world["images"]["JPEG"][:-200])
    for proc in run_together(*({"args": command, "input": d, "env": env, **pipes} for d in data)):
        reliability.add("bad_inputs")
        err = proc.stderr.decode()
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        if proc.returncode != 1 or len(errors) != 1 or "Traceback" in err or proc.stdout:
            reliability.add("unclear_failures")
            pytest.fail(f"exit {proc.returncode}, stdout {proc.stdout[:100]!r}, stderr {err!r}")


# ---------------------------------------------------------------------------------------------
# Malicious safetensors files


def raw_safetensors(header: dict | str, data: bytes = b"", length: int | None = None) -> bytes:
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def munit_meta(**changes) -> dict:
    cfg = config.resolve("tiny", overrides=TINY_MODEL)
    meta = checkpoint.generator_metadata(cfg, NAMES, 1, "fp")
    meta.update(changes)
    return meta


def malicious_files(world) -> dict[str, bytes]:
    def tensors(**specs) -> dict:  # name=(shape, end of its data) as F32, and munit's metadata
        return {**{k: {"dtype": "F32", "shape": s, "data_offsets": [0, e]} for k, (s, e) in specs.items()},
                "__metadata__": munit_meta()}  # fmt: skip

    def with_config(config_text: str) -> dict:
        return {**tensors(w=([4], 16)), "__metadata__": munit_meta(config=config_text)}

    huge = config.resolve("tiny", overrides=TINY_MODEL).to_dict()
    huge["model"].update(dim=10**9, mlp_dim=10**9)
    deep = config.resolve("tiny", overrides=TINY_MODEL).to_dict()
    deep["model"]["n_res"] = 10**7
    wide = config.resolve("tiny", overrides=TINY_MODEL).to_dict()
    wide["model"].update(dim=4096, mlp_dim=65536, n_res=64)  # within the limits: gigabytes if built
    good = world["model"].read_bytes()
    wider = config.resolve("tiny", overrides={"model": {**TINY_MODEL["model"], "dim": 16}})
    return {
        "absurd header length": struct.pack("<Q", 2**60) + b"{}",
        "header longer than the file": struct.pack("<Q", 10**6) + b'{"__metadata__": {}}',
        "shape does not match the data": raw_safetensors(tensors(w=([10], 40)), b"\0" * 16),
        "huge declared shape": raw_safetensors(tensors(w=([2**31, 2**31], 16)), b"\0" * 16),
        "huge offsets": raw_safetensors(tensors(w=([2**30], 2**32)), b"\0" * 16),
        "overlapping tensors": raw_safetensors(tensors(a=([4], 16), b=([4], 16)), b"\0" * 16),
        "unknown dtype": raw_safetensors({"w": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
        "metadata not a table": raw_safetensors({"__metadata__": "hello"}),
        "metadata values not strings": raw_safetensors({"__metadata__": {"format": 5}}),
        "header not JSON": raw_safetensors("{this is not json"),
        "deeply nested header": raw_safetensors("[" * 100_000 + "]" * 100_000),
        "config not JSON": raw_safetensors(with_config("{not json"), b"\0" * 16),
        "names not JSON": raw_safetensors({**tensors(w=([4], 16)), "__metadata__": munit_meta(names="[x")}, b"\0" * 16),
        "config of a terabyte network": raw_safetensors(with_config(json.dumps(huge)), b"\0" * 16),
        "config of ten million blocks": raw_safetensors(with_config(json.dumps(deep)), b"\0" * 16),
        "config of a gigabyte network": raw_safetensors(with_config(json.dumps(wide)), b"\0" * 16),
        "weights of another architecture": _resave(good, config=wider.to_json()),
        "a style file as a model": world["style"].read_bytes(),
        "not safetensors at all": world["images"]["PNG"],
        "empty": b"",
    }


def _resave(data: bytes, **meta_changes) -> bytes:
    """A real model file whose metadata says something else (its checksum recomputed, as a forger would)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        path.write_bytes(data)
        tensors, meta = checkpoint.read_tensors(path, checkpoint.GENERATOR_KIND)
        checkpoint.save_tensors(path, tensors, {**meta, **meta_changes})
        return path.read_bytes()


# Loads the good model once (so torch's own memory is counted), then every malicious file as a
# model and as a style through the command line, and reports the growth of the peak RSS.
MALICIOUS_SCRIPT = """
import json, resource, sys
from typer.testing import CliRunner
from munit_cli.cli import app
model, image, *paths = sys.argv[1:]
runner = CliRunner()
runner.invoke(app, ["translate", image, "-m", model, "--out", "-"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
answers = []
for path in paths:
    uses = [["-m", path]] + ([] if "style-file" in path else [["-m", model, "--style", path]])
    for args in uses:
        r = runner.invoke(app, ["translate", image, *args, "--out", "-"])
        answers.append([path, r.exit_code, r.output])
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"answers": answers, "grown_kib": grown}))
"""


def test_malicious_safetensors_are_refused_without_large_allocations(world, tmp_path, reliability):
    paths = []
    for name, data in malicious_files(world).items():
        path = tmp_path / (name.replace(" ", "-") + ".safetensors")
        path.write_bytes(data)
        paths.append(str(path))
    image = tmp_path / "photo.png"
    image.write_bytes(world["images"]["PNG"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("MUNIT_DEBUG", None)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", MALICIOUS_SCRIPT, str(world["model"]), str(image), *paths],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for path, code, output in report["answers"]:
        reliability.add("bad_inputs")
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        if code not in (1, 2) or len(errors) != 1 or "Traceback" in output or "internal error" in output:
            reliability.add("unclear_failures")
            pytest.fail(f"{Path(path).name}: exit {code}: {output!r}")
        if "style" not in errors[0]:  # a bad --style is named by its spec, the others by their path
            assert path in errors[0] or path in output, output
    assert report["grown_kib"] < 64 * 1024, f"peak memory grew by {report['grown_kib'] // 1024} MiB"
    assert time.monotonic() - start < 120


def test_a_model_file_for_another_architecture_is_a_clear_error(world, tmp_path):
    path = tmp_path / "wider.safetensors"
    wider = config.resolve("tiny", overrides={"model": {**TINY_MODEL["model"], "dim": 16}})
    path.write_bytes(_resave(world["model"].read_bytes(), config=wider.to_json()))
    result, _ = invoke("translate", "-", "-m", path, "--out", "-", stdin=world["images"]["PNG"])
    assert result.exit_code == 1
    assert f"error: {path}: weights do not fit this architecture" in result.output


# ---------------------------------------------------------------------------------------------
# Nothing unpickles


UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNPICKLING_CALLS = {"torch.load", "torch.save", "torch.jit.load", "np.load", "numpy.load", "yaml.load"}
UNPICKLING_WORDS = {"weights_only", "allow_pickle", "Unpickler"}
# The one exception: `munit evaluate`'s FID Inception network is TorchScript, read by TorchScript's
# own C++ loader (it builds tensors and TorchScript types, never Python objects), and only after
# the file's sha256 matched the pinned one.
ALLOWED = {("munit_cli/metrics.py", "torch.jit.load")}


def code_names(path: Path) -> set[str]:
    """Names and dotted names in the code of a Python file, comments and strings (docs) left out."""
    names, dotted = set(), []
    with open(path, "rb") as f:
        for token in tokenize.tokenize(f.readline):
            if token.type == tokenize.NAME:
                dotted.append(token.string)
                names.add(".".join(dotted))
                names.add(token.string)
            elif not (token.type == tokenize.OP and token.string == "." and dotted):
                dotted = []
    return names


def test_nothing_unpickles(tmp_path):
    sample = tmp_path / "sample.py"
    # "pickle" only in a docstring, "torch.load" in a comment and in code: the scan must see the code only
    sample.write_text('"""pickle"""\nimport torch  # torch.load\nw = torch.load(p, weights_only=1)\n')
    assert code_names(sample) >= {"torch.load", "weights_only"} and "pickle" not in code_names(sample)
    files = [*(REPO / "munit_cli").rglob("*.py"), *REPO.glob("examples/*.py"), *REPO.glob("benchmarks/*.py")]
    assert len(files) > 10
    for path in sorted(files):
        found = code_names(path) & (UNPICKLING_MODULES | UNPICKLING_CALLS | UNPICKLING_WORDS)
        found -= {name for where, name in ALLOWED if path == REPO / where}
        assert not found, f"{path.relative_to(REPO)} uses {sorted(found)}: munit never unpickles (safetensors only)"


def test_loading_weights_and_styles_never_calls_an_unpickler(world, tmp_path, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled")

    for owner, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(owner, name, refuse)
    bundle = tmp_path / "export"
    for args in (
        ["translate", "-", "-m", world["model"], "--style", world["style"], "--out", "-"],
        ["export", world["model"], "--format", "bundle", "--out", bundle],
        ["translate", "-", "-m", bundle / "bundle.safetensors", "--out", "-"],
    ):
        result, _ = invoke(*args, stdin=world["images"]["PNG"])
        assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------------------
# Unusual paths


def test_paths_with_spaces_unicode_brackets_and_leading_dashes(tmp_path, monkeypatch):
    """Every command, with names like '-A outlines é' relative to the working folder: positional
    arguments after `--`, option values as they are."""
    base = tmp_path / "a folder [1] ünï ☃"
    synthetic.make_shapes(base / "src", n_train=4, n_test=1, size=32)
    (base / "src" / "trainA").rename(base / "-A outlines é")
    (base / "src" / "trainB").rename(base / "-B filled [x]")
    monkeypatch.chdir(base)
    photo = "-in put [ü].png"
    Path(photo).write_bytes((base / "src" / "testA" / os.listdir(base / "src" / "testA")[0]).read_bytes())
    tiny = ["--preset", "tiny", "--set", "model.dim=8", "--set", "model.mlp_dim=16", "--set", "model.n_res=1",
            "--set", "model.dis_num_scales=2", "--size", "32", "--batch-size", "1", "--iters", "2", "--device", "cpu"]  # fmt: skip
    run, gen = "-run ☃", "-run ☃/checkpoints/gen_00000002.safetensors"
    steps = [
        (["train", "--out", run, *tiny, "--", "-A outlines é", "-B filled [x]"], gen),
        (["prepare", "--out", "-prepared ü", "--size", "16", "--workers", "1", "--",
          "-A outlines é", "./-B filled [x]"], "-prepared ü/manifest.json"),
        (["translate", "-m", run, "--out", "-out [1] ☃.png", "--", photo], "-out [1] ☃.png"),
        (["translate", "-m", gen, "--out", "-out dir é", "--", photo, "./" + photo],
         "-out dir é/-in put [ü]-2_seed0.png"),
        (["style", "sample", "-m", run, "-o", "-style ü.safetensors"], "-style ü.safetensors"),
        (["style", "encode", "-m", run, "-o", "-enc [e].safetensors", "--", photo], "-enc [e].safetensors"),
        (["translate", "-m", run, "--style", "-style ü.safetensors", "--out", "-styled.png", "--", photo],
         "-styled.png"),
        (["interpolate", "-m", run, "--style-a", "-enc [e].safetensors", "--gif", "--out", "-morph ö", "--", photo],
         "-morph ö/interpolation.gif"),
        (["export", "--format", "bundle", "--out", "-export ñ", "--", run], "-export ñ/bundle.safetensors"),
        (["translate", "-m", "-export ñ/bundle.safetensors", "--out", "-from bundle.png", "--", photo],
         "-from bundle.png"),
    ]
    for args, made in steps:
        result, _ = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
        assert Path(made).is_file(), (args, result.output)
    # messages print such names as they are (rich markup would have eaten '[1]')
    result, _ = invoke("translate", "-m", run, "--out", "-out [1] ☃.png", "--overwrite", "--", photo)
    assert "-> -out [1] ☃.png" in result.output
