"""Image I/O shared by prepare, training and inference.

Every image that enters munit goes through `open_image`, so a broken download or an odd colour
mode becomes one clear `ImageError` with a short reason instead of a crash deep inside training.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from munit_cli import files
from munit_cli.errors import MunitError
from munit_cli.files import display_path

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

# Twice Pillow's default warning threshold, which is where Pillow itself refuses to decode.
DEFAULT_MAX_PIXELS = 178_956_970

# Modes that store more than 8 bits per sample; Pillow's own convert() clips them instead of scaling.
_HIGH_BIT_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}

ImageLike = Union[Image.Image, "torch.Tensor"]


class ImageError(MunitError):
    """An input image that cannot be used; `reason` is the short text prepare reports per file."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.reason = reason


# The largest file read as an image. Real photos stay far below it (a 179-megapixel 16-bit TIFF
# is about 1 GiB); a larger "image" is a mistake or a stream that never ends (/dev/zero).
MAX_FILE_BYTES = 1 << 30
_OVERSIZED = f"too large (over {MAX_FILE_BYTES >> 30} GiB)"


class ImageScan(NamedTuple):
    found: list[Path]  # image files (and other entries named like images: reading them says why not)
    skipped: list[tuple[Path, str]]  # links not followed, unreadable folders, second names of a file, with the reason


def scan_images(folder: Path, recursive: bool = True) -> ImageScan:
    """Image files under `folder`, sorted; hidden files and folders are left out.

    Links to files are followed wherever they point (a folder of links into a collection is a
    common way to split a dataset; munit only reads them), as long as they end at a regular file.
    Links to folders are followed only while their target stays inside `folder` (by real path) and
    is not a folder above them, so a link to / or into the other domain's folder pulls nothing in
    and a loop ends. Each real file and folder is listed once, under its own path when it has one
    in the tree. What is not followed comes back in `skipped` with the reason."""
    folder = Path(folder)
    if not folder.exists():
        raise MunitError(f"{display_path(folder)}: no such folder")
    if not folder.is_dir():
        raise MunitError(f"{display_path(folder)}: not a folder")
    top = os.path.realpath(folder)
    scan = ImageScan([], [])
    seen_dirs: set[str] = set()
    seen_files: dict[tuple[int, int], Path] = {}
    dirs: list[Path] = [folder]
    linked_dirs: list[Path] = []
    linked_files: list[Path] = []
    while dirs or linked_dirs:
        # Real folders first, so that a file reachable both ways is listed under its own path.
        current = dirs.pop() if dirs else linked_dirs.pop()
        if os.path.realpath(current) in seen_dirs:
            continue
        seen_dirs.add(os.path.realpath(current))
        try:
            entries = sorted(os.scandir(current), key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            scan.skipped.append((Path(current), f"unreadable folder ({exc.strerror or exc})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if os.path.isdir(target):
                    if not recursive:
                        continue
                    why = _unfollowed_folder(top, target, os.path.realpath(current))
                    if why:
                        scan.skipped.append((path, f"{why} (to {display_path(target)})"))
                    else:
                        linked_dirs.append(path)
                elif _is_image_name(entry.name) or _is_image_name(target):
                    why = _unfollowed_file(target)
                    if why:
                        scan.skipped.append((path, f"{why} (to {display_path(target)})"))
                    else:
                        linked_files.append(path)
            elif entry.is_dir(follow_symlinks=False):
                if recursive:
                    dirs.append(path)
            elif _is_image_name(entry.name):
                _add_once(scan, seen_files, path, follow=False)
    for path in linked_files:
        _add_once(scan, seen_files, path, follow=True)
    scan.found.sort()
    scan.skipped.sort()
    return scan


def _unfollowed_folder(top: str, target: str, parent: str) -> str | None:
    """Why a link to the folder `target`, found in the real folder `parent`, is not followed."""
    if os.path.commonpath([top, target]) != top:
        return "link leaves the folder"
    if os.path.commonpath([parent, target]) == target:
        return "link loops to a folder above it"
    return None


def _unfollowed_file(target: str) -> str | None:
    """Why a link to the file `target` is not followed: it must end at a regular file."""
    try:
        st = os.stat(target)
    except OSError:
        return "broken link"
    return None if stat.S_ISREG(st.st_mode) else f"link to {_file_kind(st.st_mode) or 'something other than a file'}"


def skipped_summary(skipped: Sequence[tuple[Path, str]]) -> str:
    """'3 skipped: 2 broken link, 1 link leaves the folder': what a scan passed over, by reason,
    for a message that says why a folder holds fewer images than it seems to."""
    kinds: dict[str, int] = {}
    for _, reason in skipped:
        kind = reason.split(" (")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{len(skipped)} skipped: {listed}"


LINK_RULE = (
    "links to files are followed wherever they point; links to folders only when they stay inside "
    "the folder and do not loop"
)


def no_images_reason(scan: ImageScan) -> str:
    return f"no images found ({skipped_summary(scan.skipped)})" if scan.skipped else "no images found"


def no_images_found(folder: Path, scan: ImageScan) -> MunitError:
    """The error for a folder whose scan found no image, naming what it skipped and why."""
    looked = "" if scan.skipped else f"looked for {', '.join(sorted(IMAGE_EXTENSIONS))} files, recursively; "
    return MunitError(f"{files.printable(folder)}: {no_images_reason(scan)}", hint=looked + LINK_RULE)


def _add_once(scan: ImageScan, seen: dict[tuple[int, int], Path], path: Path, follow: bool) -> None:
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError:  # a file that just went: reading it reports why
        scan.found.append(path)
        return
    identity = (st.st_dev, st.st_ino)
    if identity in seen:
        scan.skipped.append((path, f"same file as another (listed as {display_path(seen[identity])})"))
        return
    seen[identity] = path
    scan.found.append(path)


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """The image files of `scan_images`."""
    return scan_images(folder, recursive).found


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def read_bytes(path: Path) -> bytes:
    """The content of a regular file of at most MAX_FILE_BYTES, with every failure an `ImageError`
    reason. Named pipes, sockets and devices are refused before reading, so none can block or
    stream forever."""
    name = display_path(path)
    try:
        _require_regular(os.stat(path), name)
        # O_NONBLOCK: should the path become a pipe between stat and open, opening does not wait for a writer.
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as fh:
            _require_regular(os.fstat(fh.fileno()), name)
            data = fh.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        raise ImageError(name, "permission denied") from None
    except FileNotFoundError:
        raise ImageError(name, "file not found (or a broken link)") from None
    except OSError as exc:
        raise ImageError(name, f"unreadable ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(name, _OVERSIZED)
    return data


def _file_kind(mode: int) -> str | None:
    return next((kind for is_kind, kind in _FILE_KINDS if is_kind(mode)), None)


def _require_regular(st: os.stat_result, name: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = _file_kind(st.st_mode)
        raise ImageError(name, f"not a regular file ({kind})" if kind else "not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(name, _OVERSIZED)


def open_image(
    source: Path | bytes,
    mode: Literal["RGB", "L"] = "RGB",
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Decode an image fully and return it upright, opaque, 8-bit, in `mode`.

    EXIF orientation is applied, transparency is composited onto `background`, 16-bit samples
    are scaled (not clipped) to 8 bits and GIFs give their first frame. `name` labels errors
    when `source` is bytes. Pillow's own bomb guard still applies above `DEFAULT_MAX_PIXELS`.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "image data"
    else:
        name = name or display_path(source)
        data = read_bytes(Path(source))
    if not data:
        raise ImageError(name, "empty file")
    with warnings.catch_warnings():
        # Pillow warns about damage it works around (corrupt EXIF, odd chunks) and about sizes below
        # our own pixel limit: the image decodes or fails with a reason, so a warning is only noise.
        warnings.simplefilter("ignore")
        img = _decode(data, name, max_pixels)
        return _normalise(img, mode, background, name)


def _decode(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        pixels = img.width * img.height
        if pixels > max_pixels:
            raise ImageError(name, f"too large ({pixels} pixels)")
        img.load()
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageError(name, f"too large ({found.group(1)} pixels)" if found else "too large") from None
    except UnidentifiedImageError:
        raise ImageError(name, "not an image") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise ImageError(name, "truncated or corrupt") from None
    return img


def _normalise(img: Image.Image, mode: str, background: tuple[int, int, int], name: str) -> Image.Image:
    with contextlib.suppress(Exception):  # broken EXIF metadata should not discard intact pixels
        img = ImageOps.exif_transpose(img)
    if img.mode in _HIGH_BIT_MODES:
        img = _to_8bit(img, _HIGH_BIT_MODES[img.mode])
    try:
        if _has_alpha(img):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", img.size, tuple(background))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            img = flat
        if img.mode not in ("L", "RGB"):
            # Through RGB: Pillow has no direct path from e.g. CMYK to L.
            img = img.convert("RGB")
        return img.convert(mode) if img.mode != mode else img
    except ValueError:
        raise ImageError(name, f"unsupported colour mode {img.mode}") from None


def _has_alpha(img: Image.Image) -> bool:
    return "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info


def _to_8bit(img: Image.Image, full_scale: float) -> Image.Image:
    values = np.asarray(img, dtype=np.float64)
    scaled = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, "L")


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is exactly `size`, keeping the aspect ratio (Lanczos, antialiased)."""
    width, height = img.size
    scale = size / min(width, height)
    target = (size, max(1, round(height * scale))) if width <= height else (max(1, round(width * scale)), size)
    return resize(img, target)


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to exactly (width, height) (Lanczos, antialiased); the same image when already that size."""
    if tuple(size) == img.size:
        return img
    # reducing_gap first box-reduces by an integer factor: much faster, visually identical.
    return img.resize(tuple(size), Image.Resampling.LANCZOS, reducing_gap=3.0)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """The central `size` x `size` square (the image must be at least that large on both sides)."""
    left = (img.width - size) // 2
    top = (img.height - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """uint8 tensor C x H x W (C = 1 for L images, 3 for RGB)."""
    import torch

    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    # The transpose is done by numpy: torch's multi-threaded copy stalls when the cores are busy
    # (e.g. decoding on a loader thread while the model trains), 50 us becoming tens of ms.
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """A C x H x W tensor (uint8, or float in [-1, 1]) with 1 or 3 channels as a PIL image."""
    import torch

    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
        raise MunitError(f"expected a 1- or 3-channel C x H x W image tensor, got shape {tuple(tensor.shape)}")
    tensor = tensor.detach().cpu()
    if tensor.dtype != torch.uint8:
        tensor = ((tensor.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = tensor.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else Image.fromarray(array, "RGB")


def encode_image(image: ImageLike, fmt: Literal["png", "jpg"] = "png", quality: int = 95) -> bytes:
    """PNG or JPEG bytes of a PIL image or an image tensor (see `tensor_to_image`)."""
    img = image if isinstance(image, Image.Image) else tensor_to_image(image)
    buffer = io.BytesIO()
    if fmt == "png":
        img.save(buffer, format="PNG")
    elif fmt == "jpg":
        img.save(buffer, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
    else:
        raise MunitError(f"unknown image format {fmt!r} (use png or jpg)")
    return buffer.getvalue()


def png_bytes(image: ImageLike) -> bytes:
    return encode_image(image, "png")


def save_png(image: ImageLike, path: Path) -> Path:
    path = Path(path)
    files.write_atomic(path, png_bytes(image))
    return path


def gif_bytes(frames: Sequence[Image.Image], fps: float) -> bytes:
    """An endlessly looping animated GIF. Pillow merges identical consecutive frames into one
    longer frame, so a still animation has fewer frames than given."""
    if not frames:
        raise MunitError("an animated GIF needs at least one frame")
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="GIF", save_all=True, append_images=list(frames[1:]), duration=round(1000 / fps), loop=0
    )
    return buffer.getvalue()


def save_gif(frames: Sequence[Image.Image], path: Path, fps: float) -> Path:
    path = Path(path)
    files.write_atomic(path, gif_bytes(frames, fps))
    return path
