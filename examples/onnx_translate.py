#!/usr/bin/env python
"""Translate an image with a model exported by `munit export --format onnx`, using only
onnxruntime, numpy and pillow: no torch and no munit, so it runs wherever onnxruntime does.

    pip install onnxruntime numpy pillow
    python examples/onnx_translate.py export/ photo.jpg out.png --to b --style-seed 3
    python examples/onnx_translate.py export/ photo.jpg out.png --to painting --reference style.jpg

The export folder holds `munit-onnx.json` (domain names, style size, input normalisation, file
names) next to the graphs. The style comes from `--reference` (an image of the target domain,
any size) or is drawn from the prior N(0, I) with numpy's `default_rng(--style-seed)`; numpy's
generator is not torch's, so a seed here gives a different style than the same seed in
`munit translate`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


class Failure(Exception):
    """A problem the user can fix; printed without a traceback."""


def load_export(folder: Path) -> dict:
    sidecar = folder / "munit-onnx.json"
    try:
        info = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise Failure(f"{sidecar}: not found (run `munit export MODEL --format onnx --out {folder}`)") from None
    except (OSError, ValueError) as exc:
        raise Failure(f"{sidecar}: unreadable ({exc})") from None
    if info.get("format") != "munit-onnx" or info.get("format_version") != "1":
        raise Failure(f"{sidecar}: not a munit ONNX export this script understands")
    return info


def domain_key(info: dict, name: str) -> str:
    """'a' or 'b' from a domain name in the sidecar or the letter itself (A or B)."""
    names = info["names"]
    if name in names:
        return "ab"[names.index(name)]
    if name.lower() in ("a", "b"):
        return name.lower()
    raise Failure(f"unknown domain {name!r}: use a, b or one of {', '.join(names)}")


def read_image(path: Path, channels: int) -> Image.Image:
    """Upright, opaque (transparency over white), in the model's colour mode."""
    try:
        img = Image.open(path)
        img.load()  # decode now, so a truncated file fails here with its name
    except (OSError, ValueError) as exc:
        raise Failure(f"{path}: cannot read image ({exc})") from None
    img = ImageOps.exif_transpose(img)
    if "A" in img.getbands() or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.new("RGB", img.size, (255, 255, 255))
        img.paste(rgba, mask=rgba.getchannel("A"))
    return img.convert("RGB" if channels == 3 else "L")


def work_size(info: dict, width: int, height: int, size: int | None) -> tuple[int, int]:
    """The size the graphs run at, chosen as `munit translate` does: the image's own (or scaled so
    the shorter side is `size`), each side rounded to a multiple of `size_multiple`, at least `min_size`."""
    step, smallest = info["size_multiple"], info["min_size"]
    scale = 1.0 if size is None else size / min(width, height)
    return tuple(max(smallest, step * round(v * scale / step)) for v in (width, height))


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def to_input(img: Image.Image) -> np.ndarray:
    """0..255 -> [-1, 1], as 1 x C x H x W float32."""
    array = np.asarray(img, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return (array / 127.5 - 1.0).transpose(2, 0, 1)[None]


def to_image(output: np.ndarray) -> Image.Image:
    array = np.rint((np.clip(output[0], -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else Image.fromarray(array, "RGB")


def session(folder: Path, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])


def translate(args: argparse.Namespace) -> Path:
    info = load_export(args.export)
    target = domain_key(info, args.to)
    source = "b" if target == "a" else "a"
    image = read_image(args.input, info["channels"])
    x = to_input(resize(image, work_size(info, *image.size, args.size)))
    if args.reference is not None:
        reference = read_image(args.reference, info["channels"])
        x_ref = to_input(resize(reference, work_size(info, *reference.size, args.size)))
        style = session(args.export, info["encode_style"][target]).run(None, {"image": x_ref})[0]
    else:
        style = np.random.default_rng(args.style_seed).standard_normal((1, info["style_dim"])).astype(np.float32)
    graph = session(args.export, info["translate"][f"{source}2{target}"])
    output = graph.run(None, {"image": x, "style": style})[0]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    resize(to_image(output), image.size).save(args.output, format="PNG")
    return args.output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Translate an image with an ONNX export of a munit model.")
    parser.add_argument("export", type=Path, help="folder written by `munit export --format onnx`")
    parser.add_argument("input", type=Path, help="image of the source domain")
    parser.add_argument("output", type=Path, help="where to write the translated PNG")
    parser.add_argument("--to", default="b", help="target domain: a, b or its name (default: b)")
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--style-seed", type=int, default=0, help="seed of the random style (default: 0)")
    style.add_argument("--reference", type=Path, help="take the style from this image of the target domain")
    parser.add_argument(
        "--size", type=int, help="work with the shorter side at this size; the output keeps the input's size"
    )
    args = parser.parse_args(argv)
    try:
        print(translate(args))
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
