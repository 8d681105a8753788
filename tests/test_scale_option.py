"""--scale auto|S: which blur scale a model conditioned on it is told (issue 17), and bad values."""

import functools
import re
import subprocess

import numpy as np
import pytest
import torch

from ficli import io, modelfile
from ficli.degrade import Degradation, degrade, seed_for
from ficli.enhance import EnhanceOptions, enhance_frames
from ficli.nets import Generator, GeneratorConfig
from ficli.phantom import phantom, to_dtype

COND = GeneratorConfig(features=8, growth=4, layers=1, blocks=1, scale_input=True)


@pytest.fixture(scope="module")
def conditioned_model(tmp_path_factory):
    """A tiny conditioned generator whose output depends on s (out_scale 1, random weights)."""
    torch.manual_seed(0)
    g = Generator(COND, spectral_norm=False)
    with torch.no_grad():
        g.out_scale.fill_(0.05)
    return modelfile.save_model(tmp_path_factory.mktemp("m") / "cond.safetensors", g, COND, {"scale": 4})


def _image(tmp_path, s=None, side=96):
    x = phantom(side, side, seed=3, peak_photons=None)
    if s is not None:
        x = degrade(x, Degradation(scale=s), seed_for(0, "a"))
    path = tmp_path / "in" / "a.png"
    io.write_image(path, to_dtype(np.clip(x, 0, 1), np.uint16))
    return path


def _by_hand(model, path, s):
    g = modelfile.load_model(model)[0]
    frame = io.to_unit(io.read_image(path).data)
    with torch.no_grad():
        out = enhance_frames(functools.partial(g, scale=s), [frame], EnhanceOptions())[0]
    return io.from_unit(out, np.uint16)


def test_given_scale_is_what_the_model_is_told(run_cli, tmp_path, conditioned_model):
    src = _image(tmp_path, s=3)
    for s in ("2.5", "4"):
        result = run_cli("enhance", src, "--out", tmp_path / f"o{s}", "--model", conditioned_model, "--scale", s)
        assert result.exit_code == 0, result.output
        assert f"blur scale s = {float(s):.2f} (given)" in result.output
    a, b = (io.read_image(tmp_path / f"o{s}" / "a.png").data for s in ("2.5", "4"))
    assert np.abs(a.astype(int) - _by_hand(conditioned_model, src, 2.5).astype(int)).max() <= 1
    assert not np.array_equal(a, b)


def test_auto_tells_the_estimate_of_a_known_blur(run_cli, tmp_path, conditioned_model):
    result = run_cli("enhance", _image(tmp_path, s=3, side=256), "--out", tmp_path / "o", "--model", conditioned_model)
    assert result.exit_code == 0, result.output
    told = float(result.output.split("blur scale s = ")[1].split()[0])
    assert abs(told - 3) <= 0.5 and "(estimated)" in result.output


def test_image_too_small_to_estimate_gets_the_training_scale(run_cli, tmp_path, conditioned_model):
    result = run_cli("enhance", _image(tmp_path, side=16), "--out", tmp_path / "o", "--model", conditioned_model)
    assert result.exit_code == 0, result.output
    assert "blur scale s = 4.00" in result.output and "training scale" in result.output


def test_plain_model_is_told_nothing_with_auto(run_cli, tmp_path, tiny_identity_model):
    result = run_cli("enhance", _image(tmp_path), "--out", tmp_path / "o", "--model", tiny_identity_model)
    assert result.exit_code == 0 and "blur scale" not in result.output


@pytest.mark.hostile
@pytest.mark.parametrize("value", ["0.5", "9", "abc", "nan", "inf"])
def test_bad_scale_is_a_usage_error(run_cli, tmp_path, conditioned_model, value):
    result = run_cli("enhance", _image(tmp_path), "--out", tmp_path / "o", "--model", conditioned_model, "--scale", value)
    assert result.exit_code == 2 and "from 1" in result.output and "8" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.hostile
def test_scale_for_a_plain_model_is_a_usage_error(run_cli, tmp_path, tiny_identity_model):
    result = run_cli("enhance", _image(tmp_path), "--out", tmp_path / "o", "--model", tiny_identity_model, "--scale", "2")
    assert result.exit_code == 2 and "notconditioned" in re.sub(r"[\s│]", "", result.output)  # Typer's box wraps it
    assert not (tmp_path / "o" / "a.png").exists()


def test_video_tells_a_conditioned_model_one_scale(run_cli, tmp_path, conditioned_model):
    from ficli.ffmpeg import ffmpeg_exe

    src = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
                    "-t", "0.3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    result = run_cli("video", src, "--out", tmp_path / "a.mp4", "--model", conditioned_model, "--device", "cpu", "--scale", "2")
    assert result.exit_code == 0, result.output
    assert "blur scale s = 2 (given)" in result.output and (tmp_path / "a.mp4").stat().st_size > 0
    result = run_cli("video", src, "--out", tmp_path / "b.mp4", "--model", conditioned_model, "--device", "cpu")
    assert result.exit_code == 0 and "blur scale s = 4 (the model's training scale" in result.output
