"""`munit style`: make style codes to reuse with --style (encode, sample, list)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from munit_cli.cli_common import (
    DeviceOpt,
    EmaOpt,
    ModelOpt,
    OverwriteOpt,
    PrecisionOpt,
    SizeOpt,
    TruncationOpt,
    emit_json,
    report_errors,
)

style_app = typer.Typer(
    help="Make style codes to reuse with --style.  [dim]munit style sample --seed 7 --name s1[/dim]",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
StyleOutOpt = typer.Option(None, "--out", "-o", help="The style file to write (.safetensors); or give --name.")
StyleNameOpt = typer.Option(None, "--name", help="Save the style under this name in the model's run folder (RUN/styles/NAME.safetensors); --style NAME then finds it.")
StyleDomainOpt = typer.Option("B", "--domain", "-d", help="The domain the style is for: its name or letter (A, B).")


def _print_style_file(result: Any, json_out: bool) -> None:
    if json_out:
        emit_json(result.to_json())
    else:
        from munit_cli.console import err
        from munit_cli.files import display_path

        err.print(f"wrote {display_path(result.path)} (a style for {result.domain})", highlight=False)


@style_app.command(
    "encode",
    epilog="Examples:\n\n"
    "  munit style encode painting.jpg --domain B --name warm\n\n"
    "  munit style encode painting.jpg --domain B --model runs/x -o s1.safetensors\n\n"
    "  munit translate photo.jpg --to B --model runs/x --style s1.safetensors",
)
@report_errors
def style_encode(
    image: Path = typer.Argument(..., help="A reference image of the domain."),
    domain: str = StyleDomainOpt,
    model: Optional[str] = ModelOpt,
    out: Optional[Path] = StyleOutOpt,
    name: Optional[str] = StyleNameOpt,
    size: Optional[int] = SizeOpt,
    device: str = DeviceOpt,
    ema: bool = EmaOpt,
    precision: str = PrecisionOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the written path as JSON on stdout."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Save the style of a reference image.  [dim]munit style encode ref.jpg --domain B -o s.safetensors[/dim]"""
    from munit_cli import stylefiles

    result = stylefiles.encode_style_file(
        image, model=model, domain=domain, out=out, name=name, size=size, device=device, use_ema=ema,
        precision=precision, overwrite=overwrite,
    )
    _print_style_file(result, json_out)


@style_app.command(
    "sample",
    epilog="Examples:\n\n"
    "  munit style sample --seed 7 --name s1\n\n"
    "  munit style sample --seed 7 --model runs/x -o s2.safetensors\n\n"
    "  munit style sample --seed 7 --index 3 --truncation 0.7 --domain A --model runs/x -o soft.safetensors",
)
@report_errors
def style_sample(
    seed: int = typer.Option(0, "--seed", help="Seed; the same as --style seed:SEED in translate."),
    index: int = typer.Option(0, "--index", help="Which style of the seed (seed:SEED:INDEX)."),
    domain: str = StyleDomainOpt,
    model: Optional[str] = ModelOpt,
    out: Optional[Path] = StyleOutOpt,
    name: Optional[str] = StyleNameOpt,
    truncation: float = TruncationOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the written path as JSON on stdout."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Save a random style from N(0, I).  [dim]munit style sample --seed 7 -o s.safetensors[/dim]"""
    from munit_cli import stylefiles

    result = stylefiles.sample_style_file(
        model=model, domain=domain, out=out, name=name, seed=seed, index=index, truncation=truncation,
        overwrite=overwrite,
    )
    _print_style_file(result, json_out)


@style_app.command(
    "list",
    epilog="Examples:\n\n  munit style list\n\n  munit style list --model runs/x --json | jq -r '.styles[].name'",
)
@report_errors
def style_list(
    model: Optional[str] = ModelOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout."),
) -> None:
    """List the styles saved by name in the model's run (name, domain, source, created).  [dim]munit style list[/dim]"""
    from munit_cli import stylefiles
    from munit_cli.inputs import write_stdout

    result = stylefiles.list_styles(model)
    if json_out:
        emit_json(result.to_json())
        return
    rows = [("name", "domain", "source", "created")]
    rows += [(s.name, s.domain, s.problem or s.source, s.created) for s in result.styles]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[3]]) for row in rows]
    write_stdout(("\n".join(lines) + "\n").encode())
