"""Training and translation speed: the float32 reference path vs the fast path, in one run.

    python benchmarks/speed.py                        # CPU: tiny, cpu and paper networks at 64 px
    python benchmarks/speed.py --device cuda --size 256 --json speed.json

Every row trains real networks with their losses on random images (speed does not depend on the
pixels). Training throughput is image pairs per second (one image of each domain per batch
element, one discriminator and one generator update per iteration); translation throughput is
images per second through content encoder + MLP + decoder. The fast path is what `--precision
auto` resolves to on this device (printed per row), plus shared translations and fused Adam; on
CUDA also torch.compile. Peak memory is the steady state (after warm-up), measured on CUDA only.
Compare rows as ratios within one run: machines of one kind differ in absolute speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time

import torch

from munit_cli import config, models, runtime, updates

# What the `cpu` preset's loss.cycle_detach=auto decides for the random colour images timed here
# (losses.auto_cycle_detach): nothing detached, as in the tables recorded before it.
AUTO_ON_RANDOM_IMAGES = ""
REFERENCE_FLAGS = {
    "train": {"precision": "fp32", "channels_last": False, "compile": False, "share_translations": False,
              "fused_layer_norm": False},
    "optim": {"fused": False},
}
FAST_FLAGS = {
    "train": {"precision": "auto", "channels_last": True, "share_translations": True},
    "optim": {"fused": True},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_cfg(arch: str, path: str, device: torch.device, batch: int, size: int) -> config.Config:
    flags = REFERENCE_FLAGS if path == "reference" else FAST_FLAGS
    # torch.compile pays for its compile time on a GPU; on two CPU cores it takes longer than a
    # demo-sized run (docs/benchmarks.md).
    compile_ = path == "fast" and device.type == "cuda"
    overrides = {
        "train": {**flags["train"], "compile": compile_, "batch_size": batch, "ema_decay": 0.999, "ema_start": 0},
        "optim": dict(flags["optim"]),
        "data": {"load_size": size, "crop_size": size},
        "loss": {"cycle_detach": AUTO_ON_RANDOM_IMAGES},
    }
    return config.resolve(arch, overrides=overrides)


def timed(fn, device: torch.device, warmup: int, steps: int) -> float:
    for i in range(warmup):
        fn(i)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(steps):
        fn(warmup + i)
    sync(device)
    return (time.perf_counter() - start) / steps


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def bench_train(cfg: config.Config, device, warmup: int, steps: int) -> dict:
    trainer = updates.Trainer(cfg, device)
    batch, size = cfg.train.batch_size, cfg.data.crop_size
    x_a = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    x_b = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    seconds = timed(lambda i: trainer.step(x_a, x_b, i), device, warmup, steps)
    return {"ms_per_iter": seconds * 1e3, "pairs_per_s": batch / seconds, "peak_gib": peak_gib(device)}


def bench_translate(cfg: config.Config, device, warmup: int, steps: int) -> dict:
    precision, channels_last = runtime.resolve_precision(cfg.train.precision, cfg.train.channels_last, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    gen = models.MUNIT(cfg.model).to(device, memory_format=memory_format).eval()

    def translate(x, s):
        return gen.gen_b.decode(gen.gen_a.content_encoder(x), s)

    run = torch.compile(translate) if cfg.train.compile else translate
    batch, size = cfg.train.batch_size, cfg.data.crop_size
    x = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=memory_format)
    s = torch.randn(batch, cfg.model.style_dim, device=device)

    def step(_):
        with torch.inference_mode(), runtime.autocast(device, precision):
            run(x, s)

    seconds = timed(step, device, warmup, steps)
    return {"images_per_s": batch / seconds}


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model with its bf16 units (what decides the fast path there)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model, flags = platform.processor() or platform.machine(), set()
    if os.path.exists("/proc/cpuinfo"):
        text = open("/proc/cpuinfo").read()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = found.group(1) if found else model
        found = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        flags = set(found.group(1).split()) if found else flags
    units = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return f"CPU {model} ({', '.join(units) or 'no bf16 units'}), {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=None, help="image side (default 256 on CUDA, 64 on CPU)")
    parser.add_argument("--archs", nargs="+", default=["tiny", "cpu", "paper"], choices=["tiny", "cpu", "paper"],
                        help="network sizes: the tiny, cpu and paper presets'")  # fmt: skip
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--warmup", type=int, default=None, help="default 20 on CUDA (compilation), 2 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="default 50 on CUDA, 4 on CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = runtime.pick_device(args.device)
    cuda = device.type == "cuda"
    size = args.size or (256 if cuda else 64)
    warmup = args.warmup if args.warmup is not None else (20 if cuda else 2)
    steps = args.steps or (50 if cuda else 4)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # the reference path is true float32
        torch.backends.cudnn.allow_tf32 = False

    rows = []
    for arch in args.archs:
        for batch in args.batches:
            for path in ("reference", "fast"):
                cfg = make_cfg(arch, path, device, batch, size)
                precision, channels_last = runtime.resolve_precision(cfg.train.precision, cfg.train.channels_last, device)
                t = bench_train(cfg, device, warmup, steps)
                tr = bench_translate(cfg, device, warmup, steps * 4)
                rows.append({
                    "arch": arch, "path": path, "batch": batch, "precision": precision,
                    "layout": "NHWC" if channels_last else "NCHW", "compile": cfg.train.compile,
                    **t, "translate_images_per_s": tr["images_per_s"],
                })  # fmt: skip
                print(f"  {arch} {path} batch {batch}: {t['pairs_per_s']:.2f} pairs/s", file=sys.stderr, flush=True)

    name = device_name(device)
    print(f"\nspeed on {name}, {size}x{size}, torch {torch.__version__}")
    header = f"{'arch':<6} {'path':<10} {'batch':>5} {'precision':>9} {'layout':>6} {'ms/iter':>9} {'pairs/s':>8} {'train x':>8} {'translate img/s':>16} {'translate x':>12} {'peak GiB':>9}"
    print(header)
    base = {(r["arch"], r["batch"]): r for r in rows if r["path"] == "reference"}
    for r in rows:
        ref = base[(r["arch"], r["batch"])]
        r["train_speedup"] = r["pairs_per_s"] / ref["pairs_per_s"]
        r["translate_speedup"] = r["translate_images_per_s"] / ref["translate_images_per_s"]
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "n/a"
        print(
            f"{r['arch']:<6} {r['path']:<10} {r['batch']:>5} {r['precision']:>9} {r['layout']:>6} {r['ms_per_iter']:>9.1f} "
            f"{r['pairs_per_s']:>8.2f} {r['train_speedup']:>7.2f}x {r['translate_images_per_s']:>16.1f} "
            f"{r['translate_speedup']:>11.2f}x {peak:>9}"
        )
    result = {"device": name, "size": size, "torch": torch.__version__, "rows": rows}
    print(json.dumps(result))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
