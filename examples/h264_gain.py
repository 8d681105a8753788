"""What the default model gains on H.264-coded frames, told the s `--scale auto` tells, the learned
reading alone, or the true s (issue 24: video frames).

    python examples/h264_gain.py ../shared/data/fluorescence/test @examples/splits/heldout_sources.txt [--crf 18]

Each image (its central 256², mapped by its 0.1/99.9 percentiles) is shrunk and enlarged ×s with
PIL's bicubic, stored 8-bit and coded as a two-frame x264 clip (preset medium, yuv420p, --crf), as
`examples/blurscale_video.py` writes them; the first frame decoded is read by the blur-scale
estimators (`blurscale.readings`) and enhanced as `ficli enhance` does (the coarse content kept
below a told s of 3.25), told (a) the shipped rule's s (`runtime.told_scale`: the smaller of the
learned and template readings, from 3.25 up the template fit under the rounding noise), (b) the learned reading alone (`runtime.learned_reading`) and (c) the true s. Prints, per
s, the mean gain in PSNR over the decoded frame (worst image) against the sharp 8-bit-range image;
at s = 1 PSNR(G(X), X) instead. `--mlp` reads with another estimator file (train_blurscale.py --h264),
`--model` enhances with another model file.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from blurscale_video import write_gray_clip  # the examples beside this one
from calibrate_blurscale import load_gray
from savedfiles import first_gray_frame, use_estimator

from ficli.image import blurscale, io
from ficli.image.degrade import shrink_enlarge
from ficli.image.intensity import percentile_range
from ficli.image.metrics import psnr
from ficli.inference.enhance import EnhanceOptions, enhance_frames
from ficli.inference.runtime import learned_reading, load_generator, told_scale

SCALES = (1.0, 2.0, 3.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--mlp", type=Path, help="another learned estimator's file [the shipped one]")
    parser.add_argument("--model", help="another model file (e.g. a `ficli train --degradations video` run) [the default]")
    args = parser.parse_args()
    if args.mlp:
        use_estimator(args.mlp)
    torch.set_num_threads(1)
    generator, info = load_generator(args.model, torch.device("cpu"))
    trained = float(info.get("scale", 4))
    codec = ("-c:v", "libx264", "-preset", "medium", "-crf", str(args.crf), "-pix_fmt", "yuv420p")
    images = []
    for item in io.collect_inputs(args.inputs, recursive=True):
        x = load_gray(item.path, args.side)
        if x.shape == (args.side, args.side):
            lo, hi = percentile_range(x[None])
            images.append(np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1).astype(np.float32))

    def enhanced(y: np.ndarray, s: float) -> np.ndarray:
        options = EnhanceOptions(scale_for=lambda frames, upscale: (s, "given"))
        with torch.no_grad():
            return np.clip(enhance_frames(generator, [y], options)[0], 0, 1)

    print(f"{len(images)} images, {args.side}², x264 CRF {args.crf}; gain dB, mean (worst image); s told, mean\n")
    print("| s | told as --scale auto | learned reading | true s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for s in SCALES:
            gains: dict[str, list[float]] = {"auto": [], "learned": [], "true": []}
            told: dict[str, list[float]] = {"auto": [], "learned": [], "true": []}
            for i, x in enumerate(images):
                frame = np.round(np.clip(shrink_enlarge(x, s, "pil") if s > 1 else x, 0, 1) * 255).astype(np.uint8)
                clip = write_gray_clip(Path(tmp) / f"{i}.mp4", [frame, frame], codec)
                y = first_gray_frame(clip, (args.side, args.side)).astype(np.float32) / 255
                learned, template = blurscale.readings([y])
                rules = {"auto": told_scale(learned, template)[0] if learned.scale else trained,
                         "learned": learned_reading(learned)[0] if learned.scale else trained, "true": s}
                outputs: dict[float, np.ndarray] = {}
                for rule, value in rules.items():
                    value = min(max(value, 1.0), trained)
                    out = outputs.setdefault(round(value, 4), enhanced(y, value))
                    gains[rule].append(psnr(out, y) if s == 1 else psnr(out, x) - psnr(y, x))
                    told[rule].append(value)
            cells = [f"{np.mean(gains[r]):.1f} ({np.min(gains[r]):.1f}), s {np.mean(told[r]):.2f}" if s == 1 else
                     f"{np.mean(gains[r]):+.2f} ({np.min(gains[r]):+.2f}), s {np.mean(told[r]):.2f}" for r in gains]
            print(f"| {s:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
