"""Enhancing videos: frames streamed from ffmpeg through the engine and back into ffmpeg.

    decoder ffmpeg --rawvideo--> reader thread (scale, normalise) --queue--> inference (this
        thread, groups of frames: the network, the inverse map) --queue--> writer thread (compose)
        --rawvideo--> encoder ffmpeg (H.264 + the input's audio) --> OUT

The three stages overlap and the queues are short, so memory holds a few frames whatever the length
of the recording. Most host work sits in the reader and writer threads, so that on a GPU it runs
beside the network instead of between its calls. This module holds the options, the plan and the
pipeline; the ffmpeg processes and their arguments are in `ficli.video.ffmpeg`, the work on each frame
(colour, intensity map, network, output frame) in `ficli.video.frames`.

Decisions, each stated once here and in `ficli video --help`:
- Intensity normalisation (docs/DESIGN.md section 4): one percentile range (intensity.LO_PCT and
  HI_PCT) for the whole selected section, never per frame (which would flicker), from up to
  `samples` frames spread evenly over it: one seek per sample on long sections, one decoding pass
  on short ones or when the duration is unknown.
- Blur scale (a model conditioned on it, `options.scale_for`): one s for the whole video, told
  once: `--scale S`, or the spectral estimate (`blurscale.estimate_scale_pooled`) pooled over
  SCALE_FRAMES of the intensity samples (evenly spread, from the same decoding), each its central
  SCALE_CROP × SCALE_CROP pixels as the network sees them (after --upscale: the crop is taken
  SCALE_CROP / upscale wide and enlarged), at full resolution even where the range samples are
  thinned by a pixel stride; frames too small or flat to estimate get the model's training scale.
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

import functools
import math
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ficli.image import io, provenance
from ficli.image.degrade import coarse_kept
from ficli.defaults import SCALE_CROP, SCALE_FRAMES, VIDEO_TILE
from ficli.inference.engine import TileConfig
from ficli.errors import ConfigError, OutputError
from ficli.video.ffmpeg import (PRESETS, VIDEO_SUFFIXES, FFmpeg, Section, VideoInfo, audio_plan, check_decoder, decoder_args,
                          encoder_args, lost_in_output, probe_video, read_frames, sample_frames_and_crops, trim_to_video,
                          with_timing)
from ficli.video.frames import (CHANNEL_MODES, LAYOUTS, Inference, choose_channels, compose, is_gray, raw_bytes, scale_views,
                          video_range)
from ficli.image.intensity import HI_PCT, LO_PCT

# Codecs that keep every pixel: the blur-scale estimate reads their frames as they were made.
LOSSLESS_CODECS = {"ffv1", "rawvideo", "png", "apng", "huffyuv", "ffvhuff", "utvideo", "magicyuv", "qtrle", "tiff", "zlib",
                   "lagarith", "jpegls", "v210", "v410", "r210"}

# --- options, plan and report -----------------------------------------------------------------


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
    lo_pct: float = LO_PCT
    hi_pct: float = HI_PCT
    samples: int = 32
    section: Section = Section()
    frames_dir: Path | None = None
    crf: int = 18
    preset: str = "medium"
    tile: TileConfig = TileConfig(tile=VIDEO_TILE)
    batch: int = 4  # frames per network call (one tile position of each)
    # For a model conditioned on the blur scale: frames -> (s, how chosen) (`runtime.scale_chooser`).
    scale_for: Callable[..., tuple[float, str]] | None = None
    keep_coarse: bool | None = None  # a model told s: its correction loses what a blur of s passes (`degrade.coarse_kept`)
    # `provenance.base` fields (command, model): completed per video (`VideoPlan.record`) and written
    # into the output's `comment` tag; None: no record.
    record: dict | None = None

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
    scale: float | None = None  # the blur scale told a model conditioned on it (None: a plain model)
    scale_how: str = ""  # how it was chosen: "given", "estimated from 16 frames", ...
    scale_residual: float | None = None  # the estimate's spread (`runtime.scale_chooser`), None if not estimated

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


def partial_output(out: Path, src: Path | None = None, overwrite: bool = False) -> Path:
    """Where Ctrl-C keeps the frames done: OUT.partial.EXT, or OUT.partial-2.EXT, -3, ... where that
    one may not be written (the input, the model, an existing file without --overwrite: the rule of
    `io.check_output_file`)."""
    for n in range(1, 1000):
        candidate = out.with_name(f"{out.stem}.partial{'' if n == 1 else f'-{n}'}{out.suffix}")
        try:
            io.check_output_file(candidate, "", overwrite=overwrite, keep={"the input video": [src] if src else []})
            return candidate
        except OutputError:
            continue
    raise OutputError(f"{out}: no free name for the frames done beside it")


def check_output(src: Path, out: Path, overwrite: bool, frames_dir: Path | None = None) -> None:
    """OutputError for an output that is the input, of an unknown type, or exists without --overwrite."""
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give a file name such as {out / default_output(src).name}")
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"{out}: cannot write this file type; use {', '.join(VIDEO_SUFFIXES)}")
    if io.same_file(out, src):
        raise OutputError(f"{out}: refusing to overwrite the input video; choose another --out")
    above = next((folder for folder in out.absolute().parents if os.path.lexists(folder)), None)
    if above is not None and not above.is_dir():  # /dev/full/x.mp4: mkdir said "File exists"
        raise OutputError(f"{out}: {above} is not a folder (a file or a device), so nothing can be written under it; choose another --out")
    if os.path.lexists(out) and not overwrite:
        raise OutputError(f"{out}: exists already; use --overwrite to replace it, or another --out")
    io.check_output_file(out, "--out", overwrite=overwrite, keep={"the input video": [src]})
    if frames_dir is not None:
        if frames_dir.exists() and not frames_dir.is_dir():
            raise OutputError(f"{frames_dir}: --frames-dir is a file, not a folder")
        if not overwrite and frames_dir.is_dir() and any(frames_dir.glob(f"{src.stem}_*.png")):
            raise OutputError(f"{frames_dir}: holds {src.stem}_*.png frames already; use --overwrite or another --frames-dir")


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


def _reader(proc: FFmpeg, info: VideoInfo, prepare: Callable, q: queue.Queue, stop: threading.Event) -> None:
    count = 0
    try:
        for frame in read_frames(proc, info):
            if not _put(q, prepare(frame), stop):
                return
            count += 1
        if not stop.is_set():
            check_decoder(proc, info, count)
        _put(q, _END, stop)
    except BaseException as exc:  # handed to the inference thread, which raises it
        _put(q, exc, stop)


@dataclass
class _Writer:
    proc: FFmpeg
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
    info, timing = with_timing(info)
    out = output_path(src, options)
    for message in ([timing] if timing else []) + lost_in_output(info, options.frames_dir, out):
        notice(message)
    if info.fps_guessed:
        notice(f"{src.name} states no frame rate; 25 fps assumed")
    needed = options.normalize or options.scale_for is not None or (options.channels == "auto" and not info.gray_source)
    crop = -(-SCALE_CROP // options.upscale) if options.scale_for is not None else 0
    samples, crops = sample_frames_and_crops(info, options.section, options.samples, crop) if needed else ([], [])
    mode = choose_channels(options.channels, info, samples, model_channels)
    if options.channels == "gray" and not info.gray_source and not is_gray(samples):
        notice("--channels gray on a colour video: the output is gray")
    rng = video_range(samples, mode, options.lo_pct, options.hi_pct) if options.normalize else None
    s = options.upscale
    width, height = info.width * s * (2 if options.layout == "side-by-side" else 1), info.height * s
    audio, _ = audio_plan(info, out)
    if audio == "re-encoded to AAC":
        notice(f"the audio ({', '.join(info.audio)}) cannot be stored unchanged in {out.suffix}; re-encoded to AAC "
               "192 kb/s (write .mkv or .mov to keep it as it is)")
    scale, how = _blur_scale(options.scale_for, crops, mode, s, info.codec, notice)
    return VideoPlan(info=info, out=out, channels=mode, range=rng, frames=options.section.frames(info),
                     width=width + width % 2, height=height + height % 2, audio=audio, samples=len(samples),
                     scale=scale, scale_how=how, scale_residual=getattr(options.scale_for, "residual", None))


def _blur_scale(choose: Callable | None, crops: list[np.ndarray], mode: str, upscale: int, codec: str,
                notice: Callable[[str], None]) -> tuple[float | None, str]:
    """The one blur scale told a model conditioned on it (None for a plain model: `choose` None),
    from up to SCALE_FRAMES of the sampled crops, evenly spread, as the network sees them; said once.
    An estimate from lossy-compressed frames says that it may read low (H.264's coding noise fills
    the spectrum the blur emptied: docs/DEGRADATIONS.md)."""
    if choose is None:
        return None, ""
    picked = io.evenly_spread(crops, SCALE_FRAMES)
    scale, how = choose(scale_views(picked, mode), source=f" from {len(picked)} frames", upscale=upscale)
    if how.startswith("estimated") and codec not in LOSSLESS_CODECS:
        how += f"; {codec} compression hides blur, so this may read low: give --scale S if you know it"
    notice(f"blur scale s = {scale:g} ({how})")
    return scale, how


def video_record(plan: VideoPlan, options: VideoOptions) -> dict | None:
    """The record (`ficli.image.provenance`) of one video: `options.record` completed with the input's
    name, the blur scale and how it was chosen, the upscale, the intensity map (percentiles, lo/hi in
    the decoded frames' units), the tiles, device, precision, channels and encoder settings."""
    if options.record is None:
        return None
    top = io.dtype_max(plan.info.decode_format[2])
    how = plan.scale_how
    tile = options.tile
    return {**options.record, "input": io.printable(plan.info.path.name), "output": io.printable(plan.out.name),
            "blur_scale": plan.scale, "blur_scale_source": None if not how else "given" if how == "given"
            else "estimated" if how.startswith("estimated") else "training scale", "blur_scale_note": how or None,
            "blur_scale_spread": plan.scale_residual,
            "keep_coarse": coarse_kept(options.keep_coarse, plan.scale) if plan.scale is not None else None,
            "upscale": options.upscale,
            "normalisation": {"percentiles": [options.lo_pct, options.hi_pct], "lo_hi": [[round(v * top, 6) for v in plan.range]],
                              "frames_sampled": plan.samples} if plan.range else "off",
            "tile": tile.tile, "overlap": tile.overlap, "device": tile.device, "precision": tile.precision,
            "channels": plan.channels, "layout": options.layout, "crf": options.crf, "preset": options.preset}


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
    if plan.scale is not None:  # one s for every frame
        generator = functools.partial(generator, scale=plan.scale)
    infer = Inference(generator, model_channels, mode, plan.range, s, replace(options.tile, batch=1),
                       keep_original=options.layout != "enhanced", on_notice=notice,
                       coarse_scale=plan.scale if coarse_kept(options.keep_coarse, plan.scale) else None)
    left = f"bicubic x{s}" if s > 1 else "original"

    tmp = _temporary_output(out, options.frames_dir, notice)

    stop = threading.Event()  # no more reading: set on the end, an error or Ctrl-C
    abort = threading.Event()  # no more writing either: set on an error
    # Short queues bound memory: one group being enhanced, one waiting, one being written.
    q_in: queue.Queue = queue.Queue(maxsize=group + 2)
    q_out: queue.Queue = queue.Queue(maxsize=group)
    encoder = decoder = None
    writer = _Writer(None, options, left, options.frames_dir, src.stem, info.decode_format[2], plan.encode_format)
    threads: list[threading.Thread] = []
    try:
        encoder = FFmpeg(encoder_args(info, section, out, plan.encode_format, (plan.width, plan.height), options.preset, options.crf, tmp,
                                      provenance.to_text(record) if (record := video_record(plan, options)) else None), stdin=subprocess.PIPE)
        writer.proc = encoder
        decoder = FFmpeg(decoder_args(info, section), stdout=subprocess.PIPE)
        threads = [threading.Thread(target=_reader, args=(decoder, info, infer.prepare, q_in, stop), daemon=True, name="ficli-decode"),
                   threading.Thread(target=writer.run, args=(q_out, stop, abort), daemon=True, name="ficli-encode")]
        for thread in threads:
            thread.start()
        done, network = _run_groups(infer, group, q_in, q_out, stop, writer, on_progress, plan.frames)
        _put(q_out, _END, stop)
        threads[1].join()
        _close_encoder(encoder, writer, out)
    except KeyboardInterrupt:
        raise _interrupted(stop, abort, decoder, encoder, writer, threads, q_out, tmp, out, plan, (src, options.overwrite)) from None
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


def _temporary_output(out: Path, frames_dir: Path | None, notice: Callable[[str], None]) -> Path:
    """The hidden temporary file beside `out` that the encoder writes (renamed to `out` when complete),
    after removing those a killed earlier run left there; OutputError where the folder cannot be written."""
    stale = io.remove_stale_parts([out])
    if stale:
        notice(f"removed {stale} unfinished temporary file(s) of a killed earlier run beside {out}")
    try:
        if frames_dir is not None:
            frames_dir.mkdir(parents=True, exist_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=io.part_suffix(out.suffix), dir=out.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{out.parent}: cannot write here ({exc.strerror or exc}); check the folder and its permissions") from None
    return Path(tmp_name)


def _run_groups(infer: Inference, group: int, q_in: queue.Queue, q_out: queue.Queue, stop: threading.Event, writer: _Writer,
                on_progress: Callable[[int, int | None], None] | None, expected: int | None) -> tuple[int, float]:
    """The inference thread's loop: groups of up to `group` prepared frames through the network and
    the inverse map into the writer's queue, until the reader's end (an error it hands over is
    raised here) or the writer's failure. Returns (frames done, seconds spent in the network)."""
    done, network = 0, 0.0
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
            on_progress(done, expected)
    return done, network


def _close_encoder(encoder: FFmpeg, writer: _Writer, out: Path) -> None:
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


def _interrupted(stop, abort, decoder, encoder, writer, threads, q_out, tmp: Path, out: Path, plan: VideoPlan,
                 src_overwrite: tuple[Path, bool]) -> VideoInterrupted:
    """Close the output on the frames already enhanced (or remove it); the exception says which."""
    stop.set()  # the reader stops; the writer goes on with what is queued
    if decoder is not None:
        decoder.kill()
    try:
        if encoder is None or len(threads) < 2 or not threads[1].is_alive():
            raise RuntimeError("no encoder to finish")
        q_out.put(_END, timeout=60)  # after the frames already queued: they are enhanced
        threads[1].join()
        _close_encoder(encoder, writer, out)
        if writer.written == 0:
            raise RuntimeError("no frame was written")
        partial = partial_output(out, *src_overwrite)  # never the input, nor a file that exists without --overwrite
        _finish(tmp, partial)
        trim_to_video(partial, writer.written, plan.info.fps)
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
