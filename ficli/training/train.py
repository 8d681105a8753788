"""Two-stage FI-GAN training (docs/DESIGN.md sections 1-3), readable top to bottom.

Stage 1 ("pretrain") on natural images and stage 2 ("finetune") on fluorescence images differ only in
their presets (loss weights, learning rate, batch, crop; `runs.PRESETS`). Each epoch: `steps`
batches of random HR crops whose LR inputs are made on the fly with the project's own degradation
(`ficli.training.pairs`), then validation through the tiled engine on whole (or centre-cropped) validation
images; `best` keeps the highest val PSNR, `last` the latest epoch; training stops early after
`patience` epochs without improvement.

Everything a run needs to continue exactly lives in RUN_DIR/checkpoint.pt (models, optimizers, epoch,
history, RNG states, settings), written atomically at the end of each epoch; `resume` continues from
it. The model files carry enough of it ("training" in their metadata: step, epoch, learning-rate
schedule position, data-order state, data fingerprint, training seconds and machines) for
`continue_from` to go on from a weights file alone, on another machine or in another folder: the
optimizers start afresh, the step count, schedule and data order continue. The run's settings,
folder and files are `ficli.training.runs`'s.
DistributedDataParallel switches on when `torchrun` sets WORLD_SIZE: each rank draws its own
crops, gradients are averaged, rank 0 validates, logs and writes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ficli.image import io
from ficli.image.degrade import keep_coarse, keep_coarse_array
from ficli.model import modelfile
from ficli.inference.device import device_sync, resolve_device, training_autocast
from ficli.inference.engine import TileConfig, run_tiled
from ficli.errors import FicliError, ModelFileError
from ficli.model.losses import LossWeights, discriminator_loss, generator_loss, perceptual_from_env
from ficli.image.metrics import psnr, ssim
from ficli.model.nets import Discriminator, DiscriminatorConfig, Generator
from ficli.training.pairs import Degrader, degrader_for, load_images, make_batch, validation_pairs
from ficli.training.runs import (CHECKPOINT, RUN_FILES, TrainConfig, check_data, check_new_run_folder, check_run_folder, data_fingerprint,
                        export_model, load_checkpoint, machine, plot_curves, read_training_state, save_checkpoint, training_state,
                        write_metrics)

# The parts of a training step whose time is logged (metrics.csv "share_*" columns), in order.
PARTS = ("data", "g_fwd", "critic", "loss", "g_bwd", "val")


class DivergedError(FicliError):
    """A loss or the weights became NaN or infinite: the run stops, nothing non-finite is saved."""


# ------------------------------------------------------------------------------------ validation


def validate(generator: torch.nn.Module, pairs, tile: TileConfig, coarse_kept: bool = False) -> dict[str, float]:
    """Mean PSNR/SSIM of G and of the bicubic input against HR, on the normalised [0, 1] scale.

    A generator conditioned on the blur scale gets each pair's s, and is also run on the sharp HR
    images told s = 1: `identity_psnr` is PSNR(G(X), X), how little it changes a sharp image.
    `coarse_kept`: each output keeps its input's coarse content (on the whole image, as enhance does).
    """

    def run(image: np.ndarray, s: float | None) -> np.ndarray:
        out = run_tiled(generator if s is None else functools.partial(generator, scale=s), image, tile)
        return keep_coarse_array(out, image, s) if coarse_kept else out

    was_training = generator.training
    generator.eval()
    scores = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
    for lr, hr, scale in pairs:
        sr = run(lr, scale)
        for name, img in (("", sr), ("bicubic_", lr)):
            a, b = np.moveaxis(img, 0, -1), np.moveaxis(hr, 0, -1)
            scores[name + "psnr"].append(psnr(a, b))
            scores[name + "ssim"].append(ssim(a, b))
        if scale is not None:
            same = run(hr, 1.0)
            scores.setdefault("identity_psnr", []).append(psnr(np.moveaxis(same, 0, -1), np.moveaxis(hr, 0, -1)))
    generator.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}


# ------------------------------------------------------------------------------------- the loop


@dataclass
class Progress:
    """What the loop reports: on_step(epoch, step, steps, terms) and on_epoch(row).

    on_step's terms are the step's unweighted losses plus "samples_per_s" and "eta_s" (seconds
    left to the last epoch of --epochs at the rate so far; early stopping may end sooner).
    """

    on_step: Callable[[int, int, int, dict], None] | None = None
    on_epoch: Callable[[dict], None] | None = None
    on_notice: Callable[[str], None] | None = None


class PartTimes:
    """Seconds spent in each part of training (PARTS), measured with the device synchronised."""

    def __init__(self, device: torch.device):
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self._sync = device_sync(device)

    @contextlib.contextmanager
    def part(self, name: str):
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - t0


def lr_factor(step: int, total: int, schedule: str = "constant", warmup: int = 0) -> float:
    """The learning rate of step `step` (0-based) of `total`, as a fraction of --lr: a linear warm-up
    over `warmup` steps, then constant or a cosine down to 0 at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        done = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * done))
    return 1.0


def generate(G, lr: torch.Tensor, cond: torch.Tensor | None, coarse_kept: bool = False) -> torch.Tensor:
    """G's output for a batch: G(lr), or G(lr, cond) when the degrader gave a condition; with
    `coarse_kept` (a conditioned generator), the input's coarse content kept (`degrade.keep_coarse`)."""
    if cond is None:
        return G(lr)
    pred = G(lr, cond)
    return keep_coarse(pred, lr, cond) if coarse_kept else pred


def train_step(G, D, opt_g, opt_d, lr, hr, cond, weights: LossWeights, perceptual, autocast, times: PartTimes,
               coarse_kept: bool = False) -> dict[str, float]:
    """One optimisation step of the critic (if any) and the generator; the unweighted loss terms."""
    with times.part("g_fwd"), autocast:
        pred = generate(G, lr, cond, coarse_kept)
    if D is not None:
        with times.part("critic"):
            with autocast:
                loss_d = discriminator_loss(D(hr), D(pred.detach()))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            with autocast:
                d_fake = D(pred)
    else:
        d_fake = None
    if d_fake is None:
        weights = dataclasses.replace(weights, adv=0.0)
    with times.part("loss"), autocast:
        loss_g, terms = generator_loss(pred.float(), hr, d_fake, weights, perceptual)
    with times.part("g_bwd"):
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    if d_fake is not None:
        terms["d"] = float(loss_d.detach())
    return terms


def _check_finite_terms(terms: dict, epoch: int, step: int, global_step: int, cfg: TrainConfig, out: Path, saved_epoch: int) -> None:
    bad = [k for k, v in terms.items() if not math.isfinite(v)]
    if bad:
        name = next((k for k in bad if k != "total"), bad[0])
        raise DivergedError(
            f"training diverged at epoch {epoch}, step {step} (step {global_step} of the run): the {name} loss is "
            f"{terms[name]}; {_kept(out, saved_epoch)}. Lower the learning rate (--lr {cfg.lr:g} now; try 10× lower) "
            "and start a new run (with --init RUN/best.safetensors to keep what was learnt)"
        )


def _check_finite_weights(G: torch.nn.Module, epoch: int, cfg: TrainConfig, out: Path, saved_epoch: int) -> None:
    if not all(bool(torch.isfinite(p).all()) for p in G.parameters()):
        raise DivergedError(
            f"training diverged in epoch {epoch}: the generator's weights hold NaN or infinite values; "
            f"{_kept(out, saved_epoch)}. Lower the learning rate (--lr {cfg.lr:g} now; try 10× lower) and start a new run"
        )


# Validation this far below the input's (the output's error 10× the bicubic input's) is divergence,
# as NaN is: no training that works passes through it, and such a model must not be saved as best.
DIVERGED_BELOW_INPUT_DB = 20.0


def _check_validation(row: dict, epoch: int, cfg: TrainConfig, out: Path, saved_epoch: int) -> None:
    psnr, given = row["val_psnr"], row.get("val_bicubic_psnr", math.nan)
    if not math.isfinite(psnr):
        what = f"validation PSNR is {psnr}"
    elif math.isfinite(given) and psnr < given - DIVERGED_BELOW_INPUT_DB:
        what = (f"validation PSNR fell to {psnr:.2f} dB, {given - psnr:.0f} dB below its input's {given:.2f} dB "
                f"(more than {DIVERGED_BELOW_INPUT_DB:g} dB below is divergence)")
    else:
        return
    raise DivergedError(
        f"training diverged in epoch {epoch}: {what}; {_kept(out, saved_epoch)}. "
        f"Lower the learning rate (--lr {cfg.lr:g} now; try 10× lower) and start a new run"
    )


def _kept(out: Path, saved_epoch: int) -> str:
    return f"{out} keeps the models of epoch {saved_epoch}, which are finite" if saved_epoch else "nothing was saved"


def _update_ema(ema: torch.nn.Module, G: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), G.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(ema.buffers(), G.buffers()):  # spectral norm's power-iteration vectors
            e.copy_(b)


@dataclass
class _Run:
    """A run's state as one epoch hands it to the next (and the checkpoint keeps it)."""

    cfg: TrainConfig
    out: Path
    rank: int
    world: int
    device: torch.device
    G: Generator
    D: Discriminator | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    rng: np.random.Generator  # this rank's crop sampler: the data order
    fingerprint: list[dict]  # what the data folders held (`runs.data_fingerprint`)
    ema: torch.nn.Module | None = None
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 1
    best_psnr: float = -math.inf
    best_epoch: int = 0
    stages: list[dict] = field(default_factory=list)  # the training stages of the model it started from
    sessions: list[dict] = field(default_factory=list)  # one per start of `train` on this run
    saved_epoch: int = 0  # the last epoch whose checkpoint and models are written


@dataclass(frozen=True)
class _Work:
    """What every step uses: the modules trained (wrapped for DDP and torch.compile), the images,
    the degrader, the perceptual extractors (or None) and the autocast context."""

    g_train: Callable
    d_train: Callable | None
    images: list[np.ndarray]
    degrader: Degrader
    perceptual: torch.nn.Module | None
    autocast: contextlib.AbstractContextManager


@dataclass
class _Clock:
    """Where this session's time goes (for the ETA and metrics.csv): steps and seconds of its
    finished epochs, on top of the training seconds of the sessions before it."""

    session: dict
    before: float
    total_steps: int
    steps: float = 0.0
    seconds: float = 0.0


def train(cfg: TrainConfig, progress: Progress = Progress(), resume: bool = False, *,
          continue_from: str | None = None, overwrite: bool = False, degrader: Degrader | None = None) -> dict:
    """Run (or continue) a training run; returns the summary written to RUN_DIR/summary.json.

    resume: continue RUN_DIR (= cfg.out) from its checkpoint.pt, exactly. continue_from: start
    cfg.out from a model file's training state (step, schedule, data order, history), with fresh
    optimizers (and a fresh critic). overwrite: replace a run or models already in cfg.out.
    degrader: makes each batch's inputs (see `pairs.make_batch`); by default the one of --degradations.
    """
    rank, world = _init_distributed()
    out = Path(cfg.out)
    check_run_folder(cfg)
    if rank == 0:  # the one rule for outputs: never the model this run starts from
        for name in RUN_FILES:
            io.check_output_file(out / name, "--out", keep={"the model this run starts from (--init or --continue-from)":
                                                            [m for m in (cfg.init, continue_from) if m]})
    if not resume and rank == 0:
        check_new_run_folder(out, overwrite)
    if rank == 0:
        stale = io.remove_stale_parts(out / name for name in RUN_FILES)
        if stale and progress.on_notice:
            progress.on_notice(f"removed {stale} unfinished temporary file(s) of a killed earlier run from {out}")
    device = resolve_device(cfg.device if world == 1 or cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    perceptual = perceptual_from_env(cfg.weights, cfg.vgg_weights, cfg.resnet_weights)
    if perceptual is not None:
        perceptual = perceptual.to(device)

    fingerprint = data_fingerprint(cfg.data)
    images = load_images(cfg.data, cfg.generator.channels, "training")
    pairs = validation_pairs(cfg) if rank == 0 else []
    torch.manual_seed(cfg.seed)
    G = Generator(cfg.generator).to(device)
    D = Discriminator(DiscriminatorConfig(channels=cfg.generator.channels)).to(device) if cfg.gan else None
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(0.9, 0.999)) if D is not None else None
    run = _Run(cfg, out, rank, world, device, G, D, opt_g, opt_d, np.random.default_rng([cfg.seed, rank]), fingerprint)
    if resume:
        ema_state = _resume(run)
    elif continue_from:
        ema_state = _continue(run, continue_from, progress)
    else:
        ema_state = _start(run, overwrite)
    g_train, d_train = _training_modules(run, ema_state)
    work = _Work(g_train, d_train, images, degrader or degrader_for(cfg), perceptual, training_autocast(device))
    tile = TileConfig(tile=cfg.tile, device=str(device))
    session = {"machine": machine(), "started": datetime.datetime.now().isoformat(timespec="seconds"),
               "first_epoch": run.start_epoch, "last_epoch": run.start_epoch - 1, "seconds": 0.0, "cpu_seconds": 0.0}
    run.sessions = [*run.sessions, session]
    history = run.history
    before = history[-1].get("train_seconds", sum(r["seconds"] for r in history)) if history else 0.0
    clock = _Clock(session, float(before), cfg.epochs * cfg.steps)

    epoch = run.start_epoch - 1
    run.saved_epoch = run.start_epoch - 1
    stale = epoch - run.best_epoch if run.best_epoch else 0
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        if stale >= cfg.patience:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        times = PartTimes(device)
        sums, rate = _train_epoch(run, work, epoch, times, clock, t0, progress)
        _check_finite_weights(G, epoch, cfg, out, run.saved_epoch)
        row = {"epoch": epoch, "step": epoch * cfg.steps, "lr": rate, **{f"loss_{k}": v / cfg.steps for k, v in sums.items()}}
        rng_states = _gather_rng_states(run.rng, world)
        if rank == 0:
            with times.part("val"):
                scores = validate(run.ema if run.ema is not None else G, pairs, tile, cfg.generator.coarse_kept)
            row.update({f"val_{k}": v for k, v in scores.items()})
            stale = _end_epoch(run, epoch, row, times, clock, t0, c0, rng_states, progress)
        if world > 1:
            flag = torch.tensor([stale], device=device)
            dist.broadcast(flag, 0)
            stale = int(flag)
    return _summary(run, epoch)


def _resume(run: _Run) -> dict | None:
    """Restore `run` from RUN_DIR/checkpoint.pt, exactly (models, optimizers, RNG states, history);
    returns the generator average's weights (None without --ema)."""
    path = run.out / CHECKPOINT
    state = load_checkpoint(path, run.device)
    check_data(state.get("data_fingerprint"), run.fingerprint, f"{path}", run.out)
    try:
        run.G.load_state_dict(state["generator"])
        run.opt_g.load_state_dict(state["opt_g"])
        if run.D is not None:
            run.D.load_state_dict(state["discriminator"])
            run.opt_d.load_state_dict(state["opt_d"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelFileError(
            f"{path}: its models do not fit the run's settings ({str(exc).splitlines()[0][:160]}); it was "
            f"written for another architecture or by another ficli: continue from {run.out / 'last.safetensors'} with "
            "--continue-from FILE --out NEWDIR, or start a new run"
        ) from None
    run.history, run.best_psnr, run.best_epoch = state["history"], state["best_psnr"], state["best_epoch"]
    run.stages, run.sessions = state["stages"], state.get("sessions", [])
    run.start_epoch = state["epoch"] + 1
    run.rng.bit_generator.state = json.loads(state["rng"][run.rank] if run.rank < len(state["rng"]) else state["rng"][0])
    torch.set_rng_state(state["torch_rng"])
    return state.get("ema")


def _continue(run: _Run, path: str, progress: Progress) -> None:
    """Start `run` from model file `path`'s training state: its weights, step, schedule, data order
    and history go on; the optimizers (and the critic) start afresh."""
    saved = read_training_state(path)
    check_data(saved.get("data"), run.fingerprint, path, None)
    run.stages = _init_from(run.G, path, run.device)[:-1]
    # The history goes on, but the best model is what this new folder holds: its first epoch is
    # saved as best.safetensors, then any that beats it (the best of before is in the old folder).
    run.history, run.best_psnr, run.best_epoch = saved["history"], -math.inf, 0
    run.sessions = saved.get("sessions", [])
    run.start_epoch = saved["epoch"] + 1
    states = saved["rng"]
    run.rng.bit_generator.state = json.loads(states[run.rank] if run.rank < len(states) else states[0])
    if run.rank == 0 and progress.on_notice:
        critic = " and a new critic" if run.D is not None else ""
        progress.on_notice(f"continuing from {path} at epoch {run.start_epoch} (step {saved['step']}) with fresh optimizer state{critic}")
    if run.rank == 0:
        run.out.mkdir(parents=True, exist_ok=True)


def _start(run: _Run, overwrite: bool) -> None:
    """A new run: from --init's weights (if given), in a run folder emptied of an earlier run's files with --overwrite."""
    if run.cfg.init:
        run.stages = _init_from(run.G, run.cfg.init, run.device)
    if run.rank == 0:
        if overwrite:
            for name in RUN_FILES:
                (run.out / name).unlink(missing_ok=True)
        run.out.mkdir(parents=True, exist_ok=True)


def _training_modules(run: _Run, ema_state: dict | None) -> tuple[Callable, Callable | None]:
    """(generator, critic) as the steps call them: the weight average set up (--ema), channels-last,
    wrapped for DistributedDataParallel under torchrun and compiled with --compile."""
    cfg, G, D = run.cfg, run.G, run.D
    if cfg.ema:
        run.ema = copy.deepcopy(G).eval().requires_grad_(False)
        if ema_state is not None:
            run.ema.load_state_dict(ema_state)
    if cfg.channels_last:
        for model in (G, D, run.ema):
            if model is not None:
                model.to(memory_format=torch.channels_last)
    g_train = DistributedDataParallel(G) if run.world > 1 else G
    d_train = DistributedDataParallel(D) if run.world > 1 and D is not None else D
    if cfg.compile:
        g_train = torch.compile(g_train)
        d_train = torch.compile(d_train) if d_train is not None else None
    return g_train, d_train


def _train_epoch(run: _Run, work: _Work, epoch: int, times: PartTimes, clock: _Clock, t0: float,
                 progress: Progress) -> tuple[dict[str, float], float]:
    """One epoch's `steps` optimisation steps; (the sums of the loss terms, the last step's learning rate)."""
    cfg = run.cfg
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    sums: dict[str, float] = {}
    for step in range(1, cfg.steps + 1):
        global_step = (epoch - 1) * cfg.steps + step
        rate = cfg.lr * lr_factor(global_step - 1, clock.total_steps, cfg.lr_schedule, cfg.warmup_steps)
        for opt in (run.opt_g, run.opt_d):
            for group in opt.param_groups if opt is not None else ():
                group["lr"] = rate
        with times.part("data"):
            lr_batch, hr_batch, cond = make_batch(work.images, cfg, run.rng, work.degrader)
            lr_batch = lr_batch.to(run.device, non_blocking=True).contiguous(memory_format=layout)
            hr_batch = hr_batch.to(run.device, non_blocking=True).contiguous(memory_format=layout)
            cond = cond.to(run.device) if cond is not None else None
        terms = train_step(work.g_train, work.d_train, run.opt_g, run.opt_d, lr_batch, hr_batch, cond, cfg.weights, work.perceptual,
                           work.autocast, times, cfg.generator.coarse_kept)
        _check_finite_terms(terms, epoch, step, global_step, cfg, run.out, run.saved_epoch)
        if run.ema is not None:
            with times.part("g_bwd"):
                _update_ema(run.ema, run.G, cfg.ema)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v
        if run.rank == 0 and progress.on_step:
            elapsed = clock.seconds + time.perf_counter() - t0
            per_step = elapsed / (clock.steps + step)
            left = clock.total_steps - global_step
            progress.on_step(epoch, step, cfg.steps, {**terms, "samples_per_s": cfg.batch * run.world / per_step, "eta_s": left * per_step})
    return sums, rate


def _end_epoch(run: _Run, epoch: int, row: dict, times: PartTimes, clock: _Clock, t0: float, c0: float, rng_states: list[str],
               progress: Progress) -> int:
    """Rank 0 after validation: the epoch's timings into `row` and the history, the checkpoint, the
    model files (best when validation PSNR rose), metrics.csv; returns the epochs since the best."""
    cfg, out, session = run.cfg, run.out, clock.session
    seconds = time.perf_counter() - t0
    clock.steps += cfg.steps
    clock.seconds += seconds
    session["seconds"] = round(session["seconds"] + seconds, 1)
    session["cpu_seconds"] = round(session["cpu_seconds"] + time.process_time() - c0, 1)
    session["last_epoch"] = epoch
    row["seconds"] = seconds
    row["cpu_seconds"] = time.process_time() - c0
    row["train_seconds"] = clock.before + clock.seconds
    row["samples_per_s"] = cfg.batch * run.world * cfg.steps / seconds
    row["steps_per_s"] = cfg.steps / seconds
    row.update({f"share_{k}": v / seconds for k, v in times.seconds.items()})
    row["eta_s"] = (cfg.epochs - epoch) * clock.seconds / max(1, epoch - run.start_epoch + 1)
    _check_validation(row, epoch, cfg, out, run.saved_epoch)
    run.history.append(row)
    improved = row["val_psnr"] > run.best_psnr
    if improved:
        run.best_psnr, run.best_epoch = row["val_psnr"], epoch
    export = run.ema if run.ema is not None else run.G
    state = training_state(cfg, epoch, run.history, run.best_psnr, run.best_epoch, rng_states, run.sessions, run.fingerprint)
    save_checkpoint(out / CHECKPOINT, run.G, run.D, run.opt_g, run.opt_d, run.ema, epoch, run.history, run.best_psnr, run.best_epoch,
                    run.stages, rng_states, cfg, run.sessions, run.fingerprint, run.saved_epoch)
    run.saved_epoch = epoch
    export_model(export, out / "last.safetensors", cfg, run.history, run.best_epoch, run.stages, state)
    if improved:
        export_model(export, out / "best.safetensors", cfg, run.history, run.best_epoch, run.stages, state)
    write_metrics(out, run.history)
    if progress.on_epoch:
        progress.on_epoch(row)
    return epoch - run.best_epoch


def _summary(run: _Run, epoch: int) -> dict:
    """The run's summary (written by rank 0 to summary.json, with curves.png); the process group closed."""
    history = run.history
    summary = {
        "epochs_run": epoch, "best_epoch": run.best_epoch, "best_val_psnr": run.best_psnr if math.isfinite(run.best_psnr) else None,
        "train_seconds": round(history[-1].get("train_seconds", 0.0), 1) if history else 0.0, "out": str(run.out), "rank": run.rank,
    }
    if run.rank == 0:
        io.write_text(run.out / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
        if history:
            plot_curves(run.out)
    if run.world > 1:
        dist.barrier()  # no rank tears the group down while rank 0 is still writing
        dist.destroy_process_group()
    return summary


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _init_from(G: Generator, path: str, device: torch.device) -> list[dict]:
    """Start G from a model file; returns that model's training stages (carried into the new one)."""
    plain, config, meta = modelfile.load_model(path, device=str(device))
    # A model that is not conditioned may start a conditioned run: its head gets a zero-weighted
    # input for the scale map, so the new generator begins as exactly the old one, whatever s.
    widened = not config.scale_input and G.config.scale_input
    # It may also start a run trained with the coarse content kept (`coarse_kept`: the same weights).
    if dataclasses.replace(config, scale_input=G.config.scale_input, coarse_kept=G.config.coarse_kept) != G.config:
        raise ModelFileError(f"{path}: the model's architecture {config} differs from this run's {G.config}; train from scratch or use a matching --init")
    with torch.no_grad():
        for name, module in G.named_modules():
            if isinstance(module, torch.nn.Conv2d):
                src = plain.get_submodule(name)
                weight = module.parametrizations.weight.original
                if widened and name == "head":
                    weight.zero_()
                    weight[:, : src.weight.shape[1]].copy_(src.weight)
                else:
                    weight.copy_(src.weight)
                module.bias.copy_(src.bias)
        G.out_scale.copy_(plain.out_scale)
        # Let spectral norm's power iteration settle on the loaded weights (σ ≈ 1 for folded ones).
        G.train()
        probe = torch.zeros(1, G.config.channels, 8, 8, device=device)
        for _ in range(20):
            G(probe, 1.0) if G.config.scale_input else G(probe)
    return list(meta.get("stages", []))


def _gather_rng_states(rng: np.random.Generator, world: int) -> list[str]:
    """Every rank's crop-sampler state, so that a resumed run draws the crops it would have drawn."""
    state = json.dumps(rng.bit_generator.state)
    if world == 1:
        return [state]
    gathered = [None] * world
    dist.all_gather_object(gathered, state)
    return gathered



