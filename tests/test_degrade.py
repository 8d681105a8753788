import numpy as np
import pytest
import torch

from ficli.degrade import Degradation, bicubic_resize, degrade, resize_array, seed_for, shrink_enlarge
from ficli.errors import ConfigError
from ficli.phantom import phantom


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

    from ficli.phantom import to_dtype

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
