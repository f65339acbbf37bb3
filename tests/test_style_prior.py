"""The fitted style prior (model.style_prior = "fitted", the `cpu` preset): fitted at every
checkpoint to the encoded styles of training images, saved with each set of weights, checked when
read, and used wherever munit draws a random style (translate, style sample, evaluate, export)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import _merged, write_shape_images
from munit_cli import checkpoint, config, data, export, infer, models, styles, train
from munit_cli.cli import app
from munit_cli.errors import MunitError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fit_prior_recovers_a_gaussian_and_draws_through_it():
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor([1.0, -2.0, 0.5])
    scale_tril = torch.tensor([[2.0, 0.0, 0.0], [0.5, 1.0, 0.0], [-1.0, 0.3, 0.2]])
    codes = mean + torch.randn(20000, 3, generator=g) @ scale_tril.T
    fitted_mean, fitted_tril = styles.fit_prior(codes)
    torch.testing.assert_close(fitted_mean, mean, atol=0.05, rtol=0)
    torch.testing.assert_close(fitted_tril, scale_tril, atol=0.05, rtol=0)
    assert torch.equal(fitted_tril, fitted_tril.tril())
    z = styles.sample_style(7, 2, 3)
    torch.testing.assert_close(styles.sample_style(7, 2, 3, prior=(mean, scale_tril)), mean + scale_tril @ z)
    torch.testing.assert_close(styles.sample_style(7, 2, 3, 0.5, (mean, scale_tril)), mean + scale_tril @ (0.5 * z))


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("prior")
    a, b = root / "outlines", root / "filled"
    write_shape_images(a, filled=False, seed=1)
    write_shape_images(b, filled=True, seed=2)
    overrides = _merged({"model": {"style_prior": "fitted"}, "train": {"iters": 3, "checkpoint_every": 3, "ema_start": 1}})
    cfg = config.resolve("paper", overrides=overrides)
    result = train.run(cfg, [a, b], root / "run")
    return cfg, result, (a, b)


def test_training_saves_the_prior_of_each_set_of_weights_fitted_to_its_style_encoder(fitted_run):
    cfg, result, (a, b) = fitted_run
    tensors = load_file(str(result.generator))
    assert {k for k in tensors if "style_prior" in k} == {
        f"{prefix}style_prior.{d}.{part}" for prefix in ("", "ema.") for d in "ab" for part in ("mean", "scale_tril")
    }
    for use_ema in (True, False):
        loaded = checkpoint.load_generator(result.generator, use_ema=use_ema)
        for domain in "ab":
            source = data.open_sources([a, b], cfg.data, 3)["ab".index(domain)]
            x = data.preview_batch(source, cfg.data, train.prior_image_count(cfg.data.crop_size), spread=True)
            with torch.no_grad():
                codes = loaded.model.generator(domain).style_encoder(x)
            mean, scale_tril = loaded.priors[domain]
            want_mean, want_tril = styles.fit_prior(codes)
            torch.testing.assert_close(mean, want_mean, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(scale_tril, want_tril, atol=1e-4, rtol=1e-3)
    raw, ema = (checkpoint.load_generator(result.generator, use_ema=u).priors["b"][0] for u in (False, True))
    assert not torch.equal(raw, ema)  # each set of weights has its own encoder, so its own prior


def test_random_styles_of_translate_style_sample_and_export_follow_the_prior(fitted_run, tmp_path):
    _, result, _ = fitted_run
    loaded = checkpoint.load_generator(result.generator)
    tr = infer.Translator(loaded, "b", torch.device("cpu"))
    mean, scale_tril = loaded.priors["b"]
    want = mean + scale_tril @ styles.sample_style(4, 1, tr.style_dim)
    torch.testing.assert_close(styles.resolve_style("seed:4:1", tr).code, want)

    out = tmp_path / "s.safetensors"
    runner = CliRunner()
    args = ["style", "sample", "--model", str(result.generator), "--domain", "B", "--seed", "4", "--index", "1", "--out", str(out)]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    (code,) = styles.read_style_file(out)[0].values()
    torch.testing.assert_close(code, want)

    bundle = export.write_bundle(loaded, tmp_path / "bundle.safetensors", "float16", "ema")
    reread = checkpoint.load_generator(bundle.path)
    torch.testing.assert_close(reread.priors["b"][1], scale_tril)
    described = export.describe(loaded, "ema")["style_prior"]
    assert described["b"]["mean"] == pytest.approx(mean.tolist())


def test_a_model_without_a_prior_draws_standard_normal_styles(tmp_path, tiny_cfg):
    cfg = tiny_cfg()
    gen, _ = models.build(cfg.model)
    path = tmp_path / "gen.safetensors"
    checkpoint.save_generator(path, gen, cfg, ("a", "b"), 1, "0" * 16)
    loaded = checkpoint.load_generator(path)
    assert loaded.priors == {}
    tr = infer.Translator(loaded, "b", torch.device("cpu"))
    assert torch.equal(styles.resolve_style("seed:4", tr).code, styles.sample_style(4, 0, tr.style_dim))


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t.update({"style_prior.b.scale_tril": t["style_prior.b.scale_tril"].T.contiguous() + 1}),  # not triangular
        lambda t: t.update({"style_prior.b.mean": torch.full_like(t["style_prior.b.mean"], float("nan"))}),
        lambda t: t.update({"style_prior.b.mean": torch.zeros(3)}),  # wrong size
        lambda t: t.pop("style_prior.b.scale_tril"),  # half a prior
        lambda t: t.update({"style_prior.b.scale_tril": -t["style_prior.b.scale_tril"]}),  # negative diagonal
    ],
)
def test_a_damaged_prior_is_refused_with_the_domain_named(tmp_path, tiny_cfg, damage):
    cfg = tiny_cfg()
    gen, _ = models.build(cfg.model)
    d = cfg.model.style_dim
    prior = (torch.zeros(d), torch.eye(d))
    tensors = {**gen.state_dict(), **checkpoint.prior_tensors({"a": prior, "b": prior})}
    damage(tensors)
    path = tmp_path / "gen.safetensors"
    checkpoint.save_tensors(path, tensors, checkpoint.generator_metadata(cfg, ("a", "b"), 1, "0" * 16, has_ema="false"))
    with pytest.raises(MunitError, match="style prior of domain B is damaged"):
        checkpoint.load_generator(path)


def test_evaluate_json_has_colour_on_white_and_draws_through_the_models_prior(fitted_run, tmp_path, monkeypatch):
    _, result, _ = fitted_run
    drawn = []

    def spy(seed, index, dim, truncation=1.0, prior=None):
        drawn.append(prior)
        return real_sample(seed, index, dim, truncation, prior)

    real_sample = styles.sample_style
    monkeypatch.setattr(styles, "sample_style", spy)
    a, b = tmp_path / "line", tmp_path / "flat"
    for i in range(3):  # twins by name: outlines on white, and the same squares filled red
        for folder, fill in ((a, None), (b, (220, 30, 30))):
            img = Image.new("RGB", (32, 32), "white")
            ImageDraw.Draw(img).rectangle([6 + i, 6, 24, 24 - i], outline=(0, 0, 0), fill=fill, width=2)
            folder.mkdir(exist_ok=True)
            img.save(folder / f"sq{i}.png")
    runner = CliRunner()
    args = ["evaluate", "--test-a", str(a), "--test-b", str(b), "--model", str(result.generator), "--num-styles", "2", "--json"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    scores = json.loads(done.stdout)
    for direction in scores["directions"].values():
        assert 0.0 <= direction["colour_on_white"] <= 1.0
    priors = checkpoint.load_generator(result.generator).priors
    assert len(drawn) == 2 * 3 * 2  # two directions, three inputs, two styles each
    for d in "ab":  # each direction draws through its target domain's prior
        assert sum(p is not None and torch.equal(p[0], priors[d][0]) and torch.equal(p[1], priors[d][1]) for p in drawn) == 6
