"""The `munit` command: parses and validates, then calls a plain library function.

Here: the app, train, prepare, demo, translate and interpolate; `cli_model` holds export, evaluate
and report, `cli_style` the style group, `cli_common` what they share (`report_errors`, the one
place a `MunitError` becomes a message and an exit code). Torch is imported inside the commands,
so `munit --help` and `munit --version` answer instantly.

Exit codes: 0 success, 1 failure, 2 bad usage, 3 partial failure (some inputs failed),
130 / 143 stopped by SIGINT / SIGTERM after saving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from munit_cli import __version__, cli_model, cli_style
from munit_cli.cli_common import (
    BatchOpt,
    DeviceOpt,
    EmaOpt,
    ModelOpt,
    OverwriteOpt,
    PrecisionOpt,
    SizeOpt,
    TileOpt,
    ToOpt,
    TruncationOpt,
    emit_json,
    report_errors,
)
from munit_cli.errors import UsageError

app = typer.Typer(
    name="munit",
    help="MUNIT multimodal image-to-image translation: prepare, train, translate, interpolate, export.\n\n"
    "Start with [bold]munit demo[/bold] (trains on built-in synthetic data in minutes on a CPU).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"munit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", help="Show the version and exit.", callback=_version, is_eager=True),
) -> None:
    pass


def config_from_flags(
    preset: str | None,
    config_file: Path | None,
    sets: list[str] | None,
    flags: dict[str, dict[str, Any]],
    out: Path,
    resume: str | None,
) -> Any:
    """defaults < preset (resuming: the run's config.toml) < config file < --set < dedicated flags
    (those given: {section: {key: value or None}})."""
    from munit_cli import config, train

    overrides = config.parse_set(sets or [])
    for section, values in flags.items():
        for key, value in values.items():
            if value is not None:
                overrides.setdefault(section, {})[key] = value
    return train.resolve_config(out, resume, preset, config_file, overrides)


def parse_names(names: str | None) -> tuple[str, str] | None:
    if names is None:
        return None
    parts = [p.strip() for p in names.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise UsageError(f"--names expects two different names like 'photo,painting', got {names!r}")
    return parts[0], parts[1]


# ---------------------------------------------------------------------------------------------
# train


PresetOpt = typer.Option(None, "--preset", "-p", help="Named preset: paper (the reference recipe), fast (GPU throughput), cpu (real data at 64 px on a CPU, and the demo), tiny (tests).")
ConfigOpt = typer.Option(None, "--config", "-c", help="TOML config file (\\[model], \\[loss], \\[optim], \\[data], \\[train] tables).")
SetOpt = typer.Option(None, "--set", help="Override any config key: --set model.dim=32 (repeatable).")


@app.command(
    epilog="Examples:\n\n"
    "  munit train ./trainA ./trainB                  (into runs/trainA2trainB)\n\n"
    "  munit train ./trainA ./trainB --out runs/shoes\n\n"
    "  munit train data/ --preset tiny --iters 2000 --out runs/try\n\n"
    "  munit train ./trainA ./trainB --out runs/shoes --resume auto\n\n"
    "  munit train ./trainA ./trainB --out runs/shoes --minutes 60",
)
@report_errors
def train(
    data: List[Path] = typer.Argument(..., help="Two image folders (domain A, domain B), or one prepared dataset folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder for checkpoints, samples and logs. Default: runs/A2B (the domain names), runs/A2B-2, ... when that exists; with --resume or --overwrite, the newest of those."),
    preset: Optional[str] = PresetOpt,
    config_file: Optional[Path] = ConfigOpt,
    sets: Optional[List[str]] = SetOpt,
    iters: Optional[int] = typer.Option(None, help="Training iterations."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Train for at most this many minutes: then save, say so and exit 0 (continue with --resume auto)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Images per domain per iteration (per GPU)."),
    size: Optional[int] = typer.Option(None, help="Training crop size in pixels (shorter side is resized to it)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (data order, styles, initialisation)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 where the GPU or CPU has fast bf16, else fp32), fp32 (reference) or bf16 (autocast)."),
    names: Optional[str] = typer.Option(None, help="Domain names 'A,B' (default: the folder names)."),
    resume: Optional[str] = typer.Option(None, help="'auto' (newest good checkpoint in --out) or a state .safetensors file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an existing run folder: removes only what munit wrote there (checkpoints, samples, logs, ...); any other folder is refused."),
    gpus: int = typer.Option(1, "--gpus", help="Local worker processes (DistributedDataParallel via torchrun); with --device cpu, CPU workers."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log losses and sample grids to RUN/tensorboard (needs the \\[tensorboard] extra); the same as --set train.tensorboard=true."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Train MUNIT on two unpaired image folders.  [dim]munit train ./A ./B[/dim]"""
    from munit_cli import runs
    from munit_cli import train as train_mod

    out = out or runs.default_run_folder(data, parse_names(names), reuse=resume is not None or overwrite)
    flags = {
        "train": {
            "iters": iters, "batch_size": batch_size, "seed": seed, "device": device, "precision": precision,
            "tensorboard": True if tensorboard else None,
        },
        "data": {"crop_size": size, "load_size": size},
    }  # fmt: skip
    cfg = config_from_flags(preset, config_file, sets, flags, out, resume)
    if gpus > 1:
        _launch_workers(gpus, cfg, data, out, names, resume, overwrite, json_out, minutes)
        return
    result = train_mod.run(cfg, data, out, names=parse_names(names), resume=resume, overwrite=overwrite, minutes=minutes)
    if result is not None:  # the other ranks of a distributed run leave the summary to rank 0
        _print_summary(result, json_out)


def _launch_workers(gpus, cfg, data, out, names, resume, overwrite, json_out, minutes) -> None:
    """Hand the resolved config to `gpus` torchrun workers (each runs `munit train` itself)."""
    import tempfile

    from munit_cli import dist

    with tempfile.TemporaryDirectory(prefix="munit-") as tmp:
        resolved = Path(tmp) / "config.toml"
        resolved.write_text(cfg.to_toml())
        args = [*map(str, data), "--out", str(out), "--config", str(resolved)]
        args += ["--names", names] if names else []
        args += ["--resume", resume] if resume else []
        args += ["--overwrite"] if overwrite else []
        args += ["--json"] if json_out else []
        args += ["--minutes", str(minutes)] if minutes is not None else []
        dist.launch(gpus, args, cpu=cfg.train.device == "cpu")


def _print_summary(result: Any, json_out: bool) -> None:
    from munit_cli.console import err
    from munit_cli.files import display_path

    if json_out:
        emit_json(result.to_json())
        return
    if result.out_of_time:
        err.print(f"time budget reached: stopped and saved at step {result.step} (continue with --resume auto)")
    else:
        err.print(f"done: step {result.step} in {result.seconds} s")
    err.print(f"  run:       {display_path(result.run)}")
    err.print(f"  model:     {display_path(result.generator)}")
    err.print(f"  samples:   {display_path(result.samples)}")
    err.print(f"  report:    {display_path(result.report)}")


# ---------------------------------------------------------------------------------------------
# prepare


@app.command(
    epilog="Examples:\n\n"
    "  munit prepare ~/photos ~/paintings --out data/art --size 256 --pack\n\n"
    "  munit prepare edges2shoes/train --split-paired --out data/shoes\n\n"
    "  munit prepare --synthetic shapes --out data/shapes",
)
@report_errors
def prepare(
    src_a: Optional[Path] = typer.Argument(None, help="Domain A source folder (or side-by-side pairs with --split-paired)."),
    src_b: Optional[Path] = typer.Argument(None, help="Domain B source folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (trainA, trainB, testA, testB, manifest.json)."),
    size: Optional[int] = typer.Option(None, help="Shorter side after resizing (default 256, 64 with --synthetic); 0 keeps the size."),
    center_crop: bool = typer.Option(False, "--center-crop", help="Crop the centre square after resizing."),
    min_size: int = typer.Option(0, "--min-size", help="Skip images whose shorter side is smaller."),
    fmt: str = typer.Option("png", "--format", help="Output format: png or jpg."),
    quality: int = typer.Option(95, help="JPEG quality (1-100)."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="Share held out for test, chosen by content hash (default 0.1)."),
    test_count: Optional[int] = typer.Option(None, "--test-count", help="Exact test images per domain (instead of --test-fraction)."),
    split_paired: bool = typer.Option(False, "--split-paired", help="SRC_A holds side-by-side A|B images; give no SRC_B."),
    background: str = typer.Option("white", help="Colour behind transparent pixels (name or #rrggbb)."),
    channels: int = typer.Option(3, help="1 (grayscale) or 3 (RGB) output."),
    pack: bool = typer.Option(False, "--pack", help="Also write uint8 shards that munit train reads memory-mapped."),
    workers: Optional[int] = typer.Option(None, help="Decoding processes (default: all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let a rerun remove prepared images whose sources are gone or changed, rebuild after changed options, or write into a non-empty folder. Only what munit prepare wrote is ever removed."),
    synthetic: Optional[str] = typer.Option(None, "--synthetic", help="Make built-in data instead of reading folders: shapes."),
    synthetic_count: int = typer.Option(400, "--synthetic-count", help="Training images per domain with --synthetic."),
    seed: int = typer.Option(0, help="Seed for --synthetic."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Turn messy image folders into a clean dataset.  [dim]munit prepare ./A ./B --out data[/dim]"""
    from munit_cli import prepare as prepare_mod

    summary = prepare_mod.run(
        src_a, src_b, out, size=size, center_crop=center_crop, min_size=min_size, fmt=fmt, quality=quality,
        test_fraction=test_fraction, test_count=test_count, split_paired=split_paired, background=background,
        channels=channels, pack=pack, workers=workers, overwrite=overwrite, synthetic_kind=synthetic,
        synthetic_count=synthetic_count, seed=seed,
    )  # fmt: skip
    if json_out:
        emit_json(summary.to_json())
    else:
        _print_prepare_table(summary)


def _print_prepare_table(summary: "Any") -> None:
    from rich.table import Table

    from munit_cli.console import err

    table = Table(title=f"prepared {summary.to_json()['out']}")
    for column in ("domain", "found", "train", "test", "skipped"):
        table.add_column(column, justify="left" if column in ("domain", "skipped") else "right")
    for domain, row in summary.domains.items():
        skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(row.skipped.items())) or "-"
        table.add_row(domain, str(row.found), str(row.train), str(row.test), skipped)
    err.print(table)
    err.print(f"decoded {summary.decoded}, reused {summary.reused}; manifest: {summary.to_json()['manifest']}")
    if summary.rebuilt:
        err.print(f"rebuilt (--overwrite), because: {'; '.join(summary.rebuilt_because)}")
    if summary.removed:
        listed = ", ".join(summary.removed_sources[:5]) + (" ..." if len(summary.removed_sources) > 5 else "")
        gone = f": sources gone or changed: {listed}" if listed else ""
        err.print(f"removed {summary.removed} prepared image(s) (--overwrite){gone}")


# ---------------------------------------------------------------------------------------------
# demo


@app.command(epilog="Examples:\n\n  munit demo\n\n  munit demo --out /tmp/demo --iters 500")
@report_errors
def demo(
    out: Path = typer.Option(Path("munit-demo"), "--out", "-o", help="Folder for the demo data, run and results."),
    iters: Optional[int] = typer.Option(None, help="Training iterations (default: 2000)."),
    seed: int = typer.Option(0, help="Seed for the data and the training."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what an earlier demo wrote in --out (only a folder munit demo made)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result paths as JSON on stdout."),
) -> None:
    """Make synthetic data, train the cpu preset and show results.  [dim]munit demo[/dim]"""
    from munit_cli import demo as demo_mod

    result = demo_mod.run(out, iters=iters, seed=seed, overwrite=overwrite)
    if json_out:
        emit_json(result.to_json())
    else:
        from munit_cli.console import err

        err.print("[bold green]demo finished[/]", markup=True)
        for key, value in result.to_json().items():
            err.print(f"  {key}: {value}")


# ---------------------------------------------------------------------------------------------
# translate, interpolate (their shared options are in cli_common; style is cli_style's)


@app.command(
    epilog="STYLE is seed:N (or seed:N:K), a saved style's name (munit style list), a style file, or a reference image.\n\n"
    "Examples:\n\n"
    "  munit translate photo.jpg --to B --model runs/x --num-styles 5 --out out/\n\n"
    "  munit translate 'shots/*.png' --to painting --style look.safetensors --out out/ --json | jq .path\n\n"
    "  cat in.png | munit translate - --to B --model runs/x > out.png\n\n"
    "  munit translate photos/ --to B --style ref.jpg --style seed:3 --grid --out grids/\n\n"
    "  munit translate panorama.png --to B --tile 512 --out big.png\n\n"
    "  munit translate clip.mp4 --to B --style look --out clip_b.mp4",
)
@report_errors
def translate(
    inputs: List[str] = typer.Argument(..., help="Image or video (mp4, webm, mov, gif) files, folders, globs, or - for image bytes on stdin.", metavar="INPUT"),
    to: str = ToOpt,
    model: Optional[str] = ModelOpt,
    styles: Optional[List[str]] = typer.Option(None, "--style", "-s", help="A style to use (repeatable): seed:N, a saved style's name, a style file or a reference image.", metavar="STYLE"),
    num_styles: Optional[int] = typer.Option(None, "--num-styles", "-n", help="Sample this many random styles (seed:SEED, seed:SEED:1, ...), at most 1000."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled styles; a style depends only on (seed, its index)."),
    truncation: float = TruncationOpt,
    size: Optional[int] = SizeOpt,
    tile: Optional[int] = TileOpt,
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Folder, image file (.png/.jpg), video file (one video input, one style), or - for PNG bytes on stdout. Default: stdout for -, else ./translated (videos keep their container).", metavar="DIR|FILE|-"),
    grid: bool = typer.Option(False, "--grid", help="One grid per input (the input, then its translations) instead of separate images."),
    save_styles: Optional[Path] = typer.Option(None, "--save-styles", help="Also save the style codes used, as style files in this folder.", metavar="DIR"),
    batch_size: int = BatchOpt,
    device: str = DeviceOpt,
    ema: bool = EmaOpt,
    precision: str = PrecisionOpt,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON record per output (input, style, path; frames, fps, duration for videos) on stdout."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Translate images to the other domain.  [dim]munit translate in.jpg --to B --model runs/x[/dim]"""
    from munit_cli import translate as translate_mod

    summary = translate_mod.translate_files(
        inputs,
        model=model,
        to=to,
        styles=styles or (),
        num_styles=num_styles,
        seed=seed,
        truncation=truncation,
        size=size,
        tile=tile,
        out=out,
        grid=grid,
        save_styles_to=save_styles,
        batch_size=batch_size,
        device=device,
        use_ema=ema,
        precision=precision,
        on_record=(lambda record: emit_json(record.to_json())) if json_out else None,
        overwrite=overwrite,
    )
    if summary.out != translate_mod.STDIN and not json_out:
        from munit_cli.console import err

        done = summary.total - len(summary.failed)
        err.print(f"translated {done} of {summary.total} inputs in {len(summary.styles)} styles -> {summary.out}", highlight=False)
    summary.raise_for_failures()


@app.command(
    epilog="S1 and S2 are saved style names (munit style list), style files, reference images or seed:N. Writes OUT/frames/*.png, OUT/strip.png "
    "and with --gif OUT/interpolation.gif.\n\n"
    "Examples:\n\n"
    "  munit interpolate --style-a s1 --style-b s2 --gif\n\n"
    "  munit interpolate --style-a s1.safetensors --style-b s2.safetensors --model runs/x --gif\n\n"
    "  munit interpolate photo.jpg --to B --style-a seed:1 --style-b ref.jpg --steps 16 --mode slerp --model runs/x\n\n"
    "  cat in.png | munit interpolate - --model runs/x --gif --out morph/",
)
@report_errors
def interpolate(
    input: Optional[str] = typer.Argument(None, help="An image, folder, glob or - (stdin). Default: the run's preview inputs.", metavar="INPUT"),
    to: str = ToOpt,
    style_a: str = typer.Option("seed:0", "--style-a", help="The first frame's style.", metavar="S1"),
    style_b: str = typer.Option("seed:1", "--style-b", help="The last frame's style.", metavar="S2"),
    steps: int = typer.Option(8, "--steps", "-k", help="Frames, both ends included (2 to 10000)."),
    mode: str = typer.Option("linear", "--mode", help="linear or slerp (spherical)."),
    gif: bool = typer.Option(False, "--gif", help="Also write an animated GIF."),
    mp4: bool = typer.Option(False, "--mp4", help="Also write an MP4 video (needs the \\[video] extra)."),
    fps: float = typer.Option(8.0, "--fps", help="GIF and MP4 frames per second (0.01 to 100)."),
    out: Path = typer.Option(Path("interpolation"), "--out", "-o", help="Output folder."),
    model: Optional[str] = ModelOpt,
    size: Optional[int] = SizeOpt,
    tile: Optional[int] = TileOpt,
    truncation: float = TruncationOpt,
    batch_size: int = BatchOpt,
    device: str = DeviceOpt,
    ema: bool = EmaOpt,
    precision: str = PrecisionOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the written paths as JSON on stdout."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Morph between two styles.  [dim]munit interpolate --style-a s1 --style-b s2 --model runs/x --gif[/dim]"""
    from munit_cli import interpolate as interpolate_mod

    summary = interpolate_mod.interpolate(
        input,
        model=model,
        to=to,
        style_a=style_a,
        style_b=style_b,
        steps=steps,
        mode=mode,
        gif=gif,
        mp4=mp4,
        fps=fps,
        out=out,
        size=size,
        tile=tile,
        truncation=truncation,
        batch_size=batch_size,
        device=device,
        use_ema=ema,
        precision=precision,
        overwrite=overwrite,
    )
    if json_out:
        emit_json(summary.to_json())
    else:
        from munit_cli.console import err

        err.print(f"{len(summary.frames)} frames in {out / 'frames'}", highlight=False)
        for label, path in (("strip", summary.strip), ("gif", summary.gif), ("mp4", summary.mp4)):
            if path:
                err.print(f"  {label}: {path}", highlight=False)
    summary.raise_for_failures()


# Typer lists a group after all of the app's own commands: export, evaluate and report follow
# interpolate (merged in, as they have no group name), and then the style group.
app.add_typer(cli_model.app)
app.add_typer(cli_style.style_app, name="style")


def main() -> None:
    app()
