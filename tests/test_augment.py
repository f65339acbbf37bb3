"""Training options beyond the paper (each off by default): DiffAugment of the discriminators'
inputs, hinge loss, R1, spectral normalisation, a separate discriminator learning rate, warm-up,
a style-diversity term."""

from __future__ import annotations

import math

import pytest
import torch

from munit_cli import augment, config, losses, models, updates
from munit_cli.errors import UsageError


def images(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_every_listed_operation_exists():
    assert tuple(augment.OPERATIONS) == config.DIS_AUGMENTATIONS


@pytest.mark.parametrize("name", config.DIS_AUGMENTATIONS)
def test_augmentations_are_seeded_differentiable_and_keep_the_shape(name):
    x = images().requires_grad_(True)
    y = augment.augment(x, (name,), gen(1))
    assert y.shape == x.shape and not torch.equal(y, x)
    assert torch.equal(y, augment.augment(x, (name,), gen(1)))  # same generator state, same draw
    assert not torch.equal(y, augment.augment(x, (name,), gen(2)))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_pixels_and_fills_with_zero():
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0  # one bright pixel in the middle
    y = augment.translation(x, gen(0))
    where = [torch.nonzero(img[0])[0].tolist() for img in y]
    shifts = {(r - 8, c - 8) for r, c in where}
    assert all(abs(dr) <= 2 and abs(dc) <= 2 for dr, dc in shifts) and len(shifts) > 5  # up to 1/8 of 16
    assert y.sum(dim=(1, 2, 3)).eq(1).all()  # moved, not lost or doubled
    edge = augment.translation(torch.ones(64, 1, 16, 16), gen(0))
    assert (edge == 0).any() and set(edge.unique().tolist()) == {0.0, 1.0}  # the shifted-in border is zero


def test_cutout_erases_one_square_of_half_the_side():
    y = augment.cutout(torch.ones(32, 3, 16, 16), gen(0))
    erased = (y == 0).all(dim=1).flatten(1).sum(1)
    assert erased.min() > 0 and erased.max() == 64  # an 8x8 square, clipped at the border at most
    assert (y[:, 0] == y[:, 1]).all()  # the same square in every channel


def test_colour_changes_each_image_by_its_own_draw():
    x = images(8)
    y = augment.colour(x, gen(0))
    shifts = (y - x).mean(dim=(1, 2, 3))
    assert shifts.std() > 0.01


def test_dis_augment_policy_is_validated():
    assert config.dis_augment_policy("colour, cutout") == ("colour", "cutout")
    assert config.dis_augment_policy("") == ()
    for bad in ("color", "cutout,cutout", "flip"):
        with pytest.raises(UsageError):
            config.dis_augment_policy(bad)
    with pytest.raises(UsageError):
        config.resolve("paper", overrides={"loss": {"gan_type": "wgan"}})
    for key, value in (("loss", {"r1_w": -1.0}), ("optim", {"lr_dis": -1e-4}), ("optim", {"warmup": -5})):
        with pytest.raises(UsageError):
            config.resolve("paper", overrides={key: value})


def test_hinge_losses():
    real, fake = [torch.tensor([[2.0, 0.5]])], [torch.tensor([[-2.0, 0.0]])]
    # D: mean(relu(1 - real)) + mean(relu(1 + fake)) = mean(0, 0.5) + mean(0, 1)
    assert losses.dis_loss(real, fake, "hinge").item() == pytest.approx(0.25 + 0.5)
    assert losses.gen_adv_loss(fake, "hinge").item() == pytest.approx(1.0)  # -mean(fake)
    assert losses.dis_loss(real, fake).item() == pytest.approx(2.0 + 0.5 * (1 + 0.25))  # lsgan unchanged


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    w = torch.randn(3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    outputs = [(x * w).sum(dim=(1, 2, 3))[:, None]]
    assert losses.r1_penalty(outputs, x).item() == pytest.approx(w.square().sum().item(), rel=1e-5)


def test_spectral_norm_bounds_every_discriminator_conv():
    cfg = config.resolve("paper", overrides={"model": {"dim": 8, "dis_dim": 8, "dis_n_layer": 2, "dis_num_scales": 1, "dis_spectral_norm": True}})
    _, dis = models.build(cfg.model)
    convs = [m for m in dis.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    dis.train()
    for _ in range(30):  # power iterations run in training-mode forwards
        dis(images(2, 32), images(2, 32), images(2, 32), images(2, 32))
    for m in convs:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.05)


def test_warmup_and_the_discriminators_own_learning_rate(tiny_cfg):
    cfg = tiny_cfg(optim={"lr": 1e-3, "lr_dis": 4e-3, "warmup": 10, "lr_step": 100})
    assert updates.learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert updates.learning_rate(cfg, 4) == pytest.approx(5e-4)
    assert updates.learning_rate(cfg, 9) == pytest.approx(1e-3) == updates.learning_rate(cfg, 50)
    assert updates.learning_rate(cfg, 99) == pytest.approx(5e-4)  # the halving still applies
    trainer = updates.Trainer(cfg, torch.device("cpu"))
    trainer.step(images(2, 32), images(2, 32), 4)
    assert trainer.opt_gen.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert trainer.opt_dis.param_groups[0]["lr"] == pytest.approx(2e-3)


@pytest.mark.parametrize("share", [False, True])
def test_every_option_together_trains_and_resumes_the_same_draws(tiny_cfg, share):
    options = {
        "loss": {"gan_type": "hinge", "r1_w": 1.0, "dis_augment": "colour,translation,cutout", "diversity_w": 1.0},
        "model": {"dis_spectral_norm": True},
        "optim": {"lr_dis": 4e-4, "warmup": 3},
        "train": {"share_translations": share},
    }
    runs = []
    for _ in range(2):
        trainer = updates.Trainer(tiny_cfg(**options), torch.device("cpu"))
        runs.append([trainer.step(images(2, 32, s), images(2, 32, s + 1), s) for s in range(3)])
    for a, b in zip(*runs):
        assert {k: v.item() for k, v in a.items()} == {k: v.item() for k, v in b.items()}
        assert all(math.isfinite(v.item()) for v in a.values())
    plain = updates.Trainer(tiny_cfg(train={"share_translations": share}), torch.device("cpu"))
    first = plain.step(images(2, 32, 0), images(2, 32, 1), 0)
    assert first["dis_total"].item() != pytest.approx(runs[0][0]["dis_total"].item())


def test_the_diversity_term_is_minus_the_distance_between_two_styles_translations(tiny_cfg):
    cfg = tiny_cfg(loss={"diversity_w": 2.0})
    gen_pair, _ = models.build(cfg.model)
    x_a, x_b = images(2, 32, 0), images(2, 32, 1)
    s = [torch.randn(2, cfg.model.style_dim, generator=gen(i)) for i in range(4)]
    out = gen_pair(x_a, x_b, s[0], s[1], second_styles=(s[2], s[3]))
    assert torch.equal(out["x_ab2"], gen_pair.gen_b.decode(out["c_a"], s[3]))
    terms = losses.generator_terms(out, x_a, x_b, torch.zeros(()), torch.zeros(()))
    distance = (out["x_ab"] - out["x_ab2"]).abs().mean()
    assert distance > 0 and terms["div_b"].item() == pytest.approx(-distance.item())
    without = losses.generator_terms(gen_pair(x_a, x_b, s[0], s[1]), x_a, x_b, torch.zeros(()), torch.zeros(()))
    assert "div_a" not in without
    total = losses.total_generator_loss(terms, cfg.loss) - losses.total_generator_loss(without, cfg.loss)
    assert total.item() == pytest.approx(2.0 * (terms["div_a"] + terms["div_b"]).item(), rel=1e-4)
    # in training, the term pushes the two styles' translations apart
    trainer = updates.Trainer(tiny_cfg(loss={"diversity_w": 1.0}), torch.device("cpu"))
    logged = trainer.step(x_a, x_b, 0)
    assert logged["div_a"].item() < 0 and logged["div_b"].item() < 0
