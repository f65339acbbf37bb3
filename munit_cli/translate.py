"""`munit translate`: every input in every style, to a folder, one image file or stdout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol, Sequence

import torch
from PIL import Image

from rich.markup import escape

from munit_cli import files, images, video
from munit_cli import styles as styles_mod
from munit_cli.console import err, progress
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
    translate_image,
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

    def outputs(self, stem: str, styles: Sequence[Style], suffix: str = ".png") -> list[Path]:
        if self.grid:
            tails = [("_grid.png", "_grid.png")]
        else:
            tails = [(f"_{s.tag}{suffix}", f"_{s.full_tag or s.tag}{suffix}") for s in styles]
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
    frames: int | None = None  # for a video: the output's frame count, rate and length in seconds
    fps: float | None = None
    duration: float | None = None


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
    tile: int | None = None,
    on_record: Callable[[OutputRecord], None] | None = None,
    overwrite: bool = False,
) -> TranslateResult:
    """Translate every input with every style and write the results to the sink --out names.
    Videos (mp4, webm, mov, animated gif) are translated frame by frame, one output video per style,
    into the --out folder or the one --out video file. `on_record` receives an OutputRecord per
    output as it is written. Existing files are only replaced with `overwrite`."""
    check_common_options(truncation, batch_size, size, tile)
    styles_mod.check_num_styles(num_styles)
    video_out = Path(out) if out is not None and str(out) != STDIN and _is_video_name(Path(out)) else None
    sink = None if video_out else output_sink(out, STDIN in inputs, grid, on_record is not None)
    items = expand_inputs(inputs)
    clips = [item for item in items if _is_clip(item)]
    pictures = [item for item in items if item not in clips]
    _check_video_outputs(video_out, sink, items, clips, grid)
    tr = Translator.open(model, to, device, size, use_ema, precision, tile)
    chosen = styles_mod.resolve_styles(tr, styles, num_styles, seed, truncation)
    if video_out is not None and len(chosen) != 1:
        raise UsageError(
            f"--out {files.display_path(video_out)}: a video file holds one style's translation, got {len(chosen)} styles",
            hint="give one --style, or --out DIR for one video per style",
        )
    targets = {
        item.name: [video_out] if video_out is not None else sink.outputs(item.stem, chosen, item.path.suffix.lower())
        for item in clips
    }
    planned = (sink.planned(pictures, chosen) if sink is not None else []) + [p for paths in targets.values() for p in paths]
    if save_styles_to is not None:
        planned += styles_mod.style_paths(save_styles_to, chosen)
    files.refuse_overwrite(planned, overwrite)
    long_names = sink.long_names if sink is not None else {}
    shortened = len(long_names)
    if save_styles_to is not None:
        shortened += sum(s.full_tag is not None for s in chosen)
    note_shortened(shortened)
    if save_styles_to is not None:
        styles_mod.save_styles(save_styles_to, chosen, tr)
    codes = torch.stack([s.code for s in chosen])

    failed: list[str] = []
    written = 0
    if pictures:
        for r, image in translate_with_progress(tr, pictures, codes, batch_size, "translate", failed):
            paths = sink.add(r, image, chosen)
            written += len(r.outputs)
            if on_record is not None:
                for style, path in zip(chosen, paths):
                    on_record(OutputRecord(r.item.name, style.label, path, long_names.get(path)))
        sink.finish(chosen)
    for item in clips:
        try:
            info = video.probe(item.path)  # once per clip, not per style: it reads every packet
            tr.check_fits(info.width, info.height, item.name)
        except MunitError as exc:
            _skip(item, exc, failed)
            continue
        for style, path in zip(chosen, targets[item.name]):
            try:
                result = _translate_clip(tr, item, info, style, path)
            except MunitError as exc:
                _skip(item, exc, failed)
                break
            written += 1
            if on_record is not None:
                record = OutputRecord(item.name, style.label, str(path), long_names.get(str(path)))
                record.frames, record.fps, record.duration = result.frames, result.fps, result.duration
                on_record(record)
    label = files.display_path(video_out) if video_out is not None else sink.label
    return TranslateResult(len(items), written, failed, label, [s.label for s in chosen])


# ---------------------------------------------------------------------------------------------
# Videos


def _is_video_name(path: Path) -> bool:
    return video.is_video(path) and not path.is_dir()


def _is_clip(item: InputItem) -> bool:
    """Whether an input is translated as a video: mp4, webm and mov always; a GIF when it has more
    than one frame (a still GIF is an image like any other)."""
    if item.problem or item.path is None or not video.is_video(item.path):
        return False
    if item.path.suffix.lower() != ".gif":
        return True
    try:
        with Image.open(item.path) as img:
            return getattr(img, "n_frames", 1) > 1
    except (OSError, ValueError):  # reading it as an image says why
        return False


def _check_video_outputs(video_out: Path | None, sink, items: Sequence[InputItem], clips: Sequence[InputItem], grid: bool) -> None:
    if video_out is not None and (len(items) != 1 or not clips):
        raise UsageError(
            f"--out {files.display_path(video_out)}: a video file holds the translation of one video input",
            hint="give one video (mp4, webm, mov, animated gif), or --out DIR for several inputs",
        )
    if clips and (grid or isinstance(sink, PictureSink)):
        raise UsageError(
            f"{clips[0].name} is a video: its translation goes to a folder (--out DIR) or a video file (--out out.mp4)"
            + (", and --grid is for images" if grid else ""),
        )


def _skip(item: InputItem, exc: MunitError, failed: list[str]) -> None:
    err.print(f"[yellow]skipped:[/] {escape(str(exc))}", markup=True)
    failed.append(item.name)


def _translate_clip(tr: Translator, item: InputItem, info: video.VideoInfo, style: Style, path: Path) -> video.VideoResult:
    """Every frame of one video in one style, with a progress bar over the frames."""
    code = style.code[None]
    with progress(f"translate {style.tag}", info.frames) as bar:

        def frame(img: Image.Image) -> Image.Image:
            return translate_image(tr, img.convert(tr.mode), code, bar)[0].convert("RGB")

        return video.translate_video(item.path, path, frame, on_frame=bar.update)
