"""Hostile input files for the reliability tests (docs/RELIABILITY.md): each maker writes one file.

`BAD_FILES` maps a file name to (maker, words the error message must contain). Every one of them
must be refused by `io.read_image` with an InputError naming the file, and by each command as that
command's contract says. Images are tiny (16×16) so that the tests stay fast.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import tifffile

SIDE = 16


def good_gray(seed: int = 0) -> np.ndarray:
    """A 16×16 8-bit ramp with a little texture: scores and degrades to something non-trivial."""
    y, x = np.mgrid[:SIDE, :SIDE]
    return ((x * 13 + y * 7 + seed * 31) % 251).astype(np.uint8)


def encoded(suffix: str, data: np.ndarray | None = None) -> bytes:
    ok, buf = cv2.imencode(suffix, good_gray() if data is None else data)
    assert ok
    return buf.tobytes()


def tiff_bytes(data: np.ndarray, **kwargs) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    tifffile.imwrite(buf, data, **kwargs)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and a valid IHDR chunk claiming width × height, and nothing else."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian TIFF whose one IFD claims width × height 8-bit pixels in a 16-byte strip."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, 16)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHII", tag, kind, 1, value) if kind == 4 else struct.pack("<HHIHH", tag, kind, 1, value, 0)
    return b"II*\x00" + struct.pack("<I", 24) + bytes(16) + ifd + struct.pack("<I", 0)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A complete 8×8 JPEG whose frame header (SOF0) is patched to claim width × height."""
    raw = bytearray(encoded(".jpg", np.zeros((8, 8), np.uint8)))
    i = 2
    while raw[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", raw[i + 2 : i + 4])[0]
    raw[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def bmp_claiming(width: int, height: int) -> bytes:
    raw = bytearray(encoded(".bmp", np.zeros((8, 8, 3), np.uint8)))
    raw[18:26] = struct.pack("<ii", width, height)
    return bytes(raw)


def exif_app1(orientation: int, byteorder: str = ">") -> bytes:
    """An EXIF APP1 segment whose IFD0 holds one entry: Orientation (SHORT)."""
    mark = b"MM\x00*" if byteorder == ">" else b"II*\x00"
    entry = struct.pack(byteorder + "HHIHH", 0x0112, 3, 1, orientation, 0)
    payload = b"Exif\x00\x00" + mark + struct.pack(byteorder + "IH", 8, 1) + entry + struct.pack(byteorder + "I", 0)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_app1(jpeg: bytes, app1: bytes) -> bytes:
    return jpeg[:2] + app1 + jpeg[2:]


def _float_with(value: float) -> bytes:
    data = good_gray().astype(np.float32) / 255
    data[3, 5] = value
    return tiff_bytes(data)


def _animated_png(frames: int = 3) -> bytes:
    """An APNG of `frames` different 16×16 gray frames (a PNG decoder shows the first alone)."""
    from io import BytesIO

    from PIL import Image as PILImage

    images = [PILImage.fromarray(good_gray(i)) for i in range(frames)]
    buf = BytesIO()
    images[0].save(buf, format="PNG", save_all=True, append_images=images[1:], duration=100)
    return buf.getvalue()


def _two_series() -> bytes:
    from io import BytesIO

    buf = BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        tif.write(good_gray())
        tif.write(np.zeros((8, 8), np.uint16))
    return buf.getvalue()


def huge_stack(frames: int = 400, side: int = 4096) -> bytes:
    """A zlib TIFF stack of `frames` all-zero side × side 8-bit frames: 6.6 MB on disk, 6.25 GiB decoded
    (400 × 4096²). Each frame is compressed once and written as it is (tifffile takes encoded strips)."""
    from io import BytesIO

    strip = zlib.compress(bytes(side * side), 9)
    buf = BytesIO()
    tifffile.imwrite(buf, (strip for _ in range(frames)), shape=(frames, side, side), dtype=np.uint8, compression="zlib",
                     rowsperstrip=side, photometric="minisblack", metadata={"axes": "ZYX"})
    return buf.getvalue()


def _flip_in_idat(raw: bytes) -> bytes:
    i = raw.index(b"IDAT") + 8
    return raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :]


# name -> (bytes, words the refusal message contains)
BAD_FILES: dict[str, tuple[callable, str]] = {
    "zero-byte.png": (lambda: b"", "empty"),
    "zero-byte.tif": (lambda: b"", "empty"),
    "zero-byte.jpg": (lambda: b"", "empty"),
    "truncated.png": (lambda: encoded(".png")[:-30], "corrupt"),
    "truncated.tif": (lambda: tiff_bytes(good_gray(), compression="zlib")[:-40], "corrupt"),
    "truncated.jpg": (lambda: encoded(".jpg")[: len(encoded(".jpg")) * 2 // 3], "corrupt"),
    "corrupt.png": (lambda: _flip_in_idat(encoded(".png")), "corrupt"),
    "corrupt.tif": (lambda: b"II*\x00" + bytes(range(7, 250)), "corrupt"),
    "corrupt.jpg": (lambda: b"\xff\xd8\xff\xe0" + bytes(range(3, 200)), "corrupt"),
    "bomb.png": (lambda: png_claiming(100_000, 100_000), "100000×100000"),
    "bomb.tif": (lambda: tiff_claiming(100_000, 100_000), "100000×100000"),
    "bomb.jpg": (lambda: jpeg_claiming(30_000, 30_000), "30000×30000"),
    "bomb.bmp": (lambda: bmp_claiming(30_000, 30_000), "30000×30000"),
    "nan.tif": (lambda: _float_with(np.nan), "NaN"),
    "inf.tif": (lambda: _float_with(np.inf), "NaN or infinite"),
    "animated.png": (_animated_png, "animated PNG of 3 frames"),
    "tiny-float64.tif": (lambda: tiff_bytes(good_gray().astype(np.float64) * 1e-300), "as small as 1e-300, below what float32"),
    "huge-float64.tif": (lambda: tiff_bytes(good_gray().astype(np.float64) * 1e37), "as large as 2.48e+39, beyond what float32"),
    "huge-stack.tif": (huge_stack, "decodes to 400 frames"),
    "two-samples.tif": (lambda: tiff_bytes(np.zeros((8, 8, 2), np.uint8), photometric="minisblack", planarconfig="contig"), "samples per pixel"),
    "two-series.tif": (_two_series, "separate images"),
    "int32.tif": (lambda: tiff_bytes(np.zeros((8, 8), np.int32)), "int32 is not supported"),
    "complex.tif": (lambda: tiff_bytes(np.zeros((8, 8), np.complex64)), "complex64 is not supported"),
    "bool.tif": (lambda: tiff_bytes(np.zeros((8, 8), bool)), "bool is not supported"),
}

# Refused by read_image itself; NaN/Inf are readable, refused (or reported) by the commands.
READ_REFUSED = [name for name in BAD_FILES if not name.startswith(("nan", "inf"))]


def write_bad(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(BAD_FILES[name][0]())
    return path


def deny_open(monkeypatch, path: Path) -> None:
    """Make opening `path` fail as a chmod 000 file does for a normal user (root ignores chmod)."""
    import builtins
    import io as std_io

    real = builtins.open
    target = os.path.realpath(path)

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(file)) == target:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(std_io, "open", guarded)


def deny_writing(monkeypatch) -> None:
    """Make every new file fail as in a read-only folder for a normal user (root ignores chmod)."""
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)


def fill_disk_after(monkeypatch, writes: int) -> None:
    """Let `writes` atomic writes finish, then fail every later one as a full disk does."""
    real = os.fsync
    count = [0]

    def fsync(fd):
        count[0] += 1
        if count[0] > writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) by relative path: to prove nothing was touched.
    The record of an enhance run (ficli-run.json, ficli-run.rankN.json beside its outputs) is left
    out: the outputs are compared; tests/test_provenance.py checks the record."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and not RUN_RECORD.fullmatch(p.name)}


RUN_RECORD = re.compile(r"ficli-run(\.rank\d+)?\.json")


def leftovers(folder: Path) -> list[str]:
    """Temporaries of atomic writes under `folder`."""
    return sorted(p.name for p in Path(folder).rglob("*.part"))
