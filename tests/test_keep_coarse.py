"""Keeping the input's coarse content (issue 24, never harm): `degrade.keep_coarse` and its numpy
form against a Gaussian blur written out here, what it keeps and drops, and `--keep-coarse` /
`--free-coarse` through enhance, the API and video."""

import functools
import subprocess

import numpy as np
import pytest
import torch

from ficli.image import io, provenance
from ficli.image.degrade import COARSE_RADIUS, PSF_S_PER_SIGMA, keep_coarse, keep_coarse_array
from ficli.image.phantom import phantom, to_dtype
from ficli.inference.enhance import EnhanceOptions, enhance_frames
from ficli.model import modelfile

from conftest import unboxed


def _reference(y: np.ndarray, x: np.ndarray, s: float) -> np.ndarray:
    """y − G_σ(y − x) for one (H, W) plane: σ = s/2.4 px, taps out to COARSE_RADIUS, edges repeated,
    as two explicit 1-D convolutions."""
    sigma = min(max(s, 1.0), 6.0) / 2.4
    offsets = np.arange(-COARSE_RADIUS, COARSE_RADIUS + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    d = np.pad((y - x).astype(np.float64), COARSE_RADIUS, mode="edge")
    d = np.apply_along_axis(lambda r: np.convolve(r, taps, mode="valid"), 1, d)
    d = np.apply_along_axis(lambda c: np.convolve(c, taps, mode="valid"), 0, d)
    return y - d


@pytest.mark.parametrize("s", [1.0, 1.7, 3.0, 4.0, 8.0])
def test_keep_coarse_equals_a_gaussian_written_out(s):
    rng = np.random.default_rng(0)
    x = rng.random((2, 37, 52)).astype(np.float32)
    y = x + rng.normal(0, 0.2, x.shape).astype(np.float32)
    want = np.stack([_reference(a, b, s) for a, b in zip(y, x)])
    torch_form = keep_coarse(torch.from_numpy(y)[:, None], torch.from_numpy(x)[:, None], s)[:, 0].numpy()
    np.testing.assert_allclose(torch_form, want, atol=2e-6)
    np.testing.assert_allclose(keep_coarse_array(y, x, s), want, atol=2e-6)
    assert PSF_S_PER_SIGMA == 2.4


def test_one_scale_per_image_of_a_batch():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((2, 1, 30, 41)).astype(np.float32))
    y = x + 0.1
    y[:, :, ::2, ::2] += 0.3
    both = keep_coarse(y, x, torch.tensor([1.5, 4.0]))
    torch.testing.assert_close(both[:1], keep_coarse(y[:1], x[:1], 1.5))
    torch.testing.assert_close(both[1:], keep_coarse(y[1:], x[1:], 4.0))


def test_a_brightness_change_is_dropped_and_pixel_detail_kept():
    """A correction that shifts the brightness (an offset and a glow 20 px wide: coarse) is taken off
    (to 1 % of it); one that alternates pixel by pixel (finer than a blur of s = 4 passes) is kept."""
    x = phantom(64, 64, seed=2, peak_photons=None)[None].astype(np.float32)
    r2 = (np.arange(64)[:, None] - 30.0) ** 2 + (np.arange(64)[None] - 34.0) ** 2
    glow = (0.05 + 0.1 * np.exp(-r2 / (2 * 20.0**2))).astype(np.float32)
    np.testing.assert_allclose(keep_coarse_array(x + glow, x, 2.0), x, atol=1.5e-3)
    checker = np.where((np.arange(64)[:, None] + np.arange(64)[None]) % 2 == 0, 0.05, -0.05).astype(np.float32)
    kept = (keep_coarse_array(x + checker, x, 4.0) - x)[0]
    inner = (slice(COARSE_RADIUS, -COARSE_RADIUS),) * 2  # the repeated edges break the alternation
    np.testing.assert_allclose(kept[inner], checker[inner], atol=1e-4)
    assert np.abs(keep_coarse_array(x + checker, x, 1.0) - x).max() < 0.05  # at s = 1 a blur passes some of it


def test_enhance_keeps_the_coarse_content_by_default_and_frees_it_when_asked(run_cli, tmp_path, conditioned_model):
    src = tmp_path / "in" / "a.tif"
    io.write_image(src, to_dtype(phantom(96, 96, seed=3, peak_photons=None), np.uint16))
    frame = io.to_unit(io.read_image(src).data)
    g = modelfile.load_model(conditioned_model)[0]
    with torch.no_grad():
        free = enhance_frames(functools.partial(g, scale=3.0), [frame], EnhanceOptions(keep_coarse=False))[0]
    outputs = {}
    for flag in ("--keep-coarse", "--free-coarse", None):
        out = tmp_path / str(flag)
        args = ["enhance", src, "--out", out, "--model", conditioned_model, "--scale", "3", "-q"] + ([flag] if flag else [])
        assert run_cli(*args).exit_code == 0
        outputs[flag] = io.read_image(out / "a.tif").data.astype(np.float64) / 65535
        assert provenance.read_image_record(out / "a.tif")["keep_coarse"] is (flag != "--free-coarse")
    assert np.array_equal(outputs[None], outputs["--keep-coarse"])
    assert np.abs(outputs["--free-coarse"] - np.clip(free, 0, 1)).max() <= 1 / 65535
    lo, hi = np.percentile(frame, [0.1, 99.9])
    want = keep_coarse_array((free[None] - lo) / (hi - lo), (frame[None] - lo) / (hi - lo), 3.0)[0] * (hi - lo) + lo
    assert np.abs(outputs[None] - np.clip(want, 0, 1)).max() <= 1 / 65535
    assert np.abs(outputs[None] - frame).mean() < np.abs(outputs["--free-coarse"] - frame).mean()


def test_api_and_video_take_it_too(run_cli, tmp_path, conditioned_model):
    from ficli import api
    from ficli.video.ffmpeg import ffmpeg_exe

    model = api.load_model(conditioned_model, device="cpu")
    image = to_dtype(phantom(64, 64, seed=4, peak_photons=None), np.uint16)
    kept, record = api.enhance(model, image, scale=2.0, return_record=True)
    free = api.enhance(model, image, scale=2.0, keep_coarse=False)
    assert record["keep_coarse"] is True and not np.array_equal(kept, free)
    src = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
                    "-t", "0.2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    frames = {}
    for flag in ("--keep-coarse", "--free-coarse"):
        out = tmp_path / f"{flag}.mp4"
        result = run_cli("video", src, "--out", out, "--model", conditioned_model, "--device", "cpu", "--scale", "2", "-q",
                         "--frames-dir", tmp_path / flag, flag)
        assert result.exit_code == 0, result.output
        frames[flag] = io.read_image(sorted((tmp_path / flag).glob("*.png"))[0]).data
    assert not np.array_equal(frames["--keep-coarse"], frames["--free-coarse"])


def test_a_model_trained_with_the_coarse_content_kept_always_runs_with_it(run_cli, tmp_path, conditioned_model):
    """`ficli train --keep-coarse` makes a model whose raw output is not an image (`coarse_kept`):
    enhance, video and the API apply the step, --free-coarse is refused naming the file, and the
    export graph's builder takes the field from the file's architecture."""
    import dataclasses

    from ficli import api
    from ficli.errors import ConfigError
    from ficli.tools.export import build_export_graph

    g, config, meta = modelfile.load_model(conditioned_model)
    kept_config = dataclasses.replace(config, coarse_kept=True)
    g.config = kept_config  # the same weights, recorded as trained with the coarse content kept
    kept_model = modelfile.save_model(tmp_path / "kept.safetensors", g, kept_config, {"scale": 4})
    src = tmp_path / "in" / "a.tif"
    io.write_image(src, to_dtype(phantom(64, 64, seed=5, peak_photons=None), np.uint16))
    result = run_cli("enhance", src, "--out", tmp_path / "free", "--model", kept_model, "--scale", "3", "--free-coarse", "-q")
    assert result.exit_code == 2 and "coarse content kept" in unboxed(result.output)  # a usage error
    assert "kept.safetensors" in result.output.replace("│", "").replace("\n", "").replace(" ", "")
    assert "Traceback" not in result.output and not (tmp_path / "free" / "a.tif").exists()
    for model, out in ((kept_model, "k"), (conditioned_model, "c")):
        assert run_cli("enhance", src, "--out", tmp_path / out, "--model", model, "--scale", "3", "-q").exit_code == 0
    assert np.array_equal(io.read_image(tmp_path / "k" / "a.tif").data, io.read_image(tmp_path / "c" / "a.tif").data)
    model = api.load_model(kept_model, device="cpu")
    with pytest.raises(ConfigError, match="coarse content kept"):
        api.enhance(model, io.read_image(src).data, scale=3.0, keep_coarse=False)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.runner(3.0)(x), keep_coarse(g(x, 3.0), x, 3.0))
    assert build_export_graph(**dataclasses.asdict(kept_config)).generator.config.coarse_kept
    assert "trained with it kept" in unboxed(run_cli("info", kept_model).output)


def test_from_a_told_s_of_3_25_the_default_takes_the_output_as_it_is(run_cli, tmp_path, conditioned_model):
    """Neither flag: the coarse content is kept below a told s of FREE_FROM (3.25) and not from it up
    (`degrade.coarse_kept`); --keep-coarse keeps it there too. Through enhance (file and record),
    the API, video and the rule itself."""
    from ficli import api
    from ficli.image.degrade import FREE_FROM, coarse_kept
    from ficli.video.ffmpeg import ffmpeg_exe

    assert FREE_FROM == 3.25
    assert coarse_kept(None, 3.2) and not coarse_kept(None, 3.25) and not coarse_kept(None, 4.0)
    assert coarse_kept(True, 4.0) and not coarse_kept(False, 1.5) and not coarse_kept(None, None) and not coarse_kept(True, None)
    src = tmp_path / "in" / "a.tif"
    io.write_image(src, to_dtype(phantom(96, 96, seed=5, peak_photons=None), np.uint16))
    outputs = {}
    for flag in ("--keep-coarse", "--free-coarse", None):
        out = tmp_path / str(flag)
        result = run_cli("enhance", src, "--out", out, "--model", conditioned_model, "--scale", "4", *([flag] if flag else []))
        assert result.exit_code == 0  # not quiet: the note is shown where it is given
        assert ("the network's output is written as it is" in result.output) is (flag is None)
        outputs[flag] = io.read_image(out / "a.tif").data
        assert provenance.read_image_record(out / "a.tif")["keep_coarse"] is (flag == "--keep-coarse")
    assert np.array_equal(outputs[None], outputs["--free-coarse"])
    assert not np.array_equal(outputs[None], outputs["--keep-coarse"])
    model = api.load_model(conditioned_model, device="cpu")
    image = io.read_image(src).data
    free, record = api.enhance(model, image, scale=4.0, return_record=True)
    assert record["keep_coarse"] is False and np.array_equal(free, outputs[None])
    assert np.array_equal(api.enhance(model, image, scale=4.0, keep_coarse=True), outputs["--keep-coarse"])
    assert np.array_equal(api.enhance(model, image, scale=3.0), api.enhance(model, image, scale=3.0, keep_coarse=True))
    clip = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
                    "-t", "0.2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True)
    frames = {}
    for flag in ("--free-coarse", None):
        frames[flag] = tmp_path / f"frames{flag}"
        args = ["video", clip, "--out", tmp_path / f"{flag}.mp4", "--model", conditioned_model, "--device", "cpu", "--scale", "4",
                "-q", "--frames-dir", frames[flag]] + ([flag] if flag else [])
        assert run_cli(*args).exit_code == 0
    assert [io.read_image(p).data.tobytes() for p in sorted(frames[None].glob("*.png"))] == \
        [io.read_image(p).data.tobytes() for p in sorted(frames["--free-coarse"].glob("*.png"))]


def test_a_model_file_that_asks_for_the_coarse_step_gets_it_at_every_s(run_cli, tmp_path, conditioned_model):
    """Metadata "keep_coarse": true (the noise-kept model, whose card measured that it loses without
    the step): neither flag keeps the coarse content at a told s of 4 too, as --keep-coarse does;
    --free-coarse still frees it; the API and the export graph follow the file. The shipped
    noise-kept model carries it; the default does not."""
    from ficli import api
    from ficli.inference.runtime import check_coarse, load_generator
    from ficli.tools.export import ExportGraph

    g, config, meta = modelfile.load_model(conditioned_model)
    asks = modelfile.save_model(tmp_path / "asks.safetensors", g, config, {**meta, "keep_coarse": True})
    src = tmp_path / "in" / "a.tif"
    io.write_image(src, to_dtype(phantom(96, 96, seed=5, peak_photons=None), np.uint16))
    outputs = {}
    for model, flag in ((asks, None), (asks, "--free-coarse"), (conditioned_model, "--keep-coarse"), (conditioned_model, "--free-coarse")):
        out = tmp_path / f"{model.stem}{flag}"
        result = run_cli("enhance", src, "--out", out, "--model", model, "--scale", "4", *([flag] if flag else []))
        assert result.exit_code == 0 and "the network's output is written as it is" not in result.output
        outputs[model.stem, flag] = io.read_image(out / "a.tif").data
        assert provenance.read_image_record(out / "a.tif")["keep_coarse"] is (flag != "--free-coarse")
    assert np.array_equal(outputs["asks", None], outputs["cond", "--keep-coarse"])
    assert np.array_equal(outputs["asks", "--free-coarse"], outputs["cond", "--free-coarse"])
    image = io.read_image(src).data
    assert np.array_equal(api.enhance(api.load_model(asks, device="cpu"), image, scale=4.0), outputs["asks", None])
    assert ExportGraph(g, always_coarse=True).free_from is None and ExportGraph(g).free_from == 3.25
    assert check_coarse(load_generator("noise-kept", torch.device("cpu"))[1], None) is True
    assert check_coarse(load_generator(None, torch.device("cpu"))[1], None) is None
