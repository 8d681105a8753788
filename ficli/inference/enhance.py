"""Enhancing images with a model file: normalise, run the tiled engine, map back, write.

Data flow (docs/DESIGN.md section 4): file → `io` (file dtype) → [0, 1] → robust affine normalisation with
the 0.1/99.9 percentiles of the whole image or stack, per channel of a hyperstack (computed once,
before tiling) → optional bicubic
re-up-scaling → `engine.run_tiled(G)` per channel → for a model told s, the coarse content kept
(`degrade.keep_coarse`) → exact inverse map → clip to the type's range →
`io` (the input's dtype, format and metadata).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ficli.image import io
from ficli.image.degrade import FREE_FROM, coarse_kept, keep_coarse_array, resize_array
from ficli.inference.engine import TileConfig, run_tiled
from ficli.errors import ConfigError
from ficli.image.intensity import HI_PCT, LO_PCT, denormalize, flat_values, keep_flat, normalize, percentile_range


@dataclass(frozen=True)
class EnhanceOptions:
    upscale: int = 1  # bicubic enlargement before enhancement (the paper's re-up-scaling)
    normalize: bool = True
    lo_pct: float = LO_PCT
    hi_pct: float = HI_PCT
    tile: TileConfig = TileConfig()
    # For a model conditioned on the blur scale: frames -> (s, how chosen) (`runtime.scale_chooser`).
    scale_for: Callable[[list], tuple[float, str]] | None = None
    compression: str = "keep"  # of a TIFF output: keep (the input's), none, zlib, lzw, zstd
    dtype: str | None = None  # None: the input's pixel type; "float32": float32 in the input's units
    # A model told s: its correction loses what a blur of s passes (`degrade.keep_coarse`): True always,
    # False never, None below `degrade.FREE_FROM` (`degrade.coarse_kept`).
    keep_coarse: bool | None = None

    def __post_init__(self):
        if self.upscale < 1:
            raise ConfigError(f"--upscale must be 1 or more, got {self.upscale}")
        if self.dtype not in (None, "float32"):
            raise ConfigError(f"--dtype {self.dtype!r}: use float32, or leave it out to keep the input's pixel type")
        if self.compression not in io.COMPRESSION_CHOICES:
            raise ConfigError(f"--compression {self.compression!r}: use one of {', '.join(io.COMPRESSION_CHOICES)}")


def enhance_frames(
    generator: Callable,
    frames: list[np.ndarray],
    options: EnhanceOptions,
    channels: int = 1,
    on_notice: Callable[[str], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    *,
    name: str = "",
    report: dict | None = None,
) -> list[np.ndarray]:
    """Enhance the frames of one image or stack: float (H, W) or (H, W, C) arrays on the [0, 1] scale.

    The percentiles are taken over all frames together, so a stack is mapped as one (no flicker).
    A 1-channel model runs over each colour channel of an RGB image; alpha is carried unchanged.
    Returns float32 frames on the [0, 1] scale (not clipped), enlarged by `options.upscale`.
    `on_progress(fraction)` is called after each batch of tiles with the share of the work done.
    A model conditioned on the blur scale is told the s of `options.scale_for`, one for all the
    frames, and `on_notice` hears which (prefixed by `name`); where `degrade.coarse_kept` says so
    for `options.keep_coarse` and that s, each plane's correction then loses what a blur of that s
    passes (`degrade.keep_coarse`). `report`, a dict, gets the (lo, hi)
    of the intensity map appended to "ranges" (on the [0, 1] scale) and the blur scale told, with
    how it was chosen ("scale", "scale_how").
    """
    flat = [flat_values(_planes(f)) for f in frames]  # before enlarging, which may add rounding
    scale = None
    if options.scale_for is not None:  # estimated at the native size, where a file's grey levels are still on their grid
        scale, how = options.scale_for([_colour(f) for f in frames], upscale=options.upscale)
        generator = functools.partial(generator, scale=scale)
        if on_notice is not None:
            on_notice(f"{name + ': ' if name else ''}blur scale s = {scale:.2f} ({how})")
        if report is not None:
            report.update(scale=round(float(scale), 4), scale_how=how, scale_residual=getattr(options.scale_for, "residual", None))
    if options.upscale > 1:
        h, w = frames[0].shape[:2]
        frames = [resize_array(f, (h * options.upscale, w * options.upscale)) for f in frames]
    lo, hi = percentile_range(np.stack([_colour(f) for f in frames]), options.lo_pct, options.hi_pct) if options.normalize else (0.0, 1.0)
    if report is not None:
        report.setdefault("ranges", []).append((float(lo), float(hi)))
    runs = sum(_colour(f).shape[2] if channels == 1 and f.ndim == 3 else 1 for f in frames)  # run_tiled calls
    started = 0

    def tiled(x: np.ndarray) -> np.ndarray:
        nonlocal started
        tick = None if on_progress is None else (lambda done, total, k=started: on_progress((k + done / total) / runs))
        started += 1
        y = run_tiled(generator, x, options.tile, on_notice=on_notice, on_progress=tick)
        return keep_coarse_array(y, x, scale) if coarse else y

    coarse = coarse_kept(options.keep_coarse, scale)
    if report is not None and scale is not None:
        report.update(keep_coarse=coarse)
    if on_notice is not None and options.keep_coarse is None and scale is not None and not coarse:
        on_notice(f"told s ≥ {FREE_FROM:g}: the network's output is written as it is (--keep-coarse keeps the input's coarse content)")

    out = []
    for frame, constants in zip(frames, flat):
        planes = _planes(frame)
        x = normalize(planes, lo, hi)
        if channels == 1:  # a flat plane skips the network: it is put back below
            y = np.concatenate([p[None] if c is not None else tiled(p[None]) for p, c in zip(x, constants)])
        elif channels == x.shape[0]:
            y = tiled(x)
        else:
            raise ConfigError(f"the model takes {channels} channels, the image has {x.shape[0]}")
        y = denormalize(y, lo, hi)
        keep_flat(y, constants)
        result = y[0] if frame.ndim == 2 else np.moveaxis(y, 0, -1)
        if frame.ndim == 3 and frame.shape[2] == 4:
            result = np.concatenate([result, frame[..., 3:]], axis=-1)
        out.append(np.ascontiguousarray(result, np.float32))
    return out


def _colour(frame: np.ndarray) -> np.ndarray:
    return frame[..., :3] if frame.ndim == 3 and frame.shape[2] == 4 else frame


def _planes(frame: np.ndarray) -> np.ndarray:
    """The colour planes of a (H, W) or (H, W, C) frame as (C, H, W), alpha left out."""
    colour = _colour(frame)
    return colour[None] if colour.ndim == 2 else np.moveaxis(colour, -1, 0)


def enhance_file(
    src: Path,
    dest: Path,
    generator: Callable,
    options: EnhanceOptions,
    channels: int = 1,
    on_notice: Callable[[str], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    *,
    record: dict | None = None,
) -> dict | None:
    """Read `src`, enhance it (every frame of a stack), write `dest` with `src`'s pixel type and layout
    (or float32 in `src`'s units: `options.dtype`).

    A hyperstack goes channel by channel: each channel's planes (all its T and Z) share one intensity
    map, and each channel has its own (dyes and exposures differ). The output keeps the axes and the
    calibration, the pixel size divided by `options.upscale` (`io.write_image`).
    An output over `io.MAX_PIXELS` (a large --upscale) is refused from the header, before reading.
    `on_progress(fraction)`: the share of this file's tiles done, after each batch of them.
    `record` (`provenance.base`: the command, the model): completed with what was done to this file
    (`provenance_fields`), written into `dest` and returned; None: no record, None returned.
    """
    image = io.read_checked(src, lambda h, w: check_output_size(src, h, w, options.upscale), "fix or mask them before enhancing")
    units = [io.to_unit(f) for f in image.frames]
    frames: list = [None] * len(units)
    groups = image.channel_groups()
    report: dict = {}
    for k, group in enumerate(groups):
        tick = None if on_progress is None else (lambda f, k=k: on_progress((k + f) / len(groups)))
        for i, frame in zip(group, enhance_frames(generator, [units[i] for i in group], options, channels, on_notice, tick,
                                                  name=str(src), report=report)):
            frames[i] = to_output(frame, image.data.dtype, options.dtype)
    data = np.stack(frames) if image.is_stack else frames[0]
    if record is not None:
        record = {**record, **provenance_fields(src, options, report, image.data.dtype, data.dtype)}
    for message in io.write_image(dest, data, like=image, record=record, compression=options.compression):
        if on_notice is not None:
            on_notice(f"{dest}: {message}")
    return record


def to_output(frame: np.ndarray, dtype: np.dtype, wanted: str | None) -> np.ndarray:
    """An enhanced frame on the [0, 1] scale in the pixel type written: the input's `dtype` (rounded and
    clipped), or with `wanted` "float32" float32 in the input's units (× the type's maximum), as it is."""
    if wanted == "float32":
        return (frame * np.float32(io.dtype_max(dtype))).astype(np.float32, copy=False)
    return io.from_unit(frame, dtype)


def provenance_fields(src: Path | str, options: EnhanceOptions, report: dict, dtype: np.dtype, out_dtype: np.dtype) -> dict:
    """What a record (`ficli.image.provenance`) says of one enhanced image: the input's name, the blur
    scale told (and how it was chosen), the upscale, the intensity map (percentiles, lo/hi in the
    input's units, one pair per channel), the tiles, device and precision, the pixel types."""
    top = io.dtype_max(dtype)
    how = report.get("scale_how")
    source = None if how is None else "given" if how == "given" else "estimated" if how.startswith("estimated") else "training scale"
    tile = options.tile
    return {
        "input": io.printable(Path(src).name) if src else None,
        "blur_scale": report.get("scale"), "blur_scale_source": source, "blur_scale_note": how,
        "blur_scale_spread": report.get("scale_residual"),
        "keep_coarse": report.get("keep_coarse"),
        "upscale": options.upscale,
        "normalisation": {"percentiles": [options.lo_pct, options.hi_pct],
                          "lo_hi": [[round(lo * top, 6), round(hi * top, 6)] for lo, hi in report.get("ranges", [])]}
        if options.normalize else "off",
        "tile": tile.tile, "overlap": tile.overlap, "device": tile.device, "precision": tile.precision,
        "input_dtype": str(np.dtype(dtype)), "output_dtype": str(np.dtype(out_dtype)),
    }


def check_output_size(src: Path, height: int, width: int, upscale: int) -> None:
    """InputError naming `src` when --upscale would make its frames larger than `io.MAX_PIXELS`."""
    if upscale > 1:
        most = max(1, math.isqrt(io.MAX_PIXELS // max(height * width, 1)))
        io.check_pixel_limit(src, height * upscale, width * upscale, f"--upscale {upscale} would make this {width}×{height} image",
                             f"use --upscale {most} or less, or crop the image into pieces")
