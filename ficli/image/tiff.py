"""TIFF files: one image or stack read with its axes and metadata, and written back laid out alike.

A TIFF's series is reduced to (H, W[, C]) or a stack of such frames; a hyperstack (T, Z and C
axes, e.g. TZCYX) is flattened to its planes in file order, with the axes and sizes to fold them
back (`read_tiff`). Written back (`write_tiff`), a stack keeps those axes, planar RGB stays planar,
the ImageJ calibration and an OME-TIFF's OME-XML are kept, and the pixel size follows a change of
size (enhance --upscale). `io` calls both and owns the size limits; this module knows no limits.
"""

from __future__ import annotations

import contextlib
import logging
import json
import math
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile

from ficli.errors import InputError


class TiffLayout(Protocol):
    """What `write_tiff` reads of the image whose layout it copies (an `io.Image`)."""

    data: np.ndarray
    is_stack: bool
    tiff_kwargs: dict
    stack_axes: str
    stack_shape: tuple[int, ...]
    ome_xml: str | None


class _Damage(logging.Handler):
    """Collects what tifffile logs as errors: it reads around a broken tag or page chain (a
    truncated stack comes back with fewer frames) and only says so in its log."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def read_tiff(path: Path, check_size: Callable[[tuple[int, ...], str, np.dtype], None]) -> dict:
    """The pixels and layout of a TIFF's one image or stack: the fields of an `io.Image` but its path
    (data, is_stack, tiff_kwargs, stack_axes, stack_shape, ome_xml).

    `check_size(shape, axes, dtype)` sees the series' header before anything is decoded (and
    raises to refuse it). InputError for a damaged file or one holding several images.
    """
    damage = _Damage()
    logger = logging.getLogger("tifffile")
    logger.addHandler(damage)
    try:
        fields = _read_tiff_series(path, check_size)
    finally:
        logger.removeHandler(damage)
    if damage.messages:
        raise InputError(f"{path}: damaged TIFF structure ({damage.messages[0][:120]}); the file may be truncated or corrupt")
    return fields


def frame_size(path: Path) -> tuple[int, int]:
    """(height, width) of a TIFF's frames from its header, without decoding the pixels."""
    damage = _Damage()  # tifffile logs what it reads around; `read_tiff` reports it
    logging.getLogger("tifffile").addHandler(damage)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return series.shape[series.axes.index("Y")], series.shape[series.axes.index("X")]
    finally:
        logging.getLogger("tifffile").removeHandler(damage)


def _read_tiff_series(path: Path, check_size: Callable[[tuple[int, ...], str, np.dtype], None]) -> dict:
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
            check_size(shape, axes, series.dtype)
        data = series.asarray()
        kwargs = _tiff_kwargs(tif, axes)
        ome_xml = tif.ome_metadata if tif.is_ome else None
    data, stack_axes, stack_shape = _squeeze_axes(data, axes, path)
    return dict(data=data, is_stack=bool(stack_axes), tiff_kwargs=kwargs, stack_axes=stack_axes, stack_shape=stack_shape,
                ome_xml=ome_xml)


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
        names = ("spacing", "unit", "finterval", "Info") + (("mode", "LUTs") if "C" in axes else ())
        keep = {k: v for k, v in tif.imagej_metadata.items() if k in names}
        kwargs["imagej"] = True
        kwargs["metadata"] = keep
    kwargs["compression"] = _COMPRESSION_NAMES.get(page.compression.name, page.compression.name.lower())
    if "DateTime" in tags and isinstance(tags["DateTime"].value, str) and _DATETIME.fullmatch(tags["DateTime"].value.strip()):
        kwargs["datetime"] = tags["DateTime"].value.strip()
    if "Software" in tags and isinstance(tags["Software"].value, str):
        kwargs["software"] = tags["Software"].value
    description = page.description
    shaped = description.lstrip().startswith(('{"shape"', "shape=("))  # tifffile's own description
    if description and not (tif.is_imagej or tif.is_ome or shaped) and description.isascii():
        kwargs["description"] = description  # free text, e.g. a microscope's settings
    return kwargs


# tifffile's names of the compression schemes, as `--compression` names them.
_COMPRESSION_NAMES = {"NONE": "none", "ADOBE_DEFLATE": "zlib", "DEFLATE": "zlib", "LZW": "lzw", "ZSTD": "zstd", "JPEG": "jpeg",
                      "PACKBITS": "packbits", "LZMA": "lzma"}
# Lossless schemes written again as they came (where tifffile and imagecodecs can); others become zlib.
_REWRITABLE = ("zlib", "lzw", "zstd", "packbits", "lzma")
COMPRESSION_CHOICES = ("keep", "none", "zlib", "lzw", "zstd")
_DATETIME = re.compile(r"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d")


def write_tiff(tmp: Path, data: np.ndarray, like: TiffLayout | None, stack: bool, *, record: dict | None = None,
               record_key: str = "", compression: str = "keep", software: str = "") -> list[str]:
    """`data` (a frame or a stack of N frames) as a TIFF laid out and described like `like`; returns
    notes for the user (a compression that could not be kept).

    The stack's axes are `like`'s (a T stack stays T, a TZCYX hyperstack is folded back), planar RGB
    stays planar, and an OME-TIFF keeps its OME-XML. When `data` has another height and width than
    `like` (enhance --upscale), the pixel size follows: resolution tags (pixels per unit) × the factor,
    OME PhysicalSizeX/Y ÷ the factor; ImageJ's Z spacing and frame interval stay. The input's free-text
    ImageDescription and DateTime are kept; Software names `software` (and the input's software).
    `record` (a dict) goes under `record_key` into the shaped JSON description of a plain TIFF, as a
    line `record_key: {json}` of an ImageJ file's Info, or as an OME CommentAnnotation of that
    namespace. `compression`: "keep" (`like`'s, see `_compression`), "none", "zlib", "lzw", "zstd".
    """
    kwargs = dict(like.tiff_kwargs) if like is not None else {}
    extra = {k: kwargs.pop(k) for k in ("compression", "datetime", "software", "description") if k in kwargs}
    notes: list[str] = []
    codec = _compression(compression, extra.get("compression"), notes)
    tags = {"software": _software(software, extra.get("software")), "datetime": extra.get("datetime")}
    text = json.dumps(record, ensure_ascii=True) if record is not None else None
    pixels, kwargs, ome = _layout(data, like, stack, kwargs, text, record_key)
    if ome is None and text is not None and kwargs.get("imagej"):
        info = "\n".join(line for line in str(kwargs["metadata"].get("Info", "")).splitlines() if not line.startswith(record_key + ":"))
        kwargs["metadata"]["Info"] = (info + "\n" if info else "") + f"{record_key}: {text}"
    elif ome is None and text is not None:
        kwargs["metadata"][record_key] = record
    if ome is None and "description" in extra and not kwargs.get("imagej"):
        kwargs["description"] = extra["description"]
    if ome is not None:
        kwargs.pop("imagej", None), kwargs.pop("metadata", None)
        kwargs.update(description=ome, metadata=None)
    try:
        tifffile.imwrite(tmp, pixels, compression=codec, **tags, **kwargs)
    except OSError:
        raise
    except Exception as exc:  # a codec this machine lacks (imagecodecs) or one that refuses this pixel type
        if codec in (None, "zlib"):
            raise
        notes.append(f"{codec.upper()} compression cannot be written here ({str(exc).strip()[:100]}); written with zlib")
        tifffile.imwrite(tmp, pixels, compression="zlib", **tags, **kwargs)
    return notes


def _compression(choice: str, found: str | None, notes: list[str]) -> str | None:
    """tifffile's `compression` for a `--compression` choice; "keep" takes the input's (`found`):
    the lossless schemes as they came, others (JPEG, which would blur the result again; schemes
    tifffile cannot write) as zlib, with a note."""
    if choice not in COMPRESSION_CHOICES:
        raise ValueError(f"unknown compression {choice!r}; use one of {', '.join(COMPRESSION_CHOICES)}")
    name = (found or "none") if choice == "keep" else choice
    if name == "none":
        return None
    if name not in _REWRITABLE and name not in COMPRESSION_CHOICES:
        why = "lossy; zlib loses nothing more" if name == "jpeg" else "not one ficli writes"
        notes.append(f"the input's {name.upper()} compression is {why}: written with zlib (choose with --compression)")
        return "zlib"
    return name


def _software(name: str, found: str | None) -> str:
    """The Software tag: ficli, then the input's software when it was another's ("ficli 0.1.0; input: X")."""
    name = name or "ficli"
    if found and found.isascii() and not found.startswith("ficli") and found != "tifffile.py":
        return f"{name}; input: {found.strip()[:200]}"
    return name


def _layout(data: np.ndarray, like: TiffLayout | None, stack: bool, kwargs: dict, record: str | None, key: str
            ) -> tuple[np.ndarray, dict, bytes | None]:
    """(the pixels as tifffile writes them, imwrite's keyword arguments, the OME-XML or None): the
    axes, planar layout, resolution and ImageJ/OME metadata of `like` for `data`."""
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
    kwargs.update(photometric="rgb" if rgb else "minisblack", planarconfig="separate" if planar else None)
    ome = None
    if like is not None and like.ome_xml:
        ome = _ome_for_output(like.ome_xml, data.shape[int(stack):][:2], (zoom_y, zoom_x), frames, planar, record, key)
    if ome is None:
        # The axes, written down: tifffile would otherwise guess them, and reads a stack of one-pixel-wide
        # frames back as one image.
        axes = lead_axes + ("SYX" if planar else "YX" + ("S" if rgb else ""))
        kwargs["metadata"] = {**kwargs.get("metadata", {}), "axes": axes}
    return pixels, kwargs, ome


def read_record_text(path: Path, key: str) -> str | None:
    """The text of a record written by `write_tiff(record_key=key)`, or None."""
    with tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            with contextlib.suppress(ET.ParseError):
                for el in ET.fromstring(tif.ome_metadata).iter():
                    if _local(el.tag) == "CommentAnnotation" and el.get("Namespace") == key:
                        value = [v for v in el if _local(v.tag) == "Value"]
                        return value[0].text if value else None
        if tif.is_imagej and tif.imagej_metadata:
            info = str(tif.imagej_metadata.get("Info", ""))
            return info if key in info else None
        for shaped in tif.shaped_metadata or ():
            if isinstance(shaped, dict) and isinstance(shaped.get(key), dict):
                return json.dumps(shaped[key])
    return None


def _zoom(like: TiffLayout | None, data: np.ndarray, stack: bool) -> tuple[float, float]:
    """(height, width) of `data`'s frames over those of `like`'s: 4.0, 4.0 after --upscale 4."""
    if like is None:
        return 1.0, 1.0
    (h0, w0), (h1, w1) = like.data.shape[int(like.is_stack):][:2], data.shape[int(stack):][:2]
    return h1 / h0, w1 / w0


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ome_for_output(xml: str, size: tuple[int, int], zoom: tuple[float, float], planes: int, planar: bool,
                    record: str | None = None, key: str = "") -> bytes | None:
    """An input's OME-XML for the pixels written: SizeY/SizeX are `size`, PhysicalSizeY/X are divided
    by `zoom`, one TiffData covers the `planes` pages in file order, the document gets a new UUID;
    the rest (channels, planes, instrument, annotations) stays. `record` becomes a CommentAnnotation of
    namespace `key` (replacing one of an earlier run). None when it describes anything but one image
    or cannot be parsed (the output is then a plain TIFF)."""
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
    if record is not None:
        _annotate(root, namespace, record, key)
    return ('<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")).encode()


def _annotate(root: ET.Element, namespace: str, text: str, key: str) -> None:
    """Put `text` into the OME document `root` as a CommentAnnotation of namespace `key`, in its
    StructuredAnnotations (made where missing, before any ROI, as the schema orders them)."""
    found = [el for el in root if _local(el.tag) == "StructuredAnnotations"]
    if found:
        annotations = found[0]
    else:
        annotations = ET.Element(namespace + "StructuredAnnotations")
        rois = [i for i, el in enumerate(root) if _local(el.tag) == "ROI"]
        root.insert(rois[0] if rois else len(root), annotations)
    for el in list(annotations):
        if _local(el.tag) == "CommentAnnotation" and el.get("Namespace") == key:
            annotations.remove(el)
    comment = ET.SubElement(annotations, namespace + "CommentAnnotation", {"ID": f"Annotation:{key}", "Namespace": key})
    ET.SubElement(comment, namespace + "Value").text = text
