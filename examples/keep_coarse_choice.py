"""How much of the network's correction to keep: the measurement behind `--keep-coarse` (issue 24).

    python examples/keep_coarse_choice.py [--out docs/robustness/keep-coarse-choice.md]

On 22 images (every third of each held-out source, cellfinder, BBBC006 and S-BIAD634, and every
second test image; central 256² crops, mapped as training maps them), each degraded in eight cells
(sharp; PIL ×1.5, ×2, ×4; OpenCV cubic ×2, ×4; area ×4; a native PSF told s = 3) and saved as a
12-bit file would hold it, the default model is told the true s ("oracle"), what `--scale auto`
tells ("auto": `runtime.told_scale`, the smaller of the learned and the template reading; its table in
docs/robustness/keep-coarse-choice.md was made before round 8's reading under the rounding noise) or the learned reading alone
("learned"), and its output y is kept as it is or with its correction's coarse part taken off: y − B(y − x),
B a Gaussian of σ = f·s/2.4 px (f = 1: `degrade.keep_coarse`, what ships; 1.5; 2) or the ×s PIL
shrink-and-enlarge. Prints a table of the mean gain over the input in dB (worst image in brackets;
for the sharp cell PSNR(G(X), X)). About eight minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import cv2
import numpy as np
import torch
from savedfiles import load_unit  # the example beside this one

from ficli import api
from ficli.image.blurscale import readings
from ficli.image.degrade import PSF_S_PER_SIGMA, Degradation, degrade, shrink_enlarge
from ficli.inference.runtime import learned_reading, told_scale

DATA = Path("../shared/data/fluorescence")
CELLS = [("sharp", 1), ("pil", 1.5), ("pil", 2), ("pil", 4), ("cv2", 2), ("cv2", 4), ("area", 4), ("psf", 3)]
VARIANTS = ["as it is", "Gaussian s/2.4 (shipped)", "Gaussian 1.5·s/2.4", "Gaussian 2·s/2.4", "PIL shrink-enlarge ×s"]


def images() -> list[str]:
    extra = DATA / "train_extra"
    return (sorted(glob.glob(str(extra / "cellfinder__*.png")))[::3] + sorted(glob.glob(str(extra / "bbbc006__*.png")))[::4]
            + sorted(glob.glob(str(extra / "sbiad634__*.png")))[::3] + sorted(glob.glob(str(DATA / "test" / "*.png")))[::2])


def saved(x: np.ndarray, kernel: str, s: float) -> np.ndarray:
    """`x` degraded in one cell and rounded as a 12-bit file holds it."""
    if kernel == "sharp":
        y = x.copy()
    elif kernel == "psf":
        y = degrade(x, Degradation(scale=1.0, psf_sigma=s / PSF_S_PER_SIGMA), np.random.default_rng(0), top=1.0)
    else:
        y = degrade(x, Degradation(scale=s, kernel=kernel), np.random.default_rng(0), top=1.0)
    return (np.round(np.clip(y, 0, None) * 4095) / 4095).astype(np.float32)


def variants(g: np.ndarray, y: np.ndarray, s: float) -> list[np.ndarray]:
    c = g - y
    blur = [cv2.GaussianBlur(c, (0, 0), f * s / PSF_S_PER_SIGMA, borderType=cv2.BORDER_REPLICATE) for f in (1.0, 1.5, 2.0)]
    return [g] + [g - b for b in blur] + [g - shrink_enlarge(c, s, "pil") if s > 1.01 else y]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = api.load_model()
    scores: dict = {}
    paths = images()
    for path in paths:
        x = load_unit(path, side=256)
        span = float(x.max() - x.min())
        for kernel, s in CELLS:
            y = saved(x, kernel, s)
            learned, template = readings([y])
            for mode in ("oracle", "auto", "learned"):
                told = float(s) if mode == "oracle" else told_scale(learned, template)[0] if mode == "auto" else learned_reading(learned)[0]
                g = api.enhance(model, y, scale=told, keep_coarse=False)
                psnr = [10 * np.log10(span**2 / np.mean((v - x) ** 2)) for v in variants(g, y, told)]
                base = 0.0 if kernel == "sharp" else 10 * np.log10(span**2 / np.mean((y - x) ** 2))
                scores.setdefault((kernel, s, mode), []).append([p - base for p in psnr])
    lines = [f"{len(paths)} images, 12-bit files; mean (worst image), dB: gain over the input, or PSNR(G(X), X) when sharp", "",
             "| cell | told | " + " | ".join(VARIANTS) + " |", "|---" * (len(VARIANTS) + 2) + "|"]
    for (kernel, s, mode), rows in scores.items():
        a = np.minimum(np.array(rows), 99.0)  # a sharp image returned exactly is infinitely close
        cells = [f"{a[:, j].mean():.1f} ({a[:, j].min():.1f})" if kernel == "sharp" else f"{a[:, j].mean():+.2f} ({a[:, j].min():+.2f})"
                 for j in range(len(VARIANTS))]
        lines.append(f"| {kernel} ×{s:g} | {mode} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
