"""The degradation model Y = U(D(X)) of DESIGN section 1, and the project's one bicubic resize.

`X` is the sharp image as float32 in [0, 1] (any range works: nothing is clipped here). Optional,
before D and in this order: a Gaussian PSF blur (the paper's Eq. 1), Poisson shot noise at a peak
photon count, additive Gaussian read noise. D shrinks by `scale` with bicubic interpolation, U
enlarges back to the original size with the same bicubic, so Y has X's size.

Sides that are not multiples of `scale` are reflect-padded up to the next multiple before D and the
result is cropped back to X's size after U (so Y and X always pair pixel for pixel).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ficli import io
from ficli.errors import ConfigError


@dataclass(frozen=True)
class Degradation:
    """Settings of Y = U(D(X)). Noise levels are relative to the image's own maximum intensity."""

    scale: int = 4
    psf_sigma: float = 0.0  # Gaussian PSF standard deviation in HR pixels; 0 = none
    poisson_peak: float = 0.0  # photons at the image's maximum; 0 = no shot noise
    gaussian_sigma: float = 0.0  # read-noise standard deviation as a fraction of the image maximum

    def __post_init__(self):
        if self.scale < 1:
            raise ConfigError(f"--scale must be 1 or more, got {self.scale}")
        for name in ("psf_sigma", "poisson_peak", "gaussian_sigma"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")


def bicubic_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of (B, C, H, W) to `size` = (h, w): the one resize of the whole project.

    torch's antialiased bicubic, which is PIL's `Image.resize(BICUBIC)` (Keys kernel, a = -0.5, widened
    by the factor when shrinking, as MATLAB's `imresize` does) in both directions: one kernel for D
    and U. (torch's plain bicubic uses a = -0.75 and does not reproduce a linear ramp.) No clipping:
    intensities may overshoot slightly at edges, as bicubic does.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


def resize_array(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`bicubic_resize` for a float (H, W) or (H, W, C) numpy image."""
    t = _to_tensor(image)
    return _from_tensor(bicubic_resize(t, size), image.ndim)


def shrink_enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    """U(D(X)) alone for a float (H, W) or (H, W, C) image (reflect-pad to a multiple of `scale`)."""
    if scale == 1:
        return image.astype(np.float32, copy=True)
    h, w = image.shape[:2]
    ph, pw = -h % scale, -w % scale
    t = _to_tensor(image)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        t = F.pad(t, (0, pw, 0, ph), mode=mode)
    H, W = t.shape[-2:]
    small = bicubic_resize(t, (H // scale, W // scale))
    return _from_tensor(bicubic_resize(small, (H, W))[..., :h, :w], image.ndim)


def degrade(image: np.ndarray, settings: Degradation, rng: np.random.Generator) -> np.ndarray:
    """Y = U(D(noise(blur(X)))) for a float32 (H, W) or (H, W, C) image; returns float32, same shape."""
    x = image.astype(np.float32, copy=True)
    if settings.psf_sigma > 0:
        x = cv2.GaussianBlur(x, (0, 0), settings.psf_sigma, borderType=cv2.BORDER_REFLECT)
        x = x.reshape(image.shape)
    top = float(x.max()) if x.size else 0.0
    if settings.poisson_peak > 0 and top > 0:
        photons = np.clip(x, 0, None) / top * settings.poisson_peak
        x = (rng.poisson(photons) * (top / settings.poisson_peak)).astype(np.float32)
    if settings.gaussian_sigma > 0 and top > 0:
        x = x + rng.normal(0.0, settings.gaussian_sigma * top, x.shape).astype(np.float32)
    return shrink_enlarge(x, settings.scale)


def seed_for(seed: int, name: str) -> np.random.Generator:
    """A generator that depends on the run's seed and a file's name, not on the order files are met."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) numpy → (1, C, H, W) float32 tensor."""
    a = np.asarray(image, np.float32)
    a = a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None]
    return torch.from_numpy(np.ascontiguousarray(a))


def _from_tensor(t: torch.Tensor, ndim: int) -> np.ndarray:
    a = t[0].numpy()
    return np.ascontiguousarray(a[0] if ndim == 2 else a.transpose(1, 2, 0))


def degrade_file(item_path, out_path, settings: Degradation, seed: int) -> None:
    """Read one image (or stack), degrade every frame and channel, write it with the input's dtype.

    Float images with NaN or infinite pixels are refused: the blur and the resize would spread them
    over their neighbours and write an image of NaN. A --scale that would pad the image beyond
    `io.MAX_PIXELS` is refused from the header, before reading.
    """
    size = io.image_size(item_path)
    if size is not None:
        check_working_size(item_path, *size, settings.scale)
    image = io.read_image(item_path)
    check_working_size(item_path, *image.frames[0].shape[:2], settings.scale)
    io.check_finite(image, "fix or mask them before degrading")
    rng = seed_for(seed, Path(item_path).name)
    frames = [io.from_unit(degrade(io.to_unit(f), settings, rng), image.data.dtype) for f in image.frames]
    data = np.stack(frames) if image.is_stack else frames[0]
    io.write_image(out_path, data, like=image)


def check_working_size(path, height: int, width: int, scale: int) -> None:
    """InputError naming the file when padding its sides to multiples of `scale` (before D) would
    make more than `io.MAX_PIXELS` pixels (`--scale 100000` on a small image: 10^10)."""
    ph, pw = -(-height // scale) * scale, -(-width // scale) * scale
    io.check_pixel_limit(path, ph, pw, f"--scale {scale} pads this {width}×{height} image before shrinking to",
                         "use a smaller --scale")
