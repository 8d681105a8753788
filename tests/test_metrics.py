"""RMSE, PSNR and SSIM against scikit-image, the reference (docs/DESIGN.md section 5)."""

import cv2
import numpy as np
import pytest

from conftest import shared_images
from ficli.image import io, metrics
from ficli.errors import InputError

skm = pytest.importorskip("skimage.metrics", reason="scikit-image is the reference for the metrics")

SSIM_REF = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def reference(a, b, data_range=1.0):
    channel_axis = -1 if a.ndim == 3 else None
    return (
        np.sqrt(skm.mean_squared_error(a, b)),
        skm.peak_signal_noise_ratio(a, b, data_range=data_range),
        skm.structural_similarity(a, b, data_range=data_range, channel_axis=channel_axis, **SSIM_REF),
    )


def ours(a, b, data_range=1.0):
    return metrics.rmse(a, b), metrics.psnr(a, b, data_range), metrics.ssim(a, b, data_range)


@pytest.mark.parametrize("shape", [(11, 11), (11, 13), (12, 12), (33, 48), (64, 65), (29, 31, 3), (16, 20, 4)])
def test_metrics_match_scikit_image_on_random_arrays(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.random(shape)
    b = np.clip(a + 0.05 * rng.standard_normal(shape), 0, 1)
    np.testing.assert_allclose(ours(a, b), reference(a, b), rtol=0, atol=1e-6)


def test_data_range_argument_matches_scikit_image():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 4096, (40, 37)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 60, a.shape), 0, 4095)
    np.testing.assert_allclose(ours(a, b, 4095.0), reference(a, b, 4095.0), rtol=0, atol=1e-6)


def test_identical_images_score_perfectly():
    a = np.random.default_rng(0).random((20, 20))
    assert metrics.rmse(a, a) == 0.0
    assert metrics.psnr(a, a) == float("inf")
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_psnr_is_20_log10_of_one_over_rmse():
    a = np.zeros((12, 12))
    b = np.full((12, 12), 0.02)
    assert metrics.rmse(a, b) == pytest.approx(0.02)
    assert metrics.psnr(a, b) == pytest.approx(20 * np.log10(1 / 0.02))


def test_too_small_or_mismatched_images_raise_input_error():
    with pytest.raises(InputError, match="10×30 pixels is too small for SSIM"):
        metrics.ssim(np.zeros((30, 10)), np.zeros((30, 10)))
    with pytest.raises(InputError, match="differ in shape"):
        metrics.rmse(np.zeros((12, 12)), np.zeros((12, 13)))


def test_metrics_match_scikit_image_on_real_images_and_their_blur():
    for path in shared_images("val", 3):
        hr = io.to_unit(io.read_image(path).data).astype(np.float64)
        blurred = cv2.GaussianBlur(hr, (0, 0), 1.2)
        np.testing.assert_allclose(ours(hr, blurred), reference(hr, blurred), rtol=0, atol=1e-6, err_msg=path.name)
