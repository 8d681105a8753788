"""Reading and writing images, finding input files, and mapping intensities to [0, 1] and back.

Array layouts, fixed here and used everywhere above this module:
    2-D image           (H, W)
    multi-channel image (H, W, C)      C = 3 (RGB) or 4 (RGBA), in RGB order
    stack               (N, H, W) or (N, H, W, C)   with `Image.is_stack` set
A TIFF stack's N frames are its planes in file order: a hyperstack (T, Z and C axes, e.g. TZCYX) is
flattened to N = T·Z·C planes, and `Image.stack_axes`/`stack_shape` say how to fold them back
(written back with the same axes); `Image.channel_groups` says which planes belong to which channel.

Intensities keep their file's dtype in an `Image`; `to_unit` maps unsigned integers to [0, 1] by the
type's maximum (float data is taken as it is) and `from_unit` maps back, rounding and clipping to the
type's range, so 8- and 16-bit data round-trip bit-exactly.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import math
import os
import re
import shutil
import stat
import struct
import sys
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from io import StringIO
from pathlib import Path

import cv2
import numpy as np
import tifffile

from ficli.errors import ConfigError, InputError, OutputError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.uint32, np.float32, np.float64)
# Refuse images whose header claims more pixels than this before decoding them (decompression bombs).
MAX_PIXELS = 20_000 * 20_000
# And TIFF stacks whose frames × height × width × samples add up to more than this: the values of the
# largest single image accepted (20,000² RGBA), 3 GiB as 16-bit, before the float32 working copies.
MAX_VALUES = 4 * MAX_PIXELS
# mkstemp creates files readable by the owner only; results get the permissions a plain open() gives.
UMASK = os.umask(0)
os.umask(UMASK)


@dataclass
class Image:
    """Pixels in the file's own dtype plus what is needed to write a file like it."""

    data: np.ndarray
    path: Path
    is_stack: bool = False
    tiff_kwargs: dict = field(default_factory=dict)
    stack_axes: str = ""  # the TIFF axes a stack's frames run over, slowest first: "Z", "T", "TZC", ...
    stack_shape: tuple[int, ...] = ()  # their sizes; the product is the number of frames
    ome_xml: str | None = None  # an OME-TIFF's OME-XML, written back (sizes updated) with the pixels

    @property
    def frames(self) -> list[np.ndarray]:
        """The 2-D or (H, W, C) frames: one for an image, N for a stack (every plane of a hyperstack)."""
        return list(self.data) if self.is_stack else [self.data]

    def channel_groups(self) -> list[list[int]]:
        """Indices of the frames of each channel (a C axis), in order; one group of all frames without one.

        Intensities are mapped per group: channels of a hyperstack are different dyes and exposures.
        """
        if "C" not in self.stack_axes:
            return [list(range(len(self.frames)))]
        channel = np.unravel_index(np.arange(math.prod(self.stack_shape)), self.stack_shape)[self.stack_axes.index("C")]
        return [np.flatnonzero(channel == c).tolist() for c in range(self.stack_shape[self.stack_axes.index("C")])]


@dataclass(frozen=True)
class InputFile:
    """An input image and its path relative to the folder it was found in (mirrored under --out).

    `root` is that folder (the named file's folder, the named folder, a glob's fixed prefix); `rel`
    starts with part of the root's own path where two inputs would otherwise share an output name.
    """

    path: Path
    rel: Path
    root: Path | None = None

    @property
    def source_root(self) -> Path:
        """The folder this input was found in, resolved."""
        if self.root is not None:
            return self.root.resolve()
        root = self.path.resolve().parent
        for _ in self.rel.parts[1:]:
            root = root.parent
        return root


# ----------------------------------------------------------------------------------------- intensities


def dtype_max(dtype) -> float:
    """Full-scale value of an image dtype: the integer maximum, or 1.0 for floats."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind == "u" else 1.0


def to_unit(data: np.ndarray) -> np.ndarray:
    """float32 copy of `data` with unsigned integers divided by their type's maximum."""
    check_dtype(data.dtype)
    if data.dtype.kind == "u":
        unit = data.astype(_work_dtype(data.dtype))
        unit /= dtype_max(data.dtype)
        return unit.astype(np.float32, copy=False)
    return data.astype(np.float32, copy=True)


def _work_dtype(dtype: np.dtype):
    """float32 is exact enough for 8/16-bit round trips (tested for every value) and takes half
    the memory of float64, which matters for 8000 × 8000 images; 32-bit integers need float64."""
    return np.float32 if dtype.itemsize <= 2 else np.float64


def from_unit(data: np.ndarray, dtype) -> np.ndarray:
    """Inverse of `to_unit`: scale, round and clip to the range of an unsigned `dtype`; floats as they are."""
    dtype = np.dtype(dtype)
    check_dtype(dtype)
    if dtype.kind == "u":
        top = dtype_max(dtype)
        scaled = np.array(data, _work_dtype(dtype))  # one working copy, then in place
        scaled *= top
        np.rint(scaled, out=scaled)
        np.fmax(scaled, 0, out=scaled)  # NaN -> 0 (fmax takes the number), -inf -> 0
        np.minimum(scaled, top, out=scaled)
        return scaled.astype(dtype)
    return np.asarray(data).astype(dtype)


def check_finite(image: Image, advice: str, what: str = "values") -> None:
    """InputError naming the file when a float image holds NaN or infinite values (`advice`: what to do)."""
    if image.data.dtype.kind == "f" and not np.isfinite(image.data).all():
        raise InputError(f"{image.path}: holds NaN or infinite {what}; {advice}")


def check_dtype(dtype, path: Path | str | None = None) -> None:
    dtype = np.dtype(dtype)
    if dtype not in [np.dtype(d) for d in SUPPORTED_DTYPES]:
        where = f"{path}: " if path else ""
        raise InputError(
            f"{where}pixel type {dtype} is not supported; ficli reads unsigned 8/16/32-bit integers "
            "and float32/float64 (convert the image, e.g. in Fiji: Image > Type)"
        )


# --------------------------------------------------------------------------------------------- reading


def read_image(path: Path | str) -> Image:
    """Read a PNG, TIFF (also multi-page stacks), JPEG or BMP file into an `Image`.

    Raises InputError naming the file when it is missing, unreadable, not an image, or of a shape or
    pixel type ficli does not handle.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: not a supported image type (use {', '.join(IMAGE_SUFFIXES)})")
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: the file is empty (0 bytes); re-export or remove it")
        if path.suffix.lower() in TIFF_SUFFIXES:
            image = _read_tiff(path)
        else:
            image = _read_raster(path)
    except PermissionError:
        raise InputError(f"{path}: permission denied; check the file's read permission") from None
    except InputError:
        raise
    except Exception as exc:
        # Decoders meet damaged data with many exception types (fuzzing found zlib.error,
        # ZeroDivisionError, RuntimeError, TypeError, NotImplementedError, AssertionError, cv2.error):
        # every one means the same thing here, a file that cannot be read.
        raise InputError(f"{path}: cannot be read as an image ({_short(exc)}); the file may be truncated or corrupt") from None
    check_dtype(image.data.dtype, path)
    _check_shape(image, path)
    return image


def _read_raster(path: Path) -> Image:
    with open(path, "rb") as fh:
        raw = fh.read()
    suffix = path.suffix.lower()
    if suffix == ".png":
        _check_png_header(raw, path)
    elif suffix in (".jpg", ".jpeg"):
        _check_jpeg_header(raw, path)
    elif suffix == ".bmp":
        _check_bmp_header(raw, path)
    # JPEG: any flag but IMREAD_UNCHANGED makes OpenCV apply the EXIF orientation, so the pixels come
    # out upright, as viewers show them; outputs are written upright and without the tag (README).
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH if suffix in (".jpg", ".jpeg") else cv2.IMREAD_UNCHANGED
    with _quiet_cv2():
        data = cv2.imdecode(np.frombuffer(raw, np.uint8), flags)
    if data is None:
        raise InputError(f"{path}: cannot be decoded as {path.suffix.lower()[1:].upper()}; the file may be truncated or corrupt")
    if data.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB
        data = cv2.cvtColor(data, code)
    return Image(data, path)


@contextlib.contextmanager
def _quiet_cv2():
    """OpenCV logs its own line for every file it cannot decode; ficli reports the file itself."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:  # an OpenCV build without the logging bindings
        yield
        return
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(level)


def _check_png_header(raw: bytes, path: Path) -> None:
    """Refuse a PNG whose header claims an absurd size before the decoder allocates it."""
    _check_pixel_count(*_png_size(raw, path), path)


def _png_size(raw: bytes, path: Path) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk."""
    head = raw[:24]
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise InputError(f"{path}: not a valid PNG (bad signature or header); the file may be corrupt or misnamed")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


# JPEG frame headers (SOF0-SOF15 without DHT C4, JPG C8 and DAC CC): precision, height, width follow.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _check_jpeg_header(raw: bytes, path: Path) -> None:
    """Refuse a JPEG whose frame header (SOF) claims an absurd size, before the decoder allocates it."""
    _check_pixel_count(*_jpeg_size(raw, path), path)


def _jpeg_size(raw: bytes, path: Path) -> tuple[int, int]:
    """(height, width) from a JPEG's frame header (SOF).

    Walks the marker segments from SOI to the first SOF; a file that reaches the image data (SOS)
    or its end without one is not a JPEG the decoder could use either.
    """
    if raw[:2] != b"\xff\xd8":
        raise InputError(f"{path}: not a valid JPEG (bad signature); the file may be corrupt or misnamed")
    i = 2
    while i + 4 <= len(raw):
        if raw[i] != 0xFF:  # stray bytes between segments: skipped, as the decoder does
            i += 1
            continue
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        if marker in _JPEG_SOF and i + 9 <= len(raw):
            height, width = struct.unpack(">HH", raw[i + 5 : i + 9])
            return height, width
        i += 2 + struct.unpack(">H", raw[i + 2 : i + 4])[0]
    raise InputError(f"{path}: not a valid JPEG (no frame header before the image data); the file may be truncated or corrupt")


def _check_bmp_header(raw: bytes, path: Path) -> None:
    """Refuse a BMP whose header claims an absurd size before the decoder allocates it."""
    _check_pixel_count(*_bmp_size(raw, path), path)


def _bmp_size(raw: bytes, path: Path) -> tuple[int, int]:
    """(height, width) from a BMP's header."""
    if len(raw) < 26 or raw[:2] != b"BM":
        raise InputError(f"{path}: not a valid BMP (bad signature or header); the file may be corrupt or misnamed")
    if struct.unpack("<I", raw[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sides
        width, height = struct.unpack("<HH", raw[18:22])
    else:
        width, height = struct.unpack("<ii", raw[18:26])  # height < 0: rows stored top-down
    return abs(height), abs(width)


def _check_pixel_count(height: int, width: int, path: Path) -> None:
    if height * width > MAX_PIXELS:
        raise InputError(
            f"{path}: header claims {width}×{height} pixels, more than ficli's limit of {MAX_PIXELS:,}; "
            "crop the image into pieces first"
        )


def check_pixel_limit(path: Path | str, height: int, width: int, what: str, advice: str) -> None:
    """InputError naming the file when `what` (e.g. "--upscale 8 would make this 100×100 image")
    gives a height × width frame over MAX_PIXELS: checked before anything that size is allocated."""
    if height * width > MAX_PIXELS:
        raise InputError(f"{path}: {what} {width}×{height} pixels, more than ficli's limit of {MAX_PIXELS:,}; {advice}")


_HEADER_SIZE = {".png": _png_size, ".jpg": _jpeg_size, ".jpeg": _jpeg_size, ".bmp": _bmp_size}


def image_size(path: Path | str) -> tuple[int, int] | None:
    """(height, width) of an image's frames from its header alone, without decoding the pixels;
    None where the header does not say (a damaged file: `read_image` then says what is wrong)."""
    path = Path(path)
    suffix = path.suffix.lower()
    damage = _Damage()  # tifffile logs what it reads around; the read reports it
    logging.getLogger("tifffile").addHandler(damage)
    try:
        if suffix in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return series.shape[series.axes.index("Y")], series.shape[series.axes.index("X")]
        with open(path, "rb") as fh:
            raw = fh.read(1 << 20)  # a JPEG's frame header follows its EXIF block, at most 64 KiB each
        return _HEADER_SIZE[suffix](raw, path)
    except Exception:
        return None
    finally:
        logging.getLogger("tifffile").removeHandler(damage)


class _Damage(logging.Handler):
    """Collects what tifffile logs as errors: it reads around a broken tag or page chain (a
    truncated stack comes back with fewer frames) and only says so in its log."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _read_tiff(path: Path) -> Image:
    damage = _Damage()
    logger = logging.getLogger("tifffile")
    logger.addHandler(damage)
    try:
        image = _read_tiff_series(path)
    finally:
        logger.removeHandler(damage)
    if damage.messages:
        raise InputError(f"{path}: damaged TIFF structure ({damage.messages[0][:120]}); the file may be truncated or corrupt")
    return image


def _read_tiff_series(path: Path) -> Image:
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError(f"{path}: TIFF holds no image data; the file may be truncated or corrupt")
        if len(tif.series) > 1:  # reduced-resolution pages are levels of one series, not series
            shapes = ", ".join(str(s.shape) for s in tif.series[:4])
            raise InputError(
                f"{path}: TIFF holds {len(tif.series)} separate images of shapes {shapes}; ficli reads one "
                "image or stack per file: split it first, e.g. in Fiji"
            )
        series = tif.series[0]
        shape, axes = series.shape, series.axes
        if "Y" in axes and "X" in axes:
            _check_pixel_count(shape[axes.index("Y")], shape[axes.index("X")], path)
            _check_value_count(shape, axes, series.dtype, path)
        data = series.asarray()
        kwargs = _tiff_kwargs(tif, axes)
        ome_xml = tif.ome_metadata if tif.is_ome else None
    data, stack_axes, stack_shape = _squeeze_axes(data, axes, path)
    return Image(data, path, is_stack=bool(stack_axes), tiff_kwargs=kwargs, stack_axes=stack_axes, stack_shape=stack_shape,
                 ome_xml=ome_xml)


def _check_value_count(shape: tuple[int, ...], axes: str, dtype: np.dtype, path: Path) -> None:
    """Refuse a stack whose decoded size is past MAX_VALUES, from the header: a few MB of zlib can
    hold hundreds of frames that each pass the per-frame limit."""
    values = math.prod(shape)
    if values <= MAX_VALUES:
        return
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    samples = shape[axes.index("S")] if "S" in axes else 1
    frames = values // (height * width * samples)
    gib = values * np.dtype(dtype).itemsize / 2**30
    raise InputError(
        f"{path}: the stack decodes to {frames} frames of {width}×{height}" + (f"×{samples}" if samples > 1 else "")
        + f" = {values:,} values ({gib:.2f} GiB as {np.dtype(dtype)}), more than ficli's limit of {MAX_VALUES:,}; "
        "split the stack into smaller ones first (e.g. Fiji: Image > Stacks > Tools > Make Substack)"
    )


def _squeeze_axes(data: np.ndarray, axes: str, path: Path) -> tuple[np.ndarray, str, tuple[int, ...]]:
    """Reduce a TIFF series to (H, W[, C]), or to a stack of such frames (N, H, W[, C]) with the axes
    and sizes its frames run over (slowest first: "TZC", (2, 5, 3)); "" and () for one image."""
    if "S" in axes[:-1]:  # planar samples (RGB stored as three planes): channels go last
        data = np.ascontiguousarray(np.moveaxis(data, axes.index("S"), -1))
        axes = axes.replace("S", "") + "S"
    keep = [i for i, (n, a) in enumerate(zip(data.shape, axes)) if n > 1 or a in "YX"]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    channels_last = axes.endswith("S") and data.shape[-1] in (3, 4)
    if axes.endswith("S") and not channels_last:
        raise InputError(f"{path}: {data.shape[-1]} samples per pixel; ficli handles gray, RGB and RGBA")
    leading = data.ndim - (3 if channels_last else 2)
    if leading == 0:
        return data, "", ()
    stack_shape = data.shape[:leading]
    return data.reshape((-1,) + data.shape[leading:]), axes[:leading], stack_shape


def _tiff_kwargs(tif: tifffile.TiffFile, axes: str) -> dict:
    """Metadata worth carrying to an output TIFF: pixel size, planar layout and the ImageJ calibration."""
    page = tif.pages.first
    kwargs: dict = {}
    tags = page.tags
    if "XResolution" in tags and "YResolution" in tags:
        kwargs["resolution"] = (tags["XResolution"].value, tags["YResolution"].value)
        if "ResolutionUnit" in tags:
            kwargs["resolutionunit"] = tags["ResolutionUnit"].value
    if page.samplesperpixel > 1 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
        kwargs["planarconfig"] = "separate"
    if tif.is_imagej and tif.imagej_metadata:
        # Display ranges are left out: the intensities change. Channel colours and the composite
        # display matter only with a C axis (tifffile reads "grayscale" into every file).
        names = ("spacing", "unit", "finterval") + (("mode", "LUTs") if "C" in axes else ())
        keep = {k: v for k, v in tif.imagej_metadata.items() if k in names}
        kwargs["imagej"] = True
        kwargs["metadata"] = keep
    return kwargs


def _check_shape(image: Image, path: Path) -> None:
    frame = image.data[0] if image.is_stack else image.data
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise InputError(f"{path}: unexpected image shape {image.data.shape}; ficli handles gray, RGB and RGBA")
    if min(frame.shape[:2]) < 1:
        raise InputError(f"{path}: image has no pixels (shape {image.data.shape})")
    if frame.ndim == 3 and frame.shape[2] == 1:
        image.data = image.data[..., 0]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


# --------------------------------------------------------------------------------------------- writing


# An output path of "-" means standard output (a file named "-" can still be given by its full path).
STDOUT = "-"


def is_stdout(path: Path | str) -> bool:
    """True when the output `path` is "-", standard output."""
    return str(path) == STDOUT


def writes_through(path: Path | str) -> bool:
    """True for an output that is written into as it is, not replaced: "-" (standard output) or an
    existing path that is neither a regular file nor a folder (a FIFO, a character device such as
    /dev/null or /dev/stdout), also through a symlink."""
    if is_stdout(path):
        return True
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_target(path: Path | str) -> Path:
    """The file that writing `path` replaces: `path` itself, or the file a symlink points to (also
    a link to a link, or to a file not there yet), so that the link stays a link."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def printable(text: str | Path) -> str:
    """`text` as valid Unicode: bytes of a file name that are not UTF-8 (Python holds them as
    surrogate escapes, e.g. the Latin-1 name b'caf\\xe9.png') become the text \\xNN (caf\\xe9.png),
    which JSON, plot labels and strict terminals can hold."""
    return os.fsencode(str(text)).decode("utf-8", "backslashreplace")


@contextlib.contextmanager
def atomic_write(path: Path | str) -> Iterator[Path]:
    """Yield a hidden temporary path beside `path`; when the block ends, put it in place by a rename.

    The one way ficli writes files: an interrupted or failed write (a full disk, Ctrl-C) leaves no
    half-written file and no temporary behind, and an existing file is replaced only by a complete
    one. OSErrors become OutputError naming the file.

    A symlink stays a link: the file it points to is replaced (`write_target`). "-" (standard
    output), a FIFO or a device is not replaced but written into, once the temporary (in the
    system's temporary folder) is complete (`writes_through`).
    """
    if writes_through(path):
        with _written_through(path) as tmp:
            yield tmp
        return
    path = write_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write here ({_short(exc)}); check the folder and its permissions") from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = "the disk is full" if exc.errno == errno.ENOSPC else _short(exc)
            raise OutputError(f"{path}: write failed ({reason}); nothing was written") from None
        raise


@contextlib.contextmanager
def _written_through(path: Path | str) -> Iterator[Path]:
    """`atomic_write` for standard output, FIFOs and devices: the bytes go in only when complete."""
    fd, name = tempfile.mkstemp(prefix=".ficli-out.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as src:
            if is_stdout(path):
                sys.stdout.flush()
                shutil.copyfileobj(src, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                with open(path, "wb") as dst:  # a FIFO: waits here for its reader
                    shutil.copyfileobj(src, dst)
    except OSError as exc:
        where = "standard output" if is_stdout(path) else str(path)
        reason = "its reader closed it" if isinstance(exc, BrokenPipeError) else _short(exc)
        raise OutputError(f"{where}: write failed ({reason})") from None
    finally:
        tmp.unlink(missing_ok=True)


# Temporary names (mkstemp adds 8 random characters): `.NAME.xxxxxxxx.part` (atomic_write) or
# `.STEM.xxxxxxxx.part.EXT` (video, whose ffmpeg muxer needs EXT).
_PART_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.part(?P<ext>\.[A-Za-z0-9]+)?")


def remove_stale_parts(targets) -> int:
    """Delete temporaries that a killed write of one of `targets` left behind; returns how many.

    `atomic_write` removes its temporary on every error and on Ctrl-C, but not when the process is
    killed outright (SIGKILL, power loss). A rerun calls this for the files it is about to write:
    only hidden `.NAME.xxxxxxxx.part` files of those names are touched, so other runs' temporaries
    and other hidden files stay.
    """
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        if writes_through(target):  # its temporaries live in the system's temporary folder
            continue
        target = write_target(target)
        by_folder.setdefault(target.parent, set()).add(target.name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no folder yet: nothing left behind
            continue
        for entry in entries:
            match = _PART_NAME.fullmatch(entry.name)
            if match and match["target"] + (match["ext"] or "") in names and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def check_writable(folder: Path | str) -> None:
    """Raise OutputError unless files can be created in `folder` (or, if it does not exist yet, in
    the nearest folder above it, where it would be made). Creates nothing that stays."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder; choose a folder")
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        fd, name = tempfile.mkstemp(prefix=".ficli-probe.", suffix=".part", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write here ({_short(exc)}); check the folder and its permissions") from None


def write_text(path: Path | str, text: str) -> None:
    """Write a text file (UTF-8) atomically ("-": standard output).

    File names in `text` that are not UTF-8 (surrogate escapes) are written as their own bytes,
    as `ls` prints them, so that a CSV names the very file; `printable` gives valid UTF-8 instead.
    """
    with atomic_write(path) as tmp:
        tmp.write_bytes(text.encode("utf-8", "surrogateescape"))


def check_output_file(path: Path | str, option: str, *, overwrite: bool | None = None, inputs=()) -> None:
    """Refuse, before any work, an output file that cannot or must not be written: a folder, one of
    `inputs` (also through a link), an existing file when `overwrite` is False (None: not checked),
    or a file in a folder that cannot be written. "-", FIFOs and devices are written into and pass.
    """
    if writes_through(path):
        return
    path = Path(path)
    target = write_target(path)
    if target.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name")
    resolved = target.resolve()
    if any(resolved == Path(p).resolve() for p in inputs):
        raise OutputError(f"{option} {path}: is one of the input images; choose another file name")
    if overwrite is False and target.exists():
        raise OutputError(f"{option} {path}: exists; add --overwrite to replace it, or choose another file name")
    check_writable(target.parent)


def write_image(path: Path | str, data: np.ndarray, *, like: Image | None = None, is_stack: bool | None = None) -> None:
    """Write `data` atomically (see `atomic_write`) in the format its suffix names.

    A TIFF gets `like`'s axes, planar layout and metadata (pixel size, ImageJ calibration, OME-XML),
    with the pixel size following a change of size (see `_write_tiff`); a stack must be a TIFF.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise OutputError(f"{path}: cannot write this file type (use {', '.join(IMAGE_SUFFIXES)})")
    if like is not None and path.resolve() == like.path.resolve():
        raise OutputError(f"{path}: refusing to overwrite the input image; choose another --out")
    stack = like.is_stack if is_stack is None and like is not None else bool(is_stack)
    if stack and suffix not in TIFF_SUFFIXES:
        raise OutputError(f"{path}: a stack can only be written as TIFF")
    with atomic_write(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            _write_tiff(tmp, data, like, stack)
        else:
            tmp.write_bytes(_encode_raster(data, suffix, path))


def _write_tiff(tmp: Path, data: np.ndarray, like: Image | None, stack: bool) -> None:
    """`data` (a frame or a stack of N frames) as a TIFF laid out and described like `like`.

    The stack's axes are `like`'s (a T stack stays T, a TZCYX hyperstack is folded back), planar RGB
    stays planar, and an OME-TIFF keeps its OME-XML. When `data` has another height and width than
    `like` (enhance --upscale), the pixel size follows: resolution tags (pixels per unit) × the factor,
    OME PhysicalSizeX/Y ÷ the factor; ImageJ's Z spacing and frame interval stay.
    """
    kwargs = dict(like.tiff_kwargs) if like is not None else {}
    frames = data.shape[0] if stack else 1
    if like is not None and like.stack_axes and math.prod(like.stack_shape) == frames and stack:
        lead_axes, lead_shape = like.stack_axes, like.stack_shape
    else:
        lead_axes, lead_shape = ("Z", (frames,)) if stack else ("", ())
    rgb = data.ndim - int(stack) == 3
    zoom_y, zoom_x = _zoom(like, data, stack)
    if "resolution" in kwargs and (zoom_x, zoom_y) != (1.0, 1.0):
        (xn, xd), (yn, yd) = kwargs["resolution"]
        kwargs["resolution"] = (xn / xd * zoom_x, yn / yd * zoom_y)
    imagej = kwargs.get("imagej") and data.dtype in (np.uint8, np.uint16, np.float32)
    if imagej and lead_axes == "I":  # tifffile's name for ImageJ images without a hyperstack order
        lead_axes = "Z"
    if imagej and "".join(a for a in "TZCYXS" if a in lead_axes) != lead_axes:  # ImageJ takes TZC order only
        imagej = False
    if not imagej:
        kwargs.pop("imagej", None), kwargs.pop("metadata", None)
    planar = rgb and not imagej and kwargs.pop("planarconfig", None) == "separate"
    kwargs.pop("planarconfig", None)
    pixels = data.reshape(lead_shape + data.shape[int(stack):])
    if planar:
        pixels = np.moveaxis(pixels, -1, -3)
    photometric = "rgb" if rgb else "minisblack"
    ome = _ome_for_output(like.ome_xml, data.shape[int(stack):][:2], (zoom_y, zoom_x), frames, planar) if like and like.ome_xml else None
    if ome is not None:
        kwargs.pop("imagej", None), kwargs.pop("metadata", None)
        tifffile.imwrite(tmp, pixels, photometric=photometric, planarconfig="separate" if planar else None,
                         description=ome, metadata=None, **kwargs)
        return
    # The axes, written down: tifffile would otherwise guess them, and reads a stack of one-pixel-wide
    # frames back as one image.
    axes = lead_axes + ("SYX" if planar else "YX" + ("S" if rgb else ""))
    kwargs["metadata"] = {**kwargs.get("metadata", {}), "axes": axes}
    tifffile.imwrite(tmp, pixels, photometric=photometric, planarconfig="separate" if planar else None, **kwargs)


def _zoom(like: Image | None, data: np.ndarray, stack: bool) -> tuple[float, float]:
    """(height, width) of `data`'s frames over those of `like`'s: 4.0, 4.0 after --upscale 4."""
    if like is None:
        return 1.0, 1.0
    (h0, w0), (h1, w1) = like.data.shape[int(like.is_stack):][:2], data.shape[int(stack):][:2]
    return h1 / h0, w1 / w0


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ome_for_output(xml: str, size: tuple[int, int], zoom: tuple[float, float], planes: int, planar: bool) -> bytes | None:
    """An input's OME-XML for the pixels written: SizeY/SizeX are `size`, PhysicalSizeY/X are divided
    by `zoom`, one TiffData covers the `planes` pages in file order, the document gets a new UUID;
    the rest (channels, planes, instrument, annotations) stays. None when it describes anything but
    one image or cannot be parsed (the output is then a plain TIFF)."""
    try:
        for _, (prefix, uri) in ET.iterparse(StringIO(xml), events=("start-ns",)):
            with contextlib.suppress(ValueError):  # prefixes ElementTree reserves for itself
                ET.register_namespace(prefix, uri)  # serialised with the input's own prefixes
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    found = [el for el in root.iter() if _local(el.tag) == "Pixels"]
    if len(found) != 1:
        return None
    pixels = found[0]
    children = list(pixels)
    tiffdata = [i for i, el in enumerate(children) if _local(el.tag) == "TiffData"]
    if not tiffdata:  # pixels in BinData or nowhere: nothing this file could refer to
        return None
    pixels.set("SizeY", str(size[0]))
    pixels.set("SizeX", str(size[1]))
    for axis, factor in zip("YX", zoom):
        value = pixels.get(f"PhysicalSize{axis}")
        if value is not None and factor != 1.0:
            with contextlib.suppress(ValueError):
                pixels.set(f"PhysicalSize{axis}", repr(float(value) / factor))
    if "BigEndian" in pixels.attrib:
        pixels.set("BigEndian", "false")  # tifffile writes little-endian
    if "Interleaved" in pixels.attrib:
        pixels.set("Interleaved", "false" if planar else "true")
    namespace = pixels.tag[: -len("Pixels")]
    for i in reversed(tiffdata):
        pixels.remove(children[i])
    pixels.insert(tiffdata[0], ET.Element(namespace + "TiffData", {"IFD": "0", "PlaneCount": str(planes)}))
    if "UUID" in root.attrib:
        root.set("UUID", f"urn:uuid:{uuid.uuid4()}")
    return ('<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")).encode()


def _encode_raster(data: np.ndarray, suffix: str, path: Path) -> bytes:
    if suffix in (".jpg", ".jpeg", ".bmp") and data.dtype != np.uint8:
        raise OutputError(f"{path}: {suffix[1:].upper()} holds 8-bit data only, not {data.dtype}; write .png or .tif")
    if suffix == ".png" and data.dtype not in (np.uint8, np.uint16):
        raise OutputError(f"{path}: PNG holds 8- or 16-bit data only, not {data.dtype}; write .tif")
    if data.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if data.shape[2] == 4 else cv2.COLOR_RGB2BGR
        data = cv2.cvtColor(data, code)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, data, params)
    if not ok:
        raise OutputError(f"{path}: the image could not be encoded as {suffix[1:].upper()}")
    return buf.tobytes()


# ------------------------------------------------------------------------------------ finding inputs


def collect_inputs(inputs: list[str | Path], *, recursive: bool = False, stdin=None) -> list[InputFile]:
    """Expand files, folders, glob patterns and lists of them into image files, each with its path to mirror.

    A file keeps its name; a folder's images keep their path inside the folder; a glob's matches keep
    their path below the pattern's fixed prefix. Where two inputs would still share a name (x.png
    from folders A and B), every input's folder is mirrored too, from the folder they have in
    common: A/x.png and B/x.png. `-` reads paths from `stdin` (default: standard input) and `@FILE`
    from FILE (see `expand_lists`). Non-image files inside folders are passed over (folders often
    hold notes and metadata); a named file that is not an image is an error. Hidden files (ficli's
    own unfinished writes among them) are ignored.
    """
    found: dict[Path, InputFile] = {}
    for text in expand_lists(inputs, stdin):
        path = Path(text)
        if glob.has_magic(text) and not path.exists():
            base = _glob_base(text)
            matches = sorted(Path(p) for p in glob.glob(text, recursive=recursive))
            images = [p for p in matches if p.is_file() and _is_image_name(p)]
            if not images:
                raise InputError(f"{text}: the pattern matches no image files")
            for p in images:
                below = p.is_relative_to(base)
                found.setdefault(p.resolve(), InputFile(p, p.relative_to(base) if below else Path(p.name), base if below else p.parent))
        elif path.is_dir():
            images = list(_walk_images(path, recursive))
            if not images:
                hint = "" if recursive else " (add --recursive to look in subfolders)"
                raise InputError(f"{path}: no images found ({', '.join(IMAGE_SUFFIXES)}){hint}")
            for p in images:
                found.setdefault(p.resolve(), InputFile(p, p.relative_to(path), path))
        elif path.is_file():
            if not _is_image_name(path):
                raise InputError(f"{path}: not a supported image type (use {', '.join(IMAGE_SUFFIXES)})")
            found.setdefault(path.resolve(), InputFile(path, Path(path.name), path.parent))
        else:
            raise InputError(f"{path}: no such file or folder")
    return _mirror_clashes(list(found.values()))


def _mirror_clashes(items: list[InputFile]) -> list[InputFile]:
    """Where two inputs share a relative path (ignoring case, which some disks ignore), prefix every
    input's path with its folder's path below the folder all the inputs' folders have in common."""
    names = Counter(item.rel.as_posix().casefold() for item in items)
    if all(count == 1 for count in names.values()):
        return items
    roots = [Path(os.path.abspath(item.root)) for item in items]
    common = Path(os.path.commonpath(roots))
    return [replace(item, rel=root.relative_to(common) / item.rel) for item, root in zip(items, roots)]


def expand_lists(inputs: list[str | Path], stdin=None) -> list[str]:
    """The inputs with `-` replaced by the paths read from `stdin` (default: standard input) and
    `@FILE` by the paths in FILE: one a line, surrounding spaces dropped, blank lines and lines
    starting with # skipped, relative paths taken from the current folder, as on the command line.
    Listed paths that do not exist are refused together, each with its line number. (A file whose
    name starts with @ is given as ./@name.)"""
    expanded: list[str] = []
    for item in inputs:
        text = str(item)
        if text == "-" or (text.startswith("@") and len(text) > 1):
            expanded += _read_list(text, stdin)
        else:
            expanded.append(text)
    return expanded


def _read_list(text: str, stdin) -> list[str]:
    if text == "-":
        source, name = (sys.stdin if stdin is None else stdin), "standard input (-)"
        raw = source.buffer.read() if hasattr(source, "buffer") else source.read()
    else:
        path, name = Path(text[1:]), text[1:]
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: no such file (the list of inputs given as {text})") from None
        except OSError as exc:
            raise InputError(f"{path}: the list of inputs given as {text} cannot be read ({_short(exc)})") from None
    if isinstance(raw, bytes):  # names in the file system's encoding, undecodable bytes kept
        raw = raw.decode(sys.getfilesystemencoding(), "surrogateescape")
    entries, missing = [], []
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entries.append(line)
        if not os.path.lexists(line) and not glob.has_magic(line):
            missing.append(f"{line} (line {number})")
    if missing:
        shown = ", ".join(missing[:10]) + (f", … and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise InputError(f"{name}: {len(missing)} listed path(s) do not exist: {shown}")
    if not entries:
        raise InputError(f"{name}: lists no paths (blank lines and # comments are skipped)")
    return entries


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]]
    return Path(*fixed) if fixed else Path(".")


def _walk_images(root: Path, recursive: bool):
    """Images under `root` in a stable order; followed folder links are visited once (no loops)."""
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            p = Path(folder, name)
            if _is_image_name(p) and p.is_file():
                yield p


def output_path(item: InputFile, out_dir: Path, suffix: str | None = None, name_suffix: str = "") -> Path:
    """Where the result for `item` goes: its relative path mirrored under `out_dir`, with the file
    extension `suffix` if given and `name_suffix` added before the extension (x.png -> x_sr.png)."""
    rel = item.rel.with_suffix(suffix) if suffix else item.rel
    if name_suffix:
        stem, extension = split_extension(rel.name)
        rel = rel.with_name(stem + name_suffix + extension)
    return Path(out_dir) / rel


def split_extension(name: str) -> tuple[str, str]:
    """("cells", ".ome.tif") for cells.ome.tif, ("x", ".png") for x.png: OME-TIFF's double extension kept."""
    lower = name.lower()
    for double in (".ome.tif", ".ome.tiff"):
        if lower.endswith(double) and len(name) > len(double):
            return name[: -len(double)], name[-len(double):]
    extension = Path(name).suffix
    return name[: len(name) - len(extension)], extension


def check_name_suffix(text: str) -> None:
    """ConfigError for a --suffix that is not part of a file name (it holds a folder separator or NUL)."""
    if any(c in text for c in ("/", "\\", "\0", os.sep)):
        raise ConfigError(
            f"--suffix {text!r}: holds a folder separator (/ or \\) or NUL; it is added to each output "
            "name before its extension (x.png -> x_sr.png with --suffix _sr), so give text only"
        )


def refuse_existing(paths, *, overwrite: bool = False, skip_existing: bool = False, skippable: bool = True) -> None:
    """One rule for every command that writes files: OutputError naming an existing output unless
    --overwrite (replace it) or --skip-existing (leave it; `skippable`: the command has it) was given.
    Called before any work is done."""
    if overwrite or skip_existing:
        return
    paths = [Path(p) for p in paths]
    existing = [p for p in paths if os.path.lexists(p)]
    if not existing:
        return
    one = len(existing) == 1
    how = f"use --overwrite to replace {'it' if one else 'them'}"
    if skippable:
        how += f", --skip-existing to leave {'it' if one else 'them'} and do the rest,"
    how += " or choose another output; nothing was done"
    if len(paths) == 1:
        raise OutputError(f"{existing[0]}: exists already; {how}")
    count = f"all {len(paths)}" if len(existing) == len(paths) else f"{len(existing)} of the {len(paths)}"
    raise OutputError(f"{count} outputs exist already (e.g. {existing[0]}); {how}")


def check_input_file(path: Path | str) -> None:
    """InputError naming `path` unless it is a file this process can open (a video, a model...)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:  # a decoder's own message for an unreadable file is vague; say it plainly first
        with open(path, "rb"):
            pass
    except PermissionError:
        raise InputError(f"{path}: permission denied; check the file's read permission") from None


def check_output_dir(out_dir: Path, inputs: list[InputFile], *, recursive: bool) -> None:
    """Refuse an output folder whose results could overwrite or be mistaken for inputs, or that
    cannot be written (before any work is done)."""
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder; choose a folder for --out")
    for item in inputs:
        src_root = item.source_root
        if out == src_root:
            raise OutputError(f"{out_dir}: is the input folder; results would overwrite the inputs — choose another --out")
        if recursive and out.is_relative_to(src_root):
            raise OutputError(
                f"{out_dir}: lies inside the input folder {src_root} searched with --recursive; "
                "a rerun would read the results as inputs — choose a folder outside it"
            )
    check_writable(out_dir)
