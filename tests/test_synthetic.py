from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from munit_cli.errors import UsageError
from munit_cli.synthetic import make_shapes

SPLITS = ("trainA", "trainB", "testA", "testB")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, n_train=24, n_test=6, seed=3)
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int32)


def shift_any(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square."""
    padded = np.pad(mask, radius)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def boundary_band(mask: np.ndarray, radius: int) -> np.ndarray:
    inside = mask > 127
    eroded = ~shift_any(~inside, 1)
    return shift_any(inside & ~eroded, radius)


def test_counts_layout_and_return_value(shapes, tmp_path):
    for split in SPLITS:
        names = sorted(p.name for p in (shapes / split).iterdir())
        assert names == sorted(p.name for p in (shapes / "masks" / split).iterdir())
        assert len(names) == (24 if split.startswith("train") else 6)
    info = make_shapes(tmp_path, n_train=2, n_test=1, size=32, channels=1)
    assert info["counts"] == {"trainA": 2, "trainB": 2, "testA": 1, "testB": 1}
    assert info["folders"]["masks/testB"] == tmp_path / "masks" / "testB"
    assert Image.open(tmp_path / "trainB" / "0000.png").mode == "L"
    assert Image.open(tmp_path / "trainB" / "0000.png").size == (32, 32)


def test_deterministic_and_seed_dependent(shapes, tmp_path):
    make_shapes(tmp_path / "same", n_train=24, n_test=6, seed=3)
    assert tree_bytes(tmp_path / "same") == tree_bytes(shapes)
    make_shapes(tmp_path / "other", n_train=24, n_test=6, seed=4)
    other = tree_bytes(tmp_path / "other")
    assert sum(other[k] == v for k, v in tree_bytes(shapes).items()) == 0


def test_existing_images_do_not_change_when_counts_grow(shapes, tmp_path):
    make_shapes(tmp_path, n_train=3, n_test=2, seed=3)
    small, big = tree_bytes(tmp_path), tree_bytes(shapes)
    assert all(big[name] == data for name, data in small.items())


def test_masks_are_binary_and_non_trivial(shapes):
    for mask_path in (shapes / "masks").rglob("*.png"):
        mask = load(mask_path)
        assert set(np.unique(mask)) == {0, 255}
        assert 0.05 <= (mask == 255).mean() <= 0.70


def test_outlines_are_dark_strokes_on_white_along_the_mask_edge(shapes):
    for split in ("trainA", "testA"):
        for path in (shapes / split).iterdir():
            gray = load(path).mean(axis=2)
            mask = load(shapes / "masks" / split / path.name)
            dark = gray < 128
            assert dark.sum() > 40  # a visible stroke
            assert (dark & boundary_band(mask, radius=2)).sum() / dark.sum() > 0.97
            # Sharp star tips are thinner than a pixel in the mask, hence the wider band here.
            assert (gray[~boundary_band(mask, radius=3)] >= 250).all()  # away from the outline: white paper


def test_filled_shapes_stand_out_from_their_background(shapes):
    for split in ("trainB", "testB"):
        for path in (shapes / split).iterdir():
            rgb = load(path).astype(np.float64)
            inside = load(shapes / "masks" / split / path.name) > 127
            outside = ~shift_any(inside, 2)
            core = ~shift_any(~inside, 1)
            background = np.median(rgb[outside], axis=0)
            distance = np.linalg.norm(rgb[core] - background, axis=1)
            assert (distance > 40).mean() > 0.9


def test_test_split_is_paired_and_train_split_is_not(shapes):
    for path in (shapes / "masks" / "testA").iterdir():
        assert path.read_bytes() == (shapes / "masks" / "testB" / path.name).read_bytes()
    train_a = tree_bytes(shapes / "masks" / "trainA")
    train_b = tree_bytes(shapes / "masks" / "trainB")
    assert sum(train_a[name] == train_b[name] for name in train_a) == 0


def test_outline_and_fill_differ_in_style(shapes):
    a = load(shapes / "testA" / "0000.png")
    b = load(shapes / "testB" / "0000.png")
    assert (a[:, :, 0] == a[:, :, 1]).all() and (a[:, :, 1] == a[:, :, 2]).all()  # A is black and white
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("kwargs", [{"n_train": -1}, {"seed": -1}, {"size": 8}, {"channels": 2}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(UsageError):
        make_shapes(tmp_path, **kwargs)
