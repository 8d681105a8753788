"""Peak memory and time of `ficli enhance` on single-channel OME-Zarr images of growing size, against
the in-memory path on a TIFF of the same pixels, and a 2-worker dask LocalCluster against a local run.

    python benchmarks/zarr_bench.py [--sizes 2048,4096,8192] [--memory-size 4096] [--cluster-size 2048]
                                    [--work /tmp/ficli-zarr-bench] [--scale 2] [--model M]

Every run is a child process (`python -m ficli enhance ... -q`, the default model, fp32, the
default --tile and --block); its peak resident memory is the child's own (`os.wait4`'s ru_maxrss),
its time the wall clock from start to exit (model loading included). The inputs are uint16 stores
of tiled phantoms, chunks 512², NGFF 0.5, written plane-band by band so that making them needs
little memory. The cluster row runs the same store through `--scheduler` on a LocalCluster of 2
worker processes with 1 thread each (the local run: one process, torch's threads on every core),
and checks that both outputs are equal. Prints one table (Markdown). `--work-only` prints instead how many pixels the network runs on, in
memory and block by block (exact; the halo's cost without timing anything).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_store(path: Path, side: int, chunk: int = 512) -> None:
    """A (side, side) uint16 OME-Zarr 0.5 store of 1024² phantom tiles (12-bit range), chunk by chunk."""
    import zarr

    from ficli.image.phantom import phantom, to_dtype

    if path.exists():
        return
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    array = group.create_array("0", shape=(side, side), chunks=(chunk, chunk), dtype="uint16", fill_value=0,
                               dimension_names=["y", "x"])
    tile = 1024
    for y in range(0, side, tile):
        band = np.concatenate([to_dtype(phantom(min(tile, side - y), min(tile, side - x), seed=1 + y // tile * 97 + x // tile),
                                        np.uint16, max_value=4095) for x in range(0, side, tile)], axis=1)
        array[y : y + band.shape[0], :] = band
    group.attrs.update({"ome": {"version": "0.5", "multiscales": [{
        "axes": [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.65, 0.65]}]}]}]}})


def make_tiff(store: Path, path: Path) -> None:
    import zarr

    from ficli.image.io import write_image

    if not path.exists():
        write_image(path, np.asarray(zarr.open_group(str(store), mode="r")["0"][...]))


def measure(args: list[str], env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one child process; raises when it fails."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {child.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


MODEL: list[str] = []  # --model M, when given


def enhance_args(src: Path, out: Path, scale: str, extra: list[str] = ()) -> list[str]:
    return ["-m", "ficli", "enhance", str(src), "--out", str(out), "--scale", scale, "-q", "--overwrite", *MODEL, *extra]


CLUSTER = """
import sys, time
from distributed import LocalCluster
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()
cluster.close()
"""


def cluster_run(src: Path, out: Path, scale: str) -> tuple[float, float, float]:
    """(seconds of the enhance client, its peak MiB, the cluster's start-up seconds) on a 2-worker LocalCluster."""
    start = time.perf_counter()
    cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    address = cluster.stdout.readline().strip()
    started = time.perf_counter() - start
    try:
        seconds, peak = measure(enhance_args(src, out, scale, ["--scheduler", address]))
    finally:
        cluster.stdin.close()
        cluster.wait(60)
    return seconds, peak, started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,4096,8192")
    parser.add_argument("--memory-size", type=int, default=4096, help="side of the in-memory comparison (TIFF)")
    parser.add_argument("--cluster-size", type=int, default=2048, help="side of the LocalCluster comparison; 0: none")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ficli-zarr-bench"))
    parser.add_argument("--scale", default="2", help="--scale told (fixed, so that no estimate differs between runs)")
    parser.add_argument("--model", help="a model file instead of the default model (say so beside the figures)")
    parser.add_argument("--block", type=int, help="--block for the OME-Zarr runs [default: enhance's]")
    parser.add_argument("--work-only", action="store_true", help="print only the table of pixels the network runs on")
    args = parser.parse_args()
    if args.work_only:
        return work_table()
    if args.model:
        MODEL[:] = ["--model", str(Path(args.model).resolve())]
    block = ["--block", str(args.block)] if args.block else []
    import zarr

    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for side in [int(s) for s in args.sizes.split(",")]:
        src = args.work / f"in{side}.ome.zarr"
        make_store(src, side)
        seconds, peak = measure(enhance_args(src, args.work / f"out{side}.ome.zarr", args.scale, block))
        rows.append((f"OME-Zarr {side}², --block {args.block or 'default'}", side, seconds, peak))
        if side == args.memory_size:
            tif = args.work / f"in{side}.tif"
            make_tiff(src, tif)
            seconds, peak = measure(enhance_args(tif, args.work / f"tif{side}", args.scale))
            rows.append((f"TIFF {side}², in memory", side, seconds, peak))
    if args.cluster_size:
        side = args.cluster_size
        src = args.work / f"in{side}.ome.zarr"
        make_store(src, side)
        local = args.work / f"out{side}.ome.zarr"
        if not local.exists() or str(side) not in args.sizes.split(","):
            measure(enhance_args(src, local, args.scale))
        seconds, peak, started = cluster_run(src, args.work / f"cluster{side}.ome.zarr", args.scale)
        a = np.asarray(zarr.open_group(str(local), mode="r")["s0"][...]).astype(np.int64)
        b = np.asarray(zarr.open_group(str(args.work / f"cluster{side}.ome.zarr"), mode="r")["s0"][...]).astype(np.int64)
        rows.append((f"OME-Zarr {side}², LocalCluster 2×1 thread (client; max |Δ| to local {np.abs(a - b).max()})",
                     side, seconds, peak))
        print(f"(LocalCluster start-up {started:.1f} s, not counted)")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    print(f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; model: {args.model or 'the default'}")
    print("| run | pixels | time (s) | Mpx/s | peak RSS (MiB) |\n|---|---|---|---|---|")
    for name, side, seconds, peak in rows:
        print(f"| {name} | {side}² | {seconds:.1f} | {side * side / seconds / 1e6:.2f} | {peak:.0f} |")
    shutil.rmtree(args.work / f"tif{args.memory_size}", ignore_errors=True)



def network_pixels(side: int, block: int | None, tile: int = 512, overlap: int = 32, halo: int = 136, chunk: int = 512) -> int:
    """Pixels the network runs on for a side² single-channel image: the tiles of the in-memory engine
    (block None), or of every block's haloed region (`chunked.input_window`), each tiled the same way.
    Exact and load-independent: the throughput cost of the halo, without timing anything."""
    from ficli.inference.chunked import Block, StoreJob, input_window
    from ficli.inference.engine import TileConfig, balanced_tile, padded_size, tile_starts

    def tiled(h: int, w: int) -> int:
        ph, pw = padded_size(h, 4), padded_size(w, 4)
        if ph * pw <= tile * tile:
            return ph * pw
        th, tw = balanced_tile(ph, tile, overlap), balanced_tile(pw, tile, overlap)
        return len(tile_starts(ph, th, overlap)) * th * len(tile_starts(pw, tw, overlap)) * tw

    if block is None:
        return tiled(side, side)
    job = StoreJob("", "", "", None, "cpu", TileConfig(), 1, halo, block, "yx", "uint16", "uint16", False, None, None)
    size = -(-block // chunk) * chunk
    total = 0
    for y in range(0, side, size):
        for x in range(0, side, size):
            y0, y1, x0, x1 = input_window(job, Block((), y, min(y + size, side), x, min(x + size, side)), side, side)
            total += tiled(y1 - y0, x1 - x0)
    return total


def work_table(sides=(2048, 4096, 8192, 32768), blocks=(2048, 4096, 8192)) -> None:
    print("| side | in memory: network Mpx | " + " | ".join(f"--block {b}: Mpx (× in memory)" for b in blocks) + " |")
    print("|---|---|" + "---|" * len(blocks))
    for side in sides:
        whole = network_pixels(side, None)
        cells = [f"{network_pixels(side, b) / 1e6:.1f} ({network_pixels(side, b) / whole:.3f}×)" for b in blocks]
        print(f"| {side}² | {whole / 1e6:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
