"""One typed configuration with named presets: defaults < preset < config file < flags.

The resolved config is written into every run folder (`config.toml`) and into the metadata of
every weights file, so a model always says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from munit_cli.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class ModelConfig:
    input_dim: int = 3  # image channels: 1 (grayscale) or 3 (RGB)
    dim: int = 64  # channels after the first conv of the encoders
    n_downsample: int = 2  # content encoder / decoder resolution steps
    n_res: int = 4  # residual blocks in content encoder and decoder
    # dilation growth of the content encoder's residual convolutions: 1, d, d^2, ... (1: the recipe)
    content_dilation: int = 1
    style_dim: int = 8
    mlp_dim: int = 256
    style_n_downsample: int = 4  # the reference style encoder always downsamples 4 times
    dis_dim: int = 64
    dis_n_layer: int = 4
    dis_num_scales: int = 3
    dis_spectral_norm: bool = False  # spectral normalisation of every discriminator conv (not in the paper)
    # one content encoder for both domains (not in the paper): line art and its colouring then meet
    # in one content space, which the paper only asks of them through the reconstruction losses
    shared_content_encoder: bool = False
    # where random styles are drawn at inference: "normal" (N(0, I), the paper) or "fitted" (a
    # Gaussian fitted to the encoded styles of the training images, saved with every checkpoint)
    style_prior: str = "normal"
    # the decoder's x2 upsampling before each 5x5 conv: "nearest" (the paper) or "bilinear"
    upsample: str = "nearest"


@dataclass
class LossConfig:
    gan_w: float = 1.0
    recon_x_w: float = 10.0
    recon_c_w: float = 1.0
    recon_s_w: float = 1.0
    recon_x_cyc_w: float = 0.0
    # the cycle reads these translations as fixed images (not in the paper): "ab" (x_ab, in the
    # a -> b -> a cycle), "ba", "both" or "" (none): no gradient from the cycle reaches the decoder
    # that translated. "auto": the translation into a grey domain when the other is in colour
    # ("ba" for grey line art as A), else none; decided from the training images when a run
    # starts, and its config.toml records the choice
    cycle_detach: str = ""
    # the content reconstruction reads the translations cycle_detach names as fixed images too (not
    # in the paper): matching a content code is a way to pass hints as much as restoring an image
    recon_c_detach: bool = False
    # Gaussian noise (std, on the [-1, 1] scale) on each translation where the encoders read it
    # again, not where the discriminators judge it (not in the paper): a decoder can pass the cycle
    # hints as faint patterns in its translation (a CycleGAN weakness), and noise drowns them
    reread_noise: float = 0.0
    vgg_w: float = 0.0
    vgg_weights: str = ""  # path to a user-supplied VGG-16 safetensors file (needed when vgg_w > 0)
    # Beyond the paper, each off by default (docs/benchmarks.md measures them one at a time):
    gan_type: str = "lsgan"  # lsgan (the paper) or hinge
    # Factors on one domain's terms (not in the paper; 1 leaves the weight as it is): a pair such
    # as line art and colour need not want the same strengths. Each multiplies the generator term
    # of its name: adv_a (x_ba as dis_a judges it; dis_a's own loss too), recon_x_a (x_a
    # reconstructed), recon_c_a (c_a recovered from x_ab), and the same for b.
    gan_scale_a: float = 1.0
    gan_scale_b: float = 1.0
    recon_x_scale_a: float = 1.0
    recon_x_scale_b: float = 1.0
    recon_c_scale_a: float = 1.0
    recon_c_scale_b: float = 1.0
    r1_w: float = 0.0  # R1 gradient penalty on real images, weight gamma / 2 is applied as r1_w / 2
    diversity_w: float = 0.0  # style diversity: rewards the L1 distance between two random styles' translations
    dis_augment: str = ""  # DiffAugment of every discriminator input: a subset of "colour,translation,cutout"
    # mean feature matching: each translation batch's average discriminator activations against
    # the real batch's, at every hidden layer and scale (Salimans et al., 2016)
    fm_w: float = 0.0
    # contrastive patch loss between each input and its translation (PatchNCE, as in CUT) in the
    # content encoder's features: weight, random locations per map, temperature
    nce_w: float = 0.0
    nce_patches: int = 256
    nce_tau: float = 0.07


@dataclass
class OptimConfig:
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    lr_policy: str = "step"  # step (the paper: times lr_gamma every lr_step), linear or cosine (to zero at the end)
    lr_step: int = 100_000  # halve the learning rate every lr_step iterations
    lr_gamma: float = 0.5
    fused: bool = False  # fused Adam kernel (speed option; same update up to rounding)
    lr_dis: float = 0.0  # the discriminators' own learning rate (0: the same as lr)
    warmup: int = 0  # linear learning-rate warm-up over this many iterations (0: none)


@dataclass
class DataConfig:
    load_size: int = 256  # resize the shorter side to this
    crop_size: int = 256  # then take a random square crop of this size
    flip: bool = True
    prefetch_threads: int = 0  # threads that build the next batches while the model trains (0: none)


@dataclass
class TrainConfig:
    iters: int = 1_000_000
    batch_size: int = 1
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    # fp32 (reference), bf16 (autocast, norm statistics in float32), or auto: bf16 on a GPU and on a
    # CPU with bf16 units (AMX or AVX512-BF16), fp32 elsewhere; a run records what auto chose.
    precision: str = "fp32"
    channels_last: bool = False  # NHWC memory layout (speed option; with auto, only when bf16 is chosen)
    compile: bool = False  # torch.compile the networks (speed option)
    share_translations: bool = False  # one generator forward per iteration feeds both updates (speed option)
    # the decoder's LayerNorm through torch's group-norm kernel while training on the CPU (speed
    # option; the same normalisation within 1e-4, see models.kernel_layer_norm; inference keeps the
    # composite)
    fused_layer_norm: bool = False
    log_every: int = 100
    sample_every: int = 10_000
    checkpoint_every: int = 10_000
    keep_checkpoints: int = 3
    num_preview: int = 4  # fixed inputs per domain shown in the sample grids
    ema_decay: float = 0.999  # moving average of the generators' weights (0 turns it off)
    ema_start: int = 1000  # copy the weights until this step, average after it
    # Also log the loss terms and sample grids to RUN/tensorboard (the optional [tensorboard] extra);
    # logging only, so a run may switch it on or off when it resumes.
    tensorboard: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "paper"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_toml(self) -> str:
        lines = [f"preset = {_toml_value(self.preset)}"]
        for section, values in self.to_dict().items():
            if not isinstance(values, dict):
                continue
            lines.append(f"\n[{section}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


# Presets name only what differs from the paper recipe (the dataclass defaults).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The authors' edges2shoes recipe: 256 px, batch 1, 1M iterations.
    "paper": {},
    # GPU throughput: same networks and losses, larger batch, bf16 autocast.
    "fast": {
        "train": {
            "batch_size": 8,
            "precision": "auto",
            "channels_last": True,
            "compile": True,
            "share_translations": True,
            "iters": 200_000,
            "log_every": 200,
        },
        "optim": {"lr_step": 25_000, "fused": True},
        "data": {"prefetch_threads": 4},
    },
    # CPU demo and tests: the same architecture family at a size two cores train in minutes.
    "tiny": {
        # The discriminators keep the paper's depth (4 layers, 3 scales): with 3 layers and 2 scales
        # their patches were too small to see that an outline's interior stayed empty, and the demo
        # drew coloured rings (content IoU 0.29 against 0.66 on the shapes after 2500 steps).
        "model": {"dim": 16, "n_res": 2, "mlp_dim": 64, "dis_dim": 16},
        "data": {"load_size": 64, "crop_size": 64},
        "train": {
            "iters": 2500,
            "batch_size": 4,
            "log_every": 50,
            "sample_every": 500,
            "checkpoint_every": 500,
            "ema_decay": 0.99,
            "ema_start": 500,
            # the CPU fast path (benchmarks/speed.py): bf16 where the CPU has bf16 units, and one
            # generator forward for both updates
            "precision": "auto",
            "channels_last": True,
            "share_translations": True,
        },
        "optim": {"lr": 2e-4, "lr_step": 100_000, "weight_decay": 1e-4, "fused": True},
    },
}


def _derived(base: str, changes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A preset that is another one with some keys changed."""
    merged = {section: dict(values) for section, values in PRESETS[base].items()}
    for section, values in changes.items():
        merged.setdefault(section, {}).update(values)
    return merged


# The recommended CPU setting for real image sets at 64 px: the tiny networks with what won the
# quality ablation on fluent64 (docs/benchmarks.md). Three times tiny's learning rate: 4e-4 won at
# 5 minutes (8e-4 lost at 15), and 6e-4 on the later networks at 15 (line -> flat 24.0-24.3 in
# three runs against 25.0-26.4 for 4e-4, with less colour past the lines). The paper's optional
# explicit cycle loss: without it, line art's content codes decoded as flat colour lost their
# outlines and drew blotches (KID 80.8 -> 58.0 at 5 minutes). Content codes at half the image size,
# not a quarter (one downsampling): the decoder keeps the fine lines (58.0 -> 40.3 with the cycle;
# the same number of channel-pixels per residual block, so no slower). A tenfold longer weight
# average (EMA 0.999): the translations' KID wanders by several points between checkpoints a few
# hundred steps apart, and averaging over the last thousand steps smooths that out (41.7 -> 32.8 at
# 15 minutes). One content encoder for both domains: the line drawings' content codes, decoded as
# colour, were what fell short of the decoder's own reconstructions; encoded by the same network as
# the colour images they land nearer (32.8 -> 27.7 and 28.2 at 15 minutes). Random styles from a
# Gaussian fitted to the training images' encoded styles instead of N(0, I): the style encoder's
# codes are not standard normal, and styles drawn where real ones lie score better in both
# directions (line -> flat 28.3 -> 25.9, flat -> line 33.6 -> 27.7), as varied. The cycle reads a
# translation into a grey domain from a coloured one as a fixed image (`auto`: none between two
# coloured or two grey domains): with the learning rate of 6e-4, line -> flat 25.0 -> 22.1 and flat
# -> line 27.6 -> 20.3, more varied. 10,000 steps: about an hour on two cores; or --minutes.
PRESETS["cpu"] = _derived(
    "tiny",
    {
        "model": {"n_downsample": 1, "shared_content_encoder": True, "style_prior": "fitted"},
        "loss": {"recon_x_cyc_w": 10.0, "cycle_detach": "auto"},
        "optim": {"lr": 6e-4},
        "train": {"iters": 10_000, "ema_decay": 0.999},
    },
)


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "data": DataConfig,
    "train": TrainConfig,
}


def _coerce(where: str, value: Any, target: type) -> Any:
    """Convert a value from TOML, JSON or a command-line string to the field's type, or say which key is wrong."""
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
    elif target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif target is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif target is str:
        if isinstance(value, str):
            return value
    raise UsageError(f"config key '{where}' must be {target.__name__}, got {value!r}")


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str) -> Config:
    """Apply nested {section: {key: value}} overrides; unknown sections or keys are errors naming them."""
    for section, values in overrides.items():
        if section == "preset":
            _preset_name(values, source)  # chosen by `resolve`; here only checked to be a name
            continue
        if section not in SECTIONS:
            raise UsageError(f"unknown config section '{section}' in {source} (known: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise UsageError(f"config section '{section}' in {source} must be a table")
        target = getattr(cfg, section)
        types = typing.get_type_hints(SECTIONS[section])
        for key, value in values.items():
            if key not in types:
                raise UsageError(
                    f"unknown config key '{section}.{key}' in {source}",
                    hint=f"keys of [{section}]: {', '.join(types)}",
                )
            setattr(target, key, _coerce(f"{section}.{key}", value, types[key]))
    return cfg


def _preset_name(value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise UsageError(
            f"'preset' in {source} must be a preset name, got {value!r}",
            hint=f"presets: {', '.join(PRESETS)}; on the command line: --preset NAME",
        )
    return value


def parse_set(items: list[str]) -> dict[str, dict[str, str]]:
    """Turn ['model.dim=32', 'train.iters=10'] into nested overrides."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise UsageError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        out.setdefault(section, {})[name] = value.strip()
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None


def resolve(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """defaults < preset < config file < flags. The file may name a preset; a preset flag wins."""
    file_values = load_file(config_file) if config_file else {}
    name = preset or (_preset_name(file_values["preset"], str(config_file)) if "preset" in file_values else "paper")
    if name not in PRESETS:
        raise UsageError(f"unknown preset '{name}'", hint=f"presets: {', '.join(PRESETS)}")
    cfg = Config(preset=name)
    apply_overrides(cfg, PRESETS[name], f"preset '{name}'")
    if file_values:
        apply_overrides(cfg, file_values, str(config_file))
    if overrides:
        apply_overrides(cfg, overrides, "the command line")
    validate(cfg)
    return cfg


def from_json(text: str) -> Config:
    """Rebuild a config stored in weights metadata (unknown keys are errors: a newer format)."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"stored config is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise UsageError("stored config is not a JSON object")
    cfg = Config(preset=_preset_name(values.get("preset", "paper"), "the stored config"))
    return apply_overrides(cfg, values, "the stored config")


# Bounds of every numeric key: (least, most). Far outside anything useful (the paper: dim 64,
# n_res 4, 256 px, batch 1), they bound what building a network or a batch costs, so a typo or
# the config stored in a forged model file cannot stall munit, exhaust memory or overflow sizes.
LIMITS: dict[str, dict[str, tuple[int | float, int | float]]] = {
    "model": {
        "dim": (1, 1024),
        "n_downsample": (1, 6),
        "n_res": (0, 32),
        "content_dilation": (1, 8),
        "style_dim": (1, 1024),
        "mlp_dim": (1, 8192),
        "style_n_downsample": (1, 6),
        "dis_dim": (1, 1024),
        "dis_n_layer": (1, 8),
        "dis_num_scales": (1, 6),
    },
    "data": {"load_size": (4, 4096), "crop_size": (4, 4096), "prefetch_threads": (0, 64)},
    "train": {
        "iters": (1, 10**9),
        "batch_size": (1, 4096),
        "seed": (0, 2**63 - 1),
        "log_every": (1, 10**9),
        "sample_every": (1, 10**9),
        "checkpoint_every": (1, 10**9),
        "keep_checkpoints": (1, 10**6),
        "num_preview": (1, 64),
        "ema_start": (0, 10**9),
    },
    "optim": {"lr": (0.0, 1.0), "lr_dis": (0.0, 1.0), "weight_decay": (0.0, 1.0), "lr_step": (1, 10**9), "warmup": (0, 10**9)},
    "loss": {"r1_w": (0.0, 1e6), "nce_patches": (1, 65536), "nce_tau": (1e-3, 10.0), "reread_noise": (0.0, 10.0)},
}
GAN_TYPES = ("lsgan", "hinge")
STYLE_PRIORS = ("normal", "fitted")
UPSAMPLE_MODES = ("nearest", "bilinear")
CYCLE_DETACH = ("", "ab", "ba", "both", "auto")
LR_POLICIES = ("step", "linear", "cosine")
DIS_AUGMENTATIONS = ("colour", "translation", "cutout")
# The widest layers: content channels dim * 2**n_downsample, the last discriminator layer's
# dis_dim * 2**(dis_n_layer - 1).
MAX_CHANNELS = 8192
MAX_DILATION = 256
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d{1,3})?)$")


def discriminator_fits(side: int, n_layer: int, num_scales: int) -> bool:
    """Whether a side x side crop survives every discriminator scale: each scale halves it (rounding
    up), and each of a scale's n_layer convolutions needs 2 pixels for its reflection padding and
    halves it again (rounding down)."""
    for _ in range(num_scales - 1):
        side = (side + 1) // 2
    for _ in range(n_layer):
        if side < 2:
            return False
        side //= 2
    return True


def _check_limits(cfg: Config) -> None:
    for section, bounds in LIMITS.items():
        values = getattr(cfg, section)
        for name, (least, most) in bounds.items():
            value = getattr(values, name)
            if not least <= value <= most:  # NaN compares false: refused too
                raise UsageError(f"{section}.{name} must be between {least} and {most}, got {value}")
    for name, value in dataclasses.asdict(cfg.loss).items():
        if name.endswith("_w") and not 0 <= value <= 1e6:
            raise UsageError(f"loss.{name} must be a number between 0 and 1e6, got {value}")
        if "_scale_" in name and not 0 <= value <= 1e3:
            raise UsageError(f"loss.{name} must be a number between 0 and 1e3, got {value}")


def validate(cfg: Config) -> None:
    """Every value in range, and the combinations that cannot work refused, with the key named."""
    _check_limits(cfg)
    m, t, o = cfg.model, cfg.train, cfg.optim
    if m.input_dim not in (1, 3):
        raise UsageError(f"model.input_dim must be 1 (grayscale) or 3 (RGB), got {m.input_dim}")
    if m.dim * 2**m.n_downsample > MAX_CHANNELS or m.dis_dim * 2 ** (m.dis_n_layer - 1) > MAX_CHANNELS:
        raise UsageError(
            f"the networks would be wider than {MAX_CHANNELS} channels (model.dim * 2**model.n_downsample, "
            "model.dis_dim * 2**(model.dis_n_layer - 1))"
        )
    if m.n_res and m.content_dilation ** (2 * m.n_res - 1) > MAX_DILATION:
        raise UsageError(
            f"model.content_dilation {m.content_dilation} with model.n_res {m.n_res} would dilate the last "
            f"convolution by {m.content_dilation ** (2 * m.n_res - 1)} (at most {MAX_DILATION})"
        )
    _check_crop(cfg)
    _one_of("model.style_prior", m.style_prior, STYLE_PRIORS)
    _one_of("model.upsample", m.upsample, UPSAMPLE_MODES)
    if cfg.loss.cycle_detach not in CYCLE_DETACH:
        choices = ", ".join(v for v in CYCLE_DETACH if v)
        raise UsageError(f"loss.cycle_detach must be one of {choices} or empty, got {cfg.loss.cycle_detach!r}")
    if t.device != "auto" and not DEVICE.match(t.device):
        raise UsageError(f"train.device must be auto, cpu, cuda or cuda:N, got {t.device!r}")
    if t.precision not in ("auto", "fp32", "bf16"):
        raise UsageError(f"train.precision must be auto, fp32 or bf16, got {t.precision!r}")
    if not 0 <= t.ema_decay < 1:
        raise UsageError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    if o.lr <= 0:
        raise UsageError(f"optim.lr must be a positive number, got {o.lr}")
    if not (0 <= o.beta1 < 1 and 0 <= o.beta2 < 1):
        raise UsageError(f"optim.beta1 and optim.beta2 must be in [0, 1), got {o.beta1} and {o.beta2}")
    if not 0 < o.lr_gamma <= 1:
        raise UsageError(f"optim.lr_gamma must be in (0, 1] (the factor of each learning-rate step), got {o.lr_gamma}")
    _one_of("optim.lr_policy", o.lr_policy, LR_POLICIES)
    _one_of("loss.gan_type", cfg.loss.gan_type, GAN_TYPES)
    dis_augment_policy(cfg.loss.dis_augment)
    if cfg.loss.vgg_w > 0 and not cfg.loss.vgg_weights:
        raise UsageError(
            "loss.vgg_w > 0 needs a VGG-16 weights file (loss.vgg_weights)",
            hint="nothing is downloaded: convert torchvision's vgg16 ImageNet weights to safetensors and pass its path",
        )


def _one_of(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def dis_augment_policy(text: str) -> tuple[str, ...]:
    """'colour,translation,cutout' -> those operations in that order; '' -> none."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if any(n not in DIS_AUGMENTATIONS for n in names) or len(set(names)) != len(names):
        raise UsageError(
            f"loss.dis_augment must list distinct operations, got {text!r}",
            hint=f"a comma-separated subset of {','.join(DIS_AUGMENTATIONS)}, or empty for none",
        )
    return names


def _check_crop(cfg: Config) -> None:
    from munit_cli.models import min_size, size_multiple  # the size rules live with the networks

    m, d = cfg.model, cfg.data
    multiple = size_multiple(m)
    if d.crop_size % multiple:
        raise UsageError(
            f"data.crop_size must be divisible by {multiple} (2**model.n_downsample), got {d.crop_size}"
        )
    if d.crop_size < min_size(m):
        raise UsageError(f"data.crop_size must be at least {min_size(m)} for these networks, got {d.crop_size}")
    if d.crop_size > d.load_size:
        raise UsageError(f"data.crop_size ({d.crop_size}) cannot exceed data.load_size ({d.load_size})")
    if not discriminator_fits(d.crop_size, m.dis_n_layer, m.dis_num_scales):
        least = next(c for c in range(4, 1 << 20, 4) if discriminator_fits(c, m.dis_n_layer, m.dis_num_scales))
        raise UsageError(
            f"data.crop_size {d.crop_size} is too small for discriminators with model.dis_n_layer "
            f"{m.dis_n_layer} and model.dis_num_scales {m.dis_num_scales}: they need at least {least}",
            hint="raise data.crop_size (and data.load_size) or lower model.dis_num_scales or model.dis_n_layer",
        )
