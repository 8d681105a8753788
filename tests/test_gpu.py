"""The CUDA paths against the CPU and against themselves: fp32 on the GPU, tiling, torch.compile
with CUDA graphs, video in half precision, and a real out-of-memory retry.

Skipped without a CUDA device. `FICLI_GPU_TEST_DEVICE=cpu` runs the ones that are not
CUDA-specific on the CPU (bf16 as the half precision), to rehearse them where no GPU is lent.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch

from ficli.video import ffmpeg, pipeline as video
from ficli.image import io
from ficli.inference.engine import TileConfig, run_tiled
from ficli.inference.enhance import EnhanceOptions, enhance_frames
from ficli.image.phantom import phantom
from ficli.inference.runtime import CompiledGenerator

from conftest import shared_images, shipped_generator

DEVICE = os.environ.get("FICLI_GPU_TEST_DEVICE", "cuda")
CUDA = DEVICE.startswith("cuda")
HALF = "fp16" if CUDA else "bf16"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(CUDA and not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none"),
]
cuda_only = pytest.mark.skipif(not CUDA, reason="CUDA-specific (FICLI_GPU_TEST_DEVICE is not cuda)")


@pytest.fixture(scope="module")
def generator():
    return shipped_generator(DEVICE)


def test_fp32_on_the_device_is_the_cpu_result(generator):
    # TF32 is off for fp32 (device.configure_cuda): with it, cuDNN convolutions keep 10 mantissa
    # bits and the two would differ by ~1e-3.
    cpu = shipped_generator("cpu")
    for path in shared_images("test", 2):
        frame = io.to_unit(io.read_image(path).data)
        here = enhance_frames(generator, [frame], EnhanceOptions(tile=TileConfig(device=DEVICE)))[0]
        there = enhance_frames(cpu, [frame], EnhanceOptions(tile=TileConfig(device="cpu")))[0]
        assert np.abs(here - there).max() < 1e-4, path.name


def test_tiled_is_the_whole_image_on_the_device(generator):
    image = phantom(720, 1280, seed=7)[None].astype(np.float32)
    whole = run_tiled(generator, image, TileConfig(tile=1280, overlap=0, batch=1, device=DEVICE))
    tiled = run_tiled(generator, image, TileConfig(tile=512, overlap=32, batch=4, device=DEVICE))
    assert np.abs(tiled - whole).max() < 1e-4


@cuda_only
@pytest.mark.parametrize("precision, bound", [("fp32", 1e-4), ("fp16", 1 / 255)])
def test_compile_with_cuda_graphs_gives_the_eager_result(generator, precision, bound):
    notes = []
    compiled = CompiledGenerator(generator, cuda_graphs=True, on_notice=notes.append)
    config = TileConfig(tile=256, overlap=32, batch=1, device=DEVICE, precision=precision)
    images = [phantom(256, 256, seed=seed)[None].astype(np.float32) for seed in (1, 2, 3)]
    # Three calls of one shape: recorded, then replayed; each output is read before the next call
    # overwrites the graph's memory, and each must be its own input's.
    for image in images + images[:1]:
        got = run_tiled(compiled, image, config)
        want = run_tiled(generator, image, config)
        assert np.abs(got - want).max() < bound
    assert not notes, notes  # compiled for real, not the fallback


@cuda_only
def test_out_of_memory_halves_the_tile_and_gives_the_same_image(generator):
    image = phantom(2048, 2048, seed=8)[None].astype(np.float32)
    reference = run_tiled(generator, image, TileConfig(tile=512, overlap=32, batch=1, device=DEVICE))
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    notes = []
    torch.cuda.set_per_process_memory_fraction(1e9 / total)  # 1 GB: a 2048-px tile needs more
    try:
        got = run_tiled(generator, image, TileConfig(tile=2048, overlap=32, batch=1, device=DEVICE), on_notice=notes.append)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert any("out of memory" in n for n in notes), notes
    assert np.abs(got - reference).max() < 1e-4


def test_video_in_half_precision_stays_within_a_grey_level_of_fp32_on_the_cpu(generator, tmp_path):
    h, w, count = 96, 128, 6
    base = phantom(h, w + 2 * count, seed=3, peak_photons=None, background=0.1)
    raw = b"".join(io.from_unit(base[:, 2 * i : 2 * i + w], np.uint8).tobytes() for i in range(count))
    clip = tmp_path / "clip.mkv"
    subprocess.run([ffmpeg.ffmpeg_exe(), "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
                    "-framerate", "25", "-i", "pipe:0", "-c:v", "ffv1", str(clip)], input=raw, check=True)
    frames = {}
    for name, dev, precision, model in (("gpu", DEVICE, HALF, generator), ("cpu", "cpu", "fp32", None)):
        model = model or shipped_generator("cpu")
        options = video.VideoOptions(out=tmp_path / f"{name}.mp4", frames_dir=tmp_path / name, batch=4, preset="ultrafast",
                                     tile=TileConfig(tile=video.VIDEO_TILE, device=dev, precision=precision))
        assert video.enhance_video(clip, model, options).frames == count
        frames[name] = [io.read_image(tmp_path / name / f"clip_{i:06d}.png").data.astype(int) for i in range(1, count + 1)]
    for gpu, cpu in zip(frames["gpu"], frames["cpu"]):
        assert np.abs(gpu - cpu).max() <= 1
