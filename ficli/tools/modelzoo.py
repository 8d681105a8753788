"""What a bioimage.io (BioImage Model Zoo) package of a ficli model says and shows, apart from its
weights: the README it carries as documentation (input, output, which blur scale s suits which
data, validation scores, the model card), its test and sample images, its cover, and the
description of its training data. `ficli.tools.export` writes the package; nothing here needs
bioimageio.spec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ficli.defaults import HI_PCT, LO_PCT
from ficli.image import io

PAPER = ("Zhang, Wang et al., Improved generative adversarial networks using the total gradient loss for the "
         "resolution enhancement of fluorescence images, Biomedical Optics Express 10 (2019)")
PAPER_DOI = "10.1364/BOE.10.004742"

# Which blur scale s suits which data: one table for the package's README and its description (the
# project's README says the same in its "Which command for my data" table).
WHICH_SCALE = [
    ("an image sharp to the pixel (native camera or confocal image, not resized)", "1 to 1.5 (ficli's estimate for such images)"),
    ("an image enlarged ×k from a low-resolution one (microscope software, `ficli degrade`, bicubic upsampling)", "k, up to 4"),
    ("a file someone shrank and enlarged back by a factor k", "k, up to 4"),
    ("not known", "run `ficli enhance IMAGE` once: it prints the s it estimates (`blur scale s = ...`); export with that"),
]


def which_scale_lines() -> list[str]:
    """Markdown: the table of which s suits which data."""
    return ["| your data | s |", "|---|---|", *[f"| {data} | {s} |" for data, s in WHICH_SCALE]]


def camera_input(channels: int, scale: float | None) -> np.ndarray:
    """The package's test input: a phantom as a 12-bit camera records it, blurred as the model's
    input should be (×4 bicubic, or the fixed scale), as float32 (1, C, 128, 128) in camera counts."""
    from ficli.image.degrade import Degradation, degrade
    from ficli.image.phantom import phantom

    sharp = phantom(128, 128, seed=7, peak_photons=None)
    blurred = degrade(sharp, Degradation(scale=scale or 4), np.random.default_rng(0))
    counts = np.round(np.clip(blurred, 0, 1) * 4095).astype(np.float32)
    return np.repeat(counts[None, None], channels, axis=1)


def normalise_like_ficli(x: np.ndarray, lo_pct: float, hi_pct: float) -> np.ndarray:
    from ficli.image.intensity import normalize, percentile_range

    lo, hi = percentile_range(x, lo_pct, hi_pct)
    return normalize(x, lo, hi)


def in_input_units(y: np.ndarray, x: np.ndarray, lo_pct: float, hi_pct: float) -> np.ndarray:
    """The output `y` (normalised scale) mapped back to the units of its input `x`, as ficli does."""
    from ficli.image.intensity import denormalize, percentile_range

    lo, hi = percentile_range(x, lo_pct, hi_pct)
    return denormalize(y, lo, hi)


def write_samples(raw: np.ndarray, expected: np.ndarray, folder: Path) -> tuple[Path, Path]:
    """The sample tensors, as images a person can open: the test input (12-bit counts) and its
    output on the normalised scale, first channel, as float32 TIFF (sample_input.tif, sample_output.tif)."""
    import tifffile

    paths = folder / "sample_input.tif", folder / "sample_output.tif"
    for path, array in zip(paths, (raw, expected)):
        tifffile.imwrite(path, np.ascontiguousarray(array[0, 0], np.float32))
    return paths


def cover(before: np.ndarray, after: np.ndarray, path: Path) -> None:
    """Input (left) and output (right), each mapped by the input's percentiles to 8 bits: 2:1."""
    lo, hi = np.percentile(before, (LO_PCT, HI_PCT))
    scale = lambda a: np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1)  # noqa: E731
    side = np.concatenate([scale(before), scale(after)], axis=1)
    io.write_image(path, np.round(side * 255).astype(np.uint8))


def training_data_text(metadata: dict) -> str:
    """What the model was trained on, stage by stage, from its metadata (folders or @lists)."""
    stages = metadata.get("stages", [])
    if not stages:
        return "The model file records no training data."
    parts = [f"{stage.get('stage', 'training')}: {', '.join(Path(str(d)).name for d in stage.get('data', [])) or '?'} "
             f"(validated on {Path(str(stage.get('val', '?'))).name})" for stage in stages]
    return ("Stages: " + "; ".join(parts) + ". Sources, licences and splits: the model card in this package's "
            "documentation.")


def documentation(settings: dict, metadata: dict, model_path: Path, scale: float | None, tolerance: float) -> str:
    """The package's README.md."""
    norm = settings["normalize"]
    lines = [
        "# ficli FI-GAN generator", "",
        f"Exported by {settings['exported_by']} from `{model_path.name}`. Method: {PAPER} (doi:{PAPER_DOI}).", "",
        "## Input and output", "",
        "- Input: a blurred grayscale fluorescence image, any size of at least 4 × 4 pixels (the graph pads to "
        "multiples of 4 inside and crops back), any intensity units. The output has the input's size: the model "
        "sharpens, it does not add pixels.",
        f"- Pre-processing: each image is mapped by its own {norm['lo_pct']} and {norm['hi_pct']} percentiles to 0 and 1 "
        "(`scale_range`, over the whole image), as `ficli enhance` does.",
        "- Output: the sharpened image **on that normalised scale** (0 = the input's low percentile, 1 = its high "
        "percentile; values may fall a little outside). `ficli enhance` maps it back exactly, `y * (hi - lo) + lo`, "
        "to the input's own units. The format's post-processing cannot invert a per-image percentile map "
        "(`scale_mean_variance` with the input as reference matches mean and variance instead, and sharpening "
        "changes the variance, so it would shift intensities): multiply by (hi - lo) and add lo yourself where "
        "you need the input's units (`sample_input.tif` and `sample_output.tif` are an example pair).",
    ]
    if scale is not None:
        lines += [f"- This model is told the blur scale s of its input; this package runs it at a **fixed s = {scale:g}**. "
                  "Export again with `ficli export --format bioimageio --scale S` for another s, or use the ONNX or "
                  "TorchScript export, which take s as a second input. Which s suits which data:", "",
                  *which_scale_lines()]
    lines += ["", "## Validation", ""]
    for stage in metadata.get("stages", []):
        m = stage.get("val_metrics", {})
        if "val_psnr" in m:
            lines.append(f"- {stage.get('stage', 'training')} stage, validated on `{Path(str(stage.get('val', '?'))).name}`: "
                         f"PSNR {m['val_psnr']:.2f} dB (bicubic input {m.get('val_bicubic_psnr', float('nan')):.2f} dB), "
                         f"SSIM {m.get('val_ssim', float('nan')):.4f} (bicubic {m.get('val_bicubic_ssim', float('nan')):.4f}), "
                         "on the normalised scale.")
    if not metadata.get("stages"):
        lines.append("- The model file records no validation scores.")
    lines += [f"- The test tensors of this package: ficli's own normalisation and generator; every weight format "
              f"reproduces them within {tolerance:g}."]
    lines += ["", "Large images: ficli runs tiles of up to 512 × 512 px with 32 px of context per side, cross-faded "
              "(the default architecture's receptive field has a radius of 130 px, so tiles with less context than that "
              "differ slightly from a whole-image run).", ""]
    from ficli.inference.runtime import model_card_path

    card = model_card_path(model_path)
    if card:
        lines += ["---", "", card.read_text(encoding="utf-8")]
    return "\n".join(lines) + "\n"
