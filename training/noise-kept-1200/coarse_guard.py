"""A per-image guard between the free and the coarse-kept output of the noise-kept model: use the
network's output as it is (`--free-coarse`) unless the coarse part of its correction, B_s(y − x),
reaches T of the input's 0.1/99.9-percentile range somewhere; then keep the coarse content.

    python training/noise-kept-1200/coarse_guard.py @examples/splits/heldout_sources.txt \
        docs/robustness/noise-kept-1200-heldout/images.csv docs/robustness/noise-kept-1200-heldout-free/images.csv

For each cell (clean unless --noise says) of `examples/robustness.py` (same crops, seeds and `--scale auto`), one free
pass of models/ficli-noise-kept.safetensors gives the coarse move; the two runs' images.csv give
each image's gain either way. Prints the sum of the cells' means, the cells whose worst image is
within 0.1 dB, and PSNR(G(X), X) of sharp images, by threshold T (0 = always coarse kept).
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import robustness  # noqa: E402
from ficli.image import io  # noqa: E402
from ficli.image.degrade import keep_coarse_array  # noqa: E402
from ficli.image.intensity import percentile_range  # noqa: E402
from ficli.inference.enhance import EnhanceOptions, enhance_frames  # noqa: E402
from ficli.inference.runtime import load_generator, scale_chooser  # noqa: E402

THRESHOLDS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, float("inf"))


def coarse_moves(data: str, noise: str) -> dict:
    """(image, kernel, s) -> the largest |B_s(y − x)| of the free output, in units of the input's range."""
    generator, meta = load_generator("noise-kept", torch.device("cpu"))
    moves = {}
    for item in io.collect_inputs([data]):
        hr = robustness._crop(io.read_image(item.path).data, 256)
        for kernel in ("pil", "cv2", "area", "psf"):
            for s in (1.0, 1.5, 2.0, 3.0, 4.0):
                y = robustness.cell_input(item.path.name, hr, kernel, s, noise)
                told, how = scale_chooser(meta, None)([y])
                options = EnhanceOptions(keep_coarse=False, scale_for=lambda frames, upscale, t=told, h=how: (t, h))
                free = enhance_frames(generator, [y], options)[0].astype(np.float32)
                lo, hi = percentile_range(y)
                coarse = free - keep_coarse_array(free[None], y[None].astype(np.float32), told)[0]
                moves[(item.path.name, kernel, str(s))] = float(np.abs(coarse).max() / max(hi - lo, 1e-6))
    return moves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("coarse_csv", help="images.csv of the model run with the coarse content kept")
    ap.add_argument("free_csv", help="images.csv of the same run with --free-coarse")
    ap.add_argument("--noise", default="none", choices=sorted(robustness.NOISE), help="the cells' noise [none]")
    args = ap.parse_args()
    runs = [{(r["image"], r["kernel"], r["s"]): r for r in csv.DictReader(open(p)) if r["noise"] == args.noise}
            for p in (args.coarse_csv, args.free_csv)]
    moves = coarse_moves(args.data, args.noise)
    for threshold in THRESHOLDS:
        cells, sharp = {}, []
        for key, move in moves.items():
            r = runs[1][key] if move < threshold else runs[0][key]
            if r["psnr_in"] == "inf":
                sharp.append(float(r["psnr_out"]))
            else:
                cells.setdefault(key[1:], []).append(float(r["psnr_out"]) - float(r["psnr_in"]))
        total = sum(float(np.mean(v)) for v in cells.values())
        within = sum(min(v) >= -0.1 for v in cells.values())
        finite = [v for v in sharp if np.isfinite(v)]
        identity = f", sharp images {np.mean(finite):.1f} dB (worst {min(sharp):.1f})" if finite else ""
        print(f"T {threshold:<5} sum of means {total:+.2f} dB, cells within 0.1 dB {within} of {len(cells)}{identity}, "
              f"free output for {np.mean([m < threshold for m in moves.values()]):.0%}")


if __name__ == "__main__":
    main()
