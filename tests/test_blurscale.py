"""The spectral blur-scale estimator on inputs of known s (synthetic and real images)."""

import numpy as np
import pytest

from conftest import shared_images
from ficli.image import io
from ficli.image.blurscale import estimate_scale, estimate_scale_pooled, power_profile
from ficli.image.degrade import KERNELS, Degradation, degrade, shrink_enlarge
from ficli.image.phantom import phantom

SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)


def _gray(path, side=512):
    x = io.to_unit(io.read_image(path).frames[0]).astype(np.float32)
    h, w = x.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return np.ascontiguousarray(x[top : top + side, left : left + side])


@pytest.mark.parametrize("kernel", KERNELS)
def test_known_scale_of_a_phantom_within_half(kernel):
    x = phantom(256, 256, seed=5, psf_sigma=0.6, peak_photons=None)
    for s in SCALES:
        est = estimate_scale(shrink_enlarge(x, s, kernel))
        assert est.scale is not None and abs(est.scale - s) <= 0.5, (s, est)


def test_known_scale_of_real_images_within_half_for_every_kernel():
    # three of fluorescence/test (never used for calibration); docs/DEGRADATIONS.md has all eleven
    names = ("cp__ExampleSpeckles_1-162hrhoe2.png", "bian__BBBC038_0bf4b1.png", "neubias__xy_16bit_bacteria_cords_thin.png")
    files = [f for f in shared_images("test", 100) if f.name in names]
    assert len(files) == 3
    for path in files:
        x = _gray(path)
        for kernel in KERNELS:
            for s in SCALES:
                est = estimate_scale(shrink_enlarge(x, s, kernel)).scale
                assert abs(est - s) <= 0.5, (path.name, kernel, s, est)


@pytest.mark.parametrize("s", [1.0, 2.0, 3.0, 4.0])
def test_poisson_noise_does_not_fool_the_estimate(s):
    x = _gray(shared_images("test", 100)[3])
    y = degrade(x, Degradation(scale=s, kernel="area", poisson_peak=200), np.random.default_rng(0))
    assert abs(estimate_scale(y).scale - s) <= 0.5


def test_estimate_is_stable_across_phantoms_and_noise():
    estimates = [estimate_scale(shrink_enlarge(phantom(256, 256, seed=k), 3.0)).scale for k in range(4)]
    assert max(estimates) - min(estimates) <= 0.2, estimates
    native = [estimate_scale(io.to_unit(io.read_image(p).data)).scale for p in ("examples/phantoms/phantom_8bit.png", "examples/phantoms/phantom_16bit.png", "examples/phantoms/phantom_12bit.tif")]
    assert max(native) - min(native) <= 0.2 and all(1 <= s <= 2 for s in native), native


def test_too_small_and_too_flat_images_give_a_note_not_a_crash():
    small = estimate_scale(np.random.default_rng(0).random((16, 200)))
    assert small.scale is None and "too small" in small.note
    flat = estimate_scale(np.full((128, 128), 0.3))
    assert flat.scale is None and "flat" in flat.note
    noise = estimate_scale(np.random.default_rng(0).random((128, 128)))
    assert noise.scale is None and "flat" in noise.note
    assert estimate_scale_pooled([]).scale is None


def test_stack_and_video_frames_pool_into_one_estimate():
    planes = [shrink_enlarge(phantom(128, 128, seed=k, peak_photons=None), 2.5, "cv2") for k in range(5)]
    pooled = estimate_scale_pooled(planes)
    assert abs(pooled.scale - 2.5) <= 0.3
    assert estimate_scale_pooled(planes[:1]).scale == estimate_scale(planes[0]).scale
    assert power_profile(np.zeros((8, 8))) is None
    rgb = np.repeat(planes[0][..., None], 3, axis=2)
    assert estimate_scale(rgb).scale == estimate_scale(planes[0]).scale
