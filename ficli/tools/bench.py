"""`ficli bench`: timings of the parts that decide speed, as tables, not tests.

`bench_tg` compares the direct and the FFT form of L_TG (forward + backward); `bench_generator` and
`bench_body` time inference at video sizes with the arithmetic rate from `timing.generator_flops`;
`bench_tiled` the tiled engine against the whole image; `bench_train` a training step and its
batch of pairs; `bench_video` each stage of `ficli video` and the pipeline end to end;
`target_rows` judges the performance targets. `bench_tables` is the registry `ficli bench` runs
(`run_bench`). Timing, FLOP counts, peaks and table layout are `ficli.tools.timing`'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ficli.image import io
from ficli.defaults import VIDEO_TILE
from ficli.inference.device import PRECISIONS, device_sync, resolve_precision
from ficli.inference.engine import TileConfig, run_tiled
from ficli.errors import ConfigError, FicliError
from ficli.video.ffmpeg import FFmpeg, Section, VideoInfo, check_decoder, decoder_args, encoder_args, probe_video, read_frames
from ficli.video.frames import Inference, compose, raw_bytes
from ficli.model.losses import tg_loss_direct, tg_loss_fft
from ficli.model.modelfile import save_model
from ficli.model.nets import Generator, GeneratorConfig
from ficli.image.phantom import phantom
from ficli.inference.runtime import CompiledGenerator, prepare_generator, ready_generator
from ficli.tools.timing import best_batch_rows, best_ms, generator_flops, machine_info, peak_tflops, precision_runs
from ficli.video.pipeline import VideoOptions, VideoPlan, enhance_video, plan_video


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
            ms[name] = best_ms(lambda: torch.autograd.grad(loss(pred, target, "N/2"), pred), repeats, sync)
        rows.append({
            "size": n, "batch": batch, "k_max": "N/2",
            "direct_ms": ms["direct"], "fft_ms": ms["fft"], "speedup": ms["direct"] / ms["fft"],
        })
    return rows


def _timing_generator(config: GeneratorConfig, device: torch.device) -> nn.Module:
    """A generator with random weights (the time does not depend on them) as `enhance` runs one
    (`runtime.prepare_generator`: plain weights, eval, channels-last, cuDNN set up on CUDA)."""
    torch.manual_seed(0)
    return prepare_generator(Generator(config, spectral_norm=False).to(device), device)


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
                ms = best_ms(lambda: g.body(x), repeats, sync)
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
                        ms = best_ms(lambda: run(x), repeats, sync, warmup=3 if use_compile else 1) / batch
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
    torch._dynamo.reset()
    return CompiledGenerator(module, cuda_graphs=device.type == "cuda")


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
    dev = torch.device(device)
    g = _timing_generator(config, dev)
    rows = []
    for w, h in sizes:
        image = torch.rand(config.channels, h, w).numpy()
        whole_cfg = TileConfig(tile=max(h, w) + (-max(h, w)) % 4, overlap=0, batch=1, device=device)
        tiled_cfg = TileConfig(tile=tile, overlap=overlap, batch=4, device=device)
        whole = best_ms(lambda: run_tiled(g, image, whole_cfg), repeats)
        tiled = best_ms(lambda: run_tiled(g, image, tiled_cfg), repeats)
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

    Also, per shape, the batch of training pairs alone: `pairs.make_batch` (batched) against the
    per-crop loop it replaced (`pairs.sample_batch`), from in-memory random images. One row per
    setting: {"preset", "batch", "crop", "precision", "channels_last", "compiled", "step_ms",
    "samples_per_s", and the share of the step's time in each of SHARED_PARTS (percent)}; pair rows
    have "data (batched)" / "data (per crop)" as precision.
    """
    from ficli.training import train as training
    from ficli.training.pairs import make_batch, sample_batch
    from ficli.model.losses import FINETUNE, PRETRAIN
    from ficli.model.nets import Discriminator, DiscriminatorConfig

    dev = torch.device(device)
    sync = device_sync(dev)
    pcts = [f"{part}_pct" for part in SHARED_PARTS]
    rows = []
    for preset, batch, crop in shapes:
        weights = PRETRAIN if preset == "pretrain" else FINETUNE
        images = [np.random.default_rng(i).random((256, 256, config.channels), dtype=np.float32) for i in range(8)]
        cfg = training.TrainConfig(data=("-",), val="-", out="-", batch=batch, crop=crop)
        for name, make in (("data (per crop)", lambda: sample_batch(images, cfg, rng)),
                           ("data (batched)", lambda: make_batch(images, cfg, rng))):
            rng = np.random.default_rng(0)
            ms = best_ms(make, repeats)
            rows.append({"preset": preset, "batch": batch, "crop": crop, "precision": name, "channels_last": "-",
                         "compiled": "-", "step_ms": ms, "samples_per_s": batch * 1e3 / ms, **dict.fromkeys(pcts)})
        lr, hr, _ = make_batch(images, cfg, np.random.default_rng(0))
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

                    ms = best_ms(step, repeats, sync, warmup=2 if use_compile else 1)
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


# --------------------------------------------------------------------------------------------- video


VIDEO_STAGES = ("decode", "host", "transfer", "model", "encode")


def bench_video(size: tuple[int, int] = (640, 360), frames: int = 8, model: str | os.PathLike | None = None,
                device: str = "cpu", precision: str = "fp32", repeats: int = 1, compile_model: bool = False) -> dict:
    """End-to-end `enhance_video` frames/s for one frame size (width, height), next to the rate of
    each stage alone, and the stage that limits it.

    On a synthetic gray clip of `frames` frames and (without `model`) a default-size generator with
    random weights (the time does not depend on them), each stage is timed on its own, with nothing
    beside it; the best of `repeats` runs after a warm-up counts:
    - decode: ffmpeg decoding the clip into frames in memory;
    - host: the CPU work around the network, in the decoding thread (scaling, normalisation), in
      the inference thread (the engine's own work, the inverse map) and in the encoding thread
      (composing the output frame and its bytes for the encoder): the rate of the busiest share
      (the inference thread's adds to the model's time);
    - transfer: the frame to the device and back (None on the CPU);
    - model: the generator alone on a frame already on the device;
    - encode: the H.264 encoder, with `enhance_video`'s settings, on frames already composed.
    The stages overlap in the pipeline (decode, host work and encode in their own threads and
    processes; transfer and model share the inference thread), so the slowest one bounds the
    end-to-end rate: "limit" names it. "e2e" is `enhance_video`'s rate once frames flow (decoding
    to encoding, every stage running: what a long recording gets); "start_s" the one-off seconds
    before the first frame (probe, sampling, range), which a short clip pays on top. "pipeline" is
    e2e with an identity network on the device: the rate everything but the model allows, the
    stages running together as they do for real (on a CPU they share its cores). `compile_model`:
    the generator runs as `ficli video --compile` runs it (`CompiledGenerator`, CUDA graphs on CUDA).
    """
    w, h = size
    dev = torch.device(device)
    sync = device_sync(dev)
    dtype = resolve_precision(precision, dev)
    tile = TileConfig(tile=VIDEO_TILE, device=device, precision=precision)

    def best_rate(run: Callable[[], object], count: int, warmup: int = 1) -> float:
        # warm-up: cuDNN's algorithm search; compiling and CUDA graph recording
        return count * 1e3 / best_ms(run, repeats, sync, warmup)

    with tempfile.TemporaryDirectory(prefix="ficli-bench-") as folder:
        folder = Path(folder)
        clip = _synthetic_clip(folder / "clip.mp4", w, h, frames)
        if compile_model:
            torch._dynamo.reset()  # no graphs or recompilation count carried over from other rows
        generator, meta = ready_generator(model if model is not None else _random_model(folder), dev,
                                          compile_model=compile_model, cuda_graphs=dev.type == "cuda")
        channels = meta["config"].channels
        options = VideoOptions(out=folder / "out.mp4", tile=tile, batch=1)
        info = probe_video(clip)
        plan = plan_video(clip, options, channels, info=info)
        decoded = _all_frames(info)
        rates = {"decode": best_rate(lambda: _all_frames(info), len(decoded))}
        composed, rates["host"] = _host_rate(best_rate, decoded, channels, plan, tile)
        planes = torch.from_numpy(io.to_unit(decoded[0])[None, None, ..., 0].copy())
        x = planes.to(dev).contiguous(memory_format=torch.channels_last)
        rates["transfer"] = best_rate(lambda: planes.to(dev).cpu(), 1) if dev.type != "cpu" else None
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype is not torch.float32):
            rates["model"] = best_rate(lambda: generator(x), 1, warmup=3 if compile_model else 1)
        rates["encode"] = best_rate(lambda: _encode(composed, plan, options, folder / "encoded.mp4"), len(composed))
        again = replace(options, overwrite=True)
        pipeline = max(enhance_video(clip, lambda x: x, again, channels).stream_fps for _ in range(repeats))
        enhance_video(clip, generator, again, channels)  # warm-up: the pipeline's threads and caches
        runs = [enhance_video(clip, generator, again, channels) for _ in range(repeats)]
        e2e = max(r.stream_fps for r in runs)
        start = min(r.start_seconds for r in runs)
    limit = min((stage for stage in VIDEO_STAGES if rates[stage] is not None), key=lambda stage: rates[stage])
    return {
        "width": w, "height": h, "frames": len(decoded), "device": str(dev), "precision": precision, "compiled": compile_model,
        **{f"{stage}_fps": rates[stage] for stage in VIDEO_STAGES},
        "pipeline_fps": pipeline, "e2e_fps": e2e, "start_s": start, "e2e/model": e2e / rates["model"], "limit": limit,
    }


def _synthetic_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """A gray H.264 clip of `frames` frames: a phantom that drifts by a pixel a frame."""
    base = phantom(height + frames * 2, width + frames * 2, seed=0, peak_photons=None)
    proc = FFmpeg(["-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{width}x{height}", "-framerate", "25", "-i", "pipe:0",
                   "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)], stdin=subprocess.PIPE)
    for i in range(frames):
        proc.proc.stdin.write(io.from_unit(base[i : i + height, i : i + width], np.uint8).tobytes())
    proc.proc.stdin.close()
    if proc.wait() != 0:
        raise FicliError(f"could not write the benchmark clip: {proc.stderr_tail()}")
    return path


def _random_model(folder: Path) -> Path:
    """A model file of a default-size generator with random weights (timing only)."""
    torch.manual_seed(0)
    config = GeneratorConfig()
    g = Generator(config)
    with torch.no_grad():
        g.out_scale.fill_(0.1)
    return save_model(folder / "random.safetensors", g, config, {"scale": 4, "note": "random weights, timing only"})


def _host_rate(best_rate: Callable, decoded: list[np.ndarray], channels: int, plan: VideoPlan, tile: TileConfig) -> tuple[list[bytes], float]:
    """(the encoder's bytes of each frame, the frames/s of the busiest host share): the decoding
    thread's share (prepare), the inference thread's (network and finish with an identity network:
    the engine's own work) and the encoding thread's (compose, bytes)."""
    host = Inference(lambda x: x, channels, plan.channels, plan.range, 1, replace(tile, device="cpu", precision="fp32", batch=1))

    def decoding_share():
        return [host.prepare(frame) for frame in decoded]

    def inference_share():
        return [host.finish(p, host.network([p])[0])[1] for p in prepared]

    def encoding_share():
        return [raw_bytes(compose(None, frame, "enhanced", False), plan.encode_format) for frame in enhanced]

    prepared = decoding_share()
    enhanced = inference_share()
    composed = encoding_share()
    return composed, min(best_rate(share, len(decoded)) for share in (decoding_share, inference_share, encoding_share))


def _encode(composed: list[bytes], plan: VideoPlan, options: VideoOptions, path: Path) -> None:
    """The H.264 encoder, with `enhance_video`'s settings, on frames already composed."""
    enc = FFmpeg(encoder_args(plan.info, Section(), plan.out, plan.encode_format, (plan.width, plan.height), options.preset,
                              options.crf, path), stdin=subprocess.PIPE)
    for data in composed:
        enc.proc.stdin.write(data)
    enc.proc.stdin.close()
    if enc.wait() != 0:
        raise FicliError(f"the benchmark encoder failed: {enc.stderr_tail()}")


def _all_frames(info: VideoInfo) -> list[np.ndarray]:
    proc = FFmpeg(decoder_args(info, Section()), stdout=subprocess.PIPE)
    frames = [f.copy() for f in read_frames(proc, info)]
    check_decoder(proc, info, len(frames))
    return frames


# ------------------------------------------------------------------------------------ the registry


def bench_tables(quick: bool, device: str, repeats: int, compile_model: bool,
                 sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, tuple[str, Callable[[], list[dict]]]]:
    """`ficli bench`'s tables by name, in the order they run: (title, function measuring its rows).

    `quick`: small sizes and one repeat (checks that everything runs, not how fast); `sizes`: the
    frame sizes of --sizes (None: each table's own)."""
    reps = 1 if quick else repeats
    small = GeneratorConfig(features=16, growth=8) if quick else GeneratorConfig()
    chosen, sizes = sizes, sizes or (((160, 92),) if quick else ((640, 360), (1280, 720), (1920, 1080)))
    return {
        # On a GPU at training's batch (64): a batch of 4 would time kernel launches only.
        "tg": ("Total gradient loss, forward + backward, k_max N/2",
               lambda: bench_tg((32, 64) if quick else (32, 64, 128, 256), batch=4 if device == "cpu" else 64,
                                repeats=reps, device=device)),
        "generator": ("Generator forward per frame: batch 1 and the best batch, each precision the device runs" + (" (quick: width 16)" if quick else ""),
                      lambda: generator_rows(quick, device, reps, small, sizes, compile_model)),
        "body": ("Generator body alone (residual dense blocks + fusion, at 1/4 size): TFLOP/s and share of the device's dense half-precision peak",
                 lambda: bench_body(sizes if quick or chosen else sizes[1:2], device, reps, small)),
        "tiled": ("Tiled engine (tile 512, overlap 32, batch 4) vs whole image",
                  lambda: bench_tiled(((640, 360),) if quick else ((640, 360), (1280, 720), (4096, 4096)), device, 1, small)),
        "train": ("One training step (critic + generator, TG loss, backward, Adam) at the presets' shapes, and the batch of pairs alone" + (" (quick: width 16, critic width 16, batch 4)" if quick else ""),
                  lambda: bench_train((("finetune", 4, 32),) if quick else (("finetune", 64, 32), ("pretrain", 64, 64)), device, reps,
                                      small, compiled=(False, True) if compile_model else (False,),
                                      critic_features=16 if quick else 64)),
        "video": ("ficli video: each stage alone (frames/s), end to end once frames flow, the one-off start, and the stage that limits it; default-size generator",
                  lambda: video_rows(quick, device, reps, compile_model, chosen)),
    }


def choose_tables(only: str | None, tables: dict) -> list[str]:
    """The names of --only (comma-separated; None: every table); ConfigError naming the choices."""
    chosen = list(tables) if only is None else [name.strip() for name in only.split(",") if name.strip()]
    if not chosen or any(name not in tables for name in chosen):
        raise ConfigError(f"{only!r}: use a comma-separated list of {', '.join(tables)}")
    return chosen


def run_bench(tables: dict, chosen: Sequence[str], device: str, quick: bool, json_file: str | os.PathLike | None, *,
              on_machine: Callable[[dict], None] = lambda info: None,
              measuring: Callable[[str], contextlib.AbstractContextManager] = lambda title: contextlib.nullcontext(),
              on_table: Callable[[str, list[dict]], None] = lambda title, rows: None) -> dict[str, list[dict]]:
    """Measure the `chosen` tables, then the targets ("Targets"); every table by its title.

    `on_machine(info)` first (what the numbers are measured on), `measuring(title)` around each
    table's measurement (a progress display), `on_table(title, rows)` after it. With `json_file`,
    everything is written there as JSON after every table (a run cut short keeps what it measured);
    "-" (standard output) once at the end."""
    info = machine_info(device)
    on_machine(info)
    results: dict[str, list[dict]] = {}

    def save(final: bool = False) -> None:
        if json_file is not None and (final or not io.is_stdout(json_file)):
            io.write_text(json_file, json.dumps({"machine": info, "quick": quick, "tables": results}, indent=2))

    rows_of = {}
    for name in chosen:
        title, run = tables[name]
        with measuring(title):
            rows_of[name] = run()
        results[title] = rows_of[name]
        on_table(title, rows_of[name])
        save()
    results["Targets"] = target_rows(rows_of.get("generator", []), rows_of.get("body", []), rows_of.get("video", []), device)
    on_table("Targets", results["Targets"])
    save(final=True)
    return results
