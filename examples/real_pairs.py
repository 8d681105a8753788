"""Real pairs as a yardstick: the default model, the paper model and Richardson-Lucy on two real
acquisitions of one field (issue 24; ../shared/data/real_pairs, never trained on).

    python examples/real_pairs.py [../shared/data/real_pairs/tagan] [--csv scores.csv]

Each pair is a confocal image (the input) and a STED image of the same field on the same grid (the
target: sharper than any deblurring can reach, so read the numbers as "towards the truth, or not").
Each method's output is matched to the target as CSBDeep evaluates restorations: the target mapped
to [0, 1] by its 0.1/99.9 percentiles, the output by an affine least-squares fit to it, after the
integer shift (up to 3 px) that best aligns the input with the target is removed; PSNR over that
[0, 1] range. Prints, per method, the PSNR of each pair and the mean gain over the input (the
confocal image as it is). Richardson-Lucy: scikit-image's, a Gaussian PSF of 1.5 px, 20 iterations
(the setting the issue quotes). Needs scikit-image (the test extra).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from ficli import api
from ficli.image import io
from ficli.image.intensity import percentile_range

SHIFT = 3


def unit_percentiles(x: np.ndarray) -> np.ndarray:
    """x mapped by its 0.1/99.9 percentiles to about [0, 1] (`intensity.percentile_range`), in float64."""
    lo, hi = percentile_range(x)
    return (x - lo) / (hi - lo)


def best_shift(src: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """The integer (dy, dx) within ±SHIFT that maximises the correlation of src with target."""
    a, b = unit_percentiles(src), unit_percentiles(target)
    best, arg = -np.inf, (0, 0)
    for dy in range(-SHIFT, SHIFT + 1):
        for dx in range(-SHIFT, SHIFT + 1):
            c = np.corrcoef(crop(np.roll(a, (dy, dx), (0, 1))).ravel(), crop(b).ravel())[0, 1]
            if c > best:
                best, arg = c, (dy, dx)
    return arg


def crop(x: np.ndarray) -> np.ndarray:
    return x[SHIFT:-SHIFT, SHIFT:-SHIFT]


def affine_psnr(output: np.ndarray, target: np.ndarray, shift: tuple[int, int]) -> float:
    """PSNR of `output` against `target` on the target's percentile scale, after the best affine
    intensity map (least squares) and the shift."""
    t = crop(unit_percentiles(target.astype(np.float64)))
    y = crop(np.roll(output.astype(np.float64), shift, (0, 1)))
    design = np.stack([y.ravel(), np.ones(y.size)], axis=1)
    coef, *_ = np.linalg.lstsq(design, t.ravel(), rcond=None)
    mse = np.mean((design @ coef - t.ravel()) ** 2)
    return float(10 * np.log10(1.0 / mse))


def richardson_lucy(x: np.ndarray, sigma: float = 1.5, iterations: int = 20) -> np.ndarray:
    from skimage.restoration import richardson_lucy as rl

    r = int(np.ceil(4 * sigma))
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    psf = np.outer(g, g) / np.outer(g, g).sum()
    top = float(x.max()) or 1.0
    return rl(x.astype(np.float64) / top, psf, num_iter=iterations, clip=False) * top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="../shared/data/real_pairs/tagan")
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--model", action="append", default=[], help="another model file to score with --scale auto (repeatable)")
    args = parser.parse_args()
    folder = Path(args.folder)
    pairs = sorted(folder.glob("*_confocal_lr.tif"))
    if not pairs:
        raise SystemExit(f"no *_confocal_lr.tif in {folder}")
    default, paper = api.load_model(None), api.load_model("paper")
    methods = {
        "input (confocal)": lambda x: x,
        "Richardson-Lucy 1.5 px": richardson_lucy,
        "default, --scale auto": lambda x: api.enhance(default, x),
        "default, --scale 2": lambda x: api.enhance(default, x, scale=2),
        "default, --scale 3": lambda x: api.enhance(default, x, scale=3),
        "default, --scale 3 --free-coarse": lambda x: api.enhance(default, x, scale=3, keep_coarse=False),
        "paper model": lambda x: api.enhance(paper, x),
    }
    for path in args.model:
        other = api.load_model(path)
        methods[f"{Path(path).parent.name}/{Path(path).name}, --scale auto"] = lambda x, m=other: api.enhance(m, x)
    rows = []
    for lr_path in pairs:
        hr_path = lr_path.with_name(lr_path.name.replace("_confocal_lr", "_sted_hr"))
        x, target = io.read_image(lr_path).data, io.read_image(hr_path).data
        shift = best_shift(x.astype(np.float64), target.astype(np.float64))
        for name, method in methods.items():
            rows.append((lr_path.name.split("_confocal")[0], name, affine_psnr(method(x), target, shift)))
    names = list(methods)
    base = {pair: p for pair, name, p in rows if name == names[0]}
    print(f"{len(pairs)} pairs from {folder}: PSNR (dB) after an affine intensity fit, gain over the input")
    print("| method | mean PSNR | mean gain | min gain | max gain |")
    print("|---|---|---|---|---|")
    for name in names:
        mine = [(pair, p) for pair, n, p in rows if n == name]
        gains = np.array([p - base[pair] for pair, p in mine])
        print(f"| {name} | {np.mean([p for _, p in mine]):.2f} | {gains.mean():+.2f} | {gains.min():+.2f} | {gains.max():+.2f} |")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["pair", "method", "psnr_db", "gain_db"])
            w.writerows((pair, name, f"{p:.3f}", f"{p - base[pair]:.3f}") for pair, name, p in rows)


if __name__ == "__main__":
    main()
