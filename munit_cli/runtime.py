"""Where the networks run and how random streams are seeded; shared by training, inference and
evaluation."""

from __future__ import annotations

import random
from typing import Any

import torch

from munit_cli.errors import UsageError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but no CUDA GPU is available", hint="use --device cpu")
    return device


def hash_seed(*parts: Any) -> int:
    """A 63-bit seed that depends on every part, so independent streams never share a seed."""
    return random.Random(":".join(map(str, parts))).getrandbits(63)
