"""Each loss term on hand-made tensors against the reference formulas, the weighted generator
objective, the training updates' terms, the VGG perceptual loss's weights handling."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import shutil
import time

import pytest
import torch

from munit_cli import config, data, dist, losses, models, train, updates
from munit_cli.config import LossConfig
from munit_cli.errors import MunitError


def test_recon_loss_is_l1_mean():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 4.0], [3.0, 1.0]])
    assert losses.recon_loss(x, target).item() == pytest.approx((1 + 2 + 0 + 3) / 4)
    assert losses.recon_loss(x, x).item() == 0.0


def test_recon_loss_accumulates_in_float32():
    x = torch.tensor([1.0, -1.0], dtype=torch.bfloat16)
    y = torch.tensor([0.0, 0.0], dtype=torch.bfloat16)
    out = losses.recon_loss(x, y)
    assert out.dtype == torch.float32 and out.item() == 1.0


def test_lsgan_discriminator_loss_summed_over_scales():
    real = [torch.tensor([[0.5, 1.0]]), torch.tensor([[[2.0]]])]
    fake = [torch.tensor([[0.0, 1.0]]), torch.tensor([[[-1.0]]])]
    # scale 0: mean(fake^2) = 0.5, mean((real - 1)^2) = 0.125; scale 1: 1 + 1
    assert losses.dis_loss(real, fake).item() == pytest.approx(0.5 + 0.125 + 1.0 + 1.0)
    # a perfect discriminator (real -> 1, fake -> 0) has zero loss
    assert losses.dis_loss([torch.ones(1, 1, 4, 4)] * 3, [torch.zeros(1, 1, 4, 4)] * 3).item() == 0.0


def test_lsgan_generator_loss_summed_over_scales():
    fake = [torch.tensor([[0.0, 1.0]]), torch.tensor([[[3.0]]]), torch.tensor([[-1.0, 1.0, 1.0, 1.0]])]
    assert losses.gen_adv_loss(fake).item() == pytest.approx(0.5 + 4.0 + 1.0)
    assert losses.gen_adv_loss([torch.ones(2, 1, 3, 3)] * 2).item() == 0.0


def test_loss_weight_defaults_are_the_reference():
    w = LossConfig()
    assert (w.gan_w, w.recon_x_w, w.recon_c_w, w.recon_s_w, w.recon_x_cyc_w, w.vgg_w) == (1, 10, 1, 1, 0, 0)


def _hand_terms():
    names = [
        "adv_a", "adv_b", "recon_x_a", "recon_x_b", "recon_s_a", "recon_s_b",
        "recon_c_a", "recon_c_b", "cyc_x_a", "cyc_x_b", "vgg_a", "vgg_b", "div_a", "div_b", "nce_a", "nce_b",
        "fm_a", "fm_b",
    ]  # fmt: skip
    return {name: torch.tensor(float(i + 1)) for i, name in enumerate(names)}


def test_total_generator_loss_weighting():
    t = _hand_terms()
    w = LossConfig(
        gan_w=1.5, recon_x_w=10.0, recon_c_w=2.0, recon_s_w=3.0, recon_x_cyc_w=7.0, vgg_w=0.5, diversity_w=0.25, nce_w=0.1,
        fm_w=4.0,
    )
    want = (
        1.5 * (1 + 2)  # adversarial
        + 10.0 * (3 + 4)  # image reconstruction
        + 3.0 * (5 + 6)  # style reconstruction
        + 2.0 * (7 + 8)  # content reconstruction
        + 7.0 * (9 + 10)  # explicit cycle
        + 0.5 * (11 + 12)  # perceptual
        + 0.25 * (13 + 14)  # style diversity (the terms themselves carry its sign)
        + 0.1 * (15 + 16)  # contrastive patches
        + 4.0 * (17 + 18)  # feature matching
    )
    assert losses.total_generator_loss(t, w).item() == pytest.approx(want)
    # a domain's factor multiplies its own term only
    scaled = dataclasses.replace(
        w, gan_scale_a=3.0, gan_scale_b=0.5, recon_x_scale_b=2.0, recon_c_scale_a=4.0, recon_c_scale_b=0.0
    )
    assert losses.total_generator_loss(t, scaled).item() == pytest.approx(
        want + 1.5 * ((3 - 1) * 1 + (0.5 - 1) * 2) + 10.0 * (2 - 1) * 4 + 2.0 * ((4 - 1) * 7 + (0 - 1) * 8)
    )
    assert losses.total_generator_loss(t, dataclasses.replace(w, recon_x_scale_a=0.5)).item() == pytest.approx(want - 10.0 * 0.5 * 3)


def test_every_term_has_a_weight_key_of_the_config():
    assert set(losses.TERM_WEIGHTS) == set(_hand_terms())
    fields = {f for f in LossConfig.__dataclass_fields__}
    assert set(losses.TERM_WEIGHTS.values()) <= fields
    with pytest.raises(KeyError):  # a term without a weight is a bug, not a silent zero
        losses.total_generator_loss({"recon_y_a": torch.tensor(1.0)}, LossConfig())


def test_total_generator_loss_without_optional_terms_uses_defaults():
    t = {k: v for k, v in _hand_terms().items() if not k.startswith(("cyc", "vgg", "div"))}
    want = 1 * (1 + 2) + 10 * (3 + 4) + 1 * (5 + 6) + 1 * (7 + 8)
    assert losses.total_generator_loss(t, LossConfig()).item() == pytest.approx(want)


# ---------------------------------------------------------------------------------------------
# The terms of the objective on real networks, recomputed from the reference definitions


def _setup(tiny_cfg):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    gen, dis = models.build(cfg.model)
    g = torch.Generator().manual_seed(1)
    x_a = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    x_b = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    s_a = torch.randn(2, cfg.model.style_dim, generator=g)
    s_b = torch.randn(2, cfg.model.style_dim, generator=g)
    return cfg, gen, dis, x_a, x_b, s_a, s_b


def _l1(x, y):
    return (x - y).abs().mean().item()


def _g_adv(outputs):
    return sum(((o - 1) ** 2).mean().item() for o in outputs)


@torch.no_grad()
def test_generator_terms_follow_the_reference(tiny_cfg):
    cfg, gen, dis, x_a, x_b, s_a, s_b = _setup(tiny_cfg)
    ga, gb, da, db = gen.gen_a, gen.gen_b, dis.dis_a, dis.dis_b
    out = gen(x_a, x_b, s_a, s_b, cycle=True)
    got = losses.generator_terms(
        out, x_a, x_b, losses.gen_adv_loss(da(out["x_ba"])), losses.gen_adv_loss(db(out["x_ab"]))
    )

    c_a, c_b = ga.content_encoder(x_a), gb.content_encoder(x_b)
    sp_a, sp_b = ga.style_encoder(x_a), gb.style_encoder(x_b)
    x_ba, x_ab = ga.decode(c_b, s_a), gb.decode(c_a, s_b)  # x_ba = G_a(c_b, s_a), x_ab = G_b(c_a, s_b)
    torch.testing.assert_close(out["x_ba"], x_ba)
    torch.testing.assert_close(out["x_ab"], x_ab)
    want = {
        "adv_a": _g_adv(da(x_ba)),  # D_a judges translations into domain a
        "adv_b": _g_adv(db(x_ab)),
        "recon_x_a": _l1(ga.decode(c_a, sp_a), x_a),
        "recon_x_b": _l1(gb.decode(c_b, sp_b), x_b),
        "recon_s_a": _l1(ga.style_encoder(x_ba), s_a),
        "recon_s_b": _l1(gb.style_encoder(x_ab), s_b),
        "recon_c_b": _l1(ga.content_encoder(x_ba), c_b),
        "recon_c_a": _l1(gb.content_encoder(x_ab), c_a),
        "cyc_x_a": _l1(ga.decode(gb.content_encoder(x_ab), sp_a), x_a),
        "cyc_x_b": _l1(gb.decode(ga.content_encoder(x_ba), sp_b), x_b),
    }
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].item() == pytest.approx(value, rel=1e-4, abs=1e-6), key

    w = LossConfig(recon_x_cyc_w=10.0, recon_c_w=2.0, recon_s_w=3.0)
    total = (
        1.0 * (want["adv_a"] + want["adv_b"])
        + 10.0 * (want["recon_x_a"] + want["recon_x_b"])
        + 2.0 * (want["recon_c_a"] + want["recon_c_b"])
        + 3.0 * (want["recon_s_a"] + want["recon_s_b"])
        + 10.0 * (want["cyc_x_a"] + want["cyc_x_b"])
    )
    assert losses.total_generator_loss(got, w).item() == pytest.approx(total, rel=1e-4)


@torch.no_grad()
def test_no_cycle_terms_without_the_cycle_pass(tiny_cfg):
    cfg, gen, dis, x_a, x_b, s_a, s_b = _setup(tiny_cfg)
    out = gen(x_a, x_b, s_a, s_b, cycle=False)
    terms = losses.generator_terms(out, x_a, x_b, torch.tensor(0.0), torch.tensor(0.0))
    assert not any(k.startswith(("cyc", "vgg")) for k in terms)
    assert len(terms) == 8


@torch.no_grad()
def test_discriminator_pair_and_loss_follow_the_reference(tiny_cfg):
    cfg, gen, dis, x_a, x_b, s_a, s_b = _setup(tiny_cfg)
    da, db = dis.dis_a, dis.dis_b
    x_ba = gen.gen_a.decode(gen.gen_b.content_encoder(x_b), s_a)
    x_ab = gen.gen_b.decode(gen.gen_a.content_encoder(x_a), s_b)
    scores = dis(x_a, x_ba, x_b, x_ab)
    for key, (d, x) in {"real_a": (da, x_a), "fake_a": (da, x_ba), "real_b": (db, x_b), "fake_b": (db, x_ab)}.items():
        assert len(scores[key]) == 2
        for got, want in zip(scores[key], d(x)):
            torch.testing.assert_close(got, want)

    def d_loss(d, real, fake):
        return sum((f**2).mean().item() + ((r - 1) ** 2).mean().item() for r, f in zip(d(real), d(fake)))

    got = losses.dis_loss(scores["real_a"], scores["fake_a"]) + losses.dis_loss(scores["real_b"], scores["fake_b"])
    assert got.item() == pytest.approx(d_loss(da, x_a, x_ba) + d_loss(db, x_b, x_ab), rel=1e-5)


def _dis_updates(tiny_cfg, settings: list[dict]):
    """One discriminator update from the same weights and translations per loss setting: the
    discriminators' scores before it, and each update's loss and its gradients per domain."""
    cfg, gen, dis, x_a, x_b, s_a, s_b = _setup(tiny_cfg)
    with torch.no_grad():
        x_ba = gen.gen_a.decode(gen.gen_b.content_encoder(x_b), s_a)
        x_ab = gen.gen_b.decode(gen.gen_a.content_encoder(x_a), s_b)
        scores = dis(x_a, x_ba, x_b, x_ab)
    runs = []
    for loss in settings:
        d = copy.deepcopy(dis)
        opt = updates.make_optimizer(d.parameters(), cfg)
        value = updates.dis_update(d, opt, x_a, x_b, x_ba, x_ab, tiny_cfg(loss=loss), lambda x: x, contextlib.nullcontext)
        runs.append((value, {name: [p.grad.clone() for p in getattr(d, name).parameters()] for name in ("dis_a", "dis_b")}))
    return scores, runs


def test_discriminator_loss_is_weighted_by_gan_w(tiny_cfg):
    """As in the authors' trainer: D's loss is gan_w times the LSGAN terms (with weight decay Adam
    is not scale-invariant, so this matters whenever gan_w != 1)."""
    scores, [(value_1, grads_1), (value_25, grads_25)] = _dis_updates(tiny_cfg, [{"gan_w": 1.0}, {"gan_w": 2.5}])
    assert value_25.item() == pytest.approx(2.5 * value_1.item(), rel=1e-6)
    unweighted = losses.dis_loss(scores["real_a"], scores["fake_a"]) + losses.dis_loss(scores["real_b"], scores["fake_b"])
    assert value_1.item() == pytest.approx(unweighted.item(), rel=1e-6)
    for name in ("dis_a", "dis_b"):
        for g1, g2 in zip(grads_1[name], grads_25[name]):
            torch.testing.assert_close(g2, 2.5 * g1, rtol=1e-5, atol=1e-8)


def test_discriminator_loss_is_scaled_per_domain(tiny_cfg):
    """loss.gan_scale_a and _b weigh each domain's discriminator loss, and only that one's gradients."""
    scores, [(_, plain), (value, scaled)] = _dis_updates(
        tiny_cfg, [{"gan_w": 2.0}, {"gan_w": 2.0, "gan_scale_a": 3.0, "gan_scale_b": 0.5}]
    )
    loss_a = losses.dis_loss(scores["real_a"], scores["fake_a"]).item()
    loss_b = losses.dis_loss(scores["real_b"], scores["fake_b"]).item()
    assert value.item() == pytest.approx(2.0 * (3.0 * loss_a + 0.5 * loss_b), rel=1e-5)
    for name, factor in (("dis_a", 3.0), ("dis_b", 0.5)):
        for g1, g2 in zip(plain[name], scaled[name]):
            torch.testing.assert_close(g2, factor * g1, rtol=1e-5, atol=1e-8)


def test_domain_scales_are_range_checked(tiny_cfg):
    with pytest.raises(MunitError, match="gan_scale_b"):
        tiny_cfg(loss={"gan_scale_b": -1.0})
    with pytest.raises(MunitError, match="recon_c_scale_a"):
        tiny_cfg(loss={"recon_c_scale_a": 1e4})
    assert set(losses.TERM_SCALES.values()) <= set(LossConfig.__dataclass_fields__)


# ---------------------------------------------------------------------------------------------
# The learning-rate schedule


def test_learning_rate_halves_where_the_authors_scheduler_does(tiny_cfg):
    cfg = tiny_cfg(optim={"lr_step": 100_000})
    lr = cfg.optim.lr
    assert updates.learning_rate(cfg, 0) == lr
    assert updates.learning_rate(cfg, 99_998) == lr  # 0-based iterations
    assert updates.learning_rate(cfg, 99_999) == lr / 2  # the first halving
    assert updates.learning_rate(cfg, 199_998) == lr / 2
    assert updates.learning_rate(cfg, 199_999) == lr / 4


def test_learning_rate_matches_a_step_scheduler_stepped_before_each_update(tiny_cfg):
    """The authors call the scheduler's step() at the top of every iteration, then update."""
    import warnings

    cfg = tiny_cfg(optim={"lr_step": 3, "lr_gamma": 0.5})
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=cfg.optim.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when the scheduler steps before the optimizer
        for iteration in range(12):
            scheduler.step()
            assert updates.learning_rate(cfg, iteration) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), iteration


def test_linear_learning_rate_reaches_zero_at_the_end_of_the_iterations_or_the_budget(tiny_cfg):
    cfg = tiny_cfg(optim={"lr_policy": "linear", "lr": 1e-3, "lr_step": 2}, train={"iters": 100})
    assert updates.learning_rate(cfg, 0) == pytest.approx(1e-3)
    assert updates.learning_rate(cfg, 50) == pytest.approx(5e-4)  # lr_step plays no part
    assert updates.learning_rate(cfg, 99) == pytest.approx(1e-5)  # the last update still moves
    # a time budget three quarters gone wins over the iterations' tenth
    assert updates.learning_rate(cfg, 10, budget_used=0.75) == pytest.approx(2.5e-4)
    assert updates.learning_rate(cfg, 90, budget_used=0.5) == pytest.approx(1e-4)
    assert updates.learning_rate(cfg, 10, budget_used=1.0) == 0.0
    assert updates.learning_rate(cfg, 10, base=2e-3, budget_used=0.5) == pytest.approx(1e-3)  # D's own rate
    step = tiny_cfg(train={"iters": 100}, optim={"lr": 1e-3})
    assert updates.learning_rate(step, 99, budget_used=0.9) == 1e-3  # the paper's policy ignores the budget


def test_linear_learning_rate_in_a_run_follows_its_iterations_and_its_budget(image_folders, tiny_cfg, tmp_path):
    a, b = image_folders
    cfg = tiny_cfg(optim={"lr_policy": "linear", "lr": 1e-3}, train={"iters": 4, "log_every": 1})

    def logged_rates(out):
        return [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]

    train.run(cfg, [a, b], tmp_path / "hour", minutes=60)  # an hour: seconds of it gone barely count
    assert logged_rates(tmp_path / "hour") == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4], rel=1e-3)
    # a budget already spent when the first step starts: that step trains at rate zero
    result = train.run(cfg, [a, b], tmp_path / "spent", minutes=1e-6)
    assert result.step == 1 and logged_rates(tmp_path / "spent") == [0.0]


def test_the_budget_used_is_the_fraction_of_the_minutes_gone(tiny_cfg):
    cfg = tiny_cfg()
    session = train.Session(cfg, dist.Context(0, 1, 0, torch.device("cpu")), None, None, ("a", "b"), "", None)
    assert session.budget_used(0) == 0.0  # no budget
    half = train.Session(cfg, dist.Context(0, 1, 0, torch.device("cpu")), None, None, ("a", "b"), "", None, 0, time.monotonic() + 30, 60.0)
    assert half.budget_used(0) == pytest.approx(0.5, abs=0.02)
    over = train.Session(cfg, dist.Context(0, 1, 0, torch.device("cpu")), None, None, ("a", "b"), "", None, 0, time.monotonic() - 5, 60.0)
    assert over.budget_used(7) == 1.0


# ---------------------------------------------------------------------------------------------
# VGG perceptual loss: user-supplied weights, clear errors


def test_vgg_missing_weights_file(tmp_path):
    missing = tmp_path / "nowhere" / "vgg16.safetensors"
    with pytest.raises(MunitError) as info:
        losses.VGGPerceptual(missing)
    assert "VGG" in str(info.value) and str(missing) in str(info.value)
    assert "not found" in str(info.value)
    assert info.value.hint and "download" in info.value.hint


def test_vgg_weights_file_with_wrong_keys(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(MunitError) as info:
        losses.VGGPerceptual(path)
    assert str(path) in str(info.value) and "VGG-16" in str(info.value)


def test_vgg_weights_file_not_safetensors(tmp_path):
    path = tmp_path / "vgg16.pth"
    path.write_bytes(b"\x80\x02this is a pickle, not safetensors" * 10)
    with pytest.raises(MunitError) as info:
        losses.VGGPerceptual(path)
    assert str(path) in str(info.value)


def test_vgg_loss_with_valid_weights(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["D"])  # VGG-16's feature stack, random weights
    path = tmp_path / "vgg16.safetensors"
    save_file({f"features.{k}": v for k, v in features.state_dict().items()}, str(path))
    vgg = losses.VGGPerceptual(path)
    assert not any(p.requires_grad for p in vgg.parameters())
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    assert vgg(y, y).item() == 0.0
    loss = vgg(x, y)
    assert loss.item() > 0
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    gray = torch.rand(1, 1, 32, 32) * 2 - 1
    assert torch.isfinite(vgg(gray, gray.flip(-1)))

    # relu5_3 as in the authors' network: no pooling after relu4_3, so 1/8 of the input, not 1/16
    assert vgg.features(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 8, 8)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in vgg.features) == 3
    assert isinstance(vgg.features[-1], torch.nn.ReLU)
    # the conv weights are the file's, in order: conv5_1 follows relu4_3 directly
    convs = [m for m in vgg.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13
    assert torch.equal(convs[10].weight, features[24].weight) and torch.equal(convs[-1].weight, features[28].weight)


def test_cosine_learning_rate_falls_as_half_a_cosine_to_zero_at_the_end(tiny_cfg):
    cfg = tiny_cfg(optim={"lr_policy": "cosine", "lr": 1e-3}, train={"iters": 100})
    assert updates.learning_rate(cfg, 0) == pytest.approx(1e-3)
    assert updates.learning_rate(cfg, 50) == pytest.approx(5e-4)  # half way: half the rate
    assert updates.learning_rate(cfg, 25) == pytest.approx(1e-3 * (1 + 2**-0.5) / 2)
    assert updates.learning_rate(cfg, 10, budget_used=0.75) == pytest.approx(1e-3 * (1 - 2**-0.5) / 2)
    assert updates.learning_rate(cfg, 10, budget_used=1.0) == pytest.approx(0.0, abs=1e-18)


def test_patch_nce_rewards_the_same_location_and_only_trains_the_translation():
    g = torch.Generator().manual_seed(0)
    source = [torch.randn(2, 8, 6, 6, generator=g), torch.randn(2, 16, 3, 3, generator=g)]
    same = [f.clone().requires_grad_(True) for f in source]
    shuffled = [f[:, :, torch.randperm(f.shape[2])].clone() for f in source]
    key = [f.clone().requires_grad_(True) for f in source]
    loss_same = losses.patch_nce(key, same, 16, 0.07, torch.Generator().manual_seed(1))
    loss_shuffled = losses.patch_nce(source, shuffled, 16, 0.07, torch.Generator().manual_seed(1))
    assert float(loss_same.detach()) < 0.05 < 2.0 < float(loss_shuffled)  # near log(1) against near chance
    loss_same.backward()
    assert key[0].grad is None  # the input's features are the fixed key
    assert all(f.grad is not None for f in same)
    # by hand, one map, every location: cross-entropy of each query's cosine similarities to all keys
    src, out = torch.randn(1, 4, 2, 2, generator=g), torch.randn(1, 4, 2, 2, generator=g)
    q = torch.nn.functional.normalize(out.flatten(2)[0].T, dim=1)
    k = torch.nn.functional.normalize(src.flatten(2)[0].T, dim=1)
    want = torch.nn.functional.cross_entropy(q @ k.T / 0.5, torch.arange(4))
    got = losses.patch_nce([src], [out], 100, 0.5, torch.Generator().manual_seed(2))  # all 4 locations, any order
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_patch_nce_terms_read_the_content_encoders_features_of_input_and_translation(tiny_cfg):
    cfg, gen, dis, x_a, x_b, s_a, s_b = _setup(tiny_cfg)
    with torch.no_grad():
        out = gen(x_a, x_b, s_a, s_b, features=True)
        plain = gen(x_a, x_b, s_a, s_b)
    enc_b = gen.gen_b.content_encoder
    assert len(out["feat_a"]) == len(enc_b.feature_layers) == cfg.model.n_downsample + 2
    torch.testing.assert_close(out["feat_ab"][-1], out["c_a_recon"])  # the last map is the code
    torch.testing.assert_close(out["feat_ab"][0], enc_b.model[0](out["x_ab"]))
    for key in ("x_ab", "x_ba", "c_a_recon", "s_b_recon"):
        torch.testing.assert_close(out[key], plain[key])  # the same pass, features or not
    terms = losses.nce_terms(out, LossConfig(nce_w=1.0), torch.Generator().manual_seed(0))
    assert set(terms) == {"nce_a", "nce_b"} and all(float(v) > 0 for v in terms.values())
    w = LossConfig(nce_w=2.0)
    total = losses.total_generator_loss(terms, w)
    assert float(total) == pytest.approx(2.0 * float(terms["nce_a"] + terms["nce_b"]), rel=1e-6)


def test_a_training_step_with_patch_nce_logs_its_terms_and_changes_the_update(tiny_cfg):
    x_a, x_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    params = {}
    for w in (0.0, 1.0):
        trainer = updates.Trainer(tiny_cfg(loss={"nce_w": w}, train={"batch_size": 2}), torch.device("cpu"))
        terms = trainer.step(x_a, x_b, 0)
        assert ("nce_a" in terms) == (w > 0)
        params[w] = torch.cat([p.detach().flatten() for p in trainer.gen.parameters()])
    assert not torch.equal(params[0.0], params[1.0])


def test_the_discriminator_returns_every_hidden_layer_and_the_same_maps_when_asked(tiny_cfg):
    cfg = tiny_cfg().model
    torch.manual_seed(0)
    dis = models.Discriminator(cfg)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    maps, hidden = dis(x, features=True)
    assert len(hidden) == cfg.dis_num_scales * cfg.dis_n_layer
    assert hidden[0].shape == (2, cfg.dis_dim, 16, 16)  # the finest scale's first layer
    assert hidden[cfg.dis_n_layer].shape == (2, cfg.dis_dim, 8, 8)  # the next scale's first
    for got, plain in zip(maps, dis(x)):
        torch.testing.assert_close(got, plain)
    torch.testing.assert_close(maps[0], dis.scales[0][-1](hidden[cfg.dis_n_layer - 1]))


def test_feature_matching_compares_average_activations_and_only_trains_the_translation():
    real = [torch.tensor([[[[1.0, 3.0]]], [[[5.0, 7.0]]]]), torch.zeros(2, 2, 1, 1)]  # means 4 and 0
    fake = [torch.full((2, 1, 1, 2), 2.0, requires_grad=True), torch.ones(2, 2, 1, 1, requires_grad=True)]
    loss = losses.feature_matching(fake, real)
    assert float(loss.detach()) == pytest.approx((abs(2.0 - 4.0) + 1.0) / 2)
    loss.backward()
    assert float(fake[0].grad.sum()) < 0  # raising the fake activations toward the real mean lowers it
    # the same images in another order match exactly: only the batch's average counts
    assert float(losses.feature_matching([real[0].flip(0)], [real[0]])) == 0.0


def test_a_training_step_with_feature_matching_logs_its_terms_and_changes_the_update(tiny_cfg):
    x_a, x_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    params, terms = {}, {}
    for w in (0.0, 10.0):
        trainer = updates.Trainer(tiny_cfg(loss={"fm_w": w}, train={"batch_size": 2}), torch.device("cpu"))
        terms[w] = trainer.step(x_a, x_b, 0)
        params[w] = torch.cat([p.detach().flatten() for p in trainer.gen.parameters()])
    assert "fm_a" not in terms[0.0] and float(terms[10.0]["fm_a"]) > 0 and float(terms[10.0]["fm_b"]) > 0
    # the same first update otherwise (same seed), so the total differs by exactly the new term
    extra = float(terms[10.0]["gen_total"] - terms[0.0]["gen_total"])
    assert extra == pytest.approx(10.0 * float(terms[10.0]["fm_a"] + terms[10.0]["fm_b"]), rel=1e-4)
    assert not torch.equal(params[0.0], params[10.0])
    with pytest.raises(MunitError, match="fm_w"):
        tiny_cfg(loss={"fm_w": -1.0})


def _shared_generator(tiny_cfg):
    """Generators with one content encoder for both domains, seeded, with inputs and styles."""
    torch.manual_seed(0)
    gen, _ = models.build(tiny_cfg(model={"shared_content_encoder": True}).model)
    x_a, x_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    s_a, s_b = torch.randn(2, gen.gen_a.style_dim), torch.randn(2, gen.gen_a.style_dim)
    return gen, x_a, x_b, s_a, s_b


def test_a_detached_cycle_trains_the_reading_networks_but_not_the_translating_decoder(tiny_cfg):
    gen, x_a, x_b, s_a, s_b = _shared_generator(tiny_cfg)

    def cycle_grads(detach: str) -> dict[str, float]:
        gen.zero_grad(set_to_none=True)
        out = gen(x_a, x_b, s_a, s_b, cycle=True, cycle_detach=detach)
        losses.recon_loss(out["x_aba"], x_a).backward()  # x_a -> x_ab (gen_b draws) -> x_aba (gen_a)
        return {
            name: sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None)
            for name, net in (("drew", gen.gen_b.decoder), ("reads", gen.gen_a.decoder), ("encodes", gen.gen_b.content_encoder))
        }

    attached, detached, other = cycle_grads(""), cycle_grads("ab"), cycle_grads("ba")
    assert attached["drew"] > 0 and detached["drew"] == 0
    assert other == attached  # "ba" leaves the a -> b -> a cycle as it was
    assert detached["reads"] > 0 and detached["encodes"] > 0
    # the same x_aba either way: only where the gradient goes differs
    out_a = gen(x_a, x_b, s_a, s_b, cycle=True)
    out_d = gen(x_a, x_b, s_a, s_b, cycle=True, cycle_detach="both")
    torch.testing.assert_close(out_a["x_aba"], out_d["x_aba"])


def test_a_detached_content_reconstruction_keeps_its_gradient_from_the_decoder_that_drew(tiny_cfg):
    gen, x_a, x_b, s_a, s_b = _shared_generator(tiny_cfg)

    def content_grads(content_detach: bool) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        gen.zero_grad(set_to_none=True)
        out = gen(x_a, x_b, s_a, s_b, cycle=True, cycle_detach="ba", content_detach=content_detach)
        losses.recon_loss(out["c_b_recon"], out["c_b"]).backward()  # x_b -> x_ba (gen_a draws) -> its code
        grads = {
            name: sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None)
            for name, net in (("drew", gen.gen_a.decoder), ("encodes", gen.gen_a.content_encoder))
        }
        return grads, {k: out[k].detach() for k in ("c_b_recon", "c_a_recon", "x_bab", "x_aba")}

    (attached, out_a), (detached, out_d) = content_grads(False), content_grads(True)
    assert attached["drew"] > 0 and detached["drew"] == 0 and detached["encodes"] > 0
    for key in out_a:  # the same values either way: only where the gradient goes differs
        torch.testing.assert_close(out_a[key], out_d[key])
    # the a -> b translation, which cycle_detach "ba" leaves attached, keeps its gradient
    gen.zero_grad(set_to_none=True)
    out = gen(x_a, x_b, s_a, s_b, cycle=True, cycle_detach="ba", content_detach=True)
    losses.recon_loss(out["c_a_recon"], out["c_a"]).backward()
    assert sum(float(p.grad.abs().sum()) for p in gen.gen_b.decoder.parameters() if p.grad is not None) > 0


def test_reread_noise_reaches_the_encoders_reading_a_translation_again_but_not_the_discriminators(tiny_cfg):
    gen, x_a, x_b, s_a, s_b = _shared_generator(tiny_cfg)
    clean = gen(x_a, x_b, s_a, s_b, cycle=True, cycle_detach="ba")
    torch.manual_seed(7)
    out = gen(x_a, x_b, s_a, s_b, cycle=True, cycle_detach="ba", reread_noise=0.5)
    torch.manual_seed(7)
    seen_ab = out["x_ab"] + 0.5 * torch.randn_like(out["x_ab"])
    seen_ba = out["x_ba"] + 0.5 * torch.randn_like(out["x_ba"])
    # what the discriminators judge (and what translate returns) carries no noise
    for key in ("x_ab", "x_ba", "x_a_recon", "x_b_recon"):
        torch.testing.assert_close(out[key], clean[key])
    enc_a, enc_b = gen.gen_a, gen.gen_b
    expected = {
        "c_a_recon": enc_b.content_encoder(seen_ab),
        "s_b_recon": enc_b.style_encoder(seen_ab),
        "c_b_recon": enc_a.content_encoder(seen_ba),
        "s_a_recon": enc_a.style_encoder(seen_ba),
    }
    # the detached b -> a -> b cycle re-encodes the same noisy x_ba, the attached one reuses c_a_recon
    expected["x_bab"] = enc_b.decode(enc_a.content_encoder(seen_ba.detach()), enc_b.style_encoder(x_b))
    expected["x_aba"] = enc_a.decode(expected["c_a_recon"], enc_a.style_encoder(x_a))
    for key, value in expected.items():
        torch.testing.assert_close(out[key], value)
        assert (out[key] - clean[key]).abs().max() > 1e-3, key  # the noise was there
    params = {}
    for noise in (0.0, 0.5):  # and the training step reads the key
        torch.manual_seed(0)
        trainer = updates.Trainer(tiny_cfg(loss={"reread_noise": noise}, train={"batch_size": 2}), torch.device("cpu"))
        trainer.step(x_a, x_b, 0)
        params[noise] = torch.cat([p.detach().flatten() for p in trainer.gen.parameters()])
    assert not torch.equal(params[0.0], params[0.5])
    with pytest.raises(MunitError, match="loss.reread_noise"):
        tiny_cfg(loss={"reread_noise": -0.1})


def test_a_training_step_with_a_detached_cycle_changes_the_update_and_a_bad_value_is_refused(tiny_cfg):
    x_a, x_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    params = {}
    for detach, content in (("", False), ("ba", False), ("ba", True)):
        loss = {"recon_x_cyc_w": 10.0, "cycle_detach": detach, "recon_c_detach": content}
        trainer = updates.Trainer(tiny_cfg(loss=loss, train={"batch_size": 2}), torch.device("cpu"))
        terms = trainer.step(x_a, x_b, 0)
        assert {"cyc_x_a", "cyc_x_b"} <= set(terms)
        params[detach, content] = torch.cat([p.detach().flatten() for p in trainer.gen.parameters()])
    assert not torch.equal(params["", False], params["ba", False])
    assert not torch.equal(params["ba", False], params["ba", True])
    with pytest.raises(MunitError, match="loss.cycle_detach"):
        tiny_cfg(loss={"cycle_detach": "a"})


def test_colourfulness_measures_how_far_pixels_are_from_grey():
    grey = torch.rand(2, 1, 8, 8).expand(2, 3, 8, 8) * 2 - 1
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(2, 3, 8, 8)
    half = red.clone()
    half[..., :4] = grey[..., :4]
    assert data.colourfulness(grey) == 0.0
    assert data.colourfulness(red) == pytest.approx(1.0)
    assert data.colourfulness(half) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "colour_a, colour_b, expected",
    [(0.0, 0.3, "ba"), (0.3, 0.01, "ab"), (0.3, 0.4, ""), (0.0, 0.01, ""), (0.0, 0.04, ""), (0.03, 0.3, "")],
)
def test_auto_detaches_only_the_cycle_through_a_grey_domain_from_a_coloured_one(colour_a, colour_b, expected):
    assert losses.auto_cycle_detach(colour_a, colour_b) == expected


def test_a_run_records_what_cycle_detach_auto_chose_from_its_images(image_folders, tiny_cfg, tmp_path, capsys):
    outlines, filled = image_folders  # black outlines on white; shapes in random colours
    cfg = tiny_cfg(loss={"recon_x_cyc_w": 10.0, "cycle_detach": "auto"}, train={"iters": 1})
    for folders, expected in (((outlines, filled), "ba"), ((filled, outlines), "ab"), ((filled, filled.parent / "copy"), "")):
        if not folders[1].exists():
            shutil.copytree(filled, folders[1])
        out = tmp_path / f"run-{expected or 'none'}"
        train.run(copy.deepcopy(cfg), list(folders), out)
        assert config.resolve(None, out / "config.toml").loss.cycle_detach == expected
        assert f"loss.cycle_detach=auto: {expected or 'none'}" in capsys.readouterr().err
    assert config.resolve("cpu").loss.cycle_detach == "auto"
    with pytest.raises(MunitError, match="auto"):
        updates.Trainer(cfg, torch.device("cpu"))
