"""The robust model's campaign in one figure: validation PSNR (model and input) and PSNR(G(X), X) of
sharp images against cumulative training hours, over the runs that continued one another.

    python examples/plot_campaign.py training/robust/metrics_phase1.csv training/robust/metrics.csv \
        --labels "phase 1: PSF uniform in [0, 2] px" "phase 2: PSF tied to s" --out training/robust/curves.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics", nargs="+", type=Path, help="metrics.csv of each run, in training order")
    ap.add_argument("--labels", nargs="+", required=True)
    ap.add_argument("--start-hours", type=float, default=0.0, help="training hours before the first run [0]")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    offset = args.start_hours
    for path, label in zip(args.metrics, args.labels):
        rows = list(csv.DictReader(path.open()))
        hours = [offset + float(r["train_seconds"]) / 3600 for r in rows]
        ax1.plot(hours, [float(r["val_psnr"]) for r in rows], "o-", ms=3, label=f"model, {label}")
        ax2.plot(hours, [float(r["val_identity_psnr"]) for r in rows], "o-", ms=3, label=label)
        offset = hours[-1]
    ax1.axhline(float(rows[0]["val_bicubic_psnr"]), color="grey", ls="--", label="input as it is")
    ax1.set_title("validation: s 1.5/2/3/4, four kernels")
    ax2.set_title("sharp images told s = 1: PSNR(G(X), X)")
    for ax in (ax1, ax2):
        ax.set_xlabel("cumulative training hours (wall, 1 torch thread)")
        ax.set_ylabel("PSNR (dB, normalised scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
