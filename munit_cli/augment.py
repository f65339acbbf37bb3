"""Differentiable augmentation of the discriminators' inputs (DiffAugment, Zhao et al., NeurIPS 2020).

A GAN trained on a few thousand images lets its discriminators memorise the real set; augmenting
every image they see, real and translated alike and in both updates, removes that shortcut without
teaching the generators to produce augmented images, because the same random operations also sit
between the generators and the discriminators in the generator update (every operation is
differentiable). Images are in [-1, 1]; the random numbers come from an explicit generator, so a
resumed run draws the same augmentations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


TRANSLATION_RATIO = 0.125  # largest shift, as a fraction of the side
CUTOUT_RATIO = 0.5  # side of the erased square, as a fraction of the image side


def _rand(g: torch.Generator, x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=g).to(x.device, x.dtype)


def colour(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random brightness, saturation and contrast per image."""
    n = x.shape[0]
    x = x + (_rand(g, x, n, 1, 1, 1) - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (2 * _rand(g, x, n, 1, 1, 1)) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(g, x, n, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 1/8 of its side in both directions; what comes in is zero (grey)."""
    n, _, h, w = x.shape
    dy, dx = (torch.randint(-int(s * TRANSLATION_RATIO), int(s * TRANSLATION_RATIO) + 1, (n, 1, 1), generator=g) for s in (h, w))
    rows = (torch.arange(h)[None, :, None] + dy + 1).clamp(0, h + 1).to(x.device)
    cols = (torch.arange(w)[None, None, :] + dx + 1).clamp(0, w + 1).to(x.device)
    padded = F.pad(x, (1, 1, 1, 1))
    index = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows, cols].permute(0, 3, 1, 2).contiguous(memory_format=_layout(x))


def cutout(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Erase (set to zero) one random square of half the side per image."""
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=g) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=g) - cw // 2
    rows, cols = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside)[:, None].to(x.device, x.dtype)


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 else torch.contiguous_format


OPERATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "colour": colour,
    "translation": translation,
    "cutout": cutout,
}


def augment(x: torch.Tensor, policy: tuple[str, ...], g: torch.Generator) -> torch.Tensor:
    """`x` through each operation of `policy` (as `config.dis_augment_policy` returns it)."""
    for name in policy:
        x = OPERATIONS[name](x, g)
    return x
