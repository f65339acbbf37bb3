"""MUNIT networks: content encoder, style encoder, MLP, AdaIN decoder, multi-scale discriminator.

Layouts follow the reference recipe (`munit-reference.md`). Two design choices matter beyond it:
- the decoder is a pure function of (content, adain_params): the MLP output is passed in, never
  written into module attributes, so the decoder traces, exports and runs under DDP unchanged;
- every normalisation computes its statistics in float32, so bf16 autocast cannot turn a flat
  (all-white) crop into NaNs.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from munit_cli.config import ModelConfig

NORM_EPS = 1e-5


# ---------------------------------------------------------------------------------------------
# Normalisations (pure functions; statistics in float32)


# Tiled translation (tiles.py) normalises every tile with the whole image's statistics: while a
# source is set by `norm_statistics`, each normalisation takes its mean and variance from it. Unset,
# which is always the case outside tiles.py, every norm runs the plain code below, bit for bit.
StatsSource = Callable[[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
_stats_source: ContextVar[StatsSource | None] = ContextVar("munit_norm_statistics", default=None)


@contextlib.contextmanager
def norm_statistics(source: StatsSource) -> Iterator[None]:
    """Within this block every normalisation, in call order, calls `source(kind, x)` with its input x
    and kind 'in' (instance norm, also AdaIN's) or 'ln' (the decoder's LayerNorm), and normalises
    with the float32 (mean, var) it returns, shaped as `own_statistics` gives them (or broadcastable)."""
    token = _stats_source.set(source)
    try:
        yield
    finally:
        _stats_source.reset(token)


def own_statistics(kind: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The statistics a normalisation computes from x itself, in float32: for 'in' per sample and
    channel (B, C) with the biased variance, for 'ln' per sample (B,) with the unbiased one."""
    xf = x.float()
    if kind == "in":
        var, mean = torch.var_mean(xf, dim=(2, 3), correction=0)
    else:
        var, mean = torch.var_mean(xf.flatten(1), dim=1, correction=1)
    return mean, var


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """Per sample and channel over H, W; biased variance, like InstanceNorm2d(affine=False).
    torch's fused kernel, about 3x faster on CPU than composing var_mean by hand. It reads bf16
    input directly and accumulates the statistics in float32 itself: 4-8x faster on the CPU than
    a float32 copy of the activations, with the same statistics."""
    source = _stats_source.get()
    if source is not None:
        mean, var = source("in", x)
        y = (x.float() - mean[:, :, None, None]) * torch.rsqrt(var[:, :, None, None] + NORM_EPS)
        return y.to(x.dtype)
    return like_layout(F.instance_norm(x, eps=NORM_EPS), x)


def like_layout(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y in x's memory layout. torch's instance-norm kernel returns NCHW whatever its input; in a
    channels_last network every consumer then converts back, and the decoder's upsampling does so
    only after it has quadrupled the map (and its gradient). Converting here moves that copy to the
    smaller map and changes no value."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return y.contiguous(memory_format=torch.channels_last)
    return y


def adain(x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Adaptive instance norm: instance-normalise, then scale by gamma and shift by beta (B, C)."""
    return instance_norm(x) * gamma[:, :, None, None].to(x.dtype) + beta[:, :, None, None].to(x.dtype)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The decoder's LayerNorm: per sample over C, H, W, dividing by (std + eps) as the recipe does
    (unbiased std, as torch's Tensor.std), then a per-channel affine."""
    xf = x.float()
    source = _stats_source.get()
    if source is None:
        std, mean = torch.std_mean(xf.flatten(1), dim=1, correction=1)
    else:
        mean, var = source("ln", x)
        std = var.sqrt()
    y = (xf - mean[:, None, None, None]) / (std[:, None, None, None] + NORM_EPS)
    y = y * weight.float()[None, :, None, None] + bias.float()[None, :, None, None]
    return y.to(x.dtype)


# The channels_last CPU kernel of group norm takes the variance from sums of x and x^2, which loses
# precision when a map's mean lies far from zero against its spread (6% off at |mean| / std = 100,
# in float32 too). The decoder's maps measured: |mean| / std at most 0.36 in a trained `cpu` model.
# Past this ratio the recipe's own composite runs instead.
KERNEL_LN_MAX_RATIO = 10.0


def kernel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`layer_norm` through torch's group-norm kernel with one group, which normalises over C, H, W
    with a per-channel affine in a few passes (a tenth of the composite's time forward and backward
    on the CPU). It divides by sqrt(biased variance + eps^2) where the recipe divides by (unbiased
    std + eps): the weight is scaled by sqrt((n - 1) / n) for the first difference, and the second
    moves the output by less than eps / std relative (1e-4 for std >= 0.1) and bounds the gain at
    1 / eps as the recipe does. On the CPU: bf16 in, bf16 out, statistics accumulated in float32."""
    n, c, h, w = x.shape
    count = c * h * w  # the values each sample's statistics are taken over
    with torch.autocast(x.device.type, enabled=False):
        y, mean, rstd = torch.native_group_norm(
            x, weight * ((count - 1) / count) ** 0.5, bias, n, c, h * w, 1, NORM_EPS * NORM_EPS
        )
    if bool((mean.float().abs() * rstd.float()).max() > KERNEL_LN_MAX_RATIO):
        return layer_norm(x, weight, bias)
    return y


class LayerNorm(nn.Module):
    """`kernel` (`train.fused_layer_norm`, set by the Trainer) swaps the composite for
    `kernel_layer_norm` on the CPU wherever no tiled translation supplies the statistics. On a GPU
    torch.compile fuses the composite itself (the `fast` preset)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels))  # the recipe initialises gamma from U[0, 1)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.kernel = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel and x.device.type == "cpu" and _stats_source.get() is None:
            return kernel_layer_norm(x, self.weight, self.bias)
        return layer_norm(x, self.weight, self.bias)


class InstanceNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(x)


# ---------------------------------------------------------------------------------------------
# Building blocks


class ReflectionPad(nn.ReflectionPad2d):
    """Reflection padding in the input's own dtype. CPU autocast runs padding in float32: a float32
    copy of every bf16 activation before each convolution, cast back by the convolution, and the
    same again for the gradients, for the same values (padding copies, it does not round)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


def conv_block(
    in_ch: int, out_ch: int, kernel: int, stride: int, pad: int, norm: str, act: str, dilation: int = 1
) -> nn.Sequential:
    """reflection pad -> conv (with bias) -> norm -> activation."""
    layers: list[nn.Module] = []
    if pad:
        layers.append(ReflectionPad(pad))
    layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride, dilation=dilation))
    if norm == "in":
        layers.append(InstanceNorm())
    elif norm == "ln":
        layers.append(LayerNorm(out_ch))
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif act == "lrelu":
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    elif act == "tanh":
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """[3x3 conv, IN, ReLU, 3x3 conv, IN] + skip; the convolutions dilated by `dilations`."""

    def __init__(self, channels: int, dilations: tuple[int, int] = (1, 1)):
        super().__init__()
        d1, d2 = dilations
        self.block = nn.Sequential(
            conv_block(channels, channels, 3, 1, d1, "in", "relu", dilation=d1),
            conv_block(channels, channels, 3, 1, d2, "in", "none", dilation=d2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class AdaINResBlock(nn.Module):
    """The decoder's residual block: both norms are AdaIN, with parameters passed in."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.pad = ReflectionPad(1)
        self.conv1 = nn.Conv2d(channels, channels, 3)
        self.conv2 = nn.Conv2d(channels, channels, 3)

    def forward(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        beta1, gamma1, beta2, gamma2 = params
        y = F.relu(adain(self.conv1(self.pad(x)), beta1, gamma1))
        y = adain(self.conv2(self.pad(y)), beta2, gamma2)
        return x + y


# ---------------------------------------------------------------------------------------------
# Networks


def content_dilations(cfg: ModelConfig) -> list[tuple[int, int]]:
    """Per residual block of the content encoder, its two convolutions' dilations: all 1 in the
    recipe; with content_dilation d > 1 they grow as 1, d, d^2, ..., so the code at each location
    sees far enough to tell the inside of a large outline from the outside, at the same cost."""
    d = cfg.content_dilation
    return [(d ** (2 * i), d ** (2 * i + 1)) for i in range(cfg.n_res)]


class ContentEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.dim
        layers = [conv_block(cfg.input_dim, ch, 7, 1, 3, "in", "relu")]
        for _ in range(cfg.n_downsample):
            layers.append(conv_block(ch, ch * 2, 4, 2, 1, "in", "relu"))
            ch *= 2
        layers += [ResBlock(ch, dilations) for dilations in content_dilations(cfg)]
        self.model = nn.Sequential(*layers)
        self.out_channels = ch
        # where the contrastive patch loss reads: after the first block, after each downsampling,
        # and the code itself (the deeper, the larger and more abstract each location's patch)
        self.feature_layers = (*range(cfg.n_downsample + 1), len(layers) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The content code and the feature maps at `feature_layers`, in one pass."""
        feats = []
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in self.feature_layers:
                feats.append(x)
        return x, feats


class StyleEncoder(nn.Module):
    """No normalisation; downsamples `style_n_downsample` times (4 in the recipe), channels capped
    after the first two doublings, then global average pool and a 1x1 conv to style_dim."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.dim
        layers = [conv_block(cfg.input_dim, ch, 7, 1, 3, "none", "relu")]
        for i in range(cfg.style_n_downsample):
            out = ch * 2 if i < 2 else ch
            layers.append(conv_block(ch, out, 4, 2, 1, "none", "relu"))
            ch = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, cfg.style_dim, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flatten(1)


class MLP(nn.Module):
    def __init__(self, style_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(style_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.model(s)


class Decoder(nn.Module):
    """AdaIN residual blocks, then upsampling (x2 nearest or bilinear, 5x5 conv, LayerNorm, ReLU),
    7x7 conv, tanh."""

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        ch = in_channels
        self.res_blocks = nn.ModuleList([AdaINResBlock(ch) for _ in range(cfg.n_res)])
        up: list[nn.Module] = []
        for _ in range(cfg.n_downsample):
            up += [nn.Upsample(scale_factor=2, mode=cfg.upsample), conv_block(ch, ch // 2, 5, 1, 2, "ln", "relu")]
            ch //= 2
        up.append(conv_block(ch, cfg.input_dim, 7, 1, 3, "none", "tanh"))
        self.upsample = nn.Sequential(*up)

    @property
    def num_adain_params(self) -> int:
        return sum(4 * block.channels for block in self.res_blocks)

    def split_adain_params(self, params: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """The MLP output, consumed in decoder order: per AdaIN layer C values of beta, then C of gamma."""
        per_block, start = [], 0
        for block in self.res_blocks:
            c = block.channels
            chunk = params[:, start : start + 4 * c]
            per_block.append(tuple(chunk[:, i * c : (i + 1) * c] for i in range(4)))
            start += 4 * c
        return per_block

    def forward(self, c: torch.Tensor, adain_params: torch.Tensor) -> torch.Tensor:
        x = c
        for block, params in zip(self.res_blocks, self.split_adain_params(adain_params)):
            x = block(x, params)
        return self.upsample(x)


class Generator(nn.Module):
    """One domain's content encoder, style encoder, MLP and decoder."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.content_encoder = ContentEncoder(cfg)
        self.style_encoder = StyleEncoder(cfg)
        self.decoder = Decoder(cfg, self.content_encoder.out_channels)
        self.mlp = MLP(cfg.style_dim, cfg.mlp_dim, self.decoder.num_adain_params)
        self.style_dim = cfg.style_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.content_encoder(x), self.style_encoder(x)

    def decode(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.decoder(c, self.mlp(s))


class Discriminator(nn.Module):
    """Multi-scale PatchGAN: identical per-scale nets, each fed an average-pooled copy of the last.
    Returns one patch map per scale (raw outputs; the LSGAN loss reads them directly)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.scales = nn.ModuleList([self._one_scale(cfg) for _ in range(cfg.dis_num_scales)])

    @staticmethod
    def _one_scale(cfg: ModelConfig) -> nn.Sequential:
        ch = cfg.dis_dim
        layers = [conv_block(cfg.input_dim, ch, 4, 2, 1, "none", "lrelu")]
        for _ in range(cfg.dis_n_layer - 1):
            layers.append(conv_block(ch, ch * 2, 4, 2, 1, "none", "lrelu"))
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, 1))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, features: bool = False):
        """The patch maps, one per scale; with `features`, also every hidden layer's activations
        (each scale's, finest first), for the feature-matching loss: (maps, activations)."""
        outputs, hidden = [], []
        for i, net in enumerate(self.scales):
            if i:
                # kernel 3 whatever the channel count (a known defect elsewhere ties it to channels)
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            if not features:
                outputs.append(net(x))
                continue
            y = x
            for layer in net[:-1]:
                y = layer(y)
                hidden.append(y)
            outputs.append(net[-1](y))
        return (outputs, hidden) if features else outputs


class MUNIT(nn.Module):
    """Both domains' generators. `forward` computes everything the generator update needs in one
    call, so a single DistributedDataParallel wrapper sees every generator parameter used once."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gen_a = Generator(cfg)
        self.gen_b = Generator(cfg)
        if cfg.shared_content_encoder:
            # one module under both names: both generators stay complete (inference, export and
            # the state dict need no special case), the optimiser sees its parameters once
            self.gen_b.content_encoder = self.gen_a.content_encoder

    def generator(self, domain: str) -> Generator:
        return self.gen_a if domain == "a" else self.gen_b

    def forward(
        self,
        x_a: torch.Tensor,
        x_b: torch.Tensor,
        s_a: torch.Tensor,
        s_b: torch.Tensor,
        cycle: bool = False,
        cycle_detach: str = "",
        second_styles: tuple[torch.Tensor, torch.Tensor] | None = None,
        features: bool = False,
        content_detach: bool = False,
        reread_noise: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """`second_styles` (s_a2, s_b2): also translate each content with a second random style,
        for the style-diversity term (x_ba2, x_ab2). `features`: also return the content encoders'
        feature maps of each input and of its translation (feat_a, feat_ab, feat_b, feat_ba), for
        the contrastive patch loss. `cycle_detach` ("ab", "ba" or "both"): the cycle re-encodes
        those translations as fixed images, so its gradient trains the encoder and decoder that
        read them but not the decoder that drew them (which then cannot pass the cycle hidden
        hints in its translations). `content_detach`: the content reconstruction (and the patch
        features) of those translations read them as fixed images too, and the cycle reuses
        that code: a content code to match is a hint as much as an image to restore is.
        `reread_noise`: Gaussian noise of this standard deviation on each translation wherever the
        encoders read it again (content, style, cycle; not where the discriminators judge it), so
        that faint patterns a decoder hides in its translation carry no hints back."""
        encoded = {}

        def content(gen: Generator, name: str, x: torch.Tensor) -> torch.Tensor:
            if not features:
                return gen.content_encoder(x)
            c, encoded[name] = gen.content_encoder.with_features(x)
            return c

        c_a, s_a_prime = content(self.gen_a, "feat_a", x_a), self.gen_a.style_encoder(x_a)
        c_b, s_b_prime = content(self.gen_b, "feat_b", x_b), self.gen_b.style_encoder(x_b)
        out = {
            "c_a": c_a,
            "c_b": c_b,
            "s_a": s_a,
            "s_b": s_b,
            "x_a_recon": self.gen_a.decode(c_a, s_a_prime),
            "x_b_recon": self.gen_b.decode(c_b, s_b_prime),
            "x_ba": self.gen_a.decode(c_b, s_a),
            "x_ab": self.gen_b.decode(c_a, s_b),
        }
        fixed_ab, fixed_ba = cycle_detach in ("ab", "both"), cycle_detach in ("ba", "both")
        x_ab_seen, x_ba_seen = (x + reread_noise * torch.randn_like(x) if reread_noise else x for x in (out["x_ab"], out["x_ba"]))
        x_ab_read = x_ab_seen.detach() if content_detach and fixed_ab else x_ab_seen
        x_ba_read = x_ba_seen.detach() if content_detach and fixed_ba else x_ba_seen
        out["c_b_recon"], out["s_a_recon"] = content(self.gen_a, "feat_ba", x_ba_read), self.gen_a.style_encoder(x_ba_seen)
        out["c_a_recon"], out["s_b_recon"] = content(self.gen_b, "feat_ab", x_ab_read), self.gen_b.style_encoder(x_ab_seen)
        out.update(encoded)
        if cycle:
            c_ab, c_ba = out["c_a_recon"], out["c_b_recon"]
            if fixed_ab and not content_detach:
                c_ab = self.gen_b.content_encoder(x_ab_seen.detach())
            if fixed_ba and not content_detach:
                c_ba = self.gen_a.content_encoder(x_ba_seen.detach())
            out["x_aba"] = self.gen_a.decode(c_ab, s_a_prime)
            out["x_bab"] = self.gen_b.decode(c_ba, s_b_prime)
        if second_styles is not None:
            s_a2, s_b2 = second_styles
            out["x_ba2"] = self.gen_a.decode(c_b, s_a2)
            out["x_ab2"] = self.gen_b.decode(c_a, s_b2)
        return out


class DiscriminatorPair(nn.Module):
    """Both domains' discriminators; `forward` scores real and fake images of both domains in one
    call (the discriminator update), so one DDP wrapper covers both."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dis_a = Discriminator(cfg)
        self.dis_b = Discriminator(cfg)

    def forward(
        self, real_a: torch.Tensor, fake_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor
    ) -> dict[str, list[torch.Tensor]]:
        return {
            "real_a": self.dis_a(real_a),
            "fake_a": self.dis_a(fake_a),
            "real_b": self.dis_b(real_b),
            "fake_b": self.dis_b(fake_b),
        }


# ---------------------------------------------------------------------------------------------
# Initialisation


def init_generator(module: nn.Module) -> None:
    """Kaiming-normal (fan_in) for convs and linears, zero bias."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            nn.init.zeros_(m.bias)


def init_discriminator(module: nn.Module) -> None:
    """N(0, 0.02) weights, zero bias."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


def spectral_normalised(module: nn.Module) -> nn.Module:
    """Every conv of `module` divided by its largest singular value (one power iteration per
    forward; Miyato et al., 2018): bounds the discriminator's Lipschitz constant."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.utils.parametrizations.spectral_norm(m)
    return module


def build(cfg: ModelConfig) -> tuple[MUNIT, DiscriminatorPair]:
    gen, dis = MUNIT(cfg), DiscriminatorPair(cfg)
    init_generator(gen)
    init_discriminator(dis)
    if cfg.dis_spectral_norm:  # after the init, so the weights it normalises are the recipe's
        spectral_normalised(dis)
    return gen, dis


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def size_multiple(m: ModelConfig) -> int:
    """Image sides must be multiples of this, so decoding restores the input size exactly."""
    return 2**m.n_downsample


def min_size(m: ModelConfig) -> int:
    """The smallest side every graph accepts: reflection padding needs at least 2 pixels before the
    content encoder's residual blocks (one more than their largest dilation) and before the style
    encoder's last downsampling."""
    widest = max(max(pair) for pair in content_dilations(m)) if m.n_res else 1
    smallest = max(2**m.n_downsample * (widest + 1), 2 ** (m.n_downsample + 1), 2**m.style_n_downsample)
    return -(-smallest // size_multiple(m)) * size_multiple(m)
