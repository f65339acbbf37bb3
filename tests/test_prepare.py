import builtins
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from crafted import (
    BROKEN,
    WHITE,
    cmyk_red_jpeg,
    encoded,
    exif_rotated_jpeg,
    gray16_png,
    left_red_right_blue,
    palette_png_with_transparency,
)
from PIL import Image

from munit_cli import images, prepare
from munit_cli.errors import Interrupted, MunitError, UsageError
from munit_cli.shards import PackedDomain

EMOJI = Path(__file__).resolve().parents[2] / "shared" / "data" / "emoji64"


def solid(i: int, size: tuple[int, int] = (24, 20)) -> bytes:
    """A distinct small PNG per i (two colours, so resizing keeps it recognisable)."""
    rng = np.random.default_rng(i)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    img.paste(tuple(int(v) for v in rng.integers(0, 256, 3)), (0, 0, size[0] // 2, size[1]))
    return encoded(img, "PNG")


def fill(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def good_files(start: int, count: int) -> dict[str, bytes]:
    return {f"img{i:03d}.png": solid(i) for i in range(start, start + count)}


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def by_source(out: Path) -> dict[tuple[str, str], dict]:
    return {(e["domain"], e["source"]): e for e in manifest(out)["files"]}


def tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def pixel(out: Path, entry: dict, domain: str, xy: tuple[int, int]) -> tuple:
    return Image.open(out / entry["outputs"][domain]).convert("RGB").getpixel(xy)


@pytest.fixture
def two_folders(tmp_path) -> tuple[Path, Path]:
    return fill(tmp_path / "srcA", good_files(0, 12)), fill(tmp_path / "srcB", good_files(100, 12))


def run(a, b, out, **options):
    options.setdefault("workers", 1)
    options.setdefault("size", 16)
    return prepare.run(a, b, out, **options)


def test_crafted_files_are_converted_or_skipped_with_reasons(tmp_path, monkeypatch):
    files = {name: data for name, (data, _) in BROKEN.items()}
    files.update(
        {
            "deep/gray16.png": gray16_png([65535] * 8 + [32768] * 8),
            "deep/cmyk.jpg": cmyk_red_jpeg(),
            "deep/palette.png": palette_png_with_transparency(),
            "phone.jpg": exif_rotated_jpeg(left_red_right_blue(40, 20), 6),
            "locked.png": solid(1),
            "ok.png": solid(2),
        }
    )
    a = fill(tmp_path / "A", files)
    (a / os.fsdecode(b"caf\xe9.png")).write_bytes(solid(3))
    os.symlink(a, a / "deep" / "loop")
    b = fill(tmp_path / "B", good_files(10, 3))

    real_open = builtins.open

    def guarded_open(path, *args, **kwargs):
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(images, "open", guarded_open, raising=False)
    out = tmp_path / "out"
    summary = run(a, b, out, size=0, test_fraction=0)
    entries = by_source(out)
    for name, (_, reason) in BROKEN.items():
        assert entries["A", name]["status"] == "skipped" and entries["A", name]["reason"] == reason
    assert entries["A", "locked.png"]["reason"] == "permission denied"
    assert summary.domains["A"].skipped == {
        "empty file": 1,
        "not an image": 1,
        "truncated or corrupt": 2,
        "too large": 1,
        "permission denied": 1,
    }
    assert summary.domains["A"].train == 6 and summary.domains["B"].train == 3

    assert pixel(out, entries["A", "deep/gray16.png"], "A", (0, 0)) == WHITE
    assert pixel(out, entries["A", "deep/gray16.png"], "A", (10, 0)) == (128, 128, 128)
    r, g, b_ = pixel(out, entries["A", "deep/cmyk.jpg"], "A", (8, 8))
    assert r > 240 and g < 15 and b_ < 15
    palette = entries["A", "deep/palette.png"]
    assert [pixel(out, palette, "A", (x, 0)) for x in range(3)] == [WHITE, (255, 0, 0), (0, 0, 255)]
    phone = entries["A", "phone.jpg"]
    assert (phone["width"], phone["height"]) == (20, 40)
    top, bottom = pixel(out, phone, "A", (10, 5)), pixel(out, phone, "A", (10, 34))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200 and bottom[0] < 50  # upright: red on top

    odd = entries["A", "caf\ufffd.png"]  # undecodable bytes shown as U+FFFD, output named by content
    assert odd["status"] == "kept" and Path(odd["outputs"]["A"]).name == odd["sha256"][:16] + ".png"
    assert "deep/loop/ok.png" not in {source for _, source in entries}
    assert all(name.isascii() for name in os.listdir(out / "trainA"))

    # A permission problem is not remembered: fixed, the file is picked up by the next run.
    monkeypatch.setattr(images, "open", real_open, raising=False)
    again = run(a, b, out, size=0, test_fraction=0)
    assert by_source(out)["A", "locked.png"]["status"] == "kept"
    assert again.decoded == 1


def test_resize_crop_jpg_min_size_and_duplicates(tmp_path):
    wide = solid(1, (60, 30))
    a = fill(tmp_path / "A", {"wide.png": wide, "small.png": solid(2, (10, 40)), "copy.png": wide})
    b = fill(tmp_path / "B", {"tall.png": solid(3, (30, 90))})
    out = tmp_path / "out"
    summary = run(a, b, out, size=20, center_crop=True, min_size=12, fmt="jpg", quality=80, test_fraction=0)
    entries = by_source(out)
    assert entries["A", "small.png"]["reason"] == "too small (10x40)"
    assert entries["A", "wide.png"]["status"] == "duplicate" and entries["A", "wide.png"]["duplicate_of"] == "copy.png"
    assert summary.domains["A"].skipped == {"too small": 1, "duplicate": 1}
    for folder in ("trainA", "trainB"):
        (only,) = (out / folder).iterdir()
        assert only.suffix == ".jpg" and Image.open(only).format == "JPEG" and Image.open(only).size == (20, 20)


def test_rerun_is_idempotent_and_incremental(tmp_path, two_folders):
    a, b = two_folders
    out = tmp_path / "out"
    first = run(a, b, out, test_fraction=0.3, pack=True)
    assert first.decoded == 24 and first.reused == 0
    before, stamps = tree(out), {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    second = run(a, b, out, test_fraction=0.3, pack=True)
    assert second.decoded == 0 and second.reused == 24 and second.domains == first.domains
    assert tree(out) == before
    assert all(p.stat().st_mtime_ns == stamps[p] for p in stamps if p.name != "manifest.json")

    (a / "img003.png").unlink()
    fill(a, good_files(50, 2))
    third = run(a, b, out, test_fraction=0.3, pack=True)
    assert third.decoded == 2 and third.reused == 23 and third.removed == 1
    kept = [e for e in manifest(out)["files"] if e["domain"] == "A"]
    on_disk = sorted(p.relative_to(out).as_posix() for d in ("trainA", "testA") for p in (out / d).iterdir())
    assert on_disk == sorted(e["outputs"]["A"] for e in kept)
    assert len(PackedDomain(out / "packed" / "trainA")) == len(list((out / "trainA").iterdir()))


def test_split_is_stable_when_files_are_added(tmp_path):
    a = fill(tmp_path / "A", good_files(0, 30))
    b = fill(tmp_path / "B", good_files(200, 4))
    out_f, out_c = tmp_path / "by_fraction", tmp_path / "by_count"
    run(a, b, out_f, test_fraction=0.3)
    run(a, b, out_c, test_count=5)
    old_f = {k: e["split"] for k, e in by_source(out_f).items()}
    old_c = {k: e["split"] for k, e in by_source(out_c).items()}
    assert 3 <= list(old_f.values()).count("test") <= 18
    assert sum(v == "test" for (d, _), v in old_c.items() if d == "A") == 5

    fill(a, good_files(30, 30))
    run(a, b, out_f, test_fraction=0.3)
    run(a, b, out_c, test_count=5)
    new_f, new_c = by_source(out_f), by_source(out_c)
    assert all(new_f[k]["split"] == split for k, split in old_f.items())
    assert all(new_c[k]["split"] == split for k, split in old_c.items())
    assert sum(e["split"] == "test" for (d, _), e in new_c.items() if d == "A") == 5
    # A fresh run over all 60 files puts the same files in test as the incremental one did.
    run(a, b, tmp_path / "fresh", test_fraction=0.3)
    fresh = by_source(tmp_path / "fresh")
    assert {k: e["split"] for k, e in fresh.items()} == {k: e["split"] for k, e in new_f.items()}


def side_by_side(i: int) -> bytes:
    """Left half (A) colour i, right half (B) a different colour, 32x16."""
    img = Image.new("RGB", (32, 16), (i * 10, 200, 0))
    img.paste((0, 50, i * 10), (16, 0, 32, 16))
    return encoded(img, "PNG")


def test_paired_sources_are_split_into_halves(tmp_path):
    src = fill(tmp_path / "pairs", {f"p{i:02d}.png": side_by_side(i) for i in range(16)})
    out = tmp_path / "out"
    summary = prepare.run(src, None, out, split_paired=True, test_count=4, size=0, workers=1)
    assert summary.to_json()["domains"] == {"pair": {"found": 16, "train": 12, "test": 4, "skipped": {}}}
    test_a, test_b = sorted(os.listdir(out / "testA")), sorted(os.listdir(out / "testB"))
    assert test_a == test_b and len(test_a) == 4  # the test split stays paired, by name
    for name in test_a:
        a_colour = Image.open(out / "testA" / name).getpixel((0, 0))
        b_colour = Image.open(out / "testB" / name).getpixel((0, 0))
        assert Image.open(out / "testA" / name).size == (16, 16)
        assert a_colour[1] == 200 and b_colour[1] == 50 and a_colour[0] == b_colour[2]  # halves of one source

    train_a, train_b = sorted(os.listdir(out / "trainA")), sorted(os.listdir(out / "trainB"))
    assert len(train_a) == len(train_b) == 12 and not set(train_a) & set(train_b)
    same_source = sum(
        Image.open(out / "trainA" / x).getpixel((0, 0))[0] == Image.open(out / "trainB" / y).getpixel((0, 0))[2]
        for x, y in zip(train_a, train_b)
    )
    assert same_source <= 3  # listing order no longer pairs the halves
    assert prepare.run(src, None, out, split_paired=True, test_count=4, size=0, workers=1).decoded == 0


def test_interrupt_leaves_nothing_half_written_and_resumes(tmp_path, two_folders):
    a, b = two_folders
    out = tmp_path / "out"

    def stop_after_five(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as caught:
        run(a, b, out, progress=stop_after_five)
    assert caught.value.exit_code == 130
    assert manifest(out)["complete"] is False and len(manifest(out)["files"]) == 5
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    resumed = run(a, b, out)
    assert resumed.decoded == 19 and resumed.reused == 5
    assert manifest(out)["complete"] is True and not (out / ".pending").exists()
    run(a, b, tmp_path / "clean")
    assert tree(out) == tree(tmp_path / "clean")


def test_workers_give_the_same_result_as_one_process(tmp_path):
    a = fill(tmp_path / "A", good_files(0, 20))
    b = fill(tmp_path / "B", good_files(100, 20))
    run(a, b, tmp_path / "one", workers=1)
    run(a, b, tmp_path / "two", workers=2)
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_output_folder_safety(tmp_path, two_folders):
    a, b = two_folders
    foreign = fill(tmp_path / "mine", {"notes.txt": b"keep me"})
    with pytest.raises(UsageError, match="not made by munit prepare"):
        run(a, b, foreign)
    run(a, b, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_bytes() == b"keep me" and len(os.listdir(foreign / "trainA")) > 0
    with pytest.raises(MunitError, match="no images found"):
        run(a, fill(tmp_path / "empty", {"readme.txt": b"hi"}), tmp_path / "out")
    with pytest.raises(UsageError, match="inside the source folder"):
        run(a, b, a / "out")
    assert sorted(os.listdir(a)) == sorted(good_files(0, 12))  # sources untouched

    out = tmp_path / "out"
    run(a, b, out, size=16)
    rebuilt = run(a, b, out, size=8)
    assert rebuilt.rebuilt and rebuilt.decoded == 24
    assert {Image.open(p).size for p in (out / "trainA").iterdir()} == {(10, 8)}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"test_fraction": 0.2, "test_count": 3}, "not both"),
        ({"background": "nope"}, "unknown colour"),
        ({"fmt": "gif"}, "png or jpg"),
        ({"split_paired": True}, "one folder"),
        ({"quality": 0}, "quality"),
    ],
)
def test_bad_options(tmp_path, two_folders, kwargs, message):
    with pytest.raises(UsageError, match=message):
        run(*two_folders, tmp_path / "out", **kwargs)


def test_synthetic_shapes_with_pack(tmp_path):
    out = tmp_path / "shapes"
    summary = prepare.run(
        None, None, out, synthetic_kind="shapes", synthetic_count=12, test_count=3, size=32, pack=True
    )
    assert summary.domains["B"] == prepare.DomainCounts(found=15, train=12, test=3)
    assert len(os.listdir(out / "masks" / "testA")) == 3 and manifest(out)["kind"] == "synthetic"
    packed = PackedDomain(out / "packed" / "trainB")
    assert len(packed) == 12
    first = sorted((out / "trainB").iterdir())[0]
    assert torch.equal(packed[0], images.to_tensor(Image.open(first).convert("RGB")))


def test_emoji_sample_rgba_on_white(tmp_path):
    if not EMOJI.is_dir():
        pytest.skip("emoji64 data set not available")
    names = sorted(random.Random(0).sample(sorted(os.listdir(EMOJI / "twemoji")), 20))
    for domain, design in (("A", "twemoji"), ("B", "noto")):
        for name in names:
            shutil.copy(EMOJI / design / name, fill(tmp_path / domain, {}) / name)
    out = tmp_path / "out"
    summary = prepare.run(tmp_path / "A", tmp_path / "B", out, size=64, test_fraction=0.25, pack=True, workers=1)
    kept = summary.domains["A"].train + summary.domains["A"].test
    assert kept + sum(summary.domains["A"].skipped.values()) == 20 and kept >= 18
    transparent = 0
    for entry in manifest(out)["files"]:
        if entry["status"] != "kept":
            continue
        alpha = np.asarray(Image.open(tmp_path / entry["domain"] / entry["source"]).convert("RGBA"))[:, :, 3]
        result = np.asarray(Image.open(out / entry["outputs"][entry["domain"]]))
        assert result.shape == (64, 64, 3)
        assert (result[alpha == 0] == 255).all()  # transparent became white
        transparent += (alpha == 0).sum()
        assert (result[alpha == 255] < 250).any()  # and the emoji itself is still there
    assert transparent > 20 * 1000
    packed = PackedDomain(out / "packed" / "trainA")
    assert packed[0].shape == (3, 64, 64) and packed[0].dtype == torch.uint8
