"""PNG chunks: what an input PNG says beside its pixels, carried to its output, and gray+alpha files.

OpenCV decodes and encodes the pixels (`io`); it drops every ancillary chunk and reads gray+alpha
as RGBA. This module reads the chunks worth keeping (`kept_chunks`: pixel size and colour, and the
text chunks), puts them back into an encoded file (`splice`, the pixel size scaled with a change of
size), adds text (`text_chunk`), reads text back (`texts`), and writes gray+alpha pixels
(`encode_gray_alpha`). Plain Python and numpy.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks carried from an input to its output: pixel size, colour space, text (any order before IDAT).
KEPT = (b"pHYs", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"tEXt", b"zTXt", b"iTXt")
TEXT = (b"tEXt", b"zTXt", b"iTXt")
GRAY_ALPHA = 4  # IHDR colour type


def chunks(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG file, in order; stops at the end of the data or at IEND."""
    out, i = [], len(SIGNATURE)
    while i + 8 <= len(raw):
        length, kind = struct.unpack(">I4s", raw[i : i + 8])
        out.append((kind, raw[i + 8 : i + 8 + length]))
        i += 12 + length
        if kind == b"IEND":
            break
    return out


def is_gray_alpha(raw: bytes) -> bool:
    """True for a PNG whose header says gray+alpha (colour type 4)."""
    return len(raw) > 25 and raw[12:16] == b"IHDR" and raw[25] == GRAY_ALPHA


def kept_chunks(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of `raw` (a PNG file) that its output keeps (`KEPT`), in order."""
    return [(kind, data) for kind, data in chunks(raw) if kind in KEPT]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def text_chunk(keyword: str, text: str) -> tuple[bytes, bytes]:
    """An iTXt chunk (UTF-8 text, not compressed) of `keyword` (Latin-1, 1 to 79 characters)."""
    return b"iTXt", keyword.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8")


def _keyword(kind: bytes, data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("latin-1") if kind in TEXT else ""


def texts(raw: bytes) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file as {keyword: text}; damaged ones are skipped."""
    found = {}
    for kind, data in chunks(raw):
        if kind not in TEXT or b"\0" not in data:
            continue
        key, rest = data.split(b"\0", 1)
        try:
            if kind == b"tEXt":
                text = rest.decode("latin-1")
            elif kind == b"zTXt":
                text = zlib.decompress(rest[1:]).decode("latin-1")
            else:
                flag, rest = rest[0], rest[2:]
                rest = rest.split(b"\0", 2)[2]  # language tag and translated keyword
                text = (zlib.decompress(rest) if flag else rest).decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError):
            continue
        found[key.decode("latin-1")] = text
    return found


def scaled_phys(data: bytes, zoom: tuple[float, float]) -> bytes:
    """A pHYs chunk's data for pixels `zoom` (height, width) times as many: pixels per unit × zoom."""
    if len(data) != 9 or zoom == (1.0, 1.0):
        return data
    x, y, unit = struct.unpack(">IIB", data)
    return struct.pack(">IIB", min(round(x * zoom[1]), 2**31 - 1), min(round(y * zoom[0]), 2**31 - 1), unit)


def splice(encoded: bytes, extra: list[tuple[bytes, bytes]], zoom: tuple[float, float] = (1.0, 1.0)) -> bytes:
    """`encoded` (a PNG file) with the chunks `extra` after its header: a pHYs scaled by `zoom`
    (`scaled_phys`); a chunk type of `extra` that `encoded` holds too is taken from `extra` only, and
    of two text chunks with one keyword the last one stays."""
    kinds = {kind for kind, _ in extra if kind not in TEXT}
    last = {}
    for i, (kind, data) in enumerate(extra):
        last[_keyword(kind, data) or (kind, i)] = i
    extra = [(kind, scaled_phys(data, zoom) if kind == b"pHYs" else data)
             for i, (kind, data) in enumerate(extra) if last[_keyword(kind, data) or (kind, i)] == i]
    parts = chunks(encoded)
    body = [_chunk(*parts[0])] + [_chunk(*c) for c in extra] + [_chunk(k, d) for k, d in parts[1:] if k not in kinds]
    return SIGNATURE + b"".join(body)


def encode_gray_alpha(gray: np.ndarray, alpha: np.ndarray) -> bytes:
    """A gray+alpha PNG file (colour type 4) of two (H, W) uint8 or uint16 planes."""
    depth = 16 if gray.dtype == np.uint16 else 8
    height, width = gray.shape
    pixels = np.stack([gray, alpha], axis=-1).astype(">u2" if depth == 16 else np.uint8)
    rows = pixels.reshape(height, -1).view(np.uint8).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, depth, GRAY_ALPHA, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + _chunk(b"IEND", b"")
