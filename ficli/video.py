"""Enhancing videos: frames streamed from ffmpeg through the engine and back into ffmpeg.

    decoder ffmpeg --rawvideo--> reader thread (scale, normalise) --queue--> inference (this
        thread, groups of frames: the network, the inverse map) --queue--> writer thread (compose)
        --rawvideo--> encoder ffmpeg (H.264 + the input's audio) --> OUT

The three stages overlap and the queues are short, so memory holds a few frames whatever the length
of the recording. Most host work sits in the reader and writer threads, so that on a GPU it runs
beside the network instead of between its calls. ffmpeg is imageio-ffmpeg's bundled binary (no
system ffmpeg is assumed), run as child processes in their own session, so that Ctrl-C in the
terminal reaches ficli only and ficli decides how to close the output.

Decisions, each stated once here and in `ficli video --help`:
- Intensity normalisation (DESIGN section 4): one 0.1/99.9-percentile range for the whole selected
  section, never per frame (which would flicker), from up to `samples` frames spread evenly over
  it: one seek per sample on long sections, one decoding pass on short ones or when the duration is
  unknown.
- Colour: gray stored as RGB (all channels within 2 levels on the sampled frames) is processed as
  one channel; other colour video has its luminance (Y of YCrCb) enhanced and its chroma kept.
- Frame rate: the output has the rate ffmpeg reports for the input stream (NTSC rates such as
  30000/1001 exactly). Variable-frame-rate input is made constant at that rate (frames repeated or
  dropped, as `-fps_mode cfr` does), so every frame keeps its time and the audio stays in step.
- yuv420p needs even sides: an odd width or height is padded by one pixel that repeats the last
  column or row (nothing is cropped).
- The output is written to a hidden temporary file in its folder and renamed when complete. On
  Ctrl-C the encoder is finished on the frames already enhanced and the result is kept, playable,
  as `<out>.partial.mp4` (or removed when no frame was done); OUT itself is never half-written.
"""

from __future__ import annotations

import math
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from ficli import io
from ficli.degrade import resize_array
from ficli.engine import TileConfig, denormalize, flat_values, keep_flat, normalize, percentile_range, resolve_precision, run_tiled
from ficli.errors import ConfigError, FicliError, InputError, OutputError

CHANNEL_MODES = ("auto", "gray", "luma", "rgb")
LAYOUTS = ("enhanced", "side-by-side", "compare")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
VIDEO_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Audio that MP4 holds as it is (and players play); anything else is re-encoded to AAC there.
MP4_AUDIO = {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3", "mp2"}
GRAY_TOLERANCE = 2 / 255  # channel spread, on the [0, 1] scale, still counted as gray
SEEK_THRESHOLD = 256  # sections of more frames are sampled by seeking, shorter ones in one pass


# --- ffmpeg processes -------------------------------------------------------------------------


def ffmpeg_exe() -> str:
    """The ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise FicliError(f"ffmpeg is not available ({exc}); reinstall imageio-ffmpeg") from None


def _session_kwargs() -> dict:
    """Start children outside the terminal's process group: Ctrl-C must reach ficli alone."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


class _FFmpeg:
    """An ffmpeg child whose stderr is drained into a short tail (a full pipe would stall it)."""

    def __init__(self, args: list[str], *, stdin=None, stdout=None):
        self.proc = subprocess.Popen(
            [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", *args],
            stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, **_session_kwargs(),
        )
        self.tail: deque[str] = deque(maxlen=40)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self.tail.append(line.decode("utf-8", "replace").rstrip())

    def wait(self) -> int:
        rc = self.proc.wait()
        self._drain.join(timeout=5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self.wait()

    def stderr_tail(self, lines: int = 6) -> str:
        text = [line for line in self.tail if line.strip()][-lines:]
        return " | ".join(text) if text else "no message"


# --- probing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What `ffmpeg -i` says about a file's first video stream (and whether there is audio).

    width, height: decoded frame size (after the rotation ffmpeg applies); fps: the average frame
    rate as an exact fraction where it is a known NTSC rate; duration in seconds and frames (an
    estimate: duration × fps) are None when the container does not say.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    duration: float | None
    stream: int  # index of the video stream in the file
    codec: str
    pix_fmt: str
    audio: tuple[str, ...] = ()  # codec of each audio stream
    sar: tuple[int, int] = (1, 1)
    fps_guessed: bool = False  # no rate in the file: 25 assumed

    @property
    def frames(self) -> int | None:
        return None if self.duration is None else max(1, round(self.duration * self.fps))

    @property
    def gray_source(self) -> bool:
        return self.pix_fmt.startswith(("gray", "ya"))

    @property
    def high_depth(self) -> bool:
        """More than 8 bits per sample (yuv420p10le, gray16le, rgb48le...): decoded as 16-bit."""
        m = re.search(r"(\d+)(le|be)$", self.pix_fmt)
        return bool(m) and int(m.group(1)) in (9, 10, 12, 14, 16, 48, 64)

    @property
    def decode_format(self) -> tuple[str, int, np.dtype]:
        """(ffmpeg pixel format, channels, numpy dtype) in which frames are decoded."""
        if self.gray_source:
            return ("gray16le", 1, np.dtype("<u2")) if self.high_depth else ("gray", 1, np.dtype(np.uint8))
        return ("rgb48le", 3, np.dtype("<u2")) if self.high_depth else ("rgb24", 3, np.dtype(np.uint8))

    def describe(self) -> str:
        rate = f"{float(self.fps):.3g} fps" + (" (assumed)" if self.fps_guessed else "")
        length = f", {self.duration:.1f} s" if self.duration is not None else ", length unknown"
        audio = f", audio {'+'.join(self.audio)}" if self.audio else ", no audio"
        return f"{self.width}×{self.height} {self.codec} {self.pix_fmt}, {rate}{length}{audio}"


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Probe `path` with `ffmpeg -i`; InputError when it is missing, unreadable or has no video."""
    path = Path(path)
    io.check_input_file(path)  # ffmpeg's own message for a missing or unreadable file is vague
    try:
        result = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
            capture_output=True, timeout=120, **_session_kwargs(),
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"{path}: ffmpeg took over 2 minutes to open it; is it on a stalled network drive?") from None
    return parse_probe(result.stderr.decode("utf-8", "replace"), path)


def parse_probe(text: str, path: Path) -> VideoInfo:
    """A VideoInfo from the stderr of `ffmpeg -i path` (which always exits 1: no output given)."""
    if "Input #0" not in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reasons = [line for line in lines if "moov atom not found" in line]
        reason = (reasons or [line for line in lines if "Error opening input:" in line] or lines[-1:] or ["no message"])[0]
        reason = re.sub(r"^\[[^\]]*\]\s*", "", reason).replace("Error opening input: ", "")
        hint = " (the file looks truncated: was the recording stopped before it was closed?)" if "moov" in reason else ""
        raise InputError(f"{path}: not a video ffmpeg can read: {reason}{hint}")
    duration = None
    m = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    if m:
        duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    lines = text.splitlines()
    video, audio = None, []
    for i, line in enumerate(lines):
        s = re.match(r"\s*Stream #0:(\d+)[^:]*: (Video|Audio): (.*)", line)
        if not s:
            continue
        if s.group(2) == "Audio":
            audio.append(s.group(3).split()[0].rstrip(","))
        elif video is None and "(attached pic)" not in line and "(still image)" not in line:
            block = "\n".join(lines[i + 1 : i + 12])
            block = block.split("Stream #")[0]
            video = (int(s.group(1)), s.group(3), block)
    if video is None:
        what = f"audio only ({', '.join(audio)})" if audio else "no streams ffmpeg can decode"
        raise InputError(f"{path}: has no video stream ({what}); give a video file")
    index, desc, side_data = video
    parts = _split_top_level(desc)
    codec = parts[0].split()[0]
    pix_fmt = parts[1].split("(")[0].strip() if len(parts) > 1 else "unknown"
    size = re.search(r"(?<![\dx])(\d{1,5})x(\d{1,5})(?![\dx])", desc)
    if not size:
        raise InputError(f"{path}: ffmpeg reports no frame size for its video stream; the file may be damaged")
    width, height = int(size.group(1)), int(size.group(2))
    if width == 0 or height == 0:
        raise InputError(f"{path}: the video stream has an empty frame size {width}x{height}")
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", side_data)
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width  # ffmpeg rotates decoded frames to match
    sar = re.search(r"SAR (\d+):(\d+)", desc)
    sar = (int(sar.group(1)), int(sar.group(2))) if sar and int(sar.group(1)) and int(sar.group(2)) else (1, 1)
    fps = _rate(desc, "fps") or _rate(desc, "tbr")
    return VideoInfo(
        path=path, width=width, height=height, fps=fps or Fraction(25), duration=duration or None,
        stream=index, codec=codec, pix_fmt=pix_fmt, audio=tuple(audio), sar=sar, fps_guessed=fps is None,
    )


def _split_top_level(text: str) -> list[str]:
    """Split ffmpeg's stream description at commas outside parentheses and brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return parts + [current.strip()]


def _rate(desc: str, unit: str) -> Fraction | None:
    """A frame rate printed by ffmpeg ("29.97 fps", "1k tbr") as a fraction; NTSC rates exactly."""
    m = re.search(rf"([\d.]+)(k?) {unit}\b", desc)
    if not m:
        return None
    value = float(m.group(1)) * (1000 if m.group(2) else 1)
    if value <= 0 or not math.isfinite(value):
        return None
    for base in (24, 30, 48, 60, 120, 240):  # ffmpeg prints 30000/1001 as "29.97"
        if abs(value - base * 1000 / 1001) < 0.006:
            return Fraction(base * 1000, 1001)
    return Fraction(value).limit_denominator(100)


# --- the section to process -------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """--start, --duration and --max-frames against what the file holds."""

    start: float = 0.0
    duration: float | None = None
    max_frames: int | None = None

    def check(self, info: VideoInfo) -> None:
        if self.start < 0:
            raise ConfigError(f"--start must be 0 or more seconds, got {self.start}")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration must be more than 0 seconds, got {self.duration}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames must be at least 1, got {self.max_frames}")
        if info.duration is not None and self.start >= info.duration:
            raise ConfigError(f"--start {self.start:g} is past the end of {info.path} ({info.duration:.2f} s long)")

    def seconds(self, info: VideoInfo) -> float | None:
        """Length of the section in seconds, or None when neither the file nor the options bound it."""
        bounds = []
        if info.duration is not None:
            bounds.append(info.duration - self.start)
        if self.duration is not None:
            bounds.append(self.duration)
        if self.max_frames is not None:
            bounds.append(self.max_frames / info.fps)
        return float(min(bounds)) if bounds else None

    def frames(self, info: VideoInfo) -> int | None:
        """Expected number of frames (an estimate from duration × fps), None when unknown."""
        seconds = self.seconds(info)
        if seconds is None:
            return None
        n = max(1, round(seconds * info.fps))
        return n if self.max_frames is None else min(n, self.max_frames)


# --- decoding ---------------------------------------------------------------------------------


def _decoder_args(info: VideoInfo, section: Section, start: float | None = None, frames: int | None = None) -> list[str]:
    """ffmpeg arguments that write the section's frames, constant rate, as raw video on stdout."""
    start = section.start if start is None else start
    fmt = info.decode_format[0]
    args = ["-nostdin"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    if section.duration is not None and frames is None:
        args += ["-t", f"{section.duration:.6f}"]
    args += ["-i", str(info.path), "-map", f"0:{info.stream}", "-an", "-sn", "-dn"]
    limit = frames if frames is not None else section.max_frames
    if limit is not None:
        args += ["-frames:v", str(limit)]
    # -s: a stream whose size changes midway is scaled to the probed size, so every frame has its bytes.
    return args + ["-r", str(info.fps), "-fps_mode", "cfr", "-s", f"{info.width}x{info.height}",
                   "-f", "rawvideo", "-pix_fmt", fmt, "pipe:1"]


def _read_frames(proc: _FFmpeg, info: VideoInfo) -> Iterator[np.ndarray]:
    """Frames from a decoder's stdout as (H, W, C) uint8 or uint16 arrays, until it ends."""
    _, channels, dtype = info.decode_format
    shape = (info.height, info.width, channels)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    while True:
        buf = proc.proc.stdout.read(nbytes)
        if not buf or len(buf) < nbytes:
            return
        yield np.frombuffer(buf, dtype).reshape(shape)


def _check_decoder(proc: _FFmpeg, info: VideoInfo, frames: int) -> None:
    rc = proc.wait()
    if rc != 0:
        raise InputError(f"{info.path}: ffmpeg could not decode the video (exit {rc}): {proc.stderr_tail()}")
    if frames == 0:
        raise InputError(
            f"{info.path}: no frame could be decoded from the selected section ({proc.stderr_tail()}); "
            "the file may be truncated, or --start may be past its last frame"
        )


# --- sampling for normalisation and colour detection -----------------------------------------


def sample_frames(info: VideoInfo, section: Section, count: int = 32, max_pixels: int = 1_000_000) -> list[np.ndarray]:
    """Up to `count` frames spread evenly over the section, as float32 (H', W', C) on [0, 1].

    Long sections (more than SEEK_THRESHOLD frames) are sampled with one fast seek per frame; short
    ones, and sections of unknown length, in one decoding pass that keeps an evenly thinned set.
    Frames above `max_pixels` are thinned by a pixel stride: samples serve percentiles and the
    gray test only.
    """
    stride = max(1, math.ceil(math.sqrt(info.width * info.height / max_pixels)))
    expected = section.frames(info)
    frames = []
    if expected is not None and expected > SEEK_THRESHOLD:
        seconds = section.seconds(info)

        def sample(i: int) -> list[np.ndarray]:
            proc = _FFmpeg(_decoder_args(info, section, start=section.start + (i + 0.5) * seconds / count, frames=1),
                           stdout=subprocess.PIPE)
            try:
                return [io.to_unit(f[::stride, ::stride]) for f in _read_frames(proc, info)]
            finally:
                proc.kill()

        # Each seek decodes from the keyframe before it (up to x264's 250 frames): the decoders run
        # side by side, one per core, in the order of their times. On Ctrl-C or an error, map
        # cancels the seeks not started.
        with ThreadPoolExecutor(max_workers=min(count, os.cpu_count() or 1, 8)) as pool:
            frames = [f for got in pool.map(sample, range(count)) for f in got]
    if not frames:
        proc = _FFmpeg(_decoder_args(info, section), stdout=subprocess.PIPE)
        try:
            # Thinned before scaling: only the kept frames are converted to float.
            frames = [io.to_unit(f) for f in _thinned((f[::stride, ::stride] for f in _read_frames(proc, info)), count)]
            _check_decoder(proc, info, len(frames))
        finally:
            proc.kill()
    return frames


def _thinned(items: Iterator, count: int) -> list:
    """At most `count` items spread evenly over an iterator of unknown length (memory: 2 × count)."""
    kept, step = [], 1
    for i, item in enumerate(items):
        if i % step == 0:
            kept.append(item)
            if len(kept) == 2 * count:
                kept, step = kept[::2], step * 2
    if len(kept) <= count:
        return kept
    return [kept[i] for i in np.linspace(0, len(kept) - 1, count).round().astype(int)]


def is_gray(samples: list[np.ndarray], tolerance: float = GRAY_TOLERANCE) -> bool:
    """True when every sampled (H, W, 3) frame has its three channels equal within `tolerance`.

    Gray recorded into RGB video comes back with channels within a level of each other after
    yuv420p; 0.1 % of the pixels may differ more (codec ringing at sharp edges).
    """
    for frame in samples:
        if frame.ndim == 2 or frame.shape[2] == 1:
            continue
        spread = channel_spread(frame)
        if np.count_nonzero(spread > tolerance + 1e-6) > 1e-3 * spread.size:
            return False
    return True


def choose_channels(mode: str, info: VideoInfo, samples: list[np.ndarray], model_channels: int = 1) -> str:
    """"gray", "luma" or "rgb" for --channels `mode` ("auto" decides from the file and samples)."""
    if mode not in CHANNEL_MODES:
        raise ConfigError(f"unknown --channels {mode!r}; use one of {', '.join(CHANNEL_MODES)}")
    if model_channels == 3:
        if info.gray_source:
            raise ConfigError(f"{info.path}: the video is gray ({info.pix_fmt}) and the model takes 3 channels (RGB); use a 1-channel model")
        if mode not in ("auto", "rgb"):
            raise ConfigError(f"the model takes 3 channels (RGB); --channels {mode} needs a 1-channel model, use --channels rgb")
        return "rgb"
    if model_channels != 1:
        raise ConfigError(f"the model takes {model_channels} channels; video needs a 1- or 3-channel model")
    if info.gray_source:
        return "gray"  # one channel is all there is
    if mode == "auto":
        return "gray" if is_gray(samples) else "luma"
    return mode


def channel_mean(frame: np.ndarray) -> np.ndarray:
    """The mean over the channels of an (H, W, C) frame as float32 (H, W): equal to
    `frame.mean(axis=2, dtype=np.float32)`, and 8× faster (numpy reduces a short last axis slowly:
    12.8 vs 1.5 ms for a 1280×720 RGB frame)."""
    total = frame[..., 0].astype(np.float32)
    for c in range(1, frame.shape[2]):
        total += frame[..., c]
    total /= np.float32(frame.shape[2])
    return total


def channel_spread(frame: np.ndarray) -> np.ndarray:
    """max − min over the channels of an (H, W, C) frame, (H, W): equal to `frame.max(axis=2) -
    frame.min(axis=2)`, and 20× faster for the reason `channel_mean` gives (1280×720 RGB float32:
    3 vs 62 ms)."""
    top, bottom = frame[..., 0].copy(), frame[..., 0].copy()
    for c in range(1, frame.shape[2]):
        np.maximum(top, frame[..., c], out=top)
        np.minimum(bottom, frame[..., c], out=bottom)
    top -= bottom
    return top


def planes_of(frame: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(planes (P, H, W) the network sees, chroma (H, W, 2) kept aside or None) of a [0, 1] frame."""
    if frame.ndim == 2:
        return frame[None], None
    if frame.shape[2] == 1 or mode == "gray":
        return channel_mean(frame)[None], None
    if mode == "luma":
        ycc = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YCrCb)
        return np.ascontiguousarray(ycc[..., 0])[None], ycc[..., 1:]
    return np.ascontiguousarray(np.moveaxis(frame, -1, 0)), None


def frame_of(planes: np.ndarray, chroma: np.ndarray | None, mode: str) -> np.ndarray:
    """The inverse of `planes_of`: (H, W) gray or (H, W, 3) RGB, float32, not clipped."""
    if mode == "luma" and chroma is not None:
        # cv2.merge interleaves the channels 3× faster than np.concatenate on the short last axis.
        ycc = cv2.merge([planes[0].astype(np.float32, copy=False), chroma[..., 0], chroma[..., 1]])
        return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    if planes.shape[0] == 1:
        return planes[0]
    return np.ascontiguousarray(np.moveaxis(planes, 0, -1))


def video_range(samples: list[np.ndarray], mode: str, lo_pct: float = 0.1, hi_pct: float = 99.9) -> tuple[float, float]:
    """The one (lo, hi) percentile range of a video, over the planes the network sees."""
    if not samples:
        raise InputError("no frame to compute the intensity range from")
    return percentile_range(np.stack([planes_of(f, mode)[0] for f in samples]), lo_pct, hi_pct)


# --- composing and writing frames -------------------------------------------------------------


def compose(original: np.ndarray | None, enhanced: np.ndarray, layout: str, labels: bool, left_label: str = "original") -> np.ndarray:
    """The uint8 output frame, (H, W) or (H, W, 3), for a layout; sides padded to even numbers.

    `original`: the uint8 frame shown beside (None for the "enhanced" layout); `enhanced`: float on
    [0, 1], not clipped.

    side-by-side: original left, enhanced right (twice the width); compare: one frame, left half
    original and right half enhanced, split by a thin gray line.
    """
    enh = io.from_unit(enhanced, np.uint8)
    if layout == "enhanced":
        out = enh
    else:
        orig = original
        if orig.ndim != enh.ndim:  # gray enhancement of a colour frame: show both in gray
            orig = channel_mean(orig).astype(np.uint8) if orig.ndim == 3 else orig
            enh = channel_mean(enh).astype(np.uint8) if enh.ndim == 3 else enh
        w = enh.shape[1]
        if layout == "side-by-side":
            out = np.concatenate([orig, enh], axis=1)
            places = [(left_label, 0), ("ficli", w)]
        elif layout == "compare":
            out = orig.copy()
            out[:, w // 2 :] = enh[:, w // 2 :]
            out[:, w // 2] = 128
            places = [(left_label, 0), ("ficli", w // 2)]
        else:
            raise ConfigError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
        if labels:
            for text, x in places:
                _label(out, text, x)
    return even_sides(out)


def _label(frame: np.ndarray, text: str, x: int) -> None:
    """Small white text with a dark outline at the top left of the region starting at column x."""
    h = frame.shape[0]
    scale = max(0.3, h / 720 * 0.8)
    thick = max(1, round(scale * 1.5))
    (_, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    org = (x + max(3, th // 2), max(3, th // 2) + th)
    dark, light = (0, 0, 0)[: 1 if frame.ndim == 2 else 3], (255, 255, 255)[: 1 if frame.ndim == 2 else 3]
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, dark, thick + 2, cv2.LINE_AA)
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, light, thick, cv2.LINE_AA)


def even_sides(frame: np.ndarray) -> np.ndarray:
    """Pad an odd height or width by one pixel that repeats the last row or column (yuv420p)."""
    ph, pw = frame.shape[0] % 2, frame.shape[1] % 2
    if not (ph or pw):
        return frame
    return np.pad(frame, ((0, ph), (0, pw)) + ((0, 0),) * (frame.ndim - 2), mode="edge")


def raw_bytes(frame: np.ndarray, pix_fmt: str) -> bytes:
    """An output frame as the encoder's rawvideo input: "gray" (H, W) or "rgb24" (H, W, 3) bytes.

    Gray output goes to ffmpeg as gray: a third of the bytes through the pipe and no RGB -> YUV
    conversion (x264 at 1280×720 on 2 cores: 1.1-1.3× the frames/s of the same frames as rgb24).
    """
    if pix_fmt == "gray":
        if frame.ndim != 2:
            raise ValueError(f"a gray encoder got a frame of shape {frame.shape}")
        return np.ascontiguousarray(frame).tobytes()
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    return np.ascontiguousarray(frame).tobytes()


# --- options, plan and report -----------------------------------------------------------------


# Frames up to 1280×720 run whole and 1920×1080 in two 1008×1080 tiles (5 % recomputed), where
# balanced 512-px tiles recompute 31 % and 47 % (1280×720 end to end on 2 CPU cores: 1.07×).
# Memory: about 0.5 GB per million pixels of a network call in fp32 (4 frames of 720p: 1.9 GB).
VIDEO_TILE = 1280


@dataclass(frozen=True)
class VideoOptions:
    """What `ficli video` was asked to do (defaults as in its --help)."""

    out: Path | None = None  # default: <name>_ficli.mp4 next to the input
    overwrite: bool = False
    layout: str = "enhanced"  # "enhanced", "side-by-side" or "compare"
    labels: bool = True
    channels: str = "auto"
    upscale: int = 1
    normalize: bool = True
    lo_pct: float = 0.1
    hi_pct: float = 99.9
    samples: int = 32
    section: Section = Section()
    frames_dir: Path | None = None
    crf: int = 18
    preset: str = "medium"
    tile: TileConfig = TileConfig(tile=VIDEO_TILE)
    batch: int = 4  # frames per network call (one tile position of each)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ConfigError(f"unknown layout {self.layout!r}; use one of {', '.join(LAYOUTS)}")
        if self.channels not in CHANNEL_MODES:
            raise ConfigError(f"unknown --channels {self.channels!r}; use one of {', '.join(CHANNEL_MODES)}")
        if self.upscale < 1:
            raise ConfigError(f"--upscale must be 1 or more, got {self.upscale}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"--crf must be between 0 (lossless) and 51, got {self.crf}")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown --preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        if self.samples < 1:
            raise ConfigError(f"the number of frames sampled for the intensity range must be at least 1, got {self.samples}")
        if self.batch < 1:
            raise ConfigError(f"--batch must be at least 1, got {self.batch}")


@dataclass(frozen=True)
class VideoPlan:
    """What will be done, known before the first frame: for a progress bar and a first line."""

    info: VideoInfo
    out: Path
    channels: str  # "gray", "luma" or "rgb"
    range: tuple[float, float] | None  # (lo, hi) on the [0, 1] scale, None with --no-normalize
    frames: int | None  # expected frames (duration × fps), None when unknown
    width: int  # output frame size (even)
    height: int
    audio: str  # "copied", "re-encoded to AAC" or "none"
    samples: int  # frames the range and the gray test were computed from

    @property
    def encode_format(self) -> str:
        """rawvideo pixel format of the frames handed to the encoder: gray output stays gray."""
        return "gray" if self.channels == "gray" else "rgb24"

    def describe(self) -> str:
        rng = f"range {self.range[0]:.4g}..{self.range[1]:.4g} from {self.samples} frames" if self.range else "not normalised"
        total = f"~{self.frames}" if self.frames is not None else "unknown number of"
        return (f"{self.info.path.name}: {self.info.describe()} -> {self.out.name}: {self.width}×{self.height}, "
                f"{total} frames, channels {self.channels}, {rng}, audio {self.audio}")


@dataclass
class VideoReport:
    """What was written. fps is end to end (probe to rename); network_fps counts the inference
    thread only (the tiled engine and the network with the transfers to and from the device, the
    inverse map)."""

    out: Path
    frames: int
    seconds: float
    network_seconds: float
    plan: VideoPlan
    notices: list[str] = field(default_factory=list)
    start_seconds: float = 0.0  # of `seconds`, before the first frame: probe, sampling, range

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    @property
    def stream_fps(self) -> float:
        """The rate once frames flow (all stages running): what a long recording gets end to end."""
        return self.frames / max(self.seconds - self.start_seconds, 1e-9)

    @property
    def network_fps(self) -> float:
        return self.frames / max(self.network_seconds, 1e-9)


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C during `enhance_video`, after the output was closed or removed; str() says which."""

    def __init__(self, message: str, partial: Path | None, frames: int):
        super().__init__(message)
        self.partial = partial
        self.frames = frames

    def __str__(self) -> str:
        return self.args[0]


def default_output(src: Path) -> Path:
    return src.with_name(f"{src.stem}_ficli.mp4")


def output_path(src: Path, options: VideoOptions) -> Path:
    return Path(options.out) if options.out is not None else default_output(src)


def check_video(src: str | os.PathLike, options: VideoOptions) -> VideoInfo:
    """Probe the input and check the section, the output frame size and the outputs; FicliError
    before any work is done."""
    src = Path(src)
    info = probe_video(src)
    options.section.check(info)
    s = options.upscale
    if s > 1:  # before a frame that size is allocated (--upscale 200 on 720p: 37 GB a frame)
        wide = 2 if options.layout == "side-by-side" else 1
        most = max(1, math.isqrt(io.MAX_PIXELS // max(info.width * wide * info.height, 1)))
        io.check_pixel_limit(src, info.height * s, info.width * s * wide,
                             f"--upscale {s} would make its {info.width}×{info.height} frames" + (" side by side" if wide > 1 else ""),
                             f"use --upscale {most} or less")
    check_output(src, output_path(src, options), options.overwrite, options.frames_dir)
    return info


def partial_output(out: Path) -> Path:
    return out.with_name(f"{out.stem}.partial{out.suffix}")


def check_output(src: Path, out: Path, overwrite: bool, frames_dir: Path | None = None) -> None:
    """OutputError for an output that is the input, of an unknown type, or exists without --overwrite."""
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give a file name such as {out / default_output(src).name}")
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"{out}: cannot write this file type; use {', '.join(VIDEO_SUFFIXES)}")
    if out.resolve() == src.resolve():
        raise OutputError(f"{out}: refusing to overwrite the input video; choose another --out")
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: exists already; use --overwrite to replace it, or another --out")
    if frames_dir is not None:
        if frames_dir.exists() and not frames_dir.is_dir():
            raise OutputError(f"{frames_dir}: --frames-dir is a file, not a folder")
        if not overwrite and frames_dir.is_dir() and any(frames_dir.glob(f"{src.stem}_*.png")):
            raise OutputError(f"{frames_dir}: holds {src.stem}_*.png frames already; use --overwrite or another --frames-dir")


def _audio_plan(info: VideoInfo, out: Path) -> tuple[str, list[str]]:
    """(what happens to the audio, encoder arguments for it)."""
    if not info.audio:
        return "none", []
    container = VIDEO_SUFFIXES[out.suffix.lower()]
    if container == "mp4" and not all(c in MP4_AUDIO for c in info.audio):
        return "re-encoded to AAC", ["-c:a", "aac", "-b:a", "192k"]
    return "copied", ["-c:a", "copy"]


def _encoder_args(plan: VideoPlan, section: Section, options: VideoOptions, tmp: Path) -> list[str]:
    """ffmpeg arguments that encode `plan.encode_format` frames from stdin, with the section's audio, into `tmp`."""
    info = plan.info
    _, audio_args = _audio_plan(info, plan.out)
    args = ["-y", "-f", "rawvideo", "-pix_fmt", plan.encode_format, "-s", f"{plan.width}x{plan.height}",
            "-framerate", str(info.fps), "-i", "pipe:0"]
    if audio_args:
        # The audio of the same section, from the input file, packet for packet.
        if section.start > 0:
            args += ["-ss", f"{section.start:.6f}"]
        seconds = section.seconds(info)
        if seconds is not None and (section.duration is not None or section.max_frames is not None):
            args += ["-t", f"{seconds:.6f}"]
        args += ["-i", str(info.path), "-map", "0:v:0", "-map", "1:a?", *audio_args]
    else:
        args += ["-map", "0:v:0"]
    sar = "" if info.sar == (1, 1) else f",setsar={info.sar[0]}/{info.sar[1]}"
    # From gray, swscale leaves half the chroma samples at 127; neutral is 128 (no tint).
    neutral = ",lutyuv=u=128:v=128" if plan.encode_format == "gray" else ""
    args += [
        "-c:v", "libx264", "-preset", options.preset, "-crf", str(options.crf),
        "-vf", f"scale=out_color_matrix=bt709:out_range=tv,setparams=colorspace=bt709:color_primaries=bt709:"
               f"color_trc=bt709{sar}{neutral}", "-pix_fmt", "yuv420p",
    ]
    container = VIDEO_SUFFIXES[plan.out.suffix.lower()]
    if container in ("mp4", "mov"):
        args += ["-movflags", "+faststart"]
    return args + ["-f", container, str(tmp)]


# --- inference on a group of frames -----------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """One decoded frame made ready for the network (by the decoding thread)."""

    original: np.ndarray | None  # the uint8 frame shown beside the result, or None
    planes: np.ndarray  # (P, H, W) normalised planes the network sees
    chroma: np.ndarray | None  # (H, W, 2) kept aside in luma mode
    flat: list[float | None]  # per plane: its value if constant (put back after the network), else None


@dataclass(frozen=True)
class _Inference:
    """The work on a frame in three steps: `prepare` in the decoding thread (scale, enlarge, split
    into planes, normalise, the 8-bit original to show), `network` and `finish` in the inference
    thread (the tiled engine on a group of frames; the inverse map, planes back into a frame). Most
    host work thus runs beside the network instead of between its calls; the inverse map stays with
    it because the encoding thread has the heavier share (composing, 8-bit conversion)."""

    generator: Callable[[torch.Tensor], torch.Tensor]
    model_channels: int
    mode: str
    range: tuple[float, float] | None
    upscale: int
    tile: TileConfig
    keep_original: bool = False  # for side-by-side and compare layouts
    on_notice: Callable[[str], None] | None = None

    def prepare(self, frame: np.ndarray) -> _Prepared:
        """A decoded uint frame (H, W, C) as the network's normalised planes."""
        x = io.to_unit(frame)
        if x.shape[2] == 1:
            x = x[..., 0]
        planes, chroma = planes_of(x, self.mode)
        flat = flat_values(planes)  # before enlarging, which may add rounding
        if self.upscale > 1:
            h, w = x.shape[:2]
            x = resize_array(x, (h * self.upscale, w * self.upscale))
            planes, chroma = planes_of(x, self.mode)
        lo, hi = self.range or (0.0, 1.0)
        if not self.keep_original:
            shown = None
        elif frame.dtype == np.uint8 and self.upscale == 1:  # as decoded: from_unit(to_unit(v)) is v, exactly
            shown = frame[..., 0] if frame.shape[2] == 1 else frame
        else:
            shown = io.from_unit(x, np.uint8)
        return _Prepared(shown, normalize(planes, lo, hi), chroma, flat)

    def network(self, frames: list[_Prepared]) -> list[np.ndarray]:
        """The network's (P, H, W) output planes, still normalised, for each prepared frame.

        The planes of all frames go through `run_tiled` together as the channels of one image, so
        each network call holds the same tile of every frame; `_per_image` reshapes them into a
        batch of separate images for the generator.
        """
        stack = frames[0].planes if len(frames) == 1 else np.concatenate([f.planes for f in frames])
        y = run_tiled(_per_image(self.generator, self.model_channels), stack, self.tile, on_notice=self.on_notice)
        per = frames[0].planes.shape[0]
        return [y[i * per : (i + 1) * per] for i in range(len(frames))]

    def finish(self, frame: _Prepared, planes: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(the uint8 original to show or None, the enhanced float32 frame on [0, 1]) from the
        network's planes."""
        lo, hi = self.range or (0.0, 1.0)
        planes = denormalize(planes, lo, hi)
        keep_flat(planes, frame.flat)  # flat in, flat out
        return frame.original, frame_of(planes, frame.chroma, self.mode)


def _per_image(generator, channels: int):
    """(B, P, h, w) -> generator on (B·P/channels, channels, h, w) -> (B, P, h, w)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        b, p, h, w = x.shape
        return generator(x.reshape(b * p // channels, channels, h, w)).reshape(b, p, h, w)

    return fn


# --- the pipeline -----------------------------------------------------------------------------


_END = object()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item` unless `stop` is set first; a full queue waits (this is the back-pressure)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    """The next item, or _END once `stop` is set (the writer failed: nothing more will be read)."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return _END


def _reader(proc: _FFmpeg, info: VideoInfo, prepare: Callable, q: queue.Queue, stop: threading.Event) -> None:
    count = 0
    try:
        for frame in _read_frames(proc, info):
            if not _put(q, prepare(frame), stop):
                return
            count += 1
        if not stop.is_set():
            _check_decoder(proc, info, count)
        _put(q, _END, stop)
    except BaseException as exc:  # handed to the inference thread, which raises it
        _put(q, exc, stop)


@dataclass
class _Writer:
    proc: _FFmpeg
    options: VideoOptions
    left_label: str
    frames_dir: Path | None
    stem: str
    dtype: np.dtype
    pix_fmt: str = "rgb24"  # what the encoder reads (VideoPlan.encode_format)
    written: int = 0
    error: BaseException | None = None

    def run(self, q: queue.Queue, stop: threading.Event, abort: threading.Event) -> None:
        """Write queued frames until the end marker (or `abort`); on failure set `stop` for the others."""
        try:
            while True:
                item = _get(q, abort)
                if item is _END:
                    break
                original, enhanced = item
                out = compose(original, enhanced, self.options.layout, self.options.labels, self.left_label)
                self.proc.proc.stdin.write(raw_bytes(out, self.pix_fmt))
                if self.frames_dir is not None:
                    io.write_image(self.frames_dir / f"{self.stem}_{self.written + 1:06d}.png",
                                   io.from_unit(np.clip(enhanced, 0, 1), self.dtype))
                self.written += 1
        except BaseException as exc:
            self.error = exc
            stop.set()


def plan_video(src: str | os.PathLike, options: VideoOptions, model_channels: int = 1, *, info: VideoInfo | None = None,
               on_notice: Callable[[str], None] | None = None) -> VideoPlan:
    """Everything decided before the first frame: checks, sampling, channels, range, sizes, audio."""
    notice = on_notice or (lambda message: None)
    src = Path(src)
    info = check_video(src, options) if info is None else info
    out = output_path(src, options)
    if info.fps_guessed:
        notice(f"{src.name} states no frame rate; 25 fps assumed")
    needed = options.normalize or (options.channels == "auto" and not info.gray_source)
    samples = sample_frames(info, options.section, options.samples) if needed else []
    mode = choose_channels(options.channels, info, samples, model_channels)
    if options.channels == "gray" and not info.gray_source and not is_gray(samples):
        notice("--channels gray on a colour video: the output is gray")
    rng = video_range(samples, mode, options.lo_pct, options.hi_pct) if options.normalize else None
    s = options.upscale
    width, height = info.width * s * (2 if options.layout == "side-by-side" else 1), info.height * s
    audio, _ = _audio_plan(info, out)
    if audio == "re-encoded to AAC":
        notice(f"the audio ({', '.join(info.audio)}) cannot be stored unchanged in {out.suffix}; re-encoded to AAC "
               "192 kb/s (write .mkv or .mov to keep it as it is)")
    return VideoPlan(info=info, out=out, channels=mode, range=rng, frames=options.section.frames(info),
                     width=width + width % 2, height=height + height % 2, audio=audio, samples=len(samples))


def enhance_video(
    src: str | os.PathLike,
    generator: Callable[[torch.Tensor], torch.Tensor],
    options: VideoOptions = VideoOptions(),
    model_channels: int = 1,
    *,
    info: VideoInfo | None = None,
    on_start: Callable[[VideoPlan], None] | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> VideoReport:
    """Enhance the video `src` frame by frame with `generator` and write an H.264 file.

    See the module docstring for normalisation, colour, frame rate, odd sizes and Ctrl-C. `info`:
    what `check_video(src, options)` returned, to check the input and output before loading a model.
    `on_start(plan)` is called once before decoding starts, `on_progress(done, expected)` after each
    group of frames (expected is None when unknown), `on_notice(message)` for anything the user
    should know (audio re-encoded, fewer frames than expected...). Raises FicliError for user
    mistakes and ffmpeg failures (with the end of ffmpeg's messages) and VideoInterrupted on Ctrl-C.
    """
    t0 = time.perf_counter()
    notices: list[str] = []

    def notice(message: str) -> None:
        if message not in notices:
            notices.append(message)
            if on_notice is not None:
                on_notice(message)

    src = Path(src)
    plan = plan_video(src, options, model_channels, info=info, on_notice=notice)
    start_seconds = time.perf_counter() - t0
    info, section, out, mode, s = plan.info, options.section, plan.out, plan.channels, options.upscale
    if on_start is not None:
        on_start(plan)

    per_frame = 3 if mode == "rgb" else 1
    group = max(1, options.batch // per_frame) if model_channels == 1 else options.batch
    infer = _Inference(generator, model_channels, mode, plan.range, s, replace(options.tile, batch=1),
                       keep_original=options.layout != "enhanced", on_notice=notice)
    left = f"bicubic x{s}" if s > 1 else "original"

    stale = io.remove_stale_parts([out])
    if stale:
        notice(f"removed {stale} unfinished temporary file(s) of a killed earlier run beside {out}")
    try:
        if options.frames_dir is not None:
            options.frames_dir.mkdir(parents=True, exist_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=f".part{out.suffix}", dir=out.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{out.parent}: cannot write here ({exc.strerror or exc}); check the folder and its permissions") from None
    tmp = Path(tmp_name)

    stop = threading.Event()  # no more reading: set on the end, an error or Ctrl-C
    abort = threading.Event()  # no more writing either: set on an error
    # Short queues bound memory: one group being enhanced, one waiting, one being written.
    q_in: queue.Queue = queue.Queue(maxsize=group + 2)
    q_out: queue.Queue = queue.Queue(maxsize=group)
    encoder = decoder = None
    writer = _Writer(None, options, left, options.frames_dir, src.stem, info.decode_format[2], plan.encode_format)
    threads: list[threading.Thread] = []
    done, network = 0, 0.0
    try:
        encoder = _FFmpeg(_encoder_args(plan, section, options, tmp), stdin=subprocess.PIPE)
        writer.proc = encoder
        decoder = _FFmpeg(_decoder_args(info, section), stdout=subprocess.PIPE)
        threads = [threading.Thread(target=_reader, args=(decoder, info, infer.prepare, q_in, stop), daemon=True, name="ficli-decode"),
                   threading.Thread(target=writer.run, args=(q_out, stop, abort), daemon=True, name="ficli-encode")]
        for thread in threads:
            thread.start()
        finished = False
        while not finished:
            frames = []
            while len(frames) < group:
                item = _get(q_in, stop)
                if item is _END:
                    finished = True
                    break
                if isinstance(item, BaseException):
                    raise item
                frames.append(item)
            if frames:
                t = time.perf_counter()
                results = [infer.finish(f, y) for f, y in zip(frames, infer.network(frames))]
                network += time.perf_counter() - t
                for result in results:
                    if not _put(q_out, result, stop):
                        break
                done += len(frames)
            if writer.error is not None:
                break
            if on_progress is not None:
                on_progress(done, plan.frames)
        _put(q_out, _END, stop)
        threads[1].join()
        _close_encoder(encoder, writer, out)
    except KeyboardInterrupt:
        raise _interrupted(stop, abort, decoder, encoder, writer, threads, q_out, tmp, out, plan) from None
    except BaseException:
        stop.set()
        abort.set()
        for proc in (decoder, encoder):
            if proc is not None:
                proc.kill()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        stop.set()
        if decoder is not None:
            decoder.kill()

    _finish(tmp, out)
    expected = plan.frames
    if expected is not None and done < 0.9 * expected:
        notice(f"{src.name}: {done} frames decoded where about {expected} were expected; the file may be truncated")
    return VideoReport(out=out, frames=writer.written, seconds=time.perf_counter() - t0,
                       network_seconds=network, plan=plan, notices=notices, start_seconds=start_seconds)


def _close_encoder(encoder: _FFmpeg, writer: _Writer, out: Path) -> None:
    """Close the encoder's input and wait for it; OutputError with ffmpeg's last words on failure."""
    try:
        encoder.proc.stdin.close()
    except OSError:
        pass
    rc = encoder.wait()
    if writer.error is not None and not isinstance(writer.error, OSError):
        raise writer.error
    if rc != 0 or writer.error is not None:
        raise OutputError(f"{out}: ffmpeg could not encode the video (exit {rc}): {encoder.stderr_tail()}")


def _finish(tmp: Path, out: Path) -> None:
    try:
        os.chmod(tmp, 0o666 & ~io.UMASK)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{out}: could not be written ({exc.strerror or exc})") from None


def _interrupted(stop, abort, decoder, encoder, writer, threads, q_out, tmp: Path, out: Path, plan: VideoPlan) -> VideoInterrupted:
    """Close the output on the frames already enhanced (or remove it); the exception says which."""
    stop.set()  # the reader stops; the writer goes on with what is queued
    if decoder is not None:
        decoder.kill()
    partial = partial_output(out)
    try:
        if encoder is None or len(threads) < 2 or not threads[1].is_alive():
            raise RuntimeError("no encoder to finish")
        q_out.put(_END, timeout=60)  # after the frames already queued: they are enhanced
        threads[1].join()
        _close_encoder(encoder, writer, out)
        if writer.written == 0:
            raise RuntimeError("no frame was written")
        _finish(tmp, partial)
        _trim_to_video(partial, writer.written, plan.info.fps)
        message = (f"stopped after {writer.written} frames; they were saved, playable, in {partial} "
                   f"({out} was not written); run again to process the whole video")
        return VideoInterrupted(message, partial, writer.written)
    except BaseException:  # a second Ctrl-C, or nothing to keep: leave no file behind
        abort.set()
        for proc in (decoder, encoder):
            if proc is not None:
                proc.kill()
        tmp.unlink(missing_ok=True)
        return VideoInterrupted(f"stopped before any frame was saved; no file was left ({out} was not written)", None, 0)


def _trim_to_video(path: Path, frames: int, fps: Fraction) -> None:
    """Cut the audio of an interrupted output to its video's length (a stream copy); best effort."""
    tmp = path.with_name(f".{path.stem}.trim{path.suffix}")
    try:
        proc = _FFmpeg(["-nostdin", "-y", "-i", str(path), "-map", "0", "-c", "copy", "-t", f"{float(frames / fps):.6f}",
                        "-f", VIDEO_SUFFIXES[path.suffix.lower()], str(tmp)])
        if proc.wait() == 0:
            os.replace(tmp, path)
    except Exception:  # the untrimmed file plays too: its audio just runs on
        pass
    finally:
        tmp.unlink(missing_ok=True)


# --- benchmark --------------------------------------------------------------------------------


STAGES = ("decode", "host", "transfer", "model", "encode")


def bench_video(size: tuple[int, int] = (640, 360), frames: int = 8, model: str | os.PathLike | None = None,
                device: str = "cpu", precision: str = "fp32", repeats: int = 1, compile_model: bool = False) -> dict:
    """End-to-end `enhance_video` frames/s for one frame size (width, height), next to the rate of
    each stage alone, and the stage that limits it.

    On a synthetic gray clip of `frames` frames and (without `model`) a default-size generator with
    random weights (the time does not depend on them), each stage is timed on its own, with nothing
    beside it; the best of `repeats` runs after a warm-up counts:
    - decode: ffmpeg decoding the clip into frames in memory;
    - host: the CPU work around the network, in the decoding thread (scaling, normalisation), in
      the inference thread (the engine's own work, the inverse map) and in the encoding thread
      (composing the output frame and its bytes for the encoder): the rate of the busiest share
      (the inference thread's adds to the model's time);
    - transfer: the frame to the device and back (None on the CPU);
    - model: the generator alone on a frame already on the device;
    - encode: the H.264 encoder, with `enhance_video`'s settings, on frames already composed.
    The stages overlap in the pipeline (decode, host work and encode in their own threads and
    processes; transfer and model share the inference thread), so the slowest one bounds the
    end-to-end rate: "limit" names it. "e2e" is `enhance_video`'s rate once frames flow (decoding
    to encoding, every stage running: what a long recording gets); "start_s" the one-off seconds
    before the first frame (probe, sampling, range), which a short clip pays on top. "pipeline" is
    e2e with an identity network on the device: the rate everything but the model allows, the
    stages running together as they do for real (on a CPU they share its cores). `compile_model`:
    the generator runs as `ficli video --compile` runs it (`CompiledGenerator`, CUDA graphs on CUDA).
    """
    from ficli.bench import device_sync
    from ficli.enhance import CompiledGenerator, load_generator
    from ficli.modelfile import save_model
    from ficli.nets import Generator, GeneratorConfig
    from ficli.phantom import phantom

    w, h = size
    dev = torch.device(device)
    sync = device_sync(dev)
    dtype = resolve_precision(precision, dev)
    tile = TileConfig(tile=VIDEO_TILE, device=device, precision=precision)
    with tempfile.TemporaryDirectory(prefix="ficli-bench-") as folder:
        folder = Path(folder)
        clip = folder / "clip.mp4"
        base = phantom(h + frames * 2, w + frames * 2, seed=0, peak_photons=None)
        proc = _FFmpeg(["-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "-framerate", "25", "-i", "pipe:0",
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(clip)], stdin=subprocess.PIPE)
        for i in range(frames):
            proc.proc.stdin.write(io.from_unit(base[i : i + h, i : i + w], np.uint8).tobytes())
        proc.proc.stdin.close()
        if proc.wait() != 0:
            raise FicliError(f"could not write the benchmark clip: {proc.stderr_tail()}")
        if model is None:
            torch.manual_seed(0)
            config = GeneratorConfig()
            g = Generator(config)
            with torch.no_grad():
                g.out_scale.fill_(0.1)
            model = save_model(folder / "random.safetensors", g, config, {"scale": 4, "note": "random weights, timing only"})
        generator, meta = load_generator(model, dev)
        if compile_model:
            torch._dynamo.reset()  # no graphs or recompilation count carried over from other rows
            generator = CompiledGenerator(generator, cuda_graphs=dev.type == "cuda")
        channels = meta["config"].channels
        options = VideoOptions(out=folder / "out.mp4", tile=tile, batch=1)
        info = probe_video(clip)

        def best_rate(run: Callable[[], object], count: int, warmup: int = 1) -> float:
            for _ in range(warmup):  # cuDNN's algorithm search; compiling and CUDA graph recording
                run()
            best = math.inf
            for _ in range(repeats):
                t = time.perf_counter()
                run()
                sync()
                best = min(best, time.perf_counter() - t)
            return count / best

        plan = plan_video(clip, options, channels, info=info)
        decoded = _all_frames(info)
        rates = {"decode": best_rate(lambda: _all_frames(info), len(decoded))}
        host = _Inference(lambda x: x, channels, plan.channels, plan.range, 1, replace(tile, device="cpu", precision="fp32", batch=1))
        # The decoding thread's share (prepare), the inference thread's (network and finish with an
        # identity network: the engine's own work) and the encoding thread's (compose, bytes).
        def decoding_share():
            return [host.prepare(frame) for frame in decoded]

        def inference_share():
            return [host.finish(p, host.network([p])[0])[1] for p in prepared]

        def encoding_share():
            return [raw_bytes(compose(None, frame, "enhanced", False), plan.encode_format) for frame in enhanced]

        prepared = decoding_share()
        enhanced = inference_share()
        composed = encoding_share()
        rates["host"] = min(best_rate(share, len(decoded)) for share in (decoding_share, inference_share, encoding_share))
        planes = torch.from_numpy(io.to_unit(decoded[0])[None, None, ..., 0].copy())
        x = planes.to(dev).contiguous(memory_format=torch.channels_last)
        rates["transfer"] = best_rate(lambda: planes.to(dev).cpu(), 1) if dev.type != "cpu" else None
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype is not torch.float32):
            rates["model"] = best_rate(lambda: generator(x), 1, warmup=3 if compile_model else 1)

        def encode():
            enc = _FFmpeg(_encoder_args(plan, Section(), options, folder / "encoded.mp4"), stdin=subprocess.PIPE)
            for data in composed:
                enc.proc.stdin.write(data)
            enc.proc.stdin.close()
            if enc.wait() != 0:
                raise FicliError(f"the benchmark encoder failed: {enc.stderr_tail()}")

        rates["encode"] = best_rate(encode, len(composed))
        again = replace(options, overwrite=True)
        pipeline = max(enhance_video(clip, lambda x: x, again, channels).stream_fps for _ in range(repeats))
        enhance_video(clip, generator, again, channels)  # warm-up: the pipeline's threads and caches
        runs = [enhance_video(clip, generator, again, channels) for _ in range(repeats)]
        e2e = max(r.stream_fps for r in runs)
        start = min(r.start_seconds for r in runs)
    limit = min((stage for stage in STAGES if rates[stage] is not None), key=lambda stage: rates[stage])
    return {
        "width": w, "height": h, "frames": len(decoded), "device": str(dev), "precision": precision, "compiled": compile_model,
        **{f"{stage}_fps": rates[stage] for stage in STAGES},
        "pipeline_fps": pipeline, "e2e_fps": e2e, "start_s": start, "e2e/model": e2e / rates["model"], "limit": limit,
    }


def _all_frames(info: VideoInfo) -> list[np.ndarray]:
    proc = _FFmpeg(_decoder_args(info, Section()), stdout=subprocess.PIPE)
    frames = [f.copy() for f in _read_frames(proc, info)]
    _check_decoder(proc, info, len(frames))
    return frames

