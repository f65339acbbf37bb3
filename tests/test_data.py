"""Training data: the sources of a domain (folders, prepared and packed datasets), augmentation,
the deterministic batch stream (a pure function of seed, domain, step and rank), the prefetching
threads and the fixed preview batch."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
import torch

from munit_cli import data
from munit_cli.config import DataConfig
from munit_cli.errors import MunitError, UsageError
from munit_cli.shards import write_packed


class Numbers:
    """A source whose image i is filled with the value i (so a batch says which images it holds)."""

    name = "n"
    folder = Path("numbers")

    def __init__(self, count: int = 10, unreadable: frozenset[int] = frozenset()):
        self.count, self.unreadable = count, unreadable

    def __len__(self):
        return self.count

    def get(self, i):
        return None if i in self.unreadable else torch.full((1, 4, 4), float(i), dtype=torch.uint8)


FLAT = DataConfig(load_size=4, crop_size=4, flip=False)


def values(batch: torch.Tensor) -> list[int]:
    return [round((x[0, 0, 0].item() + 1) * 127.5) for x in batch]


# ---------------------------------------------------------------------------------------------
# Augmentation


def test_augment_resizes_the_shorter_side_crops_and_scales_to_minus_one_one():
    img = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    cfg = DataConfig(load_size=20, crop_size=16)
    x = data.augment(img, cfg, random.Random(0))
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    white = data.augment(torch.full((1, 20, 20), 255, dtype=torch.uint8), cfg, random.Random(0))
    assert torch.allclose(white, torch.ones_like(white))


def test_augment_is_a_function_of_its_random_generator():
    img = torch.randint(0, 256, (3, 30, 30), dtype=torch.uint8)
    cfg = DataConfig(load_size=30, crop_size=16, flip=True)
    crops = [data.augment(img, cfg, random.Random(seed)) for seed in range(8)]
    assert torch.equal(crops[3], data.augment(img, cfg, random.Random(3)))
    assert len({c.sum().item() for c in crops}) > 1  # different seeds, different crops or flips
    centre = data.augment(img, cfg, random.Random(5), train=False)
    expected = img[:, 7:23, 7:23].float() / 127.5 - 1
    assert torch.equal(centre, expected)  # previews: the centre, never flipped


# ---------------------------------------------------------------------------------------------
# The batch stream


def test_a_batch_is_a_pure_function_of_the_step():
    one = data.DomainStream(Numbers(), FLAT, 3, 0, "a", data.Shard())
    other = data.DomainStream(Numbers(), FLAT, 3, 0, "a", data.Shard())
    assert torch.equal(one.batch(5), other.batch(5))
    for step in (7, 2, 5):  # any order: resume from any step is exact
        assert torch.equal(one.batch(step), other.batch(step))
    assert not torch.equal(one.batch(0), data.DomainStream(Numbers(), FLAT, 3, 1, "a", data.Shard()).batch(0))
    assert not torch.equal(one.batch(0), data.DomainStream(Numbers(), FLAT, 3, 0, "b", data.Shard()).batch(0))


def test_every_image_once_per_epoch_and_a_fresh_shuffle_each_epoch():
    stream = data.DomainStream(Numbers(10), FLAT, 5, 0, "a", data.Shard())
    epoch_0 = values(stream.batch(0)) + values(stream.batch(1))
    epoch_1 = values(stream.batch(2)) + values(stream.batch(3))
    assert sorted(epoch_0) == sorted(epoch_1) == list(range(10))
    assert epoch_0 != epoch_1


def test_unreadable_images_are_replaced_by_the_next_readable_one():
    stream = data.DomainStream(Numbers(6, unreadable=frozenset({1, 4})), FLAT, 6, 0, "a", data.Shard())
    got = values(stream.batch(0))
    assert len(got) == 6 and not {1, 4} & set(got)
    with pytest.raises(MunitError, match="none of its images could be read"):
        data.DomainStream(Numbers(3, unreadable=frozenset({0, 1, 2})), FLAT, 1, 0, "a", data.Shard()).batch(0)


def test_ranks_take_disjoint_slices_of_the_global_batch():
    whole = data.DomainStream(Numbers(), FLAT, 4, 0, "a", data.Shard(0, 1))
    ranks = [data.DomainStream(Numbers(), FLAT, 2, 0, "a", data.Shard(r, 2)) for r in range(2)]
    for step in range(6):  # crosses epoch boundaries: 10 images, 4 per step
        joined = torch.cat([s.batch(step) for s in ranks])
        assert torch.equal(joined, whole.batch(step))
        assert set(ranks[0].positions(step)).isdisjoint(ranks[1].positions(step))
    # every epoch is a fresh shuffle
    assert whole._perm(0) != whole._perm(1)


# ---------------------------------------------------------------------------------------------
# Prefetching threads


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_prefetched_batches_equal_batches_made_in_order(threads):
    made_on = set()

    def make(step):
        made_on.add(threading.current_thread() is threading.main_thread())
        return step * 10

    loader = data.Prefetcher(make, start_step=4, threads=threads)
    try:
        assert [loader.get(step) for step in range(4, 12)] == [step * 10 for step in range(4, 12)]
    finally:
        loader.close()
    assert made_on == ({True} if threads == 0 else {False})  # 0: no thread at all


# ---------------------------------------------------------------------------------------------
# Sources


def test_a_prepared_dataset_folder_gives_its_two_training_folders(image_folders, tmp_path):
    a, b = image_folders
    root = a.parent
    a.rename(root / "trainA")
    b.rename(root / "trainB")
    source_a, source_b = data.open_sources([root], DataConfig(load_size=32, crop_size=32), 3)
    assert (source_a.folder, source_b.folder) == (root / "trainA", root / "trainB")
    assert len(source_a) == len(source_b) == 5
    with pytest.raises(MunitError, match="expected a prepared dataset"):
        data.open_sources([tmp_path / "nothing-here"], DataConfig(), 3)


def test_the_same_folder_for_both_domains_is_a_usage_error(image_folders):
    a, _ = image_folders
    with pytest.raises(UsageError, match="both domains are the same folder"):
        data.open_sources([a, a.parent / "." / a.name], DataConfig(load_size=32, crop_size=32), 3)


def pack(root: Path, channels: int) -> None:
    gen = torch.Generator().manual_seed(0)
    for domain in ("trainA", "trainB"):
        images = [(f"{i}.png", torch.randint(0, 256, (channels, 8, 8), dtype=torch.uint8, generator=gen)) for i in range(3)]
        write_packed(iter(images), root / "packed" / domain)


def test_packed_grayscale_data_names_the_key_to_set(tmp_path):
    pack(tmp_path, channels=1)
    with pytest.raises(UsageError) as info:
        data.open_sources([tmp_path], DataConfig(load_size=8, crop_size=8), 3)
    assert "1 channel (grayscale)" in str(info.value) and "model.input_dim is 3" in str(info.value)
    assert info.value.hint == "train with --set model.input_dim=1"
    source_a, _ = data.open_sources([tmp_path], DataConfig(load_size=8, crop_size=8), 1)
    assert source_a.get(0).shape == (1, 8, 8)


def test_packed_rgb_data_for_a_grayscale_model_is_refused(tmp_path):
    pack(tmp_path, channels=3)
    with pytest.raises(UsageError, match="3 channels") as info:
        data.open_sources([tmp_path], DataConfig(load_size=8, crop_size=8), 1)
    assert info.value.hint == "train with --set model.input_dim=3"


def test_preview_batch_takes_the_first_readable_images_centre_cropped():
    got = data.preview_batch(Numbers(6, unreadable=frozenset({0, 2})), FLAT, 3)
    assert values(got) == [1, 3, 4]
    with pytest.raises(MunitError, match="none of its images"):
        data.preview_batch(Numbers(2, unreadable=frozenset({0, 1})), FLAT, 2)


# ---------------------------------------------------------------------------------------------
# Images too thin to crop squares from


def test_a_thin_image_in_a_folder_is_skipped_with_one_warning(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "domain"
    folder.mkdir()
    Image.new("RGB", (3000, 2), (255, 0, 0)).save(folder / "thin.png")  # 32 px high: 48,000 px wide
    Image.new("RGB", (40, 30), (0, 0, 255)).save(folder / "wide.png")
    source = data.FolderSource(folder, load_size=32, channels=3)
    thin = source.paths.index(folder / "thin.png")
    assert source.get(thin) is None and source.get(thin) is None
    assert source.get(1 - thin).shape == (3, 32, 43)
    err = capsys.readouterr().err
    assert err.count("thin.png") == 1 and "more than 16 times longer than wide" in err


def test_a_thin_packed_image_is_skipped_with_one_warning(tmp_path, capsys):
    images = [("thin.png", torch.zeros(3, 2, 3000, dtype=torch.uint8)), ("ok.png", torch.zeros(3, 8, 8, dtype=torch.uint8))]
    write_packed(iter(images), tmp_path / "p")
    from munit_cli.shards import PackedDomain

    packed = PackedDomain(tmp_path / "p")
    assert packed.get(0) is None and packed.get(0) is None
    assert packed.get(1).shape == (3, 8, 8)
    assert packed[0].shape == (3, 2, 3000)  # the pack itself is intact
    assert capsys.readouterr().err.count("thin.png") == 1
    stream = data.DomainStream(packed, DataConfig(load_size=8, crop_size=8), 4, 0, "a", data.Shard())
    assert stream.batch(0).shape == (4, 3, 8, 8)  # batches draw only the usable image


def test_folders_of_links_train_and_say_what_was_skipped(tmp_path, capsys, image_folders):
    """A dataset split by folders of symbolic links: every link is followed to the user's image."""
    import os

    from typer.testing import CliRunner

    from munit_cli.cli import app

    store_a, _ = image_folders
    links = tmp_path / "trainA"
    links.mkdir()
    originals = sorted(store_a.iterdir())
    for path in originals:
        os.symlink(path, links / path.name)
    os.symlink(tmp_path / "moved-away.png", links / "gone.png")
    source = data.FolderSource(links, load_size=32, channels=3)
    assert [p.name for p in source.paths] == [p.name for p in originals]
    assert torch.equal(source.get(0), data.FolderSource(store_a, load_size=32, channels=3).get(0))
    assert "1 skipped: 1 broken link" in capsys.readouterr().err

    dead = tmp_path / "dead"
    dead.mkdir()
    for i in range(3):
        os.symlink(tmp_path / f"nowhere{i}.png", dead / f"{i}.png")
    result = CliRunner().invoke(app, ["train", str(dead), str(links), "--preset", "tiny", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{dead}: no images found (3 skipped: 3 broken link)" in result.stderr
    assert "links to files are followed wherever they point" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
