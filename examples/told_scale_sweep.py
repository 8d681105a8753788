"""Gain over the input as a function of the s a model is told, per image and cell of the robustness
grid, with both readings of `--scale auto`: the table a rule for the told s is chosen on.

    python examples/told_scale_sweep.py --data @examples/splits/heldout_sources.txt --out sweep.csv

For every image of --data (centre 256 px), kernel, s and noise of `examples/robustness.py` (the same
inputs: `robustness.cell_input`), one row per told s of --told: the learned reading (its value and
68 % interval: `blurscale.readings`), the template fit, the s `--scale auto` tells now
(`runtime.scale_chooser`), and PSNR on the hr scale of the input, of the network's output as it is
(`--free-coarse`) and with the coarse content kept (the same pass, `degrade.keep_coarse_array`).
The template fit under the file's rounding noise (`below_floor`, empty where that noise hides no
ring) was added to the tables of docs/robustness/told-scale-sweep/ in round 8 from the same inputs;
their `auto` column is the s `--scale auto` told when they were made (round 7).
`--shard i/n` takes every n-th image from the i-th, so that two processes share the work.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

import robustness
from ficli.image import blurscale, io
from ficli.image.degrade import keep_coarse_array
from ficli.inference.enhance import EnhanceOptions, enhance_frames
from ficli.inference.runtime import load_generator, scale_chooser
from ficli.tools.evaluate import Scale, score_images

FIELDS = ("image", "kernel", "s", "noise", "learned", "learned_low", "learned_high", "template", "below_floor", "auto",
          "told", "psnr_in", "psnr_free", "psnr_coarse")


@torch.no_grad()
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model file or shipped name [the default model]")
    ap.add_argument("--data", required=True, help="folder of sharp images, or @list")
    ap.add_argument("--out", required=True, type=Path, help="CSV to write")
    ap.add_argument("--told", default="1,1.5,2,2.5,3,3.5,4", help="the s values told [1,1.5,2,2.5,3,3.5,4]")
    ap.add_argument("--scales", default="1,1.5,2,3,4", help="true blur scales s [1,1.5,2,3,4]")
    ap.add_argument("--kernels", default="pil,cv2,area,psf", help="kernels, psf for a native-grid PSF [pil,cv2,area,psf]")
    ap.add_argument("--noise", default="none", help=f"noise levels of {sorted(robustness.NOISE)} [none]")
    ap.add_argument("--shard", default="0/1", help="i/n: every n-th image from the i-th [0/1]")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    index, count = (int(v) for v in args.shard.split("/"))
    generator, meta = load_generator(args.model, torch.device("cpu"))
    told_values = [float(v) for v in args.told.split(",")]
    items = io.collect_inputs([args.data])[index::count]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for item in items:
            hr = robustness._crop(io.read_image(item.path).data, 256)
            for kernel in args.kernels.split(","):
                for s in (float(v) for v in args.scales.split(",")):
                    for noise in args.noise.split(","):
                        for row in _rows(generator, meta, item.path.name, hr, kernel, s, noise, told_values):
                            writer.writerow(row)
            f.flush()
            print(f"{item.path.name} done", file=sys.stderr)
    return 0


def _rows(generator, meta, name, hr, kernel, s, noise, told_values):
    y = robustness.cell_input(name, hr, kernel, s, noise)
    learned, template = blurscale.readings([y])
    auto, _ = scale_chooser(meta, None)([y])
    base = {"image": name, "kernel": kernel, "s": s, "noise": noise, "learned": learned.scale,
            "learned_low": learned.low, "learned_high": learned.high, "template": template.scale,
            "below_floor": template.below_floor, "auto": auto,
            "psnr_in": score_images(hr, io.from_unit(y, hr.dtype), scale=Scale("hr")).psnr}
    for told in told_values:
        options = EnhanceOptions(keep_coarse=False, scale_for=lambda frames, upscale, t=told: (t, "told"))
        free = enhance_frames(generator, [y], options)[0].astype(np.float32)
        coarse = keep_coarse_array(free[None], y[None].astype(np.float32), told)[0]
        yield {**base, "told": told,
               "psnr_free": score_images(hr, io.from_unit(free, hr.dtype), scale=Scale("hr")).psnr,
               "psnr_coarse": score_images(hr, io.from_unit(coarse, hr.dtype), scale=Scale("hr")).psnr}


if __name__ == "__main__":
    sys.exit(main())
