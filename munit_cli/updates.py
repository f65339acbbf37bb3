"""One training iteration: a discriminator update, then a generator update (`Trainer.step`).

Also what the updates draw on: the learning-rate schedule, the optimizers, the random styles of a
step and the EMA of the generators' weights. The run around the iterations (data, saving, logging,
stopping) is `train`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from munit_cli import augment as augment_mod
from munit_cli import config, data, dist, losses, models, runtime
from munit_cli.config import Config
from munit_cli.errors import MunitError
from munit_cli.runtime import hash_seed

# ---------------------------------------------------------------------------------------------
# Small pieces


def learning_rate(cfg: Config, step: int, base: float | None = None, budget_used: float = 0.0) -> float:
    """The learning rate of iteration `step` (0-based), from base = optim.lr unless given, times
    (step + 1) / warmup during an optional warm-up.

    optim.lr_policy "step" (the paper's): base * gamma ** ((step + 1) // lr_step). The authors' step
    scheduler advances before each update, so iteration k already trains with the rate of k + 1
    iterations done: the first halving applies at iteration lr_step - 1. "linear" and "cosine": fall
    in a straight line or a half cosine to zero at the end of the run, which is train.iters or the
    end of the --minutes budget (`budget_used`, its fraction gone), whichever comes first: a budget
    is spent in full at any speed of the machine."""
    o = cfg.optim
    warm = min(1.0, (step + 1) / o.warmup) if o.warmup else 1.0
    done = min(1.0, max(step / cfg.train.iters, budget_used))
    if o.lr_policy == "linear":
        decay = 1.0 - done
    elif o.lr_policy == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * done))
    else:
        decay = o.lr_gamma ** ((step + 1) // o.lr_step)
    return (o.lr if base is None else base) * warm * decay


def make_optimizer(params, cfg: Config) -> torch.optim.Adam:
    o = cfg.optim
    return torch.optim.Adam(
        [p for p in params if p.requires_grad],
        lr=o.lr,
        betas=(o.beta1, o.beta2),
        weight_decay=o.weight_decay,
        fused=True if o.fused else None,
    )


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random styles of one step come from a generator seeded by (seed, step): resume is exact
    and every rank draws the same global batch of styles."""
    g = torch.Generator(device="cpu")
    g.manual_seed(hash_seed(seed, step))
    return g


def sample_styles(g: torch.Generator, n: int, style_dim: int, shard: data.Shard, device) -> torch.Tensor:
    """N(0, I) styles for the global batch; this rank keeps its slice."""
    s = torch.randn(n * shard.world, style_dim, generator=g)
    return s[shard.rank * n : (shard.rank + 1) * n].to(device)


class EMA:
    """Exponential moving average of the generators' weights; inference prefers it (smoother results).
    Until `start` it copies the weights, so early noise is not averaged in."""

    def __init__(self, gen: torch.nn.Module, decay: float, start: int):
        import copy

        self.model = copy.deepcopy(gen).requires_grad_(False)
        self.decay, self.start = decay, start

    @torch.no_grad()
    def update(self, gen: torch.nn.Module, step: int) -> None:
        ema, live = list(self.model.parameters()), list(gen.parameters())
        if step <= self.start:
            torch._foreach_copy_(ema, live)
        else:
            torch._foreach_lerp_(ema, live, 1.0 - self.decay)


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """No gradients into `module` while the generator update reads the discriminators."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


# ---------------------------------------------------------------------------------------------
# The two updates


def translate_for_dis(gen, x_a, x_b, s_a, s_b, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """Translations with fresh random styles for the discriminator update (no graph kept)."""
    g = dist.unwrap(gen)
    with torch.no_grad(), autocast():
        c_a, c_b = g.gen_a.content_encoder(x_a), g.gen_b.content_encoder(x_b)
        return g.gen_a.decode(c_b, s_a), g.gen_b.decode(c_a, s_b)


def dis_update(dis, opt_dis, x_a, x_b, x_ba, x_ab, cfg: Config, augment, autocast) -> torch.Tensor:
    """Discriminators score real images against (detached) translations. Their loss is weighted
    by gan_w as in the authors' trainer (with weight decay, Adam is not fully scale-invariant), and
    each domain's by its loss.gan_scale_a or _b.
    `augment` is applied to every image they see (the identity unless loss.dis_augment is set)."""
    w = cfg.loss
    opt_dis.zero_grad(set_to_none=True)
    real_a, real_b = augment(x_a), augment(x_b)
    if w.r1_w > 0:
        real_a, real_b = real_a.detach().requires_grad_(True), real_b.detach().requires_grad_(True)
    with autocast():
        out = dis(real_a, augment(x_ba.detach()), real_b, augment(x_ab.detach()))
        loss = w.gan_w * (
            w.gan_scale_a * losses.dis_loss(out["real_a"], out["fake_a"], w.gan_type)
            + w.gan_scale_b * losses.dis_loss(out["real_b"], out["fake_b"], w.gan_type)
        )
    if w.r1_w > 0:
        r1 = losses.r1_penalty(out["real_a"], real_a) + losses.r1_penalty(out["real_b"], real_b)
        loss = loss + w.r1_w / 2 * r1
    loss.backward()
    opt_dis.step()
    return loss.detach()


def gen_update(
    out, dis_a, dis_b, frozen_dis, opt_gen, x_a, x_b, cfg: Config, vgg, augment, autocast, nce: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Both generators in one objective: adversarial + image, content, style (+ cycle, perceptual,
    feature matching, contrastive patches, whose random locations `nce` draws). `out` is the
    generators' forward pass; the discriminators are read but not trained here."""
    gan_type, matching = cfg.loss.gan_type, cfg.loss.fm_w > 0
    fm = {}

    def adversarial(dis, fake: torch.Tensor, real: torch.Tensor, name: str) -> torch.Tensor:
        if not matching:
            return losses.gen_adv_loss(dis(augment(fake)), gan_type)
        maps, fake_hidden = dis(augment(fake), features=True)
        with torch.no_grad():
            real_hidden = dis(augment(real), features=True)[1]
        fm[name] = losses.feature_matching(fake_hidden, real_hidden)
        return losses.gen_adv_loss(maps, gan_type)

    with autocast():
        with frozen(frozen_dis):
            adv_a = adversarial(dis_a, out["x_ba"], x_a, "fm_a")
            adv_b = adversarial(dis_b, out["x_ab"], x_b, "fm_b")
        terms = losses.generator_terms(out, x_a, x_b, adv_a, adv_b, vgg)
        terms.update(fm)
        if nce is not None:
            terms.update(losses.nce_terms(out, cfg.loss, nce))
        total = losses.total_generator_loss(terms, cfg.loss)
    opt_gen.zero_grad(set_to_none=True)
    total.backward()
    opt_gen.step()
    return {"gen_total": total.detach(), **{k: v.detach() for k, v in terms.items()}}


class Trainer:
    """Networks, optimizers and EMA, and `step()`: one discriminator then one generator update.

    The reference path is float32 eager. The speed options (all in the `fast` preset) compute the
    same algorithm: bf16 autocast (norm statistics stay float32), channels_last, torch.compile,
    fused Adam, and `share_translations`: the generator forward pass runs once per iteration and
    its (detached) translations also feed the discriminator update. In the recipe the two updates
    draw separate random styles through the same, not yet updated, generator weights, so both
    updates see samples from the same distribution either way: only the correlation between the
    two updates' samples changes, not what each update computes in expectation.
    """

    def __init__(self, cfg: Config, device: torch.device, vgg=None, shard: data.Shard | None = None):
        if cfg.loss.cycle_detach == "auto":
            raise MunitError("loss.cycle_detach=auto must be decided from the training images first (train.run does)")
        self.cfg, self.device, self.vgg = cfg, device, vgg
        self.shard = shard or data.Shard()
        torch.manual_seed(cfg.train.seed)
        # The networks themselves: their weights are what checkpoints, the EMA and samples read.
        self.gen, self.dis = models.build(cfg.model)
        for m in self.gen.modules():
            if isinstance(m, models.LayerNorm):
                m.kernel = cfg.train.fused_layer_norm
        self.dis_augment = config.dis_augment_policy(cfg.loss.dis_augment)
        self.precision, channels_last = runtime.resolve_precision(cfg.train.precision, cfg.train.channels_last, device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        for net in (self.gen, self.dis):
            net.to(device, memory_format=self.memory_format)
        self.opt_gen = make_optimizer(self.gen.parameters(), cfg)
        self.opt_dis = make_optimizer(self.dis.parameters(), cfg)
        decay = cfg.train.ema_decay
        self.ema = EMA(self.gen, decay, cfg.train.ema_start) if decay > 0 else None
        # What the updates call, made once: the same parameters behind DDP wrappers (gradients are
        # averaged over ranks; a no-op in one process) and compiled when train.compile is set.
        # Loading a checkpoint later writes into those parameters, which every handle shares.
        compile_ = torch.compile if cfg.train.compile else (lambda m: m)
        self.gen_step = compile_(dist.wrap(self.gen, device))
        self.dis_step = compile_(dist.wrap(self.dis, device))
        # The generator update only reads the discriminators (frozen, no gradients to average),
        # so it scores through the plain modules, compiled, without DDP.
        self.dis_a_score, self.dis_b_score = compile_(self.dis.dis_a), compile_(self.dis.dis_b)

    def autocast(self):
        return runtime.autocast(self.device, self.precision)

    def augmenter(self, step: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The discriminators' input augmentation for iteration `step`: its random draws come from a
        generator seeded by (seed, step), apart from the styles', so resume stays exact and runs
        without augmentation draw the same styles as before."""
        if not self.dis_augment:
            return lambda x: x
        g = torch.Generator().manual_seed(hash_seed(self.cfg.train.seed, "dis-augment", step))
        return lambda x: augment_mod.augment(x, self.dis_augment, g)

    def step(self, x_a: torch.Tensor, x_b: torch.Tensor, step: int, budget_used: float = 0.0) -> dict[str, torch.Tensor]:
        """Iteration `step` (0-based) on this rank's batches, `budget_used` of a time budget gone
        (for the learning rate); returns detached loss terms."""
        cfg, ac = self.cfg, self.autocast
        x_a = x_a.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        x_b = x_b.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        for opt, base in ((self.opt_gen, cfg.optim.lr), (self.opt_dis, cfg.optim.lr_dis or cfg.optim.lr)):
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step, base, budget_used)
        augment = self.augmenter(step)
        # the patch locations have a generator of their own, so runs without the loss draw as before
        nce = torch.Generator().manual_seed(hash_seed(cfg.train.seed, "nce", step)) if cfg.loss.nce_w > 0 else None
        g = step_generator(cfg.train.seed, step)
        bs, dim, cycle = x_a.shape[0], cfg.model.style_dim, cfg.loss.recon_x_cyc_w > 0

        def styles() -> tuple[torch.Tensor, torch.Tensor]:
            return tuple(sample_styles(g, bs, dim, self.shard, self.device) for _ in range(2))

        def generate(s_a, s_b) -> dict[str, torch.Tensor]:
            # the diversity term's second styles are drawn after the others, so runs without it
            # draw the same styles as before
            second = styles() if cfg.loss.diversity_w > 0 else None
            with ac():
                return self.gen_step(
                    x_a, x_b, s_a, s_b, cycle=cycle, cycle_detach=cfg.loss.cycle_detach,
                    second_styles=second, features=nce is not None, content_detach=cfg.loss.recon_c_detach,
                    reread_noise=cfg.loss.reread_noise,
                )

        s_a, s_b = styles()
        if cfg.train.share_translations:
            out = generate(s_a, s_b)
            loss_d = dis_update(self.dis_step, self.opt_dis, x_a, x_b, out["x_ba"], out["x_ab"], cfg, augment, ac)
        else:
            x_ba, x_ab = translate_for_dis(self.gen, x_a, x_b, s_a, s_b, ac)
            loss_d = dis_update(self.dis_step, self.opt_dis, x_a, x_b, x_ba, x_ab, cfg, augment, ac)
            out = generate(*styles())
        terms = gen_update(out, self.dis_a_score, self.dis_b_score, self.dis, self.opt_gen, x_a, x_b, cfg, self.vgg, augment, ac, nce)
        if self.ema is not None:
            self.ema.update(self.gen, step + 1)
        terms["dis_total"] = loss_d
        return terms
