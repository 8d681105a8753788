"""Which CPU settings pay for the generator: threads, oneDNN, memory layout, precision, torch.compile.

    python benchmarks/cpu_options.py [--size 640x360] [--repeats 3] [--compile]

Prints one table: generator forward (batch 1, random weights of the default size, inference mode)
under each setting, with its time relative to ficli's default (all threads, oneDNN, channels-last,
fp32). Every row is measured in the same run, so the ratios hold on a shared machine even when
the absolute times drift. `--compile` adds torch.compile rows (inductor; needs a C++ compiler).
"""

from __future__ import annotations

import argparse
import contextlib
import warnings

import torch

from ficli.tools.timing import best_ms, format_table, machine_info
from ficli.inference.device import cpu_has_bf16
from ficli.model.nets import Generator, GeneratorConfig


def settings(threads: int, with_compile: bool) -> list[dict]:
    """The settings to time: name, threads, oneDNN on, channels-last model, precision, compiled."""
    rows = [
        dict(setting="ficli default", threads=threads, onednn=True, channels_last=True, precision="fp32", compiled=False),
        dict(setting="one thread", threads=1, onednn=True, channels_last=True, precision="fp32", compiled=False),
        dict(setting="NCHW model", threads=threads, onednn=True, channels_last=False, precision="fp32", compiled=False),
        dict(setting="oneDNN off", threads=threads, onednn=False, channels_last=True, precision="fp32", compiled=False),
    ]
    if cpu_has_bf16():
        rows.append(dict(setting="--precision bf16", threads=threads, onednn=True, channels_last=True, precision="bf16", compiled=False))
    if with_compile:
        rows += [dict(r, setting=r["setting"] + " + compile", compiled=True) for r in rows if r["setting"] in ("ficli default", "--precision bf16")]
    return rows


def time_setting(s: dict, size: tuple[int, int], repeats: int) -> float:
    w, h = size
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(), spectral_norm=False).eval()
    if s["channels_last"]:
        g = g.to(memory_format=torch.channels_last)
    run = torch.compile(g) if s["compiled"] else g
    x = torch.rand(1, 1, h, w)
    before = torch.get_num_threads()
    torch.set_num_threads(s["threads"])
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if s["precision"] == "bf16" else contextlib.nullcontext()
    try:
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=s["onednn"]), autocast:
            return best_ms(lambda: run(x), repeats, warmup=2 if s["compiled"] else 1)
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x360", help="frame WIDTHxHEIGHT, multiples of 4 (default 640x360)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row after a warm-up; the best counts (default 3)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")  # said by mkldnn.flags()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    print(" · ".join(f"{k} {v}" for k, v in machine_info("cpu").items()))
    rows = []
    for s in settings(torch.get_num_threads(), args.compile):
        ms = time_setting(s, size, args.repeats)
        rows.append({**s, "ms": ms})
    base = rows[0]["ms"]
    for r in rows:
        r["vs_default"] = base / r["ms"]  # above 1: faster than the default
    print(f"\nGenerator forward {size[0]}×{size[1]}, batch 1: time and speed relative to ficli's default (>1 is faster)")
    print(format_table(rows))


if __name__ == "__main__":
    main()
