"""Score rules for the s `--scale auto` tells, from `told_scale_sweep.py`'s tables, without running
a model again.

    python examples/told_scale_rules.py docs/robustness/told-scale-sweep/default-heldout-none.csv

A cell's output at any told s is read off the sweep by linear interpolation between the told values
it ran, told 1 taken as the input itself (with the coarse content kept, the default told s = 1 moved
PSNR by at most 0.014 dB on 120 cells of the test split; the output as it is is only read at told
s ≥ --free-from). Prints, per rule and with the coarse content kept (as shipped) or the output as it is above a
told s (`free ≥ T`), the sum of the cells' mean gains in dB, the cells whose worst image is within
0.1 dB of its input, the ×4 cells' means, the worst image at s = 1.5 and, for sharp images (s = 1, no noise), the lowest
PSNR(G(X), X).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict

import numpy as np

from ficli.image.blurscale import ScaleEstimate
from ficli.inference import runtime


def _number(v: str) -> float | None:
    return float(v) if v not in ("", "None") else None


def load(paths: list[str]) -> dict:
    """(image, kernel, s, noise) -> its readings and PSNR at each told s (told 1: the input)."""
    cells: dict = {}
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                key = (r["image"], r["kernel"], float(r["s"]), r["noise"])
                c = cells.setdefault(key, {"learned": _number(r["learned"]), "low": _number(r["learned_low"]),
                                           "high": _number(r["learned_high"]), "template": _number(r["template"]),
                                           "below": _number(r.get("below_floor", "")),
                                           "auto": float(r["auto"]), "in": float(r["psnr_in"]), "told": [1.0],
                                           "free": [float(r["psnr_in"])], "coarse": [float(r["psnr_in"])]})
                c["told"].append(float(r["told"]))
                c["free"].append(float(r["psnr_free"]))
                c["coarse"].append(float(r["psnr_coarse"]))
    return cells


def _learned(c: dict) -> ScaleEstimate:
    """A row's learned estimate with its interval."""
    return ScaleEstimate(c["learned"], low=c["low"], high=c["high"])


def learned_reading(c: dict) -> float:
    """`runtime.learned_reading` of a row's learned estimate (its lower end where unsure); the
    training scale, 4, where there was none."""
    if c["learned"] is None:
        return 4.0
    return runtime.learned_reading(_learned(c))[0]


def told_now(c: dict) -> float:
    """What `--scale auto` tells now (`runtime.told_scale` on a row's readings, with the template fit
    under the rounding noise where the table has it); the row's `auto` where nothing was estimated."""
    if c["learned"] is None:
        return c["auto"]
    return runtime.told_scale(_learned(c), ScaleEstimate(c["template"], below_floor=c["below"]))[0]


def less_native(s: float, native: float) -> float:
    """s with a native blur of `native` taken off in quadrature (blur widths add as squares)."""
    return math.sqrt(max(s * s - native * native, 1.0))


RULES = {
    "true s (oracle)": lambda key, c: key[2],
    "shipped: runtime.told_scale": lambda key, c: told_now(c),
    "round 7: the smaller reading": lambda key, c: c["auto"],
    "learned reading": lambda key, c: learned_reading(c),
    "template fit": lambda key, c: c["template"] or 4.0,
    "round 7 less a native blur of 1.5": lambda key, c: less_native(c["auto"], 1.5),
    "round 7 less a native blur of 2": lambda key, c: less_native(c["auto"], 2.0),
    "learned less a native blur of 2": lambda key, c: less_native(learned_reading(c), 2.0),
    "learned less a native blur of 2.5": lambda key, c: less_native(learned_reading(c), 2.5),
}


def score(cells: dict, rule, free_from: float) -> tuple[float, int, int, dict]:
    per, sharp = defaultdict(list), []
    for key, c in cells.items():
        told = min(max(rule(key, c), 1.0), 4.0)
        out = float(np.interp(told, c["told"], c["free" if told >= free_from else "coarse"]))
        if key[2] == 1.0 and key[3] == "none":
            sharp.append(out)  # the sharp image itself: PSNR(G(X), X), infinite where unchanged
        else:
            per[key[1:]].append(out - c["in"])
    total = sum(float(np.mean(v)) for v in per.values())
    within = sum(min(v) >= -0.1 for v in per.values())
    shown = {f"{k[0]} ×4": float(np.mean(v)) for k, v in per.items() if k[1] == 4.0}
    at_one_and_a_half = [min(v) for k, v in per.items() if k[1] == 1.5]
    if at_one_and_a_half:
        shown["worst ×1.5"] = min(at_one_and_a_half)
    if sharp:
        shown["sharp: worst PSNR(G(X), X)"] = min(sharp)
    return total, within, len(per), shown


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweeps", nargs="+", help="CSV files of told_scale_sweep.py (shards of one run together)")
    ap.add_argument("--free-from", default="inf,3.25", help="told s from which the output is taken as it is; inf = never [inf,3.25]")
    ap.add_argument("--rules", default=",".join(RULES), help="which rules, comma-separated (their names hold no comma) [all]")
    args = ap.parse_args(argv)
    cells = load(args.sweeps)
    header = None
    for free_from in (float(v) for v in args.free_from.split(",")):
        for name in args.rules.split(","):
            total, within, n, shown = score(cells, RULES[name], free_from)
            if header is None:
                header = ["rule", "coarse content", "sum of cells (dB)", "cells within 0.1 dB", *shown]
                print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
            kept = "kept" if math.isinf(free_from) else f"free ≥ {free_from:g}"
            print(f"| {name} | {kept} | {total:+.2f} | {within} of {n} | " + " | ".join(f"{v:+.2f}" for v in shown.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
