"""Each speed option computes what the float32 reference path computes.

bf16 autocast is compared within bf16 tolerance, layout and fused-kernel options within float
rounding, and sharing the generator forward between the two updates exactly against the same
computation written out by hand.
"""

from __future__ import annotations

import copy

import pytest
import torch

from munit_cli import config, losses, models, runtime, train, updates


def tiny_cfg(**train_flags) -> config.Config:
    return config.resolve(
        "tiny",
        overrides={
            "model": {"dim": 8, "mlp_dim": 16, "n_res": 1, "dis_num_scales": 2},
            "data": {"load_size": 32, "crop_size": 32},
            # the reference path unless a test names an option: the tiny preset itself picks bf16 on CPUs with bf16 units
            "train": {"batch_size": 2, "ema_decay": 0.0, "share_translations": False, "precision": "fp32",
                      "channels_last": False, "fused_layer_norm": False, **train_flags},  # fmt: skip
            "optim": {"fused": False},
        },
    )


def batch(seed: int, n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.rand(n, 3, size, size, generator=g) * 2 - 1


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def generator_loss_and_grads(gen, dis, x_a, x_b, s_a, s_b, autocast, memory_format=torch.contiguous_format):
    gen.zero_grad(set_to_none=True)
    x_a, x_b = (x.contiguous(memory_format=memory_format) for x in (x_a, x_b))
    with autocast:
        out = gen(x_a, x_b, s_a, s_b)
        terms = losses.generator_terms(out, x_a, x_b, losses.gen_adv_loss(dis.dis_a(out["x_ba"])),
                                       losses.gen_adv_loss(dis.dis_b(out["x_ab"])))  # fmt: skip
        total = losses.total_generator_loss(terms, config.LossConfig())
    total.backward()
    grads = {n: p.grad.detach().clone() for n, p in gen.named_parameters()}
    return out, total.detach(), grads


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return models.build(tiny_cfg().model)


def module_output_and_grads(module, inputs, autocast):
    """Output and parameter gradients of one module for a fixed upstream gradient."""
    module.zero_grad(set_to_none=True)
    with autocast:
        y = module(*inputs)
    y = torch.cat([t.flatten(1) for t in y], 1) if isinstance(y, list) else y
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    (y.float() * upstream).sum().backward()
    return y.detach().float(), {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def with_signal(grads: dict[str, torch.Tensor]) -> list[str]:
    """Conv biases right before an instance norm have a true gradient of zero: what they get is
    rounding noise in either precision, so only gradients with real signal are compared."""
    scale = max(g.norm() for g in grads.values())
    return [n for n, g in grads.items() if g.norm() > 1e-4 * scale]


@pytest.mark.parametrize("part", ["content_encoder", "style_encoder", "mlp", "decoder", "discriminator"])
def test_bf16_autocast_per_module_outputs_and_gradients(nets, part):
    gen, dis = nets
    g = gen.gen_a
    x = batch(1)[0]
    module, inputs = {
        "content_encoder": (g.content_encoder, (x,)),
        "style_encoder": (g.style_encoder, (x,)),
        "mlp": (g.mlp, (torch.randn(2, 8),)),
        "decoder": (g.decoder, (g.content_encoder(x).detach(), g.mlp(torch.randn(2, 8)).detach())),
        "discriminator": (dis.dis_a, (x,)),
    }[part]
    ref_y, ref_grads = module_output_and_grads(module, inputs, torch.autocast("cpu", enabled=False))
    y, grads = module_output_and_grads(module, inputs, torch.autocast("cpu", dtype=torch.bfloat16))
    assert rel_err(y, ref_y) < 2e-2  # bf16 keeps 8 mantissa bits: ~4e-3 per op
    real = with_signal(ref_grads)
    assert real
    # Backward keeps bf16 activations and gradients through up to ~10 layers and their norms: the
    # measured worst case on this tiny net is 13% relative error (first conv of the content encoder)
    # with the direction kept (cosine > 0.99).
    for n in real:
        assert rel_err(grads[n], ref_grads[n]) < 0.2, n
        cos = torch.nn.functional.cosine_similarity(grads[n].flatten().float(), ref_grads[n].flatten(), dim=0)
        assert cos > 0.98, n


def test_bf16_autocast_whole_objective_follows_the_reference(nets):
    """Through encoder, decoder, encoder again and the discriminator the rounding compounds; the
    loss stays within 2% and every gradient keeps its direction."""
    gen, dis = nets
    x_a, x_b = batch(1)
    s_a, s_b = torch.randn(2, 8), torch.randn(2, 8)
    ref_out, ref_loss, ref_grads = generator_loss_and_grads(gen, dis, x_a, x_b, s_a, s_b, torch.autocast("cpu", enabled=False))
    out, loss, grads = generator_loss_and_grads(gen, dis, x_a, x_b, s_a, s_b, torch.autocast("cpu", dtype=torch.bfloat16))
    for key in ("c_a", "x_ab", "x_ba", "x_a_recon", "s_a_recon", "c_b_recon"):
        assert rel_err(out[key], ref_out[key]) < 5e-2, key
    assert abs(loss.item() - ref_loss.item()) / ref_loss.item() < 2e-2
    for n in with_signal(ref_grads):
        cos = torch.nn.functional.cosine_similarity(grads[n].flatten().float(), ref_grads[n].flatten(), dim=0)
        assert cos > 0.9, n


def test_norms_keep_float32_statistics_for_bf16_flat_inputs():
    flat = torch.full((2, 8, 16, 16), 1.0, dtype=torch.bfloat16)  # an all-white crop
    ln = models.layer_norm(flat, torch.ones(8), torch.zeros(8))
    inorm = models.instance_norm(flat)
    ada = models.adain(flat, torch.zeros(2, 8), torch.ones(2, 8))
    for y in (ln, inorm, ada):
        assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_channels_last_matches_contiguous(nets):
    gen, dis = nets
    x_a, x_b = batch(2)
    s_a, s_b = torch.randn(2, 8), torch.randn(2, 8)
    off = torch.autocast("cpu", enabled=False)
    ref_out, ref_loss, ref_grads = generator_loss_and_grads(gen, dis, x_a, x_b, s_a, s_b, off)
    gen_cl, dis_cl = copy.deepcopy(gen).to(memory_format=torch.channels_last), copy.deepcopy(dis).to(memory_format=torch.channels_last)
    out, loss, grads = generator_loss_and_grads(gen_cl, dis_cl, x_a, x_b, s_a, s_b, off, torch.channels_last)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    assert torch.allclose(out["x_ab"], ref_out["x_ab"], atol=1e-5)
    for n, g in ref_grads.items():
        assert torch.allclose(grads[n], g, rtol=1e-3, atol=1e-6), n


def run_steps(cfg: config.Config, steps: int) -> tuple[updates.Trainer, list[float]]:
    trainer = updates.Trainer(cfg, torch.device("cpu"))
    curve = []
    for step in range(steps):
        x_a, x_b = batch(100 + step)
        terms = trainer.step(x_a, x_b, step)
        curve.append(terms["gen_total"].item())
    return trainer, curve


def test_fused_adam_matches_reference_adam():
    """Same parameters, same gradients, several steps: the fused kernel gives the same update."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    params = [torch.randn(64, 32, requires_grad=True), torch.randn(32, requires_grad=True)]
    start = [p.detach().clone() for p in params]
    twins = [p.detach().clone().requires_grad_(True) for p in params]
    reference = updates.make_optimizer(params, cfg)
    cfg.optim.fused = True
    fused = updates.make_optimizer(twins, cfg)
    assert fused.defaults["fused"] and not reference.defaults["fused"]
    for step in range(5):
        grads = [torch.randn_like(p) for p in params]
        for group, opt in ((params, reference), (twins, fused)):
            for p, g in zip(group, grads):
                p.grad = g.clone()
            opt.step()
    for p, q in zip(params, twins):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)
    assert all((p - p0).abs().max() > 1e-4 for p, p0 in zip(params, start))  # the steps moved them


def test_shared_translations_step_is_the_recipe_written_out():
    """With share_translations, one step = G forward with this step's first styles; the D update on
    its detached translations; the G update reading the updated D. Written out by hand here."""
    cfg = tiny_cfg(share_translations=True)
    trainer = updates.Trainer(cfg, torch.device("cpu"))
    gen, dis = copy.deepcopy(trainer.gen), copy.deepcopy(trainer.dis)
    opt_g, opt_d = updates.make_optimizer(gen.parameters(), cfg), updates.make_optimizer(dis.parameters(), cfg)
    x_a, x_b = batch(7)
    terms = trainer.step(x_a, x_b, 0)

    g = updates.step_generator(cfg.train.seed, 0)
    s_a, s_b = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    out = gen(x_a, x_b, s_a, s_b)
    d = dis(x_a, out["x_ba"].detach(), x_b, out["x_ab"].detach())
    loss_d = losses.dis_loss(d["real_a"], d["fake_a"]) + losses.dis_loss(d["real_b"], d["fake_b"])
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    dis.requires_grad_(False)
    adv_a, adv_b = losses.gen_adv_loss(dis.dis_a(out["x_ba"])), losses.gen_adv_loss(dis.dis_b(out["x_ab"]))
    total = losses.total_generator_loss(losses.generator_terms(out, x_a, x_b, adv_a, adv_b), cfg.loss)
    opt_g.zero_grad()
    total.backward()
    opt_g.step()

    assert terms["dis_total"].item() == pytest.approx(loss_d.item(), rel=1e-6)
    assert terms["gen_total"].item() == pytest.approx(total.item(), rel=1e-6)
    for (name, p), q in zip(trainer.gen.named_parameters(), gen.parameters()):
        assert torch.allclose(p, q, atol=1e-7), name
    for (name, p), q in zip(trainer.dis.named_parameters(), dis.parameters()):
        assert torch.allclose(p, q, atol=1e-7), name


def test_shared_translations_loss_curve_follows_the_reference():
    """Same seed and data: the curves differ only by which random styles each update draws."""
    _, ref = run_steps(tiny_cfg(), 12)
    _, shared = run_steps(tiny_cfg(share_translations=True), 12)
    ref_t, shared_t = torch.tensor(ref), torch.tensor(shared)
    assert ref_t[-1] < ref_t[0] and shared_t[-1] < shared_t[0]  # both learn
    assert ((ref_t - shared_t).abs() / ref_t).max() < 0.1


def test_compiled_generator_traces_whole_and_matches_eager(nets):
    """fullgraph=True: the AdaIN decoder is a pure function with no graph breaks. The aot_eager
    backend checks the traced forward and backward without a C++ toolchain; the inductor build is
    exercised on GPU by benchmarks/speed.py."""
    gen, dis = nets
    x_a, x_b = batch(3)
    s_a, s_b = torch.randn(2, 8), torch.randn(2, 8)
    off = torch.autocast("cpu", enabled=False)
    ref_out, ref_loss, ref_grads = generator_loss_and_grads(gen, dis, x_a, x_b, s_a, s_b, off)
    compiled = torch.compile(gen, backend="aot_eager", fullgraph=True)
    out, loss, grads = generator_loss_and_grads(compiled, dis, x_a, x_b, s_a, s_b, off)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    assert torch.allclose(out["x_ab"], ref_out["x_ab"], atol=1e-6)
    for n, g in ref_grads.items():
        assert torch.allclose(grads[n.removeprefix("_orig_mod.")] if n in grads else grads["_orig_mod." + n], g, atol=1e-6), n


# ---------------------------------------------------------------------------------------------
# The CPU fast path: bf16 and channels_last where the CPU has bf16 units, float32 elsewhere


@pytest.fixture
def bf16_units(monkeypatch):
    """`bf16_units(present)` makes this CPU look as if it had (or lacked) AMX / AVX512-BF16."""

    def set_units(present: bool) -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512" if present else "AVX2")
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: present)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: present)

    return set_units


def test_auto_precision_follows_the_cpu_units(bf16_units):
    cpu = torch.device("cpu")
    bf16_units(False)
    assert not runtime.cpu_has_bf16_units()
    assert runtime.resolve_precision("auto", True, cpu) == ("fp32", False)
    assert runtime.resolve_precision("bf16", True, cpu) == ("bf16", True)  # forced stays forced
    bf16_units(True)
    assert runtime.cpu_has_bf16_units()
    assert runtime.resolve_precision("auto", True, cpu) == ("bf16", True)
    assert runtime.resolve_precision("auto", False, cpu) == ("bf16", False)
    assert runtime.resolve_precision("fp32", True, cpu) == ("fp32", True)


def test_without_bf16_units_auto_is_the_reference_path_exactly(bf16_units):
    bf16_units(False)
    auto = updates.Trainer(tiny_cfg(precision="auto", channels_last=True), torch.device("cpu"))
    ref = updates.Trainer(tiny_cfg(precision="fp32", channels_last=False), torch.device("cpu"))
    assert auto.precision == "fp32" and auto.memory_format == torch.contiguous_format
    for step in range(2):
        x_a, x_b = batch(40 + step)
        got, want = auto.step(x_a, x_b, step), ref.step(x_a, x_b, step)
        assert {k: v.item() for k, v in got.items()} == {k: v.item() for k, v in want.items()}
    for p, q in zip(auto.gen.parameters(), ref.gen.parameters()):
        assert torch.equal(p, q)


def test_with_bf16_units_auto_trains_in_bf16_close_to_the_reference(bf16_units):
    bf16_units(True)
    fast = updates.Trainer(tiny_cfg(precision="auto", channels_last=True), torch.device("cpu"))
    ref = updates.Trainer(tiny_cfg(precision="fp32"), torch.device("cpu"))
    assert fast.precision == "bf16" and fast.memory_format == torch.channels_last
    conv = next(m for m in fast.gen.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (4, 4))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.dtype == torch.float32
    x_a, x_b = batch(50)
    got, want = fast.step(x_a, x_b, 0), ref.step(x_a, x_b, 0)
    for key in ("gen_total", "dis_total", "recon_x_a", "recon_x_b"):
        assert got[key].item() == pytest.approx(want[key].item(), rel=3e-2), key


def test_a_run_records_the_precision_auto_chose(bf16_units, image_folders, tiny_cfg, tmp_path):
    from munit_cli import config as config_mod

    a, b = image_folders
    for present, expected in ((True, ("bf16", True)), (False, ("fp32", False))):
        bf16_units(present)
        out = tmp_path / f"run-{present}"
        train.run(tiny_cfg(train={"iters": 1, "precision": "auto", "channels_last": True}), [a, b], out)
        saved = config_mod.resolve(None, out / "config.toml")
        assert (saved.train.precision, saved.train.channels_last) == expected


def test_reflection_padding_stays_in_the_activations_dtype_under_autocast():
    x = torch.randn(2, 4, 6, 6).to(torch.bfloat16)
    pad = models.ReflectionPad(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = torch.nn.ReflectionPad2d(2)(x)  # what autocast does with the plain module
        ours = pad(x)
    assert plain.dtype == torch.float32  # the float32 copy the padding module avoids
    assert ours.dtype == torch.bfloat16 and torch.equal(ours.float(), plain)
    blocks = [m for m in models.build(tiny_cfg().model)[0].modules() if isinstance(m, torch.nn.ReflectionPad2d)]
    assert blocks and all(isinstance(m, models.ReflectionPad) for m in blocks)


def test_instance_norm_keeps_channels_last_with_the_same_values():
    x = torch.randn(2, 8, 6, 6)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    beta, gamma = torch.randn(2, 8), torch.rand(2, 8)
    for norm in (models.instance_norm, lambda t: models.adain(t, beta, gamma)):
        y, ref = norm(x_cl), norm(x)
        assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
        assert ref.is_contiguous()  # NCHW in, NCHW out: the reference path unchanged
        assert torch.equal(y, ref)


def test_decoder_upsamples_channels_last_maps_in_a_channels_last_network(nets):
    """The decoder's x2 upsampling reads the residual blocks' output in the network's layout, so no
    conversion of the quadrupled map follows it."""
    gen, _ = nets
    gen_cl = copy.deepcopy(gen).to(memory_format=torch.channels_last)
    seen = []
    ups = [m for m in gen_cl.modules() if isinstance(m, torch.nn.Upsample)]
    hooks = [m.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))) for m in ups]
    x_a, x_b = batch(3)
    with torch.no_grad():
        out = gen_cl(x_a.contiguous(memory_format=torch.channels_last), x_b.contiguous(memory_format=torch.channels_last),
                     torch.randn(2, 8), torch.randn(2, 8))  # fmt: skip
    for h in hooks:
        h.remove()
    assert ups and seen and all(seen)
    assert out["x_ab"].shape == x_a.shape


def layer_norm_and_grads(norm, x, w, b, g):
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = norm(x, w, b)
    y.backward(g)
    return y.detach(), x.grad, w.grad, b.grad


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_kernel_layer_norm_is_the_recipes_layer_norm(memory_format):
    torch.manual_seed(0)
    x = (torch.randn(2, 6, 8, 8) * 3 + 1).contiguous(memory_format=memory_format)
    w, b, g = torch.rand(6), torch.randn(6), torch.randn(2, 6, 8, 8)
    ours = layer_norm_and_grads(models.kernel_layer_norm, x, w, b, g)
    ref = layer_norm_and_grads(models.layer_norm, x, w, b, g)
    for name, a, r in zip(("output", "x grad", "weight grad", "bias grad"), ours, ref):
        assert rel_err(a, r) < 1e-5, name


def test_kernel_layer_norm_in_bf16_channels_last_and_on_flat_maps():
    torch.manual_seed(1)
    x = torch.randn(2, 6, 8, 8).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    w, b = torch.rand(6), torch.randn(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = models.kernel_layer_norm(x, w, b)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(y, models.layer_norm(x.float(), w, b)) < 1e-2
    flat = torch.full((2, 6, 8, 8), 1.0, dtype=torch.bfloat16)  # an all-white crop: the bias, finite
    assert torch.equal(models.kernel_layer_norm(flat, w, b).float(), b[None, :, None, None].expand(2, 6, 8, 8).bfloat16().float())


def test_kernel_layer_norm_falls_back_where_its_variance_would_lose_precision():
    torch.manual_seed(2)
    x = (torch.randn(2, 16, 32, 32) + 100).contiguous(memory_format=torch.channels_last)  # |mean| / std = 100
    w, b = torch.rand(16), torch.randn(16)
    y = models.kernel_layer_norm(x, w, b)
    assert rel_err(y, models.layer_norm(x, w, b)) < 1e-5


def test_fused_layer_norm_switches_the_decoders_norms_while_training():
    (kernel, curve_k), (plain, curve_p) = run_steps(tiny_cfg(fused_layer_norm=True), 3), run_steps(tiny_cfg(), 3)
    for trainer, on in ((kernel, True), (plain, False)):
        norms = [m for m in trainer.gen.modules() if isinstance(m, models.LayerNorm)]
        assert norms and all(m.kernel is on for m in norms)
    assert curve_k != curve_p  # a different kernel ran
    assert curve_k == pytest.approx(curve_p, rel=1e-4)  # and computed the same normalisation
