"""The blur-scale estimators' errors on saved files of sources they were not trained on (issue 24).

    python examples/blurscale_saved.py @examples/splits/heldout_sources.txt ../shared/data/fluorescence/test

Each image (central 256²) is degraded with each kernel (pil, area, cv2) and a native PSF
(σ = s/2.4) at s = 1, 2, 3, 4, without noise and with 100-photon shot noise, then saved as each
file kind (its own type, 8-bit, dim 8-bit, 12 bits in 16, 16-bit narrow, float; `--kinds` chooses, and
can add an H.264-coded 8-bit frame); the learned
estimate and the template fit (`blurscale.readings`, as `--scale auto` reads a file, with the
template fit under the file's rounding noise, `below_floor`) are asked for s, and the s that
`--scale auto` tells (`runtime.told_scale`: the learned estimate, or where it is unsure its
interval's lower end, or the template fit where that reads lower; from BELOW_FLOOR_FROM up the fit
under the rounding noise). Prints Markdown tables
of the share within ±0.5 by file kind × s and kernel × s, the share told more than 0.5 above the
truth, and the share of true values inside the learned estimate's 68 % interval; --csv keeps every
estimate.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from savedfiles import VIDEO_KINDS, load_unit, save_as, use_estimator  # the example beside this one

from ficli.image import io
from ficli.image.blurscale import readings
from ficli.image.degrade import PSF_S_PER_SIGMA, Degradation, degrade
from ficli.inference.runtime import told_scale

KINDS = ("own", "8-bit", "8-bit dim", "12-bit in 16", "16-bit narrow", "float")
KERNELS = ("pil", "area", "cv2", "native PSF")
SCALES = (1.0, 2.0, 3.0, 4.0)
NOISE = (0.0, 100.0)


def setting(kernel: str, s: float, peak: float) -> Degradation:
    if kernel == "native PSF":
        return Degradation(scale=1.0, psf_sigma=(s / PSF_S_PER_SIGMA) if s > 1 else 0.0, poisson_peak=peak)
    return Degradation(scale=s, kernel=kernel, poisson_peak=peak)


def table(title: str, rows, cols, ok, key_row, key_col) -> None:
    print(f"\n{title}\n")
    print("| | " + " | ".join(f"s = {c:g}" for c in cols) + " | all |")
    print("|---" * (len(cols) + 2) + "|")
    for r in rows:
        cells = [ok[(key_row == r) & (key_col == c)] for c in cols]
        mine = ok[key_row == r]
        print(f"| {r} | " + " | ".join(f"{np.mean(c):.0%}" for c in cells) + f" | {np.mean(mine):.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"file kinds, comma-separated [{','.join(KINDS)}]; also: {', '.join(VIDEO_KINDS)}")
    parser.add_argument("--mlp", type=Path, help="another learned estimator's file (train_blurscale.py --out) [the shipped one]")
    args = parser.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(","))
    if args.mlp:
        use_estimator(args.mlp)
    items = io.collect_inputs(args.inputs, recursive=True)
    rec = []  # (kind, kernel, s, peak, learned, low, high, template, told, image)
    started = time.time()
    for a, item in enumerate(items):
        x, levels, top = load_unit(item.path, side=args.side, own=True)
        rng = np.random.default_rng(a)
        for kernel in KERNELS:
            for s in SCALES:
                if s == 1 and kernel != "pil":
                    continue  # s = 1 is the image as it is, whatever the kernel
                for peak in NOISE:
                    y = degrade(x, setting(kernel, s, peak), rng, top=1.0)
                    for kind in kinds:
                        saved = save_as(y, kind, rng, fraction=None, own=(levels, top))
                        learned, template = readings([saved])
                        told = told_scale(learned, template)[0] if learned.scale is not None else np.nan
                        rec.append((kind, kernel, s, peak, learned.scale or np.nan, learned.low or np.nan,
                                    learned.high or np.nan, template.scale or np.nan, told, item.path.name))
        print(f"{item.path.name}: {time.time() - started:.0f} s", flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["kind", "kernel", "s", "poisson_peak", "learned", "low", "high", "template", "told", "image"])
            w.writerows(rec)
    kind, kernel = (np.array([r[i] for r in rec]) for i in (0, 1))
    s, peak, est, low, high, tmpl, told = (np.array([r[i] for r in rec], float) for i in range(2, 9))
    ok_l, ok_t, ok_told = np.abs(est - s) <= 0.5, np.abs(tmpl - s) <= 0.5, np.abs(told - s) <= 0.5
    print(f"{len(items)} images, {len(rec)} saved files, {time.time() - started:.0f} s")
    print(f"within ±0.5: learned {ok_l.mean():.1%}, template {ok_t.mean():.1%}; mean |error| learned "
          f"{np.nanmean(np.abs(est - s)):.2f}, template {np.nanmean(np.abs(tmpl - s)):.2f}; "
          f"true s inside the learned 68 % interval {np.mean((low <= s) & (s <= high)):.0%}")
    print(f"told by --scale auto: within ±0.5 {ok_told.mean():.1%}, more than 0.5 above the truth {np.mean(told - s > 0.5):.1%}, "
          f"more than 0.5 below {np.mean(s - told > 0.5):.1%}")
    table("Told by --scale auto, share within ±0.5, by file kind", kinds, SCALES, ok_told, kind, s)
    table("Told by --scale auto, share more than 0.5 above the truth (over-sharpening), by file kind", kinds, SCALES,
          told - s > 0.5, kind, s)
    table("Learned, share within ±0.5, by file kind", kinds, SCALES, ok_l, kind, s)
    table("Template fit (before), share within ±0.5, by file kind", kinds, SCALES, ok_t, kind, s)
    table("Learned, share within ±0.5, by kernel", KERNELS, SCALES, ok_l, kernel, s)
    noise = np.where(peak > 0, "100 photons", "no noise")
    table("Learned, share within ±0.5, by noise", ("no noise", "100 photons"), SCALES, ok_l, noise, s)
    print("\nLearned, mean signed error by file kind: " + ", ".join(f"{k} {np.nanmean((est - s)[kind == k]):+.2f}" for k in kinds))


if __name__ == "__main__":
    main()
