"""Synthetic fluorescence-like images for tests, examples and benchmarks.

A phantom is a dark background with blurred points (vesicles), thin curved filaments and wider
vessels, seen through a Gaussian PSF with Poisson (shot) noise: the structures that matter to
fluorescence users, at a known ground truth.
"""

from __future__ import annotations

import cv2
import numpy as np


def phantom(
    height: int = 128,
    width: int = 128,
    *,
    seed: int = 0,
    points: int = 40,
    filaments: int = 8,
    vessels: int = 2,
    psf_sigma: float = 1.0,
    peak_photons: float | None = 500.0,
    background: float = 0.03,
) -> np.ndarray:
    """A float32 (H, W) image in [0, 1] with points, filaments and vessels.

    `peak_photons` sets the Poisson noise (photon count at intensity 1); None gives a noiseless image.
    """
    rng = np.random.default_rng(seed)
    img = np.full((height, width), background, np.float32)
    ys, xs = rng.uniform(0, height, points), rng.uniform(0, width, points)
    for y, x, a in zip(ys, xs, rng.uniform(0.4, 1.0, points)):
        cv2.circle(img, (int(x * 16), int(y * 16)), 16, float(a), -1, cv2.LINE_AA, shift=4)
    for thickness, count in ((1, filaments), (4, vessels)):
        for _ in range(count):
            img = _draw_curve(img, rng, thickness, float(rng.uniform(0.3, 0.8)))
    if psf_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), psf_sigma, borderType=cv2.BORDER_REFLECT)
    img = np.clip(img, 0.0, 1.0)
    if peak_photons:
        img = rng.poisson(img * peak_photons).astype(np.float32) / peak_photons
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _draw_curve(img: np.ndarray, rng: np.random.Generator, thickness: int, value: float) -> np.ndarray:
    """A smooth random curve across the image (a quadratic Bezier through a random control point)."""
    h, w = img.shape
    p0, p1, p2 = (rng.uniform([0, 0], [w, h]) for _ in range(3))
    t = np.linspace(0.0, 1.0, 4 * (h + w))[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    layer = np.zeros_like(img)
    cv2.polylines(layer, [np.round(pts * 16).astype(np.int32)], False, value, thickness, cv2.LINE_AA, shift=4)
    return np.maximum(img, layer)


def to_dtype(img: np.ndarray, dtype, max_value: int | None = None) -> np.ndarray:
    """Quantise a [0, 1] float image to an integer dtype, using `max_value` (e.g. 4095) as full scale."""
    top = max_value if max_value is not None else np.iinfo(dtype).max
    return np.round(np.clip(img, 0, 1) * top).astype(dtype)
