"""Milliseconds per training batch for `ficli.image.degrade.degrade_batch` (16 crops of 128², 1 channel).

    python benchmarks/degrade_batch.py [--batch 16] [--crop 128] [--repeats 30] [--threads 1]

Prints one row per setting of `DegradationRanges`: the default mixture, and each kernel alone at
s ∈ (1, 4] with blur and both noises, so the cost of each part is seen.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from ficli.image.degrade import KERNELS, DegradationRanges, degrade_batch


def time_batches(hr: torch.Tensor, ranges: DegradationRanges, repeats: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    degrade_batch(hr, ranges, rng)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        degrade_batch(hr, ranges, rng)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    hr = torch.rand(args.batch, 1, args.crop, args.crop)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"degrade_batch: {args.batch}×1×{args.crop}² crops, {args.threads} thread(s), {cpu}, torch {torch.__version__}")
    print(f"{'ranges':<34} {'median ms':>10} {'p90 ms':>8}")
    rows = [("default (15% sharp, all kernels)", DegradationRanges())]
    rows += [(f"{k} only, no sharp crops", DegradationRanges(kernels=(k,), sharp_fraction=0, poisson_p=1, read_p=1)) for k in KERNELS]
    rows += [("pil only, no blur, no noise", DegradationRanges(kernels=("pil",), sharp_fraction=0, psf_sigma_max=0, poisson_p=0, read_p=0))]
    for name, ranges in rows:
        med, p90 = time_batches(hr, ranges, args.repeats)
        print(f"{name:<34} {med:>10.2f} {p90:>8.2f}")


if __name__ == "__main__":
    main()
