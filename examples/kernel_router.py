"""Can `--scale auto`'s spectrum tell which kernel resized a file? (issue 24 item 3: a router to
kernel specialists needs it.)

    python examples/kernel_router.py [--per-image 12] [--steps 3000]

Saved files of the training sources (examples/savedfiles.py: a kernel of `degrade.KERNELS` at s in
[1.5, 6], the family's PSF tie, shot noise on 45 %, one of the file kinds) give the estimator's
features (`blurscale.features`); a 65-64-64-4 MLP learns the kernel from them, and is scored on saved
files of the held-out sources (examples/splits/heldout_sources.txt), in all and on the easiest
subset (no PSF, no noise, float files). Chance is 25 %. About two minutes on one core.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from savedfiles import FILE_KINDS, load_unit, save_as  # the example beside this one

from ficli.image import io
from ficli.image.blurscale import features
from ficli.image.degrade import KERNELS, Degradation, degrade


def dataset(paths, per_image: int, seed: int, easy: bool = False):
    """(features, kernel index, s, easy-case flag) of `per_image` saved files per image; `easy`: every
    file without PSF, noise or rounding."""
    rng = np.random.default_rng(seed)
    rows = []
    for path in paths:
        x = load_unit(path, side=384)
        for _ in range(per_image):
            s, k = float(rng.uniform(1.5, 6)), int(rng.integers(len(KERNELS)))
            plain = easy or rng.random() < 0.25
            setting = Degradation(scale=s, kernel=KERNELS[k], psf_sigma=0.0 if plain else float(rng.uniform(0, 1.5 * (s - 1) / 3)),
                                  poisson_peak=0.0 if plain or rng.random() >= 0.45 else float(np.exp(rng.uniform(np.log(10), np.log(3000)))))
            kind = "float" if plain else list(FILE_KINDS)[rng.integers(len(FILE_KINDS))]
            f = features([save_as(degrade(x, setting, rng, top=1.0), kind, rng)])
            if f is not None and f[0] is not None:
                rows.append((f[0], k, s, plain))
    f, k, s, plain = zip(*rows)
    return np.array(f, np.float32), np.array(k), np.array(s), np.array(plain)


def split(name: str) -> list:
    lines = [line.strip() for line in open(f"examples/splits/{name}.txt") if line.strip() and not line.startswith("#")]
    return [item.path for item in io.collect_inputs(lines, recursive=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-image", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    xtr, ktr, _, _ = dataset(split("robust_train"), args.per_image, 0)
    xte, kte, ste, plain = dataset(split("heldout_sources"), args.per_image, 1)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(xtr.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, len(KERNELS)))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-3)
    x, y = torch.from_numpy((xtr - mean) / std), torch.from_numpy(ktr)
    for _ in range(args.steps):
        idx = torch.randint(len(x), (256,))
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        fit = (net(x).argmax(1).numpy() == ktr).mean()
        pred = net(torch.from_numpy((xte - mean) / std)).argmax(1).numpy()
    hit = pred == kte
    print(f"{len(xtr)} training files (accuracy on them {fit:.0%}), {len(xte)} held-out files; chance {1 / len(KERNELS):.0%}")
    print("| held-out files | n | kernel read right |\n|---|---|---|")
    print(f"| all | {len(hit)} | {hit.mean():.0%} |")
    print(f"| no PSF, no noise, float | {plain.sum()} | {hit[plain].mean():.0%} |")
    for lo, hi in ((1.5, 3.0), (3.0, 4.5), (4.5, 6.0)):
        sel = (ste >= lo) & (ste < hi)
        print(f"| s in [{lo}, {hi}) | {sel.sum()} | {hit[sel].mean():.0%} |")


if __name__ == "__main__":
    main()
