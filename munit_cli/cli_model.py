"""`munit export`, `munit evaluate` and `munit report`: the commands on a trained model and its run.

`cli` adds `app`'s commands to munit's own (without a group name), after translate and interpolate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from munit_cli.cli_common import EmaOpt, ModelOpt, OverwriteOpt, PrecisionOpt, emit_json, report_errors

app = typer.Typer()


# ---------------------------------------------------------------------------------------------
# export


@app.command(
    epilog="Examples:\n\n"
    "  munit export runs/shoes --out export/\n\n"
    "  munit export gen.safetensors --format bundle --dtype float16 --out export/\n\n"
    "  munit export gen.safetensors --format onnx --out export/ --json\n\n"
    "  munit translate photo.jpg --model export/bundle.safetensors --out out.png\n\n"
    "  python examples/onnx_translate.py export/ photo.jpg out.png --style-seed 3\n\n"
    "ONNX needs the optional extra: pip install 'munit-cli\\[export]'",
)
@report_errors
def export(
    model: Optional[Path] = typer.Argument(None, help="Run folder (newest checkpoint), generator or bundle .safetensors; default $MUNIT_MODEL, else the run under ./runs trained last."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the exported files (created if needed)."),
    fmt: str = typer.Option(
        "all", "--format", "-f", help="bundle (one safetensors file for munit), onnx (graphs for onnxruntime) or all."
    ),
    dtype: str = typer.Option("float32", help="Bundle weights: float32, float16 or bfloat16 (ONNX is always float32)."),
    ema: bool = EmaOpt,
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Export a model as a safetensors bundle and ONNX graphs.  [dim]munit export runs/x --out export/[/dim]"""
    from munit_cli import export as export_mod
    from munit_cli.console import err

    result = export_mod.run(model, out, fmt, dtype, use_ema=ema, overwrite=overwrite)
    if json_out:
        emit_json(result.to_json())
        return
    err.print(f"exported {result.model} ({result.weights} weights, step {result.step})")
    if result.bundle is not None:
        bundle = result.bundle
        err.print(f"  bundle: {bundle.path} ({bundle.dtype}, {bundle.bytes / 1e6:.1f} MB)")
    if result.onnx is not None:
        onnx_info = result.onnx
        err.print(f"  onnx:   {', '.join(Path(f).name for f in onnx_info.files)} + {Path(onnx_info.sidecar).name}")
        err.print(f"  verified against PyTorch with onnxruntime: max abs difference {onnx_info.max_abs_diff:.2e}")


# ---------------------------------------------------------------------------------------------
# evaluate


@app.command(
    epilog="Examples:\n\n"
    "  munit evaluate --model runs/shoes --test-a data/testA --test-b data/testB\n\n"
    "  munit evaluate --model gen.safetensors --test-a testA --test-b testB --num-styles 5 --json > scores.json\n\n"
    "  munit evaluate --model runs/shoes --test-a testA --test-b testB --lpips-weights alex_lpips.safetensors\n\n"
    "KID and FID need the optional extra (nothing is downloaded): pip install 'munit-cli\\[eval]'. "
    "Without --lpips-weights, diversity is reported as diversity_l1 (pixel L1), not LPIPS.",
)
@report_errors
def evaluate(
    model: Optional[str] = ModelOpt,
    test_a: Path = typer.Option(..., "--test-a", help="Test images of domain A."),
    test_b: Path = typer.Option(..., "--test-b", help="Test images of domain B (same file names as --test-a: paired metrics too)."),
    num_styles: int = typer.Option(10, "--num-styles", "-n", help="Random styles per input, 1 to 1000 (diversity; the first also feeds KID/FID)."),
    seed: int = typer.Option(0, help="Seed of the random styles and KID subsets."),
    ema: bool = EmaOpt,
    precision: str = PrecisionOpt,
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="AlexNet LPIPS weights (.safetensors) for LPIPS diversity."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Images per Inception batch (1 to 256)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    json_out: bool = typer.Option(False, "--json", help="Print the scores as JSON on stdout."),
    save: bool = typer.Option(False, "--save", help="Also save the scores into the model's run folder (evaluations/), where munit report shows them."),
) -> None:
    """Score a model: KID, FID, diversity, paired L1/PSNR/SSIM.  [dim]munit evaluate -m runs/x --test-a A --test-b B[/dim]"""
    from munit_cli import evaluate as evaluate_mod
    from munit_cli.console import err

    result = evaluate_mod.evaluate(
        model,
        test_a,
        test_b,
        num_styles=num_styles,
        seed=seed,
        use_ema=ema,
        precision=precision,
        lpips_weights=lpips_weights,
        batch_size=batch_size,
        device=device,
        save=save,
    )
    err.print(evaluate_mod.table(result))
    if result.saved:
        err.print(f"saved: {result.saved}")
    if json_out:
        emit_json(result.to_json())


# ---------------------------------------------------------------------------------------------
# report


@app.command(
    epilog="Examples:\n\n"
    "  munit report\n\n"
    "  munit report runs/shoes --json\n\n"
    "Training rewrites the report at every sample interval: reload the page to see the run's state.",
)
@report_errors
def report(
    run: Optional[Path] = typer.Argument(None, help="Run folder. Default: the run under ./runs that changed last."),
    json_out: bool = typer.Option(False, "--json", help='Print {"report": PATH} on stdout.'),
) -> None:
    """Write RUN/report.html: loss curves, sample grids, scores, dataset and config.  [dim]munit report runs/x[/dim]"""
    from munit_cli import report as report_mod
    from munit_cli.files import display_path

    result = report_mod.run(run)
    if json_out:
        emit_json(result.to_json())
    else:
        typer.echo(display_path(result.report))
