"""Reading and writing images, and mapping their intensities to [0, 1] and back.

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

TIFF's own reading and writing is `ficli.image.tiff`'s; this module owns the limits on what is decoded
(`MAX_PIXELS`, `MAX_VALUES`) and checks them from the header, before decoding.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ficli.image import png, provenance, tiff
from ficli.errors import InputError, OutputError
# The names callers have always taken from io: writing files (`ficli.image.files`) and finding inputs and
# naming outputs (`ficli.image.paths`) live in their own modules and are re-exported here.
from ficli.image.files import (STDOUT, UMASK, atomic_write, check_writable, first_line, is_stdout, part_suffix,  # noqa: F401
                         printable, remove_stale_parts, write_target, write_text, writes_through)
from ficli.image.guard import (Protected, catch_signals, check_distinct_outputs, check_output_file, exit_code, file_key,  # noqa: F401
                         lock_output, release_locks, same_file, signal_name)
from ficli.image.paths import (IMAGE_SUFFIXES, SHIPPED_MODELS, InputFile, check_input_file, check_model_file,  # noqa: F401
                         check_name_suffix, check_output_dir, collect_inputs, expand_lists, output_path, refuse_existing, skipped_subfolders, special_kind,
                         split_extension)

TIFF_SUFFIXES = (".tif", ".tiff")
COMPRESSION_CHOICES = tiff.COMPRESSION_CHOICES  # --compression of enhance and degrade
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.uint32, np.float32, np.float64)
# Refuse images whose header claims more pixels than this before decoding them (decompression bombs).
MAX_PIXELS = 20_000 * 20_000
# And TIFF stacks whose frames × height × width × samples add up to more than this: the values of the
# largest single image accepted (20,000² RGBA), 3 GiB as 16-bit, before the float32 working copies.
MAX_VALUES = 4 * MAX_PIXELS


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
    png_chunks: list = field(default_factory=list)  # a PNG's pixel size, colour and text chunks, written back
    gray_alpha: bool = False  # a gray+alpha PNG (read as RGBA with R = G = B), written back as gray+alpha

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


def read_checked(path: Path | str, check_size: Callable[[int, int], None], advice: str) -> Image:
    """`read_image` for a command that makes something of the frames of `path`: `check_size(height,
    width)` (raising to refuse them) from the header before reading where the header says, again on
    the frames read, then `check_finite` with `advice`."""
    size = image_size(path)
    if size is not None:
        check_size(*size)
    image = read_image(path)
    check_size(*image.frames[0].shape[:2])
    check_finite(image, advice)
    return image


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
    if not path.is_file():  # opening a FIFO would wait for a writer; its size says 0 bytes
        raise InputError(f"{path}: is {special_kind(path)}, not an image file; ficli reads regular files: copy the data into one")
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
        raise InputError(f"{path}: cannot be read as an image ({first_line(exc)}); the file may be truncated or corrupt") from None
    check_dtype(image.data.dtype, path)
    check_float32_range(image.data, path)
    _check_shape(image, path)
    return image


def check_float32_range(data: np.ndarray, path: Path | str) -> None:
    """Refuse float64 data that float32, ficli's working type, cannot hold: finite values past
    ±3.4e38 would become infinite, nonzero ones under 1.2e-38 (float32's smallest normal number) zero
    or a few bits. NaN and infinities are left to `check_finite`, which names them."""
    if data.dtype != np.float64:
        return
    info = np.finfo(np.float32)
    flat = data.reshape(-1)
    for start in range(0, flat.size, 1 << 22):  # bounded temporaries on 400-megapixel images
        mag = np.abs(flat[start:start + (1 << 22)])
        huge = mag[(mag > info.max) & np.isfinite(mag)]
        if huge.size:
            raise InputError(
                f"{path}: holds values as large as {huge.max():.3g}, beyond what float32 (ficli's working precision) holds "
                f"(±{info.max:.3g}); they would become infinite. Rescale the image first (e.g. Fiji: Process > Math > Multiply)"
            )
        tiny = mag[(mag < info.tiny) & (mag > 0)]
        if tiny.size:
            raise InputError(
                f"{path}: holds nonzero values as small as {tiny.min():.3g}, below what float32 (ficli's working precision) "
                f"holds ({info.tiny:.3g}); they would become zero. Rescale the image first (e.g. Fiji: Process > Math > Multiply)"
            )


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
    if suffix == ".png":
        return Image(data, path, png_chunks=png.kept_chunks(raw), gray_alpha=png.is_gray_alpha(raw) and data.ndim == 3)
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
    """Refuse a PNG whose header claims an absurd size before the decoder allocates it, and an
    animated PNG (whose decoder would give its first frame alone)."""
    _check_pixel_count(*_png_size(raw, path), path)
    frames = _apng_frames(raw)
    if frames > 1:
        raise InputError(
            f"{path}: is an animated PNG of {frames} frames; ficli reads one image per PNG and would take the first "
            "frame alone: split it into frames (e.g. `ffmpeg -i NAME.png NAME_%03d.png`) or save it as a TIFF stack"
        )


def _apng_frames(raw: bytes) -> int:
    """The frame count of an animated PNG's acTL chunk (before its image data), else 1."""
    at = 8
    while at + 8 <= len(raw):
        length, kind = struct.unpack(">I4s", raw[at : at + 8])
        if kind == b"acTL" and length >= 4 and at + 12 <= len(raw):
            return struct.unpack(">I", raw[at + 8 : at + 12])[0]
        if kind in (b"IDAT", b"IEND"):
            break
        at += 12 + length
    return 1


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


def evenly_spread(items: list, count: int) -> list:
    """At most `count` of `items`, evenly spread from the first to the last, in order, none twice
    (what an estimate reads from a long video or a large store)."""
    if not items:
        return []
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, min(len(items), count)).round().astype(int))]


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
    try:
        if suffix in TIFF_SUFFIXES:
            return tiff.frame_size(path)
        with open(path, "rb") as fh:
            raw = fh.read(1 << 20)  # a JPEG's frame header follows its EXIF block, at most 64 KiB each
        return _HEADER_SIZE[suffix](raw, path)
    except Exception:
        return None


def _read_tiff(path: Path) -> Image:
    def check_size(shape: tuple[int, ...], axes: str, dtype: np.dtype) -> None:
        _check_pixel_count(shape[axes.index("Y")], shape[axes.index("X")], path)
        _check_value_count(shape, axes, dtype, path)

    return Image(path=path, **tiff.read_tiff(path, check_size))


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


def _check_shape(image: Image, path: Path) -> None:
    frame = image.data[0] if image.is_stack else image.data
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise InputError(f"{path}: unexpected image shape {image.data.shape}; ficli handles gray, RGB and RGBA")
    if min(frame.shape[:2]) < 1:
        raise InputError(f"{path}: image has no pixels (shape {image.data.shape})")
    if frame.ndim == 3 and frame.shape[2] == 1:
        image.data = image.data[..., 0]


# --------------------------------------------------------------------------------------------- writing


def write_image(path: Path | str, data: np.ndarray, *, like: Image | None = None, is_stack: bool | None = None,
                record: dict | None = None, compression: str = "keep") -> list[str]:
    """Write `data` atomically (see `atomic_write`) in the format its suffix names; returns notes for
    the user (what of `like` could not be kept).

    A TIFF gets `like`'s axes, planar layout and metadata (pixel size, ImageJ calibration, OME-XML,
    free-text description, date), with the pixel size following a change of size (see
    `tiff.write_tiff`), and `compression` ("keep": `like`'s); a stack must be a TIFF. A PNG keeps
    `like`'s pixel size (pHYs, scaled likewise), colour and text chunks, and gray+alpha stays gray+alpha.
    `record` (`provenance`) is written into the file.
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
    notes: list[str] = []
    with atomic_write(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            notes = tiff.write_tiff(tmp, data, like, stack, record=record, record_key=provenance.KEY, compression=compression,
                                    software=provenance.software())
        else:
            tmp.write_bytes(_encode_raster(data, suffix, path, like, record))
    return notes


def _encode_raster(data: np.ndarray, suffix: str, path: Path, like: Image | None = None, record: dict | None = None) -> bytes:
    if suffix in (".jpg", ".jpeg", ".bmp") and data.dtype != np.uint8:
        raise OutputError(f"{path}: {suffix[1:].upper()} holds 8-bit data only, not {data.dtype}; write .png or .tif")
    if suffix == ".png" and data.dtype not in (np.uint8, np.uint16):
        raise OutputError(f"{path}: PNG holds 8- or 16-bit data only, not {data.dtype}; write .tif")
    if suffix == ".png" and (like is not None or record is not None):
        return _encode_png(data, path, like, record)
    record = record if suffix in (".jpg", ".jpeg") else None
    if data.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if data.shape[2] == 4 else cv2.COLOR_RGB2BGR
        data = cv2.cvtColor(data, code)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, data, params)
    if not ok:
        raise OutputError(f"{path}: the image could not be encoded as {suffix[1:].upper()}")
    if record is not None and suffix in (".jpg", ".jpeg"):  # a COM segment (BMP has no place for it)
        return provenance.jpeg_with_comment(buf.tobytes(), provenance.to_text(record))
    return buf.tobytes()


def _encode_png(data: np.ndarray, path: Path, like: Image | None, record: dict | None) -> bytes:
    """A PNG of `data` with `like`'s chunks (`png.kept_chunks`; pHYs scaled with a change of size) and
    `record` as an iTXt chunk; gray+alpha when `like` was (the mean of R, G, B, equal as read)."""
    if like is not None and like.gray_alpha and data.ndim == 3 and data.shape[2] == 4:
        gray = np.rint(data[..., :3].astype(np.float32).mean(axis=-1)).astype(data.dtype)
        encoded = png.encode_gray_alpha(gray, data[..., 3])
    else:
        encoded = _encode_raster(data, ".png", path)
    extra = list(like.png_chunks) if like is not None else []
    if record is not None:
        extra.append(png.text_chunk(provenance.KEY, provenance.to_text(record)))
    zoom = (1.0, 1.0)
    if like is not None:
        (h0, w0), (h1, w1) = like.data.shape[int(like.is_stack):][:2], data.shape[:2]
        zoom = (h1 / h0, w1 / w0)
    return png.splice(encoded, extra, zoom)
