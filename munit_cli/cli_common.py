"""What the `munit` command modules share: the shell around each command's body, and the options of
the commands that run a model (translate, interpolate, style, export, evaluate).

Only `report_errors` turns a `MunitError` into a message and an exit code (the codes: see `cli`).
Nothing here imports torch, so `munit --help` and `munit --version` stay instant.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable

import typer

from munit_cli.errors import MunitError


def report_errors(fn: Callable) -> Callable:
    """Run a command body; a MunitError becomes 'error: ...' on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MunitError as exc:
            fail(exc)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("MUNIT_DEBUG"):
                raise
            typer.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
            typer.echo("  rerun with MUNIT_DEBUG=1 for the traceback, and please report it", err=True)
            raise typer.Exit(1) from None

    return wrapper


def fail(exc: MunitError) -> None:
    from rich.markup import escape

    from munit_cli.console import err

    # escaped: messages hold paths and hints like 'munit-cli[export]' that rich would read as tags
    err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
    if exc.hint:
        err.print(f"  hint: {exc.hint}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def emit_json(record: dict[str, Any]) -> None:
    """One JSON line on stdout; a closed or full stdout is a MunitError (one line, exit 1)."""
    from munit_cli.inputs import write_stdout

    write_stdout((json.dumps(record) + "\n").encode())


# The options of the commands that run a model: one definition, so they read the same everywhere.
ModelOpt = typer.Option(
    None, "--model", "-m", help="Run folder (its newest generator), a generator or bundle .safetensors. Default: $MUNIT_MODEL, else the run under ./runs trained last.", show_default=False
)
ToOpt = typer.Option("B", "--to", "-t", help="Target domain: its name or letter (A, B).")
SizeOpt = typer.Option(None, "--size", help="Work with the shorter side at this many pixels (default: the input's size); outputs keep the input's size.")
TileOpt = typer.Option(None, "--tile", help="Translate in overlapping tiles of this many pixels, blended without seams (default: only inputs too large for the 8 GiB memory budget are tiled, at the largest tile that fits).", metavar="PX")
TruncationOpt = typer.Option(1.0, "--truncation", help="Scale sampled styles toward the mean, 0 < PSI <= 1 (smaller: safer, less extreme).", metavar="PSI")
BatchOpt = typer.Option(1, "--batch-size", "-b", help="Inputs per forward pass (faster on GPUs; pixels may differ by rounding from batch size 1).")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace existing output files (without it, nothing is written when one exists).")
EmaOpt = typer.Option(True, "--ema/--no-ema", help="Use the EMA (averaged) weights when the file has them; --no-ema the raw ones.")
PrecisionOpt = typer.Option("auto", "--precision", help="auto (bf16 where the GPU or CPU has bf16 units, else fp32), fp32 (the reference) or bf16.")
