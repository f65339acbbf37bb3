"""safetensors checkpoints: round trips, atomic writes, damaged files, architecture checks, pruning."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

from munit_cli import checkpoint, files, models, trainstate
from munit_cli.errors import MunitError


@pytest.fixture(scope="module")
def trained(tiny_cfg):
    """A tiny model after two optimizer steps, so both Adam optimizers hold moments (read-only)."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    gen, dis = models.build(cfg.model)
    opt_gen, opt_dis = adam(gen, cfg), adam(dis, cfg)
    for _ in range(2):
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        for net, opt in ((gen, opt_gen), (dis, opt_dis)):
            opt.zero_grad()
            y = net(x, x, torch.randn(2, 4), torch.randn(2, 4)) if net is gen else dis(x, x, x, x)
            sum(v.float().square().mean() for vs in y.values() for v in (vs if isinstance(vs, list) else [vs])).backward()
            opt.step()
    return cfg, gen, dis, opt_gen, opt_dis


def adam(module, cfg):
    o = cfg.optim
    return torch.optim.Adam(module.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)


def _fresh(cfg):
    torch.manual_seed(123)
    gen, dis = models.build(cfg.model)
    return gen, dis, adam(gen, cfg), adam(dis, cfg)


# ---------------------------------------------------------------------------------------------
# Generator files


def test_generator_round_trip(tmp_path, trained):
    cfg, gen, *_ = trained
    path = tmp_path / "gen.safetensors"
    checkpoint.save_generator(path, gen, cfg, ("edges", "shoes"), 1234, "abcdef0123456789")
    loaded = checkpoint.load_generator(path)
    assert loaded.names == ("edges", "shoes")
    assert loaded.step == 1234
    assert loaded.fingerprint == "abcdef0123456789"
    assert loaded.cfg.to_dict() == cfg.to_dict()
    assert loaded.path == path
    assert loaded.metadata["format"] == checkpoint.GENERATOR_KIND
    want = gen.state_dict()
    got = loaded.model.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    # and it translates exactly like the original
    x, s = torch.rand(1, 3, 32, 32), torch.randn(1, 4)
    gen.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.gen_b.decode(loaded.model.gen_a.encode(x)[0], s),
                                   gen.gen_b.decode(gen.gen_a.encode(x)[0], s), atol=0, rtol=0)


def test_generator_with_a_shared_content_encoder_round_trips(tmp_path, tiny_cfg):
    cfg = tiny_cfg(model={"shared_content_encoder": True})
    torch.manual_seed(0)
    gen, _ = models.build(cfg.model)
    ema = copy.deepcopy(gen)  # as updates.EMA keeps it: the copy shares its encoder the same way
    path = tmp_path / "gen.safetensors"
    checkpoint.save_generator(path, gen, cfg, ("edges", "shoes"), 7, "abcdef0123456789", ema=ema)

    tensors, _ = checkpoint.read_tensors(path, checkpoint.GENERATOR_KIND)
    key = "content_encoder.model.0.1.weight"
    for prefix in ("", checkpoint.EMA_PREFIX):  # each generator stays complete in the file
        assert torch.equal(tensors[f"{prefix}gen_a.{key}"], tensors[f"{prefix}gen_b.{key}"])
    loaded = checkpoint.load_generator(path)
    assert loaded.cfg.model.shared_content_encoder
    assert loaded.model.gen_a.content_encoder is loaded.model.gen_b.content_encoder
    for name, value in gen.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name

    # a file whose two copies of the shared encoder disagree is refused, not half loaded
    for prefix in ("", checkpoint.EMA_PREFIX):
        tensors[f"{prefix}gen_b.{key}"] = tensors[f"{prefix}gen_b.{key}"] + 1
    forged = tmp_path / "forged.safetensors"
    checkpoint.save_tensors(forged, tensors, checkpoint.read_tensors(path, checkpoint.GENERATOR_KIND)[1])
    with pytest.raises(MunitError, match=f"gen_a.{key} and gen_b.{key} are one shared weight"):
        checkpoint.load_generator(forged)


def test_generator_file_with_ema_weights(tmp_path, trained):
    cfg, gen, *_ = trained
    ema = models.MUNIT(cfg.model)
    with torch.no_grad():
        for p in ema.parameters():
            p.fill_(0.25)
    path = tmp_path / "gen.safetensors"
    checkpoint.save_generator(path, gen, cfg, ("a", "b"), 3, "0" * 16, ema=ema)
    averaged = checkpoint.load_generator(path)  # inference prefers the averaged weights
    assert all(torch.equal(p, torch.full_like(p, 0.25)) for p in averaged.model.parameters())
    raw = checkpoint.load_generator(path, use_ema=False)
    for key, value in gen.state_dict().items():
        assert torch.equal(raw.model.state_dict()[key], value), key


def test_generator_file_is_plain_safetensors_without_pickles(tmp_path, trained):
    from safetensors import safe_open

    cfg, gen, *_ = trained
    path = tmp_path / "gen.safetensors"
    checkpoint.save_generator(path, gen, cfg, ("a", "b"), 7, "f" * 16)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(gen.state_dict())
    assert json.loads(meta["config"]) == cfg.to_dict()
    assert json.loads(meta["names"]) == ["a", "b"]
    assert meta["format_version"] == checkpoint.FORMAT_VERSION
    assert meta["step"] == "7"


def test_generator_for_another_architecture_does_not_fit(tmp_path, tiny_cfg, trained):
    cfg, gen, *_ = trained
    path = tmp_path / "gen.safetensors"
    checkpoint.save_generator(path, gen, cfg, ("a", "b"), 1, "0" * 16)
    tensors, _ = checkpoint.read_tensors(path, checkpoint.GENERATOR_KIND)
    wider = models.MUNIT(tiny_cfg(model={"dim": 16}).model)
    with pytest.raises(MunitError, match="do not fit") as info:
        checkpoint.load_state_dict_checked(wider, tensors, path)
    assert str(path) in str(info.value)
    deeper = models.MUNIT(tiny_cfg(model={"n_res": 2}).model)
    with pytest.raises(MunitError, match="do not fit"):
        checkpoint.load_state_dict_checked(deeper, tensors, path)

    # a file whose stored config disagrees with its tensors
    forged = tmp_path / "forged.safetensors"
    other = tiny_cfg(model={"dim": 16})
    checkpoint.save_tensors(forged, gen.state_dict(), checkpoint.generator_metadata(other, ("a", "b"), 1, "0" * 16))
    with pytest.raises(MunitError, match="do not fit") as info:
        checkpoint.load_generator(forged)
    assert str(forged) in str(info.value)


# ---------------------------------------------------------------------------------------------
# Training-state files


def test_state_round_trip(tmp_path, trained):
    cfg, gen, dis, opt_gen, opt_dis = trained
    path = tmp_path / "state.safetensors"
    trainstate.save_state(path, dis, opt_gen, opt_dis, cfg, ("a", "b"), 2, {"fingerprint": "xyz"})
    tensors, metadata = checkpoint.read_tensors(path, checkpoint.STATE_KIND)
    # no global random state: training draws from generators seeded by (seed, step)
    assert not any(k.startswith("rng.") for k in [*tensors, *metadata])

    _, dis2, opt_gen2, opt_dis2 = _fresh(cfg)
    torch.manual_seed(7)
    expected = torch.rand(5)
    torch.manual_seed(7)
    out = trainstate.load_state(path, dis2, opt_gen2, opt_dis2)
    assert torch.equal(torch.rand(5), expected)  # loading leaves the global RNG alone
    assert out == {"step": 2, "extra": {"fingerprint": "xyz"}}

    for key, value in dis.state_dict().items():
        assert torch.equal(dis2.state_dict()[key], value), key
    for old, new in ((opt_gen, opt_gen2), (opt_dis, opt_dis2)):
        a, b = old.state_dict(), new.state_dict()
        assert json.loads(json.dumps(a["param_groups"])) == json.loads(json.dumps(b["param_groups"]))
        assert a["state"].keys() == b["state"].keys() and len(a["state"]) == len(old.param_groups[0]["params"])
        for pid, st in a["state"].items():
            assert set(st) == {"step", "exp_avg", "exp_avg_sq"}
            for name, value in st.items():
                assert torch.equal(torch.as_tensor(b["state"][pid][name]), torch.as_tensor(value)), (pid, name)
            assert st["exp_avg_sq"].abs().sum() > 0  # real moments, not zeros


def test_restored_optimizer_continues_identically(tmp_path, trained):
    import copy

    cfg, gen, dis, opt_gen, opt_dis = trained
    path = tmp_path / "state.safetensors"
    trainstate.save_state(path, dis, opt_gen, opt_dis, cfg, ("a", "b"), 2, {})
    # the original pair, continued (on copies: the fixture is shared) ...
    dis1 = copy.deepcopy(dis)
    opt_dis1 = adam(dis1, cfg)
    opt_dis1.load_state_dict(copy.deepcopy(opt_dis.state_dict()))
    # ... and a pair restored from the file
    _, dis2, opt_gen2, opt_dis2 = _fresh(cfg)
    trainstate.load_state(path, dis2, opt_gen2, opt_dis2)
    torch.manual_seed(5)
    grads = [torch.randn_like(p) for p in dis.parameters()]
    for module, opt in ((dis1, opt_dis1), (dis2, opt_dis2)):
        for _ in range(2):
            for p, g in zip(module.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for (key, a), b in zip(dis1.state_dict().items(), dis2.state_dict().values()):
        assert torch.equal(a, b), key
    assert not torch.equal(dis1.state_dict()[key], dis.state_dict()[key])  # the steps did move it


def _forged_state(tmp_path, trained, tensors_change=None, **meta_changes):
    """A state file whose contents were changed and its checksum recomputed, as a forger would."""
    cfg, gen, dis, opt_gen, opt_dis = trained
    path = tmp_path / "state.safetensors"
    trainstate.save_state(path, dis, opt_gen, opt_dis, cfg, ("a", "b"), 2, {})
    tensors, meta = checkpoint.read_tensors(path, checkpoint.STATE_KIND)
    if tensors_change:
        tensors_change(tensors)
    forged = tmp_path / "forged.safetensors"
    checkpoint.save_tensors(forged, tensors, {**meta, **meta_changes})
    return cfg, forged


def _groups(trained, **change) -> str:
    groups = trained[3].state_dict()["param_groups"]
    return json.dumps([{**g, **change} for g in groups])


@pytest.mark.parametrize(
    "change",
    [
        {"lr": "fast"},
        {"betas": ["a", 0.999]},
        {"betas": [0.5]},
        {"eps": None},
        {"weight_decay": float("nan")},
        {"amsgrad": "yes"},
        {"params": [0, 1]},
        {"lr": 1e400},
        {"unknown_setting": 3},
    ],
    ids=lambda c: str(c)[:30],
)
def test_forged_optimizer_settings_are_refused_at_load(tmp_path, trained, reliability, change):
    cfg, path = _forged_state(tmp_path, trained, **{"opt_gen.param_groups": _groups(trained, **change)})
    _, dis2, opt_gen2, opt_dis2 = _fresh(cfg)
    before = json.dumps(opt_gen2.state_dict()["param_groups"])
    with pytest.raises(MunitError, match="broken training state") as info:
        trainstate.load_state(path, dis2, opt_gen2, opt_dis2)
    assert str(path) in str(info.value)
    assert json.dumps(opt_gen2.state_dict()["param_groups"]) == before  # nothing was loaded
    reliability.add("forged_training_files")


@pytest.mark.parametrize("what", ["shape", "not finite", "missing moment", "integer step", "param id"])
def test_forged_optimizer_moments_are_refused_at_load(tmp_path, trained, reliability, what):
    def change(tensors):
        key = next(k for k in tensors if k.startswith("opt_dis.state.") and k.endswith(".exp_avg"))
        if what == "shape":
            tensors[key] = tensors[key].flatten()[:3].clone()
        elif what == "not finite":
            tensors[key] = torch.full_like(tensors[key], float("inf"))
        elif what == "missing moment":
            del tensors[key]
        elif what == "integer step":
            step = key.replace(".exp_avg", ".step")
            tensors[step] = torch.tensor(2, dtype=torch.int64)
        else:  # the moments of a parameter the optimizer does not have
            pid = key.split(".")[2]
            for name in ("step", "exp_avg", "exp_avg_sq"):
                tensors[f"opt_dis.state.9999.{name}"] = tensors.pop(f"opt_dis.state.{pid}.{name}")

    cfg, path = _forged_state(tmp_path, trained, change)
    _, dis2, opt_gen2, opt_dis2 = _fresh(cfg)
    with pytest.raises(MunitError, match="broken training state"):
        trainstate.load_state(path, dis2, opt_gen2, opt_dis2)
    reliability.add("forged_training_files")


def test_state_files_of_older_versions_with_rng_states_still_load(tmp_path, trained):
    def add_rng(tensors):
        tensors["rng.torch"] = torch.get_rng_state()

    cfg, path = _forged_state(tmp_path, trained, add_rng, **{"rng.python": "[3, [1, 2], null]"})
    _, dis2, opt_gen2, opt_dis2 = _fresh(cfg)
    assert trainstate.load_state(path, dis2, opt_gen2, opt_dis2)["step"] == 2


def test_state_file_for_another_discriminator_does_not_fit(tmp_path, tiny_cfg, trained):
    cfg, gen, dis, opt_gen, opt_dis = trained
    path = tmp_path / "state.safetensors"
    trainstate.save_state(path, dis, opt_gen, opt_dis, cfg, ("a", "b"), 2, {})
    _, dis2, opt_gen2, opt_dis2 = _fresh(tiny_cfg(model={"dis_num_scales": 3}))
    with pytest.raises(MunitError, match="do not fit"):
        trainstate.load_state(path, dis2, opt_gen2, opt_dis2)


# ---------------------------------------------------------------------------------------------
# Atomic writes


def test_atomic_write_leaves_no_temporary_files(tmp_path, trained):
    cfg, gen, dis, opt_gen, opt_dis = trained
    checkpoint.save_generator(tmp_path / "gen.safetensors", gen, cfg, ("a", "b"), 1, "0" * 16)
    trainstate.save_state(tmp_path / "state.safetensors", dis, opt_gen, opt_dis, cfg, ("a", "b"), 1, {})
    files.write_atomic(tmp_path / "x.bin", b"one", durable=True)
    files.write_atomic(tmp_path / "x.bin", b"two", durable=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.safetensors", "state.safetensors", "x.bin"]
    assert (tmp_path / "x.bin").read_bytes() == b"two"


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "gen.safetensors"
    files.write_atomic(target, b"old content", durable=True)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(MunitError) as info:
        files.write_atomic(target, b"new content", durable=True)
    assert str(target) in str(info.value) and "No space left" in str(info.value)
    monkeypatch.undo()
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["gen.safetensors"]


def test_write_under_a_regular_file_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_bytes(b"x")
    target = tmp_path / "afile" / "gen.safetensors"
    with pytest.raises(MunitError) as info:
        files.write_atomic(target, b"data", durable=True)
    assert str(target) in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


# ---------------------------------------------------------------------------------------------
# Damaged or foreign files


@pytest.fixture
def good_files(tmp_path, trained):
    cfg, gen, dis, opt_gen, opt_dis = trained
    gen_path, state_path = tmp_path / "gen.safetensors", tmp_path / "state.safetensors"
    checkpoint.save_generator(gen_path, gen, cfg, ("a", "b"), 1, "0" * 16)
    trainstate.save_state(state_path, dis, opt_gen, opt_dis, cfg, ("a", "b"), 1, {})
    return gen_path, state_path


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file(tmp_path, good_files, keep):
    gen_path, _ = good_files
    data = gen_path.read_bytes()
    broken = tmp_path / "truncated.safetensors"
    broken.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MunitError) as info:
        checkpoint.read_tensors(broken, checkpoint.GENERATOR_KIND)
    assert str(broken) in str(info.value)
    with pytest.raises(MunitError):
        checkpoint.load_generator(broken)


@pytest.mark.parametrize("content", [b"", b"\x00", os.urandom(4096), b"\xff" * 8 + b"{}", b"PK\x03\x04 zip"])
def test_random_bytes(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(MunitError) as info:
        checkpoint.read_tensors(path, checkpoint.GENERATOR_KIND)
    assert str(path) in str(info.value)


def test_file_of_another_kind(good_files, tmp_path):
    from safetensors.torch import save_file

    gen_path, state_path = good_files
    with pytest.raises(MunitError, match="not a munit generator file") as info:
        checkpoint.read_tensors(state_path, checkpoint.GENERATOR_KIND)
    assert str(state_path) in str(info.value)
    with pytest.raises(MunitError, match="not a munit train-state file") as info:
        checkpoint.read_tensors(gen_path, checkpoint.STATE_KIND)
    assert str(gen_path) in str(info.value)
    with pytest.raises(MunitError):
        checkpoint.load_generator(state_path)
    plain = tmp_path / "plain.safetensors"  # valid safetensors, no munit metadata
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(MunitError) as info:
        checkpoint.load_generator(plain)
    assert str(plain) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(MunitError) as info:
        checkpoint.load_generator(path)
    assert str(path) in str(info.value)


def test_newer_format_version_is_refused(tmp_path, trained):
    cfg, gen, *_ = trained
    path = tmp_path / "gen.safetensors"
    meta = checkpoint.generator_metadata(cfg, ("a", "b"), 1, "0" * 16)
    meta["format_version"] = "99"
    checkpoint.save_tensors(path, gen.state_dict(), meta)
    with pytest.raises(MunitError, match="version") as info:
        checkpoint.load_generator(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------
# Run folders


def _touch_checkpoints(run: Path, steps, kinds=("gen", "state")):
    folder = run / checkpoint.CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for step in steps:
        gen_path, state_path = checkpoint.checkpoint_paths(run, step)
        for kind, path in (("gen", gen_path), ("state", state_path)):
            if kind in kinds:
                path.write_bytes(b"x")


def test_checkpoint_names(tmp_path):
    gen_path, state_path = checkpoint.checkpoint_paths(tmp_path, 1500)
    assert gen_path == tmp_path / "checkpoints" / "gen_00001500.safetensors"
    assert state_path == tmp_path / "checkpoints" / "state_00001500.safetensors"


def test_prune_keeps_the_newest(tmp_path):
    _touch_checkpoints(tmp_path, [5, 10, 15, 20, 100])
    (tmp_path / "checkpoints" / "notes.txt").write_text("keep me")
    (tmp_path / "checkpoints" / "gen_best.safetensors").write_bytes(b"x")
    checkpoint.prune(tmp_path, 2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == [
        "gen_00000020.safetensors",
        "gen_00000100.safetensors",
        "gen_best.safetensors",
        "notes.txt",
        "state_00000020.safetensors",
        "state_00000100.safetensors",
    ]
    assert checkpoint.list_steps(tmp_path, "gen") == [20, 100]
    assert checkpoint.newest_generator(tmp_path) == tmp_path / "checkpoints" / "gen_00000100.safetensors"


def test_prune_with_an_old_unpaired_file(tmp_path):
    _touch_checkpoints(tmp_path, [1], kinds=("state",))  # a crash between the two writes
    _touch_checkpoints(tmp_path, [2, 3, 4])
    checkpoint.prune(tmp_path, 2)
    assert checkpoint.list_steps(tmp_path, "gen") == [3, 4]
    assert checkpoint.list_steps(tmp_path, "state") == [3, 4]


def test_list_steps_of_a_fresh_folder(tmp_path):
    assert checkpoint.list_steps(tmp_path) == []
    assert checkpoint.newest_generator(tmp_path) is None


@pytest.mark.parametrize("fused", [True, False])
def test_resumed_channels_last_optimizer_continues_identically(tmp_path, tiny_cfg, fused):
    """Moments are stored contiguous; a channels_last network gets them back in its own layout
    (the fused kernel pairs elements by memory position, so a contiguous moment would update the
    wrong weights)."""
    import copy

    cfg = tiny_cfg()
    torch.manual_seed(0)
    _, dis = models.build(cfg.model)
    dis.to(memory_format=torch.channels_last)

    def make_adam(module):
        o = cfg.optim
        return torch.optim.Adam(module.parameters(), lr=1e-2, betas=(o.beta1, o.beta2), fused=fused)

    def step(module, opt, seed):
        g = torch.Generator().manual_seed(seed)
        for p in module.parameters():
            p.grad = torch.randn(p.shape, generator=g).to(memory_format=torch.channels_last if p.dim() == 4 else torch.contiguous_format)
        opt.step()

    opt = make_adam(dis)
    step(dis, opt, 1)
    path = tmp_path / "state.safetensors"
    trainstate.save_state(path, dis, opt, make_adam(copy.deepcopy(dis)), cfg, ("a", "b"), 1, {})
    dis2 = copy.deepcopy(dis)
    opt2, spare = make_adam(dis2), make_adam(copy.deepcopy(dis2))
    trainstate.load_state(path, dis2, opt2, spare)
    for _ in range(2):  # the original continued, and the restored copy
        step(dis, opt, 2)
        step(dis2, opt2, 2)
    for (name, a), b in zip(dis.named_parameters(), dis2.parameters()):
        assert torch.equal(a, b), name
