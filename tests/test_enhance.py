"""ficli enhance: the real generator through the tiled engine, pixel types, stacks, models, resume."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch

from ficli.image import io
from ficli.model import modelfile
from ficli.inference.engine import TileConfig, min_tile, receptive_field_overlap, run_tiled
from ficli.image.intensity import percentile_range
from ficli.inference.enhance import EnhanceOptions, enhance_frames
from ficli.model.nets import Generator, GeneratorConfig, receptive_field
from ficli.image.phantom import phantom, to_dtype

from conftest import SHARED_DATA

# The default depth (7 blocks of 4 layers: the default receptive field) at a small width, so the
# real architecture runs quickly on CPU. Width does not change the receptive field.
NARROW = GeneratorConfig(features=8, growth=4)


def _generator(config=NARROW, active=True, seed=0) -> Generator:
    torch.manual_seed(seed)
    g = Generator(config, spectral_norm=False).eval()
    if active:  # a fresh generator is the identity (out_scale 0); make the correction count
        with torch.no_grad():
            g.out_scale.fill_(0.5)
    return g


@pytest.fixture
def identity_model(tmp_path) -> Path:
    return modelfile.save_model(tmp_path / "identity.safetensors", _generator(NARROW, active=False), NARROW, {"scale": 4})


@pytest.fixture
def active_model(tmp_path) -> Path:
    tiny = GeneratorConfig(features=8, growth=4, layers=1, blocks=1)
    return modelfile.save_model(tmp_path / "active.safetensors", _generator(tiny), tiny, {"scale": 4})


def _real_or_phantom(size: int) -> np.ndarray:
    """A centre crop of a real confocal image (maize stem, 640×639, 8-bit), or a phantom without it."""
    path = SHARED_DATA / "fluorescence" / "test" / "bian__maize_clsm.png"
    if not path.is_file():
        return phantom(size, size, seed=5)
    img = io.to_unit(io.read_image(path).data)
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def test_tiled_equals_whole_for_the_real_generator_with_receptive_field_overlap():
    g = _generator()
    overlap = receptive_field_overlap(receptive_field(NARROW))
    image = _real_or_phantom(560)[None]
    whole = run_tiled(g, image, TileConfig(tile=576, overlap=0))  # one tile: the whole-image pass
    tiled = run_tiled(g, image, TileConfig(tile=min_tile(overlap) + 16, overlap=overlap, batch=2))
    assert np.abs(whole - image).max() > 1e-3  # the network really changes the image
    assert np.abs(tiled - whole).max() < 1e-4


def test_default_overlap_difference_is_small_and_reported():
    g = _generator()
    image = _real_or_phantom(400)[None]
    whole = run_tiled(g, image, TileConfig(tile=400, overlap=0))
    tiled = run_tiled(g, image, TileConfig(tile=192, overlap=32))
    diff = np.abs(tiled - whole)
    print(f"default overlap 32 px, tile 192: max |tiled - whole| = {diff.max():.2e}, mean = {diff.mean():.2e}")
    assert diff.max() < 2e-3  # documented bound (README: tiling), far below one 8-bit grey level (3.9e-3)


@pytest.mark.parametrize(
    "name, data",
    [
        ("g8.png", to_dtype(phantom(45, 61, seed=1), np.uint8)),
        ("g16.png", to_dtype(phantom(45, 61, seed=2), np.uint16)),
        ("g12.tif", to_dtype(phantom(45, 61, seed=3), np.uint16, 4095)),
        ("f32.tif", phantom(45, 61, seed=4) * 37.5),
        ("rgb.png", np.stack([to_dtype(phantom(45, 61, seed=s), np.uint8) for s in (5, 6, 7)], -1)),
    ],
)
def test_identity_model_returns_every_pixel_type_unchanged(run_cli, identity_model, tmp_path, name, data):
    io.write_image(tmp_path / "in" / name, data)
    result = run_cli("enhance", tmp_path / "in", "--out", tmp_path / "out", "--model", identity_model, "--tile", "32", "--overlap", "4")
    assert result.exit_code == 0, result.output
    out = io.read_image(tmp_path / "out" / name).data
    assert out.dtype == data.dtype and out.shape == data.shape
    if data.dtype.kind == "u":
        assert np.array_equal(out, data)
    else:
        assert np.allclose(out, data, rtol=1e-5, atol=1e-5)


def test_stack_stays_a_stack_and_frames_share_one_intensity_map(run_cli, active_model, tmp_path):
    frames = np.stack([to_dtype(phantom(40, 48, seed=s) * (0.3 + 0.3 * s), np.uint16) for s in range(3)])
    tifffile.imwrite(tmp_path / "stack.tif", frames, imagej=True, metadata={"axes": "ZYX"})
    result = run_cli("enhance", tmp_path / "stack.tif", "--out", tmp_path / "out", "--model", active_model)
    assert result.exit_code == 0, result.output
    out = io.read_image(tmp_path / "out" / "stack.tif")
    assert out.is_stack and out.data.shape == frames.shape and out.data.dtype == np.uint16
    # One map for the whole stack: the frames are the same as enhancing the stack in one piece.
    # The CLI runs the generator in channels_last, this reference in the default layout: oneDNN
    # picks other fp32 kernels for each (and others again per CPU: AVX2, AVX-512, AMX), whose sums
    # differ in the last bits, which can flip a value lying near .5 of a grey level when rounding to
    # 16 bits. Hence 1 level of 65535; a per-frame map would differ by thousands (checked below).
    g = modelfile.load_model(active_model)[0]
    units = [io.to_unit(f) for f in frames]
    expect = np.stack([io.from_unit(f, np.uint16) for f in enhance_frames(g, units, EnhanceOptions())]).astype(int)
    assert np.abs(out.data.astype(int) - expect).max() <= 1
    alone = io.from_unit(enhance_frames(g, units[:1], EnhanceOptions())[0], np.uint16).astype(int)
    assert np.abs(alone - expect[0]).max() > 100  # per-frame maps would differ far beyond rounding


def test_intensities_stay_in_the_image_units():
    """A correction of +c in the network's normalised units is +c·(hi − lo) in the file's units."""
    img = phantom(48, 48, seed=3) * (4095 / 65535)  # 12-bit data in a 16-bit file, on the [0, 1] scale
    lo, hi = percentile_range(img)
    out = enhance_frames(lambda x: x + 0.01, [img], EnhanceOptions())[0]
    assert np.allclose(out, img + 0.01 * (hi - lo), atol=1e-7)
    same = enhance_frames(lambda x: x, [img], EnhanceOptions())[0]
    assert np.array_equal(io.from_unit(same, np.uint16), io.from_unit(img, np.uint16))


def test_upscale_enlarges_before_enhancing(run_cli, identity_model, tmp_path):
    io.write_image(tmp_path / "small.png", to_dtype(phantom(20, 30), np.uint8))
    result = run_cli("enhance", tmp_path / "small.png", "--out", tmp_path / "out", "--model", identity_model, "--upscale", "3")
    assert result.exit_code == 0, result.output
    assert io.read_image(tmp_path / "out" / "small.png").data.shape == (60, 90)


def test_one_bad_file_fails_alone(run_cli, identity_model, phantom_folder, tmp_path):
    (phantom_folder / "zz_broken.tif").write_bytes(b"II*\x00garbage")
    result = run_cli("enhance", phantom_folder, "--out", tmp_path / "out", "--model", identity_model)
    assert result.exit_code == 1
    assert "zz_broken.tif" in result.output and "3 done" in result.output and "1 failed" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a8.png", "b16.png", "c12.tif", "ficli-run.json"]


def test_pickle_model_is_refused_without_running_it(run_cli, phantom_folder, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"state_dict": Evil()}))
    result = run_cli("enhance", phantom_folder, "--out", tmp_path / "out", "--model", evil)
    assert result.exit_code == 1 and "model.pt" in result.output
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncate", "tamper", "missing"])
def test_damaged_model_files_are_refused(run_cli, identity_model, phantom_folder, tmp_path, damage):
    raw = identity_model.read_bytes()
    bad = tmp_path / "bad.safetensors"
    if damage == "truncate":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "tamper":
        bad.write_bytes(raw.replace(b'"features\\": 8', b'"features\\": 9'))
    result = run_cli("enhance", phantom_folder, "--out", tmp_path / "out", "--model", bad)
    assert result.exit_code == 1 and "bad.safetensors" in result.output and "Traceback" not in result.output


def test_interrupted_batch_resumes_with_skip_existing(run_cli, identity_model, phantom_folder, tmp_path, monkeypatch):
    import ficli.inference.enhance as enhance_module

    real = enhance_module.enhance_file
    calls = []

    def interrupt_second(src, dest, *args, **kwargs):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dest, *args, **kwargs)

    monkeypatch.setattr(enhance_module, "enhance_file", interrupt_second)
    out = tmp_path / "out"
    result = run_cli("enhance", phantom_folder, "--out", out, "--model", identity_model)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert [p.name for p in out.iterdir()] == ["a8.png"]  # one finished file, no partial one
    first = (out / "a8.png").stat().st_mtime_ns
    monkeypatch.setattr(enhance_module, "enhance_file", real)
    result = run_cli("enhance", phantom_folder, "--out", out, "--model", identity_model, "--skip-existing")
    assert result.exit_code == 0 and "2 done, 1 skipped" in result.output
    assert (out / "a8.png").stat().st_mtime_ns == first


def test_missing_default_model_says_how_to_give_one(run_cli, phantom_folder, tmp_path, monkeypatch):
    from ficli.inference import runtime

    monkeypatch.setattr(runtime, "DEFAULT_MODEL_NAME", "no-such-model.safetensors")
    result = run_cli("enhance", phantom_folder, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "--model" in result.output


def test_half_precision_on_cpu_is_a_clear_error(run_cli, identity_model, phantom_folder, tmp_path):
    result = run_cli("enhance", phantom_folder, "--out", tmp_path / "out", "--model", identity_model, "--device", "cpu", "--precision", "fp16")
    assert result.exit_code == 2 and "fp16" in result.output and "Traceback" not in result.output
    assert "failed:" not in result.output and not (tmp_path / "out").exists()  # once, before any file


def test_torchrun_shards_files_across_two_processes(identity_model, phantom_folder, tmp_path):
    for i in range(3):
        io.write_image(phantom_folder / f"extra{i}.png", to_dtype(phantom(32, 32, seed=10 + i), np.uint8))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29541",
        "-m", "ficli", "enhance", str(phantom_folder), "--out", str(tmp_path / "out"), "--model", str(identity_model), "--device", "cpu",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert len([p for p in (tmp_path / "out").iterdir() if not p.name.startswith("ficli-run")]) == 6
    runs = [json.loads((tmp_path / "out" / f"ficli-run.rank{r}.json").read_text()) for r in (0, 1)]  # one record file a process
    assert sorted(len(run["files"]) for run in runs) == [3, 3]
    summaries = [line for line in done.stdout.splitlines() if line.startswith("enhance:")]
    assert sorted(int(s.split()[1]) for s in summaries) == [3, 3]  # each rank did its half


# --- --compile ---------------------------------------------------------------------------------


def test_compile_failure_falls_back_to_the_module_once(monkeypatch):
    from ficli.inference.runtime import CompiledGenerator

    def broken_compile(module, mode=None):
        def run(x):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore details")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    g = _generator(GeneratorConfig(features=8, growth=4, layers=1, blocks=1))
    notes = []
    compiled = CompiledGenerator(g, on_notice=notes.append)
    image = _real_or_phantom(64)[None]
    with torch.inference_mode():
        expected = g(torch.from_numpy(image)[None]).numpy()[0]
    out = [run_tiled(compiled, image, TileConfig(tile=64, overlap=4)) for _ in range(2)]  # one piece
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    np.testing.assert_array_equal(out[0], out[1])
    assert len(notes) == 1 and "no working C++ compiler found" in notes[0] and "more details" not in notes[0]


def test_compile_refused_up_front_falls_back(monkeypatch):
    from ficli.inference.runtime import CompiledGenerator

    def refuses(module, mode=None):
        raise RuntimeError("torch.compile is not supported on Python 3.14+")

    monkeypatch.setattr(torch, "compile", refuses)
    notes = []
    g = _generator(GeneratorConfig(features=8, growth=4, layers=1, blocks=1))
    compiled = CompiledGenerator(g, on_notice=notes.append)
    x = torch.rand(1, 1, 16, 16)
    with torch.inference_mode():
        assert torch.equal(compiled(x), g(x))
    assert len(notes) == 1 and "Python 3.14" in notes[0]


def test_compile_passes_out_of_memory_on(monkeypatch):
    from ficli.inference.runtime import CompiledGenerator

    def oom(x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch, "compile", lambda module, mode=None: oom)
    compiled = CompiledGenerator(_generator(), on_notice=lambda m: pytest.fail(m))
    with pytest.raises(torch.OutOfMemoryError):
        compiled(torch.rand(1, 1, 16, 16))


@pytest.mark.slow
def test_compiled_generator_gives_the_eager_result(run_cli, active_model, tmp_path):
    # The real torch.compile (inductor needs a C++ compiler; without one the fallback note shows).
    src = tmp_path / "in"
    src.mkdir()
    io.write_image(src / "a.png", to_dtype(phantom(48, 64, seed=1), np.uint16))
    outs = {}
    for flag in ([], ["--compile"]):
        out = tmp_path / f"out{len(flag)}"
        result = run_cli("enhance", src, "--out", out, "--model", active_model, "--device", "cpu", *flag)
        assert result.exit_code == 0, result.output
        outs[len(flag)] = io.read_image(out / "a.png").data.astype(int)
    assert np.abs(outs[0] - outs[1]).max() <= 1


def test_compile_option_compiles_the_generator_for_enhance(run_cli, active_model, phantom_folder, tmp_path, monkeypatch):
    calls = []

    def fake_compile(module, mode=None):
        calls.append(mode)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = run_cli("enhance", phantom_folder, "--out", tmp_path / "out", "--model", active_model, "--device", "cpu", "--compile")
    assert result.exit_code == 0, result.output
    assert calls == [None]


# ---------------------------------------------------------------- issue 14.8 and 14.9: metadata kept


@pytest.mark.parametrize("kind", ["imagej", "ome"])
def test_upscale_divides_the_pixel_size_by_the_factor(run_cli, tiny_identity_model, tmp_path, kind):
    """0.65 µm/px enlarged ×4 is 0.1625 µm/px, in ImageJ's resolution tags and in OME's PhysicalSizeX/Y."""
    data = to_dtype(phantom(12, 10, seed=1), np.uint16)
    src = tmp_path / "in" / ("cal.tif" if kind == "imagej" else "cal.ome.tif")
    src.parent.mkdir()
    if kind == "imagej":
        tifffile.imwrite(src, data, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "um"})
    else:
        tifffile.imwrite(src, data, metadata={"PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65, "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
    result = run_cli("enhance", src, "--out", tmp_path / "out", "--model", tiny_identity_model, "--upscale", "4")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "out" / src.name) as tif:
        assert tif.series[0].shape == (48, 40)
        if kind == "imagej":
            (xn, xd), (yn, yd) = tif.pages.first.tags["XResolution"].value, tif.pages.first.tags["YResolution"].value
            assert (xd / xn, yd / yn) == pytest.approx((0.1625, 0.1625), rel=1e-6) and tif.imagej_metadata["unit"] == "um"
        else:
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
            assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeY"]) == pytest.approx((0.1625, 0.1625))


def test_hyperstack_goes_channel_by_channel_with_one_intensity_map_per_channel(run_cli, active_model, tmp_path):
    """TZCYX in, TZCYX out; each channel mapped by its own percentiles over all its T and Z planes."""
    t, z, c, h, w = 2, 2, 2, 40, 48
    peaks = (0.04, 0.9)  # a dim and a bright channel: one map for both would squash the dim one
    data = np.stack([
        np.stack([np.stack([to_dtype(phantom(h, w, seed=10 * i + j) * peaks[k], np.uint16) for k in range(c)]) for j in range(z)])
        for i in range(t)
    ])
    src = tmp_path / "hyper.tif"
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "TZCYX", "spacing": 0.5, "unit": "um"})
    result = run_cli("enhance", src, "--out", tmp_path / "out", "--model", active_model)
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "out" / "hyper.tif") as tif:
        assert (tif.series[0].axes, tif.series[0].shape) == ("TZCYX", data.shape)
        out = tif.series[0].asarray()
    g = modelfile.load_model(active_model)[0]
    for k in range(c):
        planes = data[:, :, k].reshape(-1, h, w)
        expect = [io.from_unit(f, np.uint16) for f in enhance_frames(g, [io.to_unit(p) for p in planes], EnhanceOptions())]
        got = out[:, :, k].reshape(-1, h, w).astype(int)
        assert np.abs(got - np.stack(expect)).max() <= 2, k  # float paths: a grey level or two between CPUs
    shared = enhance_frames(g, [io.to_unit(p) for p in data.reshape(-1, h, w)], EnhanceOptions())
    shared = np.stack([io.from_unit(f, np.uint16) for f in shared]).reshape(data.shape)
    assert np.abs(shared.astype(int) - out).max() > 20  # one map for all channels would differ


def _jpeg_with_orientation(data: np.ndarray, orientation: int) -> bytes:
    """A JPEG of `data` with an EXIF APP1 segment (big-endian TIFF) whose IFD0 holds Orientation only."""
    import struct

    raw = cv2.imencode(".jpg", data, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    tiff = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return raw[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + raw[2:]


def test_jpeg_exif_orientation_output_displays_like_the_input(run_cli, tiny_identity_model, tmp_path):
    """A phone-style JPEG stored sideways with Orientation 6: the output is stored upright without the tag,
    so a viewer that honours EXIF (OpenCV's IMREAD_COLOR does) shows input and output the same way."""
    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:16, :16] = 255
    stored[:16, 32:] = (0, 0, 200)
    src = tmp_path / "in" / "phone.jpg"
    src.parent.mkdir()
    src.write_bytes(_jpeg_with_orientation(stored, 6))
    result = run_cli("enhance", src, "--out", tmp_path / "out", "--model", tiny_identity_model)
    assert result.exit_code == 0, result.output
    out = (tmp_path / "out" / "phone.jpg").read_bytes()
    shown_in = cv2.imdecode(np.frombuffer(src.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    shown_out = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_COLOR)
    assert shown_in.shape == shown_out.shape == (48, 32, 3)
    assert np.abs(shown_in.astype(int) - shown_out).mean() < 2  # JPEG re-encoding blurs the colour edges a little
    assert b"Exif\x00\x00" not in out  # upright pixels, no tag to rotate them again
