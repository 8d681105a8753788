"""examples/issue24_goals.py: the goals table read off small grid, saved-file and real-pair tables whose
shortfalls are worked out by hand."""

import csv
import gzip
from pathlib import Path

from conftest import example_module

CELL_FIELDS = ("kernel", "s", "noise", "n", "identity_psnr", "gain_db", "worst_gain_db", "gain_ssim", "told_s")



def _grid(folder: Path, pil4: float, worst: float) -> Path:
    folder.mkdir()
    rows = [{"kernel": "pil", "s": 1.0, "noise": "none", "identity_psnr": 70.0, "worst_gain_db": 45.0},
            {"kernel": "pil", "s": 4.0, "noise": "none", "gain_db": pil4, "worst_gain_db": worst},
            {"kernel": "area", "s": 2.0, "noise": "none", "gain_db": 0.1, "worst_gain_db": -0.05}]
    with (folder / "cells.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CELL_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_goals_name_each_shortfall(tmp_path, capsys):
    heldout, test = _grid(tmp_path / "h", 1.25, -0.4), _grid(tmp_path / "t", 2.5, 0.0)
    saved = tmp_path / "saved.csv.gz"
    with gzip.open(saved, "wt", newline="") as f:  # 8-bit: 2 of 4 files within ±0.5 at s = 4, float 4 of 4
        writer = csv.DictWriter(f, fieldnames=("kind", "kernel", "s", "poisson_peak", "told"))
        writer.writeheader()
        for kind, told in (("8-bit", (4.2, 3.6, 2.0, 1.0)), ("float", (4.0, 4.0, 3.9, 4.4))):
            writer.writerows({"kind": kind, "kernel": "pil", "s": 4.0, "poisson_peak": 0.0, "told": t} for t in told)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("pair,method,psnr_db,gain_db\na,RL,20,-0.5\nb,RL,21,0.1\n")
    specialists = tmp_path / "spec"
    specialists.mkdir()
    for name, gain in (("default", 0.8), ("pil4", 1.5), ("paper", 1.2)):
        _grid(specialists / f"{name}-heldout", gain, 0.0)
    assert example_module("issue24_goals").main(["--heldout", str(heldout), "--test", str(test), "--saved", str(saved), "--pairs", str(pairs),
                           "--specialists", str(specialists)]) == 0
    out = capsys.readouterr().out
    assert "| PIL ×4 | ≥ +2.0 | +1.25 (-0.40) | 0.75 | +2.50 (+0.00) | met |" in out
    assert "| held-out | 2 | 1 | PIL ×4 -0.40 (0.30) |" in out and "| test | 2 | 2 | – |" in out
    assert "| held-out | 70.0 | 45.0 | met |" in out
    assert "| 8-bit | 50% | 50% | 40% |" in out and "| float | 100% | 100% | met |" in out
    assert "| RL | -0.20 | -0.50 |" in out
    assert "| PIL ×4 | heldout | +0.80 | +1.50 (pil4) | 0.70 | short by 0.40 |" in out and "| PIL ×4 | test |" not in out
