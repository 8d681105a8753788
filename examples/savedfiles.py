"""Saved files of known blur, for the blur-scale estimator's training and its error tables (issue 24).

`simulate` makes what users hold: a sharp crop degraded by one setting of the family (a resampling
kernel at s, optionally a PSF at the native grid told s = 2.4·σ, or left as it is), with or without shot and
read noise, then saved as a file would hold it: float, 8-bit full or dim, 12 bits in 16, 16-bit
with a narrow range, or 8-bit JPEG. `FILE_KINDS` names them; `save_as` does one. `VIDEO_KINDS` adds an
8-bit frame of an H.264 video (x264, CRF 10-28, 4:2:0, as a camera or a screen recorder writes one),
which the shipped estimator was not trained on (`train_blurscale.py --h264` trains with it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

from ficli.image import h264, io
from ficli.image.intensity import percentile_range
from ficli.image.degrade import KERNELS, PSF_S_PER_SIGMA, Degradation, blur_scale, degrade

# name: (grey levels of the image's range, as a fraction of the type's, drawn log-uniform), type maximum
FILE_KINDS = {
    "float": None,
    "8-bit": ((0.4, 1.0), 255),
    "8-bit dim": ((0.04, 0.4), 255),
    "12-bit in 16": ((0.1, 1.0), 4095),
    "16-bit narrow": ((0.003, 0.3), 65535),
    "8-bit JPEG": ((0.3, 1.0), 255),
}
VIDEO_KINDS = {"8-bit H.264": ((0.3, 1.0), 255)}


def load_unit(path: Path, side: int = 512, own: bool = False):
    """The first plane of an image, gray, on [0, 1] by its 0.1/99.9 percentiles (as training maps
    it), its central side×side at most. `own`: also the grey levels its range spans in its own
    type and that type's maximum, for `save_as(..., "own")`."""
    image = io.read_image(path)
    x = io.to_unit(image.frames[0]).astype(np.float32)
    x = x.mean(axis=2) if x.ndim == 3 else x
    h, w = x.shape
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    x = x[top : top + side, left : left + side]
    lo, hi = percentile_range(x)
    unit = np.ascontiguousarray((x - lo) / (hi - lo), np.float32)
    if not own:
        return unit
    top_value = io.dtype_max(image.data.dtype)
    return unit, max(2.0, float(hi - lo) * top_value), top_value


def save_as(y: np.ndarray, kind: str, rng: np.random.Generator, fraction: float | None = None,
            own: tuple[float, float] | None = None) -> np.ndarray:
    """`y` (about [0, 1]) as a file of `kind` holds it: the image's range spans `fraction` of the
    type's (drawn when None), rounded and clipped to the type; JPEG at quality 70-95. Kind "own":
    the source file's own type, `own` = (grey levels its range spans, the type's maximum)."""
    if kind == "own":
        levels, top = own
        if top == 1.0:  # a float source stays float
            return y.astype(np.float32)
        return (np.clip(np.round(np.clip(y, 0, None) * levels), 0, top) / top).astype(np.float32)
    kinds = {**FILE_KINDS, **VIDEO_KINDS}
    if kinds[kind] is None:
        return y.astype(np.float32)
    (lo, hi), top = kinds[kind]
    fraction = fraction or float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    levels = max(2.0, top * fraction)
    saved = np.clip(np.round(np.clip(y, 0, None) * levels), 0, top)
    if kind == "8-bit JPEG":
        ok, data = cv2.imencode(".jpg", saved.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
        saved = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if kind == "8-bit H.264":
        saved = h264.code_frame(saved.astype(np.uint8), int(rng.integers(10, 29)))
    return (saved / top).astype(np.float32)


def first_gray_frame(clip: Path, shape: tuple[int, int]) -> np.ndarray:
    """The first frame of a video file decoded by ffmpeg as gray uint8 of `shape` (height, width)."""
    raw = subprocess.run([h264.ffmpeg_exe(), "-loglevel", "error", "-i", str(clip), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8)[: shape[0] * shape[1]].reshape(shape)


def use_estimator(path: Path) -> None:
    """Read blur scales with the learned estimator in `path` (`train_blurscale.py --out`) instead of
    the shipped one, for the rest of this process."""
    from ficli.image import blurscale

    blurscale.MLP_FILE = Path(path)
    blurscale.mlp_weights.cache_clear()


def random_setting(rng: np.random.Generator, s_max: float = 6.0, native_psf: float = 0.0) -> Degradation:
    """One setting: 25 % as it is, a fraction `native_psf` a PSF at the native grid (told 2.4·σ),
    else a kernel at s in (1, s_max] with the family's PSF tie; shot noise (10-3000 photons) on
    45 %, read noise on 30 %. The shipped estimator is trained without native PSFs (`native_psf`
    0): with them it read smooth images as they are as blurred (held-out sources told s = 1.6 on
    average at s = 1, their output 28 dB from them at worst), and a PSF alone it read within ±0.5
    for only a third of files anyway (docs/DEGRADATIONS.md)."""
    r = rng.random()
    noise = {"poisson_peak": float(np.exp(rng.uniform(np.log(10), np.log(3000)))) if rng.random() < 0.45 else 0.0,
             "gaussian_sigma": float(rng.uniform(0, 0.02)) if rng.random() < 0.3 else 0.0}
    if r < 0.25:
        return Degradation(scale=1.0, **noise)
    s = float(1 + (s_max - 1) * (1 - rng.random()))
    if r < 0.25 + native_psf:
        return Degradation(scale=1.0, psf_sigma=s / PSF_S_PER_SIGMA, **noise)
    return Degradation(scale=s, kernel=KERNELS[rng.integers(len(KERNELS))],
                       psf_sigma=float(rng.uniform(0, 1.5 * (s - 1) / 3)), **noise)


def simulate(x: np.ndarray, rng: np.random.Generator, kind: str | None = None, kinds=FILE_KINDS) -> tuple[np.ndarray, float, str]:
    """(the saved file's values on [0, 1], its blur scale, its kind: `kind`, or drawn from `kinds`) for
    one random setting."""
    setting = random_setting(rng)
    kind = kind or list(kinds)[rng.integers(len(kinds))]
    y = degrade(x, setting, rng, top=1.0)
    return save_as(y, kind, rng), blur_scale(setting), kind
