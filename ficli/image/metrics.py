"""Image-quality metrics as pure functions in float64: RMSE, PSNR, SSIM and the texture excess
(docs/DESIGN.md section 5).

Inputs are arrays on a common scale, usually [0, 1] (`data_range` = 1); putting images on that
scale (dtype, HR min..max, or a given value) is the caller's job (`ficli.tools.evaluate`).

Layouts: `(H, W)` or `(H, W, C)`; `a` and `b` must have the same shape. Channels: RMSE and PSNR
use the mean squared error over all pixels and channels (the mean of the per-channel MSEs), so that
PSNR = 20·log10(data_range / RMSE) holds; SSIM is computed per channel and averaged. This is what
scikit-image's `peak_signal_noise_ratio` and `structural_similarity(..., channel_axis=-1)` compute.
The texture excess pools its spectra over channels (like RMSE's squared errors).
"""

from __future__ import annotations

import cv2
import numpy as np

from ficli.image.blurscale import BINS, MIN_SIDE, ring_power
from ficli.errors import InputError

# Wang et al. 2004: an 11×11 Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03.
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# scipy.ndimage truncates the Gaussian at 3.5 σ in scikit-image's SSIM: radius int(3.5·1.5 + 0.5) = 5.
_TRUNCATE = 3.5
SSIM_RADIUS = int(_TRUNCATE * SSIM_SIGMA + 0.5)
SSIM_MIN_SIDE = 2 * SSIM_RADIUS + 1  # 11: the window must fit in the image
# Texture excess: rings below this frequency (cycles/pixel, a period of 50 px) hold the large
# structures and the window's leakage, not texture; images need MIN_SIDE pixels a side for a spectrum.
TEXTURE_F0 = 0.02
TEXTURE_MIN_SIDE = MIN_SIDE


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean squared error over all pixels and channels, in the units of `a` and `b`."""
    a, b = _pair(a, b)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 20·log10(data_range / RMSE); inf for identical images."""
    error = rmse(a, b)
    if error == 0.0:
        return float("inf")
    return float(20.0 * np.log10(data_range / error))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004, their Eq. 13 with a Gaussian window).

    Local means, variances (population, i.e. divided by N) and covariance come from an 11×11
    Gaussian window with σ = 1.5 and mirrored borders (`d c b a | a b c d`, scipy's 'reflect',
    OpenCV's BORDER_REFLECT). As in scikit-image, the SSIM map loses a 5-pixel strip on each side
    (where the window sees mirrored pixels) before its mean is taken, so the border mode never
    reaches the result. `(H, W, C)`: the mean over
    channels. Images smaller than 11 pixels a side raise InputError: the window would not fit, and
    a smaller window would give numbers not comparable with anyone else's.
    """
    a, b = _pair(a, b)
    if min(a.shape[:2]) < SSIM_MIN_SIDE:
        raise InputError(
            f"image of {a.shape[1]}×{a.shape[0]} pixels is too small for SSIM, which needs at least "
            f"{SSIM_MIN_SIDE}×{SSIM_MIN_SIDE} (its Gaussian window); use larger images or a smaller --crop-border"
        )
    if a.ndim == 3:
        return float(np.mean([_ssim_2d(a[..., c], b[..., c], data_range) for c in range(a.shape[2])]))
    return _ssim_2d(a, b, data_range)


def texture_excess(truth: np.ndarray, output: np.ndarray, f0: float = TEXTURE_F0) -> float:
    """Invented texture in %: the output's spectral power above the truth's, over frequencies ≥ f0.

    With P the Welch power of each ring of frequencies (`blurscale.ring_power`: Hann-windowed
    tiles, means removed; a ring's total is its mean power times its number of frequencies),

        excess = 100 · Σ_{f ≥ f0} max(0, P_output(f) − P_truth(f)) / Σ_{f ≥ f0} P_truth(f),

    the detail variance the output has beyond the truth's, as a share of the truth's own detail
    variance. Blur only lowers P_output, so a blurred output scores about 0; detail the truth does
    not have (texture, ringing, noise, over-sharpening) raises it, and so does more contrast than
    the truth's (a gain g on the output: (g² − 1)·100 %). It is blind to where detail sits: a
    detail invented with the truth's spectrum scores 0 (PSNR and SSIM see that). Offsets cancel
    with the means and a common gain with the ratio, so the intensity scale does not change it.
    `(H, W, C)`: the rings are summed over channels before the ratio. NaN for an image under
    TEXTURE_MIN_SIDE pixels a side or a truth without variation (nothing to compare with).
    """
    a, b = _pair(truth, output)
    if min(a.shape[:2]) < TEXTURE_MIN_SIDE or np.ptp(a) <= 1e-12 * max(1.0, float(np.abs(a).max())):
        return float("nan")
    keep = (np.arange(BINS) + 0.5) / BINS * 0.5 >= f0
    planes = [(a, b)] if a.ndim == 2 else [(a[..., c], b[..., c]) for c in range(a.shape[2])]
    excess = detail = 0.0
    for x, y in planes:
        p_truth, _ = ring_power(x, full_plane=True)
        p_output, _ = ring_power(y, full_plane=True)
        excess += float(np.maximum(p_output - p_truth, 0.0)[keep].sum())
        detail += float(p_truth[keep].sum())
    return 100.0 * excess / detail if detail > 0 else float("nan")


def _ssim_2d(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mx, my = _window_mean(x), _window_mean(y)
    vx = _window_mean(x * x) - mx * mx
    vy = _window_mean(y * y) - my * my
    vxy = _window_mean(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    r = SSIM_RADIUS
    return float(s[r:-r, r:-r].mean(dtype=np.float64))


def _gaussian_taps() -> np.ndarray:
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return taps / taps.sum()


_TAPS = _gaussian_taps()


def _window_mean(image: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local mean, (H, W) float64, mirrored borders."""
    return cv2.sepFilter2D(np.ascontiguousarray(image), cv2.CV_64F, _TAPS, _TAPS, borderType=cv2.BORDER_REFLECT)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"images differ in shape: {a.shape} and {b.shape}; metrics compare images of the same size")
    if a.ndim not in (2, 3):
        raise InputError(f"expected an (H, W) or (H, W, C) image, got shape {a.shape}")
    return a, b
