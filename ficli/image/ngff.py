"""OME-Zarr (OME-NGFF 0.4 and 0.5) images: check and read their metadata, create an output store
like an input, and rebuild a multiscale pyramid from its full-resolution level.

An OME-Zarr image is a zarr group whose attributes hold `multiscales` (NGFF 0.4: in the group's
attributes, zarr format 2; NGFF 0.5: under `ome`, zarr format 3): the axes (up to five, named from
t, c, z, y, x in that order, y and x last), and one dataset (a zarr array) per resolution level,
each with its `scale` (the pixel size in the axes' units) and optional `translation`. `omero`
holds the channels' names, colours and display windows. The reading is ours (`open_image`, which
names what a store lacks); ome-zarr-py's reader reads what `create_like` writes (tests/test_zarr.py).

zarr is imported inside the functions: plain image files never need it, and a missing package is
one clear error (`require_zarr`: install ficli[zarr]). numpy and zarr only.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ficli.errors import ConfigError, InputError, OutputError

AXIS_ORDER = "tczyx"
VERSIONS = ("0.4", "0.5")
# Output chunks: the input's y/x chunk (times --upscale) held between these sides, one plane deep.
CHUNK_MIN, CHUNK_MAX = 256, 2048
PROGRESS_DIR = ".ficli-progress"  # per-block done markers of an unfinished run, inside the output store


def require_zarr():
    """The zarr module, or a ConfigError saying how to install it."""
    try:
        import zarr
    except ImportError:
        raise ConfigError("OME-Zarr needs the optional packages of ficli[zarr]: pip install 'ficli[zarr]' "
                          "(zarr>=3, ome-zarr, dask, distributed)") from None
    return zarr


def is_store(path: Path | str) -> bool:
    """Whether `path` names a zarr store: a folder ending in .zarr, or a folder holding zarr.json,
    .zgroup or .zattrs (a store given by another name)."""
    path = Path(path)
    if not path.is_dir():
        return str(path).rstrip("/").lower().endswith(".zarr") and not path.exists()
    return path.name.lower().endswith(".zarr") or any((path / n).is_file() for n in ("zarr.json", ".zgroup", ".zattrs"))


@dataclass(frozen=True)
class Level:
    """One resolution level: the array's path in the group, its shape, its scale and translation."""

    path: str
    shape: tuple[int, ...]
    scale: tuple[float, ...]
    translation: tuple[float, ...] | None = None


@dataclass(frozen=True)
class NgffImage:
    """What an OME-Zarr image says: the store, its NGFF version, axes (names in order, as "tczyx"
    letters, and the NGFF axis entries), levels (full resolution first), channels (omero) and the
    full-resolution array's dtype and chunks."""

    path: Path
    version: str
    axes: str
    axis_entries: list = field(default_factory=list)
    levels: tuple[Level, ...] = ()
    omero: dict | None = None
    name: str | None = None
    dtype: np.dtype = np.dtype("uint16")
    chunks: tuple[int, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return self.levels[0].shape

    @property
    def planes(self) -> list[tuple[int, ...]]:
        """The index of every (t, c, z) plane of the full-resolution level, in C order."""
        return list(np.ndindex(*self.shape[:-2]))

    def channel_of(self, plane: tuple[int, ...]) -> int:
        return plane[self.axes.index("c")] if "c" in self.axes else 0


def _ngff_attrs(attrs: dict, path: Path) -> tuple[str, dict]:
    """(version, the attributes that hold multiscales) of a group, or InputError naming what lacks."""
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        ome = attrs["ome"]
        version = str(ome.get("version", ""))
        if version != "0.5":
            raise InputError(f"{path}: OME-NGFF version {version or '(none given)'} under 'ome'; ficli reads 0.4 and 0.5")
        return version, ome
    multiscales = attrs.get("multiscales")
    if not multiscales:
        keys = ", ".join(sorted(attrs)) or "none"
        raise InputError(f"{path}: a zarr group but not an OME-Zarr image: its attributes have no 'multiscales' "
                         f"(NGFF 0.4) and no 'ome' (NGFF 0.5) entry (attributes: {keys}); a plate or a bare array "
                         f"is not read: give the image group inside it, e.g. {path}/0")
    version = str(multiscales[0].get("version", attrs.get("version", "")))
    if version not in VERSIONS:
        raise InputError(f"{path}: OME-NGFF version {version or '(none given)'}; ficli reads 0.4 and 0.5 (convert with "
                         "ome-zarr-py or bioformats2raw)")
    return version, attrs


def open_image(path: Path | str) -> NgffImage:
    """Read and check the metadata of the OME-Zarr image at `path` (its first multiscales entry).

    InputError naming the store and what is missing: not a zarr group, no multiscales, axes that
    are not a subset of t, c, z, y, x in that order ending with y, x, a dataset without its array or
    scale, a level whose number of dimensions differs from the axes."""
    zarr = require_zarr()
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such zarr store (a folder)")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several kinds for a folder that is no group
        raise InputError(f"{path}: not a zarr group (no zarr.json, .zgroup or .zattrs that zarr can read: "
                         f"{type(exc).__name__})") from None
    version, holder = _ngff_attrs(dict(group.attrs), path)
    multiscale = holder["multiscales"][0]
    entries = multiscale.get("axes")
    if not entries:
        raise InputError(f"{path}: its multiscales entry has no 'axes'; NGFF {version} requires them")
    names = "".join(str(a["name"] if isinstance(a, dict) else a).lower() for a in entries)
    if any(n not in AXIS_ORDER for n in names) or len(set(names)) != len(names) or not names.endswith("yx") \
            or list(names) != sorted(names, key=AXIS_ORDER.index):
        raise InputError(f"{path}: axes {','.join(names)}; ficli reads axes named from t, c, z, y, x in that order, "
                         "ending with y, x")
    datasets = multiscale.get("datasets") or []
    if not datasets:
        raise InputError(f"{path}: its multiscales entry lists no datasets (resolution levels)")
    levels = [_level(group, d, names, path) for d in datasets]
    first = group[levels[0].path]
    return NgffImage(path=path, version=version, axes=names, axis_entries=list(entries), levels=tuple(levels),
                     omero=holder.get("omero"), name=multiscale.get("name"), dtype=np.dtype(first.dtype),
                     chunks=tuple(first.chunks))


def _level(group, dataset: dict, axes: str, path: Path) -> Level:
    name = dataset.get("path")
    try:
        array = group[name]
    except Exception:
        raise InputError(f"{path}: dataset {name!r} of its multiscales has no zarr array at {path / str(name)}") from None
    if not hasattr(array, "shape") or len(array.shape) != len(axes):
        raise InputError(f"{path}/{name}: {getattr(array, 'shape', '?')} does not have the {len(axes)} dimensions of the axes {axes}")
    scale, translation = [1.0] * len(axes), None
    for t in dataset.get("coordinateTransformations") or []:
        if t.get("type") == "scale" and "scale" in t:
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation" and "translation" in t:
            translation = tuple(float(v) for v in t["translation"])
    if len(scale) != len(axes):
        raise InputError(f"{path}/{name}: its scale has {len(scale)} values for {len(axes)} axes")
    return Level(str(name), tuple(int(s) for s in array.shape), tuple(scale), translation)


def level_array(image: NgffImage, level: int = 0, mode: str = "r"):
    """The zarr array of one level (full resolution: 0)."""
    zarr = require_zarr()
    return zarr.open_group(str(image.path), mode=mode)[image.levels[level].path]


def output_chunks(image: NgffImage, upscale: int = 1) -> tuple[int, ...]:
    """Chunks of the output's full-resolution level: one plane deep in t, c, z; in y and x the input's
    chunk × `upscale`, held within CHUNK_MIN..CHUNK_MAX and the image's side."""
    shape = [s * (upscale if i >= len(image.axes) - 2 else 1) for i, s in enumerate(image.shape)]
    yx = [min(max(c * upscale, CHUNK_MIN), CHUNK_MAX, side) for c, side in zip(image.chunks[-2:], shape[-2:])]
    return (1,) * (len(image.axes) - 2) + tuple(yx)


def scaled_level(level: Level, factor: float, axes: str) -> tuple[list[float], list[float] | None]:
    """(scale, translation) of `level` with y and x pixels `factor`× smaller (factor < 1: larger).

    Pixel centres stay where they were: an enlarged image's first pixel centre moves by half the
    old pixel minus half the new one (ficli's bicubic keeps pixel centres, as PIL does)."""
    scale = list(level.scale)
    translation = list(level.translation) if level.translation is not None else None
    if factor == 1:
        return scale, translation
    translation = translation or [0.0] * len(axes)
    for i in (len(axes) - 2, len(axes) - 1):
        new = scale[i] / factor
        translation[i] += (new - scale[i]) / 2
        scale[i] = new
    return scale, translation


def create_like(dest: Path, image: NgffImage, *, upscale: int = 1, dtype=None, pyramid: int = 0,
                record: dict | None = None, overwrite: bool = False):
    """A new OME-Zarr store at `dest` in `image`'s NGFF version (0.4: zarr format 2; 0.5: 3) for the
    full-resolution level enhanced `upscale`× and `pyramid` levels below it, each half the previous
    in y and x; empty arrays, the axes, scales, omero channels and the ficli record (attribute
    "ficli"). Returns the zarr group. OutputError when `dest` exists, unless `overwrite`."""
    zarr = require_zarr()
    if os.path.lexists(dest) and not overwrite:
        raise OutputError(f"{dest}: exists already; use --overwrite to replace it, --skip-existing to finish an "
                          "interrupted run into it, or choose another --out")
    fmt = 2 if image.version == "0.4" else 3
    group = zarr.open_group(str(dest), mode="w", zarr_format=fmt)
    shape = list(image.shape)
    shape[-2:] = [shape[-2] * upscale, shape[-1] * upscale]
    chunks = output_chunks(image, upscale)
    dtype = np.dtype(dtype or image.dtype)
    datasets = []
    base = image.levels[0]
    for k in range(pyramid + 1):
        level_shape = shape[:-2] + [max(1, -(-shape[-2] // 2**k)), max(1, -(-shape[-1] // 2**k))]
        extra = {"dimension_names": list(image.axes)} if fmt == 3 else {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
        group.create_array(f"s{k}", shape=tuple(level_shape), chunks=tuple(min(c, s) for c, s in zip(chunks, level_shape)),
                           dtype=dtype, fill_value=0, **extra)
        scale, translation = scaled_level(base, upscale / 2**k, image.axes)
        transforms = [{"type": "scale", "scale": scale}]
        if translation is not None:
            transforms.append({"type": "translation", "translation": translation})
        datasets.append({"path": f"s{k}", "coordinateTransformations": transforms})
    multiscale = {"axes": image.axis_entries, "datasets": datasets, "name": image.name or dest.name}
    if pyramid:
        multiscale["type"] = "2x2 mean (ficli)"
    attrs: dict = {}
    if fmt == 2:
        attrs["multiscales"] = [{**multiscale, "version": "0.4"}]
        if image.omero is not None:
            attrs["omero"] = image.omero
    else:
        attrs["ome"] = {"version": "0.5", "multiscales": [multiscale], **({"omero": image.omero} if image.omero else {})}
    if record is not None:
        attrs["ficli"] = record
    group.attrs.update(attrs)
    return group


def set_record(dest: Path, record: dict) -> None:
    """Replace the ficli record (attribute "ficli") of the output store `dest`."""
    zarr = require_zarr()
    zarr.open_group(str(dest), mode="r+").attrs.update({"ficli": record})


def read_record(dest: Path | str) -> dict | None:
    """The ficli record of a store ficli wrote, or None."""
    zarr = require_zarr()
    try:
        return dict(zarr.open_group(str(dest), mode="r").attrs).get("ficli")
    except Exception:
        return None


def build_pyramid(dest: Path, levels: int, on_level=None) -> None:
    """Fill levels 1..`levels` of the store `dest` from level 0: each the 2×2 mean of the one above
    (an odd last row or column averaged with itself), rounded for integer types; one output chunk
    row band at a time, so memory follows the chunks, not the image."""
    zarr = require_zarr()
    group = zarr.open_group(str(dest), mode="r+")
    for k in range(1, levels + 1):
        src, out = group[f"s{k - 1}"], group[f"s{k}"]
        band = out.chunks[-2]
        for plane in np.ndindex(*out.shape[:-2]):
            for y0 in range(0, out.shape[-2], band):
                y1 = min(y0 + band, out.shape[-2])
                block = np.asarray(src[plane + (slice(2 * y0, 2 * y1), slice(None))])
                out[plane + (slice(y0, y1), slice(None))] = half(block, out.dtype)
        if on_level is not None:
            on_level(k)


def half(block: np.ndarray, dtype) -> np.ndarray:
    """The 2×2 mean of a (H, W) block, (ceil(H/2), ceil(W/2)); edge rows and columns repeated."""
    x = block.astype(np.float64)
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-1:]], axis=0)
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -1:]], axis=1)
    mean = (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(dtype)


def describe(image: NgffImage) -> str:
    """"NGFF 0.5, axes czyx, 2×30×4096×4096 uint16, chunks 1×1×512×512, 3 levels" for messages."""
    dims = "×".join(str(s) for s in image.shape)
    return (f"NGFF {image.version}, axes {image.axes}, {dims} {image.dtype}, chunks "
            f"{'×'.join(str(c) for c in image.chunks)}, {len(image.levels)} level{'s' if len(image.levels) > 1 else ''}")


# --- an output store's life: refused or replaced or resumed, blocks marked done, finished ------------


def check_store_output(src: Path, dest: Path, *, overwrite: bool, skip_existing: bool) -> str:
    """What to do with `dest`: "new", "replace" (--overwrite, a zarr store), "resume" or "complete"
    (--skip-existing, a store ficli wrote). OutputError when `dest` is the input or inside it (or
    it inside `dest`), exists without either option, or is not a store ficli may replace."""
    a, b = Path(os.path.abspath(src)).resolve(), Path(os.path.abspath(dest)).resolve()
    if a == b or b.is_relative_to(a) or a.is_relative_to(b):
        raise OutputError(f"{dest}: is the input store {src} or lies inside it (or it inside this); choose another --out")
    if not os.path.lexists(dest):
        return "new"
    is_zarr = dest.is_dir() and any((dest / n).exists() for n in ("zarr.json", ".zgroup"))
    if overwrite:
        if not is_zarr:
            raise OutputError(f"{dest}: exists and is not a zarr store; ficli replaces only a store it can recognise: "
                              "remove it yourself or choose another --out")
        return "replace"
    if skip_existing:
        record = read_record(dest) if is_zarr else None
        if record is None:
            raise OutputError(f"{dest}: exists and is not a store ficli wrote (no ficli record); --skip-existing "
                              "resumes only ficli's own runs: use --overwrite or choose another --out")
        return "complete" if record.get("complete") else "resume"
    raise OutputError(f"{dest}: exists already; use --overwrite to replace it, --skip-existing to finish an "
                      "interrupted run into it (or leave a finished one), or choose another --out")


def mark_done(dest: Path, block_id: str) -> None:
    """Mark one block (or plane) of the output store `dest` written (after its chunks are)."""
    marker = Path(dest) / PROGRESS_DIR / block_id
    marker.parent.mkdir(exist_ok=True)
    marker.write_text("done\n")


def done_ids(dest: Path) -> set[str]:
    """The blocks an earlier run into `dest` finished."""
    folder = Path(dest) / PROGRESS_DIR
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def finish_store(dest: Path, pyramid: int, record: dict) -> None:
    """Every block written: rebuild the lower levels, state the record complete, drop the markers."""
    if pyramid:
        build_pyramid(dest, pyramid)
    set_record(dest, {**record, "complete": True})
    shutil.rmtree(Path(dest) / PROGRESS_DIR, ignore_errors=True)


def read_whole(path: Path | str, limit: int) -> np.ndarray:
    """The full-resolution level of the OME-Zarr image at `path` as one (planes, H, W) array (a
    single plane: (H, W)); InputError when it holds more than `limit` values (checked from the
    metadata, before reading)."""
    image = open_image(path)
    if math.prod(image.shape) > limit:
        raise InputError(f"{path}: {describe(image)} holds {math.prod(image.shape):,} values, more than the {limit:,} "
                         "ficli reads whole; score a part of it (e.g. one level down, or a crop written as its own store)")
    data = np.asarray(level_array(image, 0)[...])
    data = data.reshape((-1,) + data.shape[-2:])
    return data[0] if data.shape[0] == 1 else data
