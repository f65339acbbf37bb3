"""`munit translate`: every input in every style, to a folder, one image file or stdout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol, Sequence

import torch
from PIL import Image

from munit_cli import files, images
from munit_cli import styles as styles_mod
from munit_cli.errors import MunitError, UsageError
from munit_cli.infer import (
    MAX_PICTURE_PIXELS,
    Translation,
    Translator,
    check_common_options,
    check_output_folder,
    grid_size,
    image_grid,
    note_shortened,
    raise_for_failures,
    translate_with_progress,
)
from munit_cli.inputs import STDIN, InputItem, expand_inputs, stdout_is_terminal, write_stdout
from munit_cli.results import Result
from munit_cli.styles import Style

DEFAULT_TRANSLATE_OUT = "translated"
ImageFormat = Literal["png", "jpg"]
FILE_FORMATS: dict[str, ImageFormat] = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg"}


class Sink(Protocol):
    """Where translate's outputs go: a folder, one image file or stdout."""

    label: str
    long_names: dict[str, str]  # output path -> the name it would have had, for names shortened to fit

    def planned(self, items: Sequence[InputItem], styles: Sequence[Style]) -> list[Path]:
        """The files it will create, checked against --overwrite before any work."""
        ...

    def add(self, r: Translation, image: Image.Image, styles: Sequence[Style]) -> list[str]:
        """Take one input's translations; returns where each style's output went."""
        ...

    def finish(self, styles: Sequence[Style]) -> None: ...


class FolderSink:
    """INPUTSTEM_STYLETAG.png per output, or INPUTSTEM_grid.png per input with `grid`."""

    def __init__(self, folder: Path, grid: bool):
        check_output_folder(folder)
        self.folder, self.grid, self.label = folder, grid, files.display_path(folder)
        self.long_names: dict[str, str] = {}

    def outputs(self, stem: str, styles: Sequence[Style]) -> list[Path]:
        tails = [("_grid.png", "_grid.png")] if self.grid else [(f"_{s.tag}.png", f"_{s.full_tag or s.tag}.png") for s in styles]
        head, sep, last = stem.rpartition("/")  # a subfolder's name fits already: it exists
        paths = []
        for tail, full_tail in tails:
            path = self.folder / (head + sep + files.fit_name(last, tail))
            if path.name != last + full_tail:
                self.long_names[str(path)] = last + full_tail
            paths.append(path)
        return paths

    def planned(self, items: Sequence[InputItem], styles: Sequence[Style]) -> list[Path]:
        return [p for item in items if not item.problem for p in self.outputs(item.stem, styles)]

    def add(self, r: Translation, image: Image.Image, styles: Sequence[Style]) -> list[str]:
        paths = self.outputs(r.item.stem, styles)
        if self.grid:
            images.save_png(image_grid([[image, *r.outputs]]), paths[0])
            return [str(paths[0])] * len(styles)
        return [str(images.save_png(img, path)) for img, path in zip(r.outputs, paths)]

    def finish(self, styles: Sequence[Style]) -> None:
        pass


class PictureSink:
    """One picture written at the end: the single output, or a grid with one row per input (the
    input, then its translations) when there are several."""

    def __init__(self, label: str, fmt: ImageFormat, grid: bool, write: Callable[[bytes], None], path: Path | None = None):
        self.label, self.fmt, self.grid, self.write, self.path = label, fmt, grid, write, path
        self.long_names: dict[str, str] = {}
        self.rows: list[list[Image.Image]] = []

    def planned(self, items: Sequence[InputItem], styles: Sequence[Style]) -> list[Path]:
        return [] if self.path is None else [self.path]

    def add(self, r: Translation, image: Image.Image, styles: Sequence[Style]) -> list[str]:
        self.rows.append([image, *r.outputs])
        width, height = grid_size(self.rows)
        if width * height > MAX_PICTURE_PIXELS and (len(self.rows) > 1 or len(styles) > 1 or self.grid):
            raise MunitError(
                f"{self.label}: the grid of all translations would be {width}x{height} pixels, more than "
                f"{MAX_PICTURE_PIXELS / 1e6:.0f} megapixels in one picture; nothing was written to it",
                hint="write the translations to a folder with --out DIR",
            )
        return [self.label] * len(styles)

    def finish(self, styles: Sequence[Style]) -> None:
        if not self.rows:
            return
        single = len(self.rows) == 1 and len(styles) == 1 and not self.grid
        self.write(images.encode_image(self.rows[0][1] if single else image_grid(self.rows), self.fmt))


def stdout_sink(grid: bool, json_records: bool) -> PictureSink:
    if json_records:
        raise UsageError("--json and --out - both write to stdout", hint="write the images to a folder with --out DIR")
    if stdout_is_terminal():
        raise UsageError("refusing to write PNG bytes to a terminal", hint="redirect stdout (> out.png) or pass --out")
    return PictureSink(STDIN, "png", grid, write_stdout)


def file_sink(path: Path, grid: bool) -> PictureSink:
    return PictureSink(files.display_path(path), FILE_FORMATS[path.suffix.lower()], grid, lambda data: files.write_atomic(path, data), path)


def output_sink(out: str | os.PathLike | None, reads_stdin: bool, grid: bool, json_records: bool) -> Sink:
    """The sink --out names. Without --out: stdout when the input came from stdin (a pipeline),
    else the folder 'translated'. An image name munit cannot write is refused, not made a folder."""
    if out is None:
        out = STDIN if reads_stdin else DEFAULT_TRANSLATE_OUT
    if str(out) == STDIN:
        return stdout_sink(grid, json_records)
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix in FILE_FORMATS and not path.is_dir():
        return file_sink(path, grid)
    if suffix in images.IMAGE_EXTENSIONS and not path.is_dir():
        raise UsageError(
            f"--out {files.display_path(path)}: munit writes .png or .jpg images, not {suffix}",
            hint="name a .png or .jpg file, or a folder",
        )
    return FolderSink(path, grid)


@dataclass
class OutputRecord(Result):
    """One output as `--json` reports it."""

    input: str
    style: str
    path: str
    full_name: str | None = None  # the name before shortening, when it was too long for a file name


@dataclass
class TranslateResult(Result):
    total: int
    outputs: int
    failed: list[str]
    out: str
    styles: list[str]

    def raise_for_failures(self) -> None:
        raise_for_failures(self.failed, self.total)


def translate_files(
    inputs: Sequence[str],
    *,
    model: str | os.PathLike | None,
    to: str = "B",
    styles: Sequence[str] = (),
    num_styles: int | None = None,
    seed: int = 0,
    truncation: float = 1.0,
    size: int | None = None,
    out: str | os.PathLike | None = None,
    grid: bool = False,
    save_styles_to: Path | None = None,
    batch_size: int = 1,
    device: str = "auto",
    use_ema: bool = True,
    precision: str = "auto",
    on_record: Callable[[OutputRecord], None] | None = None,
    overwrite: bool = False,
) -> TranslateResult:
    """Translate every input with every style and write the results to the sink --out names.
    `on_record` receives an OutputRecord per output as it is written. Existing files are only
    replaced with `overwrite`."""
    check_common_options(truncation, batch_size, size)
    styles_mod.check_num_styles(num_styles)
    sink = output_sink(out, STDIN in inputs, grid, on_record is not None)
    items = expand_inputs(inputs)
    tr = Translator.open(model, to, device, size, use_ema, precision)
    chosen = styles_mod.resolve_styles(tr, styles, num_styles, seed, truncation)
    planned = sink.planned(items, chosen)
    if save_styles_to is not None:
        planned += styles_mod.style_paths(save_styles_to, chosen)
    files.refuse_overwrite(planned, overwrite)
    shortened = len(sink.long_names)
    if save_styles_to is not None:
        shortened += sum(s.full_tag is not None for s in chosen)
    note_shortened(shortened)
    if save_styles_to is not None:
        styles_mod.save_styles(save_styles_to, chosen, tr)
    codes = torch.stack([s.code for s in chosen])

    failed: list[str] = []
    written = 0
    for r, image in translate_with_progress(tr, items, codes, batch_size, "translate", failed):
        paths = sink.add(r, image, chosen)
        written += len(r.outputs)
        if on_record is not None:
            for style, path in zip(chosen, paths):
                on_record(OutputRecord(r.item.name, style.label, path, sink.long_names.get(path)))
    sink.finish(chosen)
    return TranslateResult(len(items), written, failed, sink.label, [s.label for s in chosen])
