"""Timings of the total gradient loss and of the generator; tables, not tests.

`bench_tg` compares the direct and the FFT form of L_TG (forward + backward); `bench_generator`
times inference at video sizes and reports the arithmetic rate from `generator_flops`.
`benchmarks/bench_model.py` runs both and prints the tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from ficli.engine import PRECISIONS, configure_cuda, resolve_precision
from ficli.errors import ConfigError
from ficli.losses import tg_loss_direct, tg_loss_fft
from ficli.nets import Generator, GeneratorConfig


def _best_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None, warmup: int = 1) -> float:
    """Shortest wall time of fn() in milliseconds over `repeats` calls, after `warmup` untimed calls.

    The minimum, not the median: on a shared machine other work only ever adds time, so the
    fastest run is the best estimate of the code's own cost (as `timeit` advises).
    """
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times)


def device_sync(device: torch.device) -> Callable[[], None]:
    """A function that waits for `device` to finish its queued work (CUDA runs asynchronously), for
    timing; a no-op elsewhere."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def bench_tg(sizes: Sequence[int] = (32, 64, 128, 256), batch: int = 4, repeats: int = 10, device: str = "cpu") -> list[dict]:
    """Direct vs FFT total gradient loss, forward + backward, k_max "N/2", on (batch, 1, n, n) float32.

    One row per size: {"size", "batch", "k_max", "direct_ms", "fft_ms", "speedup"} (direct / fft).
    """
    dev = torch.device(device)
    sync = device_sync(dev)
    rows = []
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        pred = torch.rand(batch, 1, n, n, generator=gen).to(dev).requires_grad_(True)
        target = torch.rand(batch, 1, n, n, generator=gen).to(dev)
        ms = {}
        for name, loss in (("direct", tg_loss_direct), ("fft", tg_loss_fft)):
            ms[name] = _best_ms(lambda: torch.autograd.grad(loss(pred, target, "N/2"), pred), repeats, sync)
        rows.append({
            "size": n, "batch": batch, "k_max": "N/2",
            "direct_ms": ms["direct"], "fft_ms": ms["fft"], "speedup": ms["direct"] / ms["fft"],
        })
    return rows


GENERATOR_PARTS = ("head", "down", "body", "up", "tail")


def generator_flops(config: GeneratorConfig, h: int, w: int, parts: bool = False) -> int | dict[str, int]:
    """Floating-point operations of one generator forward pass on an h × w image.

    2 × multiply-adds of every convolution, from its weight and output shapes (collected by forward
    hooks on a shape-only "meta" model, so nothing is computed). Biases, activations, pixel
    shuffles and the residual additions (under 1 % together) are not counted. With `parts`, a dict
    of the counts per part of `GENERATOR_PARTS` (body: the residual dense blocks and global fusion).
    """
    totals = dict.fromkeys(GENERATOR_PARTS, 0)

    def counter(part: str):
        def count(module: nn.Conv2d, inputs, output: torch.Tensor) -> None:
            cout, cin_per_group, kh, kw = module.weight.shape
            totals[part] += 2 * output.shape[0] * cout * output.shape[2] * output.shape[3] * cin_per_group * kh * kw
        return count

    with torch.device("meta"):
        g = Generator(config, spectral_norm=False)
        for part, modules in (("head", [g.head]), ("down", [g.down]), ("body", [g.blocks, g.fusion]),
                              ("up", [g.up]), ("tail", [g.tail])):
            for module in modules:
                for m in module.modules():
                    if isinstance(m, nn.Conv2d):
                        m.register_forward_hook(counter(part))
        g(torch.empty(1, config.channels, h, w))
    return totals if parts else sum(totals.values())


# Dense (no sparsity) bf16/fp16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s, by a part of
# the name torch reports; the first match counts, so the more specific names come first.
GPU_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
                   ("GH200", 989.4), ("A100", 312.0), ("L40S", 362.1), ("A10", 125.0), ("L4", 121.0))


def _timing_generator(config: GeneratorConfig, device: torch.device) -> nn.Module:
    """A generator with random weights (the time does not depend on them) as `enhance` runs one:
    plain weights, eval, channels-last, cuDNN set up on CUDA."""
    if device.type == "cuda":
        configure_cuda()
    torch.manual_seed(0)
    return Generator(config, spectral_norm=False).to(device).eval().to(memory_format=torch.channels_last)


def peak_tflops(device: str) -> float | None:
    """The dense half-precision peak of a CUDA device, or None where unknown (and on CPUs)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    return next((peak for key, peak in GPU_PEAK_TFLOPS if key in name), None)


def bench_body(
    sizes: Sequence[tuple[int, int]] = ((1280, 720),),
    device: str = "cpu",
    repeats: int = 3,
    config: GeneratorConfig = GeneratorConfig(),
    precisions: Sequence[str] | None = None,
    batch: int = 1,
) -> list[dict]:
    """The generator's convolution-bound body alone (residual dense blocks and global fusion, at a
    quarter of the frame's width and height): time, TFLOP/s and share of the device's dense
    half-precision peak (`peak_tflops`; None where unknown). One row per size and precision.
    """
    dev = torch.device(device)
    sync = device_sync(dev)
    precisions = precisions or [p for p in PRECISIONS if precision_runs(p, dev)]
    peak = peak_tflops(device)
    g = _timing_generator(config, dev)
    rows = []
    for w, h in sizes:
        gflop = batch * generator_flops(config, h, w, parts=True)["body"] / 1e9
        for precision in precisions:
            # In the generator the body's input comes out of an autocast convolution: in the compute
            # dtype (an fp32 input would make every concatenation in the blocks fp32).
            x = torch.rand(batch, config.features, h // 4, w // 4, device=dev, dtype=PRECISIONS[precision])
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=PRECISIONS[precision], enabled=precision != "fp32"):
                ms = _best_ms(lambda: g.body(x), repeats, sync)
            tflops = gflop / ms
            rows.append({
                "width": w, "height": h, "precision": precision, "batch": batch, "body_ms": ms, "gflop": gflop,
                "tflop_per_s": tflops, "pct_of_peak": None if peak is None or precision == "fp32" else 100 * tflops / peak,
            })
    return rows


def bench_generator(
    sizes: Sequence[tuple[int, int]] = ((640, 360), (1280, 720)),
    device: str = "cpu",
    repeats: int = 3,
    config: GeneratorConfig = GeneratorConfig(),
    batches: Sequence[int] = (1,),
    precisions: Sequence[str] | None = None,
    compiled: Sequence[bool] = (False,),
) -> list[dict]:
    """Inference time of the generator (plain weights, eval, inference_mode, channels-last as
    `enhance` runs it) per size, precision, batch and, with `compiled=(False, True)`, without and
    with `torch.compile` as `--compile` runs it (CUDA graphs on CUDA; three warm-up calls, so that
    compiling and graph recording are not timed); random weights (the time does not depend on them).

    sizes are (width, height), multiples of 4. `precisions` defaults to every one the engine runs on
    the device: fp32, bf16 where native (CUDA or AVX-512 BF16/AMX CPUs) and fp16 on CUDA (autocast). One row per size,
    precision and batch: {"width", "height", "precision", "batch", "ms_per_frame", "fps", "gflop",
    "tflop_per_s"}; `best_batch_rows` keeps the fastest batch of each size and precision.
    """
    dev = torch.device(device)
    sync = device_sync(dev)
    if precisions is None:
        precisions = [p for p in PRECISIONS if precision_runs(p, dev)]
    g = _timing_generator(config, dev)
    rows = []
    for w, h in sizes:
        gflop = generator_flops(config, h, w) / 1e9
        for precision in precisions:
            half = precision != "fp32"
            for batch in batches:
                x = torch.rand(batch, config.channels, h, w, device=dev).contiguous(memory_format=torch.channels_last)
                for use_compile in compiled:
                    run = _compiled(g, dev) if use_compile else g
                    with torch.inference_mode(), torch.autocast(dev.type, dtype=PRECISIONS[precision], enabled=half):
                        ms = _best_ms(lambda: run(x), repeats, sync, warmup=3 if use_compile else 1) / batch
                    rows.append({
                        "width": w, "height": h, "precision": precision, "batch": batch,
                        **({"compiled": use_compile} if len(compiled) > 1 or use_compile else {}),
                        "ms_per_frame": ms, "fps": 1e3 / ms, "gflop": gflop, "tflop_per_s": gflop / ms,
                    })
    return rows


def _compiled(module: nn.Module, device: torch.device) -> Callable:
    """A fresh `CompiledGenerator` for one shape and precision: torch.compile's caches are cleared
    first, so no row inherits another's graphs or runs into its recompilation limit (beyond which
    it would quietly run uncompiled)."""
    from ficli.enhance import CompiledGenerator

    torch._dynamo.reset()
    return CompiledGenerator(module, cuda_graphs=device.type == "cuda")


def precision_runs(precision: str, device: str | torch.device) -> bool:
    """Whether the engine runs `precision` on `device` (see `engine.resolve_precision`)."""
    try:
        resolve_precision(precision, torch.device(device))
        return True
    except ConfigError:
        return False


# Compiling takes tens of seconds per shape and precision, so --compile adds rows only where the
# targets are judged (1280×720, a half precision): a GPU check stays within minutes.
COMPILED_SIZE = (1280, 720)


def _compiled_size(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    return COMPILED_SIZE if COMPILED_SIZE in sizes else sizes[0]


def generator_rows(quick: bool, device: str, repeats: int, config: GeneratorConfig,
                   sizes: Sequence[tuple[int, int]], compile_model: bool) -> list[dict]:
    """`ficli bench`'s generator table: batch 1 and the best batch per size and precision the
    device runs; with `compile_model`, also compiled at COMPILED_SIZE (or the first size, where it
    is not among them) in bf16 (fp32 where the device has no bf16), at the batches kept for it."""
    rows = best_batch_rows(bench_generator(sizes, device, repeats, config, batches=(1, 2) if quick else (1, 2, 4)))
    if not compile_model:
        return rows
    size = _compiled_size(sizes)
    precision = "bf16" if precision_runs("bf16", device) else "fp32"
    batches = sorted({r["batch"] for r in rows if (r["width"], r["height"]) == size and r["precision"] == precision})
    compiled = bench_generator((size,), device, repeats, config, batches=batches, precisions=(precision,), compiled=(True,))
    return [{**r, "compiled": False} for r in rows] + best_batch_rows(compiled)


def video_rows(quick: bool, device: str, repeats: int, compile_model: bool,
               sizes: Sequence[tuple[int, int]] | None = None) -> list[dict]:
    """`ficli bench`'s video table: at each size (default 640×360 and 1280×720), fp32 and the
    fastest accurate half precision the device runs (fp16 on CUDA, bf16 on CPUs with it); with
    `compile_model`, also compiled at COMPILED_SIZE (or the first size) in that half precision.
    `quick`: a 160×92 clip of 4 frames in fp32, to check that everything runs."""
    from ficli.video import bench_video

    if quick:
        return [bench_video((160, 92), frames=4, device=device, compile_model=c) for c in ((False, True) if compile_model else (False,))]
    sizes = sizes or ((640, 360), COMPILED_SIZE)
    cuda = device.startswith("cuda")
    half = "fp16" if cuda and precision_runs("fp16", device) else "bf16"
    frames = 300 if cuda else 12  # GPU rates need enough frames to outweigh ffmpeg's start-up
    runs = [(size, p, False) for size in sizes for p in ("fp32", half) if precision_runs(p, device)]
    if compile_model:
        runs.append((_compiled_size(sizes), half if precision_runs(half, device) else "fp32", True))
    return [bench_video(size, frames=frames, device=device, precision=p, repeats=repeats, compile_model=c) for size, p, c in runs]


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """"1280x720,640x360" -> ((1280, 720), (640, 360)); ConfigError unless each side is a positive
    multiple of 4 (the generator's grid)."""
    sizes = []
    for part in text.split(","):
        try:
            w, h = (int(v) for v in part.strip().lower().split("x"))
        except ValueError:
            raise ConfigError(f"--sizes {text!r}: give WIDTHxHEIGHT[,WIDTHxHEIGHT...], e.g. 1280x720") from None
        if w <= 0 or h <= 0 or w % 4 or h % 4:
            raise ConfigError(f"--sizes {part.strip()!r}: width and height must be positive multiples of 4")
        sizes.append((w, h))
    return tuple(sizes)


def best_batch_rows(rows: Sequence[dict]) -> list[dict]:
    """Of `bench_generator`'s rows, the batch-1 row and the fastest batch per size, precision and
    compile setting."""
    kept = []

    def key_of(r):
        return r["width"], r["height"], r["precision"], r.get("compiled")

    for key in dict.fromkeys(key_of(r) for r in rows):
        group = [r for r in rows if key_of(r) == key]
        single = next((r for r in group if r["batch"] == 1), None)
        best = max(group, key=lambda r: r["fps"])
        kept += [single, best] if single is not None and best is not single else [best]
    return kept


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table of dicts with the same keys: a header, a rule, right-aligned columns."""
    if not rows:
        return ""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return "-" if v is None else str(v)

    keys = list(rows[0])
    cells = [keys] + [[cell(r[k]) for k in keys] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    # Numbers right-aligned, words (the first row's str values) left-aligned.
    left = [isinstance(rows[0][k], str) for k in keys]
    lines = ["  ".join(c.ljust(wd) if lf else c.rjust(wd) for c, wd, lf in zip(line, widths, left)) for line in cells]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(lines)


def bench_tiled(
    sizes: Sequence[tuple[int, int]] = ((640, 360), (1280, 720), (4096, 4096)),
    device: str = "cpu",
    repeats: int = 1,
    config: GeneratorConfig = GeneratorConfig(),
    tile: int = 512,
    overlap: int = 32,
) -> list[dict]:
    """Whole-image pass vs the tiled engine at its default tile and overlap, batch 4, float32.

    One row per size: {"width", "height", "whole_ms", "tiled_ms", "tiled_over_whole"}. The tiled pass
    recomputes the overlaps (the cost of bounded memory); whole_ms is empty where the image is one tile.
    """
    from ficli.engine import TileConfig, run_tiled

    dev = torch.device(device)
    g = _timing_generator(config, dev)
    rows = []
    for w, h in sizes:
        image = torch.rand(config.channels, h, w).numpy()
        whole_cfg = TileConfig(tile=max(h, w) + (-max(h, w)) % 4, overlap=0, batch=1, device=device)
        tiled_cfg = TileConfig(tile=tile, overlap=overlap, batch=4, device=device)
        whole = _best_ms(lambda: run_tiled(g, image, whole_cfg), repeats)
        tiled = _best_ms(lambda: run_tiled(g, image, tiled_cfg), repeats)
        rows.append({"width": w, "height": h, "whole_ms": whole, "tiled_ms": tiled, "tiled_over_whole": tiled / whole})
    return rows


SHARED_PARTS = ("g_fwd", "critic", "loss", "g_bwd")  # the parts of a training step (train.PARTS) timed here


def bench_train(
    shapes: Sequence[tuple[str, int, int]] = (("finetune", 64, 32), ("pretrain", 64, 64)),
    device: str = "cpu",
    repeats: int = 3,
    config: GeneratorConfig = GeneratorConfig(),
    compiled: Sequence[bool] = (False,),
    critic_features: int = 64,
) -> list[dict]:
    """One training step (critic and generator: forward, losses with TG, backward, Adam) at each
    (preset, batch, crop) shape, fp32 and bf16 (where the device runs it natively; a "skipped" row
    otherwise), channels-last off and on, and with `compiled=(False, True)` through torch.compile.

    Also, per shape, the batch of training pairs alone: `train.make_batch` (batched) against the
    per-crop loop it replaced (`train.sample_batch`), from in-memory random images. One row per
    setting: {"preset", "batch", "crop", "precision", "channels_last", "compiled", "step_ms",
    "samples_per_s", and the share of the step's time in each of SHARED_PARTS (percent)}; pair rows
    have "data (batched)" / "data (per crop)" as precision.
    """
    import numpy as np

    from ficli import train as training
    from ficli.losses import FINETUNE, PRETRAIN, discriminator_loss, generator_loss
    from ficli.nets import Discriminator, DiscriminatorConfig

    dev = torch.device(device)
    sync = device_sync(dev)
    pcts = [f"{part}_pct" for part in SHARED_PARTS]
    rows = []
    for preset, batch, crop in shapes:
        weights = PRETRAIN if preset == "pretrain" else FINETUNE
        images = [np.random.default_rng(i).random((256, 256, config.channels), dtype=np.float32) for i in range(8)]
        cfg = training.TrainConfig(data=("-",), val="-", out="-", batch=batch, crop=crop)
        for name, make in (("data (per crop)", lambda: training.sample_batch(images, cfg, rng)),
                           ("data (batched)", lambda: training.make_batch(images, cfg, rng))):
            rng = np.random.default_rng(0)
            ms = _best_ms(make, repeats)
            rows.append({"preset": preset, "batch": batch, "crop": crop, "precision": name, "channels_last": "-",
                         "compiled": "-", "step_ms": ms, "samples_per_s": batch * 1e3 / ms, **dict.fromkeys(pcts)})
        lr, hr, _ = training.make_batch(images, cfg, np.random.default_rng(0))
        for precision in ("fp32", "bf16"):
            if not precision_runs(precision, dev):
                rows.append({"preset": preset, "batch": batch, "crop": crop, "precision": f"{precision}: skipped (no native {precision})",
                             "channels_last": "-", "compiled": "-", "step_ms": None, "samples_per_s": None, **dict.fromkeys(pcts)})
                continue
            for channels_last in (False, True):
                for use_compile in compiled:
                    torch.manual_seed(0)
                    layout = torch.channels_last if channels_last else torch.contiguous_format
                    G = Generator(config).to(dev, memory_format=layout)
                    D = Discriminator(DiscriminatorConfig(channels=config.channels, features=critic_features)).to(dev, memory_format=layout)
                    opt_g = torch.optim.Adam(G.parameters(), 1e-6)
                    opt_d = torch.optim.Adam(D.parameters(), 1e-6)
                    if use_compile:
                        torch._dynamo.reset()
                        g_run, d_run = torch.compile(G), torch.compile(D)
                    else:
                        g_run, d_run = G, D
                    x, y = (t.to(dev).contiguous(memory_format=layout) for t in (lr, hr))
                    autocast = torch.autocast(dev.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")
                    times = training.PartTimes(dev)

                    def step():
                        training.train_step(g_run, d_run, opt_g, opt_d, x, y, None, weights, None, autocast, times)

                    ms = _best_ms(step, repeats, sync, warmup=2 if use_compile else 1)
                    spent = sum(times.seconds.values())
                    rows.append({"preset": preset, "batch": batch, "crop": crop, "precision": precision,
                                 "channels_last": channels_last, "compiled": use_compile, "step_ms": ms,
                                 "samples_per_s": batch * 1e3 / ms,
                                 **{f"{part}_pct": 100 * times.seconds[part] / spent for part in SHARED_PARTS}})
    return rows


def target_rows(generator: Sequence[dict], body: Sequence[dict], video: Sequence[dict], device: str) -> list[dict]:
    """The performance targets against this run's rows: what was asked, what was measured, whether
    it was met, and for video the stage that limits it. The GPU targets are for an H100-class GPU;
    on another device they are reported, not judged ("met" is "-")."""
    gpu = torch.device(device).type == "cuda"
    h100_class = gpu and (peak_tflops(device) or 0) >= 750

    def pick(rows, w, h, precision=None, key="fps"):
        found = [r for r in rows if (r["width"], r["height"]) == (w, h) and precision in (None, r["precision"])]
        return max(found, key=lambda r: r[key] if r[key] is not None else -1.0) if found else None

    def judged(value, goal, judge):
        if value is None:
            return "-"
        return ("yes" if value >= goal else "no") if judge else "-"

    gen = pick(generator, 1280, 720, "bf16")
    bod = pick(body, 1280, 720, "bf16", key="tflop_per_s")
    vid = pick(video, 1280, 720, key="e2e_fps")
    cpu = pick(video, 640, 360, "fp32", key="e2e_fps")
    rows = [
        {"target": "generator 1280×720 bf16, best batch (H100-class GPU)", "goal": 300.0, "unit": "frames/s",
         "measured": gen and gen["fps"], "met": judged(gen and gen["fps"], 300, h100_class), "limit": "-"},
        {"target": "body 1280×720 bf16, share of dense peak (H100-class GPU)", "goal": 40.0, "unit": "%",
         "measured": bod and bod["pct_of_peak"], "met": judged(bod and bod["pct_of_peak"], 40, h100_class), "limit": "-"},
        {"target": "ficli video 1280×720 end to end (H100-class GPU)", "goal": 120.0, "unit": "frames/s",
         "measured": vid and vid["e2e_fps"], "met": judged(vid and vid["e2e_fps"], 120, h100_class),
         "limit": vid["limit"] if vid else "-"},
    ]
    if not gpu:
        rows.append({"target": "ficli video 640×360 end to end, fp32, CPU", "goal": 2.0, "unit": "frames/s",
                     "measured": cpu and cpu["e2e_fps"], "met": judged(cpu and cpu["e2e_fps"], 2, True),
                     "limit": cpu["limit"] if cpu else "-"})
    return rows


def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on: date, CPU, device, versions, threads."""
    import datetime
    import platform
    from pathlib import Path

    cpu = platform.processor()
    if not cpu or cpu == platform.machine():
        try:
            lines = Path("/proc/cpuinfo").read_text().splitlines()
            cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        except (OSError, StopIteration):
            cpu = cpu or platform.machine()
    dev = torch.device(device)
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": f"{cpu}, {platform.machine()}, {platform.system()} {platform.release()}",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
