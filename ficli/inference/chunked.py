"""Enhancing an OME-Zarr image block by block, on this machine or on a dask.distributed cluster.

The output's full-resolution level is cut into blocks of whole output chunks (`plan_blocks`, about
`block` pixels a side), one (t, c, z) plane deep. Each block reads its input region with a halo of
the network's receptive field (plus the bicubic's support under --upscale), enlarges it, maps its
intensities, runs the tiled engine over it and writes only its interior, so that every written
pixel saw all of its receptive field, as in the whole-image pass; peak memory follows the block
and tile sizes, not the image's. The region starts on the network's 4-pixel grid of the whole
image (the network is shift-equivariant only on it).

One intensity map per channel, as `enhance` gives a stack: the percentiles are estimated once,
before any block runs, from a deterministic sample of the input's chunks (all of them when they
are few; `sample_ranges`), and stated in the note and the record. One blur scale for the image,
estimated from central crops (`central_crops`) or given. Every block is told the same.

A block that is written leaves a marker (`OUT/.ficli-progress/ID`); a rerun with skip_existing
skips the blocks marked, so an interrupted run resumes where it stopped; the markers are removed
when every block is done and the record says "complete". A block whose input chunks cannot be
read fails alone, naming the chunks; the run goes on, then reports which blocks remain.

With a scheduler address the blocks run as tasks on the cluster's workers (`run_block`, each
worker loading the model once and keeping it); without one, here, one block after another with
the next block's input read by a second thread while the network runs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ficli.defaults import HI_PCT, LO_PCT
from ficli.errors import ConfigError, FicliError, InputError, OutputError
from ficli.image import ngff
from ficli.image.io import check_dtype, dtype_max, evenly_spread, from_unit, printable, to_unit
from ficli.image.degrade import coarse_kept, keep_coarse_array
from ficli.image.intensity import denormalize, normalize, percentile_range
from ficli.inference.engine import TileConfig, receptive_field_overlap, run_tiled

SAMPLE_CHUNKS = 32  # chunks read per channel to estimate the percentiles
SAMPLE_VALUES = 1 << 18  # values kept per sampled chunk (a regular stride through it)
CROP_SIDE = 1024  # side of the central crops the blur scale is estimated from
CROP_PLANES = 8  # planes (t, z) they are taken from, evenly spread
CONNECT_TIMEOUT = "20s"  # how long --scheduler is waited for


@dataclass(frozen=True)
class StoreJob:
    """Everything a block needs, sent to the workers as it is (no open files, no model).

    `ranges`: per channel the intensity map's (lo, hi) on the [0, 1] scale, None without it;
    `halo`: model-grid pixels read around a block; `scales`: per channel the blur scale told (None:
    a plain model, told nothing)."""

    src: str
    src_level: str
    dest: str
    model: str | None
    device: str
    tile: TileConfig
    upscale: int
    halo: int
    block: int
    axes: str
    in_dtype: str
    out_dtype: str
    float_out: bool
    ranges: tuple | None
    scales: tuple | None
    keep_coarse: bool | None = None  # a model told s: the correction loses what a blur of s passes (`degrade.coarse_kept`)


@dataclass(frozen=True)
class Block:
    """One block of the output's full-resolution level: a plane index and its y/x interior."""

    plane: tuple[int, ...]
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def id(self) -> str:
        return "-".join(str(i) for i in self.plane) + f"{'-' if self.plane else ''}y{self.y0}-x{self.x0}"

    def words(self, axes: str) -> str:
        where = ", ".join(f"{a}={i}" for a, i in zip(axes, self.plane))
        return f"block {where + ', ' if where else ''}y {self.y0}:{self.y1}, x {self.x0}:{self.x1}"


def plan_blocks(shape: tuple[int, ...], chunks: tuple[int, ...], block: int) -> list[Block]:
    """The blocks of an output level of `shape`: whole chunks, about `block` pixels a side (rounded
    up to the chunk side), one plane each; in C order of the planes, then rows, then columns."""
    by = max(1, -(-block // chunks[-2])) * chunks[-2]
    bx = max(1, -(-block // chunks[-1])) * chunks[-1]
    h, w = shape[-2:]
    return [Block(tuple(int(i) for i in plane), y, min(y + by, h), x, min(x + bx, w))
            for plane in np.ndindex(*shape[:-2]) for y in range(0, h, by) for x in range(0, w, bx)]


def halo_for(radius: int, upscale: int) -> int:
    """Model-grid pixels read around a block: the receptive field on the 4-pixel grid, plus 4 for
    the padding of a region to a multiple of 4, plus the bicubic's reach (2 input pixels) enlarged."""
    return receptive_field_overlap(radius) + 4 + (2 * upscale if upscale > 1 else 0)


# --- estimates made once, before the blocks -------------------------------------------------------


def sample_ranges(array, image: ngff.NgffImage, lo_pct: float, hi_pct: float) -> tuple[list[tuple[float, float]], str]:
    """Per channel (lo, hi) on the [0, 1] scale, and how they were estimated: the percentiles of up
    to SAMPLE_CHUNKS chunks of that channel (all its planes), evenly spread over them in C order,
    each thinned to SAMPLE_VALUES values by a regular stride. An image of few chunks is read whole."""
    ci = image.axes.index("c") if "c" in image.axes else None
    channels = image.shape[ci] if ci is not None else 1
    grid = [range(0, s, c) for s, c in zip(image.shape, image.chunks)]
    ranges, counts = [], []
    for c in range(channels):
        shape = [len(g) for g in grid]
        if ci is not None:
            shape[ci] = 1  # the chunk row of channel c only
        starts = [tuple(g[i] for g, i in zip(grid, idx)) for idx in np.ndindex(*shape)]
        picked = evenly_spread(starts, SAMPLE_CHUNKS)
        values = []
        for start in picked:
            index = [slice(s, s + k) for s, k in zip(start, image.chunks)]
            if ci is not None:
                index[ci] = slice(c, c + 1)
            flat = read_region(array, tuple(index)).reshape(-1)
            values.append(to_unit(flat[:: max(1, flat.size // SAMPLE_VALUES)]))
        ranges.append(percentile_range(np.concatenate(values), lo_pct, hi_pct))
        counts.append((len(picked), len(starts)))
    read, total = counts[0]
    how = (f"the {lo_pct:g}/{hi_pct:g} percentiles of " + (f"all {total} chunks" if read == total else
           f"{read} of {total} chunks, evenly spread") + (" per channel" if channels > 1 else ""))
    return ranges, how


def central_crops(array, image: ngff.NgffImage) -> list[list[np.ndarray]]:
    """Per channel the central CROP_SIDE² crop of up to CROP_PLANES of its planes (evenly spread),
    on the [0, 1] scale: what the blur scale is estimated from."""
    h, w = image.shape[-2:]
    ys, xs = slice(max(0, (h - CROP_SIDE) // 2), max(0, (h - CROP_SIDE) // 2) + CROP_SIDE), \
        slice(max(0, (w - CROP_SIDE) // 2), max(0, (w - CROP_SIDE) // 2) + CROP_SIDE)
    by_channel: dict[int, list] = {}
    for plane in image.planes:
        by_channel.setdefault(image.channel_of(plane), []).append(plane)
    crops = []
    for c in sorted(by_channel):
        planes = by_channel[c]
        picked = evenly_spread(planes, CROP_PLANES)
        crops.append([to_unit(read_region(array, plane + (ys, xs))) for plane in picked])
    return crops


# --- one block ------------------------------------------------------------------------------------


def read_region(array, index: tuple) -> np.ndarray:
    """`array[index]` as numpy; InputError naming the chunks that cannot be read (each is tried alone)."""
    try:
        return np.asarray(array[index])
    except Exception as exc:
        first = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    bad = []
    for key in _chunks_of(array, index):
        sub = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(key, array.chunks, array.shape))
        try:
            array[sub]
        except Exception:
            bad.append(key)
    names = ", ".join(chunk_file(array, k) for k in bad[:6]) or f"a chunk of {chunk_file(array, None)}"
    more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
    raise InputError(f"chunk{'s' if len(bad) > 1 else ''} {names}{more} cannot be read ({first})")


def chunk_file(array, key: tuple[int, ...] | None) -> str:
    """Where one chunk of `array` lies on disk (the array itself for None), as a user finds it."""
    store_path = getattr(array, "store_path", None)
    root = getattr(getattr(store_path, "store", None), "root", None)
    where = f"{root}/{store_path.path}" if root is not None else str(store_path or "the input array")
    if key is None:
        return where
    try:
        return f"{where}/{array.metadata.encode_chunk_key(tuple(key))}"
    except Exception:
        return f"{where}/{'/'.join(map(str, key))}"


def _chunks_of(array, index: tuple) -> list[tuple[int, ...]]:
    """The chunk indices of `array` that `index` (slices and integers) touches."""
    spans = []
    for sl, c in zip(index, array.chunks):
        start, stop = (sl.start or 0, sl.stop) if isinstance(sl, slice) else (sl, sl + 1)
        spans.append(range(start // c, -(-stop // c)))
    return [tuple(span[i] for span, i in zip(spans, idx)) for idx in np.ndindex(*[len(span) for span in spans])]


def input_window(job: StoreJob, block: Block, height: int, width: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the input read for `block`: its interior / upscale, widened by the halo,
    starting on a multiple of 4 input pixels (so on the model's 4-pixel grid), within the image."""
    k, pad = job.upscale, -(-job.halo // job.upscale)
    y0 = max(0, (block.y0 // k - pad) // 4 * 4)
    x0 = max(0, (block.x0 // k - pad) // 4 * 4)
    return y0, min(height, -(-block.y1 // k) + pad), x0, min(width, -(-block.x1 // k) + pad)


def read_input(job: StoreJob, block: Block, array=None) -> np.ndarray:
    """The (h, w) input region of `block` in the input's pixel type."""
    array = _open(job.src, job.src_level) if array is None else array
    y0, y1, x0, x1 = input_window(job, block, *array.shape[-2:])
    return read_region(array, block.plane + (slice(y0, y1), slice(x0, x1)))


def channel_of(job: StoreJob, block: Block) -> int:
    return block.plane[job.axes.index("c")] if "c" in job.axes else 0


def compute_block(job: StoreJob, block: Block, data: np.ndarray, generator: Callable, height: int, width: int) -> np.ndarray:
    """The output pixels of `block` (its interior), in the output's pixel type; `generator` told the
    block's channel's blur scale."""
    y0, _, x0, _ = input_window(job, block, height, width)
    x = to_unit(data)
    if job.upscale > 1:
        from ficli.image.degrade import resize_array

        x = resize_array(x, (x.shape[0] * job.upscale, x.shape[1] * job.upscale))
    lo, hi = job.ranges[channel_of(job, block)] if job.ranges is not None else (0.0, 1.0)
    x = normalize(x, lo, hi)[None]
    y = run_tiled(generator, x, job.tile)
    scale = None if job.scales is None else job.scales[channel_of(job, block)]
    if coarse_kept(job.keep_coarse, scale):  # local (COARSE_RADIUS px, within the halo): as in memory
        y = keep_coarse_array(y, x, scale)
    y = denormalize(y[0], lo, hi)
    oy, ox = block.y0 - y0 * job.upscale, block.x0 - x0 * job.upscale
    y = y[oy : oy + block.y1 - block.y0, ox : ox + block.x1 - block.x0]
    if job.float_out:
        return (y * np.float32(dtype_max(job.in_dtype))).astype(np.float32)
    return from_unit(y, job.out_dtype)


def write_block(job: StoreJob, block: Block, result: np.ndarray, out=None) -> None:
    """Write `result` into the output's full-resolution level and mark the block done."""
    out = _open(job.dest, "s0", mode="r+") if out is None else out
    out[block.plane + (slice(block.y0, block.y1), slice(block.x0, block.x1))] = result
    ngff.mark_done(Path(job.dest), block.id)


def run_block(job: StoreJob, block: Block) -> str:
    """One block from start to end, as a cluster's worker runs it (the model loaded once per worker
    process and kept). Returns the block's id."""
    array = _open(job.src, job.src_level)
    data = read_input(job, block, array)
    result = compute_block(job, block, data, worker_generator(job, channel_of(job, block)), *array.shape[-2:])
    write_block(job, block, result)
    return block.id


_LOADED: dict = {}
_LOADING = threading.Lock()


def worker_generator(job: StoreJob, channel: int) -> Callable:
    """The job's generator told the channel's blur scale; the model is loaded once per process (per
    model file and device) and kept for the blocks that follow."""
    from ficli.inference.runtime import told

    key = (job.model, job.device)
    with _LOADING:
        if key not in _LOADED:
            import torch

            from ficli.inference.runtime import load_generator

            _LOADED[key] = load_generator(job.model, torch.device(job.device))[0]
    return told(_LOADED[key], None if job.scales is None else job.scales[channel])


def _open(store: str, level: str, mode: str = "r"):
    zarr = ngff.require_zarr()
    return zarr.open_group(store, mode=mode)[level]


# --- the run --------------------------------------------------------------------------------------


@dataclass
class StoreReport:
    """What a run did: blocks written now, skipped (written by an earlier run), failed (id, message)."""

    total: int = 0
    done: list = None
    skipped: int = 0
    failed: list = None

    def __post_init__(self):
        self.done = [] if self.done is None else self.done
        self.failed = [] if self.failed is None else self.failed

    @property
    def remaining(self) -> int:
        return self.total - len(self.done) - self.skipped


def run_blocks(job: StoreJob, blocks: list[Block], generator: Callable | None, *, client=None,
               on_block: Callable[[Block, str | None], None] | None = None) -> StoreReport:
    """Run `blocks` (those not yet done) here or on the cluster of the dask `client`; a block that fails
    with a FicliError (an unreadable chunk) is reported through `on_block(block, message)` and the
    others go on; `on_block(block, None)` after each block written."""
    report = StoreReport(total=len(blocks))

    def finished(block: Block, message: str | None) -> None:
        (report.done.append(block.id) if message is None else report.failed.append((block.id, message)))
        if on_block is not None:
            on_block(block, message)

    if client is not None:
        _run_on_cluster(job, blocks, client, finished)
    else:
        _run_here(job, blocks, generator, finished)
    return report


def _run_here(job: StoreJob, blocks: list[Block], generator: Callable | None, finished) -> None:
    from ficli.inference.runtime import told

    array, out = _open(job.src, job.src_level), _open(job.dest, "s0", mode="r+")
    height, width = array.shape[-2:]
    with ThreadPoolExecutor(1, thread_name_prefix="ficli-read") as reader:
        ahead = reader.submit(read_input, job, blocks[0], array) if blocks else None
        for i, block in enumerate(blocks):
            current = ahead
            ahead = reader.submit(read_input, job, blocks[i + 1], array) if i + 1 < len(blocks) else None
            try:
                data = current.result()
            except FicliError as exc:
                finished(block, f"{block.words(job.axes)}: {exc}")
                continue
            channel = channel_of(job, block)
            told_s = worker_generator(job, channel) if generator is None else \
                told(generator, None if job.scales is None else job.scales[channel])
            write_block(job, block, compute_block(job, block, data, told_s, height, width), out)
            finished(block, None)


def connect(scheduler: str):
    """A dask.distributed Client of the scheduler at `scheduler` (an address, or a scheduler file);
    FicliError when the package is missing or nothing answers there (within CONNECT_TIMEOUT)."""
    try:
        from distributed import Client
    except ImportError:
        ngff.require_zarr()
        raise FicliError("--scheduler needs the distributed package of ficli[zarr]: pip install 'ficli[zarr]'") from None
    try:
        if os.path.isfile(scheduler):
            return Client(scheduler_file=scheduler, timeout=CONNECT_TIMEOUT)
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise FicliError(f"--scheduler {scheduler}: no dask scheduler answers there ({exc}); start one "
                         "(dask scheduler, dask-jobqueue's SLURMCluster, dask-kubernetes) and give its address") from None


def _run_on_cluster(job: StoreJob, blocks: list[Block], client, finished) -> None:
    from distributed import as_completed

    futures = {client.submit(run_block, job, block, pure=False, key=f"ficli-{block.id}-{os.getpid()}"): block for block in blocks}
    try:
        for future in as_completed(futures):
            block = futures[future]
            try:
                future.result()
            except FicliError as exc:
                finished(block, f"{block.words(job.axes)}: {exc}")
                continue
            finished(block, None)
    except BaseException:
        client.cancel(list(futures))
        raise


def record_fields(job: StoreJob, image: ngff.NgffImage, how_ranges: str, scale_how: str | None, pyramid: int,
                  scheduler: str | None) -> dict:
    """What the output store's record says of the run (beside `provenance.base`)."""
    top = dtype_max(image.dtype)
    return {
        "input": printable(image.path.name), "input_ngff": ngff.describe(image),
        "blur_scale": None if job.scales is None else [round(float(s), 4) for s in job.scales], "blur_scale_note": scale_how,
        "keep_coarse": None if job.scales is None else [coarse_kept(job.keep_coarse, s) for s in job.scales],
        "upscale": job.upscale,
        "normalisation": "off" if job.ranges is None else
        {"lo_hi": [[round(lo * top, 6), round(hi * top, 6)] for lo, hi in job.ranges], "estimated_from": how_ranges},
        "tile": job.tile.tile, "overlap": job.tile.overlap, "halo": job.halo, "block": job.block,
        "device": job.tile.device, "precision": job.tile.precision,
        "input_dtype": job.in_dtype, "output_dtype": job.out_dtype, "pyramid_levels": pyramid,
        "scheduler": scheduler or "local", "complete": False,
    }


# --- enhancing a store from start to end ----------------------------------------------------------


def receptive_radius(config) -> int:
    """The generator's receptive-field radius in pixels, without `nets.receptive_field`'s probe
    (seconds for the default model): 18 for the head, the stride-2 stages and the upsampling, and 4
    for each 3×3 convolution at 1/4 size, L per block (130 for the default; tests/test_zarr.py
    checks the formula against the probe)."""
    return 18 + 4 * config.blocks * config.layers


@dataclass(frozen=True)
class StoreOptions:
    """How `enhance_store` runs. `scale`: the --scale given (None: auto); `block`: output pixels a
    side processed at once; `pyramid`: levels written below the full resolution; `scheduler`: a
    dask.distributed scheduler address or scheduler file (None: here)."""

    model: str | None = None
    scale: float | None = None
    upscale: int = 1
    normalize: bool = True
    lo_pct: float = LO_PCT
    hi_pct: float = HI_PCT
    tile: TileConfig = TileConfig()
    block: int = 4096
    pyramid: int = 0
    dtype: str | None = None
    keep_coarse: bool | None = None  # True always, False never, None below degrade.FREE_FROM
    scheduler: str | None = None
    overwrite: bool = False
    skip_existing: bool = False


def enhance_store(src: Path, dest: Path, options: StoreOptions, *, loaded: tuple | None = None, record: dict | None = None,
                  on_notice: Callable[[str], None] | None = None,
                  on_block: Callable[[Block, str | None, int], None] | None = None) -> StoreReport:
    """Enhance the full-resolution level of the OME-Zarr image `src` into the new store `dest`.

    `loaded`: (generator, info) of `runtime.ready_generator` (loaded here when None); `record`: the
    provenance record's common part. `on_block(block, message, total)` after each block (message
    None when written). FicliError at the end when blocks failed, naming them and how many remain.
    A --scheduler is connected to before the output store is made (one that does not answer leaves
    nothing behind)."""
    src, dest = Path(src), Path(dest)
    image = ngff.open_image(src)
    state = ngff.check_store_output(src, dest, overwrite=options.overwrite, skip_existing=options.skip_existing)
    if state == "complete":
        return StoreReport(total=0)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(connect(options.scheduler)) if options.scheduler is not None else None
        generator, job, record = prepare_job(src, dest, image, options, loaded, record, on_notice or (lambda message: None))
        pyramid = options.pyramid
        if state == "resume":
            pyramid = _check_resume(dest, record)
        else:
            ngff.create_like(dest, image, upscale=options.upscale, dtype=job.out_dtype, pyramid=pyramid, record=record,
                             overwrite=state == "replace")
        out_shape = tuple(ngff.level_array(ngff.open_image(dest), 0).shape)
        blocks = plan_blocks(out_shape, ngff.output_chunks(image, options.upscale), options.block)
        todo = [b for b in blocks if b.id not in ngff.done_ids(dest)]
        report = run_blocks(job, todo, generator, client=client,
                            on_block=None if on_block is None else (lambda b, m: on_block(b, m, len(blocks))))
    report.total, report.skipped = len(blocks), len(blocks) - len(todo)
    if report.failed:
        names = "; ".join(message for _, message in report.failed[:5])
        raise FicliError(f"{len(report.failed)} block(s) failed: {names}{' …' if len(report.failed) > 5 else ''}; "
                         f"{report.remaining} of {report.total} blocks of {dest} remain unwritten: fix the input and rerun "
                         "with --skip-existing, which does only those")
    ngff.finish_store(dest, pyramid, {**(ngff.read_record(dest) or record)})
    return report


def prepare_job(src: Path, dest: Path, image: ngff.NgffImage, options: StoreOptions, loaded: tuple | None, record: dict | None,
                say: Callable[[str], None]) -> tuple[Callable, StoreJob, dict]:
    """(the generator, the job, the record): the model loaded (unless `loaded`), the intensity map
    and blur scale estimated once (and said), the halo from the model's receptive field."""
    from ficli.inference.runtime import ready_generator, scale_chooser

    if options.dtype not in (None, "float32"):
        raise ConfigError(f"--dtype {options.dtype!r}: use float32, or leave it out to keep the input's pixel type")
    check_dtype(image.dtype, image.path)
    generator, info = loaded if loaded is not None else ready_generator(options.model, _device(options))
    if info["config"].channels != 1:
        raise ConfigError(f"{src}: the model takes {info['config'].channels} channels; OME-Zarr is enhanced channel "
                          "by channel with a 1-channel model")
    array = ngff.level_array(image, 0)
    ranges, how_ranges = sample_ranges(array, image, options.lo_pct, options.hi_pct) if options.normalize else (None, "off")
    scales, scale_how = _scales(scale_chooser(info, options.scale), array, image, options.upscale, options.scale is None)
    # Absolute paths: a cluster's workers run in folders of their own.
    job = StoreJob(src=os.path.abspath(src), src_level=image.levels[0].path, dest=os.path.abspath(dest),
                   model=os.path.abspath(info["path"]) if info.get("path") else None,
                   device=options.tile.device, tile=options.tile, upscale=options.upscale,
                   halo=halo_for(receptive_radius(info["config"]), options.upscale), block=options.block, axes=image.axes,
                   in_dtype=str(image.dtype), out_dtype="float32" if options.dtype else str(image.dtype),
                   float_out=options.dtype == "float32", ranges=None if ranges is None else tuple(ranges),
                   scales=None if scales is None else tuple(scales), keep_coarse=options.keep_coarse)
    if record is None or "model_sha256" not in record:
        from ficli.image import provenance

        record = {**provenance.base("enhance", **provenance.model_fields(info["path"])), **(record or {})}
    record = {**record, **record_fields(job, image, how_ranges, scale_how, options.pyramid, options.scheduler)}
    if ranges is not None:
        say(f"{src}: intensity map from {how_ranges}: " + ", ".join(f"{lo:.6g}..{hi:.6g}" for lo, hi in record["normalisation"]["lo_hi"]))
    if scales is not None:
        say(f"{src}: blur scale s = {', '.join(f'{s:.2f}' for s in scales)} ({scale_how})")
    return generator, job, record


def _device(options: StoreOptions):
    from ficli.inference.device import resolve_device

    return resolve_device(options.tile.device)


def _scales(choose, array, image: ngff.NgffImage, upscale: int, estimate: bool) -> tuple[list[float] | None, str | None]:
    """Per channel the blur scale told (None for a plain model) and how it was chosen (the channels'
    words joined when they differ); `estimate`: from the channel's central crops, else as given."""
    if choose is None:
        return None, None
    channels = image.shape[image.axes.index("c")] if "c" in image.axes else 1
    if not estimate:
        s, how = choose(None, upscale=upscale)
        return [float(s)] * channels, how
    told_s, hows = [], []
    for frames in central_crops(array, image):
        s, how = choose(frames, source=f" from central crops of up to {CROP_SIDE}² px", upscale=upscale)
        told_s.append(float(s))
        hows.append(how)
    return told_s, hows[0] if len(set(hows)) == 1 else " | ".join(f"c={c}: {h}" for c, h in enumerate(hows))


def _check_resume(dest: Path, record: dict) -> int:
    """The pyramid levels of the interrupted run into `dest`, after checking that it was made with
    the settings of this one (else the blocks would not match): OutputError naming the first that differs."""
    earlier = ngff.read_record(dest) or {}
    for key in ("model_sha256", "upscale", "blur_scale", "normalisation", "tile", "overlap", "halo", "block",
                "output_dtype", "input"):
        if earlier.get(key) != record.get(key):
            raise OutputError(f"{dest}: the interrupted run into it had {key} = {earlier.get(key)!r}, this one "
                              f"{record.get(key)!r}; rerun with its settings to finish it, or use --overwrite")
    return int(earlier.get("pyramid_levels", 0))
