"""Tiled inference against its oracle, the whole-image pass; window, padding, recoveries, devices,
normalisation. Callables are identity, pixel-wise and tiny random conv nets defined here."""

import numpy as np
import pytest
import torch
from torch import nn

from ficli.inference import device, engine
from ficli.inference.engine import (
    TileConfig,
    axis_windows,
    balanced_tile,
    receptive_field_overlap,
    run_tiled,
    tile_starts,
    weight_sum,
)
from ficli.inference.device import resolve_device, resolve_precision
from ficli.image.intensity import denormalize, normalize, percentile_range
from ficli.errors import ConfigError, FicliError, InputError

torch.set_num_threads(1)


# --- callables and references -----------------------------------------------------------------


def conv_net(depth: int, channels: int = 1, width: int = 8, seed: int = 0) -> nn.Module:
    """`depth` 3x3 convolutions with zero padding: receptive-field radius `depth` pixels."""
    torch.manual_seed(seed)
    layers, c_in = [], channels
    for i in range(depth):
        c_out = channels if i == depth - 1 else width
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
        if i < depth - 1:
            layers.append(nn.Tanh())
        c_in = c_out
    return nn.Sequential(*layers).eval()


def down_up_net(channels: int = 1, seed: int = 0) -> nn.Module:
    """Two stride-2 convolutions, one at 1/4 size, PixelShuffle x4: like FI-GAN, exact only on the
    4-pixel grid. Receptive field: at most 10 pixels on any side."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, 2, 1), nn.Tanh(),
        nn.Conv2d(8, 16, 3, 2, 1), nn.Tanh(),
        nn.Conv2d(16, 16, 3, 1, 1), nn.Tanh(),
        nn.Conv2d(16, channels * 16, 1), nn.PixelShuffle(4),
    ).eval()


def pad_reference(image: np.ndarray, multiple: int = 4) -> np.ndarray:
    """np.pad at the bottom/right: reflect, or edge where the axis is too short to reflect."""
    for axis in (1, 2):
        length = image.shape[axis]
        pad = -length % multiple
        widths = [(0, 0)] * 3
        widths[axis] = (0, pad)
        image = np.pad(image, widths, mode="reflect" if pad < length else "edge")
    return image


def whole_pass(fn, image: np.ndarray) -> np.ndarray:
    """The oracle: `fn` on the whole padded image at once, cropped back."""
    _, h, w = image.shape
    with torch.no_grad():
        out = fn(torch.from_numpy(pad_reference(image))[None])
    return out[0, :, :h, :w].numpy()


def crop_and_paste(fn, image: np.ndarray, tile: int) -> np.ndarray:
    """Naive tiling for comparison: no overlap, no blending."""
    _, h, w = image.shape
    padded = np.pad(image, ((0, 0), (0, -h % tile), (0, -w % tile)), mode="reflect")
    out = np.zeros_like(padded)
    for y in range(0, padded.shape[1], tile):
        for x in range(0, padded.shape[2], tile):
            piece = np.ascontiguousarray(padded[None, :, y : y + tile, x : x + tile])
            with torch.no_grad():
                out[:, y : y + tile, x : x + tile] = fn(torch.from_numpy(piece))[0].numpy()
    return out[:, :h, :w]


def seam_contrast(tiled: np.ndarray, whole: np.ndarray) -> float:
    """Largest column-to-column jump of the tiling error, relative to the image's own mean
    column-to-column change: a visible seam is a jump in the error that stands out of the image."""
    jump = np.abs(np.diff(tiled - whole, axis=-1)).mean(axis=(0, 1))
    return float(jump.max() / np.abs(np.diff(whole, axis=-1)).mean())


def random_image(c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((c, h, w), dtype=np.float32)


# --- layout and window ------------------------------------------------------------------------

LAYOUTS = [  # (padded length, tile, overlap)
    (40, 64, 8),  # smaller than a tile
    (64, 64, 8),  # exactly one tile
    (68, 64, 8),  # one grid step more
    (100, 64, 8),
    (132, 64, 16),
    (256, 48, 8),
    (412, 128, 32),
    (1000, 512, 32),
    (96, 32, 0),  # no overlap: hard cuts
    (4, 512, 32),
]


@pytest.mark.parametrize("length, tile, overlap", LAYOUTS)
def test_axis_windows_partition_unity_and_keep_context(length, tile, overlap):
    windows = axis_windows(length, tile, overlap)
    total = np.zeros(length)
    for i, (start, w) in enumerate(windows):
        assert start % 4 == 0
        assert len(w) == min(tile, length)
        assert w.min() >= 0 and w.max() <= 1
        total[start : start + len(w)] += w
        # the outer `overlap` pixels of a side shared with a neighbour are context only
        if i > 0:
            assert np.all(w[:overlap] == 0)
        else:
            assert w[0] == 1  # a side on the image border keeps full weight
        if i < len(windows) - 1:
            assert np.all(w[len(w) - overlap :] == 0)
        else:
            assert w[-1] == 1
            assert start + len(w) == length  # last tile aligned to the end
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("length, tile, overlap", LAYOUTS + [(1280, 512, 32), (720, 512, 32), (1080, 1024, 32), (500, 64, 16), (308, 28, 4)])
def test_balanced_tiles_are_fewest_smallest_and_still_partition_unity(length, tile, overlap):
    size = balanced_tile(length, tile, overlap)
    assert size == length if length <= tile else (size <= tile and size % 4 == 0)
    n = len(tile_starts(length, size, overlap))
    assert n == len(tile_starts(length, tile, overlap))  # no more tiles than full-size ones need
    if n > 1:  # one grid step smaller would need another tile
        assert len(tile_starts(length, size - 4, overlap)) > n
    test_axis_windows_partition_unity_and_keep_context(length, size, overlap)


def test_balanced_tiles_cut_the_recomputed_area_at_720p():
    computed = {t: len(tile_starts(1280, t[1], 32)) * t[1] * len(tile_starts(720, t[0], 32)) * t[0]
                for t in [(512, 512), (balanced_tile(720, 512, 32), balanced_tile(1280, 512, 32))]}
    # 1,572,864 -> 1,204,416 px computed for the frame's 921,600: 1.71 -> 1.31 x
    assert list(computed.values()) == [3 * 512 * 2 * 512, 3 * 492 * 2 * 408]


def test_window_is_a_smooth_ramp_over_the_overlap():
    (_, first), (_, second) = axis_windows(100, 64, 8)
    ramp = first[(first > 0) & (first < 1)]
    assert len(ramp) == 8
    assert np.all(np.diff(ramp) < 0)
    assert np.abs(np.diff(first)).max() < 0.25  # no hard cut: steps of at most ~pi/(2*8)
    assert first.sum() + second.sum() == pytest.approx(100, abs=1e-4)


@pytest.mark.parametrize("height, width", [(40, 40), (100, 68), (132, 256), (4, 412)])
@pytest.mark.parametrize("tile, overlap", [(64, 8), (64, 16), (128, 32)])
def test_weight_map_sums_to_one(height, width, tile, overlap):
    np.testing.assert_allclose(weight_sum(height, width, tile, overlap), 1.0, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (1, 301), (37, 53), (130, 97)])
@pytest.mark.parametrize("tile, overlap", [(32, 4), (48, 8), (512, 32)])
def test_identity_and_pixelwise_are_exact_for_odd_sizes(shape, tile, overlap):
    image = random_image(2, *shape)
    config = TileConfig(tile=tile, overlap=overlap, batch=3)
    same = run_tiled(lambda x: x, image, config)
    assert same.shape == image.shape and same.dtype == np.float32
    np.testing.assert_allclose(same, image, rtol=0, atol=1e-6)
    squared = run_tiled(lambda x: x * x + 0.1, image, config)
    np.testing.assert_allclose(squared, image**2 + 0.1, rtol=0, atol=1e-6)


def test_tile_starts_cover_the_axis_on_the_grid():
    assert tile_starts(40, 64, 8) == [0]
    assert tile_starts(1000, 512, 32) == [0, 416, 488]
    assert tile_starts(100, 64, 8) == [0, 36]


# --- against the whole-image pass -------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (1, 77), (37, 53), (100, 150)])
def test_conv_net_exact_with_overlap_at_least_the_receptive_field(shape):
    net = conv_net(depth=5)  # radius 5
    image = random_image(1, *shape)
    config = TileConfig(tile=40, overlap=receptive_field_overlap(5))
    tiled = run_tiled(net, image, config)
    assert tiled.shape == image.shape
    np.testing.assert_allclose(tiled, whole_pass(net, image), rtol=0, atol=1e-5)


def test_stride_two_net_exact_on_the_four_pixel_grid():
    net = down_up_net(channels=2)
    image = random_image(2, 90, 131)
    tiled = run_tiled(net, image, TileConfig(tile=64, overlap=receptive_field_overlap(10)))
    np.testing.assert_allclose(tiled, whole_pass(net, image), rtol=0, atol=1e-5)


def test_default_overlap_exact_for_small_net():
    net = conv_net(depth=6)
    image = random_image(1, 256, 256)
    tiled = run_tiled(net, image, TileConfig(tile=128))  # default overlap 32
    error = np.abs(tiled - whole_pass(net, image)).max()
    print(f"default overlap 32, radius 6: max |tiled - whole| = {error:.2e}")
    assert error < 1e-5


def test_small_overlap_difference_is_bounded_and_seamless():
    net = conv_net(depth=6)  # radius 6 > overlap 4
    image = random_image(1, 120, 200)
    whole = whole_pass(net, image)
    tiled = run_tiled(net, image, TileConfig(tile=48, overlap=4))
    naive = crop_and_paste(net, image, 48)
    error, naive_error = np.abs(tiled - whole).max(), np.abs(naive - whole).max()
    blended, pasted = seam_contrast(tiled, whole), seam_contrast(naive, whole)
    print(f"overlap 4 < radius 6: max |tiled - whole| = {error:.2e} "
          f"(crop-and-paste {naive_error:.2e}); "
          f"seam contrast {blended:.3f} (crop-and-paste {pasted:.3f})")
    assert 0 < error < 0.05 * naive_error  # inexact, but far closer than crop-and-paste
    assert blended < 0.05  # no visible step at the seams ...
    assert pasted > 1.0  # ... where crop-and-paste leaves one the size of the image's own detail


def test_batch_size_does_not_change_the_result():
    net = conv_net(depth=3, channels=2)
    image = random_image(2, 70, 90)
    one = run_tiled(net, image, TileConfig(tile=32, overlap=4, batch=1))
    three = run_tiled(net, image, TileConfig(tile=32, overlap=4, batch=3))
    np.testing.assert_allclose(one, three, rtol=0, atol=1e-6)


def test_progress_reports_every_tile():
    seen = []
    run_tiled(lambda x: x, random_image(1, 100, 100), TileConfig(tile=32, overlap=4, batch=3),
              on_progress=lambda done, total: seen.append((done, total)))
    total = seen[-1][1]
    assert seen[-1] == (total, total) and total == len(tile_starts(100, balanced_tile(100, 32, 4), 4)) ** 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_rejects_non_chw_input():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        run_tiled(lambda x: x, np.zeros((10, 10), np.float32))


# --- recoveries ---------------------------------------------------------------------------------


def oom_above(limit: int, fn, error=torch.OutOfMemoryError):
    """`fn`, but failing like CUDA does for tiles with a side above `limit` pixels."""
    sides = []

    def wrapped(x):
        sides.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > limit:
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return fn(x)

    return wrapped, sides


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, RuntimeError])
def test_out_of_memory_halves_the_tile_and_still_matches(error):
    net = conv_net(depth=3)
    image = random_image(1, 100, 150)
    fn, sides = oom_above(48, net, error)
    notices = []
    tiled = run_tiled(fn, image, TileConfig(tile=96, overlap=4), on_notice=notices.append)
    # 100×152 in balanced tiles of at most 96: 56×84; after the failure, at most 42 -> 40: 36×40
    assert sides[0] == 84 and set(sides[1:]) == {40}
    assert len(notices) == 1 and "40-pixel" in notices[0]
    np.testing.assert_allclose(tiled, whole_pass(net, image), rtol=0, atol=1e-5)


def test_out_of_memory_gives_up_with_advice_below_the_floor():
    fn, sides = oom_above(8, lambda x: x)
    notices = []
    with pytest.raises(FicliError, match="--batch"):
        run_tiled(fn, random_image(1, 100, 150), TileConfig(tile=96, overlap=8),
                  on_notice=notices.append)
    assert sides == [88, 44, 40]  # balanced tiles of at most 96, halved, then the floor 3 * 8 + 16
    assert len(notices) == 2


def test_other_runtime_errors_propagate():
    def broken(x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        run_tiled(broken, random_image(1, 20, 20))


def test_half_precision_nan_batches_are_redone_in_fp32(monkeypatch):
    # Half precision needs CUDA; on CPU, let CPU autocast (bf16) stand in for it.
    monkeypatch.setattr(engine, "resolve_precision", lambda precision, device: torch.bfloat16)
    calls = {"half": 0, "fp32": 0}

    def fn(x):
        if torch.is_autocast_enabled("cpu"):
            calls["half"] += 1
            return torch.full_like(x, float("nan"))
        calls["fp32"] += 1
        return x * 2

    image = random_image(1, 70, 70)
    notices = []
    out = run_tiled(fn, image, TileConfig(tile=32, overlap=4, batch=2, precision="bf16"),
                    on_notice=notices.append)
    batches = -(-len(tile_starts(72, 32, 4)) ** 2 // 2)
    assert calls == {"half": batches, "fp32": batches}
    assert len(notices) == 1 and "fp32" in notices[0]
    np.testing.assert_allclose(out, image * 2, rtol=0, atol=1e-6)


def test_finite_half_precision_batches_are_not_redone(monkeypatch):
    monkeypatch.setattr(engine, "resolve_precision", lambda precision, device: torch.bfloat16)
    calls = []
    notices = []
    run_tiled(lambda x: calls.append(torch.is_autocast_enabled("cpu")) or x,
              random_image(1, 40, 40), TileConfig(tile=32, overlap=4), on_notice=notices.append)
    assert calls and all(calls) and notices == []


# --- configuration, devices, precision --------------------------------------------------------


def test_tile_config_checks_and_rounds():
    assert TileConfig(overlap=5).overlap == 8
    assert receptive_field_overlap(10) == 12 and receptive_field_overlap(0) == 0
    with pytest.raises(ConfigError, match="multiple of 4"):
        TileConfig(tile=510)
    with pytest.raises(ConfigError, match="too small"):
        TileConfig(tile=64, overlap=32)
    with pytest.raises(ConfigError, match="batch"):
        TileConfig(batch=0)
    with pytest.raises(ConfigError, match="precision"):
        TileConfig(precision="fp64")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ConfigError, match="cpu"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="does not exist|not available"):
        resolve_device("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="this machine has: cpu"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="not available"):
            resolve_device("mps")


def test_resolve_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is torch.float32
    with pytest.raises(ConfigError, match="fp32"):
        resolve_precision("fp16", cpu)  # emulated on CPUs: slower than fp32
    with pytest.raises(ConfigError, match="CUDA"):
        run_tiled(lambda x: x, random_image(1, 8, 8), TileConfig(precision="fp16"))
    with pytest.raises(ConfigError):
        resolve_precision("int8", cpu)


def test_bf16_on_cpu_follows_native_support(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="AVX-512 BF16 or AMX.*fp32"):
        resolve_precision("bf16", cpu)
    with pytest.raises(ConfigError, match="AVX-512 BF16 or AMX"):
        run_tiled(lambda x: x, random_image(1, 8, 8), TileConfig(precision="bf16"))


@pytest.mark.skipif(not device.cpu_has_bf16(), reason="this CPU has no native bf16 (AVX-512 BF16 or AMX)")
def test_bf16_on_cpu_runs_under_autocast():
    seen = []
    out = run_tiled(lambda x: seen.append(torch.is_autocast_enabled("cpu")) or torch.nn.functional.conv2d(x, torch.ones(1, 1, 1, 1)),
                    random_image(1, 40, 40), TileConfig(tile=32, overlap=4, precision="bf16"))
    assert seen and all(seen) and out.dtype == np.float32


# --- intensity normalisation ------------------------------------------------------------------


def test_percentile_range_matches_numpy_and_leaves_input_alone():
    image = (np.random.default_rng(1).random((3, 64, 64)) * 4000).astype(np.uint16)
    before = image.copy()
    lo, hi = percentile_range(image)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(image, [0.1, 99.9])))
    np.testing.assert_array_equal(image, before)
    assert percentile_range(image, 1, 99) == pytest.approx(tuple(np.percentile(image, [1, 99])))


def test_normalize_round_trip_is_exact_and_unclipped():
    image = random_image(1, 50, 60) * 0.06  # 12-bit data in a 16-bit file
    lo, hi = percentile_range(image)
    mapped = normalize(image, lo, hi)
    assert mapped.dtype == np.float32
    assert mapped.min() < 0 and mapped.max() > 1  # the 0.1 % tails are not clipped
    np.testing.assert_allclose(np.percentile(mapped, [0.1, 99.9]), [0, 1], atol=1e-5)
    np.testing.assert_allclose(denormalize(mapped, lo, hi), image, rtol=0, atol=1e-7)
    tensor = torch.from_numpy(image)
    torch.testing.assert_close(denormalize(normalize(tensor, lo, hi), lo, hi), tensor)


def test_flat_images_stay_finite_and_keep_their_value():
    flat = np.full((1, 20, 20), 0.3, np.float32)
    lo, hi = percentile_range(flat)
    assert hi > lo
    mapped = normalize(flat, lo, hi)
    assert np.all(np.isfinite(mapped)) and np.all(mapped == 0)
    np.testing.assert_allclose(denormalize(mapped, lo, hi), flat, atol=1e-7)
    # nearly flat: the percentiles coincide, so the full range is used instead
    spot = np.full((1, 100, 100), 0.3, np.float32)
    spot[0, 0, 0] = 0.9
    assert percentile_range(spot) == pytest.approx((0.3, 0.9))


def test_percentile_range_rejects_nan_and_bad_percentiles():
    with pytest.raises(InputError, match="NaN"):
        percentile_range(np.full((4, 4), np.nan, np.float32))
    with pytest.raises(ConfigError):
        percentile_range(np.zeros((4, 4)), 99, 1)


def test_an_image_within_one_tile_area_runs_in_one_piece():
    """640×360 fits in 512² pixels: one call of the callable on the whole padded image, exact."""
    calls = []

    def fn(x):
        calls.append(tuple(x.shape))
        return x * 2

    image = np.random.default_rng(0).random((1, 358, 638)).astype(np.float32)
    out = run_tiled(fn, image, TileConfig(tile=512, overlap=32))
    assert calls == [(1, 1, 360, 640)]
    assert np.allclose(out, image * 2)
    calls.clear()
    run_tiled(fn, np.zeros((1, 600, 600), np.float32), TileConfig(tile=512, overlap=32))
    assert sum(c[0] for c in calls) > 1 and all(c[2] <= 512 and c[3] <= 512 for c in calls)  # tiles
