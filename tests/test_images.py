import contextlib
import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from crafted import (
    BLUE,
    BROKEN,
    RED,
    WHITE,
    cmyk_red_jpeg,
    encoded,
    exif_rotated_jpeg,
    gray16_png,
    left_red_right_blue,
    noisy_png,
    palette_png_with_transparency,
)
from PIL import Image

from munit_cli import files, images
from munit_cli.errors import MunitError
from munit_cli.images import ImageError, open_image


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_rgba_transparent_pixel_becomes_background(tmp_path):
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.putpixel((1, 1), (255, 0, 0, 255))
    img.putpixel((2, 2), (0, 0, 255, 128))
    out = open_image(write(tmp_path, "a.png", encoded(img, "PNG")))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == WHITE
    assert out.getpixel((1, 1)) == RED
    r, g, b = out.getpixel((2, 2))
    assert b == 255 and 120 <= r <= 135 and r == g  # half-transparent blue over white


def test_custom_background_and_grayscale_mode(tmp_path):
    img = Image.new("LA", (2, 1), (0, 0))
    img.putpixel((1, 0), (100, 255))
    path = write(tmp_path, "la.png", encoded(img, "PNG"))
    assert open_image(path, background=(0, 255, 0)).getpixel((0, 0)) == (0, 255, 0)
    gray = open_image(path, mode="L")
    assert gray.mode == "L" and gray.getpixel((0, 0)) == 255 and gray.getpixel((1, 0)) == 100


def test_palette_png_with_transparency(tmp_path):
    out = open_image(write(tmp_path, "p.png", palette_png_with_transparency()))
    assert [out.getpixel((x, 0)) for x in range(3)] == [WHITE, RED, BLUE]


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    path = write(tmp_path, "deep.png", gray16_png([65535, 32768, 0, 257]))
    assert Image.open(path).mode.startswith("I;16")
    gray = open_image(path, mode="L")
    assert [gray.getpixel((x, 0)) for x in range(4)] == [255, 128, 0, 1]
    assert open_image(path).getpixel((1, 0)) == (128, 128, 128)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    out = open_image(write(tmp_path, "cmyk.jpg", cmyk_red_jpeg()))
    assert out.mode == "RGB"
    r, g, b = out.getpixel((8, 8))
    assert r > 240 and g < 15 and b < 15


@pytest.mark.parametrize("orientation, red_on_top", [(6, True), (8, False)])
def test_exif_rotated_jpeg_is_upright(tmp_path, orientation, red_on_top):
    out = open_image(write(tmp_path, "phone.jpg", exif_rotated_jpeg(left_red_right_blue(), orientation)))
    assert out.size == (20, 40)
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 34))
    assert (top[0] > 200 and top[2] < 50) == red_on_top
    assert (bottom[0] > 200 and bottom[2] < 50) != red_on_top


def test_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert open_image(write(tmp_path, "anim.gif", data)).getpixel((4, 4)) == RED


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_bad_files_raise_with_reason(tmp_path, name):
    data, reason = BROKEN[name]
    path = write(tmp_path, name, data)
    with pytest.raises(ImageError) as caught:
        open_image(path)
    assert caught.value.reason == reason
    assert str(caught.value) == f"{path}: {reason}"
    assert isinstance(caught.value, MunitError)


def test_own_pixel_limit_and_bytes_source():
    data = encoded(Image.new("RGB", (100, 50), RED), "PNG")
    assert open_image(data).size == (100, 50)
    with pytest.raises(ImageError, match=r"^upload: too large \(5000 pixels\)$"):
        open_image(data, max_pixels=4999, name="upload")


def test_permission_denied(tmp_path, monkeypatch):
    path = write(tmp_path, "locked.png", noisy_png(8))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", refuse, raising=False)
    with pytest.raises(ImageError) as caught:
        open_image(path)
    assert caught.value.reason == "permission denied"


def test_list_images_sorted_recursive_skips_hidden_and_loops(tmp_path):
    for rel in ["b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.tiff", ".hidden.png", ".cache/e.png", "readme.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    found = images.list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.tiff"]
    assert [p.name for p in images.list_images(tmp_path, recursive=False)] == ["a.JPG", "b.png"]
    assert images.list_images(tmp_path / "sub" / "deeper") == [tmp_path / "sub" / "deeper" / "d.tiff"]


def test_list_images_missing_or_not_a_folder(tmp_path):
    with pytest.raises(MunitError, match="no such folder"):
        images.list_images(tmp_path / "nope")
    with pytest.raises(MunitError, match="not a folder"):
        images.list_images(write(tmp_path, "f.png", b"x"))


def test_resize_shorter_and_center_crop():
    img = left_red_right_blue(100, 50)
    small = images.resize_shorter(img, 25)
    assert small.size == (50, 25)
    assert small.getpixel((5, 12)) == RED and small.getpixel((45, 12)) == BLUE
    assert images.resize_shorter(Image.new("RGB", (30, 90)), 60).size == (60, 180)
    assert images.resize_shorter(img, 50) is img
    crop = images.center_crop(small, 24)
    assert crop.size == (24, 24) and crop.getpixel((0, 0)) == small.getpixel((13, 0))


def test_tensor_round_trips(tmp_path):
    img = left_red_right_blue(6, 4)
    tensor = images.to_tensor(img)
    assert tensor.dtype == torch.uint8 and tuple(tensor.shape) == (3, 4, 6)
    assert tensor[:, 0, 0].tolist() == list(RED) and tensor[:, 3, 5].tolist() == list(BLUE)
    assert tuple(images.to_tensor(img.convert("L")).shape) == (1, 4, 6)

    floats = tensor.float() / 127.5 - 1
    assert images.tensor_to_image(floats).tobytes() == img.tobytes()
    assert images.tensor_to_image(torch.full((1, 2, 2), 5.0)).getpixel((0, 0)) == 255  # clamped

    path = images.save_png(floats, tmp_path / "deep" / "out.png")
    assert Image.open(path).convert("RGB").tobytes() == img.tobytes()
    assert images.png_bytes(tensor) == path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["out.png"]  # no temporary left behind
    with pytest.raises(MunitError, match="C x H x W"):
        images.tensor_to_image(torch.zeros(1, 3, 4, 4))


def test_encode_jpg_quality():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert len(images.encode_image(img, "jpg", quality=30)) < len(images.encode_image(img, "jpg", quality=95))
    with pytest.raises(MunitError, match="unknown image format"):
        images.encode_image(img, "gif")


def test_display_path_survives_undecodable_names(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    shown = files.display_path(os.fsdecode(raw))
    assert shown.endswith("caf\ufffd.png")
    shown.encode("utf-8")  # printable: no lone surrogates left


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking open() or read() in this thread."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_only_regular_files_are_read(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "pipe.png")  # opening it for reading would wait for a writer forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "socket.png"))
    os.symlink("/dev/zero", tmp_path / "zero.png")  # endless
    expected = {
        "pipe.png": "not a regular file (a named pipe)",
        "socket.png": "not a regular file (a socket)",
        "zero.png": "not a regular file (a device)",
    }
    with deadline(20):
        for name, reason in expected.items():
            with pytest.raises(ImageError) as caught:
                open_image(tmp_path / name)
            assert caught.value.reason == reason
    server.close()

    big = write(tmp_path, "big.png", noisy_png(64))
    monkeypatch.setattr(images, "MAX_FILE_BYTES", big.stat().st_size - 1)
    with pytest.raises(ImageError, match="too large"):
        images.read_bytes(big)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", big.stat().st_size)
    assert images.read_bytes(big) == big.read_bytes()


def test_file_links_are_followed_anywhere_folder_links_only_inside(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    write(other, "x.png", b"x")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    write(src, "a.png", b"a")
    write(src / "sub", "b.png", b"b")
    os.symlink("/", src / "root")  # the old scan walked the whole file system from here
    os.symlink(other / "x.png", src / "out.png")  # the user's own file elsewhere: read
    os.symlink(other / "x.png", src / "0001")  # named by number, pointing at an image
    os.symlink(other, src / "otherdir")
    os.symlink(src / "a.png", src / "same.png")
    os.symlink(src / "sub", src / "alias")  # inside: its files are listed once, under sub/
    os.symlink(src, src / "sub" / "up")  # a loop
    os.symlink(tmp_path / "gone.png", src / "broken.png")
    os.symlink("/dev/zero", src / "zero.png")
    os.link(src / "a.png", src / "sub" / "hard.png")
    with deadline(30):
        scan = images.scan_images(src)
    assert [p.relative_to(src).as_posix() for p in scan.found] == ["0001", "a.png", "sub/b.png"]
    reasons = {p.relative_to(src).as_posix(): reason for p, reason in scan.skipped}
    assert reasons == {
        "broken.png": f"broken link (to {tmp_path / 'gone.png'})",
        "otherdir": f"link leaves the folder (to {other})",
        "out.png": "same file as another (listed as " + str(src / "0001") + ")",
        "root": "link leaves the folder (to /)",
        "same.png": "same file as another (listed as " + str(src / "a.png") + ")",
        "sub/hard.png": "same file as another (listed as " + str(src / "a.png") + ")",
        "sub/up": f"link loops to a folder above it (to {src})",
        "zero.png": "link to a device (to /dev/zero)",
    }
    assert images.skipped_summary(scan.skipped) == (
        "8 skipped: 3 same file as another, 2 link leaves the folder, 1 broken link, "
        "1 link loops to a folder above it, 1 link to a device"
    )
    assert images.list_images(src) == scan.found
    assert images.list_images(src / "alias") == [src / "alias" / "b.png", src / "alias" / "hard.png"]  # given itself


def test_a_folder_of_links_only_and_why_nothing_was_found(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    links = tmp_path / "links"
    links.mkdir()
    for i in range(3):
        write(store, f"{i}.png", bytes([i]))
        os.symlink(store / f"{i}.png", links / f"{i}.png")
    assert [p.name for p in images.list_images(links)] == ["0.png", "1.png", "2.png"]
    dead = tmp_path / "dead"
    dead.mkdir()
    os.symlink(tmp_path / "nope.png", dead / "a.png")
    os.symlink(tmp_path / "nope2.png", dead / "b.png")
    error = images.no_images_found(dead, images.scan_images(dead))
    assert str(error) == f"{dead}: no images found (2 skipped: 2 broken link)"
    assert error.hint == images.LINK_RULE
    assert "looked for .bmp" in images.no_images_found(store, images.ImageScan([], [])).hint
