import re
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

import ficli.model.nets as nets
from ficli.model.nets import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    count_parameters,
    fold_spectral_norm,
    folded_state_dict,
    receptive_field,
)

TINY = GeneratorConfig(features=8, growth=4, layers=2, blocks=2)


def _with_correction(g: Generator, scale: float = 0.5) -> Generator:
    with torch.no_grad():
        g.out_scale.fill_(scale)
    return g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hw", [(4, 4), (8, 12), (32, 20)])
def test_generator_keeps_shape_and_dtype(hw, dtype):
    g = _with_correction(Generator(TINY)).to(dtype)
    x = torch.rand(2, 1, *hw, dtype=dtype)
    y = g(x)
    assert y.shape == x.shape and y.dtype == dtype
    assert not torch.equal(y, x)


@pytest.mark.parametrize("shape", [(1, 1, 30, 32), (1, 1, 32, 6), (1, 1, 2, 2), (1, 2, 8, 8), (1, 8, 8)])
def test_generator_refuses_shapes_it_cannot_take(shape):
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        Generator(TINY)(torch.rand(shape))


def test_multiple_is_four():
    assert GeneratorConfig().multiple == 4


def test_fresh_generator_is_exactly_the_identity():
    x = torch.rand(2, 1, 16, 24)
    assert torch.equal(Generator(TINY)(x), x)


def test_zeroed_tail_gives_exactly_the_input():
    g = _with_correction(Generator(TINY, spectral_norm=False), 1.0)
    with torch.no_grad():
        g.tail.weight.zero_()
        g.tail.bias.zero_()
    x = torch.rand(1, 1, 12, 16)
    assert torch.equal(g(x), x)


def test_every_conv_of_the_generator_is_spectrally_normalised():
    convs = [m for m in Generator(TINY).modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert not any(parametrize.is_parametrized(m) for m in Generator(TINY, spectral_norm=False).modules())


def test_fold_spectral_norm_keeps_eval_outputs():
    torch.manual_seed(0)
    g = _with_correction(Generator(TINY))
    x = torch.rand(2, 1, 16, 16)
    for _ in range(3):  # power iterations move u and v away from their initial values
        g(x)
    g.eval()
    with torch.no_grad():
        before = g(x)
        plain = folded_state_dict(g)
        assert any(parametrize.is_parametrized(m) for m in g.modules())  # folded_state_dict left g alone
        fold_spectral_norm(g)
        after = g(x)
    assert not any(parametrize.is_parametrized(m) for m in g.modules())
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert set(g.state_dict()) == set(Generator(TINY, spectral_norm=False).state_dict()) == set(plain)
    for k, v in g.state_dict().items():
        assert torch.equal(v, plain[k]), k


def _docstring_number(label: str) -> int:
    match = re.search(rf"{label}\s+([\d,]+)", nets.__doc__)
    assert match, f"{label} missing from ficli.model.nets docstring"
    return int(match.group(1).replace(",", ""))


def test_docstring_states_the_computed_sizes():
    assert count_parameters(Generator()) == _docstring_number("generator parameters")
    assert count_parameters(Discriminator()) == _docstring_number("discriminator parameters")
    assert receptive_field(GeneratorConfig()) == _docstring_number("receptive field radius")


def test_receptive_field_bounds_what_an_output_pixel_sees():
    cfg = GeneratorConfig(features=4, growth=4, layers=1, blocks=1)
    r = receptive_field(cfg)
    torch.manual_seed(0)
    g = _with_correction(Generator(cfg, spectral_norm=False), 1.0).double().eval()
    n = 2 * r + 24
    x = torch.rand(1, 1, n, n, dtype=torch.float64)
    changed_at_r = False
    for phase in range(4):
        c = n // 2 + phase
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        dist = torch.maximum((ys - c).abs(), (xs - c).abs())
        with torch.no_grad():
            ref = g(x)[0, 0, c, c]
            outside = g(torch.where(dist > r, x + 1.0, x))[0, 0, c, c]
            at_r = g(torch.where(dist == r, x + 1.0, x))[0, 0, c, c]
        assert abs(float(outside - ref)) < 1e-9
        changed_at_r |= abs(float(at_r - ref)) > 1e-9
    assert changed_at_r  # r is the radius, not merely a bound


def test_receptive_field_grows_with_depth():
    small = receptive_field(GeneratorConfig(blocks=1, layers=1))
    assert receptive_field(GeneratorConfig(blocks=2, layers=1)) == small + 4  # one 3×3 conv at 1/4 size


@pytest.mark.parametrize("hw", [(32, 40), (17, 23), (64, 64)])
def test_discriminator_gives_one_score_per_image(hw):
    d = Discriminator(DiscriminatorConfig(features=8))
    s = d(torch.rand(3, 1, *hw))
    assert s.shape == (3,)
    assert s.dtype == torch.float32


def test_discriminator_refuses_wrong_channels():
    with pytest.raises(ValueError, match=r"\(2, 3, 16, 16\)"):
        Discriminator()(torch.rand(2, 3, 16, 16))


def test_count_parameters():
    assert count_parameters(nn.Conv2d(1, 2, 3)) == 2 * 9 + 2
    # spectral norm's u and v are buffers: the count is the same with and without it
    assert count_parameters(Generator(TINY)) == count_parameters(Generator(TINY, spectral_norm=False))


# --- benchmark helpers (ficli.tools.bench) --------------------------------------------------------------


def test_generator_flops_counts_every_conv_by_hand():
    from ficli.tools.timing import generator_flops

    cfg = GeneratorConfig(features=4, growth=2, layers=1, blocks=1)

    def conv(cout, cin, k, side):  # 2 × multiply-adds of a k×k conv with a side × side output
        return 2 * cout * cin * k * k * side * side

    expected = (
        conv(4, 1, 3, 8)  # head
        + conv(4, 4, 3, 4) + conv(4, 4, 3, 2)  # two stride-2 convs
        + conv(2, 4, 3, 2) + conv(4, 6, 1, 2)  # the dense layer and local fusion
        + conv(4, 4, 1, 2) + conv(4, 4, 3, 2)  # global fusion
        + conv(16, 4, 3, 2) + conv(16, 4, 3, 4)  # upsampling convs before each PixelShuffle
        + conv(1, 4, 3, 8)  # tail
    )
    assert generator_flops(cfg, 8, 8) == expected
    assert generator_flops(cfg, 16, 8) == 2 * expected


def test_bench_rows_and_table():
    from ficli.tools.bench import bench_generator, bench_tg
    from ficli.tools.timing import best_batch_rows, format_table

    tg = bench_tg(sizes=(8,), batch=1, repeats=1)
    assert tg[0]["size"] == 8 and tg[0]["direct_ms"] > 0 and tg[0]["fft_ms"] > 0
    gen = bench_generator(sizes=((16, 8),), repeats=1, config=TINY, batches=(1, 2), precisions=("fp32",))
    assert [(r["width"], r["height"], r["precision"], r["batch"]) for r in gen] == [(16, 8, "fp32", 1), (16, 8, "fp32", 2)]
    assert all(r["fps"] == pytest.approx(1e3 / r["ms_per_frame"]) for r in gen)
    best = best_batch_rows(gen)
    assert best[0]["batch"] == 1 and len(best) in (1, 2) and best[-1]["fps"] == max(r["fps"] for r in gen)
    lines = format_table(gen).splitlines()
    assert len(lines) == 4 and lines[0].split()[:2] == ["width", "height"] and set(lines[1]) <= {"-", " "}
    assert format_table([]) == ""


def test_bench_defaults_to_every_precision_the_device_runs(monkeypatch):
    from ficli.tools import bench
    from ficli.inference import device

    for native, expected in ((True, ["fp32", "bf16"]), (False, ["fp32"])):
        monkeypatch.setattr(device, "cpu_has_bf16", lambda: native)
        rows = bench.bench_generator(sizes=((16, 8),), repeats=1, config=TINY)
        assert [r["precision"] for r in rows] == expected


def test_flops_per_part_add_up_and_follow_the_layer_shapes():
    from ficli.tools.timing import GENERATOR_PARTS, generator_flops

    cfg = GeneratorConfig()
    parts = generator_flops(cfg, 720, 1280, parts=True)
    assert list(parts) == list(GENERATOR_PARTS) and sum(parts.values()) == generator_flops(cfg, 720, 1280)
    # By hand: the tail is one 3×3 conv 64 -> 1 at full size; the body's first dense layer 64 -> 32 at 1/4.
    assert parts["tail"] == 2 * 720 * 1280 * 64 * 9
    per_block = sum(2 * 180 * 320 * 32 * 9 * (64 + 32 * i) for i in range(4)) + 2 * 180 * 320 * (64 + 128) * 64
    assert parts["body"] == 7 * per_block + 2 * 180 * 320 * (7 * 64 * 64 + 64 * 64 * 9)


def test_peak_table_matches_device_names(monkeypatch):
    from ficli.tools import timing

    assert timing.peak_tflops("cpu") is None
    for name, peak in (("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0),
                       ("NVIDIA GeForce GTX 1080", None)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        assert timing.peak_tflops("cuda") == peak


def test_targets_are_judged_only_on_their_device(monkeypatch):
    from ficli.tools import bench

    gen = [{"width": 1280, "height": 720, "precision": "bf16", "fps": 350.0}]
    body = [{"width": 1280, "height": 720, "precision": "bf16", "tflop_per_s": 300.0, "pct_of_peak": 30.3}]
    vid = [{"width": 1280, "height": 720, "precision": p, "e2e_fps": fps, "limit": limit}
           for p, fps, limit in (("fp32", 50.0, "model"), ("fp16", 90.0, "encode"))]
    vid += [{"width": 640, "height": 360, "precision": "fp32", "e2e_fps": 1.5, "limit": "model"}]
    cpu = {r["target"]: r for r in bench.target_rows(gen, body, vid, "cpu")}
    assert [r["met"] for r in cpu.values()] == ["-", "-", "-", "no"]
    assert cpu["ficli video 1280×720 end to end (H100-class GPU)"]["measured"] == 90.0
    assert cpu["ficli video 1280×720 end to end (H100-class GPU)"]["limit"] == "encode"
    monkeypatch.setattr(bench, "peak_tflops", lambda device: 989.4)
    gpu = bench.target_rows(gen, body, vid, "cuda")
    assert [r["met"] for r in gpu] == ["yes", "no", "no"]
    assert bench.target_rows([], [], [], "cuda")[0]["measured"] is None


def test_scale_conditioned_generator_reads_its_scale():
    cfg = GeneratorConfig(features=8, growth=4, layers=1, blocks=1, scale_input=True)
    torch.manual_seed(0)
    g = Generator(cfg, spectral_norm=False).eval()
    with torch.no_grad():
        g.out_scale.fill_(1.0)
        x = torch.rand(2, 1, 16, 16)
        one, four = g(x, 1.0), g(x, 4.0)
        per_image = g(x, torch.tensor([1.0, 4.0]))
    assert not torch.allclose(one, four)  # the scale reaches the output
    torch.testing.assert_close(per_image[0], one[0])
    torch.testing.assert_close(per_image[1], four[1])
    assert g.head.weight.shape[1] == 2  # image + scale map


def test_scale_conditioned_generator_needs_a_scale_and_plain_one_refuses_it():
    cond = Generator(GeneratorConfig(features=8, growth=4, layers=1, blocks=1, scale_input=True), spectral_norm=False)
    plain = Generator(GeneratorConfig(features=8, growth=4, layers=1, blocks=1), spectral_norm=False)
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="blur scale"):
        cond(x)
    with pytest.raises(ValueError, match="no blur scale"):
        plain(x, 2.0)
    with pytest.raises(ValueError, match="one per image"):
        cond(torch.rand(3, 1, 8, 8), torch.tensor([1.0, 2.0]))


def test_scale_conditioned_generator_keeps_the_receptive_field():
    cfg = GeneratorConfig(blocks=1, layers=1)
    assert receptive_field(replace(cfg, scale_input=True)) == receptive_field(cfg)
