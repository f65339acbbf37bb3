"""`munit interpolate`: translations whose style moves from one style to another, as frames, a
strip and a GIF."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from rich.markup import escape

from munit_cli import checkpoint, files, images, video
from munit_cli import styles as styles_mod
from munit_cli.console import err
from munit_cli.errors import MunitError, UsageError
from munit_cli.infer import (
    MAX_PICTURE_PIXELS,
    Translator,
    check_common_options,
    check_output_folder,
    grid_size,
    image_grid,
    note_shortened,
    raise_for_failures,
    translate_with_progress,
)
from munit_cli.inputs import expand_inputs
from munit_cli.results import Result
from munit_cli.styles import domain_letter

STRIP_NAME = "strip.png"
GIF_NAME = "interpolation.gif"
MP4_NAME = "interpolation.mp4"
MODES = ("linear", "slerp")
MAX_STEPS = 10_000  # interpolation frames
FPS_RANGE = (0.01, 100.0)  # a GIF frame lasts 10 ms to 655 s; outside that Pillow cannot write it


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
    mp4: str | None
    full_names: dict[str, str]  # frame path -> the name before shortening, for names too long to write

    def raise_for_failures(self) -> None:
        raise_for_failures(self.failed, self.total)


def frame_name(stem: str, t: int, steps: int) -> str:
    """Frame numbers have as many digits as the last one needs (at least 3), so names sort in order."""
    return f"{stem}_{t:0{max(3, len(str(steps - 1)))}d}.png"


def frame_path(out: Path, stem: str, t: int, steps: int) -> Path:
    """OUT/frames/STEM_NNN.png, with STEM shortened when the name would not fit a file system."""
    head, sep, last = stem.rpartition("/")
    return out / "frames" / (head + sep + files.fit_name(last, frame_name("", t, steps)))


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
    mp4: bool = False,
    fps: float = 8.0,
    out: Path = Path("interpolation"),
    size: int | None = None,
    tile: int | None = None,
    truncation: float = 1.0,
    batch_size: int = 1,
    device: str = "auto",
    use_ema: bool = True,
    precision: str = "auto",
    overwrite: bool = False,
) -> InterpolateResult:
    """Translate the input(s) with styles moving from `style_a` to `style_b` in `steps` frames.

    Writes OUT/frames/STEM_NNN.png, OUT/strip.png (a row of frames per input) and, with `gif` and
    `mp4`, OUT/interpolation.gif and .mp4 (frame t shows every input side by side). The frames go through the
    same loop as `translate`, so the first and last equal `translate --style A` / `--style B`.
    Existing files are only replaced with `overwrite`."""
    check_common_options(truncation, batch_size, size, tile)
    check_interpolation(steps, mode, fps)
    out = Path(out)
    check_output_folder(out)
    tr = Translator.open(model, to, device, size, use_ema, precision, tile)
    s1 = styles_mod.resolve_style(style_a, tr, truncation).code
    s2 = styles_mod.resolve_style(style_b, tr, truncation).code
    codes = interpolate_styles(s1, s2, steps, mode)
    spec = input if input is not None else str(preview_inputs(tr.loaded.path, tr.source))
    items = expand_inputs([spec])
    wanted = {  # planned path -> the name it would have without shortening
        frame_path(out, item.stem, t, steps): frame_name(item.stem.rpartition("/")[2], t, steps)
        for item in items
        if not item.problem
        for t in range(steps)
    }
    planned = list(wanted)
    movies = [name for name, wanted_one in ((GIF_NAME, gif), (MP4_NAME, mp4)) if wanted_one]
    files.refuse_overwrite(planned + [out / STRIP_NAME] + [out / name for name in movies], overwrite)
    note_shortened(sum(path.name != name for path, name in wanted.items()))
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
    strip = gif_path = mp4_path = None
    if too_large:
        err.print(
            f"[yellow]warning:[/] {' and '.join([STRIP_NAME, *movies])} not written: all frames together "
            f"would exceed {MAX_PICTURE_PIXELS / 1e6:.0f} megapixels (the frames are in {escape(files.display_path(out / 'frames'))})",
            markup=True,
        )
    elif strips:
        strip = str(images.save_png(image_grid(strips), out / STRIP_NAME))
        frames = [image_grid([[row[t] for row in strips]]) for t in range(steps)] if movies else []
        if gif:
            gif_path = str(images.save_gif(frames, out / GIF_NAME, fps))
        if mp4:
            video.write_frames(frames, out / MP4_NAME, fps)
            mp4_path = str(out / MP4_NAME)
    written = set(frame_paths)
    full_names = {str(path): name for path, name in wanted.items() if path.name != name and str(path) in written}
    return InterpolateResult(len(items), failed, frame_paths, strip, gif_path, mp4_path, full_names)
