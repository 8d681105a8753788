"""Write examples/clip.mp4: a small synthetic NIR fluorescence clip with a sound track.

2.4 s at 25 fps, 320×180: phantom vessels and vesicles (ficli.image.phantom) that drift and sway as tissue
does under a camera, blurred and with shot noise drawn anew in every frame, gray stored as RGB (as
NIR cameras record it), H.264 in MP4, plus a 440 Hz tone as AAC audio (written as WAV with the
standard library and muxed with the ffmpeg bundled with imageio-ffmpeg).
Run from the repository root: python examples/make_clip.py, then e.g.

    ficli video examples/clip.mp4 --side-by-side
"""

import math
import subprocess
import tempfile
import wave
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from ficli.image.phantom import phantom

WIDTH, HEIGHT, FPS, FRAMES = 320, 180, 25, 60
OUT = Path(__file__).parent / "clip.mp4"


def frames():
    """Gray uint8 frames: the phantom shifted and slightly rotated over time, fresh noise each frame."""
    margin = 24
    scene = phantom(HEIGHT + 2 * margin, WIDTH + 2 * margin, seed=7, points=60, filaments=10, vessels=4,
                    psf_sigma=1.5, peak_photons=None, background=0.05)
    rng = np.random.default_rng(0)
    for i in range(FRAMES):
        t = i / FPS
        dx, dy = 10 * math.sin(2 * math.pi * t / 2.4), 6 * math.sin(2 * math.pi * t / 1.2)  # breathing
        warp = cv2.getRotationMatrix2D((WIDTH / 2 + margin, HEIGHT / 2 + margin), 2 * math.sin(math.pi * t), 1.0)
        warp[:, 2] += (dx - margin, dy - margin)
        frame = cv2.warpAffine(scene, warp, (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        frame = cv2.GaussianBlur(frame, (0, 0), 1.2)  # the camera's blur: what ficli should undo
        frame = rng.poisson(np.clip(frame, 0, 1) * 300) / 300  # shot noise, new in every frame
        yield np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8)


def write_tone(path: Path, seconds: float, rate: int = 22050, hz: float = 440.0) -> None:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.2 * 32767 * np.sin(2 * math.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        tone = Path(folder) / "tone.wav"
        write_tone(tone, FRAMES / FPS)
        cmd = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-framerate", str(FPS), "-i", "pipe:0",
            "-i", str(tone), "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "slow", "-crf", "26", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "48k", "-movflags", "+faststart", str(OUT),
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        for gray in frames():
            proc.stdin.write(np.repeat(gray[..., None], 3, axis=2).tobytes())  # gray stored as RGB
        proc.stdin.close()
        if proc.wait():
            raise SystemExit("ffmpeg failed")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} kB, {FRAMES} frames at {FPS} fps, {WIDTH}×{HEIGHT}, with audio)")


if __name__ == "__main__":
    main()
