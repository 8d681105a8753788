"""Two-stage FI-GAN training (DESIGN sections 1-3), readable top to bottom.

Stage 1 ("pretrain") on natural images and stage 2 ("finetune") on fluorescence images differ only in
their presets (loss weights, learning rate, batch, crop). Each epoch: `steps` batches of random HR
crops whose LR inputs are made on the fly with the project's own degradation, then validation through
the tiled engine on whole (or centre-cropped) validation images; `best` keeps the highest val PSNR,
`last` the latest epoch; training stops early after `patience` epochs without improvement.

Everything a run needs to continue exactly lives in RUN_DIR/checkpoint.pt (models, optimizers, epoch,
history, RNG states, settings), written atomically at the end of each epoch; `resume` continues from
it. The model files carry enough of it ("training" in their metadata: step, epoch, learning-rate
schedule position, data-order state, data fingerprint, training seconds and machines) for
`continue_from` to go on from a weights file alone, on another machine or in another folder: the
optimizers start afresh, the step count, schedule and data order continue.
DistributedDataParallel switches on when `torchrun` sets WORLD_SIZE: each rank draws its own
crops, gradients are averaged, rank 0 validates, logs and writes.

Pairs are made in batches by `make_batch(images, cfg, rng, degrader)`: crops from the images held
in memory (`crop_batch`), then a degrader `(hr (B, C, S, S), cfg, rng) -> (lr, cond)`, by default
`degrade_batch` (the settings of TrainConfig). `cond` is None, or a per-sample tensor (e.g. a blur
scale s, shape (B,)) that the step hands to the generator as `G(lr, cond)`: the hook for a
degradation family sampled per batch and a generator conditioned on it.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import datetime
import errno
import functools
import glob
import json
import math
import os
import platform
import time
from io import StringIO
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ficli import io, modelfile
from ficli.degrade import KERNELS, Degradation, DegradationRanges, bicubic_resize, degrade
from ficli.degrade import degrade_batch as family_batch
from ficli.engine import TileConfig, normalize, percentile_range, resolve_device, run_tiled
from ficli.errors import ConfigError, FicliError, InputError, ModelFileError, OutputError
from ficli.losses import FINETUNE, PRETRAIN, LossWeights, discriminator_loss, generator_loss, perceptual_from_env
from ficli.metrics import psnr, ssim
from ficli.nets import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

CHECKPOINT = "checkpoint.pt"
# Everything a run writes into RUN_DIR (each atomically).
RUN_FILES = (CHECKPOINT, "last.safetensors", "best.safetensors", "metrics.csv", "curves.png", "summary.json")
# SSIM's Gaussian window is 11×11: validation images (after --val-size) must be at least that.
MIN_VAL_SIDE = 11
# The parts of a training step whose time is logged (metrics.csv "share_*" columns), in order.
PARTS = ("data", "g_fwd", "critic", "loss", "g_bwd", "val")
LR_SCHEDULES = ("constant", "cosine")
# "paper": every input made by the paper's fixed ×scale PIL bicubic (optional PSF blur and noise from
# the TrainConfig ranges); "family": each crop drawn from the family of docs/DEGRADATIONS.md (four
# kernels, continuous s in [1, 4], PSF, Poisson-Gaussian noise, some crops left sharp) and the
# generator told its s (GeneratorConfig.scale_input).
DEGRADATIONS = ("paper", "family")
# The blur scales and kernels of the family's fixed validation pairs (image i: VAL_SCALES[i % 4],
# kernel KERNELS[(i + i // 4) % 4]); s = 1 is measured apart, as the identity PSNR.
VAL_SCALES = (1.5, 2.0, 3.0, 4.0)


class DivergedError(FicliError):
    """A loss or the weights became NaN or infinite: the run stops, nothing non-finite is saved."""


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
    lr_schedule: str = "constant"  # "constant" or "cosine" (to 0 at the last step of --epochs)
    warmup_steps: int = 0  # linear warm-up of the learning rate over this many steps
    ema: float = 0.0  # decay of the generator's weight average used for validation and export; 0 = off
    channels_last: bool = True  # channels-last tensors in training: 1.39× per step at crop 64 on AMD EPYC (docs/BENCHMARKS.md)
    compile: bool = False  # torch.compile the generator and critic for training
    degradations: str = "paper"  # how inputs are made: one of DEGRADATIONS

    def __post_init__(self):
        if self.degradations not in DEGRADATIONS:
            raise ConfigError(f"--degradations {self.degradations!r}: use {' or '.join(DEGRADATIONS)}")
        if self.generator.scale_input != (self.degradations == "family"):
            raise ConfigError("a generator conditioned on the blur scale trains with --degradations family, and only such a one")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"--lr-schedule {self.lr_schedule!r}: use {' or '.join(LR_SCHEDULES)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr {self.lr}: the learning rate must be a finite number above 0")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema {self.ema}: use 0 (off) or a decay in [0, 1), e.g. 0.999")
        if self.warmup_steps < 0 or self.batch < 1 or self.crop < 1 or self.steps < 1:
            raise ConfigError("--warmup-steps must be 0 or more; --batch, --crop and --steps 1 or more")

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
        """The config `to_dict` gave; settings added since (absent in older runs) take their defaults."""
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise ConfigError(f"the run's settings hold {sorted(unknown)}, unknown to this ficli: update ficli")
        d["data"] = tuple(d["data"])
        d["weights"] = LossWeights(**d["weights"])
        d["generator"] = GeneratorConfig(**d["generator"])
        return TrainConfig(**d)


# ------------------------------------------------------------------------------------------ data


def load_images(folders: list[str] | tuple[str, ...], channels: int, role: str, min_side: int = 1) -> list[np.ndarray]:
    """Every image under `folders` (recursively) as float32 (H, W, C) normalised to its percentiles.

    An entry may also be an image file, a quoted glob pattern or `@list.txt` (one path or pattern a
    line, as `enhance` takes them), e.g. a split that holds some sources of a folder out.

    RGB is turned into luminance for a 1-channel model. Each image is mapped by its own 0.1/99.9
    percentiles (DESIGN "Intensity normalisation") so training sees what enhancement will feed in.
    Any image that cannot be used (unreadable, NaN or infinite values, a side below `min_side`)
    stops the run with its name: a data set is fixed before training, not silently thinned.
    """
    items = []
    for folder in folders:
        if Path(folder).is_dir():
            try:
                items += io.collect_inputs([folder], recursive=True)
            except InputError:
                raise InputError(f"{folder}: the {role} folder holds no images ({', '.join(io.IMAGE_SUFFIXES)})") from None
        elif str(folder).startswith("@") or glob.has_magic(str(folder)) or Path(folder).is_file():
            items += io.collect_inputs([folder], recursive=True)  # a list file, a pattern or an image: their own messages
        else:
            raise InputError(f"{folder}: {role} folder not found")
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


def data_fingerprint(folders) -> list[dict]:
    """Per training folder, in order: {"folder": as given, "files": {path inside it: size in bytes}}.

    What a run records of its data (names and sizes, not contents: cheap on every start), so that a
    resumed or moved run can tell that its data changed. Hidden and non-image files are not counted.
    """
    out = []
    for folder in folders:
        try:
            items = io.collect_inputs([folder], recursive=True)
        except InputError:
            items = []
        out.append({"folder": str(folder), "files": {item.rel.as_posix(): item.path.stat().st_size for item in items}})
    return out


def data_differences(recorded: list[dict], current: list[dict]) -> str:
    """'' when the data matches what the run recorded, else what differs (for the error message)."""
    if len(recorded) != len(current):
        return f"the run was trained on {len(recorded)} data folder(s), {len(current)} given"
    notes = []
    for old, new in zip(recorded, current):
        a, b = old["files"], new["files"]
        added, removed = sorted(set(b) - set(a)), sorted(set(a) - set(b))
        changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        parts = [f"{len(names)} file(s) {what} ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})"
                 for what, names in (("added", added), ("missing", removed), ("changed size", changed)) if names]
        if parts:
            notes.append(f"{new['folder']} (recorded as {old['folder']}): " + "; ".join(parts))
    return "; ".join(notes)


def crop_batch(images: list[np.ndarray], count: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """(count, C, side, side) float32: random crops of the in-memory images, each rotated by a
    random multiple of 90°, flipped with probability ½ and scaled by a brightness in [0.7, 1].

    Small images are reflect-padded up to `side`. The loop runs over crops (array views), never
    over pixels: the copy into the batch is one strided copy per crop.
    """
    channels = images[0].shape[2]
    out = np.empty((count, channels, side, side), np.float32)
    picks = rng.integers(len(images), size=count)
    rotations = rng.integers(4, size=count)
    flips = rng.random(count) < 0.5
    gains = rng.uniform(0.7, 1.0, size=count).astype(np.float32)
    for i in range(count):
        img = images[picks[i]]
        h, w = img.shape[:2]
        if h < side or w < side:
            img = np.pad(img, ((0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
            h, w = img.shape[:2]
        y0, x0 = rng.integers(h - side + 1), rng.integers(w - side + 1)
        patch = np.rot90(img[y0 : y0 + side, x0 : x0 + side], rotations[i])
        if flips[i]:
            patch = patch[:, ::-1]
        np.multiply(patch.transpose(2, 0, 1), gains[i], out=out[i])
    return out


def gaussian_blur_batch(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Blur each image of (B, C, H, W) with its own Gaussian PSF, standard deviation sigmas[b] pixels
    (0 = none); separable, radius ⌈4σ⌉ as OpenCV takes it, borders mirrored."""
    b, c, h, w = x.shape
    radius = int(math.ceil(4 * float(sigmas.max())))
    if radius == 0:
        return x
    radius = min(radius, h - 1, w - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    safe = sigmas.clamp_min(1e-6)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / safe) ** 2)
    kernel = torch.where(sigmas[:, None] > 0, kernel, (offsets[None] == 0).float())
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0).to(x.dtype)  # (B·C, 2r+1)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel[:, None, None, :], groups=b * c)
    y = F.conv2d(y, kernel[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def shrink_enlarge_batch(x: torch.Tensor, scale: int) -> torch.Tensor:
    """U(D(X)) of DESIGN section 1 for a (B, C, H, W) batch: the project's one bicubic, down by
    `scale` and back, sides reflect-padded to a multiple of `scale` and cropped back."""
    if scale == 1:
        return x.clone()
    h, w = x.shape[-2:]
    ph, pw = -h % scale, -w % scale
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
    H, W = x.shape[-2:]
    return bicubic_resize(bicubic_resize(x, (H // scale, W // scale)), (H, W))[..., :h, :w]


def degrade_batch(hr: torch.Tensor, cfg: "TrainConfig", rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(lr, cond) for a (B, C, H, W) batch of HR crops: Y = U(D(noise(blur(X)))) of DESIGN section 1,
    each crop with its own PSF sigma and noise levels drawn from TrainConfig's ranges.

    The default degrader of `make_batch`; `cond` is None (the generator is not told how its input
    was made). The same per-crop operations as `degrade` (the per-crop reference), in batch.
    """
    count = hr.shape[0]
    x = hr
    if cfg.psf_sigma_max > 0:
        x = gaussian_blur_batch(x, torch.from_numpy(rng.uniform(0, cfg.psf_sigma_max, count)).float())
    top = x.amax(dim=(1, 2, 3)).clamp_min(0)
    lit = (top > 0).float()[:, None, None, None]
    top4 = top.clamp_min(1e-12)[:, None, None, None]
    if cfg.poisson_peak_min > 0:
        peaks = np.exp(rng.uniform(math.log(cfg.poisson_peak_min), math.log(10 * cfg.poisson_peak_min), count))
        peaks = torch.from_numpy(peaks).float()[:, None, None, None]
        photons = x.clamp_min(0) / top4 * peaks
        noisy = torch.from_numpy(rng.poisson(photons.numpy()).astype(np.float32)) * (top4 / peaks)
        x = lit * noisy + (1 - lit) * x
    if cfg.gaussian_sigma_max > 0:
        sigmas = torch.from_numpy(rng.uniform(0, cfg.gaussian_sigma_max, count)).float()[:, None, None, None]
        x = x + lit * torch.from_numpy(rng.standard_normal(tuple(x.shape), dtype=np.float32)) * sigmas * top4
    return shrink_enlarge_batch(x, cfg.scale), None


FAMILY = DegradationRanges()


def family_degrader(hr: torch.Tensor, cfg: "TrainConfig", rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(lr, s) for a (B, C, H, W) batch of HR crops, each drawn from the degradation family
    (`degrade.DegradationRanges` defaults) with its own kernel, s, PSF and noise; s (B,) goes to the
    generator as its condition."""
    return family_batch(hr, FAMILY, rng)


def degrader_for(cfg: "TrainConfig") -> "Degrader":
    """The degrader of the run's --degradations."""
    return family_degrader if cfg.degradations == "family" else degrade_batch


def crop_margin(cfg: "TrainConfig") -> int:
    """Pixels degraded around each crop and cut off after, so that its border is degraded like its
    interior: the reach of the shrink and enlarge kernels (2 px of the small image each side) plus
    three PSF sigmas."""
    if cfg.degradations == "family":
        return int(math.ceil(2 * FAMILY.scale_max + 3 * FAMILY.psf_sigma_max))
    return cfg.scale


Degrader = Callable[[torch.Tensor, "TrainConfig", np.random.Generator], tuple[torch.Tensor, "torch.Tensor | None"]]


def make_batch(images: list[np.ndarray], cfg: "TrainConfig", rng: np.random.Generator,
               degrader: Degrader = degrade_batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(lr, hr, cond): a training batch, lr and hr (B, C, crop, crop) float32 on the CPU.

    Crops of crop + 2·scale pixels are degraded whole and their margin cut off, so that a crop's
    border is degraded as its interior is. `degrader` makes the inputs (see `degrade_batch`); its
    `cond` (None or a per-sample tensor) goes to the generator with them.
    """
    margin = crop_margin(cfg)
    hr = torch.from_numpy(crop_batch(images, cfg.batch, cfg.crop + 2 * margin, rng))
    lr, cond = degrader(hr, cfg, rng)
    cut = (slice(None), slice(None), slice(margin, margin + cfg.crop), slice(margin, margin + cfg.crop))
    return lr[cut].contiguous(), hr[cut].contiguous(), cond


def sample_batch(images: list[np.ndarray], cfg: TrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(lr, hr) tensors (B, C, crop, crop), one crop at a time through `degrade`.

    The per-crop reference that `make_batch` replaced (the bench times both; tests compare them).
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


def validation_pairs(cfg: TrainConfig) -> list[tuple[np.ndarray, np.ndarray, float | None]]:
    """(lr, hr, s) of the validation images (C, H, W), centre-cropped to `val_size`, noise-free.

    --degradations paper: ×scale PIL bicubic, s None (the generator is not told). family: a fixed
    blur scale and kernel per image (VAL_SCALES and KERNELS in turn), s the one it was made with.
    """
    if 0 < cfg.val_size < MIN_VAL_SIDE:
        raise ConfigError(f"--val-size {cfg.val_size}: use 0 (whole images) or at least {MIN_VAL_SIDE} (the SSIM window)")
    images = load_images([cfg.val], cfg.generator.channels, "validation", min_side=MIN_VAL_SIDE)
    if cfg.val_limit:
        images = images[: cfg.val_limit]
    pairs = []
    for i, img in enumerate(images):
        if cfg.val_size:
            h, w = img.shape[:2]
            top, left = max(0, (h - cfg.val_size) // 2), max(0, (w - cfg.val_size) // 2)
            img = img[top : top + cfg.val_size, left : left + cfg.val_size]
        if cfg.degradations == "family":
            scale = VAL_SCALES[i % len(VAL_SCALES)]
            settings = Degradation(scale=scale, kernel=KERNELS[(i + i // len(VAL_SCALES)) % len(KERNELS)])
        else:
            scale, settings = None, Degradation(scale=cfg.scale)
        lr = degrade(img[..., 0] if img.shape[2] == 1 else img, settings, np.random.default_rng(0))
        lr = lr.reshape(img.shape)
        pairs.append((lr.transpose(2, 0, 1).copy(), img.transpose(2, 0, 1).copy(), scale))
    return pairs


def validate(generator: torch.nn.Module, pairs, tile: TileConfig) -> dict[str, float]:
    """Mean PSNR/SSIM of G and of the bicubic input against HR, on the normalised [0, 1] scale.

    A generator conditioned on the blur scale gets each pair's s, and is also run on the sharp HR
    images told s = 1: `identity_psnr` is PSNR(G(X), X), how little it changes a sharp image.
    """
    was_training = generator.training
    generator.eval()
    scores = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
    for lr, hr, scale in pairs:
        sr = run_tiled(generator if scale is None else functools.partial(generator, scale=scale), lr, tile)
        for name, img in (("", sr), ("bicubic_", lr)):
            a, b = np.moveaxis(img, 0, -1), np.moveaxis(hr, 0, -1)
            scores[name + "psnr"].append(psnr(a, b))
            scores[name + "ssim"].append(ssim(a, b))
        if scale is not None:
            same = run_tiled(functools.partial(generator, scale=1.0), hr, tile)
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
        self._sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

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


def generate(G, lr: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """G's output for a batch: G(lr), or G(lr, cond) when the degrader gave a condition."""
    return G(lr) if cond is None else G(lr, cond)


def train_step(G, D, opt_g, opt_d, lr, hr, cond, weights: LossWeights, perceptual, autocast, times: PartTimes) -> dict[str, float]:
    """One optimisation step of the critic (if any) and the generator; the unweighted loss terms."""
    with times.part("g_fwd"), autocast:
        pred = generate(G, lr, cond)
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


def _kept(out: Path, saved_epoch: int) -> str:
    return f"{out} keeps the models of epoch {saved_epoch}, which are finite" if saved_epoch else "nothing was saved"


def machine() -> dict:
    """What a session ran on: CPU model, cores, torch version (recorded in model files)."""
    cpu = platform.processor()
    if not cpu or cpu == platform.machine():
        try:
            lines = Path("/proc/cpuinfo").read_text().splitlines()
            cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        except (OSError, StopIteration):
            cpu = cpu or platform.machine()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": str(torch.__version__), "gpu": gpu, "host": platform.node()}


def _update_ema(ema: torch.nn.Module, G: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), G.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(ema.buffers(), G.buffers()):  # spectral norm's power-iteration vectors
            e.copy_(b)


def check_new_run_folder(out: Path, overwrite: bool) -> None:
    """Refuse to start a new run where one was (a checkpoint or trained models), unless `overwrite`."""
    if overwrite:
        return
    if (out / CHECKPOINT).exists():
        raise OutputError(f"{out}: holds a run already; continue it with --resume {out}, choose another --out, or give --overwrite to replace it")
    models = [name for name in ("best.safetensors", "last.safetensors") if (out / name).exists()]
    if models:
        raise OutputError(
            f"{out}: holds trained models ({', '.join(models)}) but no {CHECKPOINT}, which --resume needs; "
            f"continue from a model file with --continue-from {out / models[-1]} --out NEWDIR, choose another --out, "
            "or give --overwrite to replace them"
        )


def train(cfg: TrainConfig, progress: Progress = Progress(), resume: bool = False, *,
          continue_from: str | None = None, overwrite: bool = False, degrader: Degrader | None = None) -> dict:
    """Run (or continue) a training run; returns the summary written to RUN_DIR/summary.json.

    resume: continue RUN_DIR (= cfg.out) from its checkpoint.pt, exactly. continue_from: start
    cfg.out from a model file's training state (step, schedule, data order, history), with fresh
    optimizers (and a fresh critic). overwrite: replace a run or models already in cfg.out.
    degrader: makes each batch's inputs (see `make_batch`); by default the one of --degradations.
    """
    rank, world = _init_distributed()
    out = Path(cfg.out)
    check_run_folder(cfg)
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
    rng = np.random.default_rng([cfg.seed, rank])
    history: list[dict] = []
    start_epoch, best_psnr, best_epoch, stages, sessions, ema_state = 1, -math.inf, 0, [], [], None

    if resume:
        state = _load_checkpoint(out / CHECKPOINT, device)
        _check_data(state.get("data_fingerprint"), fingerprint, f"{out / CHECKPOINT}", out)
        try:
            G.load_state_dict(state["generator"])
            opt_g.load_state_dict(state["opt_g"])
            if D is not None:
                D.load_state_dict(state["discriminator"])
                opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ModelFileError(
                f"{out / CHECKPOINT}: its models do not fit the run's settings ({str(exc).splitlines()[0][:160]}); it was "
                f"written for another architecture or by another ficli: continue from {out / 'last.safetensors'} with "
                "--continue-from FILE --out NEWDIR, or start a new run"
            ) from None
        history, best_psnr, best_epoch = state["history"], state["best_psnr"], state["best_epoch"]
        stages, sessions, ema_state = state["stages"], state.get("sessions", []), state.get("ema")
        start_epoch = state["epoch"] + 1
        rng.bit_generator.state = json.loads(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        torch.set_rng_state(state["torch_rng"])
    elif continue_from:
        saved = read_training_state(continue_from)
        _check_data(saved.get("data"), fingerprint, continue_from, None)
        stages = _init_from(G, continue_from, device)[:-1]
        history, best_psnr, best_epoch = saved["history"], saved["best_psnr"], saved["best_epoch"]
        sessions = saved.get("sessions", [])
        start_epoch = saved["epoch"] + 1
        states = saved["rng"]
        rng.bit_generator.state = json.loads(states[rank] if rank < len(states) else states[0])
        if rank == 0 and progress.on_notice:
            critic = " and a new critic" if D is not None else ""
            progress.on_notice(f"continuing from {continue_from} at epoch {start_epoch} (step {saved['step']}) with fresh optimizer state{critic}")
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
    else:
        if cfg.init:
            stages = _init_from(G, cfg.init, device)
        if rank == 0:
            if overwrite:
                for name in RUN_FILES:
                    (out / name).unlink(missing_ok=True)
            out.mkdir(parents=True, exist_ok=True)

    ema = None
    if cfg.ema:
        ema = copy.deepcopy(G).eval().requires_grad_(False)
        if ema_state is not None:
            ema.load_state_dict(ema_state)
    if cfg.channels_last:
        for model in (G, D, ema):
            if model is not None:
                model.to(memory_format=torch.channels_last)
    g_train = DistributedDataParallel(G) if world > 1 else G
    d_train = DistributedDataParallel(D) if world > 1 and D is not None else D
    if cfg.compile:
        g_train = torch.compile(g_train)
        d_train = torch.compile(d_train) if d_train is not None else None
    autocast = _autocast(device)
    tile = TileConfig(tile=cfg.tile, device=str(device))
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    total_steps = cfg.epochs * cfg.steps
    session = {"machine": machine(), "started": datetime.datetime.now().isoformat(timespec="seconds"),
               "first_epoch": start_epoch, "last_epoch": start_epoch - 1, "seconds": 0.0, "cpu_seconds": 0.0}
    sessions = [*sessions, session]
    seconds_before = history[-1].get("train_seconds", sum(r["seconds"] for r in history)) if history else 0.0
    seconds_before = float(seconds_before)
    session_steps = session_seconds = 0.0

    epoch = start_epoch - 1
    saved_epoch = start_epoch - 1
    stale = epoch - best_epoch if best_epoch else 0
    for epoch in range(start_epoch, cfg.epochs + 1):
        if stale >= cfg.patience:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        times = PartTimes(device)
        sums: dict[str, float] = {}
        for step in range(1, cfg.steps + 1):
            global_step = (epoch - 1) * cfg.steps + step
            rate = cfg.lr * lr_factor(global_step - 1, total_steps, cfg.lr_schedule, cfg.warmup_steps)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups if opt is not None else ():
                    group["lr"] = rate
            with times.part("data"):
                lr_batch, hr_batch, cond = make_batch(images, cfg, rng, degrader or degrader_for(cfg))
                lr_batch = lr_batch.to(device, non_blocking=True).contiguous(memory_format=layout)
                hr_batch = hr_batch.to(device, non_blocking=True).contiguous(memory_format=layout)
                cond = cond.to(device) if cond is not None else None
            terms = train_step(g_train, d_train, opt_g, opt_d, lr_batch, hr_batch, cond, cfg.weights, perceptual, autocast, times)
            _check_finite_terms(terms, epoch, step, global_step, cfg, out, saved_epoch)
            if ema is not None:
                with times.part("g_bwd"):
                    _update_ema(ema, G, cfg.ema)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            if rank == 0 and progress.on_step:
                elapsed = session_seconds + time.perf_counter() - t0
                per_step = elapsed / (session_steps + step)
                left = total_steps - global_step
                progress.on_step(epoch, step, cfg.steps, {**terms, "samples_per_s": cfg.batch * world / per_step, "eta_s": left * per_step})
        _check_finite_weights(G, epoch, cfg, out, saved_epoch)
        row = {"epoch": epoch, "step": epoch * cfg.steps, "lr": rate, **{f"loss_{k}": v / cfg.steps for k, v in sums.items()}}
        rng_states = _gather_rng_states(rng, world)
        if rank == 0:
            with times.part("val"):
                scores = validate(ema if ema is not None else G, pairs, tile)
            row.update({f"val_{k}": v for k, v in scores.items()})
            seconds = time.perf_counter() - t0
            session_steps += cfg.steps
            session_seconds += seconds
            session["seconds"] = round(session["seconds"] + seconds, 1)
            session["cpu_seconds"] = round(session["cpu_seconds"] + time.process_time() - c0, 1)
            session["last_epoch"] = epoch
            row["seconds"] = seconds
            row["cpu_seconds"] = time.process_time() - c0
            row["train_seconds"] = seconds_before + session_seconds
            row["samples_per_s"] = cfg.batch * world * cfg.steps / seconds
            row["steps_per_s"] = cfg.steps / seconds
            row.update({f"share_{k}": v / seconds for k, v in times.seconds.items()})
            row["eta_s"] = (cfg.epochs - epoch) * session_seconds / max(1, epoch - start_epoch + 1)
            if not math.isfinite(row["val_psnr"]):
                raise DivergedError(
                    f"training diverged in epoch {epoch}: validation PSNR is {row['val_psnr']}; {_kept(out, saved_epoch)}. "
                    f"Lower the learning rate (--lr {cfg.lr:g} now; try 10× lower) and start a new run"
                )
            history.append(row)
            improved = row["val_psnr"] > best_psnr
            if improved:
                best_psnr, best_epoch = row["val_psnr"], epoch
            stale = epoch - best_epoch
            export = ema if ema is not None else G
            state = _training_state(cfg, epoch, history, best_psnr, best_epoch, rng_states, sessions, fingerprint)
            _save_checkpoint(out / CHECKPOINT, G, D, opt_g, opt_d, ema, epoch, history, best_psnr, best_epoch, stages,
                             rng_states, cfg, sessions, fingerprint, saved_epoch)
            saved_epoch = epoch
            _export(export, out / "last.safetensors", cfg, history, best_epoch, stages, state)
            if improved:
                _export(export, out / "best.safetensors", cfg, history, best_epoch, stages, state)
            _write_metrics(out, history)
            if progress.on_epoch:
                progress.on_epoch(row)
        if world > 1:
            flag = torch.tensor([stale], device=device)
            dist.broadcast(flag, 0)
            stale = int(flag)
    summary = {
        "epochs_run": epoch, "best_epoch": best_epoch, "best_val_psnr": best_psnr if math.isfinite(best_psnr) else None,
        "train_seconds": round(history[-1].get("train_seconds", 0.0), 1) if history else 0.0, "out": str(out), "rank": rank,
    }
    if rank == 0:
        io.write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
        if history:
            plot_curves(out)
    if world > 1:
        dist.barrier()  # no rank tears the group down while rank 0 is still writing
        dist.destroy_process_group()
    return summary


def _check_data(recorded: list[dict] | None, current: list[dict], source, out: Path | None) -> None:
    """ConfigError naming what differs when the training data is not what the run recorded."""
    if recorded is None:
        return  # a run from before fingerprints were recorded
    differs = data_differences(recorded, current)
    if differs:
        raise ConfigError(
            f"the training data differs from what the run in {source} was trained on: {differs}. Give the run's "
            "data (--data FOLDER... in the recorded order), or start a new run from its weights with --init FILE "
            "(the step count and learning-rate schedule then start again)"
        )


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
    # A model that is not conditioned may start a conditioned run: its head gets a zero-weighted
    # input for the scale map, so the new generator begins as exactly the old one, whatever s.
    widened = not config.scale_input and G.config.scale_input
    if replace(config, scale_input=G.config.scale_input) != G.config:
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


def _training_state(cfg, epoch, history, best_psnr, best_epoch, rng_states, sessions, fingerprint) -> dict:
    """What a model file records so that a run can go on from it alone (`continue_from`)."""
    return {
        "epoch": epoch,
        "step": epoch * cfg.steps,
        "steps_per_epoch": cfg.steps,
        "lr_schedule": {"schedule": cfg.lr_schedule, "warmup_steps": cfg.warmup_steps, "total_steps": cfg.epochs * cfg.steps,
                        "position": epoch * cfg.steps, "lr": cfg.lr},
        "ema": cfg.ema,
        "rng": rng_states,  # the data order: every rank's crop-sampler state after this epoch
        "seed": cfg.seed,
        "train_seconds": round(history[-1]["train_seconds"], 1),
        "sessions": sessions,
        "data": fingerprint,
        "config": cfg.to_dict(),
        "history": history,
        "best_psnr": best_psnr,
        "best_epoch": best_epoch,
    }


def read_training_state(path: str | Path) -> dict:
    """The training state a model file recorded (see `_training_state`); ModelFileError without one."""
    info = modelfile.model_info(path)["info"]
    state = info.get("training")
    if not isinstance(state, dict) or "config" not in state:
        raise ModelFileError(
            f"{path}: holds no training state (an exported model, or one written by an older ficli); "
            "start a new run from its weights with --init instead"
        )
    return state


def read_continue_config(path: str | Path, out: str, **overrides) -> TrainConfig:
    """The settings of the run that wrote model file `path`, moved to `out`; `overrides` (None values
    ignored) may give new data or validation folders, a higher --epochs or another --device."""
    cfg = TrainConfig.from_dict(read_training_state(path)["config"])
    return dataclasses.replace(cfg, out=str(out), **{k: v for k, v in overrides.items() if v is not None})


def _export(G, path: Path, cfg: TrainConfig, history, best_epoch, stages, state: dict | None = None) -> None:
    """Write G as a safe model file (folded spectral norm) with its training story in the metadata."""
    best = next((r for r in history if r["epoch"] == best_epoch), history[-1])
    stage = {
        "stage": cfg.stage,
        "data": list(cfg.data),
        "val": cfg.val,
        "settings": {k: v for k, v in cfg.to_dict().items() if k not in ("data", "val", "out", "generator")},
        "epochs": len(history),
        "best_epoch": best_epoch,
        "seconds": round(history[-1].get("train_seconds", sum(r["seconds"] for r in history)), 1),
        "val_metrics": {k: v for k, v in best.items() if k.startswith("val_")},
    }
    if state is not None:
        stage["machines"] = sorted({f"{s['machine']['cpu']} ({s['machine']['cores']} cores, torch {s['machine']['torch']})"
                                    for s in state["sessions"]})
    meta = {"scale": cfg.scale, "normalize": {"lo_pct": cfg.lo_pct, "hi_pct": cfg.hi_pct}, "stages": stages + [stage]}
    if state is not None:
        meta["training"] = state
    modelfile.save_model(path, G, cfg.generator, meta)  # folds spectral norm into the saved weights


def _gather_rng_states(rng: np.random.Generator, world: int) -> list[str]:
    """Every rank's crop-sampler state, so that a resumed run draws the crops it would have drawn."""
    state = json.dumps(rng.bit_generator.state)
    if world == 1:
        return [state]
    gathered = [None] * world
    dist.all_gather_object(gathered, state)
    return gathered


def _save_checkpoint(path, G, D, opt_g, opt_d, ema, epoch, history, best_psnr, best_epoch, stages, rng_states, cfg,
                     sessions, fingerprint, saved_epoch) -> None:
    """checkpoint.pt, atomically: a failure while torch.save writes (a full disk) leaves the previous
    checkpoint in place and says so."""
    state = {
        "generator": G.state_dict(),
        "discriminator": D.state_dict() if D is not None else {},
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict() if opt_d is not None else {},
        "ema": ema.state_dict() if ema is not None else None,
        "epoch": epoch,
        "history": history,
        "best_psnr": best_psnr,
        "best_epoch": best_epoch,
        "stages": stages,
        "rng": rng_states,
        "torch_rng": torch.get_rng_state(),
        "config": json.dumps(cfg.to_dict()),
        "sessions": sessions,
        "data_fingerprint": fingerprint,
    }
    try:
        with io.atomic_write(path) as tmp, open(tmp, "wb") as fh:
            try:
                torch.save(state, fh)
            except RuntimeError as exc:  # torch's writer wraps the file's OSError (ENOSPC...) in a RuntimeError
                cause = exc.__context__
                if isinstance(cause, OSError):
                    raise cause from None
                raise OSError(errno.EIO, str(exc).splitlines()[0][:120]) from None
    except OutputError as exc:
        kept = (f"the checkpoint of epoch {saved_epoch} is intact: free some space and continue with "
                f"ficli train --resume {path.parent}") if saved_epoch else "nothing to resume yet: free some space and start again"
        raise OutputError(f"{exc}; {kept}") from None


def _load_checkpoint(path: Path, device) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from; start the run without --resume")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a damaged checkpoint is the user's to replace, not a crash
        raise ModelFileError(
            f"{path}: cannot be read as a ficli checkpoint ({str(exc).splitlines()[0][:120]}); it is damaged (cut short?): "
            f"continue from the run's last model file with --continue-from {path.parent / 'last.safetensors'} --out NEWDIR, "
            "or start a new run"
        ) from None


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The settings a run was started with, from its checkpoint (for --resume)."""
    path = Path(run_dir) / CHECKPOINT
    state = _load_checkpoint(path, "cpu")
    try:
        return TrainConfig.from_dict(json.loads(state["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: holds no readable run settings ({exc}); it was not written by ficli train: start a new run") from None


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
