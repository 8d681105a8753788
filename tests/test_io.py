import errno
import os

import cv2
import numpy as np
import pytest
import tifffile

from ficli.image import io
from ficli.errors import InputError, OutputError
from hostile_files import exif_app1, with_app1

RNG = np.random.default_rng(0)


def _random(dtype, shape):
    if np.dtype(dtype).kind == "u":
        return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    return RNG.random(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(7, 5), (7, 5, 3), (7, 5, 4)])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_integer_files_round_trip_bit_exact(tmp_path, dtype, shape, suffix):
    data = _random(dtype, shape)
    io.write_image(tmp_path / f"x{suffix}", data)
    back = io.read_image(tmp_path / f"x{suffix}").data
    assert back.dtype == data.dtype and np.array_equal(back, data)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_unit_scale_round_trip_is_bit_exact(dtype):
    data = np.arange(np.iinfo(dtype).max + 1, dtype=np.int64).astype(dtype)
    unit = io.to_unit(data)
    assert unit.dtype == np.float32 and unit.min() == 0.0 and unit.max() == 1.0
    assert np.array_equal(io.from_unit(unit, dtype), data)


def test_from_unit_clips_and_rounds_to_the_type_range():
    out = io.from_unit(np.array([-0.5, 0.5, 1.7, np.nan], np.float32), np.uint8)
    assert out.tolist() == [0, 128, 255, 0]


@pytest.mark.parametrize("dtype", [np.uint32, np.float32])
def test_tiff_32bit_and_float_round_trip(tmp_path, dtype):
    data = _random(dtype, (6, 9))
    io.write_image(tmp_path / "x.tif", data)
    assert np.array_equal(io.read_image(tmp_path / "x.tif").data, data)


def test_tiff_stack_stays_a_stack_with_calibration(tmp_path):
    data = _random(np.uint16, (4, 8, 9))
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, data, imagej=True, resolution=(2.0, 2.0), metadata={"spacing": 0.5, "unit": "um", "axes": "ZYX"})
    image = io.read_image(src)
    assert image.is_stack and image.data.shape == (4, 8, 9) and len(image.frames) == 4
    io.write_image(tmp_path / "out.tif", image.data, like=image)
    back = io.read_image(tmp_path / "out.tif")
    assert back.is_stack and np.array_equal(back.data, data)
    assert back.tiff_kwargs["metadata"] == {"spacing": 0.5, "unit": "um"}
    assert back.tiff_kwargs["resolution"] == image.tiff_kwargs["resolution"]


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_jpeg_and_bmp_read_and_write(tmp_path, suffix):
    data = np.full((16, 12, 3), (200, 100, 50), np.uint8)
    io.write_image(tmp_path / f"x{suffix}", data)
    back = io.read_image(tmp_path / f"x{suffix}").data
    assert back.shape == data.shape and np.abs(back.astype(int) - data).max() <= 2  # RGB order kept


# ------------------------------------------------------------- issue 14.8: TIFF metadata and layout


def _tiff(path):
    """(series axes, series shape, pixels, ImageJ metadata, first page) of a TIFF as tifffile reads it."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return series.axes, series.shape, series.asarray(), tif.imagej_metadata, tif.pages.first


def _pixel_size(page) -> tuple[float, float]:
    """(x, y) pixel size from the XResolution/YResolution tags (pixels per unit)."""
    (xn, xd), (yn, yd) = page.tags["XResolution"].value, page.tags["YResolution"].value
    return xd / xn, yd / yn


def _enlarge(image: io.Image, factor: int) -> np.ndarray:
    """The image's pixels, each repeated factor × factor times (what --upscale does to the size)."""
    axis = 1 if image.is_stack else 0
    return np.repeat(np.repeat(image.data, factor, axis), factor, axis + 1)


def test_upscaled_tiff_gets_its_imagej_pixel_size_divided_by_the_factor(tmp_path):
    src = tmp_path / "cal.tif"
    data = _random(np.uint16, (3, 8, 10))
    tifffile.imwrite(src, data, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    image = io.read_image(src)
    io.write_image(tmp_path / "same.tif", image.data, like=image)  # degrade: same size, same calibration
    io.write_image(tmp_path / "x4.tif", _enlarge(image, 4), like=image)  # enhance --upscale 4
    for name, size in (("same.tif", 0.65), ("x4.tif", 0.1625)):
        axes, shape, _, meta, page = _tiff(tmp_path / name)
        assert _pixel_size(page) == pytest.approx((size, size), rel=1e-6), name
        assert meta["unit"] == "um" and meta["spacing"] == 2.0 and axes == "ZYX", name  # Z spacing is not X/Y
    assert shape == (3, 32, 40)


def test_upscaled_plain_tiff_gets_its_resolution_tags_scaled(tmp_path):
    src = tmp_path / "dpi.tif"
    tifffile.imwrite(src, _random(np.uint8, (8, 10)), resolution=(300, 150), resolutionunit="INCH")
    image = io.read_image(src)
    io.write_image(tmp_path / "x2.tif", _enlarge(image, 2), like=image)
    page = _tiff(tmp_path / "x2.tif")[4]
    assert _pixel_size(page) == pytest.approx((1 / 600, 1 / 300), rel=1e-6)
    assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.INCH


@pytest.mark.parametrize(
    "axes, shape",
    [("TYX", (5, 8, 9)), ("CYX", (2, 8, 9)), ("ZCYX", (3, 2, 8, 9)), ("TZCYX", (2, 3, 2, 8, 9)), ("TZYXS", (2, 2, 8, 9, 3))],
)
def test_imagej_stacks_keep_their_axes(tmp_path, axes, shape):
    """A T stack stays T (not Z), a hyperstack keeps its T, Z and C sizes, frame interval and unit."""
    data = _random(np.uint8, shape)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": axes, "finterval": 0.5, "unit": "um", "spacing": 1.5})
    image = io.read_image(src)
    assert image.is_stack and len(image.frames) == int(np.prod(shape[: axes.index("Y")]))
    io.write_image(tmp_path / "out.tif", image.data, like=image)
    _, _, _, meta_in, _ = _tiff(src)
    out_axes, out_shape, back, meta, _ = _tiff(tmp_path / "out.tif")
    assert (out_axes, out_shape) == (axes, shape) and np.array_equal(back, data)
    for key in ("frames", "slices", "channels", "finterval", "unit", "spacing"):
        assert meta.get(key) == meta_in.get(key), key


def test_plain_tiff_stack_keeps_its_axes(tmp_path):
    data = _random(np.uint16, (4, 8, 9))
    tifffile.imwrite(tmp_path / "in.tif", data, photometric="minisblack", metadata={"axes": "TYX"})
    image = io.read_image(tmp_path / "in.tif")
    io.write_image(tmp_path / "out.tif", image.data, like=image)
    assert _tiff(tmp_path / "out.tif")[:2] == ("TYX", (4, 8, 9))


def _ome_pixels(path) -> tuple[dict, str, tuple]:
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome, path
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        return pixels, tif.series[0].axes, tif.series[0].shape


def test_ome_tiff_keeps_its_ome_xml_and_rescales_physical_size(tmp_path):
    data = _random(np.uint16, (3, 2, 8, 10))
    src = tmp_path / "cells.ome.tif"
    tifffile.imwrite(src, data, metadata={
        "axes": "ZCYX", "PhysicalSizeX": 0.65, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.65, "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 2.0, "Channel": {"Name": ["DAPI", "GFP"]}, "Name": "well A1",
    })
    image = io.read_image(src)
    assert image.is_stack and len(image.frames) == 6
    io.write_image(tmp_path / "same" / "cells.ome.tif", image.data, like=image)
    io.write_image(tmp_path / "x4" / "cells.ome.tif", _enlarge(image, 4), like=image)
    for folder, factor in (("same", 1), ("x4", 4)):
        pixels, axes, shape = _ome_pixels(tmp_path / folder / "cells.ome.tif")
        assert (axes, shape) == ("ZCYX", (3, 2, 8 * factor, 10 * factor))
        assert (pixels["SizeX"], pixels["SizeY"]) == (10 * factor, 8 * factor)
        assert pixels["PhysicalSizeX"] == pytest.approx(0.65 / factor) and pixels["PhysicalSizeY"] == pytest.approx(0.65 / factor)
        assert pixels["PhysicalSizeXUnit"] == "µm" and pixels["PhysicalSizeZ"] == 2.0
        assert [c["Name"] for c in pixels["Channel"]] == ["DAPI", "GFP"]
    assert np.array_equal(tifffile.imread(tmp_path / "same" / "cells.ome.tif"), data)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_planar_rgb_tiff_is_written_planar(tmp_path, dtype):
    planar = _random(dtype, (3, 8, 10))
    tifffile.imwrite(tmp_path / "in.tif", planar, photometric="rgb", planarconfig="separate")
    image = io.read_image(tmp_path / "in.tif")
    assert image.data.shape == (8, 10, 3)  # RGB for everything above io
    io.write_image(tmp_path / "out.tif", image.data, like=image)
    axes, shape, back, _, page = _tiff(tmp_path / "out.tif")
    assert page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and axes == "SYX" and np.array_equal(back, planar)


@pytest.mark.parametrize("dtype", [np.int32, np.complex64, np.bool_])
def test_unsupported_dtypes_are_refused(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((4, 4), dtype))
    with pytest.raises(InputError, match="not supported"):
        io.read_image(tmp_path / "x.tif")


def test_bad_files_raise_input_error_naming_the_file(tmp_path):
    good = tmp_path / "good.png"
    io.write_image(good, np.zeros((32, 32), np.uint8))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "trunc.png").write_bytes(good.read_bytes()[:40])
    (tmp_path / "text.png").write_text("not an image")
    io.write_image(tmp_path / "t.tif", np.zeros((32, 32), np.uint16))
    (tmp_path / "trunc.tif").write_bytes((tmp_path / "t.tif").read_bytes()[:60])
    for name in ("empty.png", "trunc.png", "text.png", "trunc.tif", "missing.png"):
        with pytest.raises(InputError, match=name):
            io.read_image(tmp_path / name)


def test_png_header_claiming_huge_size_is_refused_before_decoding(tmp_path):
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    with pytest.raises(InputError, match="bomb.png.*100000×100000"):
        io.read_image(tmp_path / "bomb.png")


def test_write_is_atomic_and_leaves_nothing_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    io.write_image(target, np.zeros((8, 8), np.uint8))
    before = target.read_bytes()

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="out.png.*disk is full"):
        io.write_image(target, np.full((8, 8), 255, np.uint8))
    assert target.read_bytes() == before  # the old complete file is still there
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary left


def test_write_refuses_to_overwrite_its_input(tmp_path):
    io.write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    image = io.read_image(tmp_path / "a.png")
    with pytest.raises(OutputError, match="overwrite the input"):
        io.write_image(tmp_path / "a.png", image.data, like=image)


def test_collect_inputs_files_folders_globs_and_recursion(tmp_path):
    for rel in ("a.png", "sub/b.tif", "sub/deep/c.jpg", "notes.txt", ".hidden.png"):
        p = tmp_path / "in" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    flat = io.collect_inputs([tmp_path / "in"])
    assert [str(i.rel) for i in flat] == ["a.png"]
    deep = io.collect_inputs([tmp_path / "in"], recursive=True)
    assert sorted(str(i.rel) for i in deep) == ["a.png", "sub/b.tif", "sub/deep/c.jpg"]
    globbed = io.collect_inputs([str(tmp_path / "in" / "sub" / "*.tif")])
    assert [str(i.rel) for i in globbed] == ["b.tif"]
    single = io.collect_inputs([tmp_path / "in" / "sub" / "b.tif"])
    assert [str(i.rel) for i in single] == ["b.tif"]
    assert io.output_path(deep[-1], tmp_path / "out", ".png") == tmp_path / "out" / deep[-1].rel.with_suffix(".png")


def test_collect_inputs_survives_a_symlink_loop(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.png").write_bytes(b"x")
    (tmp_path / "in" / "sub" / "loop").symlink_to(tmp_path / "in")
    found = io.collect_inputs([tmp_path / "in"], recursive=True)
    assert [str(i.rel) for i in found] == ["a.png"]


def test_collect_inputs_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no images found"):
        io.collect_inputs([tmp_path / "empty"])
    with pytest.raises(InputError, match="no such file"):
        io.collect_inputs([tmp_path / "missing"])
    with pytest.raises(InputError, match="notes.txt: not a supported image type"):
        io.collect_inputs([tmp_path / "notes.txt"])
    with pytest.raises(InputError, match="matches no image"):
        io.collect_inputs([str(tmp_path / "*.png")])


def test_output_folder_must_not_be_or_hide_in_the_input_folder(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"x")
    items = io.collect_inputs([tmp_path / "in"])
    with pytest.raises(OutputError, match="is the input folder"):
        io.check_output_dir(tmp_path / "in", items, recursive=False)
    with pytest.raises(OutputError, match="inside the input folder"):
        io.check_output_dir(tmp_path / "in" / "out", items, recursive=True)
    io.check_output_dir(tmp_path / "in" / "out", items, recursive=False)  # allowed: not searched
    io.check_output_dir(tmp_path / "elsewhere", items, recursive=True)


# ------------------------------------------------------------------ issue 14.9: JPEG EXIF orientation

# What a viewer does to the stored pixels for each EXIF Orientation value (checked against PIL's
# ImageOps.exif_transpose once); 1 is upright.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}


def _corners(shape) -> np.ndarray:
    """An 8-bit image with three distinct 8×8 corner blocks (JPEG keeps blocks exact enough)."""
    data = np.zeros(shape, np.uint8)
    data[:8, :8], data[:8, -8:], data[-8:, :8] = 250, 160, 90
    return data


@pytest.mark.parametrize("byteorder", [">", "<"])
@pytest.mark.parametrize("shape", [(16, 24), (16, 24, 3)])
@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_jpeg_exif_orientation_is_applied_on_read(tmp_path, orientation, shape, byteorder):
    stored = _corners(shape)
    raw = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    (tmp_path / "x.jpg").write_bytes(with_app1(raw, exif_app1(orientation, byteorder)))
    data = io.read_image(tmp_path / "x.jpg").data
    expect = UPRIGHT[orientation](stored)
    assert data.shape == expect.shape and np.abs(data.astype(int) - expect).max() <= 8
