"""Training and translation speed: the float32 reference path vs the fast path, in one run.

    python benchmarks/speed.py                      # on whatever device is present
    python benchmarks/speed.py --size 256 --json speed.json

Both paths train the `paper` architecture with its losses on random images (speed does not depend
on the pixels). Training throughput is image pairs per second (one image of each domain per batch
element, one discriminator and one generator update per iteration); translation throughput is
images per second through content encoder + MLP + decoder. Peak memory is the steady state (after
warm-up and autotuning), measured on CUDA only.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from munit_cli import config, models, runtime, train

# What the fast path switches on, per device: on CUDA everything in the `fast` preset; on the CPU
# only what measured faster there (bf16 and channels_last slow CPU convolutions down, and
# compilation costs minutes on two cores for no gain at these sizes).
FAST_FLAGS = {
    "cuda": {
        "train": {"precision": "bf16", "channels_last": True, "compile": True, "share_translations": True},
        "optim": {"fused": True},
    },
    "cpu": {"train": {"share_translations": True}, "optim": {"fused": True}},
}
REFERENCE_FLAGS = {
    "train": {"precision": "fp32", "channels_last": False, "compile": False, "share_translations": False},
    "optim": {"fused": False},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_cfg(path: str, device: torch.device, batch: int, size: int) -> config.Config:
    flags = REFERENCE_FLAGS if path == "reference" else FAST_FLAGS[device.type]
    overrides = {
        "train": {**flags["train"], "batch_size": batch, "ema_decay": 0.999, "ema_start": 0},
        "optim": dict(flags["optim"]),
        "data": {"load_size": size, "crop_size": size},
    }
    return config.resolve("paper", overrides=overrides)


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


def bench_train(path: str, device, batch: int, size: int, warmup: int, steps: int) -> dict:
    cfg = make_cfg(path, device, batch, size)
    trainer = train.Trainer(cfg, device)
    x_a = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    x_b = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    seconds = timed(lambda i: trainer.step(x_a, x_b, i), device, warmup, steps)
    return {"ms_per_iter": seconds * 1e3, "pairs_per_s": batch / seconds, "peak_gib": peak_gib(device)}


def bench_translate(path: str, device, batch: int, size: int, warmup: int, steps: int) -> dict:
    cfg = make_cfg(path, device, batch, size)
    gen = models.MUNIT(cfg.model).to(device).eval()
    fast = path == "fast" and device.type == "cuda"
    memory_format = torch.channels_last if fast else torch.contiguous_format
    gen.to(memory_format=memory_format)
    g = gen.gen_b

    def translate(x, s):
        return g.decode(gen.gen_a.content_encoder(x), s)

    run = torch.compile(translate) if fast else translate
    x = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=memory_format)
    s = torch.randn(batch, cfg.model.style_dim, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if fast else torch.autocast(device.type, enabled=False)

    def step(_):
        with torch.inference_mode(), autocast:
            run(x, s)

    seconds = timed(step, device, warmup, steps)
    return {"images_per_s": batch / seconds, "peak_gib": peak_gib(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=None, help="image side (default 256 on CUDA, 64 on CPU)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--warmup", type=int, default=None, help="default 20 on CUDA (compilation), 2 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="default 50 on CUDA, 5 on CPU")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    args = parser.parse_args()
    device = runtime.pick_device(args.device)
    cuda = device.type == "cuda"
    size = args.size or (256 if cuda else 64)
    warmup = args.warmup if args.warmup is not None else (20 if cuda else 2)
    steps = args.steps or (50 if cuda else 5)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # the reference path is true float32
        torch.backends.cudnn.allow_tf32 = False

    rows = []
    for batch in args.batches:
        for path in ("reference", "fast"):
            t = bench_train(path, device, batch, size, warmup, steps)
            tr = bench_translate(path, device, batch, size, warmup, steps * 4)
            rows.append({"path": path, "batch": batch, **t, "translate_images_per_s": tr["images_per_s"]})
            print(f"  {path} batch {batch}: {t['pairs_per_s']:.2f} pairs/s", file=sys.stderr, flush=True)

    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"\nspeed on {name}, paper architecture, {size}x{size}, torch {torch.__version__}")
    print(f"{'path':<10} {'batch':>5} {'ms/iter':>9} {'train pairs/s':>14} {'translate img/s':>16} {'peak GiB':>9} {'speed-up':>9}")
    base = {r["batch"]: r for r in rows if r["path"] == "reference"}
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "n/a"
        ratio = r["pairs_per_s"] / base[r["batch"]]["pairs_per_s"]
        print(
            f"{r['path']:<10} {r['batch']:>5} {r['ms_per_iter']:>9.1f} {r['pairs_per_s']:>14.2f} "
            f"{r['translate_images_per_s']:>16.1f} {peak:>9} {ratio:>8.2f}x"
        )
    result = {"device": name, "size": size, "torch": torch.__version__, "rows": rows}
    print(json.dumps(result))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
