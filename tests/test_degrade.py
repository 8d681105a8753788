import numpy as np
import pytest
import torch

from ficli.image.degrade import (
    KERNELS, Degradation, DegradationRanges, bicubic_resize, degrade, degrade_batch, degrade_with_clean, downscale, resize_array,
    PSF_S_PER_SIGMA, blur_scale, quantize, sample_degradation, seed_for, shrink_enlarge, small_size,
)
from typer.testing import CliRunner

from ficli.cli import app
from ficli.errors import ConfigError
from ficli.image.phantom import phantom


@pytest.mark.parametrize("size", [(8, 6), (70, 50), (32, 17)])
def test_bicubic_equals_pil_bicubic_both_ways(size):
    pil = pytest.importorskip("PIL.Image")
    x = np.random.default_rng(0).random((32, 24)).astype(np.float32)
    ref = np.asarray(pil.fromarray(x, mode="F").resize(size[::-1], pil.BICUBIC))
    assert np.abs(resize_array(x, size) - ref).max() < 1e-5


def test_bicubic_keeps_a_constant_and_a_linear_ramp():
    flat = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(bicubic_resize(flat, (4, 4)), torch.full((1, 1, 4, 4), 0.3), atol=1e-6)
    line = torch.arange(8.0)[None, None, None].repeat(1, 1, 4, 1)
    up = bicubic_resize(line, (4, 16))[0, 0, 0]
    assert torch.allclose(up[3:-3], (torch.arange(16.0) / 2 - 0.25)[3:-3], atol=1e-5)


@pytest.mark.parametrize("shape", [(64, 48), (61, 47), (3, 5), (1, 1), (1, 9), (30, 22, 3)])
def test_degrade_keeps_shape_and_dtype(shape):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    y = degrade(x, Degradation(scale=4, psf_sigma=1.0, poisson_peak=100, gaussian_sigma=0.01), seed_for(0, "a"))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()


def test_same_seed_same_output_other_seed_other_noise():
    x = phantom(64, 64, seed=0, peak_photons=None)
    s = Degradation(poisson_peak=50)
    a = degrade(x, s, seed_for(7, "f.png"))
    b = degrade(x, s, seed_for(7, "f.png"))
    c = degrade(x, s, seed_for(8, "f.png"))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_degradation_loses_detail_and_more_with_larger_scale():
    x = phantom(96, 96, seed=0, peak_photons=None)
    err = [np.sqrt(np.mean((shrink_enlarge(x, s) - x) ** 2)) for s in (1, 2, 4)]
    assert err[0] == 0 and 0 < err[1] < err[2]


def test_flat_image_stays_flat_through_the_noise_free_model():
    x = np.full((40, 36), 0.25, np.float32)
    assert np.allclose(degrade(x, Degradation(psf_sigma=2.0), seed_for(0, "x")), 0.25, atol=1e-6)


def test_poisson_noise_variance_follows_the_peak():
    x = np.full((256, 256), 0.5, np.float32)
    noisy = degrade(x, Degradation(scale=1, poisson_peak=100), seed_for(0, "p"))
    # counts ~ Poisson(100 at max = 0.5): variance of value = (0.5/100)^2 * 100 = 0.0025
    assert noisy.var() == pytest.approx(0.0025, rel=0.1)


def test_resize_array_handles_gray_and_rgb():
    img = np.random.default_rng(1).random((10, 12, 3)).astype(np.float32)
    assert resize_array(img, (20, 24)).shape == (20, 24, 3)
    assert resize_array(img[..., 0], (5, 6)).shape == (5, 6)


def test_bad_settings_raise_config_error():
    with pytest.raises(ConfigError, match="scale"):
        Degradation(scale=0)
    with pytest.raises(ConfigError, match="psf-sigma"):
        Degradation(psf_sigma=-1)


def test_degrade_keeps_tiff_axes_and_calibration_and_evaluate_scores_a_hyperstack(run_cli, tmp_path):
    """issue 14.8: a T stack stays T, an OME-TIFF keeps its OME-XML, a TZCYX hyperstack is degraded
    and then scored plane by plane; degrade keeps the size, so the pixel size stays."""
    import json

    import tifffile

    from ficli.image.phantom import to_dtype

    planes = lambda n, seed: np.stack([to_dtype(phantom(24, 20, seed=seed + i), np.uint16) for i in range(n)])
    hr = tmp_path / "hr"
    hr.mkdir()
    tifffile.imwrite(hr / "t.tif", planes(3, 0), imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                     metadata={"axes": "TYX", "finterval": 2.0, "unit": "um"})
    tifffile.imwrite(hr / "o.ome.tif", planes(2, 5), photometric="minisblack", metadata={"axes": "CYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65})
    tifffile.imwrite(hr / "h.tif", planes(8, 9).reshape(2, 2, 2, 24, 20), imagej=True, metadata={"axes": "TZCYX"})
    result = run_cli("degrade", hr, "--out", tmp_path / "lr")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "lr" / "t.tif") as tif:
        xn, xd = tif.pages.first.tags["XResolution"].value
        assert tif.series[0].axes == "TYX" and tif.imagej_metadata["finterval"] == 2.0 and xd / xn == pytest.approx(0.65)
    with tifffile.TiffFile(tmp_path / "lr" / "o.ome.tif") as tif:
        assert tif.is_ome and tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]["PhysicalSizeX"] == 0.65
    with tifffile.TiffFile(tmp_path / "lr" / "h.tif") as tif:
        assert (tif.series[0].axes, tif.series[0].shape) == ("TZCYX", (2, 2, 2, 24, 20))
    result = run_cli("evaluate", hr, tmp_path / "lr", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text())["methods"][0]["n"] == 3
# ------------------------------------------------------------ the family of kernels, continuous s


@pytest.mark.parametrize("kernel", KERNELS)
def test_scale_one_without_blur_or_noise_is_exactly_the_identity(kernel):
    x = phantom(37, 29, seed=4)
    assert np.array_equal(degrade(x, Degradation(scale=1, kernel=kernel), seed_for(0, "a")), x)
    rgb = np.random.default_rng(0).random((9, 11, 3)).astype(np.float32)
    assert np.array_equal(shrink_enlarge(rgb, 1.0, kernel), rgb)


@pytest.mark.parametrize("scale", [1.5, 2.5, 3.7, 4.0, 7.3])
def test_pil_kernel_equals_pil_bicubic_at_non_integer_factors(scale):
    pil = pytest.importorskip("PIL.Image")
    x = np.random.default_rng(0).random((61, 47)).astype(np.float32)
    (nh, H), (nw, W) = small_size(61, scale), small_size(47, scale)
    assert abs(H / nh - scale) <= 0.5 / nh + 1e-9 and H >= 61 and W >= 47
    padded = np.pad(x, ((0, H - 61), (0, W - 47)), mode="reflect")
    small = np.asarray(pil.fromarray(padded, mode="F").resize((nw, nh), pil.BICUBIC))
    assert np.abs(downscale(padded, (nh, nw), "pil") - small).max() < 1e-5
    back = np.asarray(pil.fromarray(small, mode="F").resize((W, H), pil.BICUBIC))[:61, :47]
    assert np.abs(shrink_enlarge(x, scale, "pil") - back).max() < 1e-5


def test_opencv_kernels_are_opencv_itself():
    cv2 = pytest.importorskip("cv2")
    x = np.random.default_rng(1).random((64, 48)).astype(np.float32)
    for kernel, flag in (("cv2", cv2.INTER_CUBIC), ("area", cv2.INTER_AREA), ("bilinear", cv2.INTER_LINEAR)):
        assert np.array_equal(downscale(x, (26, 19), kernel), cv2.resize(x, (19, 26), interpolation=flag))


def test_area_kernel_integrates_pixels_like_a_camera():
    x = np.random.default_rng(2).random((8, 12)).astype(np.float32)
    binned = x.reshape(4, 2, 6, 2).mean(axis=(1, 3))
    assert np.allclose(downscale(x, (4, 6), "area"), binned, atol=1e-6)


def test_antialiased_kernels_remove_fine_stripes_the_others_alias_them():
    # stripes at 0.3 cycles/pixel are above the Nyquist limit of a ×4 smaller image (0.125)
    stripes = (0.5 + 0.5 * np.cos(2 * np.pi * 0.3 * np.arange(128)))[None].repeat(128, 0).astype(np.float32)
    left = {k: downscale(stripes, (32, 32), k)[:, 4:-4].std() for k in KERNELS}  # measured 0.002, 0.30, 0.06, 0.20
    assert left["pil"] < 0.01 and left["area"] < 0.1
    assert left["cv2"] > 0.25 and left["bilinear"] > 0.15


@pytest.mark.parametrize("kernel", KERNELS)
def test_blur_grows_with_continuous_scale_for_every_kernel(kernel):
    x = phantom(96, 96, seed=0, peak_photons=None)
    err = [np.sqrt(np.mean((shrink_enlarge(x, s, kernel) - x) ** 2)) for s in (1, 1.5, 2.5, 4, 6)]
    assert err[0] == 0 and all(a < b for a, b in zip(err, err[1:])), err


@pytest.mark.parametrize("shape", [(61, 47), (3, 5), (1, 1), (1, 9), (30, 22, 3)])
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_keeps_shape_at_a_fractional_scale(shape, kernel):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    y = degrade(x, Degradation(scale=2.7, kernel=kernel, psf_sigma=0.5, poisson_peak=100, gaussian_sigma=0.01), seed_for(0, "a"))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()


def test_noise_is_added_to_the_small_image():
    # on a flat image the noise of the small image is enlarged: neighbours correlate over about s pixels
    x = np.full((256, 256), 0.5, np.float32)
    y = degrade(x, Degradation(scale=4, gaussian_sigma=0.05), seed_for(0, "n")) - 0.5
    corr = np.corrcoef(y[:, :-1].ravel(), y[:, 1:].ravel())[0, 1]
    assert corr > 0.8 and 0.02 < y.std() < 0.06


# ------------------------------------------------------------ the training sampler


def test_sampler_draws_sharp_crops_at_the_asked_rate_and_s_in_range():
    rng = np.random.default_rng(0)
    draws = [sample_degradation(DegradationRanges(), rng) for _ in range(2000)]
    sharp = [d for d in draws if d.scale == 1]
    assert 0.12 < len(sharp) / len(draws) < 0.18
    assert all(d.psf_sigma == 0 and d.poisson_peak == 0 and d.gaussian_sigma == 0 for d in sharp)
    scales = np.array([d.scale for d in draws if d.scale != 1])
    assert scales.min() > 1 and scales.max() <= 4 and 2.3 < scales.mean() < 2.7
    assert {d.kernel for d in draws} == set(KERNELS)
    peaks = np.array([d.poisson_peak for d in draws if d.poisson_peak])
    assert peaks.min() >= 30 and peaks.max() <= 3000 and 0.4 < len(peaks) / len(scales) < 0.6
    assert max(d.psf_sigma for d in draws) <= 1.5
    # the PSF width grows with s: a crop told s = 1.2 is never blurred like one told s = 4
    assert all(d.psf_sigma <= 1.5 * (d.scale - 1) / 3 + 1e-9 for d in draws)
    assert max(d.psf_sigma for d in draws if d.scale > 3.5) > 1.0


def test_degrade_batch_gives_each_crop_its_own_degradation():
    hr = torch.from_numpy(np.stack([phantom(64, 64, seed=i, peak_photons=None) for i in range(16)]))[:, None]
    lr, s, _ = degrade_batch(hr, DegradationRanges(sharp_fraction=0.3), np.random.default_rng(3))
    assert lr.shape == hr.shape and lr.dtype == hr.dtype and s.shape == (16,)
    same = (lr == hr).flatten(1).all(1)
    assert torch.equal(same, s == 1) and 0 < int(same.sum()) < 16  # sharp crops untouched, the rest changed
    err = ((lr - hr) ** 2).flatten(1).mean(1)[s > 1]
    assert len(set(s[s > 1].tolist())) == int((s > 1).sum()) and (err > 0).all()
    lr2, s2, _ = degrade_batch(hr, DegradationRanges(sharp_fraction=0.3), np.random.default_rng(3))
    assert torch.equal(lr, lr2) and torch.equal(s, s2)


def test_degrade_batch_with_one_kernel_and_no_noise_equals_degrade():
    hr = torch.rand(4, 1, 40, 40)
    ranges = DegradationRanges(kernels=("area",), sharp_fraction=0, poisson_p=0, read_p=0)
    lr, s, _ = degrade_batch(hr, ranges, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    for i in range(4):
        d = sample_degradation(ranges, rng)
        assert d.scale == pytest.approx(float(s[i]))
        assert np.allclose(lr[i, 0].numpy(), degrade(hr[i, 0].numpy(), d, rng), atol=1e-6)


def test_default_family_draws_no_native_psf_and_no_rounding():
    rng = np.random.default_rng(1)
    draws = [sample_degradation(DegradationRanges(), rng) for _ in range(500)]
    assert all(d.levels == 0 and (d.scale > 1 or d.psf_sigma == 0) for d in draws)


def test_chain_draws_native_psf_and_rounding_and_tells_their_blur_scale():
    ranges = DegradationRanges(native_p=0.25, quantize_p=0.6, poisson_peak=(15.0, 3000.0))
    rng = np.random.default_rng(2)
    draws = [sample_degradation(ranges, rng) for _ in range(3000)]
    native = [d for d in draws if d.scale == 1 and d.psf_sigma > 0]
    blurred = [d for d in draws if d.scale > 1 or d.psf_sigma > 0]
    assert 0.2 < len(native) / len(blurred) < 0.3
    assert all(1 < blur_scale(d) <= 4 + 1e-6 and blur_scale(d) == pytest.approx(PSF_S_PER_SIGMA * d.psf_sigma) for d in native)
    assert all(blur_scale(d) == d.scale for d in draws if d.scale > 1)  # resampled crops: s as before
    rounded = [d.levels for d in draws if d.levels]
    assert 0.55 < len(rounded) / len(draws) < 0.65 and 20 <= min(rounded) and max(rounded) <= 4095
    assert 0.4 < np.mean([d.quantize_small for d in draws if d.levels]) < 0.6
    hr = torch.rand(8, 1, 48, 48)
    lr, s, _ = degrade_batch(hr, ranges, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    for i in range(8):
        d = sample_degradation(ranges, rng)
        assert float(s[i]) == pytest.approx(blur_scale(d))
        assert np.allclose(lr[i, 0].numpy(), degrade(hr[i, 0].numpy(), d, rng, top=1.0), atol=1e-6)


def test_native_psf_blur_scale_matches_a_shrink_enlarge_of_that_s():
    """PSF_S_PER_SIGMA: a PSF of σ px blurs as a pil shrink-enlarge by 2.4·σ does (within 0.4 on a phantom)."""
    x = phantom(128, 128, seed=3, peak_photons=None)
    grid = np.arange(1.0, 6.01, 0.1)
    for sigma in (1.0, 1.5, 2.0):
        blurred = degrade(x, Degradation(scale=1, psf_sigma=sigma), np.random.default_rng(0))
        errs = [np.mean((shrink_enlarge(x, s) - blurred) ** 2) for s in grid]
        assert abs(grid[int(np.argmin(errs))] - PSF_S_PER_SIGMA * sigma) < 0.4 * sigma


def test_levels_round_the_result_or_the_small_image():
    x = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    y = degrade(x, Degradation(scale=2, levels=10), np.random.default_rng(0), top=1.0)
    assert np.allclose(y * 10, np.round(y * 10), atol=1e-5)  # the result holds ten grey levels only
    small = degrade(x, Degradation(scale=2, levels=10, quantize_small=True), np.random.default_rng(0), top=1.0)
    assert not np.allclose(small * 10, np.round(small * 10), atol=1e-3)  # rounded before the enlargement
    assert np.abs(small - degrade(x, Degradation(scale=2), np.random.default_rng(0), top=1.0)).max() <= 0.06
    assert np.array_equal(quantize(x, 1.0, 0), x)
    with pytest.raises(ConfigError, match="levels"):
        Degradation(levels=1)
    with pytest.raises(ConfigError, match="--levels"):
        Degradation(quantize_small=True)


@pytest.mark.parametrize("settings", [
    Degradation(scale=3.0, kernel="area", psf_sigma=0.8, poisson_peak=100.0, gaussian_sigma=0.01, levels=255.0),
    Degradation(scale=2.5, kernel="cv2", poisson_peak=50.0, levels=4095.0, quantize_small=True),
    Degradation(scale=1.0, psf_sigma=1.2, poisson_peak=30.0),
    Degradation(scale=2.0, poisson_peak=200.0, h264_crf=18),
])
def test_degrade_with_clean_is_degrade_with_and_without_its_noise(settings):
    """The noise-kept target's two images from one shrink equal two `degrade` calls (the second
    without noise), for every stage of the chain, and the noise drawn is the same."""
    from dataclasses import replace

    image = phantom(64, seed=3).astype(np.float32)
    noisy, clean = degrade_with_clean(image, settings, np.random.default_rng(7), top=1.0)
    assert np.array_equal(noisy, degrade(image, settings, np.random.default_rng(7), top=1.0))
    assert np.array_equal(clean, degrade(image, replace(settings, poisson_peak=0.0, gaussian_sigma=0.0), np.random.default_rng(7), top=1.0))
    assert np.abs(noisy - clean).max() > 1e-3


def test_degrade_command_levels_writes_the_asked_grey_levels(tmp_path):
    from ficli.image import io as image_io

    src = tmp_path / "in"
    src.mkdir()
    image_io.write_image(src / "a.tif", (phantom(64, 64, seed=1, peak_photons=None) * 60000).astype(np.uint16))
    result = CliRunner().invoke(app, ["degrade", str(src), "--out", str(tmp_path / "out"), "--scale", "1",
                                      "--psf-sigma", "1", "--levels", "40"])
    assert result.exit_code == 0, result.output
    y = image_io.read_image(tmp_path / "out" / "a.tif").data
    assert len(np.unique(y)) <= 41
    bad = CliRunner().invoke(app, ["degrade", str(src), "--out", str(tmp_path / "o2"), "--levels-before-enlarge"])
    assert bad.exit_code != 0 and "--levels" in bad.output


def test_bad_ranges_raise_config_error():
    with pytest.raises(ConfigError, match="kernels"):
        DegradationRanges(kernels=("lanczos",))
    with pytest.raises(ConfigError, match="scale-max"):
        DegradationRanges(scale_max=0.5)


# ------------------------------------------------------------ 14.7 numeric options bounded


BAD_DEGRADE_OPTIONS = [
    ("--gaussian-sigma", "inf", "0 to 1"),
    ("--gaussian-sigma", "nan", "0 to 1"),
    ("--gaussian-sigma", "1.5", "0 to 1"),
    ("--psf-sigma", "1e6", "0 to 50"),
    ("--psf-sigma", "inf", "0 to 50"),
    ("--psf-sigma", "nan", "0 to 50"),
    ("--poisson-peak", "inf", "1e+09"),
    ("--poisson-peak", "nan", "1e+09"),
    ("--poisson-peak", "-1", "1e+09"),
    ("--scale", "9", "1 to 8"),
    ("--scale", "0.5", "1 to 8"),
    ("--scale", "nan", "1 to 8"),
    ("--scale", "inf", "1 to 8"),
    ("--scale", "four", "1 to 8"),
]


@pytest.mark.hostile
@pytest.mark.parametrize("option,value,range_text", BAD_DEGRADE_OPTIONS, ids=[f"{o}={v}" for o, v, _ in BAD_DEGRADE_OPTIONS])
def test_out_of_range_degrade_option_is_refused_naming_option_and_range(run_cli, phantom_folder, tmp_path, option, value, range_text):
    out = tmp_path / "lr"
    result = run_cli("degrade", phantom_folder / "a8.png", "--out", out, option, value)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert option in text and range_text in text and "Traceback" not in text
    assert not out.exists()


@pytest.mark.hostile
@pytest.mark.parametrize("name,value", [("psf_sigma", float("inf")), ("gaussian_sigma", float("nan")), ("poisson_peak", float("inf")), ("scale", float("nan"))])
def test_non_finite_settings_are_refused_by_the_library(name, value):
    with pytest.raises(ConfigError, match=name.replace("_", "-")):
        Degradation(**{name: value})
