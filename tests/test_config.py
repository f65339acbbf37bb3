"""The configuration: precedence of defaults, presets, files and overrides; typed coercion; every
key's range; the preset key; config files and --set through the command line; and a hypothesis
fuzz of config values (each one is accepted within its bounds or refused with a UsageError)."""

from __future__ import annotations

import dataclasses
import math
import time
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from munit_cli import config
from munit_cli.cli import app
from munit_cli.errors import UsageError

# ---------------------------------------------------------------------------------------------
# Precedence and types


def test_defaults_preset_file_and_overrides_in_that_order(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text('preset = "tiny"\n[model]\ndim = 24\n[train]\niters = 7\n')
    cfg = config.resolve(config_file=path, overrides={"train": {"iters": "9"}})
    assert cfg.preset == "tiny"
    assert cfg.model.n_res == config.PRESETS["tiny"]["model"]["n_res"]  # from the preset
    assert cfg.model.dim == 24  # the file over the preset
    assert cfg.train.iters == 9  # the overrides over the file
    assert cfg.model.style_dim == config.ModelConfig().style_dim  # a default nobody changed
    assert config.resolve("paper", config_file=path).preset == "paper"  # a preset flag wins over the file's


def test_values_are_coerced_to_each_field_type():
    cfg = config.resolve(
        overrides={
            "train": {"iters": "1_000", "compile": "yes", "ema_decay": "0.5", "device": "cpu"},
            "optim": {"lr": 1, "lr_step": 3.0},
        }
    )
    assert (cfg.train.iters, cfg.train.compile, cfg.train.ema_decay, cfg.train.device) == (1000, True, 0.5, "cpu")
    assert isinstance(cfg.optim.lr, float) and cfg.optim.lr == 1.0
    assert isinstance(cfg.optim.lr_step, int) and cfg.optim.lr_step == 3


def test_the_resolved_config_round_trips_through_toml_and_json(tmp_path):
    cfg = config.resolve("fast", overrides={"loss": {"vgg_w": 0.5, "vgg_weights": 'a "quoted" path.safetensors'}})
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml())
    assert config.resolve(config_file=path).to_dict() == cfg.to_dict()
    assert config.from_json(cfg.to_json()).to_dict() == cfg.to_dict()


def test_the_cpu_preset_is_tiny_with_the_ablations_winner_and_leaves_tiny_alone():
    tiny, cpu = config.resolve("tiny").to_dict(), config.resolve("cpu").to_dict()
    changed = {(section, key) for section in tiny if isinstance(tiny[section], dict)
               for key in tiny[section] if tiny[section][key] != cpu[section][key]}  # fmt: skip
    assert changed == {("optim", "lr"), ("train", "iters"), ("model", "n_downsample"), ("loss", "recon_x_cyc_w"),
                       ("train", "ema_decay"), ("model", "shared_content_encoder"), ("model", "style_prior"),
                       ("loss", "cycle_detach")}  # fmt: skip
    assert (cpu["train"]["ema_decay"], tiny["train"]["ema_decay"]) == (0.999, 0.99)
    assert (cpu["optim"]["lr"], tiny["optim"]["lr"]) == (6e-4, 2e-4)
    assert (cpu["loss"]["cycle_detach"], tiny["loss"]["cycle_detach"]) == ("auto", "")
    assert (cpu["model"]["n_downsample"], cpu["loss"]["recon_x_cyc_w"]) == (1, 10.0)
    assert (tiny["model"]["n_downsample"], tiny["loss"]["recon_x_cyc_w"]) == (2, 0.0)
    assert cpu["model"]["shared_content_encoder"] and not tiny["model"]["shared_content_encoder"]
    assert (cpu["model"]["style_prior"], tiny["model"]["style_prior"]) == ("fitted", "normal")
    assert config.PRESETS["tiny"]["train"]["iters"] == 2500  # deriving copied, not shared, tiny's tables


def test_prefetch_threads_is_the_data_key():
    assert config.resolve("fast").data.prefetch_threads == 4
    with pytest.raises(UsageError, match="data.num_workers"):
        config.resolve(overrides={"data": {"num_workers": 2}})


def test_a_vgg_weight_without_a_weights_file_is_a_usage_error():
    with pytest.raises(UsageError) as info:
        config.resolve("paper", overrides={"loss": {"vgg_w": 1.0}})
    assert "vgg_weights" in str(info.value)
    assert info.value.exit_code == 2
    # with a file named, the config is accepted (the file is checked when training starts)
    cfg = config.resolve("paper", overrides={"loss": {"vgg_w": 1.0, "vgg_weights": "vgg16.safetensors"}})
    assert cfg.loss.vgg_w == 1.0


# ---------------------------------------------------------------------------------------------
# The preset key


@pytest.mark.parametrize("text", ['preset = ["tiny"]\n', "preset = 3\n", "[preset]\nx = 5\n"])
def test_a_preset_that_is_not_a_name_is_refused(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match="'preset'") as info:
        config.resolve(config_file=path)
    assert "--preset" in info.value.hint


def test_set_preset_key_is_an_error_not_ignored():
    with pytest.raises(UsageError, match="'preset'"):
        config.resolve(overrides=config.parse_set(["preset.x=5"]))


# ---------------------------------------------------------------------------------------------
# Ranges


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("data", "crop_size", 8192),
        ("data", "load_size", 100_000),
        ("data", "prefetch_threads", -1),
        ("train", "batch_size", 100_000),
        ("train", "iters", 0),
        ("train", "iters", -5),
        ("train", "num_preview", 0),
        ("train", "num_preview", -2),
        ("train", "seed", -1),
        ("train", "keep_checkpoints", 0),
        ("train", "ema_start", -1),
        ("model", "dim", 4096),
        ("model", "n_downsample", 8),
        ("model", "style_n_downsample", -3),
        ("model", "style_n_downsample", 0),
        ("model", "n_res", -1),
        ("model", "mlp_dim", 10**6),
        ("optim", "lr_gamma", math.inf),
        ("optim", "lr_gamma", math.nan),
        ("optim", "lr_gamma", 0.0),
        ("optim", "lr_gamma", 2.0),
        ("optim", "lr", math.inf),
        ("optim", "lr", math.nan),
        ("optim", "weight_decay", math.inf),
        ("optim", "beta1", math.nan),
        ("optim", "lr_step", 0),
        ("optim", "lr_policy", "exponential"),
        ("optim", "lr_policy", "Linear"),
        ("loss", "gan_w", math.nan),
        ("loss", "recon_x_w", math.inf),
        ("loss", "recon_c_w", -1.0),
        ("train", "ema_decay", math.nan),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(section, key, value):
    with pytest.raises(UsageError, match=f"{section}.{key}"):
        config.resolve(overrides={section: {key: value}})


@pytest.mark.parametrize("device", ["meta", "cuda:x", "cpu:0", "mps", "xla", "cuda:1:2", ""])
def test_only_cpu_and_cuda_devices(device):
    with pytest.raises(UsageError, match="train.device"):
        config.resolve(overrides={"train": {"device": device}})


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_cpu_and_cuda_devices_are_accepted(device):
    assert config.resolve(overrides={"train": {"device": device}}).train.device == device


def test_networks_too_wide_are_refused():
    with pytest.raises(UsageError, match="wider than"):
        config.resolve(overrides={"model": {"dim": 1024, "n_downsample": 6}, "data": {"crop_size": 256}})


@pytest.mark.parametrize("n_downsample, crop", [(3, 36), (4, 72)])
def test_the_crop_is_a_multiple_of_the_content_code_stride(n_downsample, crop):
    with pytest.raises(UsageError, match=f"divisible by {2**n_downsample}"):
        config.resolve(overrides={"model": {"n_downsample": n_downsample}, "data": {"crop_size": crop}})


def field_types() -> dict[tuple[str, str], type]:
    return {
        (section, name): kind
        for section, cls in config.SECTIONS.items()
        for name, kind in typing.get_type_hints(cls).items()
    }


NUMERIC_KEYS = [(section, key, kind) for (section, key), kind in field_types().items() if kind in (int, float)]


@pytest.mark.parametrize("section, key, kind", NUMERIC_KEYS, ids=[f"{s}.{k}" for s, k, _ in NUMERIC_KEYS])
def test_every_numeric_key_has_a_range(section, key, kind):
    """Absurdly large, negative and (for floats) non-finite values of every numeric key are refused."""
    values = [10**30, -(10**30)] + ([math.inf, -math.inf, math.nan] if kind is float else [])
    for value in values:
        with pytest.raises(UsageError, match=f"{section}.{key}"):
            config.resolve(overrides={section: {key: value}})


# ---------------------------------------------------------------------------------------------
# Config files and --set through the command line


def train_usage_error(tmp_path, *args) -> str:
    """`munit train` with `args` must be a usage error: exit 2, one error line, no traceback and no
    run folder made. Returns the error line."""
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(tmp_path), str(tmp_path), "--out", str(out), *map(str, args)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert not out.exists()
    return errors[0]


@pytest.mark.parametrize(
    "text, key",
    [
        ("[model]\ndimm = 8\n", "model.dimm"),
        ("[trian]\niters = 3\n", "trian"),
        ('[train]\niters = "many"\n', "train.iters"),
        ("[model]\ndim = 8.5\n", "model.dim"),
        ('[train]\ncompile = "maybe"\n', "train.compile"),
        ("[optim]\nlr = [1, 2]\n", "optim.lr"),
        ("model = 3\n", "model"),
        ("[model]\ndim = 100000\n", "model.dim"),
        ("[model\ndim = 8\n", "not valid TOML"),
        ('preset = ["tiny"]\n', "preset"),
        ("[optim]\nlr_gamma = inf\n", "optim.lr_gamma"),
        ("[train]\nnum_preview = 0\n", "train.num_preview"),
        ('[train]\ndevice = "meta"\n', "train.device"),
    ],
)
def test_config_file_errors_name_the_key(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert key in train_usage_error(tmp_path, "--config", path)


@pytest.mark.parametrize(
    "setting, key",
    [
        ("model.dimm=8", "model.dimm"),
        ("train.iters=abc", "train.iters"),
        ("dim=8", "dim=8"),
        ("preset.x=5", "preset"),
        ("model.style_n_downsample=-3", "model.style_n_downsample"),
        ("optim.lr_gamma=inf", "optim.lr_gamma"),
        ("train.num_preview=-1", "train.num_preview"),
    ],
)
def test_set_errors_name_the_key(tmp_path, setting, key):
    assert key in train_usage_error(tmp_path, "--set", setting)


@pytest.mark.parametrize("flags", [["--iters", "0"], ["--device", "meta"], ["--batch-size", "100000"], ["--size", "100000"]])
def test_dedicated_flags_are_range_checked_before_anything_is_made(tmp_path, flags):
    line = train_usage_error(tmp_path, *flags)
    assert "generator" not in line


# ---------------------------------------------------------------------------------------------
# Fuzz: any value of any key is accepted within bounds or refused with a UsageError


ANY_VALUE = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.none(),
)
KEYS = sorted(field_types()) + [("model", "dimm"), ("trian", "iters"), ("preset", "x")]


def assert_within_bounds(cfg: config.Config) -> None:
    for section, bounds in config.LIMITS.items():
        for name, (least, most) in bounds.items():
            assert least <= getattr(getattr(cfg, section), name) <= most, (section, name)
    for name, value in dataclasses.asdict(cfg.loss).items():
        if name.endswith("_w"):
            assert math.isfinite(value) and value >= 0, name
    assert math.isfinite(cfg.optim.lr_gamma) and 0 < cfg.optim.lr_gamma <= 1


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    changes=st.lists(st.tuples(st.sampled_from(KEYS), ANY_VALUE), min_size=1, max_size=4),
    as_text=st.booleans(),
)
def test_fuzzed_config_values_are_accepted_in_range_or_refused(reliability, changes, as_text):
    overrides: dict = {}
    for (section, key), value in changes:
        overrides.setdefault(section, {})[key] = str(value) if as_text else value  # as --set gives them
    start = time.monotonic()
    reliability.add("bad_configs")
    try:
        cfg = config.resolve("tiny", overrides=overrides)
    except UsageError as exc:
        assert str(exc).strip() and "\n" not in str(exc)
    except Exception as exc:  # anything else would be a traceback for the user
        reliability.add("unclear_failures")
        raise AssertionError(f"{overrides!r}: {type(exc).__name__}: {exc}") from None
    else:
        assert_within_bounds(cfg)
        assert config.from_json(cfg.to_json()).to_dict() == cfg.to_dict()
    assert time.monotonic() - start < 2.0
