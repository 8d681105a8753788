"""The ablation's table (docs/ABLATION.md) from `ficli evaluate --json` files, one per input kernel.

Methods are named VARIANT_sSEED (e.g. gan_tg_kN_2_s0); each metric is the mean over the test crops
for one seed, then mean ± half the range over seeds. "Δ vs no TG" is the same metric minus that of
the run without TG with the same critic setting and seed, averaged over seeds, with its own half range:
a difference smaller than the seeds' spread is not one this budget can show.

    python examples/ablation_table.py pil/scores.json cv2/scores.json --out docs/ablation/table.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

LOWER_IS_BETTER = ("rmse", "texture")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scores", nargs="+", type=Path, help="ficli evaluate --json files (the folder's name is the input kernel)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    parts = [_table(path) for path in args.scores]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n\n".join(parts) + "\n")
    print("\n\n".join(parts))
    return 0


def _table(path: Path) -> str:
    summary = json.loads(path.read_text())
    metrics = [k for k, v in summary["methods"][0].items() if isinstance(v, dict) and "mean" in v]
    by_run = {m["name"]: {k: m[k]["mean"] for k in metrics} for m in summary["methods"]}
    groups: dict[str, dict[str, dict]] = {}
    for name, values in by_run.items():
        match = re.fullmatch(r"(.+)_s(\d+)", name)
        variant, seed = (match.group(1), match.group(2)) if match else (name, "-")
        groups.setdefault(variant, {})[seed] = values
    head = f"**{path.parent.name} ×4** ({summary['methods'][0]['n']} test crops, {summary['scale']} scale; mean ± half the range over seeds)"
    cols = " | ".join(metrics)
    lines = [head, "", f"| variant | seeds | {cols} | Δ PSNR vs no TG (dB) | Δ SSIM vs no TG | Δ {metrics[-1]} vs no TG |",
             "|---|---|" + "---|" * (len(metrics) + 3)]
    for variant, seeds in groups.items():
        cells = [_spread([seeds[s][k] for s in seeds], k) for k in metrics]
        base = re.sub(r"tg_k\w+$", "no_tg", variant)
        deltas = ["" for _ in range(3)]
        if base != variant and base in groups:
            common = [s for s in seeds if s in groups[base]]
            deltas = [_spread([seeds[s][k] - groups[base][s][k] for s in common], k, signed=True)
                      for k in ("psnr_db", "ssim", metrics[-1])]
        lines.append(f"| {variant} | {len(seeds)} | " + " | ".join(cells) + " | " + " | ".join(deltas) + " |")
    return "\n".join(lines)


def _spread(values: list[float], metric: str, signed: bool = False) -> str:
    mean = sum(values) / len(values)
    half = (max(values) - min(values)) / 2
    digits = 2 if "psnr" in metric or "texture" in metric else 4
    sign = "+" if signed else ""
    return f"{mean:{sign}.{digits}f} ± {half:.{digits}f}" if len(values) > 1 else f"{mean:{sign}.{digits}f}"


if __name__ == "__main__":
    raise SystemExit(main())
