"""The blur-scale estimator's error table: kernel × s, on images it was not calibrated on.

    python examples/blurscale_errors.py ../shared/data/fluorescence/test [--poisson-peak 200]

Each image (its central 512² at most) is degraded with each kernel of `ficli degrade` at each s, and
`ficli.image.blurscale.estimate_scale_template` (the template fit) is asked for s;
examples/blurscale_saved.py measures the learned estimate on saved files. Prints a Markdown table of mean |error| / max
|error| per cell, the share of estimates within ±0.5, and the estimates for the images as they are.
"""

from __future__ import annotations

import argparse

import numpy as np
from calibrate_blurscale import load_gray  # the example beside this one (its folder is on sys.path)

from ficli.image import io
from ficli.image.blurscale import estimate_scale_template as estimate_scale  # the template fit, whose table docs/DEGRADATIONS.md keeps
from ficli.image.degrade import KERNELS, Degradation, degrade

SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--poisson-peak", type=float, default=0.0)
    args = parser.parse_args()
    items = io.collect_inputs(args.inputs, recursive=True)
    errors = np.zeros((len(items), len(KERNELS), len(SCALES)))
    native = []
    for a, item in enumerate(items):
        x = load_gray(item.path)
        native.append((item.path.name, estimate_scale(x).scale))
        for b, kernel in enumerate(KERNELS):
            for c, s in enumerate(SCALES):
                y = degrade(x, Degradation(scale=s, kernel=kernel, poisson_peak=args.poisson_peak), np.random.default_rng(a))
                est = estimate_scale(y).scale
                errors[a, b, c] = np.nan if est is None else est - s
    noise = f", Poisson peak {args.poisson_peak:g}" if args.poisson_peak else ", no noise"
    print(f"{len(items)} images{noise}: mean |error| / max |error| of the estimated s")
    print("| kernel | " + " | ".join(f"s = {s:g}" for s in SCALES) + " | all |")
    print("|---" * (len(SCALES) + 2) + "|")
    for b, kernel in enumerate(KERNELS):
        e = np.abs(errors[:, b])
        cells = [f"{np.nanmean(e[:, c]):.2f} / {np.nanmax(e[:, c]):.2f}" for c in range(len(SCALES))]
        print(f"| {kernel} | " + " | ".join(cells) + f" | {np.nanmean(e):.2f} / {np.nanmax(e):.2f} |")
    e = np.abs(errors)
    print(f"within ±0.5: {np.mean(e <= 0.5):.1%} of {e.size}; bias (mean signed error) {np.nanmean(errors):+.2f}")
    worst = np.unravel_index(np.nanargmax(e), e.shape)
    print(f"worst: {items[worst[0]].path.name} {KERNELS[worst[1]]} s = {SCALES[worst[2]]:g}: error {errors[worst]:+.2f}")
    print("images as they are: " + ", ".join(f"{n} {s}" for n, s in native))
    values = np.array([s for _, s in native if s is not None])
    print(f"as they are: s = {values.mean():.2f} ± {values.std():.2f} (min {values.min():.2f}, max {values.max():.2f})")


if __name__ == "__main__":
    main()
