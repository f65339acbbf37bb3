"""Where the networks run and how random streams are seeded; shared by training, inference and
evaluation."""

from __future__ import annotations

import contextlib
import random
import statistics
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


def cpu_has_bf16_units() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX tiles or AVX512-BF16): there oneDNN's bf16
    convolutions run several times faster than float32. Elsewhere bf16 is emulated and slower."""
    cpu = torch.backends.cpu
    capability = cpu.get_cpu_capability() if hasattr(cpu, "get_cpu_capability") else ""
    if capability not in ("AVX512", "AVX512_BF16", "AMX"):  # also False when ATEN_CPU_CAPABILITY lowers it
        return False
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def fast_precision(device: torch.device) -> str:
    """The precision of the fast path on `device`: bf16 on CUDA and on CPUs with bf16 units, fp32 elsewhere."""
    if (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (device.type == "cpu" and cpu_has_bf16_units()):
        return "bf16"
    return "fp32"


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(requested: str, channels_last: bool, device: torch.device) -> tuple[str, bool]:
    """(precision, channels_last) to run with. `auto` picks the fast path for `device`: bf16 where it
    is fast, and then the asked-for layout; float32 and the contiguous layout elsewhere (channels_last
    slows float32 CPU convolutions down). fp32 and bf16 are kept as forced, with the layout as asked."""
    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r}", hint="use auto, fp32 or bf16")
    if requested != "auto":
        return requested, channels_last
    precision = fast_precision(device)
    return precision, channels_last and precision == "bf16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for a resolved precision of bf16 (matrix products and convolutions in bf16, the
    normalisations keep float32 statistics); a no-op context for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class ThreadTuner:
    """Keeps the CPU thread count that trains fastest now: all of torch's threads, or one.

    OpenMP splits every operator over its threads and waits for the last: when another program
    takes one of the cores (a browser, a package install still writing to disk), each operator
    waits for a thread that is not running, and two threads train slower than one would (3.7x
    slower on two cores with one busy, benchmarks/levers.py). So every `every` steps the other count is tried for
    `window` steps, after a window at the current count, and the faster one is kept. Each call of
    `observe` reports the seconds one training step took; nothing else is timed, so checkpoints
    and sample grids do not count."""

    def __init__(self, threads: int, window: int = 10, every: int = 250, first: int = 20, set_threads=None):
        self.choices = (threads, 1)
        self.current = threads
        self.window, self.every = window, every
        self.set_threads = set_threads or torch.set_num_threads
        self.since = every - first  # the first trial comes early: a busy core may be busy from the start
        self.phase, self.times = "run", []
        self.baseline = 0.0  # the typical step time at the current count, before a trial
        self.switches: list[tuple[int, int]] = []  # (steps observed, threads chosen) at each change
        self.steps = 0

    @property
    def active(self) -> bool:
        return self.choices[0] > 1

    def observe(self, seconds: float) -> str | None:
        """Record one step's time; returns a message when the thread count changes."""
        if not self.active:
            return None
        self.steps += 1
        self.since += 1
        if self.phase == "run":
            if self.since >= self.every:
                self.phase, self.times = "baseline", []
            return None
        self.times.append(seconds)
        # each window drops its first step: a thread pool that has just grown is still waking up
        if len(self.times) < self.window + 1:
            return None
        typical = statistics.median(self.times[1:])  # one slow step is not a trend
        if self.phase == "baseline":
            self.baseline, self.times, self.phase = typical, [], "trial"
            self.set_threads(self.other)
            return None
        threads = self.other
        self.phase, self.times, self.since = "run", [], 0
        if typical >= 0.9 * self.baseline:
            self.set_threads(self.current)
            return None
        self.current = threads
        self.switches.append((self.steps, threads))
        self.set_threads(threads)
        why = "other programs are using the cores" if threads == 1 else "the cores are free again"
        return f"training on {threads} CPU thread{'s' if threads > 1 else ''} now: {self.baseline / typical:.1f}x faster ({why})"

    @property
    def other(self) -> int:
        return self.choices[1] if self.current == self.choices[0] else self.choices[0]
