"""Packed uint8 shards: round trips, repacking, and every field of index.json and of a shard
checked against what munit writes before it is used."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from munit_cli import shards
from munit_cli.errors import MunitError
from munit_cli.shards import PackedDomain, write_packed


def varied_images(count: int) -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [
        (f"{i:03d}.png", torch.randint(0, 256, (3, 8 + i % 3, 10 - i % 2), dtype=torch.uint8, generator=gen))
        for i in range(count)
    ]


def test_round_trip_across_shards_of_varied_sizes(tmp_path):
    items = varied_images(25)
    index = write_packed(iter(items), tmp_path / "p", shard_bytes=3 * 10 * 10 * 4)
    assert [s["count"] for s in index["shards"]] == [4] * 6 + [1]
    packed = PackedDomain(tmp_path / "p")
    assert len(packed) == 25 and packed.names == [n for n, _ in items] and packed.channels == 3
    for i, (_, tensor) in enumerate(items):
        assert torch.equal(packed[i], tensor) and packed[i].dtype == torch.uint8
    assert torch.equal(packed[-1], items[-1][1]) and torch.equal(packed.get(3), items[3][1])
    with pytest.raises(IndexError):
        packed[25]


def test_repack_replaces_old_shards(tmp_path):
    write_packed(iter(varied_images(6)), tmp_path / "p")
    write_packed(iter(varied_images(2)), tmp_path / "p")
    assert len(list((tmp_path / "p").glob("*.safetensors"))) == 1
    assert len(PackedDomain(tmp_path / "p")) == 2


def test_bad_inputs_and_indexes(tmp_path):
    with pytest.raises(MunitError, match="different channel counts"):
        rgb, gray = torch.zeros(3, 2, 2, dtype=torch.uint8), torch.zeros(1, 2, 2, dtype=torch.uint8)
        write_packed([("a", rgb), ("b", gray)], tmp_path / "mixed")
    with pytest.raises(MunitError, match="uint8"):
        write_packed([("a", torch.zeros(3, 2, 2))], tmp_path / "float")
    with pytest.raises(MunitError, match="no index.json"):
        PackedDomain(tmp_path / "nothing")
    folder = tmp_path / "future"
    write_packed(iter(varied_images(1)), folder)
    (folder / "index.json").write_text((folder / "index.json").read_text().replace('"version": 1', '"version": 99'))
    with pytest.raises(MunitError, match="version 99"):
        PackedDomain(folder)


def _index_change(folder: Path, **changes) -> None:
    path = folder / "index.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"shards": [{"file": "/etc/passwd", "count": 3}]}, "not a shard name"),
        ({"shards": [{"file": "../other/0123abcd-00000.safetensors", "count": 3}]}, "not a shard name"),
        ({"shards": [{"file": 5, "count": 3}]}, "not a shard name"),
        ({"shards": [{"file": "SHARD", "count": -3}]}, "count"),
        ({"shards": [{"file": "SHARD", "count": "3"}]}, "count"),
        ({"shards": "all of them"}, "list of tables"),
        ({"count": 4}, "names"),
        ({"count": True}, "count"),
        ({"names": [1, 2, 3]}, "names"),
        ({"names": "abc"}, "names"),
        ({"channels": 4}, "channels"),
        ({"channels": "3"}, "channels"),
        ({"shards": [{"file": "SHARD", "count": 2}]}, "do not add up"),
    ],
)
def test_index_fields_are_checked_before_use(tmp_path, reliability, changes, message):
    folder = tmp_path / "p"
    write_packed(iter(varied_images(3)), folder)
    shard = json.loads((folder / "index.json").read_text())["shards"][0]["file"]
    if "shards" in changes and isinstance(changes["shards"], list):
        changes["shards"] = [{**s, "file": shard if s["file"] == "SHARD" else s["file"]} for s in changes["shards"]]
    _index_change(folder, **changes)
    with pytest.raises(MunitError, match=message) as info:
        PackedDomain(folder)
    assert "index.json" in str(info.value)
    reliability.add("forged_training_files")


def test_deeply_nested_index_is_a_clear_error(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "index.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MunitError, match="index"):
        PackedDomain(folder)


def _forge_shard(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    name = json.loads((folder / "index.json").read_text())["shards"][0]["file"]
    tensors = load_file(str(folder / name))
    change(tensors)
    save_file(tensors, str(folder / name), metadata={"format": shards.FORMAT, "version": "1"})


@pytest.mark.parametrize(
    "what",
    ["offsets past the end", "shape larger than its bytes", "negative side", "wrong channels", "float pixels",
     "int32 offsets", "fewer offsets", "2-D pixels", "huge side"],
)  # fmt: skip
def test_lying_shards_are_refused_before_use(tmp_path, reliability, what):
    folder = tmp_path / "p"
    write_packed(iter(varied_images(3)), folder)

    def change(t):
        if what == "offsets past the end":
            t["offsets"][-1] += 1000
        elif what == "shape larger than its bytes":
            t["shapes"][0, 1] += 5
        elif what == "negative side":
            t["shapes"][0] = torch.tensor([3, -8, -10])
        elif what == "wrong channels":
            t["shapes"][:, 0] = 1
        elif what == "float pixels":
            t["pixels"] = t["pixels"].float()
        elif what == "int32 offsets":
            t["offsets"] = t["offsets"].int()
        elif what == "fewer offsets":
            t["offsets"] = t["offsets"][:-1].clone()
        elif what == "2-D pixels":
            t["pixels"] = t["pixels"].reshape(1, -1)
        else:
            t["shapes"][0] = torch.tensor([3, 2**40, 1])

    _forge_shard(folder, change)
    packed = PackedDomain(folder)
    with pytest.raises(MunitError, match="broken shard|unreadable shard"):
        packed[0]
    reliability.add("forged_training_files")


def test_find_packed(tmp_path):
    assert shards.find_packed(tmp_path) is None
    for name in ("trainA", "trainB"):
        write_packed(iter(varied_images(1)), tmp_path / "packed" / name)
    assert shards.find_packed(tmp_path) == (tmp_path / "packed" / "trainA", tmp_path / "packed" / "trainB")


def test_data_loading_benchmark_runs_on_a_tiny_set():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "data_loading.py"
    spec = importlib.util.spec_from_file_location("data_loading", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run_benchmark(size=32, crop=32, count=6, batch_size=2, seconds=0.3, rounds=1)
    assert [name.split()[0] for name, *_ in rows] == ["PNG", "JPEG", "packed"]
    assert all(n == 6 and wall > 0 and cpu > 0 for _, n, wall, cpu in rows)
