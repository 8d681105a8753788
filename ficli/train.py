"""Two-stage FI-GAN training (DESIGN sections 1-3), readable top to bottom.

Stage 1 ("pretrain") on natural images and stage 2 ("finetune") on fluorescence images differ only in
their presets (loss weights, learning rate, batch, crop). Each epoch: `steps` batches of random HR
crops whose LR inputs are made on the fly with the project's own degradation, then validation through
the tiled engine on whole (or centre-cropped) validation images; `best` keeps the highest val PSNR,
`last` the latest epoch; training stops early after `patience` epochs without improvement.

Everything a run needs to continue exactly lives in RUN_DIR/checkpoint.pt (models, optimizers, epoch,
history, RNG states, settings), written atomically at the end of each epoch; `resume` continues from
it. DistributedDataParallel switches on when `torchrun` sets WORLD_SIZE: each rank draws its own
crops, gradients are averaged, rank 0 validates, logs and writes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from io import StringIO
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ficli import io, modelfile
from ficli.degrade import Degradation, degrade
from ficli.engine import TileConfig, normalize, percentile_range, resolve_device, run_tiled
from ficli.errors import ConfigError, InputError, ModelFileError, OutputError
from ficli.losses import FINETUNE, PRETRAIN, LossWeights, discriminator_loss, generator_loss, perceptual_from_env
from ficli.metrics import psnr, ssim
from ficli.nets import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

CHECKPOINT = "checkpoint.pt"
# Everything a run writes into RUN_DIR (each atomically).
RUN_FILES = (CHECKPOINT, "last.safetensors", "best.safetensors", "metrics.csv", "curves.png", "summary.json")
# SSIM's Gaussian window is 11×11: validation images (after --val-size) must be at least that.
MIN_VAL_SIDE = 11


@dataclass(frozen=True)
class StagePreset:
    weights: LossWeights
    lr: float
    batch: int
    crop: int


# DESIGN's table (perceptual weights at 0: no ImageNet weights ship with ficli).
PRESETS = {
    "pretrain": StagePreset(PRETRAIN, lr=1e-3, batch=64, crop=64),
    "finetune": StagePreset(FINETUNE, lr=1e-6, batch=64, crop=32),
}


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...]
    val: str
    out: str
    stage: str = "pretrain"
    init: str | None = None
    weights: LossWeights = PRETRAIN
    gan: bool = True
    lr: float = 1e-3
    batch: int = 64
    crop: int = 64
    epochs: int = 100
    steps: int = 100  # batches per epoch
    patience: int = 10
    scale: int = 4
    psf_sigma_max: float = 0.0  # PSF sigma drawn uniformly in [0, max] per crop (HR pixels)
    poisson_peak_min: float = 0.0  # if > 0: peak photons drawn log-uniformly in [min, 10·min]
    gaussian_sigma_max: float = 0.0  # read noise drawn uniformly in [0, max] (fraction of max)
    val_size: int = 256  # validation images are centre-cropped to at most this side (0 = whole)
    val_limit: int = 0  # at most this many validation images (0 = all)
    tile: int = 512
    device: str = "auto"
    seed: int = 0
    generator: GeneratorConfig = GeneratorConfig()
    lo_pct: float = 0.1
    hi_pct: float = 99.9
    vgg_weights: str | None = None
    resnet_weights: str | None = None

    @staticmethod
    def for_stage(stage: str, **overrides) -> "TrainConfig":
        """A config with the stage's presets, then `overrides` (None values are ignored)."""
        if stage not in PRESETS:
            raise ConfigError(f"unknown --stage {stage!r}; use pretrain or finetune")
        p = PRESETS[stage]
        base = dict(stage=stage, weights=p.weights, lr=p.lr, batch=p.batch, crop=p.crop)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig(**base)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        d = dict(d)
        d["data"] = tuple(d["data"])
        d["weights"] = LossWeights(**d["weights"])
        d["generator"] = GeneratorConfig(**d["generator"])
        return TrainConfig(**d)


# ------------------------------------------------------------------------------------------ data


def load_images(folders: list[str] | tuple[str, ...], channels: int, role: str, min_side: int = 1) -> list[np.ndarray]:
    """Every image under `folders` (recursively) as float32 (H, W, C) normalised to its percentiles.

    RGB is turned into luminance for a 1-channel model. Each image is mapped by its own 0.1/99.9
    percentiles (DESIGN "Intensity normalisation") so training sees what enhancement will feed in.
    Any image that cannot be used (unreadable, NaN or infinite values, a side below `min_side`)
    stops the run with its name: a data set is fixed before training, not silently thinned.
    """
    items = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise InputError(f"{folder}: {role} folder not found")
        try:
            items += io.collect_inputs([folder], recursive=True)
        except InputError:
            raise InputError(f"{folder}: the {role} folder holds no images ({', '.join(io.IMAGE_SUFFIXES)})") from None
    images = []
    for item in items:
        image = io.read_image(item.path)
        io.check_finite(image, f"fix it or take it out of the {role} folder")
        height, width = image.frames[0].shape[:2]
        if min(height, width) < min_side:
            raise InputError(
                f"{item.path}: {width}×{height} pixels; {role} images need at least {min_side}×{min_side} "
                "(the SSIM window): use larger images or take it out of the folder"
            )
        for frame in image.frames:
            x = io.to_unit(frame)
            x = _to_channels(x, channels, item.path)
            lo, hi = percentile_range(x)
            images.append(normalize(x, lo, hi))
    return images


def _to_channels(x: np.ndarray, channels: int, path: Path) -> np.ndarray:
    x = x[..., None] if x.ndim == 2 else x[..., :3]  # alpha is not image content
    if x.shape[2] == channels:
        return x
    if channels == 1:
        return (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    if x.shape[2] == 1:
        return np.repeat(x, channels, axis=2)
    raise InputError(f"{path}: has {x.shape[2]} channels, the model takes {channels}")


def sample_batch(images: list[np.ndarray], cfg: TrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(lr, hr) tensors (B, C, crop, crop): random crops, flips, rotations, brightness, degradation.

    The degradation runs on the crop plus a margin of `scale` pixels per side, which is then cut
    off, so that the crop's border is degraded as its interior is.
    """
    margin, side = cfg.scale, cfg.crop + 2 * cfg.scale
    hrs, lrs = [], []
    for _ in range(cfg.batch):
        img = images[rng.integers(len(images))]
        h, w = img.shape[:2]
        if h < side or w < side:  # small images are reflect-padded up to the crop
            img = np.pad(img, ((0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
            h, w = img.shape[:2]
        y0, x0 = rng.integers(h - side + 1), rng.integers(w - side + 1)
        patch = img[y0 : y0 + side, x0 : x0 + side]
        patch = np.rot90(patch, rng.integers(4))
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        patch = np.ascontiguousarray(patch) * np.float32(rng.uniform(0.7, 1.0))
        settings = Degradation(
            scale=cfg.scale,
            psf_sigma=rng.uniform(0, cfg.psf_sigma_max) if cfg.psf_sigma_max > 0 else 0.0,
            poisson_peak=math.exp(rng.uniform(math.log(cfg.poisson_peak_min), math.log(10 * cfg.poisson_peak_min))) if cfg.poisson_peak_min > 0 else 0.0,
            gaussian_sigma=rng.uniform(0, cfg.gaussian_sigma_max) if cfg.gaussian_sigma_max > 0 else 0.0,
        )
        lr = degrade(patch[..., 0] if patch.shape[2] == 1 else patch, settings, rng).reshape(patch.shape)
        cut = (slice(margin, margin + cfg.crop), slice(margin, margin + cfg.crop))
        hrs.append(patch[cut].transpose(2, 0, 1))
        lrs.append(lr[cut].transpose(2, 0, 1))
    return torch.from_numpy(np.stack(lrs)), torch.from_numpy(np.stack(hrs))


def validation_pairs(cfg: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(lr, hr) pairs (C, H, W) of the validation images, centre-cropped to `val_size`, noise-free ×scale."""
    if 0 < cfg.val_size < MIN_VAL_SIDE:
        raise ConfigError(f"--val-size {cfg.val_size}: use 0 (whole images) or at least {MIN_VAL_SIDE} (the SSIM window)")
    images = load_images([cfg.val], cfg.generator.channels, "validation", min_side=MIN_VAL_SIDE)
    if cfg.val_limit:
        images = images[: cfg.val_limit]
    pairs = []
    for img in images:
        if cfg.val_size:
            h, w = img.shape[:2]
            top, left = max(0, (h - cfg.val_size) // 2), max(0, (w - cfg.val_size) // 2)
            img = img[top : top + cfg.val_size, left : left + cfg.val_size]
        lr = degrade(img[..., 0] if img.shape[2] == 1 else img, Degradation(scale=cfg.scale), np.random.default_rng(0))
        lr = lr.reshape(img.shape)
        pairs.append((lr.transpose(2, 0, 1).copy(), img.transpose(2, 0, 1).copy()))
    return pairs


def validate(generator: torch.nn.Module, pairs, tile: TileConfig) -> dict[str, float]:
    """Mean PSNR/SSIM of G and of the bicubic input against HR, on the normalised [0, 1] scale."""
    was_training = generator.training
    generator.eval()
    scores = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
    for lr, hr in pairs:
        sr = run_tiled(generator, lr, tile)
        for name, img in (("", sr), ("bicubic_", lr)):
            a, b = np.moveaxis(img, 0, -1), np.moveaxis(hr, 0, -1)
            scores[name + "psnr"].append(psnr(a, b))
            scores[name + "ssim"].append(ssim(a, b))
    generator.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}


# ------------------------------------------------------------------------------------- the loop


@dataclass
class Progress:
    """What the loop reports: on_step(epoch, step, steps, terms) and on_epoch(row)."""

    on_step: Callable[[int, int, int, dict], None] | None = None
    on_epoch: Callable[[dict], None] | None = None
    on_notice: Callable[[str], None] | None = None


def train(cfg: TrainConfig, progress: Progress = Progress(), resume: bool = False) -> dict:
    """Run (or continue) a training run; returns the summary written to RUN_DIR/summary.json."""
    rank, world = _init_distributed()
    out = Path(cfg.out)
    check_run_folder(cfg)
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

    images = load_images(cfg.data, cfg.generator.channels, "training")
    pairs = validation_pairs(cfg) if rank == 0 else []
    torch.manual_seed(cfg.seed)
    G = Generator(cfg.generator).to(device)
    D = Discriminator(DiscriminatorConfig(channels=cfg.generator.channels)).to(device) if cfg.gan else None
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(0.9, 0.999)) if D is not None else None
    rng = np.random.default_rng([cfg.seed, rank])
    history: list[dict] = []
    start_epoch, best_psnr, best_epoch, stages = 1, -math.inf, 0, []

    if resume:
        state = _load_checkpoint(out / CHECKPOINT, device)
        G.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["opt_g"])
        if D is not None:
            D.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
        history, best_psnr, best_epoch = state["history"], state["best_psnr"], state["best_epoch"]
        stages = state["stages"]
        start_epoch = state["epoch"] + 1
        rng.bit_generator.state = json.loads(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        torch.set_rng_state(state["torch_rng"])
    else:
        if cfg.init:
            stages = _init_from(G, cfg.init, device)
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)

    g_train = DistributedDataParallel(G) if world > 1 else G
    d_train = DistributedDataParallel(D) if world > 1 and D is not None else D
    autocast = _autocast(device)
    tile = TileConfig(tile=cfg.tile, device=str(device))

    epoch = start_epoch - 1
    stale = epoch - best_epoch if best_epoch else 0
    for epoch in range(start_epoch, cfg.epochs + 1):
        if stale >= cfg.patience:
            break
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        for step in range(1, cfg.steps + 1):
            lr_batch, hr_batch = (t.to(device, non_blocking=True) for t in sample_batch(images, cfg, rng))
            with autocast:
                pred = g_train(lr_batch)
            if d_train is not None:
                with autocast:
                    loss_d = discriminator_loss(d_train(hr_batch), d_train(pred.detach()))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                with autocast:
                    d_fake = d_train(pred)
            else:
                d_fake = None
            weights = cfg.weights if d_fake is not None else dataclasses.replace(cfg.weights, adv=0.0)
            with autocast:
                loss_g, terms = generator_loss(pred.float(), hr_batch, d_fake, weights, perceptual)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            if d_fake is not None:
                terms["d"] = float(loss_d.detach())
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            if rank == 0 and progress.on_step:
                progress.on_step(epoch, step, cfg.steps, terms)
        row = {"epoch": epoch, **{f"loss_{k}": v / cfg.steps for k, v in sums.items()}}
        rng_states = _gather_rng_states(rng, world)
        if rank == 0:
            row.update({f"val_{k}": v for k, v in validate(G, pairs, tile).items()})
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
            improved = row["val_psnr"] > best_psnr
            if improved:
                best_psnr, best_epoch = row["val_psnr"], epoch
            stale = epoch - best_epoch
            _export(G, out / "last.safetensors", cfg, history, best_epoch, stages)
            if improved:
                _export(G, out / "best.safetensors", cfg, history, best_epoch, stages)
            _write_metrics(out, history)
            _save_checkpoint(out / CHECKPOINT, G, D, opt_g, opt_d, epoch, history, best_psnr, best_epoch, stages, rng_states, cfg)
            if progress.on_epoch:
                progress.on_epoch(row)
        if world > 1:
            flag = torch.tensor([stale], device=device)
            dist.broadcast(flag, 0)
            stale = int(flag)
    summary = {"epochs_run": epoch, "best_epoch": best_epoch, "best_val_psnr": best_psnr, "out": str(out), "rank": rank}
    if rank == 0:
        io.write_text(out / "summary.json", json.dumps(summary, indent=2))
        plot_curves(out)
    if world > 1:
        dist.barrier()  # no rank tears the group down while rank 0 is still writing
        dist.destroy_process_group()
    return summary


def check_run_folder(cfg: TrainConfig) -> None:
    """Refuse a run folder inside a data or validation folder (both are searched with their
    subfolders: a later run would train on curves.png), or one that cannot be written."""
    out = Path(cfg.out).resolve()
    for role, folder in [*(("training", d) for d in cfg.data), ("validation", cfg.val)]:
        src = Path(folder).resolve()
        if out == src or out.is_relative_to(src):
            raise OutputError(
                f"{cfg.out}: lies inside the {role} folder {folder}, which is searched with its subfolders "
                "(the run's curves.png would be read as an image); choose a run folder outside it"
            )
    io.check_writable(out)


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def _init_from(G: Generator, path: str, device: torch.device) -> list[dict]:
    """Start G from a model file; returns that model's training stages (carried into the new one)."""
    plain, config, meta = modelfile.load_model(path, device=str(device))
    if config != G.config:
        raise ModelFileError(f"{path}: the model's architecture {config} differs from this run's {G.config}; train from scratch or use a matching --init")
    with torch.no_grad():
        for name, module in G.named_modules():
            if isinstance(module, torch.nn.Conv2d):
                src = plain.get_submodule(name)
                module.parametrizations.weight.original.copy_(src.weight)
                module.bias.copy_(src.bias)
        G.out_scale.copy_(plain.out_scale)
        # Let spectral norm's power iteration settle on the loaded weights (σ ≈ 1 for folded ones).
        G.train()
        probe = torch.zeros(1, G.config.channels, 8, 8, device=device)
        for _ in range(20):
            G(probe)
    return list(meta.get("stages", []))


def _export(G, path: Path, cfg: TrainConfig, history, best_epoch, stages) -> None:
    """Write G as a safe model file (folded spectral norm) with its training story in the metadata."""
    best = next((r for r in history if r["epoch"] == best_epoch), history[-1])
    stage = {
        "stage": cfg.stage,
        "data": list(cfg.data),
        "val": cfg.val,
        "settings": {k: v for k, v in cfg.to_dict().items() if k not in ("data", "val", "out", "generator")},
        "epochs": len(history),
        "best_epoch": best_epoch,
        "seconds": round(sum(r["seconds"] for r in history), 1),
        "val_metrics": {k: v for k, v in best.items() if k.startswith("val_")},
    }
    meta = {"scale": cfg.scale, "normalize": {"lo_pct": cfg.lo_pct, "hi_pct": cfg.hi_pct}, "stages": stages + [stage]}
    modelfile.save_model(path, G, cfg.generator, meta)  # folds spectral norm into the saved weights


def _gather_rng_states(rng: np.random.Generator, world: int) -> list[str]:
    """Every rank's crop-sampler state, so that a resumed run draws the crops it would have drawn."""
    state = json.dumps(rng.bit_generator.state)
    if world == 1:
        return [state]
    gathered = [None] * world
    dist.all_gather_object(gathered, state)
    return gathered


def _save_checkpoint(path, G, D, opt_g, opt_d, epoch, history, best_psnr, best_epoch, stages, rng_states, cfg) -> None:
    state = {
        "generator": G.state_dict(),
        "discriminator": D.state_dict() if D is not None else {},
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict() if opt_d is not None else {},
        "epoch": epoch,
        "history": history,
        "best_psnr": best_psnr,
        "best_epoch": best_epoch,
        "stages": stages,
        "rng": rng_states,
        "torch_rng": torch.get_rng_state(),
        "config": json.dumps(cfg.to_dict()),
    }
    with io.atomic_write(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, device) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from; start the run without --resume")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a damaged checkpoint is the user's to replace, not a crash
        raise ModelFileError(f"{path}: cannot be read as a ficli checkpoint ({str(exc).splitlines()[0][:120]})") from None


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The settings a run was started with, from its checkpoint (for --resume)."""
    path = Path(run_dir) / CHECKPOINT
    state = _load_checkpoint(path, "cpu")
    return TrainConfig.from_dict(json.loads(state["config"]))


# ------------------------------------------------------------------------------------- outputs


def _write_metrics(out: Path, history: list[dict]) -> None:
    buf = StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
    writer.writeheader()
    writer.writerows(history)
    io.write_text(out / "metrics.csv", buf.getvalue())


def plot_curves(out: Path) -> None:
    """curves.png: training losses and validation PSNR (model vs bicubic) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in rows[0]:
        if key.startswith("loss_") and key != "loss_total":
            ax1.plot(epochs, [float(r[key]) for r in rows], label=key[5:])
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_title("training losses (unweighted terms)")
    ax1.legend(fontsize=7)
    ax2.plot(epochs, [float(r["val_psnr"]) for r in rows], "o-", label="model")
    ax2.plot(epochs, [float(r["val_bicubic_psnr"]) for r in rows], "--", label="bicubic")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("PSNR (dB, normalised scale)")
    ax2.set_title("validation")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    with io.atomic_write(out / "curves.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
