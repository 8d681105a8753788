import errno
import os

import numpy as np
import pytest
import tifffile

from ficli import io
from ficli.errors import InputError, OutputError

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


def test_five_d_tiff_is_refused_with_its_axes(tmp_path):
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((2, 3, 4, 8, 8), np.uint8), imagej=True)
    with pytest.raises(InputError, match="x.tif.*axes"):
        io.read_image(tmp_path / "x.tif")


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
