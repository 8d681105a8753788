"""Score a model over a grid of degradations: kernels × blur scale s × noise (issue 17's table).

    python examples/robustness.py --model models/ficli-default.safetensors \
        --data ../shared/data/fluorescence/test --out docs/robustness/test

For every image of --data (centre-cropped to --crop pixels, so that the grid runs in minutes on a
CPU), every kernel, every s and every noise level, the image is degraded as `ficli degrade` does
(`degrade.degrade`, seeded by file name, rounded to the file's pixel type as a written file would
be), enhanced as `ficli enhance` does (`enhance.enhance_frames`; a model conditioned on the blur
scale is told the spectral estimate of `blurscale`, as `--scale auto` does, the true s with
--scale-mode oracle, or the learned reading alone with --scale-mode learned), rounded again, and
scored against the sharp image on the hr scale (each HR image's min..max, as `ficli evaluate
--data-range hr`).

The input left as it is and bicubic are the same image here: Y = U(K_s(X)) is already enlarged
back with the project's bicubic, so one gain column says how much the model adds over it. For s = 1
without noise the input is the sharp image itself (its PSNR is infinite): that cell reports
PSNR(G(X), X), how little the model changes a sharp image (mean over the images it changes at all,
and in the worst-image column the lowest).

Writes OUT/images.csv (one row per image and cell), OUT/cells.csv and OUT/table.md (per cell: mean
gain in dB and SSIM, the worst image's gain, the mean estimated s) and OUT/heatmap.png.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ficli.image import blurscale, io
from ficli.model import modelfile
from ficli.image.degrade import FREE_FROM, KERNELS, PSF_S_PER_SIGMA, Degradation, degrade, seed_for
from ficli.inference.enhance import EnhanceOptions, enhance_frames
from ficli.tools.evaluate import Scale, score_images
from ficli.model.nets import GeneratorConfig
from ficli.inference.runtime import check_coarse, learned_reading, load_generator, resolve_model_path, scale_chooser

NOISE = {"none": 0.0, "poisson200": 200.0}
COARSE_WORDS = {None: f"kept below a told s of {FREE_FROM:g}", True: "kept", False: "free"}


@torch.no_grad()  # not set_grad_enabled(False): run in-process (tests/test_robustness.py), it must not leak
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model file [default: the default model]")
    ap.add_argument("--data", required=True, help="folder of sharp images")
    ap.add_argument("--out", required=True, type=Path, help="folder for the tables and the heat-map")
    ap.add_argument("--crop", type=int, default=256, help="centre crop side in pixels, 0 = whole images [256]")
    ap.add_argument("--scales", default="1,1.5,2,3,4", help="blur scales s [1,1.5,2,3,4]")
    ap.add_argument("--kernels", default=",".join(KERNELS), help="downscale kernels, and psf for a PSF at the native grid of blur scale s [the four kernels]")
    ap.add_argument("--noise", default="none,poisson200", help=f"noise levels of {sorted(NOISE)} [both]")
    ap.add_argument("--scale-mode", choices=("auto", "oracle", "learned"), default="auto",
                    help="what a conditioned model is told: the spectral estimate (as --scale auto), the true s, or the "
                         "learned reading alone (runtime.learned_reading, not the smaller of it and the template fit) [auto]")
    coarse = ap.add_mutually_exclusive_group()
    coarse.add_argument("--free-coarse", dest="keep_coarse", action="store_false", default=None,
                        help="the network's output as it is at every s (ficli enhance --free-coarse)")
    coarse.add_argument("--keep-coarse", dest="keep_coarse", action="store_true", default=None,
                        help=f"the coarse content kept at every s (ficli enhance --keep-coarse) [as ficli enhance: kept below a told s of {FREE_FROM:g}]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tables-only", action="store_true", help="remake cells.csv, table.md and heatmap.png from OUT/images.csv")
    args = ap.parse_args(argv)

    if args.tables_only:
        return _tables(_read_rows(args.out / "images.csv"), args)
    generator, meta = load_generator(args.model, torch.device("cpu"))
    args.keep_coarse = check_coarse(meta, args.keep_coarse)
    conditioned = meta["config"].scale_input
    scales = [float(v) for v in args.scales.split(",")]
    kernels, noises = args.kernels.split(","), args.noise.split(",")
    images = [(item.path, _crop(io.read_image(item.path).data, args.crop)) for item in io.collect_inputs([args.data])]
    rows = []
    for path, hr in images:
        for kernel in kernels:
            for s in scales:
                for noise in noises:
                    rows.append(_score_cell(generator, conditioned, meta, path, hr, kernel, s, noise, args))
        print(f"{path.name}: {len(kernels) * len(scales) * len(noises)} cells", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    _write_csv(args.out / "images.csv", rows)
    return _tables(rows, args)


def _read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for key in ("s", "psnr_in", "psnr_out", "ssim_in", "ssim_out"):
            r[key] = float(r[key])
        r["told_s"] = float(r["told_s"]) if r["told_s"] not in ("", "None") else None
    return rows


def _tables(rows: list[dict], args) -> int:
    path = resolve_model_path(args.model)
    meta = {"path": str(path), "config": GeneratorConfig(**modelfile.model_info(path)["config"])}
    n_images = len({r["image"] for r in rows})
    cells = _cells(rows)
    _write_csv(args.out / "cells.csv", cells)
    (args.out / "table.md").write_text(_markdown(cells, meta, args, n_images), encoding="utf-8")
    _heatmap(cells, args.out / "heatmap.png", f"{Path(meta['path']).name} on {Path(args.data).name}: gain over the input (dB)")
    print((args.out / "table.md").read_text(encoding="utf-8"))
    return 0


def _crop(data: np.ndarray, side: int) -> np.ndarray:
    if not side:
        return data
    h, w = data.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return data[top : top + side, left : left + side]


def _setting(kernel: str, s: float, noise: str) -> Degradation:
    """A cell's degradation; kernel "psf" is a Gaussian PSF at the native grid as blurred as a pil
    shrink-enlarge by s (σ = s / 2.4: `degrade.blur_scale`), without resampling."""
    if kernel == "psf":
        return Degradation(scale=1.0, psf_sigma=s / PSF_S_PER_SIGMA if s > 1 else 0.0, poisson_peak=NOISE[noise])
    return Degradation(scale=s, kernel=kernel, poisson_peak=NOISE[noise])


def cell_input(name: str, hr: np.ndarray, kernel: str, s: float, noise: str, seed: int = 0) -> np.ndarray:
    """One cell's input, on the unit scale: `hr` degraded as the cell says (seeded by the file's
    `name` and the cell) and rounded to its pixel type as a written file would be."""
    degraded = degrade(io.to_unit(hr), _setting(kernel, s, noise), seed_for(seed, f"{name}/{kernel}/{s}/{noise}"))
    return io.to_unit(io.from_unit(degraded, hr.dtype))


def _score_cell(generator, conditioned, meta, path, hr, kernel, s, noise, args) -> dict:
    y = cell_input(path.name, hr, kernel, s, noise, args.seed)
    told, options = None, EnhanceOptions(keep_coarse=args.keep_coarse)
    if conditioned and args.scale_mode == "learned":  # the learned reading alone, not the smaller of two
        trained, (learned, _) = float(meta.get("scale", 4)), blurscale.readings([y])
        told, how = (min(max(learned_reading(learned)[0], 1.0), trained) if learned.scale else trained), "learned"
        options = replace(options, scale_for=lambda frames, upscale, told=told, how=how: (told, how))
    elif conditioned:  # as `ficli enhance --scale auto` (or --scale S with the true s) chooses it
        told, how = scale_chooser(meta, s if args.scale_mode == "oracle" else None)([y])
        options = replace(options, scale_for=lambda frames, upscale, told=told, how=how: (told, how))
    sr = io.from_unit(enhance_frames(generator, [y], options)[0], hr.dtype)
    lr = io.from_unit(y, hr.dtype)
    out, inp = score_images(hr, sr, scale=Scale("hr")), score_images(hr, lr, scale=Scale("hr"))
    return {"image": path.name, "kernel": kernel, "s": s, "noise": noise, "told_s": told,
            "psnr_in": inp.psnr, "psnr_out": out.psnr, "ssim_in": inp.ssim, "ssim_out": out.ssim}


def _cells(rows: list[dict]) -> list[dict]:
    keys = list(dict.fromkeys((r["kernel"], r["s"], r["noise"]) for r in rows))
    cells = []
    for kernel, s, noise in keys:
        part = [r for r in rows if (r["kernel"], r["s"], r["noise"]) == (kernel, s, noise)]
        identity = all(math.isinf(r["psnr_in"]) for r in part)
        gains = [r["psnr_out"] - r["psnr_in"] for r in part]
        told = [r["told_s"] for r in part if r["told_s"] is not None]
        cells.append({
            "kernel": kernel, "s": s, "noise": noise, "n": len(part),
            # an image returned bit for bit (a flat one) has PSNR inf: the mean is over the others
            "identity_psnr": float(np.mean([v for v in (r["psnr_out"] for r in part) if math.isfinite(v)] or [math.inf])) if identity else None,
            "gain_db": None if identity else float(np.mean(gains)),
            "worst_gain_db": float(np.min([r["psnr_out"] for r in part])) if identity else float(np.min(gains)),
            "gain_ssim": float(np.mean([r["ssim_out"] - r["ssim_in"] for r in part])),
            "told_s": float(np.mean(told)) if told else None,
        })
    return cells


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _markdown(cells: list[dict], meta: dict, args, n_images: int) -> str:
    lines = [
        f"Model `{Path(meta['path']).name}` on `{args.data}` ({n_images} images, centre {args.crop} px; hr scale; "
        f"{'told ' + args.scale_mode + ' s' if meta['config'].scale_input else 'not conditioned'}"
        f"{'; the coarse content ' + COARSE_WORDS[args.keep_coarse] if meta['config'].scale_input else ''}).",
        "",
        "| kernel | s | noise | gain dB (mean) | worst image dB | gain SSIM | PSNR(G(X), X) | s told |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(f"| {c['kernel']} | {c['s']:g} | {c['noise']} | {_fmt(c['gain_db'], '+.2f')} | "
                     f"{_fmt(c['worst_gain_db'], '.1f' if c['gain_db'] is None else '+.2f')} | {_fmt(c['gain_ssim'], '+.4f')} | "
                     f"{_fmt(c['identity_psnr'], '.1f')} | {_fmt(c['told_s'], '.2f')} |")
    return "\n".join(lines) + "\n"


def _heatmap(cells: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(dict.fromkeys((c["kernel"], c["noise"]) for c in cells))
    cols = list(dict.fromkeys(c["s"] for c in cells))
    grid = np.full((len(rows), len(cols)), np.nan)
    for c in cells:
        if c["gain_db"] is not None:
            grid[rows.index((c["kernel"], c["noise"])), cols.index(c["s"])] = c["gain_db"]
    lim = max(1.0, float(np.nanmax(np.abs(grid))))
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2.5, 0.45 * len(rows) + 1.5))
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, "identity" if np.isnan(v) else f"{v:+.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)), [f"s = {s:g}" for s in cols])
    ax.set_yticks(range(len(rows)), [f"{k}, {n}" for k, n in rows])
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="dB")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
