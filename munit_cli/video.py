"""Video in and out through PyAV (the optional `video` extra; no system ffmpeg): translating a
clip frame by frame, and writing a sequence of images (a style morph) as a video.

Frames are decoded, translated and encoded one at a time, so a long clip never sits in memory.
The output keeps the input's timestamps (so its frame count, frame rate and duration), and its
audio packets are copied unchanged (remuxed, never re-encoded). It is written under a hidden
temporary name and renamed at the end: an error or Ctrl-C leaves nothing under the final name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from munit_cli.console import err
from munit_cli.errors import MunitError
from munit_cli.files import display_path, move_into_place, temp_path
from munit_cli.results import Result

VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mov", ".gif"})
# The temporary name ends in .tmp, so the muxer is named rather than guessed from the suffix.
MUXERS = {".mp4": "mp4", ".mov": "mov", ".webm": "webm", ".gif": "gif"}
# First encoder this PyAV build has wins. H.264 plays everywhere; MPEG-4 part 2 is in every
# FFmpeg build. WebM holds only VP8/VP9/AV1, and VP9 is as good as VP8 at a smaller size.
ENCODERS = {".mp4": ("libx264", "mpeg4"), ".mov": ("libx264", "mpeg4"), ".webm": ("libvpx-vp9", "libvpx"), ".gif": ("gif",)}
# Near-transparent quality (translated frames are the product); the fastest presets, because two
# CPU cores also run the networks.
ENCODER_OPTIONS = {
    "libx264": {"crf": "18", "preset": "veryfast"},
    "mpeg4": {"qscale": "2"},
    "libvpx-vp9": {"crf": "24", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
    "libvpx": {"crf": "10", "b": "2M", "deadline": "realtime", "cpu-used": "8"},
    "gif": {},
}
INSTALL_HINT = "pip install 'munit-cli[video]'"


def is_video(path: str | os.PathLike) -> bool:
    """Whether munit treats `path` as a video, by its suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class VideoInfo(Result):
    frames: int
    fps: float
    duration: float  # seconds, from the first frame's start to the last frame's end
    width: int
    height: int
    has_audio: bool


@dataclass
class VideoResult(Result):
    frames: int
    fps: float
    duration: float


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise MunitError("reading and writing video needs PyAV, which is not installed", hint=INSTALL_HINT) from None
    return av


def _suffix(dst: Path) -> str:
    suffix = dst.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise MunitError(f"{display_path(dst)}: munit writes video as {', '.join(sorted(VIDEO_SUFFIXES))}, not {suffix or 'a name without suffix'}")
    return suffix


@contextlib.contextmanager
def _open_input(src: Path) -> Iterator[tuple[Any, Any]]:
    """The open container and its first video stream; every way of failing is a MunitError."""
    av = _av()
    name = display_path(src)
    try:
        container = av.open(str(src), "r")
    except FileNotFoundError:
        raise MunitError(f"{name} does not exist") from None
    except IsADirectoryError:
        raise MunitError(f"{name} is a folder, not a video file") from None
    except av.FFmpegError:
        # An MP4 or MOV (an 'ftyp' box first) cut short loses its index, which is written last.
        if _head(src)[4:8] == b"ftyp":
            raise MunitError(f"{name} is truncated or damaged (its index is missing)") from None
        raise MunitError(f"{name} is not a video file munit can read") from None
    except OSError as exc:
        raise MunitError(f"could not read {name}: {exc.strerror or exc}") from None
    with container:
        # A song's cover art is a one-picture "video" stream, not a clip.
        moving = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not moving:
            raise MunitError(f"{name} has no video stream")
        yield container, moving[0]


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(8)
    except OSError:
        return b""


def _packet_end(packet: Any) -> float:
    return float((packet.pts + (packet.duration or 0)) * packet.time_base)


def _check_complete(name: str, container: Any, stream: Any, packets: int, frames: int, end: float) -> None:
    """A file that stops before what its header promised (the frame count of an MP4's index, or
    the duration of a WebM) was cut short; its end is `end` seconds, over all its streams."""
    declared = container.duration / 1e6 if container.duration else 0.0
    short = packets < stream.frames if stream.frames else end < declared - 1 / _fps(stream)
    if frames == 0 or short:
        raise MunitError(f"{name} is truncated or damaged (frame {frames + 1})")


def _fps(stream: Any) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def probe(path: Path) -> VideoInfo:
    """Frame count, rate, duration, size and audio of a video, from its packets (nothing decoded)."""
    path = Path(path)
    av = _av()
    name = display_path(path)
    with _open_input(path) as (container, stream):
        frames, packets, start, end, last = 0, 0, None, None, 0.0
        try:
            for packet in container.demux():
                if packet.pts is None or packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                last = max(last, _packet_end(packet))
                if packet.stream is stream:
                    packets += 1
                    if packet.is_discard:  # before an edit list's start: decoded, never shown
                        continue
                    frames += 1
                    start = packet.pts if start is None else min(start, packet.pts)
                    end = max(end or packet.pts, packet.pts + (packet.duration or 0))
        except av.FFmpegError:
            raise MunitError(f"{name} is truncated or damaged (frame {frames + 1})") from None
        _check_complete(name, container, stream, packets, frames, last)
        duration = float((end - start) * stream.time_base)
        return VideoInfo(frames, _rate(frames, duration, stream), duration, stream.width, stream.height, bool(container.streams.audio))


def _rate(frames: int, duration: float, stream: Any = None) -> float:
    """Frames per second over the whole clip: what a player shows, even where the container's
    nominal rate differs (a GIF's delays are whole hundredths of a second)."""
    return frames / duration if duration > 0 else float(_fps(stream) if stream is not None else 0)


def translate_video(
    src: Path,
    dst: Path,
    translate_frame: Callable[[Image.Image], Image.Image],
    on_frame: Callable[[], None] | None = None,
) -> VideoResult:
    """Write `dst` (container from its suffix) with every frame of `src` passed through
    `translate_frame` (RGB in, any mode and one size for all frames out), on the input's
    timestamps, with the input's first audio stream copied unchanged. `on_frame` is called after
    each frame is written. A GIF cannot hold sound: the audio is then left out, with a warning."""
    src, dst = Path(src), Path(dst)
    av = _av()
    suffix = _suffix(dst)
    name = display_path(src)
    with _open_input(src) as (container, vin):
        ain = container.streams.audio[0] if container.streams.audio else None
        keep_audio = ain is not None and suffix != ".gif"
        if ain is not None and not keep_audio:
            err.print(f"warning: {display_path(dst)}: a GIF holds no sound, so the audio of {name} is left out")
        with _staged(av, dst, suffix) as out:
            writer = _Writer(av, out, suffix, _fps(vin), vin.time_base, ain if keep_audio else None, name)
            for item in _read(av, container, vin, ain, name):
                if isinstance(item, av.Packet):
                    if keep_audio:
                        writer.copy_audio(item)
                    continue
                picture = item.to_image()
                if item.rotation:  # a phone's clip: the model sees, and the output stores, what a player shows
                    picture = picture.rotate(item.rotation, expand=True)
                writer.write(translate_frame(picture), item.pts, item.duration)
                if on_frame is not None:
                    on_frame()
            return writer.finish()


def _read(av: Any, container: Any, vin: Any, ain: Any, name: str) -> Iterator[Any]:
    """The decoded video frames and the audio packets (undecoded), in file order. Only reading
    errors become 'truncated or damaged': the caller's own errors never pass through here."""
    frames, packets, last = 0, 0, 0.0
    try:
        for packet in container.demux(*([vin] + ([ain] if ain is not None else []))):
            if packet.pts is not None and packet.size:
                last = max(last, _packet_end(packet))
                packets += packet.stream is vin
            if packet.stream is not vin:
                yield packet
                continue
            for frame in packet.decode():
                frames += 1
                yield frame
    except av.FFmpegError:
        raise MunitError(f"{name} is truncated or damaged (frame {frames + 1})") from None
    _check_complete(name, container, vin, packets, frames, last)


def write_frames(frames: Iterable[Image.Image], dst: Path, fps: float) -> VideoResult:
    """`frames` (one size for all) as a silent video at a constant `fps`, container from `dst`'s
    suffix; for H.264 and MPEG-4 an odd width or height gets one more column or row, a copy of the
    last one (padding, not scaling, so no pixel is resampled)."""
    dst = Path(dst)
    av = _av()
    suffix = _suffix(dst)
    if not fps > 0:
        raise MunitError(f"a video needs a frame rate above 0, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    with _staged(av, dst, suffix) as out:
        writer = _Writer(av, out, suffix, rate, 1 / rate, None, display_path(dst))
        for i, img in enumerate(frames):
            writer.write(img, i, 1)
        return writer.finish()


@contextlib.contextmanager
def _staged(av: Any, dst: Path, suffix: str) -> Iterator[Any]:
    """An output container under `temp_path(dst)`, renamed to `dst` once the block has finished
    and the file is closed; any exception (Ctrl-C included) removes it instead."""
    tmp = temp_path(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(tmp), "w", format=MUXERS[suffix]) as out:
            yield out
        move_into_place(tmp, dst)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MunitError(f"could not write {display_path(dst)}: {exc.strerror or exc}") from None
        raise


class _Writer:
    """One output file: the video stream is made when the first frame shows its size (so the
    header, which needs it, is written then); audio packets that come before wait until then."""

    def __init__(self, av: Any, out: Any, suffix: str, fps: Fraction, time_base: Fraction, audio: Any, source: str):
        self.av, self.out, self.suffix, self.fps, self.time_base = av, out, suffix, fps, time_base
        self.source = source
        self.codec = next((c for c in ENCODERS[suffix] if c in av.codecs_available), None)
        if self.codec is None:
            raise MunitError(f"this PyAV build has none of the encoders {', '.join(ENCODERS[suffix])} for {suffix}", hint=INSTALL_HINT)
        self.audio_in, self.audio_out = audio, None
        # Checked before any frame is translated. Re-encoding would change the sound, which
        # this promises to keep; the input's own container (the default output) always holds it.
        if audio is not None and audio.codec_context.name not in out.supported_codecs:
            raise self._audio_refused()
        self.video: Any = None
        self.size: tuple[int, int] | None = None
        self.waiting: list[Any] = []
        self.frames, self.start, self.end = 0, None, None

    def _open(self, size: tuple[int, int]) -> None:
        even = self.codec != "gif"  # 4:2:0 chroma covers 2x2 pixels
        width, height = (size[0] + size[0] % 2, size[1] + size[1] % 2) if even else size
        self.video = self.out.add_stream(self.codec, rate=self.fps, options=ENCODER_OPTIONS[self.codec])
        self.video.width, self.video.height = width, height
        self.video.pix_fmt = "pal8" if self.codec == "gif" else "yuv420p"
        self.video.codec_context.time_base = self.time_base
        if self.audio_in is not None:
            self.audio_out = self.out.add_stream_from_template(self.audio_in)
        try:
            self.out.start_encoding()
        except self.av.FFmpegError as exc:
            if self.audio_in is None:
                raise
            # Some muxers take a codec's stream (query_codec says yes) and refuse it in the header.
            raise self._audio_refused() from exc
        for packet in self.waiting:
            self._mux_audio(packet)
        self.waiting.clear()

    def _audio_refused(self) -> MunitError:
        return MunitError(
            f"the {self.audio_in.codec_context.name} sound of {self.source} cannot go unchanged into a {self.suffix} file",
            hint="write the input's own container (the default), which holds its sound as it is",
        )

    def copy_audio(self, packet: Any) -> None:
        if packet.size == 0:  # the demuxer's end-of-stream marker
            return
        if self.video is None:
            self.waiting.append(packet)
        else:
            self._mux_audio(packet)

    def _mux_audio(self, packet: Any) -> None:
        packet.stream = self.audio_out
        self.out.mux(packet)

    def write(self, img: Image.Image, pts: int | None, duration: int) -> None:
        if self.size is None:
            self.size = img.size
            self._open(img.size)
        elif img.size != self.size:
            raise MunitError(f"frame {self.frames + 1} is {img.size[0]}x{img.size[1]}, the first was {self.size[0]}x{self.size[1]}")
        frame = self._frame(img)
        # A frame without a timestamp (rare, in some GIFs) follows the previous one.
        frame.pts = pts if pts is not None else (self.end if self.end is not None else 0)
        frame.duration = duration or round(1 / (self.fps * self.time_base))
        frame.time_base = self.time_base
        self.start = frame.pts if self.start is None else min(self.start, frame.pts)
        self.end = max(self.end or 0, frame.pts + frame.duration)
        self.frames += 1
        self.out.mux(self.video.encode(frame))

    def _frame(self, img: Image.Image) -> Any:
        if self.codec == "gif":
            # An adaptive palette per frame: FFmpeg's own RGB-to-pal8 uses one fixed 3-3-2 palette.
            paletted = img.convert("RGB").quantize(256)
            palette = np.zeros((256, 4), np.uint8)
            rgb = np.frombuffer(bytes(paletted.getpalette() or []), np.uint8).reshape(-1, 3)[:256]
            palette[: len(rgb), 0], palette[: len(rgb), 1:] = 255, rgb
            return self.av.VideoFrame.from_ndarray((np.asarray(paletted), palette), format="pal8")
        rgb = np.asarray(img.convert("RGB"))
        width, height = self.video.width, self.video.height
        if rgb.shape[:2] != (height, width):
            rgb = np.pad(rgb, ((0, height - rgb.shape[0]), (0, width - rgb.shape[1]), (0, 0)), mode="edge")
        return self.av.VideoFrame.from_ndarray(rgb, format="rgb24")

    def finish(self) -> VideoResult:
        if self.video is None:
            raise MunitError(f"{self.source}: no frames to write")
        self.out.mux(self.video.encode(None))
        duration = float((self.end - self.start) * self.time_base)
        return VideoResult(self.frames, _rate(self.frames, duration), duration)
