"""Flicker of video translation, and whether a temporal smoothing would be worth adding.

    python benchmarks/flicker.py                      # trains a small demo model first (~1-2 min on 2 cores)
    python benchmarks/flicker.py --model runs/demo/run --frames 96 --json flicker.json

The clip is one of the demo's outline shapes (domain A, drawn with munit_cli.synthetic) gliding on
a circle and turning, so every frame is an in-domain image and only the motion changes. It is
translated to domain B with one fixed sampled style, as `munit translate clip.mp4` does.

Flicker is the mean absolute difference between consecutive frames (0-255 per channel). The
input's own value is the motion's share: the output's is about that much when the translation
follows the shape, and above it when the output shimmers. Blur is the mean gradient magnitude of
the output frames relative to the unsmoothed translation: below 1 means edges were softened. Lag
is the mean absolute difference from the unsmoothed frame (what smoothing changed). Candidates:
an exponential moving average of the output pixels, or of the content codes before decoding.
The last row is the product path itself: the clip as an mp4, through `video.translate_video`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from munit_cli import config, demo, runtime, synthetic, train, video
from munit_cli.infer import Translator
from munit_cli.styles import sample_style

SIZE = 64


def moving_shape(frames: int, seed: int) -> list[Image.Image]:
    """The outline of one random shape, moved along a circle and turned a little each frame."""
    base = synthetic.random_shape(np.random.default_rng(seed), SIZE)
    reach = max(1.0, min(base.cx, base.cy, SIZE - base.cx, SIZE - base.cy) - base.radius - 3.0)
    clip = []
    for t in range(frames):
        phase = 2 * math.pi * t / frames
        angle = 0.5 * math.sin(phase)
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        cx, cy = base.cx + reach * math.cos(phase), base.cy + reach * math.sin(phase)
        vertices = (base.vertices - (base.cx, base.cy)) @ turn.T + (cx, cy)
        shape = base._replace(vertices=vertices, cx=cx, cy=cy)
        clip.append(synthetic.outline_image(shape, SIZE).convert("RGB"))
    return clip


def quick_model(folder: Path, iters: int, seed: int) -> Path:
    """The demo's recipe on its shapes, cut short: a model whose translations look like the demo's."""
    data = folder / "data"
    synthetic.make_shapes(data, n_train=demo.DEMO_TRAIN_IMAGES, n_test=0, size=SIZE, seed=seed)
    overrides = demo.overrides(iters=iters, seed=seed, device="cpu", ema_start=0, sample_every=iters, checkpoint_every=iters)
    cfg = config.resolve(demo.DEMO_PRESET, overrides=overrides)
    trained = train.run(cfg, [data / "trainA", data / "trainB"], folder / "run", names=("outline", "filled"))
    assert trained is not None
    return trained.generator


def as_arrays(frames: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(f.convert("RGB"), np.float64) for f in frames])


def flicker(frames: np.ndarray) -> float:
    return float(np.abs(np.diff(frames, axis=0)).mean())


def sharpness(frames: np.ndarray) -> float:
    gray = frames.mean(axis=3)
    return float(np.hypot(np.diff(gray, axis=1)[:, :, :-1], np.diff(gray, axis=2)[:, :-1, :]).mean())


def frame_translator(tr: Translator, style: torch.Tensor):
    """What `munit translate` hands to `video.translate_video`: one frame, one fixed style."""
    return lambda img: tr.to_output(tr.translate_batch(tr.to_input(img), style[None])[0][0], img.size)


def translate_clip(tr: Translator, clip: list[Image.Image], style: torch.Tensor, code_ema: float | None) -> list[Image.Image]:
    """Frame by frame; with `code_ema` the content code is averaged over time before decoding."""
    gen_a = tr.loaded.model.generator(tr.source)
    gen_b = tr.loaded.model.generator(tr.target)
    out, average, plain = [], None, frame_translator(tr, style)
    with torch.no_grad(), runtime.autocast(tr.device, tr.precision):
        for img in clip:
            if code_ema is None:
                out.append(plain(img))
                continue
            code = gen_a.content_encoder(tr.to_input(img)).float()
            average = code if average is None else code_ema * code + (1 - code_ema) * average
            out.append(tr.to_output(gen_b.decode(average, style[None].to(tr.device))[0].float(), img.size))
    return out


def pixel_ema(frames: np.ndarray, weight: float) -> np.ndarray:
    smoothed = frames.copy()
    for t in range(1, len(frames)):
        smoothed[t] = weight * frames[t] + (1 - weight) * smoothed[t - 1]
    return smoothed


def through_video(tr: Translator, clip: list[Image.Image], style: torch.Tensor, folder: Path, fps: float) -> np.ndarray:
    import av

    src, dst = folder / "clip.mp4", folder / "translated.mp4"
    video.write_frames(clip, src, fps)
    video.translate_video(src, dst, frame_translator(tr, style))
    with av.open(str(dst)) as c:
        return np.stack([f.to_ndarray(format="rgb24").astype(np.float64) for f in c.decode(video=0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a run folder or generator file; default: train a quick one")
    parser.add_argument("--iters", type=int, default=300, help="training steps of the quick model")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style-seed", type=int, default=1)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 0.7], help="EMA weights of the newest frame")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        model = args.model or quick_model(folder, args.iters, args.seed)
        trained_s = time.perf_counter() - start
        tr = Translator.open(model, to="B", device="cpu")
        style = sample_style(args.style_seed, 0, tr.style_dim)
        clip = moving_shape(args.frames, args.seed)
        source = as_arrays(clip)
        plain = as_arrays(translate_clip(tr, clip, style, None))
        candidates = {"none": plain}
        for w in args.weights:
            candidates[f"output EMA {w}"] = pixel_ema(plain, w)
            candidates[f"content EMA {w}"] = as_arrays(translate_clip(tr, clip, style, w))
        candidates["none, mp4 round trip"] = through_video(tr, clip, style, folder, args.fps)

    rows = [
        {
            "smoothing": name,
            "flicker": flicker(frames),
            "flicker_vs_input": flicker(frames) / flicker(source),
            "sharpness_vs_none": sharpness(frames) / sharpness(plain),
            "lag": float(np.abs(frames - plain).mean()),
        }
        for name, frames in candidates.items()
    ]
    print(f"\nflicker on {args.frames} frames of {SIZE}x{SIZE} moving outline shape, torch {torch.__version__}, "
          f"model {'given' if args.model else f'trained {args.iters} steps in {trained_s:.0f} s'}")  # fmt: skip
    print(f"input flicker {flicker(source):.2f}")
    print(f"{'smoothing':<22} {'flicker':>8} {'vs input':>9} {'sharpness':>10} {'lag':>6}")
    for r in rows:
        print(f"{r['smoothing']:<22} {r['flicker']:>8.2f} {r['flicker_vs_input']:>8.2f}x {r['sharpness_vs_none']:>10.2f} {r['lag']:>6.2f}")
    result = {"frames": args.frames, "size": SIZE, "input_flicker": flicker(source), "rows": rows}
    print(json.dumps(result))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(result, f, indent=2)
    print("sharpness below 1 is blur; lag is how far smoothing moved a frame from its own translation", file=sys.stderr)


if __name__ == "__main__":
    main()
