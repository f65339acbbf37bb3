"""The training loop: one discriminator update, then one generator update, every iteration.

`run(cfg, data, out)` is what `munit train` calls. One iteration itself (networks, optimizers, the
two updates) is `updates.Trainer`; the run folder (lock, identity, resume point, previews) is
`rundir`'s concern.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from munit_cli import checkpoint, config, data, dist, images, losses, rundir, runtime, styles
from munit_cli import report as report_mod
from munit_cli import tensorboard, trainstate
from munit_cli.config import Config
from munit_cli.console import err, is_tty, progress
from munit_cli.errors import Interrupted, MunitError, UsageError, first_line
from munit_cli.files import display_path
from munit_cli.results import Result
from munit_cli.runtime import hash_seed, pick_device
from munit_cli.updates import Trainer

# ---------------------------------------------------------------------------------------------
# Signals


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


# ---------------------------------------------------------------------------------------------
# Style priors


# Images per domain that a fitted style prior is fitted to: enough for the style codes' covariance
# (8 x 8 in every preset), at most 2**22 pixels (a few seconds of style encoding per checkpoint).
PRIOR_IMAGES = (64, 512)


def prior_image_count(crop_size: int) -> int:
    least, most = PRIOR_IMAGES
    return max(least, min(most, 2**22 // crop_size**2))


@torch.no_grad()
def fit_style_priors(gen, images: dict[str, torch.Tensor], autocast) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per domain, a Gaussian fitted to the style codes its style encoder gives `images[domain]`."""
    g = dist.unwrap(gen)
    priors = {}
    for domain, x in images.items():
        encoder = g.generator(domain).style_encoder
        with autocast():
            codes = torch.cat([encoder(chunk).float() for chunk in x.split(64)])
        priors[domain] = styles.fit_prior(codes.cpu())
    return priors


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


@dataclass
class TrainResult(Result):
    """What `munit train` reports (rank 0's view of a distributed run)."""

    run: Path
    step: int
    generator: Path  # the newest model
    samples: Path
    report: Path
    names: list[str]
    world_size: int
    global_batch: int
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    out_of_time: bool = False  # stopped (and saved) at the --minutes budget before train.iters


def resolve_config(
    out: Path,
    resume: str | None,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """The recipe of a run: on resume, the run's own config.toml is the base (unless a preset or
    a config file is named), and `overrides` still apply on top."""
    if preset is None and config_file is None:
        config_file = rundir.recipe_file(Path(out), resume)
    return config.resolve(preset, config_file, overrides)


def decide_cycle_detach(cfg: Config, sources: tuple[Any, Any], names: tuple[str, str], announce: bool) -> str:
    """What `loss.cycle_detach=auto` means for these training images (`losses.auto_cycle_detach`),
    from the same spread sample of each domain on every rank, so all ranks decide alike."""
    colour_a, colour_b = (
        data.colourfulness(data.preview_batch(s, cfg.data, losses.COLOUR_SAMPLE, spread=True)) for s in sources
    )
    choice = losses.auto_cycle_detach(colour_a, colour_b)
    if announce:
        err.print(f"loss.cycle_detach=auto: {choice or 'none'} ({names[0]} colourfulness {colour_a:.2f}, {names[1]} {colour_b:.2f})")
    return choice


def run(
    cfg: Config,
    data_paths: list[Path],
    out: Path,
    names: tuple[str, str] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    minutes: float | None = None,
) -> TrainResult | None:
    """Train MUNIT on two unpaired domains into the run folder `out`, for at most `minutes` of
    wall-clock time when given (then it saves and returns; `resume="auto"` continues). Returns the
    summary on the main process, None on the other ranks of a distributed run."""
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise UsageError(f"--minutes must be a positive number, got {minutes}")
    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    ctx = dist.context(cfg.train.device)
    out = Path(out)
    # Everything that can fail on the user's input fails here, before the run folder is touched.
    source_a, source_b = data.open_sources(data_paths, cfg.data, cfg.model.input_dim)
    rundir.check_data_apart(out, [source_a.folder, source_b.folder])
    names = names or (source_a.name, source_b.name)
    if cfg.train.tensorboard and ctx.is_main:
        tensorboard.require()
    if cfg.loss.r1_w > 0 and ctx.world > 1:
        # DDP averages gradients in .backward() only; the penalty's torch.autograd.grad would bypass it
        raise UsageError("loss.r1_w > 0 works in one process only", hint="train without --gpus, or set loss.r1_w=0")
    device = pick_device(cfg.train.device) if ctx.world == 1 else ctx.device
    # The run records what `auto` chose here, so its config.toml says how it was trained.
    cfg.train.precision, cfg.train.channels_last = runtime.resolve_precision(
        cfg.train.precision, cfg.train.channels_last, device
    )
    if cfg.loss.cycle_detach == "auto":
        cfg.loss.cycle_detach = decide_cycle_detach(cfg, (source_a, source_b), names, announce=ctx.is_main)
    vgg = losses.VGGPerceptual(cfg.loss.vgg_weights).to(device) if cfg.loss.vgg_w > 0 else None
    samples = Samples(cfg, out, source_a, source_b, device)
    trainer = Trainer(cfg, device, vgg, data.Shard(ctx.rank, ctx.world))
    if ctx.is_main:  # the other ranks would find rank 0's files
        rundir.check_run_dir(out, resume, overwrite)
        rundir.create(out)
    with rundir.run_lock(out) if ctx.is_main else nullcontext():
        # Rank 0 checks the checkpoints against the recipe before it writes anything, so a
        # refused resume leaves the run folder as it was; the other ranks read what it wrote.
        if ctx.is_main:
            info = rundir.run_info(out, names, resume)
            start = resume_into(trainer, out, resume, checkpoint.model_fingerprint(info.run_id, cfg))
            rundir.prepare_run_dir(out, cfg, info, resume, overwrite)
            if resume:  # also from step 0: a run killed before its first checkpoint logged steps
                rundir.truncate_metrics(out / rundir.METRICS_FILE, start)
        dist.barrier()
        if not ctx.is_main:
            info = rundir.RunInfo.read(out)
            if info is None:
                raise MunitError(f"{out / rundir.RUN_FILE}: missing after rank 0 wrote it (a bug: please report it)")
            start = resume_into(trainer, out, resume, checkpoint.model_fingerprint(info.run_id, cfg), announce=False)
        fingerprint = checkpoint.model_fingerprint(info.run_id, cfg)
        session = Session(cfg, ctx, out, trainer, info.names, fingerprint, samples, deadline=deadline, budget_s=60 * (minutes or 0))
        result = session.train(source_a, source_b, start)
    dist.shutdown()
    return result


def resume_into(trainer: Trainer, out: Path, resume: str | None, fingerprint: str, announce: bool = True) -> int:
    """Load generators (and their EMA), discriminators and optimizers from the resume point, if
    any, after checking it belongs to this run; returns the step to continue from."""
    point = rundir.find_resume_point(out, resume) if resume else None
    if point is None:
        return 0
    rundir.check_architecture(point, trainer.cfg.to_dict()["model"])
    raw, averaged = checkpoint.split_ema(point.gen_tensors)
    checkpoint.load_state_dict_checked(trainer.gen, raw, point.gen_path)
    if trainer.ema is not None:
        checkpoint.load_state_dict_checked(trainer.ema.model, averaged or raw, point.gen_path)
    opts = (trainer.opt_gen, trainer.opt_dis)
    loaded = trainstate.load_state(point.state_path, trainer.dis, *opts, read=point.state)
    rundir.check_fingerprint(point, loaded["extra"], fingerprint)
    if announce:
        err.print(f"resuming from step {loaded['step']} ({point.state_path})")
    return loaded["step"]


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

    def write(self, gen: torch.nn.Module, step: int) -> Path:
        g = torch.Generator().manual_seed(hash_seed(self.cfg.train.seed, "sample", step))
        dim = self.cfg.model.style_dim
        rand_a = torch.randn(self.preview_b.shape[0], dim, generator=g).to(self.device)
        rand_b = torch.randn(self.preview_a.shape[0], dim, generator=g).to(self.device)
        grid = sample_grid(gen, self.preview_a, self.preview_b, self.fixed_s_a, self.fixed_s_b, rand_a, rand_b)
        path = self.folder / f"step_{step:08d}.png"
        write_grid(path, grid, 4)
        return path


def write_report(out: Path, sources: tuple[Any, Any] | None = None, names: tuple[str, str] | None = None) -> None:
    """Rewrite the run's report.html (given the sources, their dataset summary first), so a browser
    reload shows the run's state. The report is for watching: failing to write it is a warning
    that never stops training."""
    try:
        if sources is not None and names is not None:
            summary = [(name, display_path(s.folder), len(s)) for name, s in zip(names, sources)]
            report_mod.save_dataset_summary(out, summary)
        report_mod.write_report(out)
    except Exception as exc:  # noqa: BLE001 (any failure: training goes on)
        err.print(f"warning: could not write {display_path(out / report_mod.REPORT_FILE)}: {first_line(exc)}")


@dataclass
class Session:
    """One training run in progress: what the loop, its saves and its checks share."""

    cfg: Config
    ctx: dist.Context
    out: Path
    trainer: Trainer
    names: tuple[str, str]
    fingerprint: str
    samples: Samples
    saved_at: int = 0  # the newest step whose checkpoint is on disk (or the step the run started at)
    deadline: float | None = None  # time.monotonic() at which the --minutes budget ends
    budget_s: float = 0.0  # the --minutes budget in seconds
    _budget_used: float = field(default=0.0, init=False)
    # per domain, the training images a fitted style prior is fitted to (model.style_prior "fitted")
    prior_images: dict[str, torch.Tensor] | None = field(default=None, init=False)

    def budget_used(self, step: int) -> float:
        """The fraction of the --minutes budget gone (0 without one). Every step on one process;
        under DDP the ranks' clocks differ, so they agree on the largest at log intervals only and
        hold it in between: their learning rates must stay equal."""
        if self.deadline is None:
            return 0.0
        if self.ctx.world > 1 and step % self.cfg.train.log_every:
            return self._budget_used
        left = (self.deadline - time.monotonic()) / self.budget_s
        self._budget_used = dist.largest(min(1.0, max(0.0, 1.0 - left)))
        return self._budget_used

    def save(self, step: int) -> None:
        """Checkpoint `step` (rank 0 writes, every rank waits for it), with the style priors fitted
        to the weights saved when model.style_prior is "fitted"."""
        trainer, cfg = self.trainer, self.cfg
        if not all(torch.isfinite(p).all() for p in trainer.gen.parameters()):
            self.check_finite({"weights": math.nan}, step)
        if self.ctx.is_main:
            gen_path, state_path = checkpoint.checkpoint_paths(self.out, step)
            ema = trainer.ema.model if trainer.ema else None
            priors = None
            if self.prior_images is not None:
                nets = {"raw": trainer.gen, **({"ema": ema} if ema is not None else {})}
                priors = {k: fit_style_priors(net, self.prior_images, trainer.autocast) for k, net in nets.items()}
            checkpoint.save_generator(gen_path, trainer.gen, cfg, self.names, step, self.fingerprint, ema, priors)
            opts = (trainer.opt_gen, trainer.opt_dis)
            trainstate.save_state(state_path, trainer.dis, *opts, cfg, self.names, step, {"fingerprint": self.fingerprint})
            checkpoint.prune(self.out, cfg.train.keep_checkpoints)
        dist.barrier()
        self.saved_at = step

    @contextmanager
    def live_report(self, sources: tuple[Any, Any]) -> Iterator[tensorboard.TensorBoardLog | None]:
        """Rank 0: the report (and dataset summary) before the first step and again when training
        stops for any reason; the TensorBoard log, when train.tensorboard is on, in between."""
        if not self.ctx.is_main:
            yield None
            return
        write_report(self.out, sources, self.names)
        tb = tensorboard.TensorBoardLog(self.out) if self.cfg.train.tensorboard else None
        try:
            yield tb
        finally:
            if tb is not None:
                tb.close()
            write_report(self.out)

    def check_finite(self, logged: dict[str, float], step: int) -> None:
        bad = [k for k, v in logged.items() if not math.isfinite(v)]
        if bad:
            raise MunitError(
                f"loss became NaN/Inf at step {step} ({', '.join(bad)}); stopped without saving it",
                hint=f"the last good checkpoint is step {self.saved_at} in {self.out}/checkpoints; "
                "try a lower lr or --precision fp32",
            )

    def train(self, source_a, source_b, start: int) -> TrainResult | None:
        cfg, ctx, out, trainer, samples = self.cfg, self.ctx, self.out, self.trainer, self.samples
        bs, iters = cfg.train.batch_size, cfg.train.iters
        stream_a = data.DomainStream(source_a, cfg.data, bs, cfg.train.seed, "a", trainer.shard)
        stream_b = data.DomainStream(source_b, cfg.data, bs, cfg.train.seed, "b", trainer.shard)

        def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            return stream_a.batch(step), stream_b.batch(step)

        loader = data.Prefetcher(batches, start, cfg.data.prefetch_threads)
        if cfg.model.style_prior == "fitted" and ctx.is_main:
            count = prior_image_count(cfg.data.crop_size)
            self.prior_images = {
                d: data.preview_batch(s, cfg.data, count, spread=True).to(trainer.device) for d, s in zip("ab", (source_a, source_b))
            }
        log = LossLog(out / rundir.METRICS_FILE, write=ctx.is_main)
        if ctx.is_main:
            rundir.save_previews(out, samples.preview_a, samples.preview_b)
            samples.folder.mkdir(exist_ok=True)
            (out / checkpoint.CHECKPOINT_DIR).mkdir(exist_ok=True)
            err.print(
                f"training {self.names[0]} <-> {self.names[1]} on {trainer.device} ({cfg.preset} preset, "
                f"global batch {bs * ctx.world}, {iters} iterations) into {display_path(out)}"
            )
            err.print(f"report: {display_path(out / report_mod.REPORT_FILE)} (reload it to follow the run)")

        def due(step: int, every: int) -> bool:
            return step % every == 0 or step == iters

        step = self.saved_at = start
        out_of_time = False
        threads = runtime.ThreadTuner(torch.get_num_threads()) if trainer.device.type == "cpu" else None
        with (
            SignalGuard() as guard,
            progress("train", iters, start, enabled=ctx.is_main) as bar,
            self.live_report((source_a, source_b)) as tb,
        ):
            try:
                while step < iters:
                    x_a, x_b = loader.get(step)
                    started = time.perf_counter()
                    log.add(trainer.step(x_a, x_b, step, self.budget_used(step)))
                    if threads is not None and (change := threads.observe(time.perf_counter() - started)):
                        err.print(f"step {step + 1}: {change}")
                    step += 1
                    at_log = due(step, cfg.train.log_every)
                    if at_log:
                        self.check_finite(log.flush(step, trainer.opt_gen.param_groups[0]["lr"]), step)
                        if ctx.is_main and not is_tty():
                            err.print(f"step {step}/{iters}  {log.status()}")
                        if tb is not None:
                            tb.scalars(step, log.last)
                            tb.scalars(step, {"lr": trainer.opt_gen.param_groups[0]["lr"]}, group="optim")
                    bar.update(1, status=log.status())
                    at_sample = ctx.is_main and due(step, cfg.train.sample_every)
                    if at_sample:
                        grid = samples.write(trainer.ema.model if trainer.ema else trainer.gen, step)
                        if tb is not None:
                            tb.image(step, grid)
                    if due(step, cfg.train.checkpoint_every):
                        self.save(step)
                    if at_sample:  # after the save, so the report names this step's checkpoint
                        write_report(out)
                    # Ranks must stop at the same step, so under DDP they agree at log intervals only.
                    if at_log or ctx.world == 1:
                        if dist.any_rank(guard.signum is not None):
                            guard.signum = guard.signum or signal.SIGTERM
                            break
                        if self.deadline is not None and dist.any_rank(time.monotonic() >= self.deadline):
                            out_of_time = step < iters
                            break
            finally:
                loader.close()
                if threads is not None:
                    torch.set_num_threads(threads.choices[0])

            if guard.signum is not None:
                if self.saved_at != step:
                    self.save(step)
                sig = signal.Signals(guard.signum).name
                message = f"{sig}: stopped at step {step}; saved {out}/checkpoints (resume with --resume auto)"
                raise Interrupted(message, guard.signum)
            if out_of_time and self.saved_at != step:
                self.save(step)

        if not dist.ranks_agree(trainer.gen):
            raise MunitError("distributed workers ended with different weights (a bug: please report it)")
        if not ctx.is_main:
            return None
        # A kill between the last save and its pruning leaves an extra pair, and a run resumed at its
        # last step saves nothing, so nothing else would prune it.
        checkpoint.prune(out, cfg.train.keep_checkpoints)
        return TrainResult(
            run=out,
            step=step,
            generator=checkpoint.checkpoint_paths(out, step)[0],
            samples=samples.folder,
            report=out / report_mod.REPORT_FILE,
            names=list(self.names),
            world_size=ctx.world,
            global_batch=bs * ctx.world,
            losses=log.last,
            seconds=round(time.perf_counter() - log.t0, 2),
            out_of_time=out_of_time,
        )
