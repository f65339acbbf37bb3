"""Metric arithmetic against known cases, the Inception and LPIPS networks' loading rules, and
`munit evaluate` end to end (on an untrained tiny model, with a stand-in feature network)."""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from munit_cli import images, metrics, runtime, synthetic
from munit_cli.errors import MunitError, UsageError

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian(n: int, mean, std, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(mean), generator=g, dtype=torch.float64) * torch.tensor(std) + torch.tensor(mean)


# ---------------------------------------------------------------------------------------------
# FID


def test_fid_of_identical_feature_sets_is_zero():
    x = gaussian(300, [0.0] * 16, [1.0] * 16, seed=0)
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_two_gaussians_matches_the_closed_form():
    # Diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.0])
    var1, var2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert metrics.fid_from_stats(mu1, torch.diag(var1), mu2, torch.diag(var2)) == pytest.approx(expected, abs=1e-9)

    # Non-commuting covariances: with sigma1 = I, tr sqrt(sigma1 sigma2) = sum sqrt(eigenvalues of sigma2).
    q, _ = torch.linalg.qr(gaussian(4, [0.0] * 4, [1.0] * 4, seed=1))
    eig = torch.tensor([0.25, 1.0, 4.0, 16.0], dtype=torch.float64)
    sigma2 = q @ torch.diag(eig) @ q.T
    expected = 4 + float(eig.sum()) - 2 * float(eig.sqrt().sum())
    zero = torch.zeros(4, dtype=torch.float64)
    assert metrics.fid_from_stats(zero, torch.eye(4, dtype=torch.float64), zero, sigma2) == pytest.approx(expected)


def test_fid_of_sets_smaller_than_the_dimension_matches_the_covariance_route():
    # 40 and 25 features of dimension 64: the singular-value route, against the 64 x 64 one
    x, y = gaussian(40, [0.0] * 64, [1.0] * 64, seed=11), gaussian(25, [0.3] * 64, [1.5] * 64, seed=12)
    expected = metrics.fid_from_stats(*metrics.feature_stats(x), *metrics.feature_stats(y))
    assert expected > 10 and metrics.fid(x, y) == pytest.approx(expected, rel=1e-7)  # sqrt of rounding-noise eigenvalues
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(MunitError, match="at least 2"):
        metrics.fid(x[:1], y)


def test_fid_of_samples_approaches_the_closed_form():
    x = gaussian(20_000, [0.0, 0.0], [1.0, 2.0], seed=2)
    y = gaussian(20_000, [1.0, 0.0], [2.0, 2.0], seed=3)
    assert metrics.fid(x, y) == pytest.approx(1 + (1 - 2) ** 2, abs=0.08)


# ---------------------------------------------------------------------------------------------
# KID


def kid_by_hand(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased MMD^2 with the cubic polynomial kernel, written as loops."""
    d, m = x.shape[1], len(x)

    def k(a, b):
        return (float(a @ b) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_the_estimator_written_out():
    x = gaussian(12, [0.0] * 5, [1.0] * 5, seed=4)
    y = gaussian(12, [0.5] * 5, [1.0] * 5, seed=5)
    assert metrics.polynomial_mmd(x, y) == pytest.approx(kid_by_hand(x, y))
    # KID averages that estimate over random subsets of half of each set
    mean, _ = metrics.kid(x, y, subsets=2000, subset_size=1000)
    assert mean == pytest.approx(kid_by_hand(x, y), rel=0.05)


def biased_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """The V-statistic: within-set means over all pairs, i == j included."""
    d = x.shape[1]
    def k(a, b):
        return (a @ b.T / d + 1) ** 3

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def mean_and_sem(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def test_kid_is_unbiased_and_separates_distributions():
    pairs = [(gaussian(40, [0.0] * 4, [1.0] * 4, 10 + i), gaussian(40, [0.0] * 4, [1.0] * 4, 99 + i))
             for i in range(60)]  # fmt: skip
    mean, sem = mean_and_sem([metrics.kid(x, y, subsets=10)[0] for x, y in pairs])
    assert abs(mean) < 3 * sem
    biased, biased_sem = mean_and_sem([biased_mmd(x, y) for x, y in pairs])
    assert biased > 3 * biased_sem  # the test would see the bias of the V-statistic
    different, spread = metrics.kid(gaussian(200, [0.0] * 4, [1.0] * 4, 7), gaussian(200, [1.0] * 4, [1.0] * 4, 8))
    assert different > 5 * spread > 0


def test_kid_is_deterministic_per_seed_and_needs_two_images():
    x, y = gaussian(30, [0.0] * 3, [1.0] * 3, 1), gaussian(30, [0.3] * 3, [1.0] * 3, 2)
    assert metrics.kid(x, y, seed=3) == metrics.kid(x, y, seed=3)
    assert metrics.kid(x, y, seed=3) != metrics.kid(x, y, seed=4)
    with pytest.raises(MunitError, match="at least 2"):
        metrics.kid(x[:1], y)


# ---------------------------------------------------------------------------------------------
# Pixel metrics


def flat(value: int, size: int = 16, n: int = 1) -> torch.Tensor:
    return torch.full((n, 3, size, size), value, dtype=torch.uint8)


def test_psnr_and_l1_known_values():
    assert float(metrics.l1(flat(0), flat(51))[0]) == pytest.approx(0.2)
    # MSE 0.2^2 = 0.04 on the [0, 1] scale: 10 log10(1 / 0.04) = 13.9794 dB
    assert float(metrics.psnr(flat(0), flat(51))[0]) == pytest.approx(13.9794, abs=1e-4)
    assert float(metrics.psnr(flat(7), flat(7))[0]) == pytest.approx(100.0)  # the cap JSON can carry


def test_ssim_known_values():
    # Flat images have no variance, so only the luminance term remains:
    # (2 * 0.2 * 0.6 + 0.01^2) / (0.2^2 + 0.6^2 + 0.01^2) = 0.2401 / 0.4001
    assert float(metrics.ssim(flat(51), flat(153))[0]) == pytest.approx(0.2401 / 0.4001)
    x = torch.randint(0, 256, (2, 3, 24, 24), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert metrics.ssim(x, x).tolist() == pytest.approx([1.0, 1.0])
    assert float(metrics.ssim(x, 255 - x).max()) < 0
    with pytest.raises(MunitError, match="at least 11"):
        metrics.ssim(flat(0, size=8), flat(0, size=8))


def test_ssim_window_is_the_standard_gaussian():
    w = metrics.gaussian_window()
    assert w.shape == (11, 11) and float(w.sum()) == pytest.approx(1.0)
    # neighbouring taps of a sigma 1.5 Gaussian differ by exp(-1 / (2 * 1.5^2)) at the centre
    assert float(w[5, 6] / w[5, 5]) == pytest.approx(math.exp(-1 / 4.5))


# ---------------------------------------------------------------------------------------------
# Diversity and LPIPS


def test_substitute_diversity_is_labelled_not_lpips():
    key, label = metrics.diversity_name(None)
    assert key == "diversity_l1" and "not LPIPS" in label and "lpips" not in key
    outputs = torch.cat([flat(0), flat(255), flat(0)])
    assert metrics.diversity(outputs) == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert metrics.diversity(torch.cat([flat(9), flat(9)])) == 0.0
    with pytest.raises(MunitError, match="at least 2 styles"):
        metrics.diversity(flat(0))


def lpips_weights(path, drop: str | None = None):
    """Random tensors in the layout of real AlexNet LPIPS weights (torchvision names + lin layers)."""
    from torchvision.models import alexnet

    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        shapes = {f"features.{k}": v.shape for k, v in alexnet().features.state_dict().items()}
    tensors = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in shapes.items()}
    for i, c in enumerate((64, 192, 384, 256, 256)):
        tensors[f"lin{i}.model.1.weight"] = torch.rand(1, c, 1, 1, generator=g)
    tensors.pop(drop, None)
    save_file(tensors, str(path))
    return path


def test_lpips_with_user_weights(tmp_path):
    lpips = metrics.LPIPS(lpips_weights(tmp_path / "alex.safetensors"))
    g = torch.Generator().manual_seed(1)
    x, y = (torch.randint(0, 256, (2, 3, 64, 64), generator=g, dtype=torch.uint8) for _ in range(2))
    assert lpips(x, x).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert torch.allclose(lpips(x, y), lpips(y, x)) and bool((lpips(x, y) > 0).all())
    assert metrics.diversity_name(lpips)[0] == "diversity_lpips"
    assert metrics.diversity(torch.cat([x[:1], y[:1]]), lpips) == pytest.approx(float(lpips(x[:1], y[:1])[0]))


def test_lpips_weights_of_another_kind_are_a_clear_error(tmp_path):
    with pytest.raises(MunitError, match=r"not AlexNet LPIPS weights \(missing \['lin2"):
        metrics.LPIPS(lpips_weights(tmp_path / "partial.safetensors", drop="lin2.model.1.weight"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MunitError, match="not a readable safetensors file"):
        metrics.LPIPS(tmp_path / "junk.safetensors")


# ---------------------------------------------------------------------------------------------
# The Inception network


def test_tf_bilinear_resize_samples_like_tensorflow():
    # TF1 resize_bilinear (align_corners=False) doubling [a, b]: positions 0, 0.5, 1, 1.5 -> edge clamped
    x = torch.tensor([[[[10.0, 30.0]]]]).expand(1, 1, 2, 2)
    out = metrics.tf_bilinear_resize(x, 4)
    assert out[0, 0, 0].tolist() == pytest.approx([10.0, 20.0, 30.0, 30.0])


def test_missing_eval_extra_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(metrics, "INCEPTION_PACKAGE", "munit_no_such_package")
    metrics.load_inception.cache_clear()
    with pytest.raises(MunitError, match="not installed") as info:
        metrics.load_inception("cpu")
    assert "munit-cli[eval]" in info.value.hint
    metrics.load_inception.cache_clear()


def test_a_different_network_file_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"something else")
    monkeypatch.setattr(metrics, "inception_path", lambda: fake)
    metrics.load_inception.cache_clear()
    with pytest.raises(MunitError, match="not the FID Inception network"):
        metrics.load_inception("cpu")
    metrics.load_inception.cache_clear()


def test_the_real_network_gives_2048_features():
    if importlib.util.find_spec(metrics.INCEPTION_PACKAGE) is None:
        pytest.skip("the [eval] extra is not installed")
    x = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    features = metrics.inception_features(x)
    assert features.shape == (2, metrics.INCEPTION_DIM) and features.dtype == torch.float64
    assert bool((features >= 0).all())  # pool features follow a ReLU


# ---------------------------------------------------------------------------------------------
# A stand-in for the Inception network (tests/test_evaluate.py uses it too)


class StandInInception(torch.nn.Module):
    """A fixed random projection of pooled pixels: fast and deterministic (64 features keep FID's
    eigendecompositions cheap)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 8 * 8, 64)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))
        torch.nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        return torch.relu(self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)))


# ---------------------------------------------------------------------------------------------
# Inception precision and the feature cache

FLUENT64 = Path(__file__).resolve().parents[2] / "shared" / "data" / "fluent64"
# bf16 against float32 on the same images. Measured on 16 + 16 held-out fluent64 images: mean relative
# feature error 0.016 (max 0.023), KID x 1000 18.16 against 18.51, FID 203.7 against 204.6.
BF16_FEATURE_TOLERANCE = 0.03  # mean over images of |f_bf16 - f_fp32| / |f_fp32| (L2 norms)
BF16_KID_TOLERANCE = 1e-3  # |KID_bf16 - KID_fp32|: KID x 1000 within 1
BF16_FID_TOLERANCE = 0.02  # relative


class CountingInception(StandInInception):
    def __init__(self):
        super().__init__()
        self.images = 0

    def forward(self, x):
        self.images += len(x)
        return super().forward(x)


def random_pixels(n: int, seed: int, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_auto_precision_is_bf16_only_where_bf16_has_hardware_units(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: True)
    assert metrics.inception_precision("cpu") == "bf16"
    assert metrics.inception_precision("cpu", "fp32") == "fp32"  # forced
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: False)
    assert metrics.inception_precision("cpu") == "fp32"
    assert metrics.inception_precision("cpu", "bf16") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert metrics.inception_precision("cuda") == "bf16"
    with pytest.raises(UsageError, match="unknown precision"):
        metrics.inception_precision("cpu", "fp16")


def test_bf16_features_run_under_autocast_in_channels_last():
    seen = []

    class Probe(StandInInception):
        def forward(self, x):
            seen.append((torch.is_autocast_enabled("cpu"), x.is_contiguous(memory_format=torch.channels_last)))
            return super().forward(x)

    x = random_pixels(3, seed=0)
    exact = metrics.features(x, Probe(), precision="fp32")
    fast = metrics.features(x, Probe(), precision="bf16")
    assert seen[0] == (False, False) and seen[1] == (True, True)
    assert fast.dtype == torch.float64 and not torch.equal(fast, exact)
    assert torch.allclose(fast, exact, rtol=0.05, atol=0.05 * float(exact.abs().mean()))


def test_cached_features_skip_the_network_the_second_time(monkeypatch, tmp_path):
    monkeypatch.setenv("MUNIT_CACHE", str(tmp_path))
    net = CountingInception()
    x = random_pixels(5, seed=1)
    first = metrics.features(x, net, batch_size=2, precision="fp32", cache=True)
    assert net.images == 5 and torch.equal(first, metrics.features(x, StandInInception(), batch_size=2, precision="fp32"))
    stored = list((tmp_path / "features").glob("*.safetensors"))
    assert len(stored) == 1 and stored[0].stem == metrics.feature_key(x, "fp32")
    net.images = 0
    again = metrics.features(x, net, batch_size=2, precision="fp32", cache=True)
    assert net.images == 0 and torch.equal(again, first) and again.dtype == torch.float64
    # a changed file and another precision are other keys, so the network runs
    for i, pixels in enumerate(x):
        images.save_png(images.tensor_to_image(pixels), tmp_path / f"{i}.png")
    read = lambda: torch.stack([images.to_tensor(images.open_image(tmp_path / f"{i}.png")) for i in range(5)])
    assert metrics.feature_key(read(), "fp32") == metrics.feature_key(x, "fp32")
    edited = images.open_image(tmp_path / "4.png")
    edited.putpixel((0, 0), (0, 0, 0) if edited.getpixel((0, 0)) != (0, 0, 0) else (1, 1, 1))
    edited.save(tmp_path / "4.png")
    changed = read()
    assert metrics.feature_key(changed, "fp32") != metrics.feature_key(x, "fp32")
    assert metrics.feature_key(x, "bf16") != metrics.feature_key(x, "fp32")
    assert not torch.equal(metrics.features(changed, net, precision="fp32", cache=True), first)
    metrics.features(x, net, precision="bf16", cache=True)
    assert net.images == 10 and len(list((tmp_path / "features").glob("*.safetensors"))) == 3


def test_cache_folder_argument_wins_and_a_damaged_entry_is_recomputed(monkeypatch, tmp_path):
    monkeypatch.setenv("MUNIT_CACHE", str(tmp_path / "env"))
    assert metrics.cache_folder() == tmp_path / "env" / "features"
    monkeypatch.delenv("MUNIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert metrics.cache_folder() == tmp_path / "home" / ".cache" / "munit" / "features"
    net, x = CountingInception(), random_pixels(3, seed=2)
    first = metrics.features(x, net, precision="fp32", cache=tmp_path / "arg")
    entry = tmp_path / "arg" / f"{metrics.feature_key(x, 'fp32')}.safetensors"
    entry.write_bytes(entry.read_bytes()[:100])  # cut short, as by a full disk
    assert torch.equal(metrics.features(x, net, precision="fp32", cache=tmp_path / "arg"), first)
    assert net.images == 6 and not (tmp_path / "home").exists()
    save_file({"features": torch.zeros(2, 64)}, str(entry))  # wrong count
    assert torch.equal(metrics.features(x, net, precision="fp32", cache=tmp_path / "arg"), first)
    assert net.images == 9


def real_or_synthetic_images(tmp_path: Path) -> tuple[torch.Tensor, torch.Tensor, str]:
    """16 + 16 held-out fluent64 images (line art, flat colour) when ../shared has them, else 16
    synthetic outlines and 16 filled shapes."""
    if (FLUENT64 / "line").is_dir():
        folders = (FLUENT64 / "line", FLUENT64 / "flat")
        held_out = [p.name for p in sorted(folders[0].glob("*.png")) if hashlib.sha1(p.name.encode()).hexdigest()[0] in "012"]
        names, source = held_out[:16], "fluent64"
    else:
        synthetic.make_shapes(tmp_path, n_train=0, n_test=16, size=64)
        folders = (tmp_path / "testA", tmp_path / "testB")
        names, source = sorted(p.name for p in folders[0].iterdir()), "synthetic shapes"
    a, b = (torch.stack([images.to_tensor(images.open_image(f / n)) for n in names]) for f in folders)
    return a, b, source


def test_bf16_features_kid_and_fid_stay_near_float32(tmp_path):
    if importlib.util.find_spec(metrics.INCEPTION_PACKAGE) is None:
        pytest.skip("the [eval] extra is not installed")
    a, b, source = real_or_synthetic_images(tmp_path)
    net = metrics.load_inception("cpu")
    exact = [metrics.features(x, net, precision="fp32") for x in (a, b)]
    fast = [metrics.features(x, net, precision="bf16") for x in (a, b)]
    errors = torch.cat([(f - e).norm(dim=1) / e.norm(dim=1) for f, e in zip(fast, exact)])
    assert 0 < float(errors.mean()) < BF16_FEATURE_TOLERANCE, source
    kid_exact, kid_fast = metrics.kid(*exact)[0], metrics.kid(*fast)[0]
    assert kid_exact > 5 * BF16_KID_TOLERANCE, source  # two kinds of image: a difference to keep
    assert abs(kid_fast - kid_exact) < BF16_KID_TOLERANCE, (source, kid_exact, kid_fast)
    assert metrics.fid(*fast) == pytest.approx(metrics.fid(*exact), rel=BF16_FID_TOLERANCE), source


def test_colour_on_white_counts_coloured_pixels_only_where_the_truth_is_white():
    truth = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    truth[0, :, :2] = torch.tensor([200, 40, 40], dtype=torch.uint8)[:, None, None]  # top half red: not white
    out = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    assert metrics.colour_on_white(out, truth) == 0.0
    out[0, :, :2] = 0  # colour where the truth is coloured too: not counted
    assert metrics.colour_on_white(out, truth) == 0.0
    out[0, 2, 2, :] = 255 - 33  # one channel just past the tolerance on a white row: 4 of 8 white pixels
    assert metrics.colour_on_white(out, truth) == 0.5
    out[0, 2, 3, :] = 255 - 32  # exactly at the tolerance: still white
    assert metrics.colour_on_white(out, truth) == 0.5
    styles = torch.stack([out, torch.full_like(out, 255)], dim=1)  # (N, S, C, H, W): one clean style
    assert metrics.colour_on_white(styles, truth) == 0.25
    assert math.isnan(metrics.colour_on_white(out, torch.zeros_like(truth)))
    gray = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    assert metrics.colour_on_white(torch.zeros_like(gray), gray) == 1.0
