"""The training loop: one discriminator update, then one generator update, every iteration.

`run(cfg, data, out)` is what `munit train` calls. The run folder holds the resolved config,
metrics.jsonl, sample grids, the fixed preview inputs and the checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from rich.markup import escape

from munit_cli import checkpoint, data, dist, files, images, losses, models
from munit_cli.config import Config
from munit_cli.runtime import hash_seed, pick_device
from munit_cli.console import err, is_tty, progress
from munit_cli.errors import Interrupted, MunitError

RUN_FILE = "run.json"
LOCK_FILE = ".lock"


@dataclass
class RunInfo:
    """Identity of a run that outlives its checkpoints: names and the model fingerprint seed."""

    names: tuple[str, str]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


# ---------------------------------------------------------------------------------------------
# Small pieces


def learning_rate(cfg: Config, step: int) -> float:
    """Step schedule: lr * gamma ** (step // lr_step), a pure function of the step (nothing to save)."""
    return cfg.optim.lr * cfg.optim.lr_gamma ** (step // cfg.optim.lr_step)


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


class SignalGuard:
    """Turn SIGINT/SIGTERM into a flag checked between steps, so the loop can save and stop cleanly."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. under some test runners)
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second Ctrl-C while saving: stop right away
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One trainer per run folder. flock is released by the OS when a process dies, so a crash
    never leaves the folder locked."""
    import fcntl

    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise MunitError(
            f"{run_dir} is in use by another munit train process",
            hint="wait for it to finish, or train into another --out folder",
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Run folder


def check_run_dir(out: Path, resume: str | None, overwrite: bool) -> None:
    """A non-empty folder is only reused with --resume (continue) or --overwrite (start over)."""
    if resume is None and not overwrite and out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise MunitError(
            f"{out} already exists and is not empty",
            hint="continue it with --resume auto, or start over with --overwrite",
        )


def prepare_run_dir(out: Path, cfg: Config, names: tuple[str, str], resume: str | None, overwrite: bool) -> RunInfo:
    """Set up the run folder; call while holding its lock (with --overwrite it clears the folder)."""
    check_run_dir(out, resume, overwrite)
    if resume is None and overwrite:
        import shutil

        for entry in out.iterdir():
            if entry.name != LOCK_FILE:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    # what a trainer killed mid-write (kill -9, power loss) left behind
    files.remove_stale_temporaries(
        [out, out / checkpoint.CHECKPOINT_DIR, out / "samples", *(out / "preview").glob("*")]
    )
    # the recipe first: a run killed right after this resumes with it, even when no flags are given again
    files.write_atomic(out / "config.toml", cfg.to_toml().encode(), durable=True)
    run_file = out / RUN_FILE
    if run_file.is_file():
        stored = json.loads(run_file.read_text())
        info = RunInfo(tuple(stored["names"]), stored["run_id"])
    else:
        info = RunInfo(names)
        files.write_atomic(run_file, json.dumps({"names": list(names), "run_id": info.run_id}).encode(), durable=True)
    return info


@dataclass
class ResumePoint:
    """A checkpoint pair already read and verified, so resuming reads each file once."""

    state_path: Path
    state: tuple[dict[str, torch.Tensor], dict[str, str]]
    gen_path: Path
    gen_tensors: dict[str, torch.Tensor]


def _read_pair(state_path: Path) -> ResumePoint:
    gen_path = state_path.with_name(state_path.name.replace("state_", "gen_"))
    state = checkpoint.read_tensors(state_path, checkpoint.STATE_KIND)
    gen_tensors = checkpoint.read_tensors(gen_path, checkpoint.GENERATOR_KIND)[0]
    return ResumePoint(state_path, state, gen_path, gen_tensors)


def find_resume_point(out: Path, resume: str) -> ResumePoint | None:
    """`auto`: the newest checkpoint pair that reads back whole; a path: exactly that state file."""
    if resume != "auto":
        path = Path(resume)
        if not path.is_file():
            raise MunitError(f"--resume {resume}: no such checkpoint file")
        return _read_pair(path)
    for step in reversed(checkpoint.list_steps(out, "state")):
        try:
            return _read_pair(checkpoint.checkpoint_paths(out, step)[1])
        except MunitError as exc:
            err.print(f"[yellow]warning:[/] {escape(str(exc))}; trying the previous checkpoint", markup=True)
    return None


def truncate_metrics(path: Path, step: int) -> None:
    """After a resume, drop log lines from steps the resumed run will redo, and a last line that a
    crash (or a full disk) cut short."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    files.write_atomic(path, ("\n".join(kept) + "\n" if kept else "").encode(), durable=True)


def save_previews(out: Path, preview_a: torch.Tensor, preview_b: torch.Tensor, names: tuple[str, str]) -> None:
    """The fixed inputs of the sample grids, kept as PNGs so `munit interpolate` can reuse them."""
    for domain, batch in (("A", preview_a), ("B", preview_b)):
        folder = out / "preview" / domain
        folder.mkdir(parents=True, exist_ok=True)
        for i, x in enumerate(batch):
            images.save_png(x, folder / f"{i:02d}.png")


# ---------------------------------------------------------------------------------------------
# The two updates


def translate_for_dis(gen, x_a, x_b, s_a, s_b, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """Translations with fresh random styles for the discriminator update (no graph kept)."""
    g = dist.unwrap(gen)
    with torch.no_grad(), autocast():
        c_a, c_b = g.gen_a.content_encoder(x_a), g.gen_b.content_encoder(x_b)
        return g.gen_a.decode(c_b, s_a), g.gen_b.decode(c_a, s_b)


def dis_update(dis, opt_dis, x_a, x_b, x_ba, x_ab, autocast) -> torch.Tensor:
    """Discriminators score real images against (detached) translations."""
    opt_dis.zero_grad(set_to_none=True)
    with autocast():
        out = dis(x_a, x_ba.detach(), x_b, x_ab.detach())
        loss = losses.dis_loss(out["real_a"], out["fake_a"]) + losses.dis_loss(out["real_b"], out["fake_b"])
    loss.backward()
    opt_dis.step()
    return loss.detach()


def gen_update(out, dis_a, dis_b, frozen_dis, opt_gen, x_a, x_b, cfg: Config, vgg, autocast) -> dict[str, torch.Tensor]:
    """Both generators in one objective: adversarial + image, content, style (+ cycle, perceptual).
    `out` is the generators' forward pass; the discriminators are read but not trained here."""
    with autocast():
        with frozen(frozen_dis):
            adv_a = losses.gen_adv_loss(dis_a(out["x_ba"]))
            adv_b = losses.gen_adv_loss(dis_b(out["x_ab"]))
        terms = losses.generator_terms(out, x_a, x_b, adv_a, adv_b, vgg)
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

    def __init__(self, cfg: Config, device: torch.device, vgg=None):
        self.cfg, self.device, self.vgg = cfg, device, vgg
        torch.manual_seed(cfg.train.seed)
        self.gen, self.dis = models.build(cfg.model)
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        for net in (self.gen, self.dis):
            net.to(device, memory_format=self.memory_format)
        self.opt_gen = make_optimizer(self.gen.parameters(), cfg)
        self.opt_dis = make_optimizer(self.dis.parameters(), cfg)
        decay = cfg.train.ema_decay
        self.ema = EMA(self.gen, decay, cfg.train.ema_start) if decay > 0 else None
        self.shard = data.Shard()
        self.wrapped = False

    def wrap(self, shard: data.Shard) -> None:
        """DDP wrappers (a no-op in one process) and compilation; call after loading a checkpoint."""
        self.shard = shard
        gen_ddp, dis_ddp = dist.wrap(self.gen, self.device), dist.wrap(self.dis, self.device)
        compile_ = torch.compile if self.cfg.train.compile else (lambda m: m)
        self.gen_run, self.dis_run = compile_(gen_ddp), compile_(dis_ddp)
        self.dis_a_run, self.dis_b_run = compile_(self.dis.dis_a), compile_(self.dis.dis_b)
        self.wrapped = True

    def autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def step(self, x_a: torch.Tensor, x_b: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Iteration `step` (0-based) on this rank's batches; returns detached loss terms."""
        if not self.wrapped:
            self.wrap(self.shard)
        cfg, ac = self.cfg, self.autocast
        x_a = x_a.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        x_b = x_b.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        lr = learning_rate(cfg, step)
        for opt in (self.opt_gen, self.opt_dis):
            for group in opt.param_groups:
                group["lr"] = lr
        g = step_generator(cfg.train.seed, step)
        bs, dim, cycle = x_a.shape[0], cfg.model.style_dim, cfg.loss.recon_x_cyc_w > 0

        def styles() -> tuple[torch.Tensor, torch.Tensor]:
            return tuple(sample_styles(g, bs, dim, self.shard, self.device) for _ in range(2))

        s_a, s_b = styles()
        if cfg.train.share_translations:
            with ac():
                out = self.gen_run(x_a, x_b, s_a, s_b, cycle=cycle)
            loss_d = dis_update(self.dis_run, self.opt_dis, x_a, x_b, out["x_ba"], out["x_ab"], ac)
        else:
            x_ba, x_ab = translate_for_dis(self.gen, x_a, x_b, s_a, s_b, ac)
            loss_d = dis_update(self.dis_run, self.opt_dis, x_a, x_b, x_ba, x_ab, ac)
            s_a, s_b = styles()
            with ac():
                out = self.gen_run(x_a, x_b, s_a, s_b, cycle=cycle)
        terms = gen_update(out, self.dis_a_run, self.dis_b_run, self.dis, self.opt_gen, x_a, x_b, cfg, self.vgg, ac)
        if self.ema is not None:
            self.ema.update(self.gen, step + 1)
        terms["dis_total"] = loss_d
        return terms


# ---------------------------------------------------------------------------------------------
# Sample grids


@torch.no_grad()
def sample_grid(gen, preview_a, preview_b, fixed_s_a, fixed_s_b, random_s_a, random_s_b) -> torch.Tensor:
    """Per preview input, one row: input, reconstruction, translation with a fixed style and with a
    random style; A->B rows first, then B->A."""
    g = dist.unwrap(gen)
    rows = []
    for x, src, dst, s_fixed, s_rand in (
        (preview_a, g.gen_a, g.gen_b, fixed_s_b, random_s_b),
        (preview_b, g.gen_b, g.gen_a, fixed_s_a, random_s_a),
    ):
        c, s = src.encode(x)
        n = x.shape[0]
        recon = src.decode(c, s)
        fixed = dst.decode(c, s_fixed[:1].expand(n, -1))
        rand = dst.decode(c, s_rand[:n])
        rows.append(torch.stack([x, recon, fixed, rand], dim=1).flatten(0, 1))
    return torch.cat(rows).float().cpu()


def write_grid(path: Path, batch: torch.Tensor, columns: int) -> None:
    from torchvision.utils import make_grid

    grid = make_grid(batch.clamp(-1, 1), nrow=columns, padding=2, pad_value=1.0)
    images.save_png(grid, path)


# ---------------------------------------------------------------------------------------------
# The loop


def run(
    cfg: Config,
    data_paths: list[Path],
    out: Path,
    names: tuple[str, str] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train MUNIT on two unpaired domains into the run folder `out`; returns a summary."""
    ctx = dist.context(cfg.train.device)
    out = Path(out)
    # Everything that can fail on the user's input fails here, before the run folder is touched.
    source_a, source_b = data.open_sources(data_paths, cfg.data, cfg.model.input_dim)
    names = names or (source_a.name, source_b.name)
    device = pick_device(cfg.train.device) if ctx.world == 1 else ctx.device
    vgg = losses.VGGPerceptual(cfg.loss.vgg_weights).to(device) if cfg.loss.vgg_w > 0 else None
    samples = Samples(cfg, out, source_a, source_b, device)
    if ctx.is_main:  # the other ranks would find rank 0's files
        check_run_dir(out, resume, overwrite)
        out.mkdir(parents=True, exist_ok=True)
    with run_lock(out) if ctx.is_main else nullcontext():
        if ctx.is_main:
            prepare_run_dir(out, cfg, names, resume, overwrite)
        dist.barrier()
        stored = json.loads((out / RUN_FILE).read_text())
        info = RunInfo(tuple(stored["names"]), stored["run_id"])
        fingerprint = checkpoint.model_fingerprint(info.run_id, cfg)
        summary = _train(cfg, ctx, out, source_a, source_b, samples, info.names, fingerprint, device, vgg, resume)
    dist.shutdown()
    return summary


class LossLog:
    """Loss terms summed on the device and read back only at log intervals (no per-step host
    sync); averaged over ranks; appended to metrics.jsonl by rank 0."""

    def __init__(self, path: Path, write: bool):
        self.path, self.write = path, write
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.last: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0) + v.float()
        self.count += 1

    def flush(self, step: int, lr: float) -> dict[str, float]:
        self.last = dist.mean_of({k: (v / self.count).item() for k, v in self.sums.items()})
        self.sums, self.count = {}, 0
        if self.write:
            finite = {k: v if math.isfinite(v) else None for k, v in self.last.items()}  # strict JSON
            record = {"step": step, "lr": lr, "time": round(time.perf_counter() - self.t0, 3), **finite}
            try:
                with open(self.path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as exc:  # a full disk: a message, not a traceback
                raise MunitError(f"could not write {self.path}: {exc.strerror or exc}") from None
        return self.last

    def status(self) -> str:
        if not self.last:
            return ""
        d = self.last
        return f"D {d['dis_total']:.3f}  G {d['gen_total']:.3f}  x {d['recon_x_a']:.3f}"


class Samples:
    """Sample grids from fixed preview inputs and a fixed style, plus a random style per grid."""

    def __init__(self, cfg: Config, out: Path, source_a, source_b, device: torch.device):
        self.cfg, self.folder, self.device = cfg, out / "samples", device
        self.preview_a = data.preview_batch(source_a, cfg.data, cfg.train.num_preview).to(device)
        self.preview_b = data.preview_batch(source_b, cfg.data, cfg.train.num_preview).to(device)
        g = torch.Generator().manual_seed(hash_seed(cfg.train.seed, "fixed-style"))
        self.fixed_s_a = torch.randn(1, cfg.model.style_dim, generator=g).to(device)
        self.fixed_s_b = torch.randn(1, cfg.model.style_dim, generator=g).to(device)

    def write(self, gen: torch.nn.Module, step: int) -> None:
        g = torch.Generator().manual_seed(hash_seed(self.cfg.train.seed, "sample", step))
        dim = self.cfg.model.style_dim
        rand_a = torch.randn(self.preview_b.shape[0], dim, generator=g).to(self.device)
        rand_b = torch.randn(self.preview_a.shape[0], dim, generator=g).to(self.device)
        grid = sample_grid(gen, self.preview_a, self.preview_b, self.fixed_s_a, self.fixed_s_b, rand_a, rand_b)
        write_grid(self.folder / f"step_{step:08d}.png", grid, 4)


def resume_into(trainer: Trainer, point: ResumePoint) -> int:
    """Load generators (and their EMA), discriminators, optimizers and RNGs; returns the step."""
    raw, averaged = checkpoint.split_ema(point.gen_tensors)
    checkpoint.load_state_dict_checked(trainer.gen, raw, point.gen_path)
    if trainer.ema is not None:
        checkpoint.load_state_dict_checked(trainer.ema.model, averaged or raw, point.gen_path)
    opts = (trainer.opt_gen, trainer.opt_dis)
    return checkpoint.load_state(point.state_path, trainer.dis, *opts, read=point.state)["step"]


def _train(cfg, ctx, out, source_a, source_b, samples, names, fingerprint, device, vgg, resume) -> dict[str, Any]:
    trainer = Trainer(cfg, device, vgg)
    start = 0
    point = find_resume_point(out, resume) if resume else None
    if point is not None:
        start = resume_into(trainer, point)
        if ctx.is_main:
            err.print(f"resuming from step {start} ({point.state_path})")
    if resume and ctx.is_main:  # also from step 0: a run killed before its first checkpoint logged steps
        truncate_metrics(out / "metrics.jsonl", start)

    shard = data.Shard(ctx.rank, ctx.world)
    trainer.wrap(shard)
    bs, iters = cfg.train.batch_size, cfg.train.iters
    stream_a = data.DomainStream(source_a, cfg.data, bs, cfg.train.seed, "a", shard)
    stream_b = data.DomainStream(source_b, cfg.data, bs, cfg.train.seed, "b", shard)
    loader = data.Prefetcher(lambda step: (stream_a.batch(step), stream_b.batch(step)), start, cfg.data.num_workers)
    log = LossLog(out / "metrics.jsonl", write=ctx.is_main)
    if ctx.is_main:
        save_previews(out, samples.preview_a, samples.preview_b, names)
        samples.folder.mkdir(exist_ok=True)
        (out / checkpoint.CHECKPOINT_DIR).mkdir(exist_ok=True)
        err.print(
            f"training {names[0]} <-> {names[1]} on {device} ({cfg.preset} preset, "
            f"global batch {bs * ctx.world}, {iters} iterations) into {out}"
        )

    def save(step: int) -> None:
        _check_finite_params(trainer.gen, step, out, saved_at)
        if ctx.is_main:
            gen_path, state_path = checkpoint.checkpoint_paths(out, step)
            ema = trainer.ema.model if trainer.ema else None
            checkpoint.save_generator(gen_path, trainer.gen, cfg, names, step, fingerprint, ema)
            opts = (trainer.opt_gen, trainer.opt_dis)
            checkpoint.save_state(state_path, trainer.dis, *opts, cfg, names, step, {"fingerprint": fingerprint})
            checkpoint.prune(out, cfg.train.keep_checkpoints)
        dist.barrier()

    def due(step: int, every: int) -> bool:
        return step % every == 0 or step == iters

    step = saved_at = start
    with SignalGuard() as guard, progress("train", iters, start, enabled=ctx.is_main) as bar:
        try:
            while step < iters:
                x_a, x_b = loader.get(step)
                log.add(trainer.step(x_a, x_b, step))
                step += 1
                at_log = due(step, cfg.train.log_every)
                if at_log:
                    logged = log.flush(step, learning_rate(cfg, step - 1))
                    _check_finite(logged, step, out, saved_at)
                    if ctx.is_main and not is_tty():
                        err.print(f"step {step}/{iters}  {log.status()}")
                bar.update(1, status=log.status())
                if ctx.is_main and due(step, cfg.train.sample_every):
                    samples.write(trainer.ema.model if trainer.ema else trainer.gen, step)
                if due(step, cfg.train.checkpoint_every):
                    save(step)
                    saved_at = step
                # Ranks must stop at the same step, so under DDP they agree at log intervals only.
                if (at_log or ctx.world == 1) and dist.any_rank(guard.signum is not None):
                    guard.signum = guard.signum or signal.SIGTERM
                    break
        finally:
            loader.close()

        if guard.signum is not None:
            if saved_at != step:
                save(step)
            sig = signal.Signals(guard.signum).name
            message = f"{sig}: stopped at step {step}; saved {out}/checkpoints (resume with --resume auto)"
            raise Interrupted(message, guard.signum)

    if not dist.ranks_agree(trainer.gen):
        raise MunitError("distributed workers ended with different weights (a bug: please report it)")
    return {
        "rank": ctx.rank,
        "world_size": ctx.world,
        "global_batch": bs * ctx.world,
        "run": str(out),
        "step": step,
        "generator": str(checkpoint.checkpoint_paths(out, step)[0]),
        "samples": str(samples.folder),
        "names": list(names),
        "losses": log.last,
        "seconds": round(time.perf_counter() - log.t0, 2),
    }


def _check_finite(logged: dict[str, float], step: int, out: Path, saved_at: int) -> None:
    bad = [k for k, v in logged.items() if not math.isfinite(v)]
    if bad:
        raise MunitError(
            f"loss became NaN/Inf at step {step} ({', '.join(bad)}); stopped without saving it",
            hint=f"the last good checkpoint is step {saved_at} in {out}/checkpoints; try a lower lr or --precision fp32",
        )


def _check_finite_params(gen: torch.nn.Module, step: int, out: Path, saved_at: int) -> None:
    if not all(torch.isfinite(p).all() for p in gen.parameters()):
        _check_finite({"weights": math.nan}, step, out, saved_at)
