"""Quality benchmark on real data: emoji64, Twemoji (domain A) <-> Noto Color Emoji (domain B).

Trains for a fixed number of iterations (by default the `tiny` preset at 64 px on a CPU), then
scores the held-out test split (codepoints whose sha1 starts with 0, 1 or 2; never trained on) with the same
functions `munit evaluate` uses, in one table:

- real test A vs real test B: what doing nothing scores on KID and FID;
- identity translation (output = input): the same KID and FID by construction, no diversity, and
  the paired L1 / PSNR / SSIM of an input against its twin, which example-guided translation must beat;
- ours after the budget, with the EMA weights and with the raw weights (EMA's effect);
- ours reconstructing the target domain's own test images (encode, decode with the image's own
  style): the floor the decoder's image quality sets for any translation's KID and FID.

The RGBA images are composited on white when read (`images.open_image`), as a user's transparent
PNGs are. Writes OUT/results.json and prints the table as Markdown for docs/benchmarks.md:

    .venv/bin/python benchmarks/quality_emoji.py --out /tmp/munit-quality-emoji --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from munit_cli import checkpoint, config, evaluate, infer, metrics, runtime, train
from munit_cli.console import err, progress

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "emoji64"
NAMES = ("twemoji", "noto")
TEST_PREFIXES = "012"


def is_test(stem: str) -> bool:
    return hashlib.sha1(stem.encode()).hexdigest()[0] in TEST_PREFIXES


def split(data: Path, out: Path) -> dict[str, Path]:
    """OUT/data/{train,test}{A,B} as symlinks to the emoji files, so nothing is copied."""
    if out.exists():
        shutil.rmtree(out)
    folders = {}
    for letter, name in zip("AB", NAMES):
        for part in ("train", "test"):
            folders[f"{part}{letter}"] = out / f"{part}{letter}"
            folders[f"{part}{letter}"].mkdir(parents=True)
        for path in sorted((data / name).glob("*.png")):
            part = "test" if is_test(path.stem) else "train"
            (folders[f"{part}{letter}"] / path.name).symlink_to(path.resolve())
    return folders


def train_model(folders: dict[str, Path], run: Path, cfg: config.Config) -> tuple[Path, float]:
    """The generator after cfg.train.iters steps; an existing final checkpoint in `run` is reused."""
    final = checkpoint.checkpoint_paths(run, cfg.train.iters)[0]
    if final.is_file():
        err.print(f"reusing {final} (delete {run} to train again)")
        return final, float(json.loads((run / "bench_train.json").read_text())["seconds"])
    t0 = time.perf_counter()
    summary = train.run(cfg, [folders["trainA"], folders["trainB"]], run, names=NAMES, overwrite=True)
    seconds = time.perf_counter() - t0
    (run / "bench_train.json").write_text(json.dumps({"seconds": seconds}))
    return Path(summary["generator"]), seconds


@torch.no_grad()
def reconstructions(loaded: checkpoint.LoadedGenerator, domain: str, test: evaluate.DomainImages, device):
    """Each image encoded and decoded by its own domain's generator, with its own style."""
    gen = loaded.model.generator(domain)
    tr = infer.Translator(loaded, domain, device)
    return torch.stack([evaluate.quantised(gen.decode(*gen.encode(tr.to_input(img)))) for img in test.images])


def score(model: Path, folders: dict[str, Path], num_styles: int, seed: int, batch_size: int, device) -> dict:
    net = metrics.load_inception(str(device))
    rows: dict[str, dict] = {"nothing": {}, "identity": {}, "ema": {}, "raw": {}, "recon": {}}
    loaded = {w: checkpoint.load_generator(model, device, use_ema=(w == "ema")) for w in ("ema", "raw")}
    skipped: list[str] = []
    reader = infer.Translator(loaded["ema"], "a", device)
    sets = {d: evaluate.load_images(folders[f"test{d.upper()}"], reader, skipped) for d in "ab"}
    n = sum(len(s.keys) for s in sets.values())
    pairs = len(set(sets["a"].keys) & set(sets["b"].keys))
    with progress("score", 2 * n + 2 * (2 * n + 2 * pairs)) as bar:
        real = {d: evaluate.features(sets[d].pixels, net, device, batch_size, bar) for d in "ab"}
        for source, target in evaluate.DIRECTIONS:
            key = f"{source}_to_{target}"
            kid_mean, kid_std = metrics.kid(real[target], real[source], seed=seed)
            nothing = {"kid_mean": kid_mean, "kid_std": kid_std, "fid": metrics.fid(real[target], real[source])}
            rows["nothing"][key] = nothing
            twins = {k: j for j, k in enumerate(sets[target].keys)}
            index = [(i, twins[k]) for i, k in enumerate(sets[source].keys) if k in twins]
            x = sets[source].pixels[[i for i, _ in index]]
            y = sets[target].pixels[[j for _, j in index]]
            rows["identity"][key] = {**nothing, metrics.DIVERSITY_L1: 0.0, "paired": evaluate.paired_scores(x, y).to_json()}
            for weights in ("ema", "raw"):
                rows[weights][key] = evaluate.evaluate_direction(
                    infer.Translator(loaded[weights], target, device),
                    sets[source],
                    sets[target],
                    real[target],
                    num_styles=num_styles,
                    seed=seed,
                    lpips=None,
                    net=net,
                    batch_size=batch_size,
                    kid_subsets=metrics.KID_SUBSETS,
                    bar=bar,
                ).to_json()
            recon = reconstructions(loaded["ema"], target, sets[target], device)
            own = evaluate.features(recon, net, device, batch_size, bar)
            kid_mean, kid_std = metrics.kid(real[target], own, seed=seed)
            rows["recon"][key] = {"kid_mean": kid_mean, "kid_std": kid_std, "fid": metrics.fid(real[target], own)}
    return {"rows": rows, "test_images": {d: len(sets[d].keys) for d in "ab"}, "pairs": pairs, "skipped": skipped}


LABELS = {
    "nothing": "real test A vs real test B (doing nothing)",
    "identity": "identity translation (output = input)",
    "ema": "ours, EMA weights",
    "raw": "ours, raw weights (no EMA)",
    "recon": "ours (EMA) reconstructing real test B / A: the decoder's floor",
}


def markdown(rows: dict[str, dict]) -> str:
    """One table; each cell gives A->B / B->A."""

    def both(row: dict, fmt: str, get) -> str:
        values = [get(row[k]) if k in row else None for k in ("a_to_b", "b_to_a")]
        return " / ".join("-" if v is None else format(v, fmt) for v in values)

    def paired(name: str):
        return lambda d: d["paired"][name] if d.get("paired") else None

    lines = [
        "| | KID x 1000 (± std) | FID | diversity_l1 (not LPIPS) | paired L1 | paired PSNR (dB) | paired SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        kid = " / ".join(
            f"{row[k]['kid_mean'] * 1000:.1f} ± {row[k]['kid_std'] * 1000:.1f}" for k in ("a_to_b", "b_to_a")
        )
        cells = [
            kid,
            both(row, ".1f", lambda d: d["fid"]),
            both(row, ".3f", lambda d: d.get(metrics.DIVERSITY_L1)),
            both(row, ".3f", paired("l1")),
            both(row, ".2f", paired("psnr")),
            both(row, ".3f", paired("ssim")),
        ]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="emoji64 folder (twemoji/ and noto/)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/munit-quality-emoji"))
    parser.add_argument("--preset", default="tiny", help="training preset (the images stay 64 px)")
    parser.add_argument("--iters", type=int, default=3000, help="training budget in iterations")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--num-styles", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32, help="Inception batch")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override, as `munit train --set`")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides = {
        "data": {"load_size": 64, "crop_size": 64},
        "train": {"iters": args.iters, "seed": args.seed, "device": args.device},
    }
    for section, values in config.parse_set(args.set).items():
        overrides.setdefault(section, {}).update(values)
    cfg = config.resolve(args.preset, overrides=overrides)
    device = runtime.pick_device(args.device)
    folders = split(args.data, args.out / "data")
    model, train_seconds = train_model(folders, args.out / "run", cfg)
    t0 = time.perf_counter()
    scores = score(model, folders, args.num_styles, args.seed, args.batch_size, device)
    budget = {"preset": args.preset, "set": args.set, "iters": args.iters, "batch_size": cfg.train.batch_size, "image_size": 64}
    result = {
        "budget": {**budget, "train_seconds": round(train_seconds, 1)},
        "eval_seconds": round(time.perf_counter() - t0, 1),
        "num_styles": args.num_styles,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, {device}",
        "model": str(model),
        **scores,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    print(markdown(scores["rows"]))
    print(
        f"\nbudget: {args.preset} preset, {args.iters} iterations at 64 px, batch {cfg.train.batch_size}, {device}; "
        f"training {train_seconds / 60:.1f} min, "
        f"scoring {result['eval_seconds'] / 60:.1f} min; {scores['test_images']['a']} + "
        f"{scores['test_images']['b']} test images, {args.num_styles} styles per input"
    )


if __name__ == "__main__":
    main()
