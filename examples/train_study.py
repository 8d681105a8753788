"""Validation PSNR against CPU-minutes for a few training settings (docs/TRAINING.md's crop/batch study).

Each setting is one `ficli train` run, started from the same weights with the same options, run
alone (never two at once) until its process CPU time (`cpu_seconds` in metrics.csv, summed over
epochs) reaches --budget CPU-minutes, then stopped with Ctrl-C's signal after the epoch in
progress. The machine is shared, so CPU time, not wall time, is what the settings are compared on.
Writes REPORT/{table.md,study.csv,study.png}.

    python examples/train_study.py --out runs/study --report docs/training_study --budget 5 \
        --setting c32b16:32:16:150 --setting c96b4:96:4:60 --setting c128b4:128:4:40 \
        -- --stage finetune --no-gan --init runs/stage1/best.safetensors \
           --data ../shared/data/fluorescence/train --val ../shared/data/fluorescence/val --lr 1e-4

A setting is NAME:CROP:BATCH:STEPS (STEPS batches per epoch: pick about one CPU-minute's worth).
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the runs (one sub-folder per setting)")
    ap.add_argument("--report", type=Path, required=True, help="folder for table.md, study.csv and study.png")
    ap.add_argument("--budget", type=float, default=10.0, help="CPU-minutes per setting [10]")
    ap.add_argument("--setting", action="append", required=True, help="NAME:CROP:BATCH:STEPS, repeatable")
    args = ap.parse_args(own)
    rows = []
    for spec in args.setting:
        name, crop, batch, steps = spec.split(":")
        run = args.out / name
        if not (run / "metrics.csv").exists():
            _run(run, ["--crop", crop, "--batch", batch, "--steps", steps, "--epochs", "1000", "--patience", "1000", *extra],
                 args.budget * 60)
        rows += [{"setting": name, "crop": int(crop), "batch": int(batch), **r} for r in _curve(run / "metrics.csv")]
    args.report.mkdir(parents=True, exist_ok=True)
    _write(args.report, rows, args.budget)
    return 0


def _run(run: Path, options: list[str], budget_s: float) -> None:
    """One `ficli train` until its summed cpu_seconds reach `budget_s`, then SIGINT (it keeps every finished epoch)."""
    cmd = ["ficli", "train", "--out", str(run), *options]
    print(" ".join(cmd), file=sys.stderr, flush=True)
    # SIGINT back to its default in the child: a shell starts background jobs with it ignored, and
    # Python then installs no KeyboardInterrupt handler, so the signal below would do nothing.
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stopping = False
    while proc.poll() is None:
        time.sleep(5)
        curve = _curve(run / "metrics.csv")
        if not stopping and curve and curve[-1]["cpu_min"] * 60 >= budget_s:
            proc.send_signal(signal.SIGINT)
            stopping = True
    if not stopping and proc.returncode:
        raise SystemExit(f"{run}: ficli train failed with exit {proc.returncode}")


def _curve(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    out, cpu = [], 0.0
    for r in rows:
        cpu += float(r["cpu_seconds"])
        out.append({"epoch": int(r["epoch"]), "step": int(r["step"]), "cpu_min": cpu / 60, "val_psnr": float(r["val_psnr"]),
                    "val_ssim": float(r["val_ssim"]), "input_psnr": float(r["val_bicubic_psnr"]),
                    "samples_per_s": float(r["samples_per_s"])})
    return out


def _write(report: Path, rows: list[dict], budget: float) -> None:
    with (report / "study.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"| setting | crop | batch | samples/s | steps in {budget:g} CPU-min | best val PSNR (dB) | at CPU-min | "
             "last val PSNR | input PSNR |", "|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["setting"] for r in rows):
        part = [r for r in rows if r["setting"] == name]
        within = [i for i, r in enumerate(part) if r["cpu_min"] >= budget]
        part = part[: within[0] + 1] if within else part  # up to the epoch that reached the budget
        best = max(part, key=lambda r: r["val_psnr"])
        rate = sum(r["samples_per_s"] for r in part) / len(part)
        lines.append(f"| {name} | {part[0]['crop']} | {part[0]['batch']} | {rate:.1f} | {part[-1]['step']} | "
                     f"{best['val_psnr']:.2f} | {best['cpu_min']:.1f} | {part[-1]['val_psnr']:.2f} | {part[-1]['input_psnr']:.2f} |")
    (report / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name in dict.fromkeys(r["setting"] for r in rows):
        part = [r for r in rows if r["setting"] == name]
        ax.plot([r["cpu_min"] for r in part], [r["val_psnr"] for r in part], marker="o", label=name)
    ax.axhline(rows[0]["input_psnr"], color="grey", ls="--", label="input (bicubic)")
    ax.set_xlabel("process CPU-minutes")
    ax.set_ylabel("validation PSNR (dB)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(report / "study.png")


if __name__ == "__main__":
    raise SystemExit(main())
