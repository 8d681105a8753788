"""Issue 26 items 1 and 4, issue 25 item 25 (images): every output says how it was made, and keeps what came in.

The record is read back as other programs read it: tifffile (shaped JSON description, ImageJ Info,
OME-XML), PIL (PNG text chunks) and ffmpeg (`-f ffmetadata`); and by `ficli info FILE`.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import PngImagePlugin

import ficli.api as api
from ficli.image import io, provenance
from ficli.image.phantom import phantom, to_dtype
from ficli.video import ffmpeg

hostile = pytest.mark.hostile


def _image(side: int = 64, dtype=np.uint16, seed: int = 0) -> np.ndarray:
    return to_dtype(np.clip(phantom(side, side, seed=seed, psf_sigma=1.0, peak_photons=None), 0, 1) * 0.06, dtype)


def _sha(path: Path) -> str:
    return api.model_summary(path)["sha256"]


def _enhance(run_cli, *args):
    result = run_cli("enhance", *args, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------------------------ the record


def test_tiff_output_carries_the_record_and_keeps_compression_description_software_and_date(tmp_path, run_cli, tiny_identity_model):
    src = tmp_path / "in" / "a.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, _image(), compression="lzw", description="Microscope X: 40x/1.3 oil, 488 nm",
                     software="MicroManager 2.0", datetime="2024:05:01 12:00:00")
    _enhance(run_cli, src, "--out", tmp_path / "out", "--model", tiny_identity_model)
    with tifffile.TiffFile(tmp_path / "out" / "a.tif") as tif:
        page = tif.pages.first
        record = tif.shaped_metadata[0][provenance.KEY]
        assert page.compression == tifffile.COMPRESSION.LZW
        assert page.description == "Microscope X: 40x/1.3 oil, 488 nm"
        assert page.tags["Software"].value.startswith("ficli ") and "MicroManager 2.0" in page.tags["Software"].value
        assert page.tags["DateTime"].value == "2024:05:01 12:00:00"
    assert record["software"] == "ficli" and record["version"] == provenance.version() and record["command"] == "enhance"
    assert record["model"] == "identity.safetensors" and record["model_sha256"] == _sha(tiny_identity_model)
    assert record["input"] == "a.tif" and record["upscale"] == 1
    assert record["tile"] == 512 and record["overlap"] == 32 and record["device"] == "cpu" and record["precision"] == "fp32"
    lo, hi = np.percentile(_image(), [0.1, 99.9])
    assert record["normalisation"]["percentiles"] == [0.1, 99.9]
    np.testing.assert_allclose(record["normalisation"]["lo_hi"][0], [lo, hi], rtol=1e-4)  # in the input's units
    assert record["date"][:4].isdigit() and record["blur_scale"] is None  # a plain model is told no scale
    assert provenance.read_image_record(tmp_path / "out" / "a.tif") == record


def test_scale_conditioned_model_records_the_scale_and_how_it_was_chosen(tmp_path, run_cli):
    src = tmp_path / "in" / "a.png"
    io.write_image(src, _image(80, np.uint8))
    _enhance(run_cli, src, "--out", tmp_path / "est")
    _enhance(run_cli, src, "--out", tmp_path / "given", "--scale", "2.5", "--upscale", "2")
    estimated = json.loads(PILImage.open(tmp_path / "est" / "a.png").info[provenance.KEY])
    given = json.loads(PILImage.open(tmp_path / "given" / "a.png").info[provenance.KEY])
    assert estimated["blur_scale_source"] == "estimated" and 1 <= estimated["blur_scale"] <= 4
    assert estimated["blur_scale_spread"] >= 0 and given["blur_scale_spread"] is None  # the estimate's fit
    assert given["blur_scale_source"] == "given" and given["blur_scale"] == 2.5 and given["upscale"] == 2
    assert estimated["model"] == "ficli-default.safetensors"


def test_imagej_and_ome_tiffs_carry_the_record_beside_their_own_metadata(tmp_path, run_cli, tiny_identity_model):
    stack = np.stack([_image(seed=i) for i in range(3)])
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "ij.tif", stack, imagej=True,
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um", "Info": "objective: 60x"}, resolution=(2.0, 2.0))
    tifffile.imwrite(tmp_path / "in" / "o.ome.tif", stack, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65})
    _enhance(run_cli, tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_identity_model, "--upscale", "2")
    with tifffile.TiffFile(tmp_path / "out" / "ij.tif") as tif:
        meta = tif.imagej_metadata
        assert meta["spacing"] == 0.5 and meta["unit"] == "um" and tif.series[0].shape == (3, 128, 128)
        assert meta["Info"].startswith("objective: 60x\n" + provenance.KEY + ": {")
    with tifffile.TiffFile(tmp_path / "out" / "o.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].shape == (3, 128, 128)
        root = ET.fromstring(tif.ome_metadata)
    pixels = next(el for el in root.iter() if el.tag.endswith("}Pixels"))
    assert float(pixels.get("PhysicalSizeX")) == pytest.approx(0.325)
    comments = [el for el in root.iter() if el.tag.endswith("}CommentAnnotation")]
    assert [c.get("Namespace") for c in comments] == [provenance.KEY]
    record = json.loads(next(iter(comments[0])).text)
    assert record["input"] == "o.ome.tif" and record["upscale"] == 2
    assert provenance.read_image_record(tmp_path / "out" / "ij.tif")["input"] == "ij.tif"
    # enhancing an output again replaces the record, it does not pile up
    _enhance(run_cli, tmp_path / "out" / "o.ome.tif", tmp_path / "out" / "ij.tif", "--out", tmp_path / "again",
             "--model", tiny_identity_model)
    with tifffile.TiffFile(tmp_path / "again" / "o.ome.tif") as tif:
        assert tif.ome_metadata.count("CommentAnnotation ") == 1
    with tifffile.TiffFile(tmp_path / "again" / "ij.tif") as tif:
        assert tif.imagej_metadata["Info"].count(provenance.KEY) == 1 and "objective: 60x" in tif.imagej_metadata["Info"]


def test_run_file_lists_every_output_and_keeps_earlier_records_on_resume(tmp_path, run_cli, tiny_identity_model):
    for name in ("a", "b"):
        io.write_image(tmp_path / "in" / f"{name}.png", _image(32, np.uint8, seed=ord(name)))
    _enhance(run_cli, tmp_path / "in" / "a.png", "--out", tmp_path / "out", "--model", tiny_identity_model)
    first = json.loads((tmp_path / "out" / provenance.RUN_FILE).read_text())
    assert first["model_sha256"] == _sha(tiny_identity_model) and [r["output"] for r in first["files"]] == ["a.png"]
    _enhance(run_cli, tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_identity_model, "--skip-existing")
    run = json.loads((tmp_path / "out" / provenance.RUN_FILE).read_text())
    assert [r["output"] for r in run["files"]] == ["a.png", "b.png"]
    assert run["files"][0] == first["files"][0]  # the earlier run's record of a.png, not rewritten
    assert run["files"][1] == provenance.read_image_record(tmp_path / "out" / "b.png")
    assert not list((tmp_path / "out").glob(".*.part"))


def test_an_interrupted_or_partly_failed_batch_still_records_the_files_it_wrote(tmp_path, run_cli, tiny_identity_model, monkeypatch):
    import ficli.inference.enhance as enhance_module

    for name in ("a", "b", "c"):
        io.write_image(tmp_path / "in" / f"{name}.png", _image(32, np.uint8, seed=ord(name)))
    (tmp_path / "in" / "d.png").write_bytes(b"not a png")
    result = run_cli("enhance", tmp_path / "in", "--out", tmp_path / "failed", "--model", tiny_identity_model)
    assert result.exit_code == 1 and "1 failed" in result.output
    run = json.loads((tmp_path / "failed" / provenance.RUN_FILE).read_text())
    assert [r["output"] for r in run["files"]] == ["a.png", "b.png", "c.png"]
    (tmp_path / "in" / "d.png").unlink()
    real, calls = enhance_module.enhance_file, []

    def interrupt_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(enhance_module, "enhance_file", interrupt_second)
    result = run_cli("enhance", tmp_path / "in", "--out", tmp_path / "stopped", "--model", tiny_identity_model)
    assert result.exit_code == 130
    assert sorted(p.name for p in (tmp_path / "stopped").iterdir()) == ["a.png", provenance.RUN_FILE]
    assert [r["output"] for r in json.loads((tmp_path / "stopped" / provenance.RUN_FILE).read_text())["files"]] == ["a.png"]


def test_api_returns_the_record_without_changing_its_return_types(tmp_path, tiny_identity_model):
    model = api.load_model(tiny_identity_model)
    image = _image(40, np.uint8)
    plain = api.enhance(model, image)
    assert isinstance(plain, np.ndarray)
    out, record = api.enhance(model, image, return_record=True)
    np.testing.assert_array_equal(out, plain)
    assert record["command"] == "api" and record["model_sha256"] == _sha(tiny_identity_model)
    np.testing.assert_allclose(record["normalisation"]["lo_hi"][0], np.percentile(image, [0.1, 99.9]), atol=1e-3)
    io.write_image(tmp_path / "x.png", image)
    assert api.enhance_file(model, tmp_path / "x.png", tmp_path / "y.png") == tmp_path / "y.png"
    dest, record = api.enhance_file(model, tmp_path / "x.png", tmp_path / "z.png", return_record=True)
    assert dest == tmp_path / "z.png" and provenance.read_image_record(dest) == record and record["input"] == "x.png"


@pytest.mark.slow
def test_video_output_carries_the_record_in_its_comment_tag(tmp_path, run_cli, tiny_identity_model):
    src = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg.ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.5",
                    "-pix_fmt", "yuv420p", str(src)], check=True)
    result = run_cli("video", src, "--out", tmp_path / "out.mp4", "--model", tiny_identity_model, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    probe = subprocess.run([ffmpeg.ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "out.mp4"), "-f", "ffmetadata", "-"],
                           capture_output=True, text=True, check=True).stdout
    line = next(x for x in probe.splitlines() if x.startswith("comment="))
    assert '"software": "ficli"' in line and '"model_sha256": "' + _sha(tiny_identity_model) in line
    record = provenance.from_text(ffmpeg.read_comment(tmp_path / "out.mp4"))
    assert record["command"] == "video" and record["input"] == "clip.mp4" and record["normalisation"]["percentiles"] == [0.1, 99.9]
    shown = run_cli("info", tmp_path / "out.mp4", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout) == record


def test_jpeg_output_carries_the_record_in_a_comment_segment(tmp_path, run_cli, tiny_identity_model):
    io.write_image(tmp_path / "in" / "a.jpg", _image(48, np.uint8))
    _enhance(run_cli, tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_identity_model)
    with PILImage.open(tmp_path / "out" / "a.jpg") as out:
        comment = out.info["comment"].decode()
        assert out.size == (48, 48) and out.getexif().get(0x0112) is None  # still a plain, upright JPEG
    assert comment.startswith(provenance.KEY + ": {")
    assert provenance.from_text(comment) == provenance.read_image_record(tmp_path / "out" / "a.jpg")
    assert provenance.read_image_record(tmp_path / "out" / "a.jpg")["input"] == "a.jpg"
    np.testing.assert_array_equal(io.read_image(tmp_path / "out" / "a.jpg").data.shape, (48, 48))


def test_info_shows_the_record_of_an_image(tmp_path, run_cli, tiny_identity_model):
    io.write_image(tmp_path / "in" / "a.png", _image(32, np.uint8))
    _enhance(run_cli, tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_identity_model)
    shown = run_cli("info", tmp_path / "out" / "a.png")
    assert shown.exit_code == 0 and "identity.safetensors" in shown.stdout and _sha(tiny_identity_model)[:16] in shown.stdout
    assert json.loads(run_cli("info", tmp_path / "out" / "a.png", "--json").stdout)["input"] == "a.png"


@hostile
@pytest.mark.parametrize("name", ["plain.tif", "plain.png", "clip.mp4"])
def test_info_on_a_file_without_a_record_names_it(tmp_path, run_cli, name):
    path = tmp_path / name
    if name.endswith(".mp4"):
        subprocess.run([ffmpeg.ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=5:duration=0.4",
                        "-pix_fmt", "yuv420p", str(path)], check=True)
    else:
        io.write_image(path, _image(16, np.uint8))
    result = run_cli("info", path)
    assert result.exit_code == 1 and f"{path}: holds no ficli record" in result.output and "Traceback" not in result.output


# ----------------------------------------------------------------------------- keep what came in


@pytest.mark.parametrize("compression", ["zlib", "lzw", "zstd"])
def test_tiff_compression_is_kept_by_enhance_and_degrade(tmp_path, run_cli, tiny_identity_model, compression):
    src = tmp_path / "in" / "a.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, _image(), compression=compression)
    _enhance(run_cli, src, "--out", tmp_path / "e", "--model", tiny_identity_model)
    assert run_cli("degrade", src, "--out", tmp_path / "d").exit_code == 0
    for out in (tmp_path / "e" / "a.tif", tmp_path / "d" / "a.tif"):
        with tifffile.TiffFile(out) as tif:
            name = tif.pages.first.compression.name
        assert {"ADOBE_DEFLATE": "zlib"}.get(name, name.lower()) == compression


def test_compression_option_chooses_and_jpeg_input_becomes_zlib_with_a_note(tmp_path, run_cli, tiny_identity_model):
    src = tmp_path / "in" / "a.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, _image(dtype=np.uint8), compression="jpeg")
    result = _enhance(run_cli, src, "--out", tmp_path / "keep", "--model", tiny_identity_model)
    assert "JPEG compression is lossy" in result.output and "written with zlib" in result.output
    _enhance(run_cli, src, "--out", tmp_path / "none", "--model", tiny_identity_model, "--compression", "none")
    assert run_cli("degrade", src, "--out", tmp_path / "d", "--compression", "zstd").exit_code == 0
    for out, want in ((tmp_path / "keep" / "a.tif", "ADOBE_DEFLATE"), (tmp_path / "none" / "a.tif", "NONE"), (tmp_path / "d" / "a.tif", "ZSTD")):
        with tifffile.TiffFile(out) as tif:
            assert tif.pages.first.compression.name == want


def test_a_compression_this_machine_cannot_write_becomes_zlib_with_a_note(tmp_path, run_cli, tiny_identity_model, monkeypatch):
    src = tmp_path / "in" / "a.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, _image(), compression="lzw")
    real = tifffile.imwrite

    def without_imagecodecs(*args, compression=None, **kwargs):  # as tifffile says where imagecodecs is missing
        if compression == "lzw":
            raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")
        return real(*args, compression=compression, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", without_imagecodecs)
    result = _enhance(run_cli, src, "--out", tmp_path / "out", "--model", tiny_identity_model)
    assert "LZW compression cannot be written here" in result.output and "written with zlib" in result.output
    with tifffile.TiffFile(tmp_path / "out" / "a.tif") as tif:
        assert tif.pages.first.compression.name == "ADOBE_DEFLATE"
        np.testing.assert_array_equal(tif.asarray(), _image())  # the identity model: the pixels as they came
    assert not list((tmp_path / "out").glob(".*.part"))


@hostile
@pytest.mark.parametrize("command, args, says", [
    ("enhance", ["--compression", "jpeg2000"], "use one of keep, none, zlib, lzw, zstd"),
    ("degrade", ["--compression", "lzma"], "use one of keep, none, zlib, lzw, zstd"),
    ("enhance", ["--dtype", "float16"], "use float32"),
])
def test_bad_compression_or_dtype_is_a_usage_error_before_any_work(tmp_path, run_cli, command, args, says):
    io.write_image(tmp_path / "in" / "a.png", _image(16, np.uint8))
    result = run_cli(command, tmp_path / "in", "--out", tmp_path / "out", *args)
    text = " ".join(result.output.replace("│", " ").split())  # the usage box wraps its lines
    assert result.exit_code == 2 and args[0] in text and says in text and not (tmp_path / "out").exists()


def test_png_keeps_its_pixel_size_and_text_and_gray_alpha_stays_gray_alpha(tmp_path, run_cli, tiny_identity_model):
    gray = _image(40, np.uint8)
    alpha = np.full_like(gray, 200)
    alpha[:5] = 0
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "slide 7, DAPI")
    info.add_itxt("Author", "Dr. Ünal")
    src = tmp_path / "in" / "ga.png"
    src.parent.mkdir()
    PILImage.fromarray(np.stack([gray, alpha], -1), "LA").save(src, pnginfo=info, dpi=(300, 300))
    _enhance(run_cli, src, "--out", tmp_path / "out", "--model", tiny_identity_model, "--upscale", "2")
    assert run_cli("degrade", src, "--out", tmp_path / "d").exit_code == 0
    out = PILImage.open(tmp_path / "out" / "ga.png")
    assert out.mode == "LA" and out.size == (80, 80)
    assert out.info["Comment"] == "slide 7, DAPI" and out.info["Author"] == "Dr. Ünal"
    assert out.info["dpi"] == pytest.approx((600, 600), abs=0.1)  # twice the pixels per inch after --upscale 2
    assert json.loads(out.info[provenance.KEY])["upscale"] == 2
    degraded = PILImage.open(tmp_path / "d" / "ga.png")
    assert degraded.mode == "LA" and degraded.info["dpi"] == pytest.approx((300, 300), abs=0.1)
    record = json.loads(degraded.info[provenance.KEY])  # degrade's record: its settings
    assert record["command"] == "degrade" and record["degradation"]["scale"] == 4.0 and record["input"] == "ga.png"


def test_gray_alpha_16_bit_round_trips_through_io(tmp_path):
    data = np.zeros((5, 7, 4), np.uint16)
    data[..., :3] = np.arange(35, dtype=np.uint16).reshape(5, 7, 1) * 1000
    data[..., 3] = 40000
    io.write_image(tmp_path / "a.png", np.dstack([data[..., 0], data[..., 3]])[..., [0, 0, 0, 1]])  # RGBA
    like = io.read_image(tmp_path / "a.png")
    like.gray_alpha = True  # as read from a gray+alpha file
    io.write_image(tmp_path / "b.png", data, like=like)
    back = io.read_image(tmp_path / "b.png")
    assert back.gray_alpha and back.data.dtype == np.uint16
    np.testing.assert_array_equal(back.data, data)


def test_dtype_float32_writes_the_unrounded_result_in_the_inputs_units(tmp_path, run_cli):
    src = tmp_path / "in" / "a.png"
    io.write_image(src, _image(48, np.uint8))
    _enhance(run_cli, src, "--out", tmp_path / "int", "--scale", "3")
    _enhance(run_cli, src, "--out", tmp_path / "f", "--scale", "3", "--dtype", "float32")
    assert not (tmp_path / "f" / "a.png").exists()
    with tifffile.TiffFile(tmp_path / "f" / "a.tif") as tif:
        result = tif.asarray()
        record = tif.shaped_metadata[0][provenance.KEY]
    rounded = io.read_image(tmp_path / "int" / "a.png").data
    assert result.dtype == np.float32 and record["output_dtype"] == "float32" and record["input_dtype"] == "uint8"
    np.testing.assert_array_equal(np.clip(np.rint(result), 0, 255).astype(np.uint8), rounded)  # the same units
    assert not np.array_equal(result, np.rint(result))  # not rounded
