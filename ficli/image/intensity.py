"""The intensity map the network sees (docs/DESIGN.md section 4, "Intensity normalisation").

Before the network each image (each stack, each video as a whole) is mapped by a robust affine
`v -> (v - lo) / (hi - lo)`, `lo` and `hi` its LO_PCT and HI_PCT percentiles (from `ficli.defaults`), without clipping;
after it by the exact inverse. `percentile_range` runs once per image, stack or video, before
tiling, never per tile; `normalize` on the way in, `denormalize` on the way out. Constant planes
skip the network (`flat_values`, `keep_flat`). Training maps its HR images the same way, so
training and use agree. Plain numpy; tensors pass through `normalize`/`denormalize` as they are.
"""

from __future__ import annotations

import math

import numpy as np

from ficli.defaults import HI_PCT, LO_PCT
from ficli.errors import ConfigError, InputError




def percentile_range(array, lo_pct: float = LO_PCT, hi_pct: float = HI_PCT) -> tuple[float, float]:
    """(lo, hi): the `lo_pct` and `hi_pct` percentiles over all values of an image, stack or video.

    Computed once per image (or stack, or video) before tiling, never per tile. Exact
    (`np.percentile`, linear interpolation) on one working copy of the values, partitioned in place.
    A (nearly) flat image, where hi <= lo, falls back to its minimum and maximum; if it is entirely
    flat, to hi = lo + 1 (one full [0, 1] data range), so `normalize` maps it to 0 and stays finite;
    `enhance` and `video` then put its flat planes back unchanged (`flat_values`, `keep_flat`).
    """
    if not 0 <= lo_pct < hi_pct <= 100:
        raise ConfigError(
            f"normalisation percentiles must satisfy 0 <= low < high <= 100, got {lo_pct}, {hi_pct}"
        )
    values = np.array(array, copy=True).reshape(-1)  # the one copy; partitioned in place below
    if values.size == 0:
        raise InputError("cannot normalise an empty image")
    lo, hi = (float(v) for v in np.percentile(values, [lo_pct, hi_pct], overwrite_input=True))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(
            "the image contains NaN or infinite values; fix the file or use --no-normalize"
        )
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def normalize(x, lo: float, hi: float):
    """(x - lo) / (hi - lo), without clipping; float32 for numpy input, tensors keep their dtype."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        out = np.subtract(x, np.float32(lo), dtype=np.float32)
        out /= np.float32(hi - lo)
        return out
    return (x - lo) / (hi - lo)


def denormalize(y, lo: float, hi: float):
    """The inverse of `normalize`: y * (hi - lo) + lo; float32 for numpy input."""
    if isinstance(y, np.ndarray) or np.isscalar(y):
        out = np.multiply(y, np.float32(hi - lo), dtype=np.float32)
        out += np.float32(lo)
        return out
    return y * (hi - lo) + lo


def flat_values(planes: np.ndarray) -> list[float | None]:
    """For each (H, W) plane of `planes`: its value if it is constant, else None.

    Flat in, flat out: a constant plane holds no structure to sharpen, and the network would
    print its own faint pattern on it (a constant 16-bit 1000 came back 719..1179), so callers
    put such planes back unchanged (`keep_flat`) instead of using the network's output.
    """
    return [float(p.flat[0]) if p.min() == p.max() else None for p in planes]


def keep_flat(planes: np.ndarray, constants: list[float | None]) -> None:
    """Set each plane of `planes` (C, H, W) whose entry in `constants` is a value to that value, in place."""
    for plane, value in zip(planes, constants):
        if value is not None:
            plane[...] = value
