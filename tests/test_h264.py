"""H.264 coding as the last link of the degradation chain (issue 24 item 2): `h264.code_frame` against
imageio-ffmpeg's own writer and reader (an mp4 container, not ficli's pipes), `Degradation.h264_crf`,
`ficli degrade --h264-crf` on real files, and the crops of `ficli train --degradations video`."""

from __future__ import annotations

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import tifffile

from ficli.errors import ConfigError
from ficli.image import h264
from ficli.image.degrade import Degradation, DegradationRanges, degrade, sample_degradation


def _texture(shape, seed=1) -> np.ndarray:
    """A blurred random 8-bit frame that spans 0-255 (fine detail for the coder to lose)."""
    x = cv2.GaussianBlur(np.random.default_rng(seed).random(shape[:2]).astype(np.float32), (0, 0), 1.5)
    x = ((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)
    return x if len(shape) == 2 else np.ascontiguousarray(np.stack([x, 255 - x, x[::-1]], axis=-1))


def _imageio_round_trip(tmp_path, frame: np.ndarray, crf: int) -> np.ndarray:
    """The frame written by imageio-ffmpeg as an mp4 (libx264, preset medium, 25 frames/s) and read back."""
    h, w = frame.shape[:2]
    pix = "gray" if frame.ndim == 2 else "rgb24"
    path = str(tmp_path / f"f{crf}.mp4")
    writer = imageio_ffmpeg.write_frames(path, (w, h), fps=25, pix_fmt_in=pix, pix_fmt_out="yuv420p", codec="libx264",
                                         quality=None, output_params=["-crf", str(crf), "-preset", "medium"], macro_block_size=1)
    writer.send(None)
    writer.send(frame)
    writer.close()
    reader = imageio_ffmpeg.read_frames(path, pix_fmt=pix, bpp=frame.shape[2] if frame.ndim == 3 else 1)
    next(reader)  # the metadata
    return np.frombuffer(next(reader), np.uint8).reshape(frame.shape)


@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 3)])
@pytest.mark.parametrize("crf", [0, 23, 35])
def test_code_frame_is_what_imageio_ffmpeg_writes_and_reads_back(tmp_path, shape, crf):
    frame = _texture(shape)
    coded = h264.code_frame(frame, crf)
    assert coded.dtype == np.uint8 and coded.shape == frame.shape
    assert np.array_equal(coded, _imageio_round_trip(tmp_path, frame, crf))


def test_higher_crf_loses_more_and_crf_0_is_within_one_level():
    frame = _texture((64, 64))
    errors = [np.abs(h264.code_frame(frame, crf).astype(int) - frame).mean() for crf in (0, 15, 23, 30, 40)]
    assert np.abs(h264.code_frame(frame, 0).astype(int) - frame).max() <= 1  # 4:2:0 conversion rounding only
    assert errors == sorted(errors) and errors[-1] > 5 * max(errors[1], 0.2)


def test_odd_sides_are_padded_and_cropped_back():
    frame = _texture((37, 51))
    coded = h264.code_frame(frame, 23)
    assert coded.shape == (37, 51)
    assert np.abs(coded.astype(int) - frame).mean() < 8


def test_code_frame_refuses_what_is_not_an_8_bit_frame():
    with pytest.raises(ValueError, match="uint8"):
        h264.code_frame(np.zeros((8, 8), np.uint16), 23)
    with pytest.raises(ValueError, match="uint8"):
        h264.code_frame(np.zeros((8, 8, 2), np.uint8), 23)


def test_code_unit_rounds_to_8_bits_of_top_and_codes_each_odd_channel():
    x = _texture((32, 40)).astype(np.float32) / 255 * 3.0  # a float image whose maximum is 3
    y = h264.code_unit(x, 0, top=3.0)
    assert y.dtype == np.float32 and np.abs(y - x).max() <= 3.0 / 255 + 1e-6
    two = np.stack([x, x[::-1]], axis=-1)
    coded = h264.code_unit(two, 23, top=3.0)
    assert coded.shape == two.shape
    assert np.array_equal(coded[..., 1], h264.code_unit(two[..., 1], 23, top=3.0))


def test_degradation_codes_last_and_checks_the_crf():
    x = _texture((64, 64)).astype(np.float32) / 255
    rng = np.random.default_rng(0)
    plain = degrade(x, Degradation(scale=2.0), rng)
    coded = degrade(x, Degradation(scale=2.0, h264_crf=30), rng)
    assert np.array_equal(coded, h264.code_unit(np.clip(plain, 0, plain.max()), 30, float(x.max())))
    for bad in (-1, 52, 2.5, float("nan")):
        with pytest.raises(ConfigError, match="--h264-crf"):
            Degradation(h264_crf=bad)


def test_degrade_command_h264_crf_codes_a_16_bit_tiff_and_keeps_its_type(run_cli, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    image = (_texture((64, 80)).astype(np.uint16) * 200 + 100)
    tifffile.imwrite(src / "a.tif", image)
    for name, extra in (("plain", []), ("coded", ["--h264-crf", "28"])):
        assert run_cli("degrade", src, "--out", tmp_path / name, "--scale", "2", *extra).exit_code == 0
    plain, coded = tifffile.imread(tmp_path / "plain" / "a.tif"), tifffile.imread(tmp_path / "coded" / "a.tif")
    assert coded.dtype == np.uint16 and coded.shape == image.shape
    step = float(image.max()) / 255  # 8 bits of the image's maximum (the PSF-free blur keeps it as top)
    levels = coded / step
    assert np.abs(levels - np.round(levels)).max() < 0.01 and len(np.unique(coded)) <= 256
    error, plain_error = np.abs(coded.astype(float) - image).mean(), np.abs(plain.astype(float) - image).mean()
    assert plain_error < error < plain_error + 8 * step  # coded: a little further from the sharp image
    assert np.array_equal(tifffile.imread(src / "a.tif"), image)  # the input is untouched


def test_degrade_command_refuses_a_crf_out_of_range(run_cli, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", _texture((16, 16)))
    result = run_cli("degrade", src, "--out", tmp_path / "o", "--h264-crf", "60")
    assert result.exit_code == 2 and "--h264-crf" in result.output and "0 to 51" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "a.tif").exists()


def test_video_ranges_code_about_half_of_the_blurred_crops_and_no_sharp_one():
    from ficli.training.pairs import RANGES, RESAMPLING

    video = RANGES["video"]
    assert video == DegradationRanges(**{**RESAMPLING.__dict__, "h264_p": 0.5})
    rng = np.random.default_rng(0)
    draws = [sample_degradation(video, rng) for _ in range(2000)]
    blurred = [d for d in draws if d.scale > 1]
    coded = [d for d in blurred if d.h264_crf is not None]
    assert all(d.h264_crf is None for d in draws if d.scale == 1)
    assert 0.45 < len(coded) / len(blurred) < 0.55
    assert {d.h264_crf for d in coded} == set(range(15, 31))
    assert all(d.psf_sigma == 0 and d.poisson_peak == 0 and d.gaussian_sigma == 0 for d in draws)
