"""Hostile files at the io boundary (docs/RELIABILITY.md): refused with InputError naming the file,
never another exception, never a wrong image; and every layout io accepts round-trips bit-exactly."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ficli.image import io
from ficli.errors import InputError, OutputError
from hostile_files import (
    BAD_FILES, READ_REFUSED, bmp_claiming, deny_open, deny_writing, encoded, good_gray, jpeg_claiming, png_claiming,
    exif_app1, tiff_bytes, tiff_claiming, with_app1, write_bad,
)

hostile = pytest.mark.hostile
F32_TINY, F32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@hostile
@pytest.mark.parametrize("name", READ_REFUSED)
def test_bad_file_is_refused_naming_it(tmp_path, name):
    path = write_bad(tmp_path, name)
    with pytest.raises(InputError) as caught:
        io.read_image(path)
    assert str(path) in str(caught.value) and BAD_FILES[name][1] in str(caught.value)


@hostile
@pytest.mark.parametrize(
    "name, raw",
    [
        ("bomb.png", png_claiming(100_000, 100_000)),
        ("bomb.tif", tiff_claiming(100_000, 100_000)),
        ("bomb.jpg", jpeg_claiming(30_000, 30_000)),  # JPEG sides stop at 65535; 9e8 pixels
        ("bomb.bmp", bmp_claiming(30_000, 30_000)),
    ],
)
def test_huge_header_is_refused_before_decoding(tmp_path, monkeypatch, name, raw):
    decoded = []
    real_imdecode, real_asarray = cv2.imdecode, tifffile.TiffPageSeries.asarray
    monkeypatch.setattr(io.cv2, "imdecode", lambda *a, **k: decoded.append(name) or real_imdecode(*a, **k))
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", lambda *a, **k: decoded.append(name) or real_asarray(*a, **k))
    (tmp_path / name).write_bytes(raw)
    with pytest.raises(InputError, match="header claims .* more than ficli's limit"):
        io.read_image(tmp_path / name)
    assert decoded == []  # refused from the header: nothing was allocated for the pixels


@hostile
def test_huge_stack_is_refused_before_decoding(tmp_path, monkeypatch):
    """400 frames of 4096² in a 6.6 MB zlib file pass the per-frame limit; the whole stack does not."""
    decoded = []
    real_asarray = tifffile.TiffPageSeries.asarray
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", lambda *a, **k: decoded.append(1) or real_asarray(*a, **k))
    path = write_bad(tmp_path, "huge-stack.tif")
    assert path.stat().st_size < 8_000_000
    with pytest.raises(InputError) as caught:
        io.read_image(path)
    message = str(caught.value)
    assert str(path) in message and "400 frames of 4096×4096" in message and "6.25 GiB" in message and "split the stack" in message
    assert decoded == []


@hostile
@pytest.mark.parametrize(
    "app1",
    [
        exif_app1(0), exif_app1(9), exif_app1(65535),  # orientation values outside 1..8
        exif_app1(6)[:14],  # cut inside the TIFF header
        exif_app1(6)[:20],  # cut inside the IFD entry
        exif_app1(6).replace(b"MM\x00*\x00\x00\x00\x08", b"MM\x00*\x7f\xff\xff\xff"),  # IFD offset far past the end
        b"\xff\xe1\x00\x08Exif\x00\x00",  # the Exif header and nothing else
    ],
    ids=["zero", "nine", "65535", "cut-header", "cut-entry", "bad-offset", "empty"],
)
def test_malformed_exif_is_ignored_and_the_pixels_kept(tmp_path, app1):
    if len(app1) < 4 + int.from_bytes(app1[2:4], "big"):  # a cut segment: make its length say what is left
        app1 = app1[:2] + (len(app1) - 2).to_bytes(2, "big") + app1[4:]
    (tmp_path / "plain.jpg").write_bytes(encoded(".jpg"))
    (tmp_path / "x.jpg").write_bytes(with_app1(encoded(".jpg"), app1))
    assert np.array_equal(io.read_image(tmp_path / "x.jpg").data, io.read_image(tmp_path / "plain.jpg").data)


@hostile
@pytest.mark.parametrize(
    "suffix, raw",
    [
        (".png", encoded(".png")),
        (".jpg", encoded(".jpg")),
        (".bmp", encoded(".bmp")),
        (".tif", tiff_bytes(good_gray())),
        (".tif", tiff_bytes(good_gray(), compression="zlib")),
        (".tif", tiff_bytes(np.stack([good_gray(s) for s in range(3)]), imagej=True, metadata={"axes": "ZYX"})),
    ],
    ids=["png", "jpg", "bmp", "tif", "tif-zlib", "tif-stack"],
)
def test_a_file_cut_anywhere_is_refused_or_read_whole(tmp_path, suffix, raw):
    """Truncation at every 7th byte: InputError, or (when only trailing bytes went) the same pixels."""
    full = tmp_path / f"full{suffix}"
    full.write_bytes(raw)
    whole = io.read_image(full).data
    cut = tmp_path / f"cut{suffix}"
    for n in range(0, len(raw), 7):
        cut.write_bytes(raw[:n])
        try:
            data = io.read_image(cut).data
        except InputError as exc:
            assert str(cut) in str(exc)
            continue
        assert data.shape == whole.shape and np.array_equal(data, whole), f"cut at {n} of {len(raw)} bytes gave other pixels"


def test_planar_rgb_tiff_is_read_as_rgb_not_as_a_stack(tmp_path):
    rgb = np.stack([good_gray(s) for s in range(3)], -1)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    image = io.read_image(tmp_path / "planar.tif")
    assert not image.is_stack and np.array_equal(image.data, rgb)
    io.write_image(tmp_path / "out.tif", image.data, like=image)
    assert np.array_equal(io.read_image(tmp_path / "out.tif").data, rgb)


def test_reduced_resolution_pages_are_not_separate_images(tmp_path):
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tif:
        tif.write(good_gray())
        tif.write(np.zeros((4, 4), np.uint8), subfiletype=1)  # a thumbnail
    assert np.array_equal(io.read_image(tmp_path / "thumb.tif").data, good_gray())


# ----------------------------------------------------------------------------- permissions and writes


@hostile
@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_unreadable_file_is_refused_naming_it(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"locked{suffix}"
    io.write_image(path, good_gray())
    deny_open(monkeypatch, path)
    with pytest.raises(InputError, match=f"locked\\{suffix}: permission denied"):
        io.read_image(path)


@hostile
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode (the simulated test above runs)")
def test_unreadable_file_is_refused_for_real(tmp_path):
    path = tmp_path / "locked.png"
    io.write_image(path, good_gray())
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            io.read_image(path)
    finally:
        path.chmod(0o600)


@hostile
@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_disk_full_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, step):
    target = tmp_path / "out.tif"
    io.write_image(target, good_gray())
    before = target.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, step, full)
    with pytest.raises(OutputError, match="out.tif.*the disk is full.*nothing was written"):
        io.write_image(target, np.full((16, 16), 7, np.uint8))
    monkeypatch.undo()
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.tif"]


@hostile
def test_unwritable_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    deny_writing(monkeypatch)
    with pytest.raises(OutputError, match="new/deeper: cannot write here .*Permission denied"):
        io.check_writable(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # the check makes nothing


def test_remove_stale_parts_takes_only_its_own_temporaries(tmp_path):
    names = [".a.png.k3j_9x0q.part", ".a.png.notmine.part", ".b.png.abcdefgh.part", ".a.png", "a.png.abcdefgh.part", ".notes"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert io.remove_stale_parts([tmp_path / "a.png", tmp_path / "missing" / "c.png"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


@hostile
def test_temporaries_and_hidden_files_are_never_inputs(tmp_path):
    io.write_image(tmp_path / "in" / "a.png", good_gray())
    for name in (".a.png.abcdefgh.part", ".b.png", ".c.tif.k3j_9x0q.part"):
        (tmp_path / "in" / name).write_bytes(encoded(".png"))
    (tmp_path / "in" / ".hidden").mkdir()
    io.write_image(tmp_path / "in" / ".hidden" / "d.png", good_gray())
    assert [str(i.rel) for i in io.collect_inputs([tmp_path / "in"], recursive=True)] == ["a.png"]


# ---------------------------------------------------------------------------------- property tests

SEEDS = {
    ".png": [encoded(".png"), encoded(".png", np.stack([good_gray(s) for s in range(4)], -1)), encoded(".png", good_gray().astype(np.uint16) * 250)],
    ".jpg": [encoded(".jpg"), encoded(".jpg", np.stack([good_gray(s) for s in range(3)], -1)), with_app1(encoded(".jpg"), exif_app1(6))],
    ".bmp": [encoded(".bmp"), encoded(".bmp", np.stack([good_gray(s) for s in range(3)], -1))],
    ".tif": [
        tiff_bytes(good_gray()),
        tiff_bytes(good_gray(), compression="zlib"),
        tiff_bytes(good_gray().astype(np.float32)),
        tiff_bytes(np.stack([good_gray(s) for s in range(3)]), imagej=True, metadata={"axes": "ZYX", "spacing": 0.5}, resolution=(2.0, 2.0)),
        tiff_bytes(np.zeros((2, 2, 2, 4, 4), np.uint8), imagej=True, metadata={"axes": "TZCYX"}),
        tiff_bytes(np.zeros((2, 4, 4), np.uint8), ome=True, photometric="minisblack", metadata={"axes": "CYX", "PhysicalSizeX": 0.5}),
        tiff_bytes(np.zeros((3, 4, 4), np.uint8), photometric="rgb", planarconfig="separate"),
    ],
}
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"II+\x00", b"\xff\xd8\xff", b"BM"]


def _read_or_refuse(path: Path) -> None:
    try:
        io.read_image(path)
    except InputError as exc:
        assert str(path) in str(exc)


@hostile
@FUZZ
@given(suffix=st.sampled_from([".png", ".tif", ".jpg", ".bmp"]), magic=st.sampled_from(MAGIC), body=st.binary(max_size=600))
def test_random_bytes_only_ever_raise_input_error(tmp_path_factory, suffix, magic, body):
    path = tmp_path_factory.mktemp("fuzz") / f"random{suffix}"
    path.write_bytes(magic + body)
    _read_or_refuse(path)


@hostile
@FUZZ
@given(data=st.data(), suffix=st.sampled_from(sorted(SEEDS)))
def test_damaged_valid_files_only_ever_raise_input_error(tmp_path_factory, data, suffix):
    raw = bytearray(data.draw(st.sampled_from(SEEDS[suffix]), label="seed"))
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=8), label="edits")
    for position, value in edits:
        raw[position] = value
    end = data.draw(st.integers(1, len(raw)), label="length")
    path = tmp_path_factory.mktemp("fuzz") / f"damaged{suffix}"
    path.write_bytes(bytes(raw[:end]))
    _read_or_refuse(path)


@st.composite
def writable_images(draw):
    """(suffix, data, is_stack): every dtype, channel count and stack io writes and reads."""
    suffix = draw(st.sampled_from([".png", ".tif"]))
    dtypes = [np.uint8, np.uint16] if suffix == ".png" else [np.uint8, np.uint16, np.uint32, np.float32, np.float64]
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    stack = suffix == ".tif" and draw(st.booleans())
    channels = draw(st.sampled_from([(), (3,), (4,)]))
    shape = ((draw(st.integers(2, 3)),) if stack else ()) + (draw(st.integers(1, 9)), draw(st.integers(1, 9))) + channels
    elements = st.floats(width=dtype.itemsize * 8, allow_nan=True, allow_infinity=True) if dtype.kind == "f" else None
    if dtype == np.float64:  # only what float32 holds is accepted (finite values beyond it are refused by name)
        elements = elements.filter(lambda v: not math.isfinite(v) or v == 0 or F32_TINY <= abs(v) <= F32_MAX)
    return suffix, draw(hnp.arrays(dtype, shape, elements=elements)), stack


@hostile
@settings(max_examples=80, deadline=None, database=None)
@given(case=writable_images())
def test_every_accepted_layout_round_trips_bit_exactly(tmp_path_factory, case):
    suffix, data, stack = case
    path = tmp_path_factory.mktemp("rt") / f"x{suffix}"
    io.write_image(path, data, is_stack=stack)
    back = io.read_image(path)
    assert back.is_stack == stack and back.data.shape == data.shape and back.data.dtype == data.dtype
    bits = f"u{data.dtype.itemsize}"
    assert np.array_equal(back.data.view(bits), data.view(bits))  # NaN payloads and -0.0 included
