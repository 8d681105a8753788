"""Measuring and reporting for `bench`: best-of timing, FLOP counts, device peaks, tables, the machine.

Nothing here runs one of ficli's pipelines: `ficli.tools.bench` does, and times them with these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from ficli.inference.device import cpu_name, resolve_precision
from ficli.errors import ConfigError
from ficli.model.nets import Generator, GeneratorConfig


def best_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None, warmup: int = 1) -> float:
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


def peak_tflops(device: str) -> float | None:
    """The dense half-precision peak of a CUDA device, or None where unknown (and on CPUs)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    return next((peak for key, peak in GPU_PEAK_TFLOPS if key in name), None)


def precision_runs(precision: str, device: str | torch.device) -> bool:
    """Whether the engine runs `precision` on `device` (see `device.resolve_precision`)."""
    try:
        resolve_precision(precision, torch.device(device))
        return True
    except ConfigError:
        return False


# The largest frame `bench` times: checked before any frame is allocated (100000x100000 asked for 40 GB).
MAX_BENCH_PIXELS = 8192 * 8192


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
        if w * h > MAX_BENCH_PIXELS:
            raise ConfigError(
                f"--sizes {part.strip()!r}: {w * h:,} pixels a frame, more than bench's limit of {MAX_BENCH_PIXELS:,} "
                "(8192×8192; a batch of such frames and the network's features would not fit in memory); give smaller frames"
            )
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


def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on: date, CPU, device, versions, threads."""
    import datetime
    import platform

    dev = torch.device(device)
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": f"{cpu_name()}, {platform.machine()}, {platform.system()} {platform.release()}",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
