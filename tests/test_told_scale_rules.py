"""examples/told_scale_rules.py: a rule's score read off a sweep table, checked against the sums
worked out by hand for a two-image table."""

import csv
from pathlib import Path

import pytest

from conftest import example_module

FIELDS = ("image", "kernel", "s", "noise", "learned", "learned_low", "learned_high", "template", "auto", "told",
          "psnr_in", "psnr_free", "psnr_coarse")



def _sweep(path: Path) -> Path:
    """Two images of one cell (pil, s = 4): outputs at told 2 and 4; image a reads 3.0 (auto), b 3.5."""
    rows = []
    for image, auto, free, coarse in (("a", 3.0, (31.0, 33.0), (30.5, 31.5)), ("b", 3.5, (29.0, 27.0), (29.5, 29.0))):
        for told, f, c in zip((2.0, 4.0), free, coarse):
            rows.append({"image": image, "kernel": "pil", "s": 4.0, "noise": "none", "learned": 3.9, "learned_low": 3.8,
                         "learned_high": 4.0, "template": auto, "auto": auto, "told": told, "psnr_in": 30.0,
                         "psnr_free": f, "psnr_coarse": c})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_rules_are_scored_by_interpolating_the_told_s(tmp_path):
    rules = example_module("told_scale_rules")
    cells = rules.load([str(_sweep(tmp_path / "sweep.csv"))])
    # told 3.0 / 3.5 between told 2 and 4: coarse a 30.5 + 0.5·1.0 = 31.0 (+1.0), b 29.5 − 0.75·0.5 = 29.125 (−0.875)
    total, within, n, shown = rules.score(cells, rules.RULES["round 7: the smaller reading"], float("inf"))
    assert n == 1 and within == 0 and shown["pil ×4"] == pytest.approx((1.0 - 0.875) / 2)
    # free from 3.25: a stays coarse (+1.0), b is free: 29 − 0.75·2 = 27.5 (−2.5)
    total, within, n, shown = rules.score(cells, rules.RULES["round 7: the smaller reading"], 3.25)
    assert total == pytest.approx((1.0 - 2.5) / 2)
    # the true s, 4: free 33 and 27 (+3, −3), coarse 31.5 and 29 (+1.5, −1)
    assert rules.score(cells, rules.RULES["true s (oracle)"], 1.0)[0] == pytest.approx(0.0)
    assert rules.score(cells, rules.RULES["true s (oracle)"], float("inf"))[0] == pytest.approx(0.25)
    # told 1 is the input itself: a native blur of 4 taken off leaves s = 1 for both
    assert rules.less_native(3.0, 4.0) == 1.0
    assert rules.score(cells, lambda key, c: rules.less_native(c["auto"], 4.0), float("inf"))[:2] == (0.0, 1)


def test_the_shipped_rule_is_runtime_told_scale_on_the_rows_readings(tmp_path):
    """A row with the template fit under the rounding noise: from 3.25 up (both readings) the smaller
    of it and the learned reading is told, below it the round-7 rule; a table without the column
    (made before round 8) gives what the round-7 rule gave."""
    rules = example_module("told_scale_rules")
    path = _sweep(tmp_path / "sweep.csv")
    cells = rules.load([str(path)])
    assert [rules.told_now(c) for c in cells.values()] == [3.0, 3.5]  # no below_floor column: the smaller reading
    rows = list(csv.DictReader(path.open()))
    for r in rows:
        r["below_floor"] = "3.6" if r["image"] == "a" else "3.1"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*FIELDS, "below_floor"])
        writer.writeheader()
        writer.writerows(rows)
    cells = rules.load([str(path)])
    assert [rules.told_now(c) for c in cells.values()] == [3.6, 3.5]  # a: min(3.9, 3.6) ≥ 3.25; b: 3.1 < 3.25


def test_every_rule_runs_by_default(tmp_path, capsys):
    """Without --rules every rule is scored: a rule's name with a comma in it split the default list
    and the script stopped on a KeyError."""
    rules = example_module("told_scale_rules")
    assert all("," not in name for name in rules.RULES)
    assert rules.main([str(_sweep(tmp_path / "sweep.csv"))]) == 0
    printed = capsys.readouterr().out
    assert all(f"| {name} |" in printed for name in rules.RULES)
