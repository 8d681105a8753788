"""H.264 coding of an image, as a video holds its frames (the last link of the acquisition chain of
docs/DEGRADATIONS.md: `ficli degrade --h264-crf`, `ficli train --degradations video`).

A frame is rounded to 8 bits, coded by x264 (preset medium, 4:2:0 chroma, constant rate factor
`crf`, 25 frames/s) through the ffmpeg that imageio-ffmpeg bundles, and decoded back: an intra
frame, which is how the first frame of a clip and every frame after a scene cut are coded; later
frames of a clip are predicted from earlier ones at about the same quality for the same CRF. Odd
sides are padded by repetition (4:2:0 needs even sides) and cropped back.
"""

from __future__ import annotations

import subprocess

import numpy as np

from ficli.errors import FicliError

CRF_RANGE = (0, 51)  # x264's constant rate factor: 0 is lossless, 23 its default, 51 the worst
PRESET = "medium"  # x264's default speed/quality trade
RATE = "25"  # frames/s the frame is coded at: x264's CRF rate control depends on it (25: ffmpeg's default for raw input)


def ffmpeg_exe() -> str:
    """The ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise FicliError(f"ffmpeg is not available ({exc}); reinstall imageio-ffmpeg") from None


def code_frame(frame: np.ndarray, crf: int) -> np.ndarray:
    """An 8-bit (H, W) gray or (H, W, 3) RGB frame as H.264 at `crf` holds it, decoded back (same
    shape, uint8). Raises FicliError when ffmpeg fails."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        raise ValueError(f"code_frame takes an (H, W) or (H, W, 3) uint8 frame, got {frame.dtype} {frame.shape}")
    h, w = frame.shape[:2]
    pad = ((0, h % 2), (0, w % 2)) + ((0, 0),) * (frame.ndim - 2)
    padded = np.ascontiguousarray(np.pad(frame, pad, mode="edge"))
    pix = "gray" if frame.ndim == 2 else "rgb24"
    size = f"{padded.shape[1]}x{padded.shape[0]}"
    coded = _ffmpeg(["-f", "rawvideo", "-pix_fmt", pix, "-s", size, "-r", RATE, "-i", "pipe:0", "-frames:v", "1", "-c:v", "libx264",
                     "-preset", PRESET, "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-f", "h264", "pipe:1"], padded.tobytes())
    raw = _ffmpeg(["-f", "h264", "-i", "pipe:0", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", pix, "pipe:1"], coded)
    if len(raw) != padded.nbytes:
        raise FicliError(f"ffmpeg decoded {len(raw)} bytes of an H.264 frame of {padded.nbytes}; reinstall imageio-ffmpeg")
    return np.frombuffer(raw, np.uint8).reshape(padded.shape)[:h, :w].copy()


def code_unit(x: np.ndarray, crf: int, top: float = 1.0) -> np.ndarray:
    """A float32 (H, W) or (H, W, C) image in [0, `top`] rounded to 8 bits of `top`, coded as an
    H.264 frame at `crf` and mapped back to [0, `top`] (float32, same shape). Channels other than
    one or three are coded one by one as gray frames."""
    if top <= 0:
        return np.asarray(x, np.float32)
    q = np.clip(np.round(np.asarray(x, np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)
    if q.ndim == 3 and q.shape[2] == 1:
        out = code_frame(q[..., 0], crf)[..., None]
    elif q.ndim == 3 and q.shape[2] != 3:
        out = np.stack([code_frame(q[..., c], crf) for c in range(q.shape[2])], axis=-1)
    else:
        out = code_frame(q, crf)
    return (out.astype(np.float32) * (top / 255.0)).astype(np.float32)


def _ffmpeg(args: list[str], data: bytes) -> bytes:
    """ffmpeg's stdout for `args` fed `data`; FicliError with its message when it fails."""
    done = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-nostdin", "-y", *args], input=data, capture_output=True)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()[-300:]
        raise FicliError(f"ffmpeg could not code an H.264 frame ({message or f'exit {done.returncode}'}); reinstall imageio-ffmpeg")
    return done.stdout
