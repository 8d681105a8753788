"""The noise-level router of README.md: per image, model A where the input's noise estimate is above a
threshold, else model B, scored from two `examples/robustness.py` runs on the same cells.

    python training/noise-kept-1200/router.py --data @examples/splits/heldout_sources.txt \
        --a docs/robustness/ficli-default-heldout-r3/images.csv docs/robustness/ficli-default-heldout-p200/images.csv \
        --b docs/robustness/noise-kept-1200-heldout/images.csv

The noise estimate is Immerkær's (1996) on the input (made again as robustness.py makes it) mapped
to its 0.1/99.9 percentiles and shrunk by the s it was told (area kernel), where the noise added at
the small grid is white again.
"""
import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import robustness  # noqa: E402
from ficli.image import io  # noqa: E402
from ficli.image.intensity import normalize, percentile_range  # noqa: E402

LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def immerkaer(u: np.ndarray) -> float:
    r = cv2.filter2D(u.astype(np.float32), -1, LAPLACE, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).sum() / (6 * r.size))


def gains(paths) -> tuple[dict, dict]:
    gain, told = {}, {}
    for p in paths:
        for r in csv.DictReader(open(p)):
            key = (r["image"], r["kernel"], r["s"], r["noise"])
            told[key] = float(r["told_s"] or 1)
            if r["psnr_in"] != "inf":
                gain[key] = float(r["psnr_out"]) - float(r["psnr_in"])
    return gain, told


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--a", nargs="+", required=True, help="images.csv of the model chosen for noisy inputs")
    ap.add_argument("--b", nargs="+", required=True, help="images.csv of the model chosen for the others")
    args = ap.parse_args()
    a, told = gains(args.a)
    b, _ = gains(args.b)
    noise = {}
    for item in io.collect_inputs([args.data]):
        hr = robustness._crop(io.read_image(item.path).data, 256)
        for key in [k for k in b if k[0] == item.path.name and k in a and k[2] != "1.0"]:
            _, kernel, s, level = key
            y = robustness.cell_input(item.path.name, hr, kernel, float(s), level)
            u = np.asarray(normalize(y, *percentile_range(y)), np.float32)
            t = max(told[key], 1.0)
            noise[key] = immerkaer(cv2.resize(u, (round(u.shape[1] / t), round(u.shape[0] / t)), interpolation=cv2.INTER_AREA))
    for thr in (0.0, 0.002, 0.004, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02, 0.03, float("inf")):
        cells: dict = {}
        for key, level in noise.items():
            cells.setdefault(key[1:], []).append(a[key] if level > thr else b[key])
        total = sum(float(np.mean(v)) for v in cells.values())
        within = sum(min(v) >= -0.1 for v in cells.values())
        oracle = sum(float(np.mean([max(a[k], b[k]) for k in noise if k[1:] == c])) for c in cells)
        print(f"threshold {thr:<6} sum of means {total:+.2f} dB, cells within 0.1 dB {within} of {len(cells)} (oracle {oracle:+.2f})")


if __name__ == "__main__":
    main()
