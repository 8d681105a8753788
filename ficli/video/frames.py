"""The work on one video frame: its colour planes, the intensity map, the network, the output frame.

`video` moves frames between threads and processes; what happens to each frame is here, so that
`bench` can time each share alone:
- colour: gray stored as RGB (all channels within 2 levels on the sampled frames) is processed as
  one channel (`is_gray`); other colour video has its luminance (Y of YCrCb) enhanced and its
  chroma kept (`choose_channels`, `planes_of`, `frame_of`);
- the network's share (`Inference`): `prepare` in the decoding thread (scale, enlarge, split into
  planes, normalise with the video's one range), `network` and `finish` in the inference thread
  (the tiled engine on a group of frames; the inverse map);
- the frames the blur-scale estimate reads (`scale_views`): at their native size (an --upscale is told to the estimate), split as `prepare` does;
- the output frame (`compose`, `raw_bytes`): the layout, labels, even sides for yuv420p, the
  encoder's bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ficli.image import io
from ficli.image.degrade import keep_coarse_array, resize_array
from ficli.inference.engine import TileConfig, run_tiled
from ficli.errors import ConfigError, InputError
from ficli.video.ffmpeg import VideoInfo
from ficli.image.intensity import HI_PCT, LO_PCT, denormalize, flat_values, keep_flat, normalize, percentile_range

CHANNEL_MODES = ("auto", "gray", "luma", "rgb")
LAYOUTS = ("enhanced", "side-by-side", "compare")
GRAY_TOLERANCE = 2 / 255  # channel spread, on the [0, 1] scale, still counted as gray


# --- colour -------------------------------------------------------------------------------------


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


def video_range(samples: list[np.ndarray], mode: str, lo_pct: float = LO_PCT, hi_pct: float = HI_PCT) -> tuple[float, float]:
    """The one (lo, hi) percentile range of a video, over the planes the network sees."""
    if not samples:
        raise InputError("no frame to compute the intensity range from")
    return percentile_range(np.stack([planes_of(f, mode)[0] for f in samples]), lo_pct, hi_pct)


def scale_views(frames: list[np.ndarray], mode: str) -> Iterator[np.ndarray]:
    """Decoded uint (H, W, C) frames (or crops of them) for the blur-scale estimate: on [0, 1] at
    their native size (an --upscale is told to the estimate, which measures the small grid), the
    planes of `mode` ((H, W), or (H, W, P) for rgb). Not normalised, as `enhance` hands its frames to
    the estimate (an affine map does not move it)."""
    for frame in frames:
        x = io.to_unit(frame)
        if x.shape[2] == 1:
            x = x[..., 0]
        planes = planes_of(x, mode)[0]
        yield planes[0] if planes.shape[0] == 1 else np.moveaxis(planes, 0, -1)


# --- composing output frames ------------------------------------------------------------------


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


# --- the network's share ------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One decoded frame made ready for the network (by the decoding thread)."""

    original: np.ndarray | None  # the uint8 frame shown beside the result, or None
    planes: np.ndarray  # (P, H, W) normalised planes the network sees
    chroma: np.ndarray | None  # (H, W, 2) kept aside in luma mode
    flat: list[float | None]  # per plane: its value if constant (put back after the network), else None


@dataclass(frozen=True)
class Inference:
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
    coarse_scale: float | None = None  # the s told: each plane's correction loses what a blur of s passes (`degrade.keep_coarse`)

    def prepare(self, frame: np.ndarray) -> Prepared:
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
        return Prepared(shown, normalize(planes, lo, hi), chroma, flat)

    def network(self, frames: list[Prepared]) -> list[np.ndarray]:
        """The network's (P, H, W) output planes, still normalised, for each prepared frame.

        The planes of all frames go through `run_tiled` together as the channels of one image, so
        each network call holds the same tile of every frame; `_per_image` reshapes them into a
        batch of separate images for the generator.
        """
        stack = frames[0].planes if len(frames) == 1 else np.concatenate([f.planes for f in frames])
        y = run_tiled(_per_image(self.generator, self.model_channels), stack, self.tile, on_notice=self.on_notice)
        if self.coarse_scale is not None:
            y = keep_coarse_array(y, stack, self.coarse_scale)
        per = frames[0].planes.shape[0]
        return [y[i * per : (i + 1) * per] for i in range(len(frames))]

    def finish(self, frame: Prepared, planes: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
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
