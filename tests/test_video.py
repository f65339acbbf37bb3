"""Video translation on clips made here with PyAV: frames, rate, duration and sound kept, bad
files refused with nothing left behind, an interrupted run leaving no output."""

from __future__ import annotations

import sys

import av
import numpy as np
import pytest
from PIL import Image, ImageOps

from munit_cli import video
from munit_cli.errors import MunitError


FRAMES, FPS, WIDTH, HEIGHT, RATE = 12, 12, 64, 48, 48000
# Per container: muxer, video encoder, audio encoder (a GIF holds no sound).
CLIPS = {
    ".mp4": ("mp4", "libx264", "aac"),
    ".mov": ("mov", "libx264", "aac"),
    ".webm": ("webm", "libvpx-vp9", "libopus"),
    ".gif": ("gif", "gif", None),
}


def picture(i: int) -> np.ndarray:
    """Smooth ramps (which lossy codecs keep) and a square moving 3 px a frame."""
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    img[:, :, 0] = np.arange(WIDTH) * 3 + i * 4
    img[:, :, 1] = np.arange(HEIGHT)[:, None] * 4
    img[8:24, 4 + 3 * i : 20 + 3 * i, 2] = 255
    return img


def make_clip(path, frames: int = FRAMES, audio: bool = True, options: dict | None = None):
    muxer, vcodec, acodec = CLIPS[path.suffix]
    with av.open(str(path), "w", format=muxer, options=options or {}) as out:
        v = out.add_stream(vcodec, rate=FPS)
        v.width, v.height = WIDTH, HEIGHT
        v.pix_fmt = "rgb8" if vcodec == "gif" else "yuv420p"
        # Every stream is added before the first packet: the header, written then, lists them.
        sound = out.add_stream(acodec, rate=RATE, layout="mono") if audio and acodec else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(i), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        if sound is not None:
            write_sine(out, sound, seconds=frames / FPS)
    return path


def write_sine(out, stream, seconds: float) -> None:
    """A 1 kHz tone."""
    t = np.arange(round(RATE * seconds)) / RATE
    frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None], format="flt", layout="mono")
    frame.sample_rate, frame.pts = RATE, 0
    out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]


@pytest.mark.parametrize("suffix", list(CLIPS))
def test_translated_clip_keeps_frames_rate_duration_and_sound(tmp_path, suffix):
    src = make_clip(tmp_path / f"clip{suffix}")
    dst = tmp_path / "out" / f"translated{suffix}"
    calls = []
    result = video.translate_video(src, dst, ImageOps.invert, on_frame=lambda: calls.append(1))

    before, after = video.probe(src), video.probe(dst)
    assert before.frames == after.frames == result.frames == len(calls) == FRAMES
    assert before.fps == pytest.approx(FPS) and after.fps == pytest.approx(result.fps) == pytest.approx(FPS)
    assert abs(after.duration - before.duration) < 1 / FPS and result.duration == pytest.approx(after.duration)
    assert (after.width, after.height) == (WIDTH, HEIGHT)
    assert set(result.to_json()) == {"frames", "fps", "duration"}
    assert after.has_audio == before.has_audio == (suffix != ".gif")
    if before.has_audio:
        assert audio_packets(dst) == audio_packets(src)
    for got, original in zip(decoded(dst), decoded(src)):
        assert np.abs(got - (255 - original)).mean() < 6
    assert sorted(p.name for p in dst.parent.iterdir()) == [dst.name]


def test_audio_dropped_for_a_gif_and_refused_where_it_cannot_go_unchanged(tmp_path):
    src = make_clip(tmp_path / "clip.mp4")
    assert video.translate_video(src, tmp_path / "out.gif", ImageOps.invert).frames == FRAMES
    assert not video.probe(tmp_path / "out.gif").has_audio
    with pytest.raises(MunitError, match="aac sound of .*clip.mp4 cannot go unchanged into a .webm file"):
        video.translate_video(src, tmp_path / "bad" / "out.webm", ImageOps.invert)
    # The MOV muxer takes an Opus stream and refuses it only when writing its header.
    with pytest.raises(MunitError, match="opus sound of .*clip.webm cannot go unchanged into a .mov file"):
        video.translate_video(make_clip(tmp_path / "clip.webm"), tmp_path / "bad" / "out.mov", ImageOps.invert)
    assert list((tmp_path / "bad").iterdir()) == []


def truncated(tmp_path, suffix, options=None):
    whole = make_clip(tmp_path / f"whole{suffix}", options=options).read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def audio_only(tmp_path):
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as out:
        write_sine(out, out.add_stream("aac", rate=RATE, layout="mono"), seconds=0.5)
    return path


def text_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    return path


@pytest.mark.parametrize(
    "make, said",
    [
        (text_file, r"notes.mp4 is not a video file munit can read$"),
        (audio_only, r"sound.mp4 has no video stream$"),
        (lambda p: truncated(p, ".mp4"), r"cut.mp4 is truncated or damaged \(its index is missing\)$"),
        (lambda p: truncated(p, ".webm"), r"cut.webm is truncated or damaged \(frame \d+\)$"),
        # With the index first, the cut shows as frames missing from it.
        (lambda p: truncated(p, ".mp4", {"movflags": "+faststart"}), r"cut.mp4 is truncated or damaged \(frame \d+\)$"),
        (lambda p: p / "missing.mp4", r"missing.mp4 does not exist$"),
    ],
)
def test_unreadable_input_is_a_clear_error_and_leaves_nothing(tmp_path, make, said):
    src = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MunitError, match=said) as probed:
        video.probe(src)
    assert probed.value.exit_code == 1
    with pytest.raises(MunitError, match=said):
        video.translate_video(src, out / f"x{src.suffix}", ImageOps.invert)
    assert list(out.iterdir()) == []


def test_interrupt_mid_clip_leaves_no_output_and_no_temporary(tmp_path):
    src = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    seen = []

    def translate(img: Image.Image) -> Image.Image:
        seen.append(1)
        if len(seen) == 5:
            raise KeyboardInterrupt
        return img

    with pytest.raises(KeyboardInterrupt):
        video.translate_video(src, out / "clip.mp4", translate)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_write_frames_with_odd_sizes_pads_to_even_for_yuv(tmp_path, suffix):
    frames = [Image.fromarray(picture(i)[:33, :47]) for i in range(7)]
    dst = tmp_path / f"morph{suffix}"
    result = video.write_frames(iter(frames), dst, fps=5)
    info = video.probe(dst)
    assert result.frames == info.frames == 7
    assert result.fps == pytest.approx(5) and info.fps == pytest.approx(5)
    assert info.duration == pytest.approx(7 / 5, abs=0.01)
    assert (info.width, info.height) == ((47, 33) if suffix == ".gif" else (48, 34))
    assert np.abs(decoded(dst)[3][:33, :47] - picture(3)[:33, :47].astype(int)).mean() < 6


def test_frames_of_changing_size_are_refused_and_nothing_is_written(tmp_path):
    frames = [Image.new("RGB", (32, 32)), Image.new("RGB", (16, 16))]
    with pytest.raises(MunitError, match="frame 2 is 16x16, the first was 32x32"):
        video.write_frames(frames, tmp_path / "out" / "morph.mp4", fps=5)
    assert list((tmp_path / "out").iterdir()) == []


def test_is_video_by_suffix_and_unknown_output_suffix(tmp_path):
    assert video.is_video("a/CLIP.MP4") and video.is_video("x.webm") and video.is_video("x.gif")
    assert not video.is_video("x.png") and not video.is_video("mp4")
    with pytest.raises(MunitError, match="not .avi"):
        video.write_frames([Image.new("RGB", (8, 8))], tmp_path / "x.avi", fps=5)


def test_missing_pyav_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MunitError, match="needs PyAV") as caught:
        video.probe(tmp_path / "clip.mp4")
    assert "munit-cli[video]" in caught.value.hint
