"""Measure ficli.image.blurscale.TEMPLATE: how resampling by s changes an image's power spectrum.

    python examples/calibrate_blurscale.py ../shared/data/fluorescence/train

For every image (its central 512² at most), each kernel of `ficli degrade` and s in 1.5 … 6, the
difference log10 P(U(K_s(X))) − log10 P(X) of the radially averaged spectra is binned by
u = f·s (cycles per pixel of the small image); the median over all of them per bin is the template.
Prints the tuple to paste into ficli/image/blurscale.py. Calibrate on training images only: the test
images are for measuring the estimator (examples/blurscale_errors.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ficli.image import io
from ficli.image.blurscale import BINS, F_MIN, U_STEP, power_profile
from ficli.image.degrade import KERNELS, shrink_enlarge

SCALES = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
U_MAX = 3.0


def load_gray(path: Path, side: int = 512) -> np.ndarray:
    """The first plane of an image as float32 gray in [0, 1], its central side×side at most."""
    x = io.to_unit(io.read_image(path).frames[0]).astype(np.float32)
    x = x.mean(axis=2) if x.ndim == 3 else x
    h, w = x.shape
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return np.ascontiguousarray(x[top : top + side, left : left + side])


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/fluorescence/train")
    files = io.collect_inputs([str(folder)], recursive=True)
    f = (np.arange(BINS) + 0.5) / BINS * 0.5
    keep = f >= F_MIN
    edges = np.arange(0, U_MAX + U_STEP / 2, U_STEP)
    samples = [[] for _ in edges]
    for item in files:
        x = load_gray(item.path)
        base = power_profile(x)
        if base is None:
            continue
        for kernel in KERNELS:
            for s in SCALES:
                p = power_profile(shrink_enlarge(x, s, kernel))
                d = np.log10(p[keep]) - np.log10(base[keep])
                for u, v in zip(f[keep] * s, d):
                    j = int(round(u / U_STEP))
                    if j < len(edges):
                        samples[j].append(v)
    table = np.array([np.median(v) if v else np.nan for v in samples])
    table[0] = 0.0
    ok = np.isfinite(table)
    table = np.interp(np.arange(len(table)), np.flatnonzero(ok), table[ok])
    print(f"# {len(files)} images of {folder}, kernels {', '.join(KERNELS)}, s in {SCALES}")
    print("TEMPLATE = (")
    for i in range(0, len(table), 10):
        print("    " + " ".join(f"{v:.3f}," for v in table[i : i + 10]))
    print(")")


if __name__ == "__main__":
    main()
