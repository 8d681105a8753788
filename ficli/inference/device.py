"""Devices and precision: which device to run on, in which dtype, and how to time it.

Everything about the machine's accelerators lives here, apart from the engine (which only asks for
a resolved device and dtype) and the network (which knows neither): choosing a device by name
(`resolve_device`), the compute dtype of `--precision` on it (`resolve_precision`), the batch a
device runs best (`default_batch`), cuDNN's settings for inference (`configure_cuda`), whether a
CPU has native bf16 (`cpu_has_bf16`), waiting for a device's queued work (`device_sync`) and
freeing its cached memory (`empty_cache`), and the CPU's name for reports (`cpu_name`).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path

import torch

from ficli.errors import ConfigError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}



def available_devices() -> list[str]:
    """Names of the devices this machine can run on, e.g. ["cpu", "cuda:0", "cuda:1"]."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str) -> torch.device:
    """The device for "auto" | "cpu" | "cuda" | "cuda:<i>" | "mps"; ConfigError if unavailable.

    "auto" picks the first CUDA device, else MPS, else the CPU.
    """
    name = str(name).strip().lower()
    have = available_devices()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {name!r}; use auto, cpu, cuda, cuda:<i> or mps "
            f"(this machine has: {', '.join(have)})"
        ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} is not available: this torch build or machine has no CUDA GPU "
                f"(this machine has: {', '.join(have)}); use --device cpu"
            )
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} does not exist (this machine has: {', '.join(have)})"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(
                f"device 'mps' is not available (this machine has: {', '.join(have)})"
            )
        return device
    raise ConfigError(
        f"unsupported device {name!r}; use auto, cpu, cuda, cuda:<i> or mps "
        f"(this machine has: {', '.join(have)})"
    )


def default_batch(device: torch.device) -> int:
    """Tiles (or frames) per network call when --batch is not given: 1 on the CPU, 4 elsewhere.

    On 2 CPU cores a call of 4 ran slower per frame than 4 calls of 1 (720p video end to end:
    0.52 vs 0.78 frames/s): nothing is left to fill, and the activations fall out of cache. A GPU
    needs the larger calls to fill its cores.
    """
    return 1 if device.type == "cpu" else 4


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for "fp32" | "fp16" | "bf16" on `device`.

    Half precisions run under autocast: fp16 and bf16 on CUDA (bf16 where the GPU has it), and bf16
    on a CPU with native bf16 (AVX-512 BF16 or AMX; FI-GAN at 640×360 on 2 such cores: 3.1× fp32).
    Anything else raises ConfigError rather than silently running in fp32 or slowly in emulated half
    precision (fp16 on the same CPU: 1.3× slower than fp32).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is torch.float32:
        return dtype
    if device.type == "cpu" and dtype is torch.bfloat16:
        if cpu_has_bf16():
            return dtype
        raise ConfigError(
            "--precision bf16 on the CPU needs native bf16 (AVX-512 BF16 or AMX), which this CPU "
            "lacks; use --precision fp32"
        )
    if device.type != "cuda":
        raise ConfigError(
            f"--precision {precision} needs a CUDA device"
            + (" (or bf16 on a CPU with native bf16)" if device.type == "cpu" else "")
            + f"; on {device.type} the engine runs {precision} no faster than fp32: use --precision fp32"
        )
    if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"--precision bf16 is not supported by {torch.cuda.get_device_name(device)}; "
            f"use --precision fp16 or fp32"
        )
    return dtype


def configure_cuda() -> None:
    """cuDNN settings for inference, once a CUDA device is chosen: its algorithm search on (tiles
    and video frames repeat one shape, so the search runs once per shape and the fastest kernels
    are kept) and TF32 off, so that fp32 is fp32 (TF32 keeps 10 mantissa bits, like fp16: the
    speed is --precision fp16/bf16's to give, not fp32's to take silently)."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def training_autocast(device: torch.device):
    """The autocast context training runs its steps in: bf16 on CUDA (fp16 where the GPU has no
    bf16), none on other devices (fp32)."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)

def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX-512 BF16 or AMX), not by emulation."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private oneDNN query: absent from some builds
        return False


def device_sync(device: torch.device) -> Callable[[], None]:
    """A function that waits for `device` to finish its queued work (CUDA runs asynchronously), for
    timing; a no-op elsewhere."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def empty_cache(device: torch.device) -> None:
    """Hand the memory torch keeps cached on a GPU back to it (after running out of it)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7B13"), for what a number was measured on."""
    cpu = platform.processor()
    if not cpu or cpu == platform.machine():
        try:
            lines = Path("/proc/cpuinfo").read_text().splitlines()
            cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        except (OSError, StopIteration):
            cpu = cpu or platform.machine()
    return cpu
