"""--scale auto|S: which blur scale a model conditioned on it is told (issue 17), and bad values."""

import re
import subprocess

import numpy as np
import pytest
import torch

from ficli.image import io
from ficli.model import modelfile
from ficli.image.degrade import Degradation, degrade, seed_for
from ficli.inference.enhance import EnhanceOptions, enhance_frames
from ficli.image.phantom import phantom, to_dtype

from conftest import TINY_CONDITIONED

COND = TINY_CONDITIONED


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
    with torch.no_grad():  # told s as `--scale S` tells it (so the coarse content is kept too)
        out = enhance_frames(g, [frame], EnhanceOptions(scale_for=lambda frames, upscale: (s, "given")))[0]
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
    assert abs(told - 3) <= 0.5 and "(estimated: learned " in result.output


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
    from ficli.video.ffmpeg import ffmpeg_exe

    src = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
                    "-t", "0.3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    result = run_cli("video", src, "--out", tmp_path / "a.mp4", "--model", conditioned_model, "--device", "cpu", "--scale", "2")
    assert result.exit_code == 0, result.output
    assert "blur scale s = 2 (given)" in result.output and (tmp_path / "a.mp4").stat().st_size > 0
    result = run_cli("video", src, "--out", tmp_path / "b.mp4", "--model", conditioned_model, "--device", "cpu")
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert "(estimated from 3 frames: learned " in text and "; h264 compression hides blur" in text  # said once
    assert result.output.count("blur scale s =") == 1


# --- one s per video, estimated (issue 17 item 1) -------------------------------------------------


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _video(path, s=None, side=256, count=8, width=None, psf_sigma=0.6, flat=None):
    """A lossless gray video (FFV1 in .mkv) of phantom frames (moving 2 px a frame), each shrunk
    and enlarged ×s (sharp when s is None), 8-bit as RGB into the encoder; `flat` "flat" (one gray)
    or "noise" (white noise) instead of the phantom."""
    from test_video import write_clip

    width = width or side
    base = phantom(side, width + 2 * count, seed=3, peak_photons=None, background=0.1, psf_sigma=psf_sigma)
    frames = []
    for i in range(count):
        x = base[:, 2 * i : 2 * i + width]
        if flat:
            x = np.full_like(x, 0.4) if flat == "flat" else np.random.default_rng(i).random(x.shape)
        if s is not None and not flat:
            x = degrade(x, Degradation(scale=s), seed_for(0, "a"))
        gray = np.round(np.clip(x, 0, 1) * 220 + 20).astype(np.uint8)
        frames.append(np.repeat(gray[..., None], 3, axis=2))
    return write_clip(path, frames, audio=False, codec=("-c:v", "ffv1", "-pix_fmt", "gray"))


def _told(output: str) -> tuple[float, str]:
    """(s, how) of the one 'blur scale s = X (how)' note."""
    text = _flat(output)
    assert text.count("blur scale s =") == 1, text
    m = re.search(r"blur scale s = ([\d.]+) \((.*?)\)(?: |$)", text)
    return float(m.group(1)), m.group(2)


def _recorded(src, model, requested=None, **extra):
    """The scale every network call of `enhance_video` got, with the model's own chooser."""
    from ficli.inference.runtime import load_generator, scale_chooser
    from ficli.video.pipeline import VideoOptions, enhance_video

    g, info = load_generator(model, torch.device("cpu"))
    seen = set()

    def generator(x, scale=None):
        seen.add(scale)
        return g(x, scale=scale)

    out = src.with_name(src.stem + "_out.mp4")
    notes = []
    options = VideoOptions(out=out, overwrite=True, preset="ultrafast", scale_for=scale_chooser(info, requested), **extra)
    report = enhance_video(src, generator, options, on_notice=notes.append)
    assert report.frames > 0 and out.stat().st_size > 0
    return seen, report.plan.scale, notes


@pytest.mark.parametrize("layout", [[], ["--side-by-side"]], ids=["plain", "side-by-side"])
def test_video_auto_tells_the_estimate_of_a_known_blur(run_cli, tmp_path, conditioned_model, layout):
    src = _video(tmp_path / "x3.mkv", s=3)
    result = run_cli("video", src, "--out", tmp_path / "o.mp4", "--model", conditioned_model, "--device", "cpu", *layout)
    assert result.exit_code == 0, result.output
    s, how = _told(result.output)
    assert how.startswith("estimated from 8 frames: learned "), (s, how)
    assert abs(s - 3) <= 0.5 or ("unsure" in how and 1.5 <= s <= 3), (s, how)  # unsure: told less, never more


def test_video_network_is_told_the_noted_estimate_in_every_call(tmp_path, conditioned_model):
    seen, planned, notes = _recorded(_video(tmp_path / "x3.mkv", s=3), conditioned_model)
    assert seen == {planned} and 1.5 <= planned <= 3.5
    told = [n for n in notes if "blur scale" in n]
    assert len(told) == 1 and told[0].startswith(f"blur scale s = {planned:g} (estimated from 8 frames: learned "), told


def test_sharp_video_reads_near_one_and_upscale_is_seen_as_the_network_sees_it(run_cli, tmp_path, conditioned_model):
    src = _video(tmp_path / "sharp.mkv")
    result = run_cli("video", src, "--out", tmp_path / "o.mp4", "--model", conditioned_model, "--device", "cpu")
    assert result.exit_code == 0, result.output
    s, _ = _told(result.output)
    assert 1 <= s <= 1.5, s
    # --upscale 2 enlarges the frames before the network: as blurred as a ×2 enlargement, told as
    # the estimate on the native grid (about 1) times 2
    result = run_cli("video", src, "--out", tmp_path / "u.mp4", "--model", conditioned_model, "--device", "cpu", "--upscale", "2",
                     "--max-frames", "2")
    assert result.exit_code == 0, result.output
    s, how = _told(result.output)
    assert abs(s - 2) <= 0.5 and how.startswith("estimated from 2 frames") and "× --upscale 2" in how, (s, how)


def test_given_scale_overrides_the_estimate_of_a_video(run_cli, tmp_path, conditioned_model):
    src = _video(tmp_path / "x3.mkv", s=3, count=3)
    result = run_cli("video", src, "--out", tmp_path / "o.mp4", "--model", conditioned_model, "--device", "cpu", "--scale", "2.5")
    assert result.exit_code == 0, result.output
    assert _told(result.output) == (2.5, "given") and (tmp_path / "o.mp4").stat().st_size > 0
    seen, planned, _ = _recorded(src, conditioned_model, 2.5)
    assert seen == {2.5} and planned == 2.5


def test_large_frames_are_estimated_at_their_own_pixel_spacing(tmp_path):
    """Above a million pixels the range samples are thinned by a pixel stride (2 here), which would
    halve what the estimate measures; it reads full-resolution central crops instead."""
    from ficli.inference.runtime import scale_chooser
    from ficli.video.pipeline import VideoOptions, plan_video

    src = _video(tmp_path / "big.mkv", s=3, side=1000, width=1100, count=2)
    info = {"path": "m", "config": COND, "scale": 4}
    notes = []
    plan = plan_video(src, VideoOptions(out=tmp_path / "o.mp4", scale_for=scale_chooser(info, None)), on_notice=notes.append)
    assert abs(plan.scale - 3) <= 0.5, notes


@pytest.mark.hostile
@pytest.mark.parametrize("kind", ["flat", "noise", "tiny"])
def test_video_too_flat_or_small_to_estimate_gets_the_training_scale(run_cli, tmp_path, conditioned_model, kind):
    src = _video(tmp_path / f"{kind}.mkv", flat=kind, side=16 if kind == "tiny" else 128, count=3)
    result = run_cli("video", src, "--out", tmp_path / "o.mp4", "--model", conditioned_model, "--device", "cpu")
    assert result.exit_code == 0, result.output
    s, how = _told(result.output)
    assert s == 4 and how.startswith("image too flat" if kind == "noise" else "image too small or flat"), how
    assert how.endswith("the model's training scale") and (tmp_path / "o.mp4").stat().st_size > 0


def test_video_help_says_what_auto_does_for_a_video(run_cli):
    text = re.sub(r"[\s│]+", " ", run_cli("video", "--help").output)
    assert "estimated once for the whole video from the power spectrum of 16 of the frames" in text
    assert "central 512×512 pixels of each, as the network sees them after --upscale" in text and "from 1 to 8" in text


def test_plain_model_is_told_nothing_in_a_video(tmp_path, tiny_identity_model):
    seen, planned, notes = _recorded(_video(tmp_path / "x3.mkv", s=3, count=2), tiny_identity_model)
    assert seen == {None} and planned is None and not any("blur scale" in n for n in notes)
