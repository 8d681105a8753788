"""Training data: images held in memory, random crops and their degraded inputs, validation pairs.

Images are read once, each mapped by its own percentiles as enhancement maps its input
(`load_images`). Pairs are made in batches by `make_batch(images, cfg, rng, degrader)`: crops from
the images in memory (`crop_batch`), then a degrader `(hr (B, C, S, S), cfg, rng) -> (lr, cond,
target)`, by default `degrade_batch` (the settings of TrainConfig). `target` is what the output is
scored against (hr, or with --noise-kept hr with its noise). `cond` is None, or a per-sample tensor
(e.g. a blur scale s, shape (B,)) that the step hands to the generator as `G(lr, cond)`: the hook
for a degradation family sampled per batch and a generator conditioned on it. Validation pairs are
noise-free ×scale degradations of centre crops (`validation_pairs`).
"""

from __future__ import annotations

import dataclasses
import glob
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ficli.image import io
from ficli.image.degrade import PSF_S_PER_SIGMA, Degradation, DegradationRanges, bicubic_resize, degrade
from ficli.image.degrade import degrade_batch as family_batch
from ficli.errors import ConfigError, InputError
from ficli.image.intensity import normalize, percentile_range
from ficli.training.runs import CONDITIONED, TrainConfig

# SSIM's Gaussian window is 11×11: validation images (after --val-size) must be at least that.
MIN_VAL_SIDE = 11
# The blur scales and kernels of the family's fixed validation pairs (image i: VAL_SCALES[i % 4],
# kernel KERNELS[(i + i // 4) % 4]); s = 1 is measured apart, as the identity PSNR.
VAL_SCALES = (1.5, 2.0, 3.0, 4.0)


def load_images(folders: list[str] | tuple[str, ...], channels: int, role: str, min_side: int = 1) -> list[np.ndarray]:
    """Every image under `folders` (recursively) as float32 (H, W, C) normalised to its percentiles.

    An entry may also be an image file, a quoted glob pattern or `@list.txt` (one path or pattern a
    line, as `enhance` takes them), e.g. a split that holds some sources of a folder out.

    RGB is turned into luminance for a 1-channel model. Each image is mapped by its own 0.1/99.9
    percentiles (docs/DESIGN.md section 4) so training sees what enhancement will feed in.
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
    """U(D(X)) of docs/DESIGN.md section 1 for a (B, C, H, W) batch: the project's one bicubic, down by
    `scale` and back, sides reflect-padded to a multiple of `scale` and cropped back."""
    if scale == 1:
        return x.clone()
    h, w = x.shape[-2:]
    ph, pw = -h % scale, -w % scale
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
    H, W = x.shape[-2:]
    return bicubic_resize(bicubic_resize(x, (H // scale, W // scale)), (H, W))[..., :h, :w]


def degrade_batch(hr: torch.Tensor, cfg: TrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, None, torch.Tensor]:
    """(lr, cond, target) for a (B, C, H, W) batch of HR crops: Y = U(D(noise(blur(X)))) of docs/DESIGN.md section 1,
    each crop with its own PSF sigma and noise levels drawn from TrainConfig's ranges.

    The default degrader of `make_batch`; `cond` is None (the generator is not told how its input
    was made) and the target is `hr`. The same per-crop operations as `degrade` (the per-crop reference), in batch.
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
    return shrink_enlarge_batch(x, cfg.scale), None, hr


FAMILY = DegradationRanges()
# --degradations chain: the family plus the acquisition chain users' files come from (issue 24): a
# quarter of the blurred crops a PSF at the native grid (no resampling), shot noise down to 15
# photons, and 60 % of all crops rounded to 20-4095 grey levels, as 8-, 12- and 16-bit files with
# narrow ranges hold them (half of those rounded on the small grid, as a camera does before an
# enlargement). docs/DEGRADATIONS.md.
CHAIN = DegradationRanges(native_p=0.25, quantize_p=0.6, poisson_peak=(15.0, 3000.0), poisson_p=0.6)
# --degradations resampling: the family's kernels and s alone, without a PSF and without noise (issue 24,
# round 3): from the default's weights it harms held-out sources less at s = 2 (models/MODEL_CARD.md).
RESAMPLING = DegradationRanges(psf_sigma_max=0.0, poisson_p=0.0, read_p=0.0)
# --degradations noisy-resampling: the family's kernels, s and Poisson-Gaussian noise, without a PSF
# (issue 24, round 5): a model fine-tuned on resampling without noise sharpens shot noise as if it
# were blurred detail (training/pil-only/README.md).
NOISY_RESAMPLING = DegradationRanges(psf_sigma_max=0.0)
# --degradations video: the resampling degradations with half of the blurred crops coded as 8-bit
# H.264 frames at CRF 15-30 (issue 24 item 2: the frames of ficli video are coded).
VIDEO = dataclasses.replace(RESAMPLING, h264_p=0.5)
# --degradations native: every blurred crop a Gaussian PSF at the native grid (σ = s / 2.4, no
# resampling, no noise): a deconvolution network, the reference for the default's native-PSF cells
# (issue 24 item 3: told the true degradation, how far is the default from a model of that one?).
NATIVE = dataclasses.replace(RESAMPLING, native_p=1.0)
RANGES = {"family": FAMILY, "chain": CHAIN, "resampling": RESAMPLING, "noisy-resampling": NOISY_RESAMPLING, "video": VIDEO,
          "native": NATIVE}


def family_degrader(hr: torch.Tensor, cfg: TrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lr, s, target) for a (B, C, H, W) batch of HR crops, each drawn from the degradation family
    (`degrade.DegradationRanges` defaults; `CHAIN` for --degradations chain) with its own kernel,
    s, PSF and noise; s (B,) goes to the generator as its condition; target is `hr`, or with
    --noise-kept `hr` plus each crop's noise as degraded."""
    return family_batch(hr, family_ranges(cfg), rng)


def family_ranges(cfg: TrainConfig) -> DegradationRanges:
    """The ranges of a conditioned --degradations, with the run's --kernels, --told-over, --noise-kept
    and --noise-kept-peak."""
    return dataclasses.replace(RANGES[cfg.degradations], kernels=tuple(cfg.kernels), told_over=cfg.told_over,
                               noise_kept=cfg.noise_kept, noise_kept_peak=cfg.noise_kept_peak, scale_min=cfg.scale_min)


def degrader_for(cfg: TrainConfig) -> "Degrader":
    """The degrader of the run's --degradations."""
    return family_degrader if cfg.degradations in CONDITIONED else degrade_batch


def crop_margin(cfg: TrainConfig) -> int:
    """Pixels degraded around each crop and cut off after, so that its border is degraded like its
    interior: the reach of the shrink and enlarge kernels (2 px of the small image each side) plus
    three PSF sigmas."""
    if cfg.degradations in CONDITIONED:
        ranges = family_ranges(cfg)
        sigma = max(ranges.psf_sigma_max, ranges.scale_max / PSF_S_PER_SIGMA if ranges.native_p else 0.0)
        return int(math.ceil(2 * ranges.scale_max + 3 * sigma))
    return cfg.scale


# (hr, cfg, rng) -> (lr, cond, target): cond None or per sample; target hr, or another (--noise-kept).
Degrader = Callable[[torch.Tensor, TrainConfig, np.random.Generator], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]


def make_batch(images: list[np.ndarray], cfg: TrainConfig, rng: np.random.Generator,
               degrader: Degrader = degrade_batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(lr, hr, cond): a training batch, lr and hr (B, C, crop, crop) float32 on the CPU.

    Crops of crop + 2·scale pixels are degraded whole and their margin cut off, so that a crop's
    border is degraded as its interior is. `degrader` makes the inputs (see `degrade_batch`); its
    `cond` (None or a per-sample tensor) goes to the generator with them; the hr returned is the
    degrader's target (the crops, or with --noise-kept the crops with their noise).
    """
    margin = crop_margin(cfg)
    hr = torch.from_numpy(crop_batch(images, cfg.batch, cfg.crop + 2 * margin, rng))
    lr, cond, hr = degrader(hr, cfg, rng)
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
    blur scale and kernel per image (VAL_SCALES and the run's --kernels in turn), s the one it was made with;
    native: a PSF at the native grid of σ = s / 2.4 for those scales.
    """
    if 0 < cfg.val_size < MIN_VAL_SIDE:
        raise ConfigError(f"--val-size {cfg.val_size}: use 0 (whole images) or at least {MIN_VAL_SIDE} (the SSIM window)")
    images = load_images([cfg.val], cfg.generator.channels, "validation", min_side=MIN_VAL_SIDE)
    if cfg.val_limit:
        images = images[: cfg.val_limit]
    scales = [v for v in VAL_SCALES if v > cfg.scale_min]  # --scale-min: the scales it trains on (4 is always one)
    pairs = []
    for i, img in enumerate(images):
        if cfg.val_size:
            h, w = img.shape[:2]
            top, left = max(0, (h - cfg.val_size) // 2), max(0, (w - cfg.val_size) // 2)
            img = img[top : top + cfg.val_size, left : left + cfg.val_size]
        if cfg.degradations in CONDITIONED:
            scale = scales[i % len(scales)]
            kernels = tuple(cfg.kernels)
            settings = (Degradation(scale=1.0, psf_sigma=scale / PSF_S_PER_SIGMA) if cfg.degradations == "native"
                        else Degradation(scale=scale, kernel=kernels[(i + i // len(scales)) % len(kernels)]))
        else:
            scale, settings = None, Degradation(scale=cfg.scale)
        lr = degrade(img[..., 0] if img.shape[2] == 1 else img, settings, np.random.default_rng(0))
        lr = lr.reshape(img.shape)
        pairs.append((lr.transpose(2, 0, 1).copy(), img.transpose(2, 0, 1).copy(), scale))
    return pairs
