"""What `ficli video --scale auto` reads from videos of known blur, lossless and H.264-coded.

    python examples/blurscale_video.py ../shared/data/fluorescence/test [--side 256]

The images (their central side² each; smaller ones skipped; mapped by their 0.1/99.9 percentiles
and stored 8-bit) are shrunk and enlarged ×s with PIL's bicubic and written as one gray clip per s,
each image held for two frames: FFV1 (lossless) and x264 (preset medium, yuv420p) at CRF 10, 18 and
23. Each clip's s is estimated as `ficli video` does it (`video.plan_video` with a conditioned
model's chooser: 16 sampled frames, their central 512² crops). For reference, the first two rows
pool the same images without a video: as floats, and rounded to 8 bits. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from calibrate_blurscale import load_gray  # the example beside this one (its folder is on sys.path)

from ficli.image import io
from ficli.image.blurscale import estimate_scale_pooled
from ficli.image.degrade import shrink_enlarge
from ficli.video.ffmpeg import ffmpeg_exe
from ficli.image.intensity import percentile_range
from ficli.model.nets import GeneratorConfig
from ficli.inference.runtime import scale_chooser
from ficli.video.pipeline import VideoOptions, plan_video

SCALES = (1.0, 2.0, 3.0, 4.0)
CODECS = {
    "FFV1 (lossless)": ("-c:v", "ffv1", "-pix_fmt", "gray"),
    "x264 CRF 10": ("-c:v", "libx264", "-preset", "medium", "-crf", "10", "-pix_fmt", "yuv420p"),
    "x264 CRF 18": ("-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p"),
    "x264 CRF 23": ("-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p"),
}


def write_gray_clip(path: Path, frames: list[np.ndarray], codec: tuple[str, ...]) -> Path:
    h, w = frames[0].shape
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
           "-framerate", "25", "-i", "pipe:0", *codec, str(path)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--side", type=int, default=256)
    args = parser.parse_args()
    images = []
    for item in io.collect_inputs(args.inputs, recursive=True):
        x = load_gray(item.path, args.side)
        if x.shape == (args.side, args.side):
            lo, hi = percentile_range(x[None])
            images.append(np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1))
    info = {"path": "estimate", "config": GeneratorConfig(scale_input=True), "scale": 8}  # 8: nothing clamped
    print(f"{len(images)} images, {args.side}² each, two frames each\n")
    print("| clip | " + " | ".join(f"s = {s:g}" for s in SCALES) + " |")
    print("|---|" + "---|" * len(SCALES))
    for name, bits in (("float, no video (pooled)", None), ("8-bit, no video (pooled)", 8)):
        row = []
        for s in SCALES:
            frames = [np.clip(shrink_enlarge(x, s, "pil") if s > 1 else x, 0, 1) for x in images]
            frames = frames if bits is None else [np.round(f * 255) / 255 for f in frames]
            row.append(f"{estimate_scale_pooled(frames).scale:.2f}")
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec in CODECS.items():
            row = []
            for s in SCALES:
                frames = [np.round(np.clip(shrink_enlarge(x, s, "pil") if s > 1 else x, 0, 1) * 255).astype(np.uint8) for x in images]
                clip = write_gray_clip(Path(tmp) / f"s{s:g}{'.mkv' if 'FFV1' in name else '.mp4'}", [f for f in frames for _ in range(2)], codec)
                plan = plan_video(clip, VideoOptions(out=Path(tmp) / "out.mp4", overwrite=True, scale_for=scale_chooser(info, None)))
                row.append(f"{plan.scale:.2f}")
            print(f"| {name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
