"""Inference: translate images, make and reuse style codes, interpolate between styles.

Names follow the paper for the A -> B direction: the source generator encodes x_a into its content
c_a, the target generator decodes c_a with a style s_b into x_ab. Translating B -> A swaps the roles.

Everything here is a plain function the CLI (and the demo) calls. Per-input problems (a missing
file, a broken image) are reported and skipped, and surface once at the end as a PartialFailure;
anything that makes the whole run meaningless (no model, a bad style) raises right away.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import torch
from PIL import Image
from rich.markup import escape

from munit_cli import checkpoint, files, images
from munit_cli.console import err, progress
from munit_cli.errors import MunitError, PartialFailure, UsageError
from munit_cli.models import min_size, size_multiple
from munit_cli.runtime import hash_seed, pick_device

MODEL_ENV = "MUNIT_MODEL"
STDIN = "-"
STYLE_KIND = "munit-style"
STYLE_FORMAT_VERSION = "1"
SEED_PREFIX = "seed:"
DEFAULT_TRANSLATE_OUT = "translated"
STRIP_NAME = "strip.png"
GIF_NAME = "interpolation.gif"
FILE_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg"}
MODES = ("linear", "slerp")

Record = Callable[[dict], None]


# ---------------------------------------------------------------------------------------------
# Model and domains


def resolve_model_path(spec: str | os.PathLike | None) -> Path:
    """The weights file for MODEL: a run folder gives its newest generator checkpoint; a file (a
    generator or an export bundle) is used as is; nothing given falls back to $MUNIT_MODEL.
    The error says everything that was tried."""
    if spec is None or str(spec) == "":
        env = os.environ.get(MODEL_ENV)
        if not env:
            raise UsageError(
                "no model given: tried --model (not given) and $MUNIT_MODEL (not set)",
                hint="pass --model RUN_FOLDER (or a generator or bundle .safetensors), or export MUNIT_MODEL=...",
            )
        return _model_file(Path(env), f"${MODEL_ENV}={env}")
    return _model_file(Path(spec), f"--model {spec}")


def _model_file(path: Path, origin: str) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = checkpoint.newest_generator(path)
        if found is None:
            folder = path / checkpoint.CHECKPOINT_DIR
            raise MunitError(
                f"{origin}: a folder, but no generator checkpoint in it "
                f"(tried {files.display_path(folder)}/gen_*.safetensors)",
                hint="pass a training run folder (munit train --out ...) or a generator or bundle .safetensors file",
            )
        return found
    raise MunitError(f"{origin}: no such file or folder")


def run_folder(model_path: Path) -> Path | None:
    """The training run a generator file belongs to (the folder above its checkpoints/), if any."""
    model_path = Path(model_path)
    if model_path.is_dir():
        return model_path
    if model_path.parent.name == checkpoint.CHECKPOINT_DIR:
        return model_path.parent.parent
    return None


def domain_letter(domain: str) -> str:
    return domain.upper()


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


@dataclass
class Translator:
    """A loaded model, a direction and a working-size rule: everything a translation depends on."""

    loaded: checkpoint.LoadedGenerator
    target: str  # 'a' or 'b'
    device: torch.device
    size: int | None = None  # shorter side to work at; None keeps the input's size

    @classmethod
    def open(
        cls, model: str | os.PathLike | None, to: str, device: str = "auto", size: int | None = None, use_ema: bool = True
    ) -> Translator:
        if size is not None and size < 1:
            raise UsageError(f"--size must be a positive number of pixels, got {size}")
        dev = pick_device(device)
        loaded = checkpoint.load_generator(resolve_model_path(model), dev, use_ema=use_ema)
        return cls(loaded, resolve_domain(to, loaded.names), dev, size)

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
    def mode(self) -> str:
        return "L" if self.loaded.cfg.model.input_dim == 1 else "RGB"

    def work_size(self, width: int, height: int) -> tuple[int, int]:
        """Width and height to run the networks at: the input's (or scaled so the shorter side is
        `size`), rounded to the nearest size the networks take (the same rule as exported graphs)."""
        m = self.loaded.cfg.model
        step, smallest = size_multiple(m), min_size(m)
        scale = 1.0 if self.size is None else self.size / min(width, height)
        return tuple(max(smallest, step * round(v * scale / step)) for v in (width, height))  # type: ignore[return-value]

    def to_input(self, img: Image.Image) -> torch.Tensor:
        """(1, C, h, w) in [-1, 1] at the working size."""
        x = images.to_tensor(images.resize(img, self.work_size(*img.size)))
        return (x.float() / 127.5 - 1.0)[None].to(self.device)

    def to_output(self, x: torch.Tensor, size: tuple[int, int]) -> Image.Image:
        return images.resize(images.tensor_to_image(x.float()), size)

    def open_image(self, source: Path | bytes, name: str | None = None) -> Image.Image:
        return images.open_image(source, mode=self.mode, name=name)

    @torch.no_grad()
    def encode_style(self, img: Image.Image) -> torch.Tensor:
        """The target domain's style of a reference image: (style_dim,)."""
        gen_b = self.loaded.model.generator(self.target)
        return gen_b.style_encoder(self.to_input(img))[0].float().cpu()

    @torch.no_grad()
    def translate(self, x_a: torch.Tensor, styles: torch.Tensor) -> list[torch.Tensor]:
        """x_a (n, C, h, w) -> one x_ab (n, C, h, w) per style in `styles` (K, style_dim); the
        content is encoded once and shared by every style."""
        gen_a = self.loaded.model.generator(self.source)
        gen_b = self.loaded.model.generator(self.target)
        c_a = gen_a.content_encoder(x_a)
        n = x_a.shape[0]
        return [gen_b.decode(c_a, s_b.expand(n, -1)) for s_b in styles.to(self.device)]


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass
class InputItem:
    """One image to translate. `stem` names its outputs (unique within a run); `problem` marks an
    input known to be unusable before reading it (a glob that matched nothing)."""

    name: str
    stem: str
    path: Path | None = None
    data: bytes | None = None
    problem: str | None = None

    @property
    def source(self) -> Path | bytes:
        return self.data if self.data is not None else self.path  # type: ignore[return-value]


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or name-2, name-3, ... when taken; the result is added to `taken`."""
    unique, n = name, 1
    while unique in taken:
        n += 1
        unique = f"{name}-{n}"
    taken.add(unique)
    return unique


def read_stdin(stream: BinaryIO | None = None) -> bytes:
    stream = stream or sys.stdin.buffer
    if stream.isatty():
        raise UsageError("'-' reads image bytes from stdin, but stdin is a terminal", hint="cat in.png | munit ... -")
    return stream.read()


def expand_inputs(specs: Sequence[str], stdin: BinaryIO | None = None) -> list[InputItem]:
    """Files, folders (recursively, sorted), globs (sorted) and '-' (stdin, once) as input items,
    in the order given. Missing files stay in the list: reading them fails per input, later."""
    import glob

    items: list[InputItem] = []
    stems: set[str] = set()

    def add(name: str, stem: str, **kwargs) -> None:
        items.append(InputItem(name, unique_name(stem, stems), **kwargs))

    def add_path(path: Path, name: str) -> None:
        if path.is_dir():
            found = images.list_images(path)
            if not found:
                add(name, path.name or "folder", problem="no images found in this folder")
            for p in found:
                add(files.display_path(p), p.relative_to(path).with_suffix("").as_posix(), path=p)
        else:
            add(name, path.stem or "image", path=path)

    if list(specs).count(STDIN) > 1:
        raise UsageError("'-' (stdin) can be given only once")
    for spec in specs:
        if spec == STDIN:
            add("stdin", "stdin", data=read_stdin(stdin))
        elif any(ch in spec for ch in "*?[") and not Path(spec).exists():
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                add(spec, Path(spec).stem or "glob", problem="no files match this pattern")
            for match in matches:
                add_path(Path(match), files.display_path(match))
        else:
            add_path(Path(spec), files.display_path(spec))
    if not items:
        raise UsageError("no inputs given")
    return items


# ---------------------------------------------------------------------------------------------
# Styles


@dataclass
class Style:
    """A style code for the target domain. `label` is a spec that gives it back (seed:7:2, a file);
    `tag` is a short unique name for files made with it."""

    label: str
    tag: str
    code: torch.Tensor  # (style_dim,)


def sample_style(seed: int, index: int, style_dim: int, truncation: float = 1.0) -> torch.Tensor:
    """Style `index` of `seed`, drawn from N(0, I) by a generator of its own, so it is the same
    whatever else is sampled, translated or batched; scaled by `truncation` toward the mean 0."""
    g = torch.Generator().manual_seed(hash_seed(seed, "style", index))
    return torch.randn(style_dim, generator=g) * truncation


def check_options(truncation: float = 1.0, batch_size: int = 1) -> None:
    if not 0 < truncation <= 1:
        raise UsageError(f"--truncation must be in (0, 1], got {truncation}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")


def seed_label(seed: int, index: int) -> str:
    return f"{SEED_PREFIX}{seed}" if index == 0 else f"{SEED_PREFIX}{seed}:{index}"


def parse_seed_spec(spec: str) -> tuple[int, int]:
    parts = spec[len(SEED_PREFIX) :].split(":")
    try:
        if len(parts) > 2:
            raise ValueError
        seed, index = int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise UsageError(f"bad style {spec!r}: expected seed:N or seed:N:K (integers)") from None
    if index < 0:
        raise UsageError(f"bad style {spec!r}: the style index K must be 0 or more")
    return seed, index


def style_metadata(tr: Translator, domain: str, source: str) -> dict[str, str]:
    return {
        "format": STYLE_KIND,
        "format_version": STYLE_FORMAT_VERSION,
        "domain": domain_letter(domain),
        "domain_name": tr.domain_name(domain),
        "style_dim": str(tr.style_dim),
        "fingerprint": tr.loaded.fingerprint,
        "source": source,
    }


def save_style(path: Path, code: torch.Tensor, tr: Translator, domain: str, source: str) -> Path:
    """A style file: the code as tensor 'style' (style_dim,), and metadata naming its model and domain."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MunitError(f"could not write {files.display_path(path)}: {exc.strerror or exc}") from None
    checkpoint.save_tensors(path, {"style": code.float().reshape(-1)}, style_metadata(tr, domain, source))
    return path


def load_style(path: Path, tr: Translator, domain: str) -> torch.Tensor:
    """The code of a style file made by this model for `domain`; anything else is a clear error."""
    tensors, meta = checkpoint.read_tensors(path, STYLE_KIND)
    name = files.display_path(path)
    if meta.get("format_version") != STYLE_FORMAT_VERSION:
        raise MunitError(f"{name}: unsupported style format version {meta.get('format_version')!r}")
    if meta.get("fingerprint") != tr.loaded.fingerprint:
        raise MunitError(
            f"{name}: this style was made by another model (fingerprint {meta.get('fingerprint')!r}, "
            f"this model {tr.loaded.fingerprint!r})",
            hint="a style works only with the run that made it: make one for this model with "
            "`munit style encode` or `munit style sample`",
        )
    if meta.get("domain") != domain_letter(domain):
        raise MunitError(
            f"{name}: a style for domain {meta.get('domain')} ({meta.get('domain_name')}), "
            f"but this needs one for {tr.domain_label(domain)}",
            hint=f"translate with --to {meta.get('domain')}, or make a style for {domain_letter(domain)}",
        )
    code = tensors.get("style")
    if code is None or code.numel() != tr.style_dim:
        raise MunitError(f"{name}: broken style file (expected a 'style' tensor of {tr.style_dim} values)")
    return code.float().reshape(-1)


def resolve_style(spec: str, tr: Translator, truncation: float = 1.0) -> Style:
    """A style for the target domain from `seed:N[:K]`, a style file or a reference image
    (encoded by the target domain's style encoder). Truncation applies to sampled styles only."""
    if spec.startswith(SEED_PREFIX):
        seed, index = parse_seed_spec(spec)
        tag = f"seed{seed}" if index == 0 else f"seed{seed}-{index}"
        return Style(seed_label(seed, index), tag, sample_style(seed, index, tr.style_dim, truncation))
    path = Path(spec)
    if not path.is_file():
        raise UsageError(
            f"style {spec!r}: no such file", hint="a style is a style file (.safetensors), a reference image or seed:N"
        )
    if path.suffix.lower() in images.IMAGE_EXTENSIONS:
        code = tr.encode_style(tr.open_image(path))
    else:
        code = load_style(path, tr, tr.target)
    return Style(spec, path.stem or "style", code)


def resolve_styles(
    tr: Translator, specs: Sequence[str] = (), num_styles: int | None = None, seed: int = 0, truncation: float = 1.0
) -> list[Style]:
    """`--style` specs in order, or `num_styles` sampled styles seed:SEED, seed:SEED:1, ...
    (one when neither is given). Tags are made unique."""
    if specs and num_styles is not None:
        raise UsageError("give --style or --num-styles, not both", hint="add seed:N to --style for sampled styles")
    if num_styles is not None and num_styles < 1:
        raise UsageError(f"--num-styles must be at least 1, got {num_styles}")
    specs = list(specs) or [seed_label(seed, k) for k in range(num_styles or 1)]
    styles = [resolve_style(spec, tr, truncation) for spec in specs]
    tags: set[str] = set()
    for style in styles:
        style.tag = unique_name(style.tag, tags)
    return styles


def style_paths(folder: Path, styles: Sequence[Style]) -> list[Path]:
    return [Path(folder) / f"{s.tag}.safetensors" for s in styles]


def save_styles(folder: Path, styles: Sequence[Style], tr: Translator) -> list[Path]:
    return [save_style(path, s.code, tr, tr.target, s.label) for path, s in zip(style_paths(folder, styles), styles)]


# ---------------------------------------------------------------------------------------------
# The translation loop (shared by translate and interpolate)


@dataclass
class Result:
    item: InputItem
    image: Image.Image | None = None  # the input as read
    outputs: list[Image.Image] = field(default_factory=list)  # one per style, at the input's size
    error: str | None = None


def iter_translations(
    tr: Translator, items: Sequence[InputItem], styles: torch.Tensor, batch_size: int = 1, bar=None
) -> Iterator[Result]:
    """Translate every input with every style (K, style_dim), `batch_size` inputs at a time, in
    input order. An input that cannot be read yields a Result with `error` and the rest go on.

    Styles never depend on the batch; pixels can differ in the last bit between batch sizes
    (batched convolutions round differently), so the default batch size of 1 is the reference."""
    for start in range(0, len(items), batch_size):
        results = [_read(tr, item) for item in items[start : start + batch_size]]
        by_size: dict[tuple[int, int], list[Result]] = {}
        for r in results:
            if r.error is None:
                by_size.setdefault(tr.work_size(*r.image.size), []).append(r)  # type: ignore[union-attr]
        for group in by_size.values():
            _translate_group(tr, group, styles)
        for r in results:
            if bar is not None:
                bar.update(1)
            yield r


def _read(tr: Translator, item: InputItem) -> Result:
    try:
        if item.problem:
            raise images.ImageError(item.name, item.problem)
        return Result(item, tr.open_image(item.source, name=item.name))
    except MunitError as exc:
        return Result(item, error=str(exc))


def _translate_group(tr: Translator, group: list[Result], styles: torch.Tensor) -> None:
    x_a = torch.cat([tr.to_input(r.image) for r in group])
    try:
        x_ab = tr.translate(x_a, styles)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        for r in group:
            r.error = f"{r.item.name}: out of GPU memory at {x_a.shape[-1]}x{x_a.shape[-2]} (try --size or --batch-size 1)"
        return
    for i, r in enumerate(group):
        r.outputs = [tr.to_output(x[i], r.image.size) for x in x_ab]


def translated(
    tr: Translator, items: Sequence[InputItem], styles: torch.Tensor, batch_size: int, task: str, failed: list[str]
) -> Iterator[Result]:
    """`iter_translations` under a progress bar, yielding only the inputs that translated; each
    one that could not be read is reported on stderr and its name appended to `failed`."""
    with progress(task, len(items), enabled=len(items) > 1) as bar:
        for r in iter_translations(tr, items, styles, batch_size, bar):
            if r.error is None:
                yield r
            else:
                err.print(f"[yellow]skipped:[/] {escape(r.error)}", markup=True)
                failed.append(r.item.name)


def raise_for_failures(failed: Sequence[str], total: int) -> None:
    """After the work: exit 3 when some inputs failed, 1 when all did."""
    if not failed:
        return
    listed = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
    if len(failed) == total:
        raise MunitError(f"no input could be translated ({listed})")
    raise PartialFailure(f"{len(failed)} of {total} inputs failed ({listed}); the others were translated")


def image_grid(rows: Sequence[Sequence[Image.Image]], pad: int = 2) -> Image.Image:
    """Rows of images on white, each in a cell the size of the largest image, centred. A single
    image needs no grid and comes back as is."""
    if len(rows) == 1 and len(rows[0]) == 1:
        return rows[0][0]
    cell_w = max(img.width for row in rows for img in row)
    cell_h = max(img.height for row in rows for img in row)
    columns = max(len(row) for row in rows)
    mode = rows[0][0].mode
    white = 255 if mode == "L" else (255, 255, 255)
    grid = Image.new(mode, (pad + columns * (cell_w + pad), pad + len(rows) * (cell_h + pad)), white)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            x = pad + c * (cell_w + pad) + (cell_w - img.width) // 2
            y = pad + r * (cell_h + pad) + (cell_h - img.height) // 2
            grid.paste(img, (x, y))
    return grid


# ---------------------------------------------------------------------------------------------
# translate


@dataclass
class TranslateSummary:
    total: int
    outputs: int
    failed: list[str]
    out: str
    styles: list[str]

    def raise_for_failures(self) -> None:
        raise_for_failures(self.failed, self.total)


def output_target(out: str | os.PathLike | None, reads_stdin: bool) -> tuple[str, Path | None]:
    """('stdout', None), ('file', path) or ('dir', path). Without --out: stdout when the input
    came from stdin (a pipeline), else the folder 'translated'."""
    if out is None:
        out = STDIN if reads_stdin else DEFAULT_TRANSLATE_OUT
    if str(out) == STDIN:
        return "stdout", None
    path = Path(out)
    if path.suffix.lower() in FILE_FORMATS and not path.is_dir():
        return "file", path
    return "dir", path


def translate(
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
    on_record: Record | None = None,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    overwrite: bool = False,
) -> TranslateSummary:
    """Translate every input with every style and write the results.

    A folder gets INPUTSTEM_STYLETAG.png per output (or INPUTSTEM_grid.png per input with `grid`:
    the input, then its translations). A file or stdout gets the single output, or a grid of all
    inputs (one row each) when there are several. `on_record` receives {input, style, path} per
    output as it is written. Existing files are only replaced with `overwrite`."""
    check_options(truncation, batch_size)
    kind, target = output_target(out, STDIN in inputs)
    if kind == "stdout":
        stdout = stdout or sys.stdout.buffer
        if on_record is not None:
            raise UsageError("--json and --out - both write to stdout", hint="write the images to a folder with --out DIR")
        if stdout.isatty():
            raise UsageError("refusing to write PNG bytes to a terminal", hint="redirect stdout (> out.png) or pass --out")
    items = expand_inputs(inputs, stdin)
    tr = Translator.open(model, to, device, size, use_ema)
    chosen = resolve_styles(tr, styles, num_styles, seed, truncation)
    planned = [target] if kind == "file" else []
    if kind == "dir":
        planned += [p for item in items if not item.problem for p in folder_outputs(target, item.stem, chosen, grid)]
    if save_styles_to is not None:
        planned += style_paths(save_styles_to, chosen)
    files.refuse_overwrite(planned, overwrite)
    if save_styles_to is not None:
        save_styles(save_styles_to, chosen, tr)
    codes = torch.stack([s.code for s in chosen])
    records = on_record or (lambda record: None)
    sink_label = STDIN if kind == "stdout" else files.display_path(target)  # type: ignore[arg-type]

    rows: list[list[Image.Image]] = []
    failed: list[str] = []
    written = 0
    for r in translated(tr, items, codes, batch_size, "translate", failed):
        if kind == "dir":
            paths = _save_in_folder(target, r, chosen, grid)  # type: ignore[arg-type]
        else:
            rows.append([r.image, *r.outputs])
            paths = [sink_label] * len(chosen)
        written += len(r.outputs)
        for style, path in zip(chosen, paths):
            records({"input": r.item.name, "style": style.label, "path": path})

    if rows:
        single = len(rows) == 1 and len(chosen) == 1 and not grid
        picture = rows[0][1] if single else image_grid(rows)
        fmt = FILE_FORMATS.get(target.suffix.lower(), "png") if kind == "file" else "png"  # type: ignore[union-attr]
        data = images.encode_image(picture, fmt)
        if kind == "file":
            files.write_atomic(target, data)  # type: ignore[arg-type]
        else:
            stdout.write(data)  # type: ignore[union-attr]
            stdout.flush()  # type: ignore[union-attr]
    return TranslateSummary(len(items), written, failed, sink_label, [s.label for s in chosen])


def folder_outputs(folder: Path, stem: str, styles: Sequence[Style], grid: bool) -> list[Path]:
    """The files one input's translations go to in a folder: one per style, or one grid."""
    if grid:
        return [folder / f"{stem}_grid.png"]
    return [folder / f"{stem}_{s.tag}.png" for s in styles]


def _save_in_folder(folder: Path, r: Result, styles: Sequence[Style], grid: bool) -> list[str]:
    """What one input's outputs were written to, one path per style (the same grid for all)."""
    paths = folder_outputs(folder, r.item.stem, styles, grid)
    if grid:
        images.save_png(image_grid([[r.image, *r.outputs]]), paths[0])  # type: ignore[list-item]
        return [str(paths[0])] * len(styles)
    return [str(images.save_png(img, path)) for img, path in zip(r.outputs, paths)]


# ---------------------------------------------------------------------------------------------
# Style files from the command line


def encode_style_file(
    image: Path,
    *,
    model: str | os.PathLike | None,
    domain: str,
    out: Path,
    size: int | None = None,
    device: str = "auto",
    use_ema: bool = True,
    overwrite: bool = False,
) -> Path:
    """The style of `image` as seen by `domain`'s style encoder, saved as a style file."""
    files.refuse_overwrite([Path(out)], overwrite)
    tr = Translator.open(model, domain, device, size, use_ema)
    code = tr.encode_style(tr.open_image(Path(image)))
    return save_style(out, code, tr, tr.target, files.display_path(image))


def sample_style_file(
    *,
    model: str | os.PathLike | None,
    domain: str,
    out: Path,
    seed: int = 0,
    index: int = 0,
    truncation: float = 1.0,
    overwrite: bool = False,
) -> Path:
    """Style seed:SEED[:INDEX] (the same one `--style seed:SEED` gives), saved as a style file."""
    check_options(truncation)
    if index < 0:
        raise UsageError(f"--index must be 0 or more, got {index}")
    files.refuse_overwrite([Path(out)], overwrite)
    tr = Translator.open(model, domain, "cpu")
    code = sample_style(seed, index, tr.style_dim, truncation)
    return save_style(out, code, tr, tr.target, seed_label(seed, index))


# ---------------------------------------------------------------------------------------------
# interpolate


def interpolate_styles(s1: torch.Tensor, s2: torch.Tensor, steps: int, mode: str = "linear") -> torch.Tensor:
    """(steps, style_dim) codes from s1 to s2; the ends are s1 and s2 bit for bit. slerp follows
    the great circle (codes keep a prior-like norm); it falls back to linear for (anti)parallel codes."""
    if steps < 2:
        raise UsageError(f"--steps must be at least 2, got {steps}")
    if mode not in MODES:
        raise UsageError(f"unknown --mode {mode!r}", hint=f"use {' or '.join(MODES)}")
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
class InterpolateSummary:
    total: int
    failed: list[str]
    frames: list[str]
    strip: str | None
    gif: str | None

    def raise_for_failures(self) -> None:
        raise_for_failures(self.failed, self.total)

    def to_dict(self) -> dict:
        return {"frames": self.frames, "strip": self.strip, "gif": self.gif, "failed": self.failed}


def _frame_path(out: Path, stem: str, t: int) -> Path:
    return out / "frames" / f"{stem}_{t:03d}.png"


def preview_inputs(model_path: Path, source: str) -> Path:
    """The fixed preview inputs a training run saved for `source` (preview/A or preview/B)."""
    run = run_folder(model_path)
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
    stdin: BinaryIO | None = None,
    overwrite: bool = False,
) -> InterpolateSummary:
    """Translate the input(s) with styles moving from `style_a` to `style_b` in `steps` frames.

    Writes OUT/frames/STEM_NNN.png, OUT/strip.png (a row of frames per input) and, with `gif`,
    OUT/interpolation.gif (frame t shows every input side by side). The frames go through the
    same loop as `translate`, so the first and last equal `translate --style A` / `--style B`.
    Existing files are only replaced with `overwrite`."""
    check_options(truncation, batch_size)
    if fps <= 0:
        raise UsageError(f"--fps must be positive, got {fps}")
    tr = Translator.open(model, to, device, size, use_ema)
    s1 = resolve_style(style_a, tr, truncation).code
    s2 = resolve_style(style_b, tr, truncation).code
    codes = interpolate_styles(s1, s2, steps, mode)
    spec = input if input is not None else str(preview_inputs(tr.loaded.path, tr.source))
    items = expand_inputs([spec], stdin)
    out = Path(out)
    planned = [_frame_path(out, item.stem, t) for item in items if not item.problem for t in range(steps)]
    files.refuse_overwrite(planned + [out / STRIP_NAME] + ([out / GIF_NAME] if gif else []), overwrite)

    strips: list[list[Image.Image]] = []
    frame_paths: list[str] = []
    failed: list[str] = []
    for r in translated(tr, items, codes, batch_size, "interpolate", failed):
        strips.append(r.outputs)
        for t, frame in enumerate(r.outputs):
            frame_paths.append(str(images.save_png(frame, _frame_path(out, r.item.stem, t))))
    strip = gif_path = None
    if strips:
        strip = str(images.save_png(image_grid(strips), out / STRIP_NAME))
        if gif:
            frames = [image_grid([[row[t] for row in strips]]) for t in range(steps)]
            gif_path = str(images.save_gif(frames, out / GIF_NAME, fps))
    return InterpolateSummary(len(items), failed, frame_paths, strip, gif_path)
