"""Inference: translate images in one or more styles, interpolate between styles, write the results.

Names follow the paper for the A -> B direction: the source generator encodes x_a into its content
c_a, the target generator decodes c_a with a style s_b into x_ab. Translating B -> A swaps the roles.

Everything here is a plain function the CLI (and the demo) calls. Per-input problems (a missing
file, a broken image, an image too large for the memory budget) are reported and skipped, and
surface once at the end as a PartialFailure; anything that makes the whole run meaningless (no
model, a bad style, a bad option) raises before any work.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, Protocol, Sequence

import torch
from PIL import Image
from rich.markup import escape

from munit_cli import checkpoint, files, images, runtime
from munit_cli import styles as styles_mod
from munit_cli.console import err, progress
from munit_cli.errors import MunitError, PartialFailure, UsageError
from munit_cli.inputs import STDIN, InputItem, expand_inputs, stdout_is_terminal, write_stdout
from munit_cli.models import min_size, size_multiple
from munit_cli.results import Result
from munit_cli.runtime import pick_device
from munit_cli.styles import Style, domain_letter

DEFAULT_TRANSLATE_OUT = "translated"
STRIP_NAME = "strip.png"
GIF_NAME = "interpolation.gif"
ImageFormat = Literal["png", "jpg"]
FILE_FORMATS: dict[str, ImageFormat] = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg"}
MODES = ("linear", "slerp")
MAX_STEPS = 10_000  # interpolation frames
FPS_RANGE = (0.01, 100.0)  # a GIF frame lasts 10 ms to 655 s; outside that Pillow cannot write it
# What one forward pass may use for activations, and what one input's outputs may hold: beyond
# this an input is skipped with a message naming --size, instead of the process being killed.
MEMORY_BUDGET = 8 << 30
OUTPUT_BUDGET = 8 << 30
# A grid, strip or GIF munit writes stays one it could read back itself.
MAX_PICTURE_PIXELS = images.DEFAULT_MAX_PIXELS
# Peak bytes of activations per working pixel and per unit of model.dim, measured for a forward
# pass on the CPU (tiny preset 43, paper preset 35) and rounded up.
BYTES_PER_PIXEL_PER_DIM = 48


def resolve_domain(value: str, names: Sequence[str]) -> str:
    """'a' or 'b' for a domain given by its name (exact first, then any case) or its letter."""
    for same in (str.__eq__, lambda name, v: name.lower() == v.lower()):
        hits = [i for i, name in enumerate(names) if same(name, value)]
        if hits:
            return "ab"[hits[0]]
    if value.lower() in ("a", "b"):
        return value.lower()
    raise UsageError(
        f"unknown domain {value!r}: this model translates between A ({names[0]}) and B ({names[1]})",
        hint="give a domain's name or its letter, A or B",
    )


def check_common_options(truncation: float = 1.0, batch_size: int = 1, size: int | None = None) -> None:
    styles_mod.check_truncation(truncation)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if size is not None and size < 1:
        raise UsageError(f"--size must be a positive number of pixels, got {size}")


def _gib(n: int) -> str:
    return f"{n / (1 << 30):g} GiB"


@dataclass
class Translator:
    """A loaded model, a direction and a working-size rule: everything a translation depends on."""

    loaded: checkpoint.LoadedGenerator
    target: str  # 'a' or 'b'
    device: torch.device
    size: int | None = None  # shorter side to work at; None keeps the input's size
    precision: str = "fp32"  # resolved: fp32 (the reference) or bf16 (autocast; see runtime.resolve_precision)

    @classmethod
    def open(
        cls,
        model: str | os.PathLike | None,
        to: str,
        device: str = "auto",
        size: int | None = None,
        use_ema: bool = True,
        precision: str = "auto",
    ) -> Translator:
        check_common_options(size=size)
        dev = pick_device(device)
        loaded = checkpoint.load_model(model, dev, use_ema=use_ema)
        return cls.of(loaded, resolve_domain(to, loaded.names), dev, size, precision)

    @classmethod
    def of(
        cls, loaded: checkpoint.LoadedGenerator, target: str, device: torch.device, size: int | None = None, precision: str = "auto"
    ) -> Translator:
        """A translator for a model already loaded on `device`; `precision` as `--precision` takes it."""
        resolved, channels_last = runtime.resolve_precision(precision, True, device)
        if channels_last:
            loaded.model.to(memory_format=torch.channels_last)
        tr = cls(loaded, target, device, size, resolved)
        largest = math.isqrt(tr.max_pixels)
        if size is not None and size > largest:
            raise UsageError(
                f"--size {size} is too large: this model works at a shorter side of at most {largest} px "
                f"within the {_gib(MEMORY_BUDGET)} memory budget of inference"
            )
        return tr

    @property
    def source(self) -> str:
        return "b" if self.target == "a" else "a"

    @property
    def names(self) -> tuple[str, str]:
        return self.loaded.names

    def domain_name(self, domain: str) -> str:
        return self.names["ab".index(domain)]

    def domain_label(self, domain: str) -> str:
        return f"{domain_letter(domain)} ({self.domain_name(domain)})"

    @property
    def style_dim(self) -> int:
        return self.loaded.cfg.model.style_dim

    @property
    def mode(self) -> Literal["RGB", "L"]:
        return "L" if self.loaded.cfg.model.input_dim == 1 else "RGB"

    @property
    def max_pixels(self) -> int:
        """The most pixels one forward pass may work at within MEMORY_BUDGET."""
        return MEMORY_BUDGET // (BYTES_PER_PIXEL_PER_DIM * self.loaded.cfg.model.dim)

    def work_size(self, width: int, height: int, size: int | None = None) -> tuple[int, int]:
        """Width and height to run the networks at: the input's (or scaled so the shorter side is
        `size`, by default the translator's), rounded to the nearest size the networks take (the
        same rule as exported graphs)."""
        m = self.loaded.cfg.model
        step, smallest = size_multiple(m), min_size(m)
        size = self.size if size is None else size
        scale = 1.0 if size is None else size / min(width, height)
        return max(smallest, step * round(width * scale / step)), max(smallest, step * round(height * scale / step))

    def check_fits(self, width: int, height: int, name: str, outputs: int = 1, size: int | None = None) -> None:
        """Refuse an input whose working size would exceed the memory budget, or whose `outputs`
        translations at its own size would not fit in OUTPUT_BUDGET."""
        w, h = self.work_size(width, height, size)
        if w * h > self.max_pixels:
            smallest = min_size(self.loaded.cfg.model)
            aspect = max(width, height) / min(width, height)
            fits = math.isqrt(int(self.max_pixels / aspect))
            hint = (
                f"pass --size {fits} or less to work smaller"
                if fits >= smallest
                else "its sides are too unequal to fit at any --size"
            )
            raise images.ImageError(
                name,
                f"{width}x{height} would be worked at {w}x{h}, over the {_gib(MEMORY_BUDGET)} memory budget of "
                f"inference ({self.max_pixels / 1e6:.1f} megapixels for this model); {hint}",
            )
        held = outputs * width * height * (1 if self.mode == "L" else 3)
        if held > OUTPUT_BUDGET:
            raise images.ImageError(
                name,
                f"{outputs} translations at {width}x{height} would hold {held / (1 << 30):.1f} GiB of images, over "
                f"the {_gib(OUTPUT_BUDGET)} budget; use fewer styles or steps, or a smaller input",
            )

    def read_image(self, source: Path | bytes, name: str | None = None, outputs: int = 1, size: int | None = None) -> Image.Image:
        """An input decoded in the model's colour mode. A file that is not a regular file, or whose
        size (read from its header, before decoding) does not fit `check_fits`, is refused."""
        name = name or (files.display_path(source) if isinstance(source, Path) else "image data")
        data = source if isinstance(source, bytes) else images.read_bytes(source)
        claimed = _header_size(data)
        if claimed is not None:
            self.check_fits(*claimed, name, outputs, size)
        img = images.open_image(data, mode=self.mode, name=name)
        self.check_fits(*img.size, name, outputs, size)  # EXIF orientation may have turned it
        return img

    def to_input(self, img: Image.Image) -> torch.Tensor:
        """(1, C, h, w) in [-1, 1] at the working size."""
        x = images.to_tensor(images.resize(img, self.work_size(*img.size)))
        layout = torch.channels_last if self.precision == "bf16" else torch.contiguous_format
        return (x.float() / 127.5 - 1.0)[None].to(self.device).contiguous(memory_format=layout)

    def to_output(self, x: torch.Tensor, size: tuple[int, int]) -> Image.Image:
        return images.resize(images.tensor_to_image(x.float()), size)

    @torch.no_grad()
    def encode_style(self, img: Image.Image) -> torch.Tensor:
        """The target domain's style of a reference image: (style_dim,)."""
        gen_b = self.loaded.model.generator(self.target)
        with runtime.autocast(self.device, self.precision):
            return gen_b.style_encoder(self.to_input(img))[0].float().cpu()

    def reference_style(self, path: Path) -> torch.Tensor:
        return self.encode_style(self.read_image(path))

    @torch.no_grad()
    def translate_batch(self, x_a: torch.Tensor, styles: torch.Tensor) -> list[torch.Tensor]:
        """x_a (n, C, h, w) -> one x_ab (n, C, h, w) per style in `styles` (K, style_dim); the
        content is encoded once and shared by every style."""
        gen_a = self.loaded.model.generator(self.source)
        gen_b = self.loaded.model.generator(self.target)
        n = x_a.shape[0]
        with runtime.autocast(self.device, self.precision):
            c_a = gen_a.content_encoder(x_a)
            return [gen_b.decode(c_a, s_b.expand(n, -1)).float() for s_b in styles.to(self.device)]


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height as the image's header states them, without decoding the pixels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.size
        except Exception:  # Pillow raises many types for damaged data; decoding names the reason
            return None


# ---------------------------------------------------------------------------------------------
# The translation loop (shared by translate and interpolate)


@dataclass
class Translation:
    """One input's translations, or why it has none."""

    item: InputItem
    image: Image.Image | None = None  # the input as read
    outputs: list[Image.Image] = field(default_factory=list)  # one per style, at the input's size
    error: str | None = None


def translate_items(
    tr: Translator, items: Sequence[InputItem], styles: torch.Tensor, batch_size: int = 1, bar=None
) -> Iterator[Translation]:
    """Translate every input with every style (K, style_dim), up to `batch_size` inputs (and the
    memory budget) at a time, in input order. An input that cannot be read or does not fit
    yields a Translation with `error`, and the rest go on.

    Styles never depend on the batch; pixels can differ in the last bit between batch sizes
    (batched convolutions round differently), so the default batch size of 1 is the reference."""
    for start in range(0, len(items), batch_size):
        results = [_read(tr, item, len(styles)) for item in items[start : start + batch_size]]
        by_size: dict[tuple[int, int], list[tuple[Translation, Image.Image]]] = {}
        for r in results:
            if r.image is not None:
                by_size.setdefault(tr.work_size(*r.image.size), []).append((r, r.image))
        for (w, h), group in by_size.items():
            per_pass = max(1, tr.max_pixels // (w * h))
            for first in range(0, len(group), per_pass):
                _translate_group(tr, group[first : first + per_pass], styles)
        for r in results:
            if bar is not None:
                bar.update(1)
            yield r


def _read(tr: Translator, item: InputItem, outputs: int) -> Translation:
    try:
        return Translation(item, tr.read_image(item.read(), item.name, outputs))
    except MunitError as exc:
        return Translation(item, error=str(exc))


def _translate_group(tr: Translator, group: list[tuple[Translation, Image.Image]], styles: torch.Tensor) -> None:
    x_a = torch.cat([tr.to_input(image) for _, image in group])
    try:
        x_ab = tr.translate_batch(x_a, styles)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        for r, _ in group:
            r.error = f"{r.item.name}: out of GPU memory at {x_a.shape[-1]}x{x_a.shape[-2]} (try --size or --batch-size 1)"
        return
    for i, (r, image) in enumerate(group):
        r.outputs = [tr.to_output(x[i], image.size) for x in x_ab]


def translate_with_progress(
    tr: Translator, items: Sequence[InputItem], styles: torch.Tensor, batch_size: int, task: str, failed: list[str]
) -> Iterator[tuple[Translation, Image.Image]]:
    """`translate_items` under a progress bar, yielding only the inputs that translated (with
    the input image); each one that failed is reported on stderr and its name appended to `failed`."""
    with progress(task, len(items), enabled=len(items) > 1) as bar:
        for r in translate_items(tr, items, styles, batch_size, bar):
            if r.image is not None and r.error is None:
                yield r, r.image
            else:
                err.print(f"[yellow]skipped:[/] {escape(r.error or r.item.name)}", markup=True)
                failed.append(r.item.name)


def raise_for_failures(failed: Sequence[str], total: int) -> None:
    """After the work: exit 3 when some inputs failed, 1 when all did."""
    if not failed:
        return
    listed = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
    if len(failed) == total:
        raise MunitError(f"no input could be translated ({listed})")
    raise PartialFailure(f"{len(failed)} of {total} inputs failed ({listed}); the others were translated")


def grid_size(rows: Sequence[Sequence[Image.Image]], pad: int = 2) -> tuple[int, int]:
    """Width and height of `image_grid(rows)`: a cell per image the size of the largest one."""
    cell_w = max(img.width for row in rows for img in row)
    cell_h = max(img.height for row in rows for img in row)
    columns = max(len(row) for row in rows)
    return pad + columns * (cell_w + pad), pad + len(rows) * (cell_h + pad)


def image_grid(rows: Sequence[Sequence[Image.Image]], pad: int = 2) -> Image.Image:
    """Rows of images on white, each in a cell the size of the largest image, centred. A single
    image needs no grid and comes back as is."""
    if len(rows) == 1 and len(rows[0]) == 1:
        return rows[0][0]
    cell_w = max(img.width for row in rows for img in row)
    cell_h = max(img.height for row in rows for img in row)
    mode = rows[0][0].mode
    white = 255 if mode == "L" else (255, 255, 255)
    grid = Image.new(mode, grid_size(rows, pad), white)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            x = pad + c * (cell_w + pad) + (cell_w - img.width) // 2
            y = pad + r * (cell_h + pad) + (cell_h - img.height) // 2
            grid.paste(img, (x, y))
    return grid


def check_output_folder(folder: Path, option: str = "--out") -> None:
    """A folder for several outputs: refused when the path exists as something else."""
    if os.path.lexists(folder) and not folder.is_dir():
        raise MunitError(
            f"{option} {files.display_path(folder)}: exists and is not a folder, but several outputs go there",
            hint="name a folder (it is created if needed)",
        )


# ---------------------------------------------------------------------------------------------
# translate: where the outputs go


class Sink(Protocol):
    """Where translate's outputs go: a folder, one image file or stdout."""

    label: str

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

    def outputs(self, stem: str, styles: Sequence[Style]) -> list[Path]:
        if self.grid:
            return [self.folder / f"{stem}_grid.png"]
        return [self.folder / f"{stem}_{s.tag}.png" for s in styles]

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


# ---------------------------------------------------------------------------------------------
# translate


@dataclass
class OutputRecord(Result):
    """One output as `--json` reports it."""

    input: str
    style: str
    path: str


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
                on_record(OutputRecord(r.item.name, style.label, path))
    sink.finish(chosen)
    return TranslateResult(len(items), written, failed, sink.label, [s.label for s in chosen])


# ---------------------------------------------------------------------------------------------
# Style files from the command line


@dataclass
class StyleFileResult(Result):
    path: Path
    domain: str
    source: str


def check_style_destination(out: Path | None, name: str | None, overwrite: bool) -> None:
    """Exactly one of `--out FILE` and `--name NAME`, checked before any model is loaded."""
    if (out is None) == (name is None):
        raise UsageError(
            "give --name NAME (saved in the model's run folder) or --out FILE.safetensors" + (", not both" if name else ""),
        )
    if name is not None:
        styles_mod.check_style_name(name)
    else:
        files.refuse_overwrite([Path(out)], overwrite)


def style_destination(tr: Translator, out: Path | None, name: str | None, overwrite: bool) -> Path:
    if name is None:
        return Path(out)
    path = styles_mod.named_style_destination(tr.loaded.path, name)
    files.refuse_overwrite([path], overwrite)
    return path


def encode_style_file(
    image: Path,
    *,
    model: str | os.PathLike | None,
    domain: str,
    out: Path | None = None,
    name: str | None = None,
    size: int | None = None,
    device: str = "auto",
    use_ema: bool = True,
    precision: str = "auto",
    overwrite: bool = False,
) -> StyleFileResult:
    """The style of `image` as seen by `domain`'s style encoder, saved as the style file `out`, or
    under `name` in the model's run folder (RUN/styles/NAME.safetensors)."""
    check_style_destination(out, name, overwrite)
    tr = Translator.open(model, domain, device, size, use_ema, precision)
    path = style_destination(tr, out, name, overwrite)
    source = files.display_path(image)
    path = styles_mod.save_style(path, tr.reference_style(Path(image)), tr, tr.target, source)
    return StyleFileResult(path, tr.domain_label(tr.target), source)


def sample_style_file(
    *,
    model: str | os.PathLike | None,
    domain: str,
    out: Path | None = None,
    name: str | None = None,
    seed: int = 0,
    index: int = 0,
    truncation: float = 1.0,
    overwrite: bool = False,
) -> StyleFileResult:
    """Style seed:SEED[:INDEX] (the same one `--style seed:SEED` gives), saved as the style file
    `out`, or under `name` in the model's run folder."""
    styles_mod.check_truncation(truncation)
    if index < 0:
        raise UsageError(f"--index must be 0 or more, got {index}")
    check_style_destination(out, name, overwrite)
    tr = Translator.open(model, domain, "cpu")
    path = style_destination(tr, out, name, overwrite)
    code = styles_mod.sample_style(seed, index, tr.style_dim, truncation)
    label = styles_mod.seed_label(seed, index)
    return StyleFileResult(styles_mod.save_style(path, code, tr, tr.target, label), tr.domain_label(tr.target), label)


@dataclass
class StyleListResult(Result):
    run: Path
    styles: list[styles_mod.SavedStyle]


def list_styles(model: str | os.PathLike | None) -> StyleListResult:
    """The styles saved by name in the run that MODEL belongs to (no weights are loaded)."""
    path = checkpoint.resolve_model_path(model)
    run = checkpoint.run_folder(path)
    if run is None:
        raise UsageError(
            f"{files.display_path(path)} is not inside a training run, so it has no saved styles",
            hint="named styles live in RUN/styles: pass --model RUN",
        )
    return StyleListResult(run, styles_mod.saved_styles(run))


# ---------------------------------------------------------------------------------------------
# interpolate


def check_interpolation(steps: int, mode: str, fps: float) -> None:
    if not 2 <= steps <= MAX_STEPS:
        raise UsageError(f"--steps must be from 2 to {MAX_STEPS}, got {steps}")
    if mode not in MODES:
        raise UsageError(f"unknown --mode {mode!r}", hint=f"use {' or '.join(MODES)}")
    low, high = FPS_RANGE
    if not low <= fps <= high:  # also refuses nan
        raise UsageError(f"--fps must be from {low:g} to {high:g}, got {fps}")


def interpolate_styles(s1: torch.Tensor, s2: torch.Tensor, steps: int, mode: str = "linear") -> torch.Tensor:
    """(steps, style_dim) codes from s1 to s2; the ends are s1 and s2 bit for bit. slerp follows
    the great circle (codes keep a prior-like norm); it falls back to linear for (anti)parallel codes."""
    codes = [s1]
    cos = torch.dot(s1, s2) / (s1.norm() * s2.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    spherical = mode == "slerp" and float(torch.sin(omega)) > 1e-6
    for k in range(1, steps - 1):
        t = k / (steps - 1)
        if spherical:
            codes.append((torch.sin((1 - t) * omega) * s1 + torch.sin(t * omega) * s2) / torch.sin(omega))
        else:
            codes.append(torch.lerp(s1, s2, t))
    codes.append(s2)
    return torch.stack(codes)


@dataclass
class InterpolateResult(Result):
    total: int
    failed: list[str]
    frames: list[str]
    strip: str | None
    gif: str | None

    def raise_for_failures(self) -> None:
        raise_for_failures(self.failed, self.total)


def frame_path(out: Path, stem: str, t: int, steps: int) -> Path:
    """Frame numbers have as many digits as the last one needs (at least 3), so names sort in order."""
    return out / "frames" / f"{stem}_{t:0{max(3, len(str(steps - 1)))}d}.png"


def warn_of_other_frames(folder: Path, planned: set[str]) -> None:
    """Frames of an earlier interpolation into the same folder (more steps, other inputs) would sit
    among this one's and join any `frames/*.png` the user globs; they are not ours to delete, so
    the user is told."""
    others = sorted(p.name for p in folder.glob("*.png") if p.name not in planned) if folder.is_dir() else []
    if others:
        err.print(
            f"[yellow]warning:[/] {escape(files.display_path(folder))} also holds {len(others)} other PNG "
            f"file{'s' if len(others) > 1 else ''} (an earlier interpolation's frames?), left as they are: "
            f"{escape(', '.join(others[:3]))}{', ...' if len(others) > 3 else ''}",
            markup=True,
        )


def preview_inputs(model_path: Path, source: str) -> Path:
    """The fixed preview inputs a training run saved for `source` (preview/A or preview/B)."""
    run = checkpoint.run_folder(model_path)
    if run is None:
        raise UsageError(
            f"{files.display_path(model_path)} is not inside a training run, so there are no preview inputs",
            hint="give an INPUT image (or - for stdin)",
        )
    folder = run / "preview" / domain_letter(source)
    if not folder.is_dir() or not images.list_images(folder):
        raise MunitError(f"no preview inputs in {files.display_path(folder)}", hint="give an INPUT image (or - for stdin)")
    return folder


def interpolate(
    input: str | None = None,
    *,
    model: str | os.PathLike | None,
    to: str = "B",
    style_a: str = "seed:0",
    style_b: str = "seed:1",
    steps: int = 8,
    mode: str = "linear",
    gif: bool = False,
    fps: float = 8.0,
    out: Path = Path("interpolation"),
    size: int | None = None,
    truncation: float = 1.0,
    batch_size: int = 1,
    device: str = "auto",
    use_ema: bool = True,
    precision: str = "auto",
    overwrite: bool = False,
) -> InterpolateResult:
    """Translate the input(s) with styles moving from `style_a` to `style_b` in `steps` frames.

    Writes OUT/frames/STEM_NNN.png, OUT/strip.png (a row of frames per input) and, with `gif`,
    OUT/interpolation.gif (frame t shows every input side by side). The frames go through the
    same loop as `translate`, so the first and last equal `translate --style A` / `--style B`.
    Existing files are only replaced with `overwrite`."""
    check_common_options(truncation, batch_size, size)
    check_interpolation(steps, mode, fps)
    out = Path(out)
    check_output_folder(out)
    tr = Translator.open(model, to, device, size, use_ema, precision)
    s1 = styles_mod.resolve_style(style_a, tr, truncation).code
    s2 = styles_mod.resolve_style(style_b, tr, truncation).code
    codes = interpolate_styles(s1, s2, steps, mode)
    spec = input if input is not None else str(preview_inputs(tr.loaded.path, tr.source))
    items = expand_inputs([spec])
    planned = [frame_path(out, item.stem, t, steps) for item in items if not item.problem for t in range(steps)]
    files.refuse_overwrite(planned + [out / STRIP_NAME] + ([out / GIF_NAME] if gif else []), overwrite)
    warn_of_other_frames(out / "frames", {p.name for p in planned})

    strips: list[list[Image.Image]] = []
    frame_paths: list[str] = []
    failed: list[str] = []
    too_large = False  # the strip (and the GIF, which holds the same pixels) would not fit in a picture
    for r, _ in translate_with_progress(tr, items, codes, batch_size, "interpolate", failed):
        for t, frame in enumerate(r.outputs):
            frame_paths.append(str(images.save_png(frame, frame_path(out, r.item.stem, t, steps))))
        if not too_large:
            strips.append(r.outputs)
            width, height = grid_size(strips)
            too_large = width * height > MAX_PICTURE_PIXELS
        if too_large:
            strips.clear()  # frees the frames: they are on disk
    strip = gif_path = None
    if too_large:
        err.print(
            f"[yellow]warning:[/] {STRIP_NAME}{' and ' + GIF_NAME if gif else ''} not written: all frames together "
            f"would exceed {MAX_PICTURE_PIXELS / 1e6:.0f} megapixels (the frames are in {escape(files.display_path(out / 'frames'))})",
            markup=True,
        )
    elif strips:
        strip = str(images.save_png(image_grid(strips), out / STRIP_NAME))
        if gif:
            frames = [image_grid([[row[t] for row in strips]]) for t in range(steps)]
            gif_path = str(images.save_gif(frames, out / GIF_NAME, fps))
    return InterpolateResult(len(items), failed, frame_paths, strip, gif_path)
