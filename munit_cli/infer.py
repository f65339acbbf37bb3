"""Inference: the model as a translator, and the loop every inference command shares.

Names follow the paper for the A -> B direction: the source generator encodes x_a into its content
c_a, the target generator decodes c_a with a style s_b into x_ab. Translating B -> A swaps the roles.

The commands build on this: translate.py (images to files, folders or stdout), interpolate.py
(morphs between two styles), stylefiles.py (style files from the command line). Per-input problems
(a missing file, a broken image, an image too large for the memory budget) are reported and
skipped, and surface once at the end as a PartialFailure; anything that makes the whole run
meaningless (no model, a bad style, a bad option) raises before any work.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Sequence

import torch
from PIL import Image
from rich.markup import escape

from munit_cli import checkpoint, files, images, runtime, tiles
from munit_cli import styles as styles_mod
from munit_cli.console import err, progress
from munit_cli.errors import MunitError, PartialFailure, UsageError
from munit_cli.inputs import InputItem
from munit_cli.models import min_size, size_multiple
from munit_cli.runtime import pick_device
from munit_cli.styles import domain_letter

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


def check_common_options(truncation: float = 1.0, batch_size: int = 1, size: int | None = None, tile: int | None = None) -> None:
    styles_mod.check_truncation(truncation)
    if tile is not None and tile < 1:
        raise UsageError(f"--tile must be a positive number of pixels, got {tile}")
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
    tile: int | None = None  # tile side for tiled translation; None tiles only inputs over the budget

    @classmethod
    def open(
        cls,
        model: str | os.PathLike | None,
        to: str,
        device: str = "auto",
        size: int | None = None,
        use_ema: bool = True,
        precision: str = "auto",
        tile: int | None = None,
    ) -> Translator:
        check_common_options(size=size, tile=tile)
        dev = pick_device(device)
        loaded = checkpoint.load_model(model, dev, use_ema=use_ema)
        return cls.of(loaded, resolve_domain(to, loaded.names), dev, size, precision, tile)

    @classmethod
    def of(
        cls,
        loaded: checkpoint.LoadedGenerator,
        target: str,
        device: torch.device,
        size: int | None = None,
        precision: str = "auto",
        tile: int | None = None,
    ) -> Translator:
        """A translator for a model already loaded on `device`; `precision` as `--precision` takes it."""
        resolved, channels_last = runtime.resolve_precision(precision, True, device)
        if channels_last:
            loaded.model.to(memory_format=torch.channels_last)
        tr = cls(loaded, target, device, size, resolved, tile)
        if tile is not None:
            tiles.check_tile(tr, tile)
        largest = math.isqrt(MEMORY_BUDGET // (3 * 3 * 4))  # a square's blend buffers, one translation
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

    def check_fits(self, width: int, height: int, name: str, outputs: int = 1, size: int | None = None, whole: bool = False) -> None:
        """Refuse an input whose `outputs` translations at its own size would not fit in
        OUTPUT_BUDGET, and one whose working size would not fit MEMORY_BUDGET where it must be
        worked `whole` (style encoding, evaluation), or whose blend buffers would not fit when tiled
        (the input and every output in float32 on the CPU). Translation tiles what is too large."""
        channels = 1 if self.mode == "L" else 3
        held = outputs * width * height * channels
        if held > OUTPUT_BUDGET:
            raise images.ImageError(
                name,
                f"{outputs} translations at {width}x{height} would hold {held / (1 << 30):.1f} GiB of images, over "
                f"the {_gib(OUTPUT_BUDGET)} budget; use fewer styles or steps, or a smaller input",
            )
        w, h = self.work_size(width, height, size)
        if whole and w * h > self.max_pixels:
            smallest = min_size(self.loaded.cfg.model)
            aspect = max(width, height) / min(width, height)
            fits = math.isqrt(int(self.max_pixels / aspect))
            hint = f"pass --size {fits} or less to work smaller" if fits >= smallest else "its sides are too unequal to fit at any --size"
            raise images.ImageError(
                name,
                f"{width}x{height} would be worked at {w}x{h}, over the {_gib(MEMORY_BUDGET)} memory budget of "
                f"inference ({self.max_pixels / 1e6:.1f} megapixels for this model); {hint}",
            )
        buffers = (outputs + 2) * w * h * channels * 4
        if not whole and self.tiled(width, height) and buffers > MEMORY_BUDGET:
            raise images.ImageError(
                name,
                f"tiled at {w}x{h}, {outputs} translation{'s' if outputs > 1 else ''} would need {buffers / (1 << 30):.1f} GiB "
                f"of blend buffers, over the {_gib(MEMORY_BUDGET)} memory budget; use fewer styles, or --size to work smaller",
            )

    def tiled(self, width: int, height: int) -> bool:
        """Whether an input of this size is translated in tiles: always with --tile, else when its
        working size would not fit the memory budget in one pass."""
        return self.tile is not None or tiles.needs_tiling(self, width, height)

    def read_image(
        self, source: Path | bytes, name: str | None = None, outputs: int = 1, size: int | None = None, whole: bool = False
    ) -> Image.Image:
        """An input decoded in the model's colour mode. A file that is not a regular file, or whose
        size (read from its header, before decoding) does not fit `check_fits`, is refused."""
        name = name or (files.display_path(source) if isinstance(source, Path) else "image data")
        data = source if isinstance(source, bytes) else images.read_bytes(source)
        claimed = _header_size(data)
        if claimed is not None:
            self.check_fits(*claimed, name, outputs, size, whole)
        img = images.open_image(data, mode=self.mode, name=name)
        self.check_fits(*img.size, name, outputs, size, whole)  # EXIF orientation may have turned it
        return img

    def to_input(self, img: Image.Image, on_device: bool = True) -> torch.Tensor:
        """(1, C, h, w) in [-1, 1] at the working size; on the CPU with `on_device=False` (tiled
        translation moves one tile at a time)."""
        x = (images.to_tensor(images.resize(img, self.work_size(*img.size))).float() / 127.5 - 1.0)[None]
        if not on_device:
            return x
        layout = torch.channels_last if self.precision == "bf16" else torch.contiguous_format
        return x.to(self.device).contiguous(memory_format=layout)

    def to_output(self, x: torch.Tensor, size: tuple[int, int]) -> Image.Image:
        return images.resize(images.tensor_to_image(x.float()), size)

    @torch.no_grad()
    def encode_style(self, img: Image.Image) -> torch.Tensor:
        """The target domain's style of a reference image: (style_dim,)."""
        gen_b = self.loaded.model.generator(self.target)
        with runtime.autocast(self.device, self.precision):
            return gen_b.style_encoder(self.to_input(img))[0].float().cpu()

    def reference_style(self, path: Path) -> torch.Tensor:
        return self.encode_style(self.read_image(path, whole=True))

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
            if r.image is not None and tr.tiled(*r.image.size):
                r.outputs = translate_tiled(tr, r.image, styles, bar)
            elif r.image is not None:
                by_size.setdefault(tr.work_size(*r.image.size), []).append((r, r.image))
        for (w, h), group in by_size.items():
            per_pass = max(1, tr.max_pixels // (w * h))
            for first in range(0, len(group), per_pass):
                _translate_group(tr, group[first : first + per_pass], styles)
        for r in results:
            if bar is not None:
                bar.update(1)
            yield r


def translate_tiled(tr: Translator, image: Image.Image, styles: torch.Tensor, bar=None) -> list[Image.Image]:
    """One input in every style, tile by tile (`tiles.py`), back at the input's size. Progress goes
    to `bar`'s status when a bar is shown, else to a bar of its own over the tiles."""
    x_a = tr.to_input(image, on_device=False)
    tile = tr.tile or tiles.default_tile(tr)
    step = size_multiple(tr.loaded.cfg.model)
    total = tiles.count_tiles(x_a.shape[-1], x_a.shape[-2], tile, tiles.default_overlap(tile, step), step)
    done = 0

    def on_tile() -> None:
        nonlocal done
        done += 1
        shown.update(0 if shown is bar else 1, status=f"tile {done}/{total}")

    with contextlib.nullcontext(bar) if bar is not None and bar.shown else progress("tiles", total, enabled=total > 1) as shown:
        x_ab = tiles.translate_tiled(tr, x_a, styles, tile, on_tile)
    return [tr.to_output(x, image.size) for x in x_ab]


def translate_image(tr: Translator, image: Image.Image, styles: torch.Tensor, bar=None) -> list[Image.Image]:
    """One input in every style (K, style_dim), whole or tiled as `Translator.tiled` says."""
    if tr.tiled(*image.size):
        return translate_tiled(tr, image, styles, bar)
    return [tr.to_output(x[0], image.size) for x in tr.translate_batch(tr.to_input(image), styles)]


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


def note_shortened(count: int) -> None:
    """Once per command, when output names derived from input names had to be shortened."""
    if count:
        err.print(
            f"[yellow]note:[/] {count} output name{'s' if count > 1 else ''} would be longer than "
            f"{files.MAX_NAME_BYTES} bytes, which file systems refuse, so {'they were' if count > 1 else 'it was'} "
            "shortened: cut, then '~' and a hash of the full name; --json gives each full name",
            markup=True,
        )


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
