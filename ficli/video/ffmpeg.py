"""ffmpeg for `video`: the child processes, probing a file, and the arguments of decoders and encoders.

ffmpeg is imageio-ffmpeg's bundled binary (no system ffmpeg is assumed), run as child processes in
their own session, so that Ctrl-C in the terminal reaches ficli only and ficli decides how to close
the output. Decoders write raw frames on stdout at the stream's constant rate (`decoder_args`,
`read_frames`); encoders read raw frames on stdin and write H.264 with the input's audio
(`encoder_args`). `probe_video` reads what `ffmpeg -i` says about a file (`VideoInfo`); `Section`
is the part of it to process; `sample_frames` spreads frames over a section (for the intensity
range and the gray test; `sample_frames_and_crops` also keeps full-resolution crops of them for the
blur-scale estimate).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from ficli.image import io
from ficli.image.h264 import ffmpeg_exe  # the one place that finds the binary
from ficli.errors import ConfigError, InputError

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
VIDEO_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Audio that MP4 holds as it is (and players play); anything else is re-encoded to AAC there.
MP4_AUDIO = {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3", "mp2"}
SEEK_THRESHOLD = 256  # sections of more frames are sampled by seeking, shorter ones in one pass


# --- processes --------------------------------------------------------------------------------


def _session_kwargs() -> dict:
    """Start children outside the terminal's process group: Ctrl-C must reach ficli alone."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


class FFmpeg:
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
    subtitles: tuple[str, ...] = ()  # codec of each subtitle stream (not copied: `lost_in_output` says so)

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
    video, audio, subtitles = None, [], []
    for i, line in enumerate(lines):
        s = re.match(r"\s*Stream #0:(\d+)[^:]*: (Video|Audio|Subtitle): (.*)", line)
        if not s:
            continue
        if s.group(2) == "Subtitle":
            subtitles.append(s.group(3).split()[0].rstrip(","))
        elif s.group(2) == "Audio":
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
        subtitles=tuple(subtitles),
    )


# The finest constant rate a variable-rate video is decoded at, relative to its average rate: every
# frame kept (repeated where it lasted longer) costs this many times the frames to enhance at most.
MAX_VFR_FACTOR = 4


def frame_times(info: VideoInfo) -> list[float] | None:
    """Presentation times in seconds, sorted, of the video stream's packets, listed by demuxing the
    file without decoding it (fast); None where ffmpeg cannot list them."""
    try:
        result = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(info.path), "-map", f"0:{info.stream}",
             "-c", "copy", "-f", "framecrc", "-"], capture_output=True, timeout=300, **_session_kwargs())
    except (subprocess.TimeoutExpired, OSError):
        return None
    base = re.search(rb"#tb 0: (\d+)/(\d+)", result.stdout)
    if result.returncode or not base:
        return None
    tick = Fraction(int(base.group(1)), int(base.group(2)))
    pts = []
    for line in result.stdout.splitlines():
        fields = line.split(b",")
        if not line.startswith(b"#") and len(fields) > 3 and fields[2].strip().lstrip(b"-").isdigit():
            pts.append(int(fields[2]))
    return [float(p * tick) for p in sorted(pts)] or None


def with_timing(info: VideoInfo) -> tuple[VideoInfo, str | None]:
    """`info` with the video stream's own length (not the container's, which a longer audio track
    sets) and, for a variable frame rate, a constant rate fine enough that no frame is dropped
    (frames that last longer are repeated, so the timing and the audio stay in step); and a note to
    say what was done. `info` as it is where the packets cannot be listed."""
    times = frame_times(info)
    if times is None or len(times) < 2:
        return info, None
    steps = [b - a for a, b in zip(times, times[1:]) if b - a > 1e-6]
    if not steps:
        return info, None
    typical = sorted(steps)[len(steps) // 2]
    length = times[-1] - times[0] + typical
    info = replace(info, duration=length)
    shortest = min(steps)
    # Only frames closer together than the constant rate's slots are lost (a longer one is repeated):
    # a quarter of a slot covers the millisecond rounding of MKV timestamps and a camera's jitter.
    if shortest >= 0.75 * min(typical, 1 / float(info.fps)):
        return info, None
    rate = Fraction(round(1 / shortest) if abs(1 / shortest - round(1 / shortest)) < 0.01 else math.ceil(1 / shortest))
    span = f"{len(times)} frames {shortest * 1000:.1f}-{max(steps) * 1000:.1f} ms apart"
    if rate > MAX_VFR_FACTOR * info.fps:
        return info, (f"{info.path.name} has a variable frame rate ({span}); it is resampled to a constant "
                      f"{float(info.fps):.3g} fps, which drops frames shown for less than {1000 / float(info.fps):.1f} ms "
                      "and repeats long ones")
    return replace(info, fps=rate), (f"{info.path.name} has a variable frame rate ({span}): encoded at a constant "
                                    f"{float(rate):g} fps, every frame kept and shown at its time (repeated where it lasts longer)")


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


def decoder_args(info: VideoInfo, section: Section, start: float | None = None, frames: int | None = None) -> list[str]:
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


def read_frames(proc: FFmpeg, info: VideoInfo) -> Iterator[np.ndarray]:
    """Frames from a decoder's stdout as (H, W, C) uint8 or uint16 arrays, until it ends."""
    _, channels, dtype = info.decode_format
    shape = (info.height, info.width, channels)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    while True:
        buf = proc.proc.stdout.read(nbytes)
        if not buf or len(buf) < nbytes:
            return
        yield np.frombuffer(buf, dtype).reshape(shape)


def check_decoder(proc: FFmpeg, info: VideoInfo, frames: int) -> None:
    rc = proc.wait()
    if rc != 0:
        raise InputError(f"{info.path}: ffmpeg could not decode the video (exit {rc}): {proc.stderr_tail()}")
    if frames == 0:
        raise InputError(
            f"{info.path}: no frame could be decoded from the selected section ({proc.stderr_tail()}); "
            "the file may be truncated, or --start may be past its last frame"
        )


def sample_frames(info: VideoInfo, section: Section, count: int = 32, max_pixels: int = 1_000_000) -> list[np.ndarray]:
    """Up to `count` frames spread evenly over the section, as float32 (H', W', C) on [0, 1].

    Long sections (more than SEEK_THRESHOLD frames) are sampled with one fast seek per frame; short
    ones, and sections of unknown length, in one decoding pass that keeps an evenly thinned set.
    Frames above `max_pixels` are thinned by a pixel stride: samples serve percentiles and the
    gray test only.
    """
    return sample_frames_and_crops(info, section, count, 0, max_pixels)[0]


def sample_frames_and_crops(info: VideoInfo, section: Section, count: int = 32, crop: int = 0,
                            max_pixels: int = 1_000_000) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`sample_frames`, and from the same decoding, with `crop` > 0, each sample's central crop of
    at most `crop` × `crop` pixels at full resolution, (h, w, C) as decoded (uint8 or uint16): the
    blur-scale estimate needs the pixels' own spacing, which the stride of a large frame changes."""
    stride = max(1, math.ceil(math.sqrt(info.width * info.height / max_pixels)))
    y0, x0 = max(0, (info.height - crop) // 2), max(0, (info.width - crop) // 2)

    def views(f: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:  # no copies: cheap for every frame of a pass
        return f[::stride, ::stride], (f[y0 : y0 + crop, x0 : x0 + crop] if crop else None)

    def kept(pair: tuple) -> tuple[np.ndarray, np.ndarray | None]:  # copies: the decoded frame can go
        return io.to_unit(pair[0]), (np.array(pair[1]) if crop else None)

    expected = section.frames(info)
    samples = []
    if expected is not None and expected > SEEK_THRESHOLD:
        seconds = section.seconds(info)

        def sample(i: int) -> list[tuple]:
            proc = FFmpeg(decoder_args(info, section, start=section.start + (i + 0.5) * seconds / count, frames=1),
                           stdout=subprocess.PIPE)
            try:
                return [kept(views(f)) for f in read_frames(proc, info)]
            finally:
                proc.kill()

        # Each seek decodes from the keyframe before it (up to x264's 250 frames): the decoders run
        # side by side, one per core, in the order of their times. On Ctrl-C or an error, map
        # cancels the seeks not started.
        with ThreadPoolExecutor(max_workers=min(count, os.cpu_count() or 1, 8)) as pool:
            samples = [f for got in pool.map(sample, range(count)) for f in got]
    if not samples:
        proc = FFmpeg(decoder_args(info, section), stdout=subprocess.PIPE)
        try:
            # Thinned before scaling: only the kept frames are converted to float.
            samples = [kept(pair) for pair in _thinned((views(f) for f in read_frames(proc, info)), count)]
            check_decoder(proc, info, len(samples))
        finally:
            proc.kill()
    return [f for f, _ in samples], [c for _, c in samples if c is not None]


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


# --- encoding ---------------------------------------------------------------------------------


def lost_in_output(info: VideoInfo, frames_dir: Path | None, out: Path) -> list[str]:
    """What of the input the H.264 output `out` cannot hold, each as a note: samples of more than 8
    bits (unless --frames-dir keeps them as 16-bit PNG), subtitle streams `subtitle_args` cannot carry."""
    lost = []
    if info.high_depth and frames_dir is None:
        lost.append(f"{info.path.name} has samples of more than 8 bits ({info.pix_fmt}); the H.264 output holds 8 bits: "
                    "give --frames-dir DIR to keep every enhanced frame at 16 bits as PNG")
    if info.subtitles and not subtitle_args(info, out):
        lost.append(f"{info.path.name}: its {len(info.subtitles)} subtitle stream(s) ({', '.join(info.subtitles)}) are not "
                    f"copied into {out.suffix} (only text subtitles are carried over); add them back with a video editor or mkvmerge")
    return lost


TEXT_SUBTITLES = {"subrip", "ass", "ssa", "webvtt", "mov_text", "text"}


def subtitle_args(info: VideoInfo, out: Path) -> list[str]:
    """Encoder arguments that carry the input's subtitle streams (input 1) into `out`: text subtitles
    only (copied into MKV, as mov_text into MP4/MOV); [] when there are none or some are bitmaps."""
    if not info.subtitles or not all(c in TEXT_SUBTITLES for c in info.subtitles):
        return []
    if VIDEO_SUFFIXES[out.suffix.lower()] == "matroska":
        return ["-map", "1:s?", "-c:s", "srt" if "mov_text" in info.subtitles else "copy"]
    return ["-map", "1:s?", "-c:s", "mov_text"]


def audio_plan(info: VideoInfo, out: Path) -> tuple[str, list[str]]:
    """(what happens to the audio, encoder arguments for it)."""
    if not info.audio:
        return "none", []
    container = VIDEO_SUFFIXES[out.suffix.lower()]
    if container == "mp4" and not all(c in MP4_AUDIO for c in info.audio):
        return "re-encoded to AAC", ["-c:a", "aac", "-b:a", "192k"]
    return "copied", ["-c:a", "copy"]


def encoder_args(info: VideoInfo, section: Section, out: Path, pix_fmt: str, size: tuple[int, int], preset: str, crf: int,
                 tmp: Path, comment: str | None = None) -> list[str]:
    """ffmpeg arguments that encode `pix_fmt` rawvideo frames of `size` (width, height) from stdin
    into `tmp` (H.264 at x264's `preset` and `crf`, BT.709), with the section's audio of `info`'s
    file as `out`'s container holds it (`audio_plan`), and `comment` as the file's comment tag
    (ficli's record, `read_comment`)."""
    _, audio_args = audio_plan(info, out)
    subtitles = subtitle_args(info, out)
    args = ["-y", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{size[0]}x{size[1]}",
            "-framerate", str(info.fps), "-i", "pipe:0"]
    if audio_args or subtitles:
        # The audio (and text subtitles) of the same section, from the input file, packet for packet.
        if section.start > 0:
            args += ["-ss", f"{section.start:.6f}"]
        seconds = section.seconds(info)
        if seconds is not None and (section.duration is not None or section.max_frames is not None):
            args += ["-t", f"{seconds:.6f}"]
        args += ["-i", str(info.path), "-map", "0:v:0"] + (["-map", "1:a?", *audio_args] if audio_args else []) + subtitles
    else:
        args += ["-map", "0:v:0"]
    sar = "" if info.sar == (1, 1) else f",setsar={info.sar[0]}/{info.sar[1]}"
    # From gray, swscale leaves half the chroma samples at 127; neutral is 128 (no tint).
    neutral = ",lutyuv=u=128:v=128" if pix_fmt == "gray" else ""
    args += [
        "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
        "-vf", f"scale=out_color_matrix=bt709:out_range=tv,setparams=colorspace=bt709:color_primaries=bt709:"
               f"color_trc=bt709{sar}{neutral}", "-pix_fmt", "yuv420p",
    ]
    container = VIDEO_SUFFIXES[out.suffix.lower()]
    if container in ("mp4", "mov"):
        args += ["-movflags", "+faststart"]
    if comment is not None:
        args += ["-metadata", f"comment={comment}"]
    return args + ["-f", container, str(tmp)]


def read_comment(path: Path | str) -> str | None:
    """The comment tag of a video file (what `encoder_args(comment=...)` wrote), from ffmpeg's
    ffmetadata output; None when it has none. InputError when ffmpeg cannot read the file."""
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
                          capture_output=True, check=False, **_session_kwargs())
    if proc.returncode != 0:
        first = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"{path}: not a video ffmpeg can read ({first[-1][:160] if first else 'no message'})")
    lines = re.split(r"(?<!\\)\n", proc.stdout.decode("utf-8", "replace"))
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip().lower() == "comment":
            return re.sub(r"\\(.)", r"\1", value, flags=re.DOTALL)
    return None


def trim_to_video(path: Path, frames: int, fps: Fraction) -> None:
    """Cut the audio of an interrupted output to its video's length (a stream copy); best effort."""
    tmp = path.with_name(f".{path.stem}.trim{path.suffix}")
    try:
        proc = FFmpeg(["-nostdin", "-y", "-i", str(path), "-map", "0", "-c", "copy", "-t", f"{float(frames / fps):.6f}",
                        "-f", VIDEO_SUFFIXES[path.suffix.lower()], str(tmp)])
        if proc.wait() == 0:
            os.replace(tmp, path)
    except Exception:  # the untrimmed file plays too: its audio just runs on
        pass
    finally:
        tmp.unlink(missing_ok=True)
