"""Compose a row of same-place crops from several images into one labelled PNG panel.

    python examples/make_panel.py --crop X,Y,SIZE --out docs/panel.png HR=hr.png bicubic=lr.png ficli=sr.png

Each crop is shown with the display range of the first image's crop (so brightness is comparable);
the values are not changed. Used for the README's before/after figure and the ablation panel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ficli.image import io


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="LABEL=PATH, in panel order; the first sets the display range")
    parser.add_argument("--crop", required=True, help="X,Y,SIZE in pixels of the first image")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--title", default=None)
    args = parser.parse_args()
    x, y, size = (int(v) for v in args.crop.split(","))
    pairs = [item.rsplit("=", 1) for item in args.images]  # labels may hold "=", paths do not
    crops = []
    for _, path in pairs:
        data = io.read_image(path).frames[0].astype(np.float64)
        data = data.mean(axis=2) if data.ndim == 3 else data
        crops.append(data[y : y + size, x : x + size])
    lo, hi = np.percentile(crops[0], [0.5, 99.5])
    fig, axes = plt.subplots(1, len(crops), figsize=(2.6 * len(crops), 2.9))
    for ax, (label, _), crop in zip(np.atleast_1d(axes), pairs, crops):
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    if args.title:
        fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    with io.atomic_write(args.out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
