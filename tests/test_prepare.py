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
from test_images import deadline

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
        "link loops to a folder above it": 1,
    }
    assert entries["A", "deep/loop"]["reason"] == f"link loops to a folder above it (to {a})"
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

    fill(a, good_files(50, 2))  # a rerun may add
    third = run(a, b, out, test_fraction=0.3, pack=True)
    assert third.decoded == 2 and third.reused == 24 and third.removed == 0

    (a / "img003.png").unlink()  # but removes a prepared image only with --overwrite
    before = tree(out)
    with pytest.raises(MunitError, match=r"remove the prepared images of 1 source file\(s\).*A/img003.png \(gone\)") as caught:
        run(a, b, out, test_fraction=0.3, pack=True)
    assert "--overwrite" in caught.value.hint and tree(out) == before
    third = run(a, b, out, test_fraction=0.3, pack=True, overwrite=True)
    assert third.decoded == 0 and third.reused == 25 and third.removed == 1
    assert third.removed_sources == ["img003.png"]
    kept = [e for e in manifest(out)["files"] if e["domain"] == "A"]
    on_disk = sorted(p.relative_to(out).as_posix() for d in ("trainA", "testA") for p in (out / d).iterdir())
    assert on_disk == sorted(e["outputs"]["A"] for e in kept)
    assert len(PackedDomain(out / "packed" / "trainA")) == len(list((out / "trainA").iterdir()))


def test_split_is_stable_when_files_are_added(tmp_path):
    a = fill(tmp_path / "A", good_files(0, 30))
    b = fill(tmp_path / "B", good_files(200, 8))
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
    before = tree(out)
    with pytest.raises(MunitError, match=r"other settings \(size 16 -> 8\).*rebuild") as caught:
        run(a, b, out, size=8)
    assert "--overwrite" in caught.value.hint and tree(out) == before
    rebuilt = run(a, b, out, size=8, overwrite=True)
    assert rebuilt.rebuilt and rebuilt.decoded == 24 and rebuilt.removed == 24
    assert rebuilt.rebuilt_because == ["size 16 -> 8"]
    assert {Image.open(p).size for p in (out / "trainA").iterdir()} == {(10, 8)}


def test_overwrite_removes_only_what_prepare_wrote(tmp_path, two_folders):
    a, b = two_folders
    handmade = fill(tmp_path / "handmade", {"trainA/mine.png": solid(1), "notes.txt": b"keep"})
    before = tree(handmade)
    for overwrite in (False, True):
        with pytest.raises(UsageError, match="holds trainA but was not made by munit prepare"):
            run(a, b, handmade, overwrite=overwrite)
    assert tree(handmade) == before

    out = tmp_path / "out"
    run(a, b, out, size=16)
    fill(out, {"trainA/mine.png": solid(2), "trainA/notes.txt": b"mine", "extra/x.png": solid(3)})
    run(a, b, out, size=8, overwrite=True)  # a rebuild
    assert (out / "trainA" / "mine.png").read_bytes() == solid(2)
    assert (out / "trainA" / "notes.txt").read_bytes() == b"mine" and (out / "extra" / "x.png").is_file()


def test_a_rerun_may_add_but_never_removes_or_rebuilds_without_overwrite(tmp_path, two_folders):
    a, b = two_folders
    out = tmp_path / "out"
    run(a, b, out, pack=True)
    before = tree(out)

    # touched and renamed sources keep their images: nothing to remove, nothing decoded again
    os.utime(a / "img001.png", ns=(1, 1))
    os.rename(a / "img002.png", a / "renamed.png")
    again = run(a, b, out, pack=True)
    assert again.removed == 0 and again.decoded == 1 and again.reused == 23
    assert {k: v for k, v in tree(out).items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    before = tree(out)

    refusals = {
        "pack": (lambda: None, {"pack": False}, "packed shards"),
        "format": (lambda: None, {"fmt": "jpg"}, r"fmt \"png\" -> \"jpg\""),
        "changed": (lambda: (a / "img004.png").write_bytes(solid(99)), {}, r"A/img004.png \(changed\)"),
    }
    for name, (change, options, message) in refusals.items():
        change()
        with pytest.raises(MunitError, match=message) as caught:
            run(a, b, out, **{"pack": True, **options})
        assert "--overwrite" in caught.value.hint, name
        assert tree(out) == before, name
    (a / "img004.png").unlink()
    os.rename(a / "renamed.png", a / "img002.png")
    fill(a, {"img004.png": solid(4)})  # the source is back as it was: nothing to remove
    moved = run(a, b, out, pack=True, test_count=2)  # moving files between splits removes nothing
    assert moved.removed == 0 and sum(len(os.listdir(out / d)) for d in ("trainA", "testA")) == 12


def test_synthetic_reruns_add_but_do_not_rebuild_without_overwrite(tmp_path, two_folders):
    out = tmp_path / "shapes"
    synth = {"synthetic_kind": "shapes", "test_count": 2, "size": 16}
    prepare.run(None, None, out, synthetic_count=3, **synth)
    first = tree(out)
    grown = prepare.run(None, None, out, synthetic_count=5, **synth)  # more images: an addition
    assert grown.removed == 0 and not grown.rebuilt
    assert all(tree(out)[k] == v for k, v in first.items() if k != "manifest.json")
    before = tree(out)
    for options in ({"synthetic_count": 4}, {"synthetic_count": 5, "seed": 1}):
        with pytest.raises(MunitError, match="other settings"):
            prepare.run(None, None, out, **{**synth, **options})
        assert tree(out) == before
    with pytest.raises(MunitError, match="kind synthetic -> folders"):
        run(*two_folders, out)
    assert tree(out) == before
    rebuilt = prepare.run(None, None, out, synthetic_count=4, overwrite=True, **synth)
    assert rebuilt.rebuilt and rebuilt.removed == 14 and len(os.listdir(out / "trainA")) == 4


def test_the_table_says_what_overwrite_removed(tmp_path, two_folders):
    from typer.testing import CliRunner

    from munit_cli.cli import app

    a, b = two_folders
    out = tmp_path / "out"
    args = ["prepare", str(a), str(b), "--out", str(out), "--size", "16", "--workers", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    (a / "img005.png").unlink()
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "A/img005.png (gone)" in refused.output and "--overwrite" in refused.output
    done = CliRunner().invoke(app, [*args, "--overwrite"])
    assert done.exit_code == 0, done.output
    assert "removed 1 prepared image(s) (--overwrite): sources gone or changed: img005.png" in done.output
    rebuilt = CliRunner().invoke(app, [*args[:-4], "--size", "8", "--workers", "1", "--overwrite", "--json"])
    record = json.loads(rebuilt.stdout)
    assert record["rebuilt"] and record["rebuilt_because"] == ["size 16 -> 8"] and record["removed"] == 23


def test_names_that_print_alike_stay_two_files(tmp_path):
    a = fill(tmp_path / "A", good_files(0, 2))
    (a / os.fsdecode(b"caf\xe9.png")).write_bytes(solid(50))
    (a / "caf\ufffd.png").write_bytes(solid(51))  # valid UTF-8 that prints the same
    (a / "new\nline.png").write_bytes(solid(51))  # a duplicate whose name holds a control character
    os.symlink(tmp_path / "x\x1b[31m.png", a / "away.png")  # a link out, to a name with an escape
    b = fill(tmp_path / "B", good_files(10, 2))
    out = tmp_path / "out"
    first = run(a, b, out, test_fraction=0)
    records = [e for e in manifest(out)["files"] if e["source"] == "caf\ufffd.png"]
    assert len(records) == 2 and {e["status"] for e in records} == {"kept"}
    assert {e.get("source_raw") for e in records} == {None, b"caf\xe9.png".hex()}
    assert first.domains["A"].train == 4 and len(os.listdir(out / "trainA")) == 4
    assert by_source(out)["A", "new\nline.png"]["status"] == "duplicate"
    assert by_source(out)["A", "away.png"]["reason"] == f"broken link (to {tmp_path}/x\\x1b[31m.png)"
    before = tree(out)
    again = run(a, b, out, test_fraction=0)
    assert again.decoded == 0 and again.removed == 0 and tree(out) == before


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda m: m["files"][0].update(sha256="../../../../etc/passwd" + "0" * 42), r"files\[0\]\.sha256"),
        (lambda m: m["files"][0].update(status="kept!"), r"files\[0\]\.status"),
        (lambda m: m["files"][0].update(bytes="95"), r"files\[0\]\.bytes"),
        (lambda m: m["files"][1].update(source=m["files"][0]["source"]), "listed twice"),
        (lambda m: m["files"][0].update(split="validation"), r"files\[0\]\.split"),
        (lambda m: m["files"][0].update(domain="C"), r"files\[0\]\.domain"),
        (lambda m: m["files"].append([]), "is not an object"),
        (lambda m: m.update(files={}), "files is not a list"),
        (lambda m: m.update(kind="other"), "kind"),
        (lambda m: m.update(version=2), "version"),
        (lambda m: m["files"][0].update(reason="\x1b[31mred", status="skipped"), "control characters"),
        (lambda m: m["files"][0].update(source_raw="zz"), "source_raw"),
    ],
)
def test_a_damaged_manifest_is_named_and_never_used(tmp_path, edit, field):
    a, b = fill(tmp_path / "A", good_files(0, 2)), fill(tmp_path / "B", good_files(10, 2))
    out = tmp_path / "out"
    run(a, b, out)
    record = manifest(out)
    edit(record)
    (out / "manifest.json").write_text(json.dumps(record))
    before = tree(out)
    with pytest.raises(MunitError, match=field) as caught:
        run(a, b, out)
    assert "edited or damaged" in str(caught.value) and "--overwrite" in caught.value.hint
    assert tree(out) == before
    rebuilt = run(a, b, out, overwrite=True)
    assert rebuilt.rebuilt and rebuilt.decoded == 4 and manifest(out)["complete"]


def test_a_manifest_that_is_not_json_or_never_ends_is_not_ours(tmp_path, two_folders):
    a, b = two_folders
    out = tmp_path / "out"
    run(a, b, out)
    (out / "manifest.json").write_bytes(b'{"format": "munit-prepare", "files": [' * 5000)
    with pytest.raises(UsageError, match="not made by munit prepare"):
        run(a, b, out, overwrite=True)
    (out / "manifest.json").unlink()
    os.mkfifo(out / "manifest.json")  # reading it would wait for a writer forever
    with pytest.raises(UsageError, match="not made by munit prepare"):
        run(a, b, out)


@pytest.mark.parametrize("layout", ["same", "a inside b", "b inside a"])
def test_one_folder_for_both_domains_is_refused(tmp_path, layout):
    a = fill(tmp_path / "A", good_files(0, 3))
    inner = fill(a / "inner", good_files(5, 3))
    pairs = {"same": (a, a), "a inside b": (inner, a), "b inside a": (a, inner)}
    with pytest.raises(UsageError, match="same folder|one folder inside the other"):
        run(*pairs[layout], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_sizes_and_counts_are_bounded(tmp_path, two_folders):
    a, b = two_folders
    out = tmp_path / "out"
    bounded = [
        ({"size": 100_000}, "--size must be between 0"),
        ({"workers": 100_000}, "--workers must be between 1"),
        ({"synthetic_kind": "shapes", "size": 100_000, "src": False}, "--size with --synthetic"),
        ({"synthetic_kind": "shapes", "synthetic_count": 10**9, "src": False}, "--synthetic-count"),
    ]
    for options, message in bounded:
        sources = (a, b) if options.pop("src", True) else (None, None)
        with pytest.raises(UsageError, match=message):
            prepare.run(*sources, out, **options)
    assert not out.exists()

    # an image that fits the pixel limit, but not once its short side is scaled up to --size
    thin = fill(tmp_path / "thin", {"thin.png": solid(1, (1, 3000))})
    one = fill(tmp_path / "one", good_files(0, 1))
    with pytest.raises(MunitError, match=r"domain A: none of its 1 source files could be used \(too large after resizing: 1\)"):
        run(thin, one, out, size=2048)
    assert by_source(out)["A", "thin.png"]["reason"] == "too large after resizing (12582912000 pixels)"
    with pytest.raises(MunitError, match="domain A: all 12 usable images went to the test split"):
        run(a, b, tmp_path / "all_test", test_count=20)


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


def test_links_and_special_files_in_a_source_folder(tmp_path, reliability):
    a = fill(tmp_path / "A", good_files(0, 3))
    b = fill(tmp_path / "B", good_files(10, 3))
    os.mkfifo(a / "pipe.png")  # would block a reader forever
    os.symlink("/", a / "root")  # would make the scan walk the whole file system
    os.symlink(b / "img010.png", a / "theirs.png")  # a file link is the user's choice: followed
    os.symlink(a / "img000.png", a / "again.png")  # the same file twice
    out = tmp_path / "out"
    with deadline(60):
        summary = run(a, b, out, test_fraction=0)
    entries = by_source(out)
    assert entries["A", "pipe.png"]["reason"] == "not a regular file (a named pipe)"
    assert entries["A", "root"]["reason"] == "link leaves the folder (to /)"
    assert entries["A", "theirs.png"]["status"] == "kept"
    assert entries["A", "again.png"]["reason"] == f"same file as another (listed as {a / 'img000.png'})"
    assert summary.domains["A"].train == 4 and summary.domains["A"].skipped == {
        "not a regular file": 1,
        "link leaves the folder": 1,
        "same file as another": 1,
    }
    with deadline(60):
        assert run(a, b, out, test_fraction=0).decoded == 1  # the pipe is tried again, and still skipped
    reliability.add("endless_inputs", 2)  # the pipe, the link to /
