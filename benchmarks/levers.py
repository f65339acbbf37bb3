"""Where one training step of the small CPU networks goes, and what each speed lever buys alone.

    python benchmarks/levers.py                       # the cpu preset's networks, batch 4, 64 px
    python benchmarks/levers.py --threads 1 --compile --json levers.json

Three tables, all from this one process, so their ratios compare like with like:

1. profile: torch.profiler over a few steps of the fast path, self CPU time grouped by kind of
   operator (convolutions forward and backward, copies and dtype casts, normalisations, padding,
   other element-wise work, the optimizer, the rest);
2. levers: ms per iteration of the float32 reference, the reference with one lever switched on
   (bf16 autocast, channels_last, shared translations, fused Adam, the opt-in LayerNorm kernel),
   the whole fast path, the fast path with the LayerNorm kernel too, the fast path with the
   reflection padding that autocast runs in float32 (as before `models.ReflectionPad`), the fast
   path with instance norm's output left in NCHW (as before `models.like_layout`), and with
   --compile the fast path with torch.compile (its first steps, the compile, timed apart). The
   variants are timed in interleaved rounds and each keeps its fastest round, so a machine whose
   speed drifts during the run slows all of them alike;
3. off the step: what the step waits for besides the networks: one batch of both domains through
   the training data path (decode cached, random crop and flip) and the two optimizer steps;
4. threads: the fast path at all of torch's threads and at one, on the quiet machine and with a
   busy loop in another process taking one core (what `runtime.ThreadTuner` reacts to).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402

from munit_cli import config, data, models, synthetic, updates  # noqa: E402

LEVERS = {
    "bf16": {"train": {"precision": "auto"}},
    "channels_last": {"train": {"channels_last": True}},
    "share_translations": {"train": {"share_translations": True}},
    "fused_adam": {"optim": {"fused": True}},
    "fused_layer_norm": {"train": {"fused_layer_norm": True}},
}
# profiler operator names, first match wins
KINDS = (
    ("convolution", ("convolution", "conv2d", "mkldnn_conv")),
    ("copies and casts", ("copy_", "_to_copy", "clone", "contiguous", "to")),
    ("normalisation", ("batch_norm", "instance_norm", "std_mean", "var_mean", "layer_norm", "group_norm")),
    ("padding", ("reflection_pad",)),
    ("optimizer", ("adam", "Optimizer", "_foreach")),
    ("element-wise", ("mul", "add", "sub", "div", "relu", "tanh", "threshold", "leaky", "lerp", "neg", "pow", "sum", "mean", "fill_", "clamp")),
)


def variant_cfg(arch: str, changes: dict, batch: int, size: int, compile_: bool = False) -> config.Config:
    sections = {s: dict(v) for s, v in speed.REFERENCE_FLAGS.items()}
    for section, values in changes.items():
        sections[section].update(values)
    sections["train"].update({"batch_size": batch, "ema_decay": 0.999, "ema_start": 0, "compile": compile_})
    sections["data"] = {"load_size": size, "crop_size": size}
    sections["loss"] = {"cycle_detach": speed.AUTO_ON_RANDOM_IMAGES}
    return config.resolve(arch, overrides=sections)


def fast_changes() -> dict:
    return {s: dict(v) for s, v in speed.FAST_FLAGS.items()}


def nchw_instance_norm():
    """Instance norm handing on torch's NCHW output, as before `models.like_layout`."""
    return mock.patch.object(models, "like_layout", lambda y, x: y)


def float32_padding():
    """Padding as plain nn.ReflectionPad2d does it: under CPU autocast, in float32."""
    return mock.patch.object(models.ReflectionPad, "forward", torch.nn.ReflectionPad2d.forward)


def kind_of(name: str) -> str:
    op = name.split("::")[-1]
    for kind, needles in KINDS:
        if any(op == n or op.startswith(n) or n in op for n in needles):
            return kind
    return "other"


def profile(trainer, x_a, x_b, steps: int) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            trainer.step(x_a, x_b, 100 + i)
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        kind = kind_of(event.key) if event.key.startswith("aten::") or "Optimizer" in event.key else "other"
        totals[kind] = totals.get(kind, 0.0) + event.self_cpu_time_total / 1e3 / steps
    return sorted(totals.items(), key=lambda kv: -kv[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="cpu", choices=["tiny", "cpu", "paper"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per variant")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--compile", action="store_true", help="also time the fast path with torch.compile")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    x_a = torch.rand(args.batch, 3, args.size, args.size) * 2 - 1
    x_b = torch.rand(args.batch, 3, args.size, args.size) * 2 - 1

    with_kernel_ln = fast_changes()
    with_kernel_ln["train"]["fused_layer_norm"] = True
    variants = {
        "reference": {},
        **{f"+ {name}": changes for name, changes in LEVERS.items()},
        "fast path": fast_changes(),
        "fast path + fused_layer_norm": with_kernel_ln,
    }
    trainers = {name: updates.Trainer(variant_cfg(args.arch, c, args.batch, args.size), device) for name, c in variants.items()}
    context = {"fast path, float32 padding": float32_padding, "fast path, NCHW instance norm": nchw_instance_norm}
    for name in context:
        trainers[name] = updates.Trainer(variant_cfg(args.arch, fast_changes(), args.batch, args.size), device)
    compile_seconds = None
    if args.compile:
        trainer = updates.Trainer(variant_cfg(args.arch, fast_changes(), args.batch, args.size, compile_=True), device)
        start = time.perf_counter()
        for i in range(2):  # the first step compiles the forward and backward graphs, the second recompiles nothing
            trainer.step(x_a, x_b, i)
        compile_seconds = time.perf_counter() - start
        trainers["fast path + compile"] = trainer
    for name, trainer in trainers.items():
        with context.get(name, contextlib.nullcontext)():
            for i in range(2):
                trainer.step(x_a, x_b, i)
    best = {name: float("inf") for name in trainers}
    for r in range(args.rounds):
        for name, trainer in trainers.items():
            with context.get(name, contextlib.nullcontext)():
                start = time.perf_counter()
                for i in range(args.steps):
                    trainer.step(x_a, x_b, 10 + r * args.steps + i)
                best[name] = min(best[name], (time.perf_counter() - start) / args.steps * 1e3)
        print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)

    kinds = profile(trainers["fast path"], x_a, x_b, args.steps)
    threads = thread_counts(trainers["fast path"], x_a, x_b, args.steps)
    off = off_the_step(trainers["fast path"], args)

    print(f"\n{speed.device_name(device)}, arch {args.arch}, batch {args.batch}, {args.size}x{args.size}, torch {torch.__version__}")
    total = sum(ms for _, ms in kinds)
    print("\n1. profile of one fast-path step (self CPU time)")
    for kind, ms in kinds:
        print(f"  {kind:<18} {ms:8.1f} ms  {ms / total:6.1%}")
    print("\n2. levers (fastest of the rounds)")
    ref = best["reference"]
    for name, ms in best.items():
        print(f"  {name:<30} {ms:8.1f} ms/iter  {ref / ms:5.2f}x")
    if compile_seconds is not None:
        print(f"  (torch.compile: the first two steps took {compile_seconds:.0f} s)")
    print("\n3. off the step (fast path)")
    step_ms = best["fast path"]
    for name, ms in off.items():
        print(f"  {name:<40} {ms:8.2f} ms  {ms / step_ms:6.1%} of a step")
    print("\n4. threads (fast path, ms/iter)")
    for (n, load), ms in threads.items():
        print(f"  {n} thread{'s' if n > 1 else ''}, {load:<14} {ms:8.1f}")
    result = {
        "device": speed.device_name(device), "arch": args.arch, "batch": args.batch, "size": args.size,
        "torch": torch.__version__, "profile_ms": dict(kinds), "ms_per_iter": best,
        "compile_seconds": compile_seconds, "off_the_step_ms": off,
        "threads_ms": {f"{n} {load}": ms for (n, load), ms in threads.items()},
    }  # fmt: skip
    print(json.dumps(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))


def thread_counts(trainer, x_a, x_b, steps: int) -> dict[tuple[int, str], float]:
    """ms per step at all threads and at one, quiet and with one core taken by another process."""
    most = torch.get_num_threads()

    def timed(n: int) -> float:
        torch.set_num_threads(n)
        trainer.step(x_a, x_b, 0)
        start = time.perf_counter()
        for i in range(steps):
            trainer.step(x_a, x_b, 1 + i)
        return (time.perf_counter() - start) / steps * 1e3

    out = {(n, "quiet"): timed(n) for n in (most, 1)}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        out.update({(n, "one core busy"): timed(n) for n in (most, 1)})
    finally:
        busy.kill()
        busy.wait()
        torch.set_num_threads(most)
    return out


def off_the_step(trainer, args) -> dict[str, float]:
    """ms per step of the data path (a batch of each domain from image files, cached after their
    first decode, as a training run reads them) and of the two optimizer steps alone."""
    cfg = trainer.cfg
    with tempfile.TemporaryDirectory() as tmp:
        synthetic.make_shapes(Path(tmp), n_train=64, n_test=1, size=args.size)
        sources = data.open_sources([Path(tmp) / "trainA", Path(tmp) / "trainB"], cfg.data, 3)
        streams = [data.DomainStream(s, cfg.data, args.batch, 0, d, data.Shard()) for s, d in zip(sources, "ab")]
        for step in range(64 // args.batch):  # every image decoded once: the cache is warm
            [s.batch(step) for s in streams]
        start = time.perf_counter()
        n = 50
        for step in range(n):
            [s.batch(step) for s in streams]
        batch_ms = (time.perf_counter() - start) / n * 1e3
    start = time.perf_counter()
    for _ in range(20):
        trainer.opt_gen.step()
        trainer.opt_dis.step()
    opt_ms = (time.perf_counter() - start) / 20 * 1e3
    return {"data: one batch of each domain": batch_ms, "optimizer: both Adam steps": opt_ms}


if __name__ == "__main__":
    main()
