"""Estimate the blur scale s of an image from its power spectrum (`--scale auto`, docs/DESIGN.md section 8).

Two estimators share the spectrum. The learned one (`estimate_scale`, the default since issue 24)
reads the log power in 32 bands, as measured and with the rounding noise of the image's grey-level
grid taken off (`lattice_step`: saved integer files and 8-bit video hold their values on a grid,
whose white rounding noise fills the top of the spectrum and made the template fit below read
blurred files as sharp), and how large that noise is; a small MLP
(`blurscale_mlp.npz`, trained by examples/train_blurscale.py on the training sources only) gives
log s with its own uncertainty: the estimate comes with a 68 % interval. The template fit
(`estimate_scale_template`), described next, answers where that file is missing, and
`runtime.told_scale` tells the smaller of the two readings (the default model over-sharpens images
that are smooth as they are when told the learned one: docs/DEGRADATIONS.md). Where a file's
rounding noise hides the top of its spectrum, `estimate_below_floor` makes the template fit under
that noise (`readings` gives it as the template estimate's `below_floor`), which `told_scale`
heeds from s = 3.25 up.

An image made as Y = U(K_s(X)) (shrunk by s, enlarged back with a bicubic) carries the resampling's
mark in its radially averaged power spectrum P(f): frequencies up to about 0.5/s pass, those above
fall by three to four decades, in a pattern that depends on u = f·s (cycles per pixel of the small
image) and hardly on the kernel. `TEMPLATE` is that fall, log10 P_Y(f) − log10 P_X(f) as a function
of u, measured as the median over the images of fluorescence/train shrunk with all four kernels
(examples/calibrate_blurscale.py). The estimate is the s whose template, added to a power law
a + b·log f (the image's own content), fits log10 P of the input best (least squares over
0.015 ≤ f ≤ 0.5, s on a grid of 0.05 from 1 to `S_MAX`, refined by a parabola). A native image
without resampling fits the power law alone: s ≈ 1.

P is a Welch average of Hann-windowed tiles (at most 256² each, up to 16 tiles), so big images cost
a few FFTs. Planes of a stack or frames of a video pool their spectra (each normalised to unit
power) before the one fit. Measured errors: docs/DEGRADATIONS.md. `ring_power`, the Welch power
per ring before normalising, is also what `metrics.texture_excess` compares.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

S_MAX = 6.0  # the largest s the template was calibrated for
MIN_SIDE = 32  # below this the spectrum has too few rings to place a cut-off
TILE = 256
BINS = 128  # radial bins over 0..0.5 cycles/pixel
F_MIN = 0.015  # below this the window's leakage and the image's largest structures dominate
FLAT_DECADES = 1.0  # a spectrum spanning less than this many decades holds no structure to measure

# log10 P_Y - log10 P_X against u = f·s, u = 0, 0.025, ..., 3.0 (constant beyond): filled by
# examples/calibrate_blurscale.py from fluorescence/train.
U_STEP = 0.025
TEMPLATE = (
    0.000, 0.001, 0.001, 0.000, -0.001, -0.004, -0.010, -0.017, -0.030, -0.051,
    -0.072, -0.103, -0.140, -0.190, -0.239, -0.294, -0.362, -0.414, -0.467, -0.527,
    -0.593, -0.650, -0.687, -0.732, -0.760, -0.751, -0.764, -0.797, -0.857, -0.911,
    -0.986, -1.090, -1.228, -1.423, -1.623, -1.892, -2.148, -2.483, -2.819, -3.098,
    -3.387, -3.602, -3.762, -3.852, -3.678, -3.439, -3.236, -3.140, -3.098, -3.136,
    -3.234, -3.517, -3.510, -3.498, -3.559, -3.670, -3.743, -4.075, -3.833, -3.465,
    -3.442, -3.276, -3.134, -3.004, -2.901, -2.808, -2.758, -2.739, -2.771, -2.787,
    -2.835, -2.965, -3.007, -3.168, -3.383, -3.705, -4.154, -4.421, -5.031, -5.822,
    -6.448, -6.803, -6.250, -5.546, -5.142, -4.770, -4.611, -4.381, -4.317, -4.477,
    -4.234, -4.591, -4.866, -4.929, -4.422, -4.309, -4.332, -4.359, -4.567, -4.840,
    -4.790, -4.751, -4.342, -4.102, -3.893, -3.702, -3.568, -3.543, -3.425, -3.481,
    -3.485, -3.537, -3.673, -3.799, -3.979, -4.219, -4.535, -4.847, -5.332, -6.105,
    -6.885,
)


@dataclass(frozen=True)
class ScaleEstimate:
    """The estimate `scale` (None when it could not be made), the fit's quality and a note.

    `residual` is the template fit's RMS misfit in decades, or the learned estimate's σ of log s
    (its interval is [`low`, `high`]); `note` says why there is no estimate (image
    too small or too flat: the caller then uses the model's training scale) or that it is at a limit.
    """

    scale: float | None
    residual: float = float("nan")
    note: str = ""
    low: float | None = None  # the learned estimate's 68 % interval, [low, high]
    high: float | None = None
    # The template fit's reading with the rounding noise of the grey-level grid taken off
    # (`estimate_below_floor`); None where that noise hides no ring of the spectrum.
    below_floor: float | None = None

    @property
    def confidence(self) -> str:
        """The learned estimate and its interval in words, e.g. "learned 3.02, 68 % interval
        2.70-3.40" ("" without one); a reading at the estimator's limit S_MAX says so ("learned 6.00
        or more, the estimator's limit") instead of a clipped interval of no width."""
        if self.low is None:
            return ""
        if self.low >= S_MAX:
            return f"learned {S_MAX:.2f} or more, the estimator's limit"
        top = f"{self.high:.2f}" + (" or more" if self.high >= S_MAX else "")
        return f"learned {self.scale:.2f}, 68 % interval {self.low:.2f}-{top}"


def power_profile(image: np.ndarray, tile: int = TILE, max_tiles: int = 16) -> np.ndarray | None:
    """Radially averaged power spectrum (BINS,) of a float (H, W) or (H, W, C) image, normalised to
    unit total power; None when the image is smaller than MIN_SIDE or has no variation."""
    rings = _ring_means(image, tile, max_tiles)
    return None if rings is None else rings[1] / rings[2]


def _ring_means(image: np.ndarray, tile: int = TILE, max_tiles: int = 16) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(the gray float64 image, its Welch power per ring (BINS,) with empty rings filled, the sum
    that normalises it to unit power); None when the image is smaller than MIN_SIDE or has no
    variation."""
    x = np.asarray(image, np.float64)
    if x.ndim == 3:
        x = x.mean(axis=2)
    h, w = x.shape
    if min(h, w) < MIN_SIDE or np.ptp(x) <= 1e-6 * max(1.0, float(np.abs(x).max())):
        return None
    total, count = ring_power(x, tile, max_tiles)
    ring = _fill_gaps(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    norm = float(np.nansum(ring[1:]))
    if not np.isfinite(norm) or norm <= 0:
        return None
    return x, ring, norm


def ring_power(x: np.ndarray, tile: int = TILE, max_tiles: int = 16, full_plane: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Welch power of a float (H, W) image in BINS rings over 0..0.5 cycles/pixel: (total, count).

    Hann-windowed tiles of at most `tile`² (up to 4 × 4 of them, overlapping by about half, each
    less its mean) are transformed with a real FFT and their power summed; `total[i]` is that power
    over the half-plane frequencies whose radius falls in ring i, `count[i]` how many there are
    (so total / count is the ring's mean power). `full_plane`: each frequency whose mirror image
    the half plane leaves out counts twice, so the totals are those of the whole plane (Parseval).
    Frequencies beyond 0.5 (the corners) are left out. Two images of the same size get the same
    tiles, so their rings compare one to one.
    """
    h, w = x.shape
    ys, xs, window = _tiles(h, w, tile, max_tiles)
    th, tw = window.shape
    power = np.zeros((th, tw // 2 + 1))
    for y in ys:
        for x0 in xs:
            t = x[y : y + th, x0 : x0 + tw]
            power += np.abs(np.fft.rfft2((t - t.mean()) * window)) ** 2
    fy, fx = np.fft.fftfreq(th)[:, None], np.fft.rfftfreq(tw)[None]
    ring = np.minimum((np.sqrt(fy**2 + fx**2) / 0.5 * BINS).astype(int), BINS)
    weight = np.ones_like(power)
    if full_plane:
        weight[:, 1 : (tw + 1) // 2] = 2.0  # rfft2 keeps fx ≥ 0; the mirrored fx < 0 hold the same power
    total = np.bincount(ring.ravel(), (power * weight).ravel(), BINS + 1)[:BINS]
    count = np.bincount(ring.ravel(), weight.ravel(), BINS + 1)[:BINS]
    return total, count


def white_power(h: int, w: int, tile: int = TILE, max_tiles: int = 16) -> float:
    """The ring mean power (`ring_power`'s total / count) that white noise of unit variance gives
    an (h, w) image: the tiles' count times the window's energy."""
    ys, xs, window = _tiles(h, w, tile, max_tiles)
    return float(len(ys) * len(xs) * np.sum(window**2))


def _tiles(h: int, w: int, tile: int, max_tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Welch tiles' top rows, left columns and their Hann window."""
    th, tw = min(tile, h), min(tile, w)
    ys = np.unique(np.linspace(0, h - th, max(1, min(4, round(2 * h / th - 1)))).astype(int))[:max_tiles]
    xs = np.unique(np.linspace(0, w - tw, max(1, min(4, round(2 * w / tw - 1)))).astype(int))
    return ys, xs, np.outer(np.hanning(th + 2)[1:-1], np.hanning(tw + 2)[1:-1])


def estimate_scale(image: np.ndarray) -> ScaleEstimate:
    """s of one float (H, W) or (H, W, C) image (any intensity scale): the learned estimate, or
    the template fit where the MLP's file is missing."""
    return estimate_scale_pooled([image])


def estimate_scale_pooled(images) -> ScaleEstimate:
    """One s for the planes of a stack or sampled frames of a video: their spectra pooled."""
    return readings(images)[0]


def readings(images) -> tuple[ScaleEstimate, ScaleEstimate]:
    """(the learned estimate, the template fit) of one or more images, from one pass over their
    spectra (the template fit's pooled profile is the one the features are made from). The first
    is the template fit too where the MLP's file is missing."""
    feats = features(images)
    template = estimate_from_profile(None if feats is None else feats[1])
    if feats is not None and template.scale is not None:
        template = replace(template, below_floor=estimate_below_floor(feats[1], feats[2]))
    weights = mlp_weights()
    if weights is None or feats is None or feats[0] is None:  # too small or flat: the template's note
        return template, template
    return predict(feats[0], weights), template


def estimate_scale_template(image: np.ndarray) -> ScaleEstimate:
    """The template fit's s of one image (see the module doc)."""
    return estimate_from_profile(power_profile(image))


def estimate_scale_template_pooled(images) -> ScaleEstimate:
    """The template fit on the pooled spectra of several planes or frames."""
    profiles = [p for p in (power_profile(im) for im in images) if p is not None]
    return estimate_from_profile(np.mean(profiles, axis=0) if profiles else None)


# ------------------------------------------------------------------------------ the learned estimate

MLP_FILE = Path(__file__).with_name("blurscale_mlp.npz")
BANDS = 32  # the 128 rings averaged in fours
LATTICE_PIXELS = 1 << 20  # values looked at for the grey-level grid: enough, and a sort of 1 M values is fast
Q_FLOOR = -12.0  # log10 of the rounding noise's share of the variance when the values are on no grid


def lattice_step(x: np.ndarray) -> float:
    """The step of the grid the values of `x` lie on (1/255 for 8-bit data on [0, 1], 1/65535 for
    16-bit), or 0 when they lie on none (float data, or a grid finer than float32 resolves)."""
    v = np.asarray(x, np.float64).ravel()
    if v.size > LATTICE_PIXELS:
        v = v[:: v.size // LATTICE_PIXELS + 1]
    d = np.diff(np.unique(v))
    d = d[d > 1e-7 * max(1.0, float(np.abs(v).max()))]
    if d.size < 3:
        return 0.0
    step = float(np.percentile(d, 1))
    ratio = d / step
    on_grid = np.abs(ratio - np.round(ratio)) < 0.05
    return step if on_grid.mean() > 0.95 else 0.0


def features(images) -> tuple[np.ndarray | None, np.ndarray, float] | None:
    """(the MLP's features, the pooled profile, the pooled rounding-noise floor on its scale) of one
    or more (H, W[, C]) images; None when none is large and varied enough; (None, profile, floor)
    when the pooled spectrum is flat.

    The features: the log power in BANDS bands, the same after the rounding noise of the image's
    grey-level grid is taken off (white, of variance step²/12: what an integer file adds to its
    spectrum), both relative to the image's power, and the log of that noise's share of the variance."""
    raws, cleans, shares, floors = [], [], [], []
    for im in images:
        rings = _ring_means(im)
        if rings is None:
            continue
        x, ring, norm = rings
        step, var = lattice_step(x), float(x.var())
        floor = white_power(*x.shape) * step * step / 12
        raws.append(ring / norm)
        floors.append(floor / norm)
        cleans.append(np.maximum(ring - floor, 0.01 * floor + 1e-30 * norm) / norm)
        shares.append(np.log10(step * step / 12 / var) if step > 0 and var > 0 else Q_FLOOR)
    if not raws:
        return None
    profile, floor = np.mean(raws, axis=0), float(np.mean(floors))
    lp = np.log10(np.maximum(profile, 1e-300))
    if lp[int(F_MIN * 2 * BINS):].max() - lp[int(F_MIN * 2 * BINS):].min() < FLAT_DECADES:
        return None, profile, floor

    def bands(p: np.ndarray) -> np.ndarray:
        return np.log10(np.maximum(p.reshape(BANDS, -1).mean(axis=1), 1e-30))

    share = float(np.clip(np.mean(shares), Q_FLOOR, 0.0))
    return np.concatenate([bands(profile), bands(np.mean(cleans, axis=0)), [share]]).astype(np.float32), profile, floor


@lru_cache(maxsize=1)
def mlp_weights() -> dict[str, np.ndarray] | None:
    """The learned estimator's arrays (loaded without pickle), or None where the file is missing."""
    if not MLP_FILE.is_file():
        return None
    with np.load(MLP_FILE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def predict(feats: np.ndarray, w: dict[str, np.ndarray]) -> ScaleEstimate:
    """The MLP's (mean, log spread) of log s → an estimate with its 68 % interval."""
    h = (feats - w["mean"]) / w["std"]
    layers = sorted(k for k in w if k.startswith("W"))
    for i, name in enumerate(layers):
        h = h @ w[name] + w["b" + name[1:]]
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    mu, log_sigma = float(h[0]), float(np.clip(h[1], -6.0, 2.0))
    sigma = float(np.exp(log_sigma) * w.get("widen", 1.0))  # widened to 68 % coverage on held-apart images
    lo, hi = (float(np.clip(np.exp(v), 1.0, S_MAX)) for v in (mu - sigma, mu + sigma))
    s = float(np.clip(np.exp(mu), 1.0, S_MAX))
    note = f"at the estimator's limit of {S_MAX:g}: the image may be blurred more" if s >= S_MAX else ""
    return ScaleEstimate(round(s, 2), residual=sigma, note=note, low=round(lo, 2), high=round(hi, 2))


def estimate_from_profile(profile: np.ndarray | None) -> ScaleEstimate:
    """The template fit on a `power_profile`; see the module doc."""
    if profile is None:
        return ScaleEstimate(None, note=f"image too small or flat to estimate the blur scale (needs at least {MIN_SIDE}×{MIN_SIDE} pixels with structure)")
    keep, f, basis, grid, templates = _fit_axes()
    lp = np.log10(np.maximum(profile[keep], 1e-300))
    if lp.max() - lp.min() < FLAT_DECADES:
        return ScaleEstimate(None, note="image too flat to estimate the blur scale (its spectrum is the same at all frequencies: noise or a constant)")
    pinv = np.linalg.pinv(basis)
    cost = np.array([_misfit(lp - t, basis, pinv) for t in templates])
    i = int(np.argmin(cost))
    s = float(grid[i])
    if 0 < i < len(grid) - 1:  # parabola through the three costs around the minimum
        c0, c1, c2 = cost[i - 1 : i + 2]
        denom = c0 - 2 * c1 + c2
        if denom > 0:
            s += 0.05 * float(np.clip(0.5 * (c0 - c2) / denom, -0.5, 0.5))
    note = f"at the estimator's limit of {S_MAX:g}: the image may be blurred more" if i == len(grid) - 1 else ""
    return ScaleEstimate(round(s, 2), residual=float(np.sqrt(cost[i] / len(f))), note=note)


FLOOR_MARGIN = 2.0  # a ring counts as hidden by the rounding noise where its power is below twice the noise's
TIE = 0.25  # below a floor several s fit about as well: the smallest whose misfit is within 25 % of the best


def estimate_below_floor(profile: np.ndarray, floor: float) -> float | None:
    """The template fit of a `power_profile` with the white rounding noise of the image's grey-level
    grid (`floor`, its ring power on the profile's scale: `features`) taken off, or None where that
    noise hides no ring (or all but a few). A saved integer file whose spectrum falls under its own
    rounding noise shows a flat top the plain fit reads as sharp (s ≈ 1 for 8-bit files shrunk ×4,
    docs/DEGRADATIONS.md); here the rings above the noise are fitted as measured less the noise, and
    a hidden ring only says its power is below (FLOOR_MARGIN − 1) × the noise's: the fit pays for
    predicting more there, nothing for predicting less (censored least squares). What the noise
    hides could hold a cut at any s beyond what the rings show, so the smallest s whose misfit is
    within TIE of the best is read."""
    if floor <= 0:
        return None
    keep, _, basis, grid, templates = _fit_axes()
    p = profile[keep]
    hidden = p < FLOOR_MARGIN * floor
    if not hidden.any() or (~hidden).sum() < 8:
        return None
    bound = float(np.log10((FLOOR_MARGIN - 1) * floor))
    lp = np.where(hidden, bound, np.log10(np.maximum(p - floor, 1e-300)))
    cost = np.array([_censored_misfit(lp - t, hidden, bound - t, basis) for t in templates])
    return float(grid[int(np.argmax(cost <= cost.min() * (1 + TIE) + 1e-12))])


def _censored_misfit(y: np.ndarray, hidden: np.ndarray, top: np.ndarray, basis: np.ndarray) -> float:
    """Squared misfit of a + b·log f to `y` where not `hidden`, and to `top` where hidden and
    predicted above it; refitted until the rings that count stop changing."""
    used, target = ~hidden, np.where(hidden, top, y)
    for _ in range(5):
        coef = np.linalg.lstsq(basis[used], target[used], rcond=None)[0]
        now = ~hidden | (basis @ coef > top)
        if (now == used).all():
            break
        used = now
    r = (target - basis @ coef)[used]
    return float(r @ r)


@lru_cache(maxsize=1)
def _fit_axes() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What both template fits share: (which of the BINS rings they use, f ≥ F_MIN; those rings'
    frequencies f; the power law's basis [1, log f]; the grid of s, 1 to S_MAX by 0.05; `template`
    at those f for each s of the grid). Read only."""
    f = (np.arange(BINS) + 0.5) / BINS * 0.5
    keep = f >= F_MIN
    f = f[keep]
    grid = np.round(np.arange(1.0, S_MAX + 1e-9, 0.05), 2)
    return keep, f, np.stack([np.ones_like(f), np.log(f)], axis=1), grid, np.array([template(f, s) for s in grid])


def template(f: np.ndarray, s: float) -> np.ndarray:
    """log10 of the resampling's power transfer at frequencies f (cycles/pixel) for scale s."""
    if s <= 1:
        return np.zeros_like(f)
    table = np.asarray(TEMPLATE)
    return np.interp(f * s, np.arange(len(table)) * U_STEP, table)


def _misfit(y: np.ndarray, basis: np.ndarray, pinv: np.ndarray) -> float:
    r = y - basis @ (pinv @ y)
    return float(r @ r)


def _fill_gaps(profile: np.ndarray) -> np.ndarray:
    """Empty rings (a thin tile has no samples at some radii) take their neighbours' values."""
    ok = np.isfinite(profile)
    if ok.all() or not ok.any():
        return profile
    idx = np.arange(len(profile))
    return np.interp(idx, idx[ok], profile[ok])
