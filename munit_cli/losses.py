"""MUNIT's losses as small pure functions, and the weighted generator objective.

Adversarial terms are LSGAN on the discriminator's patch outputs, summed over scales; every
reconstruction term is an L1 mean.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from munit_cli.config import LossConfig
from munit_cli.errors import MunitError, first_line


def recon_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (x.float() - target.float()).abs().mean()


def dis_loss(real_outputs: list[torch.Tensor], fake_outputs: list[torch.Tensor], gan_type: str = "lsgan") -> torch.Tensor:
    """Discriminator loss summed over scales. LSGAN (the paper): mean(D(fake)^2) + mean((D(real) - 1)^2);
    hinge: mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    if gan_type == "hinge":
        return sum(F.relu(1 - real.float()).mean() + F.relu(1 + fake.float()).mean() for real, fake in zip(real_outputs, fake_outputs))
    return sum(
        (fake.float() ** 2).mean() + ((real.float() - 1) ** 2).mean()
        for real, fake in zip(real_outputs, fake_outputs)
    )


def gen_adv_loss(fake_outputs: list[torch.Tensor], gan_type: str = "lsgan") -> torch.Tensor:
    """Generator's adversarial loss summed over scales. LSGAN: mean((D(fake) - 1)^2); hinge: -mean(D(fake))."""
    if gan_type == "hinge":
        return sum(-fake.float().mean() for fake in fake_outputs)
    return sum(((fake.float() - 1) ** 2).mean() for fake in fake_outputs)


def r1_penalty(real_outputs: list[torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al., 2018): the squared norm of the gradient of the discriminator's outputs
    (summed over patches and scales) with respect to the real images it scored, averaged over the
    batch. Keeps the discriminator flat around the data, where an unregularised one oscillates."""
    (grad,) = torch.autograd.grad(sum(o.float().sum() for o in real_outputs), real, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def feature_matching(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Mean feature matching (Salimans et al., 2016): the L1 distance between the translations'
    and the real images' average discriminator activations, per layer (over batch and positions),
    averaged over layers. Unpaired: it asks the batch of translations to look like the real batch
    on average to the discriminator, not any one translation like any one image."""
    dims = (0, 2, 3)
    per_layer = [(f.float().mean(dims) - r.detach().float().mean(dims)).abs().mean() for f, r in zip(fake, real)]
    return torch.stack(per_layer).mean()


def patch_nce(
    source: list[torch.Tensor], output: list[torch.Tensor], num_patches: int, tau: float, g: torch.Generator
) -> torch.Tensor:
    """Contrastive patch loss (PatchNCE, Park et al. 2020), averaged over feature maps: per image,
    at `num_patches` random locations (the same in both maps), the translation's feature vector
    should pick out the input's at the same location among the input's at the other locations
    (cross-entropy over cosine similarities / tau). The input side is the fixed key (detached), as
    in CUT. Without CUT's projection MLP: the features are compared as the encoder gives them, so
    the loss adds no weights to train, save or resume."""
    total = torch.zeros((), device=output[0].device)
    for src, out in zip(source, output):
        b, c, h, w = out.shape
        n = min(num_patches, h * w)
        ids = torch.randperm(h * w, generator=g)[:n].to(out.device)
        k = F.normalize(src.detach().float().flatten(2)[:, :, ids], dim=1)  # (B, C, n)
        q = F.normalize(out.float().flatten(2)[:, :, ids], dim=1)
        logits = torch.bmm(q.transpose(1, 2), k) / tau  # (B, n queries, n keys)
        target = torch.arange(n, device=out.device).expand(b, n)
        total = total + F.cross_entropy(logits.flatten(0, 1), target.flatten())
    return total / len(output)


def nce_terms(out: dict, w: LossConfig, g: torch.Generator) -> dict[str, torch.Tensor]:
    """The contrastive patch loss of both translations against their inputs (nce_a: x_ab with x_a)."""
    return {
        "nce_a": patch_nce(out["feat_a"], out["feat_ab"], w.nce_patches, w.nce_tau, g),
        "nce_b": patch_nce(out["feat_b"], out["feat_ba"], w.nce_patches, w.nce_tau, g),
    }


def generator_terms(
    out: dict[str, torch.Tensor],
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    adv_a: torch.Tensor,
    adv_b: torch.Tensor,
    vgg: "VGGPerceptual | None" = None,
) -> dict[str, torch.Tensor]:
    """Every unweighted term of the generator objective, named as in the paper."""
    terms = {
        "adv_a": adv_a,
        "adv_b": adv_b,
        "recon_x_a": recon_loss(out["x_a_recon"], x_a),
        "recon_x_b": recon_loss(out["x_b_recon"], x_b),
        "recon_s_a": recon_loss(out["s_a_recon"], out["s_a"]),
        "recon_s_b": recon_loss(out["s_b_recon"], out["s_b"]),
        "recon_c_a": recon_loss(out["c_a_recon"], out["c_a"]),
        "recon_c_b": recon_loss(out["c_b_recon"], out["c_b"]),
    }
    if "x_aba" in out:
        terms["cyc_x_a"] = recon_loss(out["x_aba"], x_a)
        terms["cyc_x_b"] = recon_loss(out["x_bab"], x_b)
    if "x_ab2" in out:
        # Style diversity (mode seeking, as in StarGAN v2): two random styles of one content
        # should give different images, so the term rewards their distance (hence the minus).
        terms["div_a"] = -recon_loss(out["x_ba"], out["x_ba2"])
        terms["div_b"] = -recon_loss(out["x_ab"], out["x_ab2"])
    if vgg is not None:
        terms["vgg_a"] = vgg(out["x_ba"], x_b)
        terms["vgg_b"] = vgg(out["x_ab"], x_a)
    return terms


# Which LossConfig weight multiplies each term of `generator_terms`.
TERM_WEIGHTS = {
    "adv_a": "gan_w",
    "adv_b": "gan_w",
    "recon_x_a": "recon_x_w",
    "recon_x_b": "recon_x_w",
    "recon_s_a": "recon_s_w",
    "recon_s_b": "recon_s_w",
    "recon_c_a": "recon_c_w",
    "recon_c_b": "recon_c_w",
    "cyc_x_a": "recon_x_cyc_w",
    "cyc_x_b": "recon_x_cyc_w",
    "div_a": "diversity_w",
    "div_b": "diversity_w",
    "vgg_a": "vgg_w",
    "vgg_b": "vgg_w",
    "nce_a": "nce_w",
    "nce_b": "nce_w",
    "fm_a": "fm_w",
    "fm_b": "fm_w",
}


# Per-domain factors on top of a term's weight (not in the paper; 1 by default).
TERM_SCALES = {
    "adv_a": "gan_scale_a",
    "adv_b": "gan_scale_b",
    "recon_x_a": "recon_x_scale_a",
    "recon_x_b": "recon_x_scale_b",
    "recon_c_a": "recon_c_scale_a",
    "recon_c_b": "recon_c_scale_b",
}


def term_weight(name: str, w: LossConfig) -> float:
    scale = getattr(w, TERM_SCALES[name]) if name in TERM_SCALES else 1.0
    return getattr(w, TERM_WEIGHTS[name]) * scale


def total_generator_loss(terms: dict[str, torch.Tensor], w: LossConfig) -> torch.Tensor:
    return sum(term_weight(name, w) * value for name, value in terms.items())


class VGGPerceptual(nn.Module):
    """Domain-invariant perceptual loss: MSE between instance-normalised VGG-16 relu5_3 features.

    As in the authors' network, there is no max-pool between relu4_3 and conv5_1 (torchvision's
    stack has one), so relu5_3 comes out at 1/8 of the input resolution. The ImageNet weights cannot be downloaded here, so the user supplies them as a safetensors file
    holding torchvision's `vgg16().features` state dict (keys like `features.0.weight` or `0.weight`).
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, weights_path: str | Path):
        super().__init__()
        from safetensors.torch import load_file
        from torchvision.models import vgg16

        path = Path(weights_path)
        if not path.is_file():
            raise MunitError(
                f"VGG-16 weights file not found: {path}",
                hint="loss.vgg_w > 0 needs ImageNet VGG-16 weights as safetensors; nothing is downloaded",
            )
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises several types for a bad file
            raise MunitError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None
        state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
        features = vgg16(weights=None).features[:30]  # up to relu5_3, keyed as torchvision's file
        try:
            features.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise MunitError(f"{path}: not VGG-16 feature weights ({first_line(exc)})") from None
        pool4 = 23  # the max-pool after relu4_3
        self.features = nn.Sequential(*features[:pool4], *features[pool4 + 1 :]).eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        from munit_cli.models import instance_norm

        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = ((x + 1) / 2 - self.mean) / self.std
        return instance_norm(self.features(x))

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self._embed(x).float(), self._embed(target).float())


# Below GREY a domain has no colour to speak of (line art and the demo's outlines: 0.00); COLOURED
# is well clear of it (fluent64's flat designs 0.22-0.24, the two emoji64 sets 0.23 and 0.26, the
# demo's filled shapes 0.24: data.colourfulness of COLOUR_SAMPLE centre crops spread over each
# folder).
GREY, COLOURED = 0.02, 0.05
COLOUR_SAMPLE = 64


def auto_cycle_detach(colour_a: float, colour_b: float) -> str:
    """What `loss.cycle_detach=auto` means: translating a coloured image into a grey domain drops
    its colours, and a cycle that must bring them back through that translation rewards the decoder
    for hiding them in its grey drawings, which real ones never show (docs/benchmarks.md, round 3);
    so that cycle reads the grey translation as a fixed image. Between two grey or two coloured
    domains nothing is detached."""
    if colour_a < GREY and colour_b >= COLOURED:
        return "ba"
    if colour_b < GREY and colour_a >= COLOURED:
        return "ab"
    return ""
