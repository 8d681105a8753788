"""Enhancing images with a model file: normalise, run the tiled engine, map back, write.

Data flow (DESIGN section 4): file → `io` (file dtype) → [0, 1] → robust affine normalisation with
the 0.1/99.9 percentiles of the whole image or stack, per channel of a hyperstack (computed once,
before tiling) → optional bicubic
re-up-scaling → `engine.run_tiled(G)` per channel → exact inverse map → clip to the type's range →
`io` (the input's dtype, format and metadata).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ficli import io, modelfile
from ficli.degrade import resize_array
from ficli.batch import shard  # noqa: F401  (where torchrun's sharding used to live)
from ficli.engine import TileConfig, configure_cuda, denormalize, flat_values, keep_flat, normalize, percentile_range, run_tiled
from ficli.errors import ConfigError, ModelFileError, is_out_of_memory

DEFAULT_MODEL_NAME = "ficli-default.safetensors"


@dataclass(frozen=True)
class EnhanceOptions:
    upscale: int = 1  # bicubic enlargement before enhancement (the paper's re-up-scaling)
    normalize: bool = True
    lo_pct: float = 0.1
    hi_pct: float = 99.9
    tile: TileConfig = TileConfig()

    def __post_init__(self):
        if self.upscale < 1:
            raise ConfigError(f"--upscale must be 1 or more, got {self.upscale}")


def default_model_path() -> Path:
    """The shipped model: inside the installed package (wheel) or in the repository's models/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_models" / DEFAULT_MODEL_NAME, here.parent / "models" / DEFAULT_MODEL_NAME):
        if candidate.is_file():
            return candidate
    raise ModelFileError(
        f"no default model found ({DEFAULT_MODEL_NAME} in the package or in models/); "
        "give one with --model PATH (train one with 'ficli train')"
    )


def load_generator(path: str | Path | None, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The generator of a model file (the default model when `path` is None), ready for inference.

    On CUDA this also sets cuDNN up for inference (`engine.configure_cuda`: algorithm search on,
    TF32 off).
    """
    path = Path(path) if path else default_model_path()
    generator, config, meta = modelfile.load_model(path, device=str(device))
    generator.requires_grad_(False).eval().to(memory_format=torch.channels_last)  # see engine._call
    if torch.device(device).type == "cuda":
        configure_cuda()
    return generator, {"path": str(path), "config": config, **meta}


class CompiledGenerator:
    """`torch.compile` of a module, with the module itself as the fallback.

    Compilation happens on the first call for each input shape; if it fails (no C++ compiler, no
    Triton, an unsupported platform or Python), the failure is reported once through `on_notice`
    and every later call runs the module eagerly, so `--compile` never costs a result. Out-of-memory
    errors (GPU or CPU) are passed on (the engine halves its tiles). `cuda_graphs` (fixed shapes: video frames)
    selects the "reduce-overhead" mode, which replays each shape's kernels as one CUDA graph.
    """

    def __init__(self, module: torch.nn.Module, cuda_graphs: bool = False, on_notice: Callable[[str], None] | None = None):
        self.module = module
        self.on_notice = on_notice
        self.compiled: Callable | None = None
        try:
            self.compiled = torch.compile(module, mode="reduce-overhead" if cuda_graphs else None)
        except Exception as exc:  # torch.compile itself refuses on some platforms and Pythons
            self._fall_back(exc)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as exc:
                if isinstance(exc, torch.OutOfMemoryError) or is_out_of_memory(exc):
                    raise
                self._fall_back(exc)
        return self.module(x)

    def _fall_back(self, exc: Exception) -> None:
        self.compiled = None
        if self.on_notice is not None:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.on_notice(f"--compile: torch.compile is not usable here ({type(exc).__name__}: {first[:200]}); "
                           "running without it")


def enhance_frames(
    generator: Callable,
    frames: list[np.ndarray],
    options: EnhanceOptions,
    channels: int = 1,
    on_notice: Callable[[str], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> list[np.ndarray]:
    """Enhance the frames of one image or stack: float (H, W) or (H, W, C) arrays on the [0, 1] scale.

    The percentiles are taken over all frames together, so a stack is mapped as one (no flicker).
    A 1-channel model runs over each colour channel of an RGB image; alpha is carried unchanged.
    Returns float32 frames on the [0, 1] scale (not clipped), enlarged by `options.upscale`.
    `on_progress(fraction)` is called after each batch of tiles with the share of the work done.
    """
    flat = [flat_values(_planes(f)) for f in frames]  # before enlarging, which may add rounding
    if options.upscale > 1:
        h, w = frames[0].shape[:2]
        frames = [resize_array(f, (h * options.upscale, w * options.upscale)) for f in frames]
    lo, hi = percentile_range(np.stack([_colour(f) for f in frames]), options.lo_pct, options.hi_pct) if options.normalize else (0.0, 1.0)
    runs = sum(_colour(f).shape[2] if channels == 1 and f.ndim == 3 else 1 for f in frames)  # run_tiled calls
    started = 0

    def tiled(x: np.ndarray) -> np.ndarray:
        nonlocal started
        tick = None if on_progress is None else (lambda done, total, k=started: on_progress((k + done / total) / runs))
        started += 1
        return run_tiled(generator, x, options.tile, on_notice=on_notice, on_progress=tick)

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
) -> None:
    """Read `src`, enhance it (every frame of a stack), write `dest` with `src`'s pixel type and layout.

    A hyperstack goes channel by channel: each channel's planes (all its T and Z) share one intensity
    map, and each channel has its own (dyes and exposures differ). The output keeps the axes and the
    calibration, the pixel size divided by `options.upscale` (`io.write_image`).
    An output over `io.MAX_PIXELS` (a large --upscale) is refused from the header, before reading.
    `on_progress(fraction)`: the share of this file's tiles done, after each batch of them.
    """
    size = io.image_size(src)
    if size is not None:
        check_output_size(src, *size, options.upscale)
    image = io.read_image(src)
    check_output_size(src, *image.frames[0].shape[:2], options.upscale)
    io.check_finite(image, "fix or mask them before enhancing")
    units = [io.to_unit(f) for f in image.frames]
    frames: list = [None] * len(units)
    groups = image.channel_groups()
    for k, group in enumerate(groups):
        tick = None if on_progress is None else (lambda f, k=k: on_progress((k + f) / len(groups)))
        for i, frame in zip(group, enhance_frames(generator, [units[i] for i in group], options, channels, on_notice, tick)):
            frames[i] = io.from_unit(frame, image.data.dtype)
    data = np.stack(frames) if image.is_stack else frames[0]
    io.write_image(dest, data, like=image)




def check_output_size(src: Path, height: int, width: int, upscale: int) -> None:
    """InputError naming `src` when --upscale would make its frames larger than `io.MAX_PIXELS`."""
    if upscale > 1:
        most = max(1, math.isqrt(io.MAX_PIXELS // max(height * width, 1)))
        io.check_pixel_limit(src, height * upscale, width * upscale, f"--upscale {upscale} would make this {width}×{height} image",
                             f"use --upscale {most} or less, or crop the image into pieces")
