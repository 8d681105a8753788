"""examples/robustness.py: the grid of degradations, scored as the README's table says."""

import csv
import runpy
import sys
from pathlib import Path

import numpy as np
import torch

from ficli.image.io import write_image
from ficli.image.phantom import phantom, to_dtype

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "robustness.py"


def test_identity_model_gains_nothing_and_leaves_sharp_images(tmp_path, tiny_identity_model, monkeypatch):
    for i in range(2):
        write_image(tmp_path / "hr" / f"p{i}.png", to_dtype(phantom(48, 40, seed=i), np.uint16))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["robustness.py", "--model", str(tiny_identity_model), "--data", str(tmp_path / "hr"),
                                      "--out", str(out), "--scales", "1,2", "--kernels", "pil,area", "--crop", "32"])
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    except SystemExit as done:
        assert done.code == 0
    assert torch.is_grad_enabled()  # run in-process, the script leaves the process as it found it
    with open(out / "cells.csv") as fh:
        cells = list(csv.DictReader(fh))
    assert len(cells) == 2 * 2 * 2  # kernels × s × noise
    for c in cells:
        if c["identity_psnr"]:  # s = 1, no noise: the sharp image itself goes in and comes out
            assert c["s"] == "1.0" and c["noise"] == "none" and float(c["identity_psnr"]) == float("inf")
        else:
            assert abs(float(c["gain_db"])) < 1e-9  # the identity model adds nothing to its input
    with open(out / "images.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2 * 8
    assert (out / "heatmap.png").stat().st_size > 1000 and "| pil | 2 | none |" in (out / "table.md").read_text()
