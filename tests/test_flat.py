"""Flat in, flat out (issue 14.6): a constant image, stack, colour channel or video frame comes back
exactly unchanged from `ficli enhance` / `ficli video` with the shipped default model, and a nearly
flat one (one pixel differs) stays bounded."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from ficli.video import ffmpeg
from ficli.image import io
from ficli.image.phantom import phantom, to_dtype
from ficli.inference.runtime import default_model_path

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("one_torch_thread")]


def _enhance(run_cli, tmp_path, name, *extra):
    result = run_cli("enhance", tmp_path / name, "--out", tmp_path / "out", "--model", default_model_path(), *extra)
    assert result.exit_code == 0, result.output
    return io.read_image(tmp_path / "out" / name)


FLAT = {
    "zero-16bit.png": np.zeros((40, 52), np.uint16),
    "1000-16bit.png": np.full((40, 52), 1000, np.uint16),
    "white-8bit.png": np.full((33, 47), 255, np.uint8),
    "colour-8bit.png": np.broadcast_to(np.array([200, 30, 0], np.uint8), (36, 44, 3)).copy(),
    "float.tif": np.full((36, 44), 0.37, np.float32),
    "stack-16bit.tif": np.full((3, 36, 44), 4095, np.uint16),
}


@pytest.mark.parametrize("name", FLAT)
def test_flat_image_comes_back_unchanged(run_cli, tmp_path, name):
    data = FLAT[name]
    io.write_image(tmp_path / name, data, is_stack=name.startswith("stack"))
    out = _enhance(run_cli, tmp_path, name)
    assert out.data.dtype == data.dtype and np.array_equal(out.data, data)  # before the fix: 1000 → 719..1179


def test_flat_image_enlarged_stays_flat(run_cli, tmp_path):
    io.write_image(tmp_path / "a.png", np.full((20, 24), 1000, np.uint16))
    out = _enhance(run_cli, tmp_path, "a.png", "--upscale", "2")
    assert out.data.shape == (40, 48) and np.array_equal(out.data, np.full((40, 48), 1000, np.uint16))


def test_flat_channel_and_flat_frame_stay_flat_beside_real_content(run_cli, tmp_path):
    """A green-only RGB image keeps red and blue at 0; a dark frame in a stack stays dark."""
    green = to_dtype(phantom(48, 48, seed=1), np.uint8)
    rgb = np.zeros((48, 48, 3), np.uint8)
    rgb[..., 1] = green
    io.write_image(tmp_path / "green.png", rgb)
    out = _enhance(run_cli, tmp_path, "green.png").data
    assert not out[..., 0].any() and not out[..., 2].any()
    assert not np.array_equal(out[..., 1], green)  # the channel with content was enhanced

    stack = np.stack([to_dtype(phantom(48, 48, seed=2), np.uint16), np.full((48, 48), 300, np.uint16)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    out = _enhance(run_cli, tmp_path, "stack.tif").data
    assert np.array_equal(out[1], stack[1]) and not np.array_equal(out[0], stack[0])


@pytest.mark.parametrize("spike", [1001, 65535])
def test_nearly_flat_image_stays_bounded(run_cli, tmp_path, spike):
    """One pixel differs: the range (hi − lo) is that pixel's step, so the output stays within a
    small fraction of it: a 1-level step stays within 2 levels; a hot pixel (65535 on 1000) gets the
    model's dark halo close to it (the over-sharpening of issue 14.10) and leaves the background
    beyond 12 px within 2 % of the step, never NaN, never a burst over the whole image. The image is
    too flat for the blur-scale estimate, so the robust default model is told its training scale,
    4, its strongest setting (measured on an AMD EPYC: 751 of 64535, 1.2 %; the paper model: 358, 0.55 %)."""
    data = np.full((64, 64), 1000, np.uint16)
    data[30, 30] = spike
    io.write_image(tmp_path / "a.png", data)
    out = _enhance(run_cli, tmp_path, "a.png").data.astype(np.int64)
    step = spike - 1000
    if step == 1:
        assert np.abs(out - 1000).max() <= 2
    else:
        yy, xx = np.mgrid[:64, :64]
        far = np.hypot(yy - 30, xx - 30) > 12
        assert np.abs(out[far] - 1000).max() <= 0.02 * step
        assert out[30, 30] >= spike * 0.9


def test_flat_video_comes_back_flat(run_cli, tmp_path):
    from test_video import FAST, write_clip

    frames = [np.full((48, 64, 3), 90, np.uint8)] * 3 + [np.zeros((48, 64, 3), np.uint8)] * 2
    src = write_clip(tmp_path / "flat.mp4", frames, audio=False)
    result = run_cli("video", src, "--model", default_model_path(), "--out", tmp_path / "o.mp4",
                     "--frames-dir", tmp_path / "frames", *FAST)
    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "frames").iterdir())
    decoded = [np.asarray(io.read_image(p).data) for p in pngs]
    source = [np.asarray(io.read_image(p).data) for p in _decoded_pngs(src, tmp_path)]
    assert len(decoded) == 5
    for got, want in zip(decoded, source):
        assert got.min() == got.max() == want.min() == want.max()


def _decoded_pngs(src, tmp_path):
    """The input's frames as ffmpeg decodes them (the encoder may have moved 90 by a level)."""
    import subprocess

    folder = tmp_path / "src_frames"
    folder.mkdir()
    subprocess.run([ffmpeg.ffmpeg_exe(), "-loglevel", "error", "-i", str(src), str(folder / "f_%03d.png")], check=True)
    return sorted(folder.iterdir())
