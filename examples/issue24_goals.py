"""Issue 24's goals, cell by cell: what each goal asks, what was measured, and how far short it is.

    python examples/issue24_goals.py [--heldout DIR DIR] [--test DIR] [--saved CSV] [--pairs CSV] [--specialists DIR]

Reads tables made by the other examples, not images: the robustness grids of `examples/robustness.py`
(`cells.csv` of the held-out sources and of the test split, without noise and with 200-photon shot
noise), the saved-file estimates of `examples/blurscale_saved.py --csv` (plain or .gz), the
real-pair scores of `examples/real_pairs.py --csv` and oracle grids of specialists
(`training/specialists`). Prints Markdown: the ×4 gains with `--scale auto`, every cell whose worst
image falls more than 0.1 dB below its input, the sharp images' PSNR to themselves, the default
told the true s against the best specialist, the estimate's share within ±0.5 by file kind and by
kernel and noise, and the real pairs.
models/MODEL_CARD.md carries its output.
"""

from __future__ import annotations

import argparse
import csv
import gzip
from collections import defaultdict
from pathlib import Path

GRIDS = Path("docs/robustness")
X4_GOALS = {"pil": 2.0, "cv2": 1.0, "area": 1.0}  # dB over the input at ×4 with --scale auto
KERNEL_NAMES = {"pil": "PIL", "cv2": "OpenCV", "area": "area", "psf": "native PSF"}
HARM = -0.1  # dB: no image more than this below its input
SHARP = 40.0  # dB: PSNR(G(X), X) of every sharp image at least this
WITHIN = 0.9  # share of saved files of every kind told within ±0.5 of the true s


def read_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def cells(folders: list[Path]) -> dict[tuple[str, float, str], dict]:
    """(kernel, s, noise) -> the grid's row, over the folders' cells.csv."""
    out = {}
    for folder in folders:
        for row in read_rows(folder / "cells.csv"):
            out[(row["kernel"], float(row["s"]), row["noise"])] = row
    return out


def number(row: dict, key: str) -> float | None:
    return float(row[key]) if row.get(key) not in (None, "") else None


def short(value: float, goal: float) -> str:
    return "met" if value >= goal else f"{goal - value:.2f}"


def x4_table(splits: dict[str, dict]) -> list[str]:
    lines = ["| cell | goal | " + " | ".join(f"{name}: mean (worst) | short by" for name in splits) + " |",
             "|---|---|" + "---|---|" * len(splits)]
    for noise in ("none", "poisson200"):
        for kernel, goal in X4_GOALS.items():
            row = f"| {KERNEL_NAMES[kernel]} ×4{'' if noise == 'none' else ', Poisson 200'} | ≥ +{goal:.1f} |"
            for grid in splits.values():
                cell = grid.get((kernel, 4.0, noise))
                if cell is None:
                    row += " – | – |"
                    continue
                mean, worst = number(cell, "gain_db"), number(cell, "worst_gain_db")
                row += f" {mean:+.2f} ({worst:+.2f}) | {short(mean, goal)} |"
            lines.append(row)
    return lines


def harm_table(splits: dict[str, dict]) -> list[str]:
    lines = ["| split | cells | worst image within 0.1 dB | cells short of it: worst image (short by) |", "|---|---|---|---|"]
    for name, grid in splits.items():
        blurred = {key: row for key, row in grid.items() if key[1] > 1}
        failing = sorted(((number(row, "worst_gain_db"), key) for key, row in blurred.items() if number(row, "worst_gain_db") < HARM))
        listed = "; ".join(f"{KERNEL_NAMES[k]} ×{s:g}{'' if n == 'none' else ' P200'} {w:+.2f} ({HARM - w:.2f})" for w, (k, s, n) in failing)
        lines.append(f"| {name} | {len(blurred)} | {len(blurred) - len(failing)} | {listed or '–'} |")
    return lines


def sharp_table(splits: dict[str, dict]) -> list[str]:
    lines = ["| split | PSNR(G(X), X), mean | worst image | goal ≥ 40 dB |", "|---|---|---|---|"]
    for name, grid in splits.items():
        rows = [row for (kernel, s, noise), row in grid.items() if s == 1 and noise == "none" and number(row, "identity_psnr")]
        if rows:
            mean, worst = number(rows[0], "identity_psnr"), number(rows[0], "worst_gain_db")
            lines.append(f"| {name} | {mean:.1f} | {worst:.1f} | {short(worst, SHARP)} |")
    return lines


def saved_table(path: Path, by) -> list[str]:
    """Share of saved files told within ±0.5 by `by(row)` (a row label) and true s, as `--scale auto`
    tells them, with the shortfall from 90 %."""
    hits = defaultdict(lambda: [0, 0])
    for row in read_rows(path):
        for key in ((by(row), row["s"]), (by(row), "all")):
            hits[key][0] += abs(float(row["told"]) - float(row["s"])) <= 0.5
            hits[key][1] += 1
    labels = list(dict.fromkeys(label for label, _ in hits))
    scales = sorted({s for _, s in hits if s != "all"}, key=float) + ["all"]
    lines = ["| files | " + " | ".join("all" if s == "all" else f"s = {float(s):g}" for s in scales) + " | short of 90 % by |",
             "|---|" + "---|" * (len(scales) + 1)]
    for label in labels:
        shares = [hits[(label, s)][0] / hits[(label, s)][1] if hits[(label, s)][1] else float("nan") for s in scales]
        gap = WITHIN - shares[-1]
        lines.append(f"| {label} | " + " | ".join("–" if v != v else f"{v:.0%}" for v in shares) + f" | {'met' if gap <= 0 else f'{gap:.0%}'} |")
    return lines


def noise_label(row: dict) -> str:
    peak = float(row["poisson_peak"])
    return f"{row['kernel']}, " + (f"{peak:g} photons" if peak else "no noise")


def pairs_table(path: Path) -> list[str]:
    gains = defaultdict(list)
    for row in read_rows(path):
        gains[row["method"]].append(float(row["gain_db"]))
    lines = ["| method | mean gain | worst pair |", "|---|---|---|"]
    lines += [f"| {name} | {sum(v) / len(v):+.2f} | {min(v):+.2f} |" for name, v in gains.items()]
    return lines


def specialist_table(folder: Path) -> list[str]:
    """Item 3: told the true s, the default against the best model trained for one degradation, from
    `folder`/<model>-<split>/cells.csv (the default's folder is default-<split>)."""
    lines = ["| cell | split | default | best specialist | gap | goal: within 0.3 dB |", "|---|---|---|---|---|---|"]
    for kernel in ("pil", "area", "psf"):
        for split in ("heldout", "test"):
            gains = {}
            for sub in sorted(folder.glob(f"*-{split}")):
                row = cells([sub]).get((kernel, 4.0, "none"))
                if row is not None and number(row, "gain_db") is not None:
                    gains[sub.name[: -len(split) - 1]] = number(row, "gain_db")
            if "default" not in gains or len(gains) < 2:
                continue
            best = max((name for name in gains if name != "default"), key=gains.get)
            gap = gains[best] - gains["default"]
            lines.append(f"| {KERNEL_NAMES[kernel]} ×4 | {split} | {gains['default']:+.2f} | {gains[best]:+.2f} ({best}) | "
                         f"{gap:.2f} | {'met' if gap <= 0.3 else f'short by {gap - 0.3:.2f}'} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heldout", nargs="+", type=Path, default=[GRIDS / "ficli-default-heldout-r8", GRIDS / "ficli-default-heldout-r8-p200"],
                    help="grid folders of the held-out sources (cells.csv in each) [round 8's, clean and Poisson 200]")
    ap.add_argument("--test", nargs="+", type=Path, default=[GRIDS / "ficli-default-test-r8"],
                    help="grid folders of the test split [round 8's; its Poisson 200 cells are in the same folder]")
    ap.add_argument("--saved", type=Path, default=GRIDS / "saved-files.csv.gz",
                    help="examples/blurscale_saved.py --csv output, plain or .gz [round 8's, docs/robustness/saved-files.csv.gz]")
    ap.add_argument("--pairs", type=Path, default=GRIDS / "real-pairs.csv", help="examples/real_pairs.py --csv output [docs/robustness/real-pairs.csv]")
    ap.add_argument("--specialists", type=Path, default=GRIDS / "specialists",
                    help="folder of oracle grids, <model>-heldout and <model>-test, one of them default [docs/robustness/specialists]")
    args = ap.parse_args(argv)
    splits = {"held-out": cells(args.heldout), "test": cells(args.test)}
    sections = [("×4 with `--scale auto`, gain over the input in dB", x4_table(splits)),
                ("No image more than 0.1 dB below its input (blurred cells)", harm_table(splits)),
                ("Sharp images come back as they are", sharp_table(splits))]
    if args.specialists.is_dir():
        sections.append(("Told the true s, the default against a model trained for one degradation (item 3)", specialist_table(args.specialists)))
    if args.saved.exists():
        sections.append(("`--scale auto` within ±0.5 of the true s on saved files, by file kind (goal: 90 % of every kind)",
                         saved_table(args.saved, lambda row: row["kind"])))
        sections.append(("The same files by kernel and noise", saved_table(args.saved, noise_label)))
    if args.pairs.exists():
        sections.append(("Real pairs, same grid (goal: never below the input, on average at least Richardson-Lucy's gain)", pairs_table(args.pairs)))
    for title, lines in sections:
        print(f"**{title}**\n")
        print("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
