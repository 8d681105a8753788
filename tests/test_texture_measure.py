"""The texture excess (`metrics.texture_excess`, `ficli evaluate`'s texture %): about 0 for the truth
and for blurred copies of it, rising with texture the truth does not have; checked against a direct
periodogram written here with plain numpy.fft, and through the command line on real files."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from ficli.tools import evaluate as ev
from ficli.image.degrade import shrink_enlarge
from ficli.image.io import write_image
from ficli.image.metrics import TEXTURE_F0, TEXTURE_MIN_SIDE, texture_excess
from ficli.image.phantom import phantom, to_dtype

BLUR_BOUND = 0.1  # % : what a blurred copy of the truth may score at most
AMPLITUDES = (0.005, 0.01, 0.02, 0.04)  # of the added texture, on the [0, 1] scale of the phantom


def truth(seed: int = 0, height: int = 192, width: int = 256) -> np.ndarray:
    """A noisy fluorescence-like phantom, float64 in [0, 1]."""
    return phantom(height, width, seed=seed).astype(np.float64)


def grating(shape, fy: float = 0.1, fx: float = 0.3) -> np.ndarray:
    """A unit-amplitude sinusoid of 0.32 cycles/px: fine texture the phantom does not have."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.sin(2 * np.pi * (fy * yy + fx * xx))


def band_noise(shape, seed: int = 10, lo: float = 0.15, hi: float = 0.35) -> np.ndarray:
    """White noise kept between `lo` and `hi` cycles/px, unit standard deviation."""
    spectrum = np.fft.fft2(np.random.default_rng(seed).standard_normal(shape))
    r = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None])
    spectrum[(r < lo) | (r > hi)] = 0
    x = np.fft.ifft2(spectrum).real
    return x / x.std()


def power_law_field(shape, seed: int = 3, exponent: float = 2.5) -> np.ndarray:
    """A statistically stationary image with P(f) ∝ f^-exponent (so Welch tiles and the whole image agree)."""
    spectrum = np.fft.fft2(np.random.default_rng(seed).standard_normal(shape))
    r = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None])
    spectrum *= np.maximum(r, 1 / max(shape)) ** (-exponent / 2)
    x = np.fft.ifft2(spectrum).real
    return (x - x.min()) / np.ptp(x)


def direct_excess(gt: np.ndarray, out: np.ndarray, *, window: str = "tile", ring_width: float = 0.5 / 128,
                  f0: float = TEXTURE_F0) -> float:
    """The definition computed from scratch: one periodogram of the whole (H, W) image over the full
    frequency plane (numpy's fft2, not rfft2), power summed in rings of `ring_width` cycles/px.
    window 'tile': the Hann window of ficli's tiles (np.hanning(n + 2)[1:-1]); 'plain': np.hanning(n)."""
    h, w = gt.shape
    if window == "tile":
        win = np.outer(np.hanning(h + 2)[1:-1], np.hanning(w + 2)[1:-1])
    else:
        win = np.outer(np.hanning(h), np.hanning(w))

    def power(x):
        return np.abs(np.fft.fft2((x - x.mean()) * win)) ** 2

    r = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None])
    ring = np.floor(r / ring_width).astype(int)
    rings = int(round(0.5 / ring_width))
    keep = (ring < rings) & ((ring + 0.5) * ring_width >= f0)
    p_gt = np.bincount(ring[keep], power(gt)[keep], rings)
    p_out = np.bincount(ring[keep], power(out)[keep], rings)
    return float(100 * np.maximum(p_out - p_gt, 0).sum() / p_gt.sum())


# ------------------------------------------------------------------------------------------ the measure


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_truth_itself_scores_zero(seed):
    gt = truth(seed)
    assert texture_excess(gt, gt) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("blur", ["gauss1", "gauss2", "pil4", "area4"])
def test_a_blurred_copy_scores_about_zero(seed, blur):
    """Blur only takes power away: Gaussian σ = 1 and 2 px, shrunk ×4 and enlarged back (the
    project's PIL bicubic, and area averaging), all below 0.1 %."""
    gt = truth(seed)
    if blur.startswith("gauss"):
        out = cv2.GaussianBlur(gt, (0, 0), float(blur[-1]), borderType=cv2.BORDER_REFLECT)
    else:
        out = shrink_enlarge(gt.astype(np.float32), 4, "pil" if blur == "pil4" else "area").astype(np.float64)
    assert 0.0 <= texture_excess(gt, out) < BLUR_BOUND


@pytest.mark.parametrize("texture", ["grating", "band_noise"])
@pytest.mark.parametrize("seed", [0, 1])
def test_added_texture_raises_it_monotonically(seed, texture):
    gt = truth(seed)
    pattern = grating(gt.shape) if texture == "grating" else band_noise(gt.shape, seed + 10)
    scores = [texture_excess(gt, gt + a * pattern) for a in AMPLITUDES]
    assert scores[0] > BLUR_BOUND / 10
    assert all(later > 1.5 * earlier for earlier, later in zip(scores, scores[1:]))  # power grows as a²
    assert scores[-1] > 20 * BLUR_BOUND


def test_blurred_output_with_texture_still_scores_the_texture():
    """Blur lowers the rings the texture does not reach; the texture's rings still count."""
    gt = truth(4)
    blurred = cv2.GaussianBlur(gt, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)
    assert texture_excess(gt, blurred + 0.02 * grating(gt.shape)) > 10 * BLUR_BOUND


# -------------------------------------------------------------------------------- against a reference


@pytest.mark.parametrize("amplitude", AMPLITUDES)
def test_one_tile_matches_the_direct_periodogram(amplitude):
    """An image of at most 256 px a side is one Welch tile: the same number as one Hann-windowed
    periodogram over the full frequency plane (ficli takes the half plane of rfft2 and counts the
    mirrored columns twice)."""
    gt = truth(5, 96, 128)
    for out in (gt + amplitude * band_noise(gt.shape, 11),
                cv2.GaussianBlur(gt, (0, 0), 1.0) + amplitude * grating(gt.shape)):
        assert texture_excess(gt, out) == pytest.approx(direct_excess(gt, out), rel=1e-6)


def test_welch_agrees_with_the_whole_image_periodogram():
    """On a stationary image of 6 Welch tiles, the Welch estimate and one whole-image periodogram
    (its own window and rings of 1/384 cycles/px) agree within 10 % (measured: 6 %) and order the
    outputs alike."""
    gt = power_law_field((384, 512))
    outs = [gt + a * band_noise(gt.shape, 12) for a in AMPLITUDES]
    outs += [cv2.GaussianBlur(gt, (0, 0), 1.5) + 0.02 * grating(gt.shape)]
    ours = [texture_excess(gt, out) for out in outs]
    theirs = [direct_excess(gt, out, window="plain", ring_width=1 / 384) for out in outs]
    assert np.argsort(ours).tolist() == np.argsort(theirs).tolist()
    assert np.allclose(ours, theirs, rtol=0.1)
    blurred = cv2.GaussianBlur(gt, (0, 0), 2.0)
    assert texture_excess(gt, blurred) < BLUR_BOUND and direct_excess(gt, blurred, window="plain", ring_width=1 / 384) < BLUR_BOUND


def test_the_intensity_scale_does_not_change_it():
    """Means cancel offsets and the ratio gains: dtype, hr and a value scale all give one number."""
    gt = truth(6)
    out = gt + 0.01 * band_noise(gt.shape)
    assert texture_excess(4095 * gt + 100, 4095 * out + 100) == pytest.approx(texture_excess(gt, out), rel=1e-6)


def test_colour_pools_the_channels():
    """Three equal channels score as the grey image; texture in one channel counts against the
    detail of all three (pooled like RMSE's squared errors, not a mean of per-channel ratios)."""
    gt = truth(7)
    out = gt + 0.02 * grating(gt.shape)
    grey = texture_excess(gt, out)
    assert texture_excess(np.dstack([gt] * 3), np.dstack([out] * 3)) == pytest.approx(grey, rel=1e-9)
    one = texture_excess(np.dstack([gt, gt / 2, gt / 2]), np.dstack([out, gt / 2, gt / 2]))
    assert one == pytest.approx(grey / 1.5, rel=1e-9)  # detail power 1 + 1/4 + 1/4


def test_large_scale_changes_are_not_texture():
    """Shading across the image (periods of 100 px and more, below f0) is not texture."""
    gt = truth(8)
    yy, xx = np.mgrid[: gt.shape[0], : gt.shape[1]]
    shading = 0.1 * np.sin(2 * np.pi * xx / 125) + 0.05 * yy / gt.shape[0]
    assert texture_excess(gt, gt + shading) < BLUR_BOUND


def test_more_contrast_than_the_truth_counts_as_excess():
    """What the measure does with a contrast gain g (documented): every ring's power × g², so
    (g² − 1)·100 % above 1 and 0 below; the SR image must be in the HR image's units, as for RMSE."""
    gt = truth(9)
    assert texture_excess(gt, 1.05 * gt) == pytest.approx(100 * (1.05**2 - 1), rel=1e-9)
    assert texture_excess(gt, 0.9 * gt) == 0.0


@pytest.mark.hostile
def test_too_small_or_flat_truth_gives_nan():
    side = TEXTURE_MIN_SIDE
    assert np.isnan(texture_excess(truth(0, side - 1, 64), truth(1, side - 1, 64)))
    assert np.isfinite(texture_excess(truth(0, side, 64), truth(1, side, 64)))
    flat = np.full((64, 64), 0.3)
    assert np.isnan(texture_excess(flat, truth(0, 64, 64)))
    assert texture_excess(truth(0, 64, 64), flat) == 0.0  # a flat output invents nothing


def test_stack_mean_over_the_frames_measured():
    """Stacks as the other metrics: the mean over frames; a frame it cannot measure (a flat HR
    frame) is left out of the mean instead of making it NaN."""
    gts = [truth(s, 64, 64) for s in (0, 1)]
    outs = [g + a * grating(g.shape) for g, a in zip(gts, (0.01, 0.03))]
    per_frame = [texture_excess(g, o) for g, o in zip(gts, outs)]
    scores = ev.score_images(np.stack(gts), np.stack(outs), is_stack=True)
    assert scores.texture == pytest.approx(np.mean(per_frame), rel=1e-9)
    flat = np.full((64, 64), 0.2)
    scores = ev.score_images(np.stack([*gts, flat]), np.stack([*outs, flat + 0.1 * grating(flat.shape)]), is_stack=True)
    assert scores.texture == pytest.approx(np.mean(per_frame), rel=1e-9)


# ---------------------------------------------------------------------------------------- command line


@pytest.fixture
def scored_folders(tmp_path):
    """HR phantoms (16-bit, 96×128), a blurred copy of each and a copy with fine texture added."""
    folders = {name: tmp_path / name for name in ("hr", "blurred", "textured")}
    for i in range(3):
        gt = truth(20 + i, 96, 128)
        write_image(folders["hr"] / f"c{i}.png", to_dtype(gt, np.uint16))
        write_image(folders["blurred"] / f"c{i}.png", to_dtype(cv2.GaussianBlur(gt, (0, 0), 1.5), np.uint16))
        write_image(folders["textured"] / f"c{i}.png", to_dtype(gt + 0.05 * grating(gt.shape), np.uint16))
    return folders


def test_cli_writes_the_column_and_ranks_texture_above_blur(run_cli, scored_folders, tmp_path):
    f = scored_folders
    result = run_cli("evaluate", f["hr"], f["blurred"], f["textured"], "--csv", tmp_path / "x.csv", "--json", tmp_path / "x.json")
    assert result.exit_code == 0, result.output
    assert "texture %" in result.output
    rows = list(csv.DictReader(open(tmp_path / "x.csv")))
    assert list(rows[0]) == ["hr", "method", "sr", "psnr_db", "ssim", "rmse", "scale", "texture_pct"]
    texture = {(r["hr"], r["method"]): float(r["texture_pct"]) for r in rows}
    for i in range(3):
        assert texture[(f"c{i}.png", "blurred")] < BLUR_BOUND < 10 * BLUR_BOUND < texture[(f"c{i}.png", "textured")]
    summary = json.load(open(tmp_path / "x.json"))
    methods = {m["name"]: m["texture_pct"] for m in summary["methods"]}
    assert methods["textured"]["n"] == 3 and methods["textured"]["mean"] > 10 * methods["blurred"]["mean"] + 1
    assert methods["textured"]["mean"] == pytest.approx(np.mean([texture[(f"c{i}.png", "textured")] for i in range(3)]))
    assert {img["texture_pct"] for img in summary["images"]} == set(texture.values())
    assert summary["texture_not_measured"] == []


@pytest.mark.hostile
def test_cli_images_too_small_for_a_spectrum_get_a_dash_and_a_note(run_cli, scored_folders, tmp_path):
    """24×24 px: scored on PSNR/SSIM/RMSE (exit 0), texture '–' in the table, nan in the CSV, null
    in the JSON with the file and the reason, one note; the folder's texture mean is over the rest."""
    f = scored_folders
    gt = truth(30, 24, 24)
    write_image(f["hr"] / "tiny.png", to_dtype(gt, np.uint16))
    write_image(f["textured"] / "tiny.png", to_dtype(gt + 0.02 * grating(gt.shape), np.uint16))
    result = run_cli("evaluate", f["hr"], f["textured"], "--csv", tmp_path / "x.csv", "--json", tmp_path / "x.json")
    assert result.exit_code == 0, result.output
    assert "texture % not measured for 1 image(s)" in result.output and "24×24 px is under the 32×32" in result.output
    assert "Traceback" not in result.output
    rows = {r["hr"]: r for r in csv.DictReader(open(tmp_path / "x.csv"))}
    assert rows["tiny.png"]["texture_pct"] == "nan" and float(rows["tiny.png"]["psnr_db"]) > 0
    summary = json.load(open(tmp_path / "x.json"))
    assert [p["file"].endswith("tiny.png") for p in summary["texture_not_measured"]] == [True]
    images = {img["hr"]: img for img in summary["images"]}
    assert images["tiny.png"]["texture_pct"] is None and images["tiny.png"]["ssim"] is not None
    entry = summary["methods"][0]
    assert entry["n"] == 4 and entry["texture_pct"]["n"] == 3
    assert entry["texture_pct"]["mean"] == pytest.approx(np.mean([images[f"c{i}.png"]["texture_pct"] for i in range(3)]))
