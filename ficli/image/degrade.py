"""The degradation family Y = U(K_s(B_σ(X)) + n) of docs/DESIGN.md section 8, and the project's one bicubic.

`X` is the sharp image as float32 in [0, 1] (any range works: nothing is clipped here). In order:

- `B_σ`: a Gaussian PSF blur of standard deviation σ HR pixels (the paper's Eq. 1; σ = 0: none);
- `K_s`: a downscale by a continuous factor `s` ≥ 1 with one of `KERNELS` (docs/DEGRADATIONS.md says
  why each is there): `pil` (the paper's: PIL's antialiased bicubic, a = −0.5), `cv2` (OpenCV's
  `INTER_CUBIC`, a = −0.75, not antialiased), `area` (OpenCV's `INTER_AREA`: the mean over each
  output pixel's footprint, as a camera pixel integrates), `bilinear` (OpenCV's `INTER_LINEAR`, not
  antialiased: `cv2.resize`'s default);
- `n`: Poisson shot noise at a peak photon count, then Gaussian read noise, added to the small image
  (the camera's pixels are where photons are counted);
- `U`: the project's one bicubic (`bicubic_resize`) back to X's size.

`s = 1` with σ = 0 and no noise is exactly the identity. The small image has `ceil(H / s)` rows; X
is reflect-padded to the nearest whole number of pixels to `rows · s` first and the result is cropped
back after U, so Y and X pair pixel for pixel. For whole-number `s` the padding is to a multiple of
`s` and the factor is exact; otherwise it is `round(rows · s) / rows`, within 0.5 / rows of `s`.
"""

from __future__ import annotations

from collections.abc import Callable

import hashlib
import math
from pathlib import Path
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ficli.image import h264, io
from ficli.errors import ConfigError, InputError

KERNELS = ("pil", "cv2", "area", "bilinear")
SCALE_RANGE = (1.0, 8.0)  # a factor over 8 leaves too few pixels to be a useful simulation
PSF_SIGMA_MAX = 50.0  # HR pixels; wider blurs leave a flat image (and cost minutes)
POISSON_PEAK_MAX = 1e9  # photons; above this shot noise is below float32's resolution
GAUSSIAN_SIGMA_MAX = 1.0  # a fraction of the image maximum: noise as large as the signal
LEVELS_RANGE = (2.0, 1e6)  # grey levels a result may be rounded to (0 = not rounded)
# A Gaussian PSF of σ px at the native grid blurs about as much as a pil shrink-enlarge by 2.4·σ
# (least squares over 20 fluorescence/train crops: σ 0.75 → s 1.8, 1 → 2.4, 1.5 → 3.65, 2 → 4.75;
# docs/DEGRADATIONS.md). `blur_scale` tells the generator that s for such an image.
PSF_S_PER_SIGMA = 2.4

_CV2_FLAGS = {"cv2": cv2.INTER_CUBIC, "area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR}


@dataclass(frozen=True)
class Degradation:
    """Settings of Y = U(K_s(B_σ(X)) + n). Noise levels are relative to the image's own maximum."""

    scale: float = 4.0  # s, the shrink factor of K_s, in [1, 8]
    psf_sigma: float = 0.0  # Gaussian PSF standard deviation in HR pixels, [0, 50]; 0 = none
    poisson_peak: float = 0.0  # photons at the image's maximum, (0, 1e9]; 0 = no shot noise
    gaussian_sigma: float = 0.0  # read-noise standard deviation as a fraction of the image maximum, [0, 1]
    kernel: str = "pil"  # one of KERNELS
    levels: float = 0.0  # grey levels from 0 to the image maximum the result is rounded to (a file's bit depth); 0 = none
    quantize_small: bool = False  # round the small image (a camera's pixels, enlarged after) instead of the result
    h264_crf: int | None = None  # code the result as an 8-bit H.264 frame at this constant rate factor, [0, 51]; None = not coded

    def __post_init__(self):
        check_setting("scale", self.scale, *SCALE_RANGE)
        if self.levels:
            check_setting("levels", self.levels, *LEVELS_RANGE, "0 = none")
        elif self.quantize_small:
            raise ConfigError("--levels-before-enlarge rounds to --levels N grey levels: give --levels too")
        check_setting("psf_sigma", self.psf_sigma, 0.0, PSF_SIGMA_MAX)
        check_setting("poisson_peak", self.poisson_peak, 0.0, POISSON_PEAK_MAX, "0 = none")
        check_setting("gaussian_sigma", self.gaussian_sigma, 0.0, GAUSSIAN_SIGMA_MAX)
        if self.kernel not in KERNELS:
            raise ConfigError(f"--kernel {self.kernel!r}: choose one of {', '.join(KERNELS)}")
        if self.h264_crf is not None:
            check_setting("h264_crf", self.h264_crf, *h264.CRF_RANGE, "x264's constant rate factor: 18 looks lossless, 23 is its default")
            if self.h264_crf != int(self.h264_crf):
                raise ConfigError(f"--h264-crf {self.h264_crf}: give a whole number from 0 to 51")


def check_setting(name: str, value: float, lo: float, hi: float, note: str = "") -> None:
    """Raise ConfigError naming option --NAME and its range unless lo <= value <= hi (finite)."""
    try:
        ok = math.isfinite(float(value)) and lo <= float(value) <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        extra = f"; {note}" if note else ""
        raise ConfigError(f"--{name.replace('_', '-')} {value}: must be a number from {lo:g} to {hi:g}{extra}")


def bicubic_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of (B, C, H, W) to `size` = (h, w): the one resize of the whole project.

    torch's antialiased bicubic, which is PIL's `Image.resize(BICUBIC)` (Keys kernel, a = -0.5, widened
    by the factor when shrinking, as MATLAB's `imresize` does) in both directions and at any ratio of
    sizes: one kernel for the `pil` K_s and for U. (torch's plain bicubic uses a = -0.75 and does not
    reproduce a linear ramp.) No clipping: intensities may overshoot slightly at edges, as bicubic does.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


def resize_array(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`bicubic_resize` for a float (H, W) or (H, W, C) numpy image."""
    t = _to_tensor(image)
    return _from_tensor(bicubic_resize(t, size), image.ndim)


def small_size(side: int, scale: float) -> tuple[int, int]:
    """(rows of the small image, padded side) for one side of X shrunk by `scale` (see the module doc)."""
    n = max(1, math.ceil(side / scale - 1e-6))
    return n, max(side, round(n * scale))


def downscale(image: np.ndarray, size: tuple[int, int], kernel: str = "pil") -> np.ndarray:
    """K: a float32 (H, W) or (H, W, C) image shrunk to `size` = (h, w) with one of `KERNELS`."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    if kernel == "pil":
        return resize_array(image, size)
    small = cv2.resize(image, (size[1], size[0]), interpolation=_CV2_FLAGS[kernel])
    return small.reshape(size + image.shape[2:])


def shrink_enlarge(image: np.ndarray, scale: float, kernel: str = "pil") -> np.ndarray:
    """U(K_s(X)) alone for a float (H, W) or (H, W, C) image (reflect-pad, see the module doc)."""
    return _shrink_noise_enlarge(np.asarray(image, np.float32), scale, kernel, lambda small: small)[0]


def _shrink_noise_enlarge(x: np.ndarray, scale: float, kernel: str, *noises) -> list[np.ndarray]:
    """[U(noise(K_s(pad(X)))) cropped back to X's size for each of `noises`]: one shrink, one
    enlargement per noise; each maps the small image to a noisy copy."""
    if scale == 1:
        return [noise(x.astype(np.float32, copy=True)) for noise in noises]
    h, w = x.shape[:2]
    (nh, H), (nw, W) = small_size(h, scale), small_size(w, scale)
    if H > h or W > w:
        mode = "reflect" if H - h < h and W - w < w else "edge"
        x = np.pad(x, ((0, H - h), (0, W - w)) + ((0, 0),) * (x.ndim - 2), mode=mode)
    small = np.ascontiguousarray(downscale(np.ascontiguousarray(x, np.float32), (nh, nw), kernel))
    return [np.ascontiguousarray(resize_array(noise(small), (H, W))[:h, :w]) for noise in noises]


def add_noise(x: np.ndarray, top: float, poisson_peak: float, gaussian_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson shot noise with `poisson_peak` photons at intensity `top`, then Gaussian read noise of
    standard deviation `gaussian_sigma · top` (either 0: none). float32 in, float32 out."""
    if poisson_peak > 0 and top > 0:
        photons = np.clip(x, 0, None) / top * poisson_peak
        x = (rng.poisson(photons) * (top / poisson_peak)).astype(np.float32)
    if gaussian_sigma > 0 and top > 0:
        x = x + rng.normal(0.0, gaussian_sigma * top, x.shape).astype(np.float32)
    return x


def quantize(x: np.ndarray, top: float, levels: float) -> np.ndarray:
    """x rounded to `levels` grey levels between 0 and `top` (what saving in an integer type whose
    range the image spans `levels` times does); levels 0: x unchanged."""
    if levels <= 0 or top <= 0:
        return x
    return (np.round(x * (levels / top)) * (top / levels)).astype(np.float32)


def blur_scale(settings: Degradation) -> float:
    """The blur scale s a generator is told for an image made with `settings`: the shrink factor,
    or, for a PSF wider than that factor's own blur (a PSF at the native grid), the s whose pil
    shrink-enlarge blurs as much (`PSF_S_PER_SIGMA`·σ)."""
    return float(min(SCALE_RANGE[1], max(settings.scale, PSF_S_PER_SIGMA * settings.psf_sigma)))


def psf_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """B_σ: Gaussian blur, σ in pixels, reflected borders; (H, W) or (H, W, C) float32."""
    if sigma <= 0:
        return x
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT).reshape(x.shape)


def degrade(image: np.ndarray, settings: Degradation, rng: np.random.Generator, top: float | None = None) -> np.ndarray:
    """Y = U(K_s(B_σ(X)) + n) for a float32 (H, W) or (H, W, C) image; returns float32, same shape.

    Noise is added to the small image, at levels relative to intensity `top` (default: the maximum
    of B_σ(X)): `poisson_peak` photons at `top`, read noise `gaussian_sigma · top`. With `levels`,
    the result (or, with `quantize_small`, the small image before U) is rounded to that many grey
    levels of `top`, as a file of that bit depth would hold it. With `h264_crf`, the result is last
    rounded to 8 bits of `top` and coded as an H.264 frame (`h264.code_unit`), as a video holds it.
    """
    return _degrade(image, settings, rng, top, clean=False)[0]


def degrade_with_clean(image: np.ndarray, settings: Degradation, rng: np.random.Generator,
                       top: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(`degrade`'s Y, the same degradation without its noise n): blur and shrink done once, the
    rounding and H.264 coding done to both, `rng` drawn from as `degrade` draws."""
    noisy, clean = _degrade(image, settings, rng, top, clean=True)
    return noisy, clean


def _degrade(image: np.ndarray, settings: Degradation, rng: np.random.Generator, top: float | None,
             clean: bool) -> list[np.ndarray]:
    x = psf_blur(image.astype(np.float32, copy=True), settings.psf_sigma)
    if top is None:
        top = float(x.max()) if x.size else 0.0
    small_levels = settings.levels if settings.quantize_small else 0.0

    def noisy(small):
        return quantize(add_noise(small, top, settings.poisson_peak, settings.gaussian_sigma, rng), top, small_levels)

    def finish(y):
        y = y if settings.quantize_small else quantize(y, top, settings.levels)
        return y if settings.h264_crf is None else h264.code_unit(np.clip(y, 0, top), int(settings.h264_crf), top)

    without_noise = [lambda small: quantize(small, top, small_levels)] if clean else []
    return [finish(y) for y in _shrink_noise_enlarge(x, settings.scale, settings.kernel, noisy, *without_noise)]


# ---------------------------------------------------------------- random degradations for training


@dataclass(frozen=True)
class DegradationRanges:
    """The ranges training draws each crop's degradation from (docs/DESIGN.md section 8).

    A fraction `sharp_fraction` of crops is left exactly as it is (s = 1, no blur, no noise), so
    the generator learns to return a sharp image unchanged; the others get s uniform in
    (1, `scale_max`], a kernel from `kernels`, σ uniform in [0, `psf_sigma_max`·(s − 1)/(`scale_max` − 1)]
    (a PSF width that grows with s, so that the s the generator is told, and the estimator measures,
    bounds how blurred the crop is: see docs/DEGRADATIONS.md), shot noise with
    probability `poisson_p` (peak log-uniform in `poisson_peak`, photons at intensity 1: training
    images are normalised to their 0.1/99.9 percentiles) and read noise with probability `read_p`
    (standard deviation uniform in [0, `read_sigma_max`] of intensity 1).
    """

    kernels: tuple[str, ...] = KERNELS
    scale_max: float = 4.0
    # The blurred crops' s is drawn in (scale_min, scale_max]; above 1 no crop is left sharp: the
    # ranges of a network for large s alone (a routed model's second network: training/large-s).
    scale_min: float = 1.0
    sharp_fraction: float = 0.15
    psf_sigma_max: float = 1.5
    poisson_peak: tuple[float, float] = (30.0, 3000.0)
    poisson_p: float = 0.5
    read_sigma_max: float = 0.02
    read_p: float = 0.5
    native_p: float = 0.0  # of the blurred crops: a PSF at the native grid (no resampling), told blur_scale
    quantize_p: float = 0.0  # of all crops: rounded to `levels` grey levels (log-uniform), as saved files are
    levels: tuple[float, float] = (20.0, 4095.0)
    h264_p: float = 0.0  # of the blurred crops: coded as an 8-bit H.264 frame, CRF uniform in `h264_crf`
    h264_crf: tuple[int, int] = (15, 30)
    # Half of all crops are told up to this many times their blur scale (log-uniform, at most
    # scale_max), as an estimate that reads high tells it; 1 = always the true s.
    told_over: float = 1.0
    # The training target keeps the noise its input was given: HR + (the degraded crop − the same
    # degradation without noise), so that a network learns to sharpen without removing grain.
    noise_kept: bool = False
    # With noise_kept: only noise as weak as shot noise of this many photons at intensity 1 or weaker
    # (relative variance 1/peak + read σ² ≤ 1/noise_kept_peak) is kept; stronger noise is taken out
    # of the target, so that a network learns to keep an image's grain and remove heavy noise.
    # 0 = all noise kept.
    noise_kept_peak: float = 0.0

    def __post_init__(self):
        if not self.kernels or any(k not in KERNELS for k in self.kernels):
            raise ConfigError(f"kernels {self.kernels!r}: choose from {', '.join(KERNELS)}")
        check_setting("scale_max", self.scale_max, *SCALE_RANGE)
        check_setting("psf_sigma_max", self.psf_sigma_max, 0.0, PSF_SIGMA_MAX)
        check_setting("read_sigma_max", self.read_sigma_max, 0.0, GAUSSIAN_SIGMA_MAX)
        lo, hi = self.poisson_peak
        check_setting("poisson_peak", lo, 1e-6, POISSON_PEAK_MAX)
        check_setting("poisson_peak", hi, lo, POISSON_PEAK_MAX)
        check_setting("levels", self.levels[0], *LEVELS_RANGE)
        check_setting("levels", self.levels[1], self.levels[0], LEVELS_RANGE[1])
        check_setting("h264_crf", self.h264_crf[0], *h264.CRF_RANGE)
        check_setting("h264_crf", self.h264_crf[1], self.h264_crf[0], h264.CRF_RANGE[1])
        check_setting("told_over", self.told_over, 1.0, SCALE_RANGE[1])
        check_setting("noise_kept_peak", self.noise_kept_peak, 0.0, POISSON_PEAK_MAX)
        for name in ("sharp_fraction", "poisson_p", "read_p", "native_p", "quantize_p", "h264_p"):
            check_setting(name, getattr(self, name), 0.0, 1.0)


def sample_degradation(ranges: DegradationRanges, rng: np.random.Generator) -> Degradation:
    """One random `Degradation` drawn from `ranges` (noise levels are then relative to intensity 1).
    The draws of the optional parts (`native_p`, `quantize_p`, `h264_p`) are made only when they are
    on, so the default family draws what it always drew."""
    rounding = {}
    if ranges.quantize_p > 0 and rng.random() < ranges.quantize_p:
        lo, hi = ranges.levels
        rounding = {"levels": float(math.exp(rng.uniform(math.log(lo), math.log(hi)))), "quantize_small": bool(rng.random() < 0.5)}
    if ranges.scale_min == 1 and (rng.random() < ranges.sharp_fraction or ranges.scale_max == 1):
        return Degradation(scale=1.0, kernel=ranges.kernels[0], **rounding)
    lo, hi = ranges.poisson_peak
    scale = float(ranges.scale_min + (ranges.scale_max - ranges.scale_min) * (1 - rng.random()))  # (scale_min, scale_max]
    native = ranges.native_p > 0 and rng.random() < ranges.native_p
    if ranges.h264_p > 0 and rng.random() < ranges.h264_p:
        rounding = {"h264_crf": int(rng.integers(ranges.h264_crf[0], ranges.h264_crf[1] + 1))}
    return Degradation(
        scale=1.0 if native else scale,
        kernel=ranges.kernels[rng.integers(len(ranges.kernels))],
        psf_sigma=scale / PSF_S_PER_SIGMA if native else float(rng.uniform(0, ranges.psf_sigma_max * (scale - 1) / (ranges.scale_max - 1))),
        poisson_peak=float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if rng.random() < ranges.poisson_p else 0.0,
        gaussian_sigma=float(rng.uniform(0, ranges.read_sigma_max)) if rng.random() < ranges.read_p else 0.0,
        **rounding,
    )


def noise_kept(settings: Degradation, peak: float) -> bool:
    """Whether a crop degraded with `settings` has noise that a `noise_kept` target keeps: any noise
    when `peak` is 0, else noise no stronger than shot noise of `peak` photons at intensity 1."""
    variance = (1 / settings.poisson_peak if settings.poisson_peak > 0 else 0.0) + settings.gaussian_sigma**2
    return variance > 0 and (peak == 0 or variance <= 1 / peak)


def degrade_batch(hr: torch.Tensor, ranges: DegradationRanges, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Degrade a batch of HR crops, each with its own random settings: (lr, s, target).

    `hr` is (B, C, H, W) float in [0, 1] (on any device); `lr` has its shape, dtype and device, and
    `s` is the (B,) float32 tensor of each crop's `blur_scale` (its shrink factor; 1 for the crops
    left sharp; 2.4·σ for a PSF at the native grid; with `told_over`, half of them told more), the
    number the generator is told. `target` is `hr`, or with `noise_kept` `hr` plus each crop's noise
    as degraded (lr − the same degradation without noise) where `noise_kept_peak` keeps it. Noise
    levels are relative to intensity 1. Crop borders are reflect-padded, so cut a margin of about
    2·scale_max + 3·psf_sigma_max pixels off both after degrading if the border matters. The work
    is per crop on the CPU (OpenCV and torch, no loops over pixels); see benchmarks/degrade_batch.py
    for its speed.
    """
    if hr.ndim != 4:
        raise ValueError(f"degrade_batch takes (B, C, H, W), got shape {tuple(hr.shape)}")
    x = hr.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    out, scales = np.empty_like(x), np.empty(len(x), np.float32)
    target = x.copy() if ranges.noise_kept else x
    for i in range(len(x)):
        settings = sample_degradation(ranges, rng)
        crop = x[i, ..., 0] if x.shape[-1] == 1 else x[i]
        if ranges.noise_kept and noise_kept(settings, ranges.noise_kept_peak):
            noisy, clean = degrade_with_clean(crop, settings, rng, top=1.0)
            out[i] = noisy.reshape(x.shape[1:])
            target[i] = x[i] + (out[i] - clean.reshape(x.shape[1:]))
        else:
            out[i] = degrade(crop, settings, rng, top=1.0).reshape(x.shape[1:])
        scales[i] = blur_scale(settings)
        if ranges.told_over > 1 and rng.random() < 0.5:  # an estimate that reads high
            over = scales[i] * math.exp(rng.uniform(0.0, math.log(ranges.told_over)))
            scales[i] = max(scales[i], min(over, ranges.scale_max))
    def back(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).to(hr.device, hr.dtype).contiguous()

    return back(out), torch.from_numpy(scales), (back(target) if ranges.noise_kept else hr)


# `keep_coarse`: the told blur scale's low-pass is a Gaussian of σ = s / PSF_S_PER_SIGMA px, taps
# out to 3σ at the largest s the network is told (a fixed width, so that an exported graph holds it).
COARSE_SCALE_MAX = 6.0
COARSE_RADIUS = math.ceil(3 * COARSE_SCALE_MAX / PSF_S_PER_SIGMA)


def gaussian_taps(scale: torch.Tensor) -> torch.Tensor:
    """(B, 2·COARSE_RADIUS + 1) normalised Gaussian taps of σ = s / PSF_S_PER_SIGMA for each s of `scale` (B,)."""
    offsets = torch.arange(-COARSE_RADIUS, COARSE_RADIUS + 1, dtype=scale.dtype, device=scale.device)
    sigma = (scale.clamp(1.0, COARSE_SCALE_MAX) / PSF_S_PER_SIGMA)[:, None]
    taps = torch.exp(-0.5 * (offsets[None] / sigma) ** 2)
    return taps / taps.sum(dim=1, keepdim=True)


def keep_coarse(y: torch.Tensor, x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """The network's output `y` (B, C, H, W) with the part of its correction y − x that a blur of scale
    s passes taken off: y − B_s(y − x), B_s a Gaussian of σ = s / PSF_S_PER_SIGMA px (edges repeated).

    What an input blurred by s still holds (its coarse content: local brightness, shapes wider than
    the blur) stays the input's; the network adds only what such a blur removes. Back-projection, as
    iterative back-projection super-resolution makes a result agree with its input: on images that
    were sharp already, or told an s too large, the network then changes little (docs/DEGRADATIONS.md).
    `scale`: one s, or (B,) per image. Shifted slices weighted per image (no grouped convolution), so
    that an exported graph keeps a free batch size.
    """
    b, width, height = y.shape[0], y.shape[3], y.shape[2]
    s = torch.as_tensor(scale, dtype=y.dtype, device=y.device).reshape(-1).expand(b)
    taps = gaussian_taps(s)[:, :, None, None, None]  # (B, K, 1, 1, 1)
    d = F.pad(y - x, (COARSE_RADIUS, COARSE_RADIUS, 0, 0), mode="replicate")
    d = sum(taps[:, k] * d[:, :, :, k : k + width] for k in range(2 * COARSE_RADIUS + 1))
    d = F.pad(d, (0, 0, COARSE_RADIUS, COARSE_RADIUS), mode="replicate")
    d = sum(taps[:, k] * d[:, :, k : k + height, :] for k in range(2 * COARSE_RADIUS + 1))
    return y - d


def keep_coarse_array(y: np.ndarray, x: np.ndarray, scale: float) -> np.ndarray:
    """`keep_coarse` for float32 numpy planes (P, H, W), each plane its own image: the same taps and
    edges through OpenCV's separable filter (2048² in 0.15 s where the torch form, written for
    export, took 2 s, one run on a loaded 2-core AMD EPYC)."""
    sigma = min(max(float(scale), 1.0), COARSE_SCALE_MAX) / PSF_S_PER_SIGMA
    side = 2 * COARSE_RADIUS + 1
    out = np.empty(y.shape, np.float32)
    for i, (yi, xi) in enumerate(zip(y, x)):
        out[i] = yi - cv2.GaussianBlur(np.ascontiguousarray(yi - xi, np.float32), (side, side), sigma, borderType=cv2.BORDER_REPLICATE)
    return out


# With neither --keep-coarse nor --free-coarse, a model told s is run with the input's coarse content
# kept below this told s and as it is from it up (issue 24, round 7): at told s ≥ 3.25 keeping it threw
# away half of what the network gained (test split ×4: PIL +0.57 → +1.06 dB, area +0.51 → +1.01, a
# native PSF +0.71 → +1.64; under 200-photon shot noise every kernel +0.6 to +0.7) at a cost on OpenCV's
# aliasing kernel (×4 −0.01 → −0.26); below it the free output over-sharpens what an s read too high
# tells (docs/robustness/told-scale-sweep, models/MODEL_CARD.md "Issue 24, round 7").
FREE_FROM = 3.25


def coarse_kept(keep_coarse: bool | None, scale: float | None) -> bool:
    """Whether the output of a model told `scale` (None: a plain model, told nothing) keeps its input's
    coarse content: `keep_coarse` when given (--keep-coarse / --free-coarse), else below FREE_FROM."""
    if scale is None:
        return False
    return float(scale) < FREE_FROM if keep_coarse is None else keep_coarse


def seed_for(seed: int, name: str) -> np.random.Generator:
    """A generator that depends on the run's seed and a file's name, not on the order files are met (a
    name that is not UTF-8, read with surrogate escapes, counts by its own bytes)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode("utf-8", "surrogateescape")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) numpy → (1, C, H, W) float32 tensor."""
    a = np.asarray(image, np.float32)
    a = a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None]
    return torch.from_numpy(np.ascontiguousarray(a))


def _from_tensor(t: torch.Tensor, ndim: int) -> np.ndarray:
    a = t[0].numpy()
    return np.ascontiguousarray(a[0] if ndim == 2 else a.transpose(1, 2, 0))


def degrade_file(item_path, out_path, settings: Degradation, seed: int, compression: str = "keep",
                 on_notice: Callable[[str], None] | None = None, record: dict | None = None) -> None:
    """Read one image (or stack), degrade every frame and channel, write it with the input's dtype.

    Float images with NaN or infinite pixels are refused: the blur and the resize would spread them
    over their neighbours and write an image of NaN. A --scale that would pad the image beyond
    `io.MAX_PIXELS` is refused from the header, before reading. `record` (`provenance.base` with the
    settings) gets the input's name and goes into the output (`io.write_image`).
    """
    image = io.read_checked(item_path, lambda h, w: check_working_size(item_path, h, w, settings.scale),
                            "fix or mask them before degrading")
    rng = seed_for(seed, Path(item_path).name)
    frames = [io.from_unit(degrade(io.to_unit(f), settings, rng), image.data.dtype) for f in image.frames]
    data = np.stack(frames) if image.is_stack else frames[0]
    if record is not None:
        record = {**record, "input": io.printable(Path(item_path).name), "output_dtype": str(data.dtype)}
    for message in io.write_image(out_path, data, like=image, compression=compression, record=record):  # TIFF: --compression
        if on_notice is not None:
            on_notice(f"{out_path}: {message}")


def check_working_size(path, height: int, width: int, scale: int) -> None:
    """InputError naming the file when padding its sides to multiples of `scale` (before D) would
    make more than `io.MAX_PIXELS` pixels (`--scale 100000` on a small image: 10^10)."""
    ph, pw = -(-height // scale) * scale, -(-width // scale) * scale
    io.check_pixel_limit(path, ph, pw, f"--scale {scale} pads this {width}×{height} image before shrinking to",
                         "use a smaller --scale")


def degrade_store(src: Path, dest: Path, settings: Degradation, seed: int, *, overwrite: bool = False, skip_existing: bool = False,
                  pyramid: int = 0, record: dict | None = None, on_notice: Callable[[str], None] | None = None) -> int:
    """`degrade` every (t, c, z) plane of the OME-Zarr image `src` into a new store `dest` of the same
    NGFF version, pixel type, axes and calibration, plane by plane (memory: one plane; each within
    `io.MAX_PIXELS`); the noise of each plane is seeded by the run's seed, the store's name and the
    plane's index. `pyramid` levels are rebuilt from the result. A plane written is marked, so a
    rerun with `skip_existing` does the rest. Returns the planes written."""
    from ficli.image import ngff

    src, dest = Path(src), Path(dest)
    image = ngff.open_image(src)
    state = ngff.check_store_output(src, dest, overwrite=overwrite, skip_existing=skip_existing)
    if state == "complete":
        return 0
    height, width = image.shape[-2:]
    io.check_pixel_limit(src, height, width, "a plane of this store is", "ficli degrades a store plane by plane")
    check_working_size(src, height, width, settings.scale)
    record = {**(record or {}), "input": io.printable(src.name), "input_ngff": ngff.describe(image),
              "output_dtype": str(image.dtype), "pyramid_levels": pyramid, "complete": False}
    if state == "resume":
        pyramid = int((ngff.read_record(dest) or {}).get("pyramid_levels", 0))
    else:
        ngff.create_like(dest, image, pyramid=pyramid, record=record, overwrite=state == "replace")
    source, out = ngff.level_array(image, 0), ngff.level_array(ngff.open_image(dest), 0, mode="r+")
    done, written = ngff.done_ids(dest), 0
    for plane in image.planes:
        name = "-".join(str(i) for i in plane) or "plane"
        if name in done:
            continue
        try:
            data = np.asarray(source[plane])
        except Exception as exc:
            raise InputError(f"{src}/{image.levels[0].path}: plane {name} cannot be read ({type(exc).__name__}: "
                                f"{str(exc)[:160]}); {written} plane(s) were written: fix it and rerun with --skip-existing") from None
        out[plane] = io.from_unit(degrade(io.to_unit(data), settings, seed_for(seed, f"{src.name}:{name}")), image.dtype)
        ngff.mark_done(dest, name)
        written += 1
    ngff.finish_store(dest, pyramid, {**(ngff.read_record(dest) or record)})
    return written
