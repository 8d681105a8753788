"""Tiled inference: pad, tile, batch, blend. Takes a callable; knows no files and no model class.

One function, `run_tiled`, serves `enhance`, `video` and validation during `train` (in the manner of
MONAI's `sliding_window_inference`). Images are `(C, H, W)` float32 numpy arrays; the callable maps
a `(B, C, h, w)` float tensor to a `(B, C, h, w)` tensor.

Tiling along each axis (the image is first padded to a multiple of `multiple`):

    tile i    |ctx| ramp |       weight 1       | ramp |ctx|
    tile i+1                          |ctx| ramp |  weight 1  ...
                                       <-- 3 x overlap -->

An axis longer than `tile` gets the fewest tiles that cover it, all of the smallest side that
does (`balanced_tile`), so that little is recomputed. Neighbouring tiles share at least
`3 * overlap` pixels. In every tile the outer `overlap` pixels on
a side shared with another tile are context only (weight 0); the next `overlap` pixels are where it
cross-fades with its neighbour along a raised-cosine (Hann) ramp, `sin^2` rising as `cos^2` falls,
so the two weights sum to one. A callable whose receptive-field radius is at most `overlap` thus
gives exactly the whole-image result; a wider one leaves differences that fade in smoothly over
`overlap` pixels instead of stepping at a seam. Sides that touch the image border keep weight 1 up
to the border. The windows are separable, so the total weight is a product of two 1-D sums; the
result is divided by it, which makes the weights sum to one everywhere, to rounding.

The engine sees intensities already normalised (`ficli.image.intensity`): it neither computes nor undoes
the intensity map, so a tile never has a map of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ficli.inference.device import PRECISIONS, empty_cache, resolve_device, resolve_precision
from ficli.errors import ConfigError, FicliError, is_out_of_memory
from ficli.inference.tiles import check_tiling, min_tile
from ficli.inference.tiles import round_up as _round_up


@dataclass(frozen=True)
class TileConfig:
    """How `run_tiled` cuts, batches and runs an image.

    tile: side of a tile in pixels, context included; a multiple of `multiple`.
    overlap: context pixels on each shared side of a tile, and width of the cross-fade; rounded up
        to `multiple`. Exact (tiled == whole image) when at least the receptive-field radius.
    batch: tiles per call of the callable.
    multiple: image sides are padded, and tiles placed, on this grid (4 for FI-GAN's two stride-2
        convolutions: the network is shift-equivariant only on its own grid).
    device: "auto", "cpu", "cuda", "cuda:<i>" or "mps" (see `resolve_device`).
    precision: "fp32", or "fp16"/"bf16" autocast on CUDA (see `resolve_precision`).
    """

    tile: int = 512
    overlap: int = 32
    batch: int = 4
    multiple: int = 4
    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self):
        # Frozen, but the rounding is part of the value: config.overlap is what is used.
        object.__setattr__(self, "overlap", check_tiling(self.tile, self.overlap, self.batch, self.multiple))
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}"
            )


def receptive_field_overlap(radius: int, multiple: int = 4) -> int:
    """The overlap that makes tiling exact for a callable of receptive-field radius `radius` pixels.

    The radius rounded up to the grid: with `TileConfig(overlap=receptive_field_overlap(r))` every
    pixel that gets weight in a tile sees all of its receptive field inside that tile.
    """
    if radius < 0:
        raise ValueError(f"receptive-field radius must be 0 or more, got {radius}")
    return _round_up(radius, multiple)


# --- tile layout and blending window ----------------------------------------------------------


def balanced_tile(length: int, tile: int, overlap: int, multiple: int = 4) -> int:
    """The tile side, at most `tile`, that covers an axis of `length` pixels with the fewest tiles
    and the least recomputed overlap: those tiles all made as small as they can be.

    n = ceil((length - 3·overlap) / (tile - 3·overlap)) tiles are needed; n tiles of side
    ceil((length + (n - 1)·3·overlap) / n), rounded up to `multiple`, still share 3 × overlap with
    each neighbour. 1280 px with 512-px tiles and overlap 32: 3 tiles of 492 px (1476 px computed)
    instead of 3 of 512 (1536 px); 720 px: 2 tiles of 408 instead of 512 (816 px instead of 1024).
    """
    if length <= tile:
        return length
    shared = 3 * overlap
    n = -(-(length - shared) // (tile - shared))
    return min(tile, _round_up(-(-(length + (n - 1) * shared) // n), multiple))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start of each tile along one axis of padded `length`; the last tile ends at `length`.

    The step is `tile - 3 * overlap`. A `length` no larger than `tile` gets one tile of `length`.
    """
    if length <= tile:
        return [0]
    step = tile - 3 * overlap
    return list(range(0, length - tile, step)) + [length - tile]


def axis_windows(length: int, tile: int, overlap: int) -> list[tuple[int, np.ndarray]]:
    """(start, 1-D weight window) of each tile along one axis; the windows sum to one over `length`.

    Between tiles i and i+1 a Hann cross-fade `f_i` (0 -> 1 over `overlap` pixels) sits in the
    middle of their shared span, at least `overlap` pixels from either tile's edge; tile i's window
    is `f_{i-1} - f_i`, so the windows telescope to one (and are 1 up to the image border).
    """
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    x = np.arange(length, dtype=np.float64)
    # fades[i + 1] is f_i: the share already handed to the tiles after boundary i.
    fades = [np.ones(length)]
    for a, b in zip(starts[:-1], starts[1:]):
        shared = a + size - b  # at least 3 * overlap
        fades.append(_hann_step(x - (b + (shared - overlap) // 2), overlap))
    fades.append(np.zeros(length))
    return [
        (s, (fades[i] - fades[i + 1])[s : s + size].astype(np.float32))
        for i, s in enumerate(starts)
    ]


def _hann_step(x: np.ndarray, width: int) -> np.ndarray:
    """0 before 0, sin^2 rise over `width` pixels (sampled at pixel centres), 1 after."""
    if width == 0:
        return (x >= 0).astype(np.float64)
    t = np.clip((x + 0.5) / width, 0.0, 1.0)
    return np.sin(0.5 * math.pi * t) ** 2


def axis_weight_sum(length: int, windows: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Total weight at each pixel of one axis of `length` pixels (one, to rounding)."""
    total = np.zeros(length, np.float32)
    for start, window in windows:
        total[start : start + len(window)] += window
    return total


def weight_sum(height: int, width: int, tile: int, overlap: int) -> np.ndarray:
    """Total blending weight at each pixel of a padded (height, width) image: one, to rounding."""
    return np.outer(
        axis_weight_sum(height, axis_windows(height, tile, overlap)),
        axis_weight_sum(width, axis_windows(width, tile, overlap)),
    )


def padded_size(length: int, multiple: int) -> int:
    return _round_up(max(length, 1), multiple)


def pad_index(length: int, multiple: int) -> np.ndarray:
    """Source index of each pixel of an axis padded at its end to a multiple of `multiple`.

    Reflect padding (as `np.pad(mode="reflect")`); replicate where the axis is too short to reflect
    (the pad would be as long as the axis, e.g. 1 or 2 pixels padded to 4).
    """
    size = padded_size(length, multiple)
    index = np.arange(size)
    pad = size - length
    if pad == 0:
        return index
    if pad < length:
        index[length:] = 2 * (length - 1) - index[length:]
    else:
        index[length:] = length - 1
    return index


# --- the engine -------------------------------------------------------------------------------


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    config: TileConfig | None = None,
    *,
    on_notice: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run `fn` over `image` (C, H, W) tile by tile and return its float32 (C, H, W) output.

    The image is padded at its bottom and right to a multiple of `config.multiple` (default
    `TileConfig()`), cut into overlapping tiles on that grid, run through `fn` in batches of
    `config.batch` (on `config.device`, under `torch.inference_mode`, with autocast for half
    precision), blended with weights that sum to one, and cropped back. `fn` is called as given (put
    a module in eval mode first) and must return tiles of the height and width it was given. An
    image whose padded area is at most `config.tile`² is run in one piece, whatever its shape.

    Recoveries, each reported once through `on_notice(message)` (silent if None):
    - a half-precision batch with NaN/Inf outputs is redone in fp32;
    - out of memory (CUDA or MPS "out of memory", the CPU allocator's "can't allocate memory"):
      the tile side is halved and the whole image redone, down to `min_tile`, below which a
      FicliError suggests smaller --tile/--batch values.
    `on_progress(done, total)` is called after each batch with counts of tiles.
    """
    config = TileConfig() if config is None else config
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"run_tiled expects an image of shape (C, H, W), got {image.shape}")
    if 0 in image.shape:
        raise ValueError(f"run_tiled got an empty image of shape {image.shape}")
    image = image.astype(np.float32, copy=False)
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)

    told = set()

    def notice(message: str) -> None:
        if message not in told:
            told.add(message)
            if on_notice is not None:
                on_notice(message)

    _, height, width = image.shape
    ph, pw = padded_size(height, config.multiple), padded_size(width, config.multiple)
    # An image no larger than one tile's area runs in one piece, whatever its shape: memory stays
    # within the tile's bound and no overlap is computed twice (640×360 with 512-px tiles: 1.9×).
    tile = (ph, pw) if ph * pw <= config.tile**2 else _balanced(ph, pw, config.tile, config)
    floor = min_tile(config.overlap, config.multiple)
    while True:
        try:
            return _run_once(fn, image, tile, config, device, dtype, notice, on_progress)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
        # Out of the except block: the traceback no longer pins the failed batch's tensors.
        empty_cache(device)
        if max(tile) <= floor:
            raise FicliError(
                f"out of memory on {device} even with {max(tile)}-pixel tiles, the smallest --tile for "
                f"--overlap {config.overlap} ({message}); use a smaller --batch (now "
                f"{config.batch}) or --overlap, or another --device"
            )
        smaller = max(_round_down(max(tile) // 2, config.multiple), floor)
        notice(
            f"out of memory on {device} with {max(tile)}-pixel tiles; retrying with {smaller}-pixel "
            f"tiles (set --tile {smaller} or a smaller --batch to avoid the retry)"
        )
        tile = _balanced(ph, pw, smaller, config)


def _balanced(height: int, width: int, tile: int, config: TileConfig) -> tuple[int, int]:
    return (balanced_tile(height, tile, config.overlap, config.multiple),
            balanced_tile(width, tile, config.overlap, config.multiple))


def _run_once(fn, image, tile, config, device, dtype, notice, on_progress) -> np.ndarray:
    _, height, width = image.shape
    m = config.multiple
    rows = pad_index(height, m)
    cols = pad_index(width, m)
    win_y = axis_windows(len(rows), tile[0], config.overlap)
    win_x = axis_windows(len(cols), tile[1], config.overlap)
    jobs = [(y, wy, x, wx) for y, wy in win_y for x, wx in win_x]

    if len(jobs) == 1:  # one piece: nothing to blend (a video frame's usual case)
        tile_in = _cut(image, rows, cols, 0, len(win_y[0][1]), 0, len(win_x[0][1]))
        result = _run_batch(fn, tile_in[None], device, dtype, notice)[0]
        if on_progress is not None:
            on_progress(1, 1)
        return np.ascontiguousarray(result[:, :height, :width])

    # Accumulate over the unpadded image only; the weight sum is separable: two 1-D sums.
    total_y = axis_weight_sum(len(rows), win_y)[:height]
    total_x = axis_weight_sum(len(cols), win_x)[:width]
    output = None

    for first in range(0, len(jobs), config.batch):
        batch = jobs[first : first + config.batch]
        tiles = np.stack([_cut(image, rows, cols, y, len(wy), x, len(wx))
                          for y, wy, x, wx in batch])
        result = _run_batch(fn, tiles, device, dtype, notice)
        if output is None:
            output = np.zeros((result.shape[1], height, width), np.float32)
        for tile_out, (y, wy, x, wx) in zip(result, batch):
            h = min(len(wy), height - y)
            w = min(len(wx), width - x)
            if h <= 0 or w <= 0:
                continue  # a tile made only of padding
            weight = wy[:h, None] * wx[None, :w]
            output[:, y : y + h, x : x + w] += tile_out[:, :h, :w] * weight
        if on_progress is not None:
            on_progress(min(first + config.batch, len(jobs)), len(jobs))

    output /= total_y[:, None]  # two broadcasts: no full-size weight map is ever built
    output /= total_x[None, :]
    return output


def _cut(image, rows, cols, y, h, x, w) -> np.ndarray:
    """The (C, h, w) tile at (y, x) of the virtually padded image; copies only the tile."""
    _, height, width = image.shape
    if y + h <= height and x + w <= width:
        return image[:, y : y + h, x : x + w]
    return image[:, rows[y : y + h, None], cols[None, x : x + w]]


def _run_batch(fn, tiles: np.ndarray, device, dtype, notice) -> np.ndarray:
    """fn on one (B, C, h, w) batch; fp32 redo of a half-precision batch that gave NaN/Inf."""
    x = torch.from_numpy(np.ascontiguousarray(tiles)).to(device)
    y = _call(fn, x, device, dtype)
    if dtype is not torch.float32 and not torch.isfinite(y).all():
        notice(
            f"{_DTYPE_NAMES[dtype]} gave NaN or infinite values; those tiles were redone in fp32 "
            f"(use --precision fp32 to avoid the redo)"
        )
        y = _call(fn, x, device, torch.float32)
    if y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
        raise ValueError(f"the network returned shape {tuple(y.shape)} for tiles {tuple(x.shape)}")
    return y.float().cpu().numpy()


_DTYPE_NAMES = {v: k for k, v in PRECISIONS.items()}


def _call(fn, x, device, dtype) -> torch.Tensor:
    half = dtype is not torch.float32
    # Channels-last (NHWC) is what oneDNN and cuDNN convolutions run fastest on (FI-GAN at 640×360
    # on 2 CPU cores: 1.35-1.47× over NCHW); a callable that does not care sees the same values.
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=half):
        return fn(x)


# --- small helpers ----------------------------------------------------------------------------


def _round_down(value: int, multiple: int) -> int:
    return value // multiple * multiple
