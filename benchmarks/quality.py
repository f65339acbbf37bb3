"""Translation quality at a wall-clock budget, on any paired two-folder image set.

The set is a folder with one subfolder per domain (`--a`, `--b`) whose files share names where
they show the same thing (fluent64: `line/` and `flat/`; emoji64: `twemoji/` and `noto/`). The
shared names are ground truth for scoring only: training is unpaired. Held out, never trained on:
every file whose name (with its extension) has a sha1 starting with 0, 1 or 2.

Every trained row gets the same wall-clock minutes (`--minutes`), each as its own `munit train`
process with one torch thread, so two rows side by side (`--parallel 2`) share two cores fairly.
Rows, scored in both directions on the held-out split with the functions behind `munit evaluate`:

- doing nothing: the input itself as its translation;
- one row per `--row LABEL:PRESET[:SECTION.KEY=VALUE]...` (by default `paper:paper`, the authors'
  recipe with its networks, and `ours:cpu`, the recommended CPU setting); a row whose label is a default's replaces it, so an
  ablation is one flag: `--row no-ema:cpu:train.ema_decay=0`; `--skip paper` leaves a row out;
- per trained row, its decoder's floor (row `LABEL floor`): each real target image encoded and
  decoded with its own style, which no translation of that model can beat on KID or FID.

Columns: KID x 1000 (mean +- std over subsets), FID, diversity_l1, and the paired L1 / SSIM of
example-guided translations (content of the input, style encoded from its twin). Prints the table
(stderr), `--json` the results (stdout); writes OUT/quality.md, OUT/results.json and one sheet per
direction (OUT/sheet_a_to_b.png: per test input, the input, its twin and each row's translations
with several random styles). A trained row whose run in OUT matches its settings is reused.

    python benchmarks/quality.py --data ../shared/data/fluent64 --a line --b flat \\
        --minutes 15 --parallel 2 --out /tmp/munit-quality
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from munit_cli import checkpoint, config, evaluate, images, infer, metrics, runtime, styles
from munit_cli.console import err, progress
from munit_cli.errors import MunitError

TEST_PREFIXES = "012"
# Training runs until the benchmark stops it: the budget is time, not iterations.
UNBOUNDED_ITERS = 100_000_000
# `munit train --minutes` stops itself; a run still alive this long after its budget hangs
OVERRUN_S = 600
LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")
DEFAULT_ROWS = ("paper:paper", "ours:cpu")
SPLIT_FILE = "split.json"


def is_test(name: str) -> bool:
    return hashlib.sha1(name.encode()).hexdigest()[0] in TEST_PREFIXES


@dataclass
class Row:
    """One trained row: a label (its folder name), a preset and its `--set` overrides."""

    label: str
    preset: str
    overrides: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, spec: str) -> Row:
        label, _, rest = spec.partition(":")
        preset, *overrides = rest.split(":") if rest else [""]
        if not LABEL.match(label) or not preset:
            raise ValueError(
                f"--row {spec!r}: expected LABEL:PRESET[:SECTION.KEY=VALUE]... (label: letters, digits, _ . -)"
            )
        bad = [o for o in overrides if "=" not in o or "." not in o.partition("=")[0]]
        if bad:
            raise ValueError(f"--row {spec!r}: {bad[0]!r} is not SECTION.KEY=VALUE")
        return cls(label, preset, overrides)


def rows_from(specs: list[str], skip: list[str]) -> list[Row]:
    """The default rows, each replaced by a `--row` of the same label, then the other `--row`s;
    without the labels in `skip`."""
    rows = {r.label: r for r in map(Row.parse, DEFAULT_ROWS)}
    for spec in specs:
        row = Row.parse(spec)
        rows[row.label] = row
    unknown = [label for label in skip if label not in rows]
    if unknown:
        raise ValueError(f"--skip {unknown[0]}: no such row (rows: {', '.join(rows)})")
    chosen = [row for label, row in rows.items() if label not in skip]
    if not chosen:
        raise ValueError("--skip leaves no trained row")
    return chosen


# ---------------------------------------------------------------------------------------------
# The split


def split(
    data: Path,
    names: tuple[str, str],
    out: Path,
    train_limit: int | None,
    test_limit: int | None,
) -> dict:
    """OUT/data/{train,test}/{A,B}: copies of the set's files (copies, not links: training reads
    only regular files inside its folders). Limits take the first names in sha1 order, an
    arbitrary but fixed sample. Returns the folders and a digest of what each part holds."""
    folder = out / "data"
    if folder.exists():
        if not (folder / SPLIT_FILE).is_file():
            raise SystemExit(
                f"error: {folder} exists and is not a split this benchmark made; remove it or pick another --out"
            )
        shutil.rmtree(folder)
    listing = {part: {} for part in ("train", "test")}
    for name in names:
        found = [p.name for p in images.list_images(data / name, recursive=False)]
        files = sorted(found, key=lambda n: hashlib.sha1(n.encode()).hexdigest())
        listing["test"][name] = sorted(n for n in files if is_test(n))[:test_limit]
        listing["train"][name] = sorted(n for n in files if not is_test(n))[:train_limit]
    for part, domains in listing.items():
        for name, chosen in domains.items():
            (folder / part / name).mkdir(parents=True)
            for n in chosen:
                shutil.copyfile(data / name / n, folder / part / name / n)
    digest = hashlib.sha256(json.dumps({str(k): v for k, v in listing.items()}, sort_keys=True).encode()).hexdigest()
    (folder / SPLIT_FILE).write_text(json.dumps({"data": str(data.resolve()), "digest": digest, **listing}, indent=1))
    counts = {part: {n: len(v) for n, v in d.items()} for part, d in listing.items()}
    return {"folder": folder, "digest": digest, "counts": counts}


# ---------------------------------------------------------------------------------------------
# Training at a wall-clock budget


@dataclass
class Trained:
    row: Row
    generator: str
    steps: int
    seconds: float


def row_sets(row: Row, args) -> list[str]:
    """A row's `--set`s: the benchmark's settings first, then the row's own, so that a row may
    change them (`--row seed1:cpu:train.seed=1`): a flag would win over its `--set`."""
    settings = {
        "data.load_size": args.size,
        "data.crop_size": args.size,
        "train.seed": args.seed,
        "train.device": args.device,
        "train.iters": UNBOUNDED_ITERS,
    }
    return [f"{key}={value}" for key, value in settings.items()] + row.overrides


def check_rows(rows: list[Row], args) -> None:
    """Every row's config resolved before anything trains, so a typo stops the benchmark at once
    rather than after the other rows have started."""
    for row in rows:
        try:
            config.resolve(row.preset, overrides=config.parse_set(row_sets(row, args)))
        except MunitError as exc:
            raise ValueError(f"--row {row.label}: {exc}") from None


def train_command(row: Row, train: Path, names: tuple[str, str], run: Path, args) -> list[str]:
    """`munit train` for one row, for args.minutes of wall clock."""
    command = [sys.executable, "-m", "munit_cli", "train", str(train / names[0]), str(train / names[1])]
    command += ["--out", str(run), "--preset", row.preset, "--minutes", str(args.minutes)]
    for override in row_sets(row, args):
        command += ["--set", override]
    return command + (["--overwrite"] if run.exists() else [])


def train_rows(rows: list[Row], split_info: dict, names: tuple[str, str], args) -> list[Trained]:
    """Each row trained for args.minutes of wall clock (`munit train --minutes`: at the limit it
    saves and exits 0) in its own one-thread process, up to args.parallel at a time."""
    runs = args.out / "runs"
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    settings = {
        "minutes": args.minutes,
        "size": args.size,
        "seed": args.seed,
        "split": split_info["digest"],
    }
    done: dict[str, Trained] = {}
    pending = []
    for row in rows:
        record = runs / f"{row.label}.json"
        if record.is_file():
            saved = json.loads(record.read_text())
            if saved["settings"] == settings and saved["row"] == asdict(row) and Path(saved["generator"]).is_file():
                err.print(f"{row.label}: reusing {saved['generator']} ({saved['steps']} steps)")
                done[row.label] = Trained(row, saved["generator"], saved["steps"], saved["seconds"])
                continue
        record.unlink(missing_ok=True)
        pending.append(row)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    try:
        while pending or running:
            while pending and len(running) < args.parallel:
                row = pending.pop(0)
                command = train_command(row, split_info["folder"] / "train", names, runs / row.label, args)
                err.print(f"{row.label}: training for {args.minutes:g} min (log: {logs / row.label}.log)")
                with open(logs / f"{row.label}.log", "w") as log:
                    proc = subprocess.Popen(
                        command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                    )
                running[row.label] = (proc, time.monotonic())
            time.sleep(1)
            for label, (proc, start) in list(running.items()):
                elapsed = time.monotonic() - start
                if proc.poll() is None:
                    if elapsed >= args.minutes * 60 + OVERRUN_S:
                        proc.kill()  # reported as a failed row below
                    continue
                del running[label]
                row = next(r for r in rows if r.label == label)
                done[label] = finished(row, proc.returncode, runs, logs, elapsed, settings)
    finally:  # a failed row (or Ctrl-C) stops the others; SIGTERM lets them save first
        for proc, _ in running.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    return [done[r.label] for r in rows]


def finished(row: Row, returncode: int, runs: Path, logs: Path, seconds: float, settings: dict) -> Trained:
    generator = checkpoint.newest_generator(runs / row.label)
    if returncode != 0 or generator is None:
        tail = (logs / f"{row.label}.log").read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"error: training row {row.label} failed (exit {returncode}):\n" + "\n".join(tail))
    steps = checkpoint.load_generator(generator, "cpu").step
    trained = Trained(row, str(generator), steps, round(seconds, 1))
    record = {
        "row": asdict(row),
        "settings": settings,
        "generator": str(generator),
        "steps": steps,
        "seconds": trained.seconds,
    }
    (runs / f"{row.label}.json").write_text(json.dumps(record, indent=1))
    err.print(f"{row.label}: {steps} steps in {seconds / 60:.1f} min")
    return trained


# ---------------------------------------------------------------------------------------------
# Scoring


DIRECTIONS = {f"{s}_to_{t}": (s, t) for s, t in evaluate.DIRECTIONS}


def kid_fid(real: torch.Tensor, fake: torch.Tensor, seed: int) -> dict:
    kid_mean, kid_std = metrics.kid(real, fake, seed=seed)
    return {"kid_mean": kid_mean, "kid_std": kid_std, "fid": metrics.fid(real, fake)}


def doing_nothing(sets: dict, real: dict, seed: int) -> dict:
    """The input itself as its translation: no diversity, and the paired scores of input vs twin."""
    out = {}
    for key, (s, t) in DIRECTIONS.items():
        pairs = evaluate.twin_index(sets[s], sets[t])
        x = sets[s].pixels[[i for i, _ in pairs]]
        y = sets[t].pixels[[j for _, j in pairs]]
        out[key] = {
            **kid_fid(real[t], real[s], seed),
            metrics.DIVERSITY_L1: 0.0,
            "paired": evaluate.paired_scores(x, y).to_json(),
            "colour_on_white": metrics.colour_on_white(x, y),
        }
    return out


@torch.no_grad()
def reconstructions(tr: infer.Translator, target: evaluate.DomainImages) -> torch.Tensor:
    """Each target image encoded and decoded by its own domain's generator, with its own style."""
    gen = tr.loaded.model.generator(tr.target)
    with runtime.autocast(tr.device, tr.precision):  # as the translations run
        return torch.stack(
            [evaluate.quantised(gen.decode(*gen.encode(tr.to_input(img))).float()) for img in target.images]
        )


def sheet_outputs(
    tr: infer.Translator, source: evaluate.DomainImages, chosen: list[int], args
) -> list[list[torch.Tensor]]:
    """Per chosen input, its translations with the first `--sheet-styles` of the styles scored
    (style k of input i is seed:SEED:(i * num_styles + k), as in `munit evaluate`)."""
    out = []
    for i in chosen:
        prior = tr.loaded.priors.get(tr.target)
        codes = torch.stack(
            [styles.sample_style(args.seed, i * args.num_styles + k, tr.style_dim, prior=prior) for k in range(args.sheet_styles)]
        )
        out.append([evaluate.quantised(x) for x in tr.translate_batch(tr.to_input(source.images[i]), codes)])
    return out


@torch.no_grad()
def fitted_prior(tr: infer.Translator, folder: Path) -> styles.Prior:
    """A Gaussian fitted to the styles the target domain's style encoder gives all its training
    images, for a model trained without one (model.style_prior "normal")."""
    cfg = tr.loaded.cfg
    codes = [tr.encode_style(evaluate.prepare(tr.read_image(path, whole=True), cfg)) for path in images.list_images(folder)]
    return styles.fit_prior(torch.stack(codes))


@dataclass
class Scored:
    """One trained model's scores per direction, its decoder floor, the test sets it read (with
    their features), its sheet translations per direction and, with --fitted-prior, its scores
    with styles from a prior fitted to the encoded training styles."""

    directions: dict
    floor: dict
    sets: dict
    real: dict
    sheet: dict
    fitted: dict | None = None


def score_row(trained: Trained, net, device: torch.device, args) -> Scored:
    loaded = checkpoint.load_generator(Path(trained.generator), device, use_ema=True)
    trs = {t: infer.Translator.of(loaded, t, device, precision=args.precision) for t in "ab"}
    skipped: list[str] = []
    test = args.out / "data" / "test"
    sets = {d: evaluate.load_images(test / loaded.names["ab".index(d)], trs[d], skipped) for d in "ab"}
    n = sum(len(s.keys) for s in sets.values())
    pairs = len(evaluate.twin_index(sets["a"], sets["b"]))
    scores, floor, tiles, fitted = {}, {}, {}, {}
    with progress(f"score {trained.row.label}", (6 if args.fitted_prior else 4) * n + 2 * pairs) as bar:
        cache = args.cache or True
        real = {
            d: metrics.features(sets[d].pixels, net, device, args.batch_size, bar, args.precision, cache) for d in "ab"
        }
        for key, (s, t) in DIRECTIONS.items():

            def direction(prior=None) -> dict:
                return evaluate.evaluate_direction(
                    trs[t],
                    sets[s],
                    sets[t],
                    real[t],
                    num_styles=args.num_styles,
                    seed=args.seed,
                    lpips=None,
                    net=net,
                    batch_size=args.batch_size,
                    kid_subsets=metrics.KID_SUBSETS,
                    bar=bar,
                    precision=args.precision,
                    prior=prior,
                ).to_json()

            scores[key] = direction()
            if args.fitted_prior:
                fitted[key] = direction(fitted_prior(trs[t], args.out / "data" / "train" / loaded.names["ab".index(t)]))
            own = metrics.features(
                reconstructions(trs[t], sets[t]),
                net,
                device,
                args.batch_size,
                bar,
                args.precision,
            )
            floor[key] = kid_fid(real[t], own, args.seed)
            tiles[key] = sheet_outputs(
                trs[t],
                sets[s],
                [i for i, _ in evaluate.twin_index(sets[s], sets[t])][: args.sheet_inputs],
                args,
            )
    return Scored(scores, floor, sets, real, tiles, fitted or None)


def sheet(path: Path, sets: dict, key: str, outputs: dict[str, list], args) -> None:
    """Columns: input, its twin (ground truth), then each row's translations; one line per input."""
    s, t = DIRECTIONS[key]
    chosen = evaluate.twin_index(sets[s], sets[t])[: args.sheet_inputs]
    side, pad, header = sets[s].pixels.shape[-1], 4, 14
    groups = [("input", 1), ("twin", 1)] + [(label, args.sheet_styles) for label in outputs]
    width = sum(n * (side + pad) + pad for _, n in groups)
    canvas = Image.new("RGB", (width, header + len(chosen) * (side + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for g, (label, n) in enumerate(groups):
        draw.text((x + pad, 1), label, fill="black")
        for line, (i, j) in enumerate(chosen):
            if g == 0:
                tiles = [sets[s].pixels[i]]
            elif g == 1:
                tiles = [sets[t].pixels[j]]
            else:
                tiles = outputs[label][line]
            for k, tile in enumerate(tiles):
                canvas.paste(
                    images.tensor_to_image(tile).convert("RGB"),
                    (x + pad + k * (side + pad), header + pad + line * (side + pad)),
                )
        x += n * (side + pad) + pad
    images.save_png(canvas, path)


# ---------------------------------------------------------------------------------------------
# Report


COLUMNS = ("steps", "KID x 1000", "FID", "diversity_l1", "paired L1", "paired SSIM", "colour on white")
SHORT_COLUMNS = ("steps", "KID x 1000", "FID", "div.", "L1", "SSIM", "on white")


def cells(entry: dict, key: str) -> list[str]:
    d = entry["directions"][key]
    paired = d.get("paired")
    diversity, on_white = d.get(metrics.DIVERSITY_L1), d.get("colour_on_white")
    return [
        "-" if entry.get("steps") is None else str(entry["steps"]),
        f"{d['kid_mean'] * 1000:.1f} ± {d['kid_std'] * 1000:.1f}",
        f"{d['fid']:.1f}",
        "-" if diversity is None else f"{diversity:.3f}",
        "-" if not paired else f"{paired['l1']:.3f}",
        "-" if not paired else f"{paired['ssim']:.3f}",
        "-" if on_white is None else f"{on_white:.3f}",
    ]


def direction_title(result: dict, key: str) -> str:
    s, t = DIRECTIONS[key]
    return f"{s.upper()} ({result['names'][s]}) -> {t.upper()} ({result['names'][t]})"


def markdown(result: dict) -> str:
    budget = f"{result['minutes']:g} minutes per trained row, {result['size']} px, seed {result['seed']}"
    lines = [
        f"{budget}; {result['test_images']['a']} + {result['test_images']['b']} held-out test images (A + B); {result['machine']}",
        "",
    ]
    for key in DIRECTIONS:
        lines += [
            f"**{direction_title(result, key)}**",
            "",
            "| row | " + " | ".join(COLUMNS) + " |",
            "|---" * (len(COLUMNS) + 1) + "|",
        ]
        lines += [f"| {entry['label']} | " + " | ".join(cells(entry, key)) + " |" for entry in result["rows"]]
        lines.append("")
    return "\n".join(lines)


def print_tables(result: dict) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    for key in DIRECTIONS:
        caption = (
            "div. = diversity_l1; L1, SSIM = paired (example-guided); on white = of the twin's white"
            " pixels, the fraction the random-style translations colour (lower is better)"
        )
        table = Table(title=Text(direction_title(result, key)), caption=caption, box=box.SIMPLE_HEAD)
        table.add_column("row", no_wrap=True)
        for column in SHORT_COLUMNS:  # the full names do not fit 80 columns (a log file)
            table.add_column(column, justify="right", no_wrap=True)
        for entry in result["rows"]:
            table.add_row(Text(entry["label"]), *cells(entry, key))
        err.print(table)


# ---------------------------------------------------------------------------------------------


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding the two domain folders")
    parser.add_argument("--a", required=True, help="domain A's folder name in --data (fluent64: line)")
    parser.add_argument("--b", required=True, help="domain B's folder name in --data (fluent64: flat)")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for the split, the runs and the report",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=15.0,
        help="wall-clock training budget per trained row",
    )
    parser.add_argument(
        "--row",
        action="append",
        default=[],
        metavar="LABEL:PRESET[:SECTION.KEY=VALUE]...",
        help=f"a trained row (repeatable); defaults: {', '.join(DEFAULT_ROWS)}",
    )
    parser.add_argument("--skip", action="append", default=[], metavar="LABEL", help="leave out a row (e.g. paper)")
    parser.add_argument(
        "--parallel",
        type=int,
        default=2,
        help="trained rows run side by side, one thread each",
    )
    parser.add_argument("--size", type=int, default=64, help="training and scoring size in px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (training and scoring)")
    parser.add_argument("--num-styles", type=int, default=10, help="random styles per test input")
    parser.add_argument("--sheet-inputs", type=int, default=6)
    parser.add_argument("--sheet-styles", type=int, default=4)
    parser.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="at most this many training images per domain",
    )
    parser.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="at most this many test images per domain",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=metrics.INCEPTION_BATCH,
        help="Inception batch",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=runtime.PRECISIONS,
        help="translations and the Inception network: auto (bf16 where the hardware has bf16 units), fp32 or bf16",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="feature cache folder (default: $MUNIT_CACHE/features or ~/.cache/munit/features)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for scoring (default: torch's choice)",
    )
    parser.add_argument(
        "--fitted-prior",
        action="store_true",
        help="also score each trained row with random styles from a Gaussian fitted to its encoded training styles",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: not a folder (fluent64 is at ../shared/data/fluent64 beside the repository)")
    for flag, name in (("--a", args.a), ("--b", args.b)):
        if not (args.data / name).is_dir():
            found = sorted(p.name for p in args.data.iterdir() if p.is_dir())
            parser.error(f"{flag} {name}: no folder {args.data / name} (folders there: {', '.join(found) or 'none'})")
    if args.a == args.b:
        parser.error("--a and --b name the same folder")
    if args.minutes <= 0 or args.parallel < 1 or args.num_styles < 2 or min(args.sheet_inputs, args.sheet_styles) < 1:
        parser.error("--minutes must be positive, --parallel and the sheet sizes at least 1, --num-styles at least 2")
    if args.sheet_styles > args.num_styles:
        parser.error("--sheet-styles cannot exceed --num-styles (the sheet shows scored styles)")
    try:
        args.rows = rows_from(args.row, args.skip)
        check_rows(args.rows, args)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = (args.a, args.b)
    split_info = split(args.data, names, args.out, args.train_limit, args.test_limit)
    err.print(f"split: {split_info['counts']}")
    device = runtime.pick_device(args.device)
    net = metrics.load_inception(str(device))  # before training: a missing [eval] extra should cost nothing
    trained = train_rows(args.rows, split_info, names, args)
    t0 = time.perf_counter()
    entries, sheets = [], {key: {} for key in DIRECTIONS}
    for run in trained:
        scored = score_row(run, net, device, args)
        if not entries:
            entries.append(
                {
                    "label": "doing nothing",
                    "directions": doing_nothing(scored.sets, scored.real, args.seed),
                }
            )
            test_sets = scored.sets
        info = {
            "preset": run.row.preset,
            "set": run.row.overrides,
            "steps": run.steps,
            "train_seconds": run.seconds,
        }
        entries.append(
            {
                "label": run.row.label,
                **info,
                "generator": run.generator,
                "directions": scored.directions,
            }
        )
        if scored.fitted:
            entries.append({"label": f"{run.row.label} fitted prior", "directions": scored.fitted})
        entries.append({"label": f"{run.row.label} floor", "directions": scored.floor})
        for key in DIRECTIONS:
            sheets[key][run.row.label] = scored.sheet[key]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, 1 torch thread per training run, {device}"
    result = {
        "data": str(args.data),
        "names": {"a": args.a, "b": args.b},
        "minutes": args.minutes,
        "size": args.size,
        "seed": args.seed,
        "num_styles": args.num_styles,
        "split": split_info["counts"],
        "test_images": {d: len(s.keys) for d, s in test_sets.items()},
        "inception_precision": metrics.inception_precision(device, args.precision),
        "machine": machine,
        "scoring_seconds": round(time.perf_counter() - t0, 1),
        "rows": entries,
    }
    for key in DIRECTIONS:
        sheet(args.out / f"sheet_{key}.png", test_sets, key, sheets[key], args)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    (args.out / "quality.md").write_text(markdown(result))
    print_tables(result)
    err.print(f"wrote {args.out / 'quality.md'}, {args.out / 'results.json'} and the sheets {args.out}/sheet_*.png")
    if args.json:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
