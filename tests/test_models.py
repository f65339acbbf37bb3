"""The networks against the reference recipe (docs/munit-reference.md): shapes, parameter counts,
gradients, the AdaIN parameter layout, purity of the decoder, float32 norm statistics, init."""

from __future__ import annotations

import math
import pytest
import torch
from torch import nn

from munit_cli import config, losses, models
from munit_cli.config import Config, ModelConfig
from munit_cli.errors import UsageError


def small(**kw) -> ModelConfig:
    values = dict(dim=8, n_downsample=2, n_res=2, style_dim=8, mlp_dim=16, dis_dim=8, dis_n_layer=3, dis_num_scales=3)
    values.update(kw)
    return ModelConfig(**values)


def expected_patch_sizes(h: int, w: int, n_layer: int, scales: int) -> list[tuple[int, int]]:
    """Scale k+1 sees AvgPool2d(3, 2, 1) of scale k's input (ceil(n / 2)); every 4x4 stride-2
    conv with padding 1 halves a side (floor); the final 1x1 conv keeps it."""
    sizes = []
    for k in range(scales):
        if k:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        ph, pw = h, w
        for _ in range(n_layer):
            ph, pw = ph // 2, pw // 2
        sizes.append((ph, pw))
    return sizes


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return models.build(ModelConfig())


# ---------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hw", [(32, 32), (64, 64), (48, 80)])
def test_network_shapes(channels, hw):
    h, w = hw
    cfg = small(input_dim=channels)
    torch.manual_seed(0)
    gen, dis = models.build(cfg)
    g = gen.gen_a
    x = torch.rand(2, channels, h, w) * 2 - 1

    c = g.content_encoder(x)
    assert c.shape == (2, cfg.dim * 4, h // 4, w // 4)
    s = g.style_encoder(x)
    assert s.shape == (2, cfg.style_dim)
    p = g.mlp(s)
    # two values (beta, gamma) per channel of each of the 2 * n_res AdaIN layers at dim * 4 channels
    assert p.shape == (2, 2 * (2 * cfg.n_res) * cfg.dim * 4)
    y = g.decoder(c, p)
    assert y.shape == (2, channels, h, w)
    assert y.abs().max() <= 1  # tanh output
    assert g.decode(c, torch.randn(2, cfg.style_dim)).shape == (2, channels, h, w)

    outs = dis.dis_a(x)
    assert len(outs) == cfg.dis_num_scales
    want = expected_patch_sizes(h, w, cfg.dis_n_layer, cfg.dis_num_scales)
    assert [tuple(o.shape) for o in outs] == [(2, 1, ph, pw) for ph, pw in want]


def test_content_code_scales_with_n_downsample():
    for n in (1, 3):
        cfg = small(n_downsample=n)
        g = models.Generator(cfg)
        x = torch.rand(1, 3, 64, 48)
        c = g.content_encoder(x)
        assert c.shape == (1, cfg.dim * 2**n, 64 // 2**n, 48 // 2**n)
        assert g.decode(c, torch.randn(1, cfg.style_dim)).shape == (1, 3, 64, 48)


@pytest.mark.parametrize("n_downsample", [1, 2, 3])
def test_style_encoder_always_downsamples_four_times(n_downsample):
    enc = models.StyleEncoder(small(n_downsample=n_downsample))
    strides = [m.stride for m in enc.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    assert strides == [(2, 2)] * 4
    # a feature map of 64 px must reach 4 px before the global pool
    seen = []
    hook = enc.model[-2].register_forward_pre_hook(lambda m, inp: seen.append(inp[0].shape))
    enc(torch.rand(1, 3, 64, 64))
    hook.remove()
    assert seen[0][-2:] == (4, 4)


def test_paper_discriminator_patch_maps_at_256():
    cfg = ModelConfig(dis_dim=8)  # the reference layout (4 layers, 3 scales) at a small width
    outs = models.Discriminator(cfg)(torch.rand(1, 3, 256, 256))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 16), (8, 8), (4, 4)]  # the reference's numbers


@pytest.mark.parametrize("n_layer, scales", [(3, 2), (4, 3), (2, 4)])
def test_discriminator_fits_says_exactly_which_crops_the_discriminator_takes(n_layer, scales):
    dis = models.Discriminator(small(dis_dim=2, dis_n_layer=n_layer, dis_num_scales=scales))
    verdicts = []
    for side in range(4, 72, 4):
        try:
            dis(torch.zeros(1, 3, side, side))
            works = True
        except RuntimeError:  # reflection padding wider than the map
            works = False
        assert config.discriminator_fits(side, n_layer, scales) == works, side
        verdicts.append(works)
    assert not verdicts[0] and verdicts[-1]  # both answers occur


def test_paper_content_code_shape_at_256():
    cfg = ModelConfig(dim=4, n_res=0)  # reference layout, narrow: 256x256 -> C x 64 x 64
    c = models.ContentEncoder(cfg)(torch.rand(1, 3, 256, 256))
    assert c.shape == (1, 16, 64, 64)


# ---------------------------------------------------------------------------------------------
# Parameter counts (the reference's numbers)


def test_paper_parameter_counts(paper):
    gen, dis = paper
    g = gen.gen_a
    assert models.count_parameters(g.style_encoder) == 2_764_936
    assert models.count_parameters(g.content_encoder) == 5_385_856
    assert models.count_parameters(g.decoder) == 5_754_627
    assert models.count_parameters(g.mlp) == 1_120_768
    assert models.count_parameters(g) == 15_026_187
    assert models.count_parameters(gen) == 2 * 15_026_187
    assert models.count_parameters(dis.dis_a) == 8_271_171
    assert models.count_parameters(dis) == 2 * 8_271_171
    assert g.decoder.num_adain_params == 4096
    assert g.mlp.model[-1].out_features == 4096


# ---------------------------------------------------------------------------------------------
# Gradients


def _zero_grad_by_design(module: nn.Module) -> set[int]:
    """Biases of convs whose output is instance-normalised (plain IN or AdaIN): the mean subtraction
    removes them, so their gradient is zero up to rounding."""
    ids = set()
    for m in module.modules():
        if isinstance(m, nn.Sequential):
            layers = list(m)
            for conv, nxt in zip(layers, layers[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(nxt, models.InstanceNorm):
                    ids.add(id(conv.bias))
        if isinstance(m, models.AdaINResBlock):
            ids.update({id(m.conv1.bias), id(m.conv2.bias)})
    return ids


def _check_all_grads(module: nn.Module):
    zero_ok = _zero_grad_by_design(module)
    assert zero_ok  # the structure walk found the IN-followed convs
    missing, zero = [], []
    for name, p in module.named_parameters():
        if p.grad is None:
            missing.append(name)
            continue
        assert torch.isfinite(p.grad).all(), name
        if id(p) in zero_ok:
            assert p.grad.abs().max() < 1e-3, name
        elif p.grad.abs().max() == 0:
            zero.append(name)
    assert not missing, f"no gradient: {missing}"
    assert not zero, f"zero gradient: {zero}"


def _batch(cfg, n=2, size=32):
    g = torch.Generator().manual_seed(1)
    x_a = torch.rand(n, cfg.input_dim, size, size, generator=g) * 2 - 1
    x_b = torch.rand(n, cfg.input_dim, size, size, generator=g) * 2 - 1
    return x_a, x_b, torch.randn(n, cfg.style_dim, generator=g), torch.randn(n, cfg.style_dim, generator=g)


def test_every_generator_parameter_gets_a_gradient_from_the_generator_objective(tiny_cfg):
    cfg = tiny_cfg(model={"n_res": 2}, loss={"recon_x_cyc_w": 10.0})
    torch.manual_seed(0)
    gen, dis = models.build(cfg.model)
    dis.requires_grad_(False)
    x_a, x_b, s_a, s_b = _batch(cfg.model)
    out = gen(x_a, x_b, s_a, s_b, cycle=True)
    adv_a = losses.gen_adv_loss(dis.dis_a(out["x_ba"]))
    adv_b = losses.gen_adv_loss(dis.dis_b(out["x_ab"]))
    terms = losses.generator_terms(out, x_a, x_b, adv_a, adv_b)
    losses.total_generator_loss(terms, cfg.loss).backward()
    _check_all_grads(gen)


def test_a_shared_content_encoder_is_one_network_that_both_domains_train():
    separate, shared = models.build(small())[0], models.build(small(shared_content_encoder=True))[0]
    assert shared.gen_a.content_encoder is shared.gen_b.content_encoder
    assert separate.gen_a.content_encoder is not separate.gen_b.content_encoder
    one_encoder = models.count_parameters(separate.gen_a.content_encoder)
    assert models.count_parameters(shared) == models.count_parameters(separate) - one_encoder

    # a loss on domain B's images alone reaches the encoder through domain A's name as well
    x_a, x_b, s_a, s_b = _batch(small())
    out = shared(x_a, x_b, s_a, s_b)
    (out["x_b_recon"] - x_b).abs().mean().backward()
    first_conv = shared.gen_a.content_encoder.model[0][1].weight
    assert first_conv.grad is not None and first_conv.grad.abs().max() > 0


def test_every_discriminator_parameter_gets_a_gradient_from_the_discriminator_objective(tiny_cfg):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    gen, dis = models.build(cfg.model)
    x_a, x_b, s_a, s_b = _batch(cfg.model)
    with torch.no_grad():
        x_ba = gen.gen_a.decode(gen.gen_b.content_encoder(x_b), s_a)
        x_ab = gen.gen_b.decode(gen.gen_a.content_encoder(x_a), s_b)
    scores = dis(x_a, x_ba, x_b, x_ab)
    loss = losses.dis_loss(scores["real_a"], scores["fake_a"]) + losses.dis_loss(scores["real_b"], scores["fake_b"])
    loss.backward()
    for name, p in dis.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name
    assert all(p.grad is None for p in gen.parameters())


# ---------------------------------------------------------------------------------------------
# AdaIN


def test_adain_function_sets_channel_mean_and_std():
    x = torch.randn(2, 3, 16, 16) * 5 + 3
    beta = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    gamma = torch.tensor([[2.0, 0.5, 1.0], [4.0, 1.5, 0.25]])
    y = models.adain(x, beta, gamma)
    mean, std = y.mean(dim=(2, 3)), y.std(dim=(2, 3), correction=0)
    torch.testing.assert_close(mean, beta, atol=1e-4, rtol=0)
    torch.testing.assert_close(std, gamma, atol=1e-4, rtol=1e-4)


def test_adain_parameter_layout_beta_then_gamma_in_decoder_order(monkeypatch):
    cfg = small(n_res=3)
    dec = models.Decoder(cfg, in_channels=cfg.dim * 4)
    c_ch = cfg.dim * 4
    n_layers = 2 * cfg.n_res
    # by hand: per AdaIN layer k (decoder order), C betas then C gammas
    chunks = []
    for k in range(n_layers):
        beta = torch.arange(c_ch, dtype=torch.float32) * 0.1 + 10.0 * k
        gamma = torch.linspace(0.5, 2.0, c_ch) + k
        chunks += [beta, gamma]
    params = torch.cat(chunks)[None]
    assert params.shape[1] == dec.num_adain_params

    seen = []
    real_adain = models.adain

    def recording_adain(x, beta, gamma):
        y = real_adain(x, beta, gamma)
        seen.append(y.detach())
        return y

    monkeypatch.setattr(models, "adain", recording_adain)
    dec(torch.randn(1, c_ch, 8, 8), params)
    assert len(seen) == n_layers
    for k, y in enumerate(seen):
        beta, gamma = chunks[2 * k], chunks[2 * k + 1]
        torch.testing.assert_close(y.mean(dim=(2, 3))[0], beta, atol=1e-3, rtol=0)
        torch.testing.assert_close(y.std(dim=(2, 3), correction=0)[0], gamma, atol=1e-3, rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# The decoder is a pure function of (content, adain params)


def _snapshot(module: nn.Module) -> dict:
    snap = {}
    for name, m in module.named_modules():
        attrs = {k: v for k, v in vars(m).items() if not k.startswith("_")}
        snap[name] = (
            {k: (v.clone() if torch.is_tensor(v) else v) for k, v in attrs.items()},
            dict(m._parameters),
            {k: (v.clone() if v is not None else None) for k, v in m._buffers.items()},
        )
    return snap


def _assert_same_snapshot(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        attrs_a, params_a, bufs_a = a[name]
        attrs_b, params_b, bufs_b = b[name]
        assert attrs_a.keys() == attrs_b.keys(), name
        for k in attrs_a:
            if torch.is_tensor(attrs_a[k]):
                assert torch.equal(attrs_a[k], attrs_b[k]), (name, k)
            else:
                assert attrs_a[k] == attrs_b[k], (name, k)
        assert params_a.keys() == params_b.keys(), name
        assert all(params_a[k] is params_b[k] for k in params_a), name
        assert bufs_a.keys() == bufs_b.keys(), name


def test_decoder_is_pure():
    cfg = small()
    torch.manual_seed(0)
    g = models.Generator(cfg)
    models.init_generator(g)
    state_before = {k: v.clone() for k, v in g.state_dict().items()}
    snap = _snapshot(g)
    c = torch.randn(2, cfg.dim * 4, 8, 8)
    s1, s2 = torch.randn(1, cfg.style_dim), torch.randn(1, cfg.style_dim)
    y1 = g.decode(c[:1], s1)
    _assert_same_snapshot(snap, _snapshot(g))
    y2 = g.decode(c[1:], s2)
    both = g.decode(c, torch.cat([s1, s2]))
    _assert_same_snapshot(snap, _snapshot(g))
    assert all(torch.equal(v, g.state_dict()[k]) for k, v in state_before.items())
    torch.testing.assert_close(both, torch.cat([y1, y2]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(y1, g.decode(c[:1], s2), atol=1e-3)  # the style matters
    # the same inputs again give the same output: nothing was carried over from the last call
    torch.testing.assert_close(g.decode(c[:1], s1), y1, atol=0, rtol=0)


def test_decoder_exports_with_adain_params_as_input():
    cfg = small()
    torch.manual_seed(0)
    dec = models.Generator(cfg).decoder
    c = torch.randn(1, cfg.dim * 4, 8, 8)
    p1, p2 = torch.randn(1, dec.num_adain_params), torch.randn(1, dec.num_adain_params)
    exported = torch.export.export(dec, (c, p1)).module()
    # the style parameters are a graph input, not constants captured from the example call
    torch.testing.assert_close(exported(c, p2), dec(c, p2))
    assert not torch.allclose(exported(c, p2), exported(c, p1), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Mixed precision: norm statistics in float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_norms_on_flat_input_in_low_precision(dtype):
    # an all-white feature map, large enough that a sum kept in float16 overflows (> 65504)
    shape = (2, 16, 64, 64)
    x = torch.ones(shape, dtype=dtype)
    weight = torch.linspace(0.1, 0.9, 16).to(dtype)
    bias = torch.linspace(-1.0, 2.0, 16).to(dtype)

    y = models.instance_norm(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    assert torch.equal(y.float(), torch.zeros(shape))

    y = models.layer_norm(x, weight, bias)
    assert y.dtype == dtype and torch.isfinite(y).all()
    assert torch.equal(y.float(), bias.float()[None, :, None, None].expand(shape))

    beta = torch.linspace(1.0, 4.0, 16).repeat(2, 1).to(dtype)
    gamma = torch.full((2, 16), 2.0, dtype=dtype)
    y = models.adain(x, beta, gamma)
    assert y.dtype == dtype and torch.isfinite(y).all()
    assert torch.equal(y.float(), beta.float()[:, :, None, None].expand(shape))


def test_layer_norm_matches_the_recipe_formula():
    x = torch.randn(2, 4, 6, 5) * 3 + 1
    weight, bias = torch.rand(4), torch.randn(4)
    y = models.layer_norm(x, weight, bias)
    flat = x.flatten(1)
    mean = flat.mean(1).view(2, 1, 1, 1)
    std = flat.std(1).view(2, 1, 1, 1)  # per sample over C, H, W
    want = (x - mean) / (std + 1e-5) * weight.view(1, 4, 1, 1) + bias.view(1, 4, 1, 1)
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)


def test_generator_on_white_images_under_bf16_autocast():
    cfg = small()
    torch.manual_seed(0)
    gen, dis = models.build(cfg)
    white = torch.ones(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gen(white, white, torch.randn(2, cfg.style_dim), torch.randn(2, cfg.style_dim), cycle=True)
        scores = dis.dis_a(out["x_ba"])
    for key, value in out.items():
        assert torch.isfinite(value.float()).all(), key
    assert all(torch.isfinite(s.float()).all() for s in scores)


# ---------------------------------------------------------------------------------------------
# Discriminator pooling


def test_discriminator_pooling_for_grayscale():
    cfg = small(input_dim=1)
    dis = models.Discriminator(cfg)
    inputs = []
    for net in dis.scales:
        net.register_forward_pre_hook(lambda m, inp: inputs.append(inp[0].detach()))
    x = torch.rand(1, 1, 48, 80)
    outs = dis(x)
    want = expected_patch_sizes(48, 80, cfg.dis_n_layer, cfg.dis_num_scales)
    assert [tuple(o.shape[-2:]) for o in outs] == want
    assert [tuple(i.shape[-2:]) for i in inputs] == [(48, 80), (24, 40), (12, 20)]
    # AvgPool2d(kernel 3, stride 2, padding 1, count_include_pad=False), by hand:
    pooled = inputs[1][0, 0]
    torch.testing.assert_close(pooled[0, 0], x[0, 0, 0:2, 0:2].mean())  # corner: 2x2 real pixels
    torch.testing.assert_close(pooled[1, 1], x[0, 0, 1:4, 1:4].mean())  # interior: 3x3 window
    torch.testing.assert_close(pooled[0, 3], x[0, 0, 0:2, 5:8].mean())  # top edge: 2x3
    # padding is not counted: a flat image stays flat at every scale
    inputs.clear()
    dis(torch.full((1, 1, 48, 80), 0.7))
    assert all(torch.allclose(i, torch.full_like(i, 0.7)) for i in inputs)


# ---------------------------------------------------------------------------------------------
# Initialisation


def test_discriminator_init(paper):
    _, dis = paper
    convs = [m for m in dis.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 * 3 * 5
    for m in convs:
        assert torch.count_nonzero(m.bias) == 0
    big = torch.cat([m.weight.flatten() for m in convs])
    assert abs(big.std().item() - 0.02) < 0.001
    assert abs(big.mean().item()) < 0.001
    for m in convs:
        if m.weight.numel() > 10_000:
            assert abs(m.weight.std().item() - 0.02) < 0.002


def test_generator_init(paper):
    gen, _ = paper
    layers = [m for m in gen.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers
    for m in layers:
        assert torch.count_nonzero(m.bias) == 0
        if m.weight.numel() > 10_000:  # Kaiming normal, fan_in: std sqrt(2 / fan_in)
            fan_in = m.weight[0].numel()
            assert abs(m.weight.std().item() / math.sqrt(2 / fan_in) - 1) < 0.05
    norms = [m for m in gen.modules() if isinstance(m, models.LayerNorm)]
    assert len(norms) == 2 * 2  # two upsampling stages per generator
    for m in norms:
        assert (m.weight >= 0).all() and (m.weight < 1).all()
        assert m.weight.std() > 0.05  # drawn from U[0, 1), not constant
        assert torch.count_nonzero(m.bias) == 0


def test_build_is_deterministic_under_a_seed():
    torch.manual_seed(3)
    g1, d1 = models.build(small())
    torch.manual_seed(3)
    g2, d2 = models.build(small())
    for (k, v), v2 in zip(g1.state_dict().items(), g2.state_dict().values()):
        assert torch.equal(v, v2), k
    for (k, v), v2 in zip(d1.state_dict().items(), d2.state_dict().values()):
        assert torch.equal(v, v2), k


def test_config_defaults_are_the_paper_recipe():
    cfg = Config()
    m = cfg.model
    assert (m.dim, m.n_downsample, m.n_res, m.style_dim, m.mlp_dim) == (64, 2, 4, 8, 256)
    assert (m.dis_dim, m.dis_n_layer, m.dis_num_scales, m.style_n_downsample) == (64, 4, 3, 4)
    o = cfg.optim
    assert (o.lr, o.beta1, o.beta2, o.weight_decay, o.lr_step, o.lr_gamma) == (1e-4, 0.5, 0.999, 1e-4, 100_000, 0.5)
    assert (cfg.train.iters, cfg.train.batch_size, cfg.data.crop_size) == (1_000_000, 1, 256)


def test_content_dilation_widens_what_a_code_location_sees_without_new_weights(monkeypatch):
    # instance norm's statistics span the whole map; without them a location sees only its window
    monkeypatch.setattr(models, "instance_norm", lambda x: x)
    seen = {}
    for d in (1, 2):
        cfg = config.resolve("cpu", overrides={"model": {"content_dilation": d, "dim": 4}})
        torch.manual_seed(0)
        enc = models.ContentEncoder(cfg.model)
        convs = [m for m in enc.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
        seen[d] = {
            "dilations": [m.dilation[0] for m in convs],
            "params": models.count_parameters(enc),
        }
        x = torch.zeros(1, 3, 64, 64, requires_grad=True)
        enc(x)[0, :, 14, 14].sum().backward()  # code location 14 sits at pixel 28-29 of the input
        seen[d]["reaches corner"] = bool(x.grad[0, :, 0, 0].abs().sum() > 0)
    assert seen[1]["dilations"] == [1, 1, 1, 1] and seen[2]["dilations"] == [1, 2, 4, 8]
    assert seen[1]["params"] == seen[2]["params"]
    # 28 pixels away: beyond the recipe's reach (about 13 px at 64 px), within the dilated one's (about 35)
    assert not seen[1]["reaches corner"] and seen[2]["reaches corner"]
    assert models.min_size(config.resolve("cpu", overrides={"model": {"content_dilation": 2}}).model) == 18


def test_bilinear_upsampling_interpolates_where_nearest_repeats_with_the_same_weights():
    torch.manual_seed(0)
    nearest = models.Decoder(small(), 32)
    bilinear = models.Decoder(small(upsample="bilinear"), 32)
    bilinear.load_state_dict(nearest.state_dict())  # the mode adds no weight
    ramp = torch.tensor([0.0, 1.0, 2.0, 3.0]).expand(1, 1, 4, 4)
    assert nearest.upsample[0](ramp)[0, 0, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert bilinear.upsample[0](ramp)[0, 0, 0].tolist() == [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]
    c, p = torch.randn(1, 32, 8, 8), torch.randn(1, nearest.num_adain_params)
    y_n, y_b = nearest(c, p), bilinear(c, p)
    assert y_n.shape == y_b.shape == (1, 3, 32, 32) and not torch.allclose(y_n, y_b, atol=1e-3)
    with pytest.raises(UsageError, match="model.upsample"):
        config.resolve("cpu", overrides={"model": {"upsample": "bicubic"}})
