"""The `ficli` Typer app, its root options and the options several commands share.

The commands themselves are in the sibling modules (`images`, `training`, `video`, `tools`); they
register on `app` when `ficli.cli` imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core

from ficli import __version__
from ficli.console import (blur_scale_value, console, tolerate_undecodable_names)

def _flag_shows_no_type(option_class) -> None:
    """Typer 0.2x's rich help prints a type column for every option, `<bool>` for a flag too, so
    users typed `--recursive true` and had `true` read as an input path. A flag takes no value: its
    help shows none (options that take a value keep theirs)."""
    shown = getattr(option_class, "display_type_rich", None)
    if shown is None or getattr(shown, "ficli_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) or getattr(self, "count", False) else shown(self, ctx)

    display_type_rich.ficli_flags = True
    option_class.display_type_rich = display_type_rich


_flag_shows_no_type(typer.core.TyperOption)

app = typer.Typer(
    name="ficli",
    help="Sharpen fluorescence images and videos with FI-GAN (total gradient loss), and measure the result.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        console.print(f"ficli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Sharpen fluorescence images and videos with FI-GAN (total gradient loss), and measure the result."""
    from ficli.image import guard

    tolerate_undecodable_names()
    guard.catch_signals()  # SIGTERM and SIGHUP as Ctrl-C, for every command
    ctx.call_on_close(guard.release_locks)  # the locks of the command's outputs, when it ends


# Options that degrade, enhance and video share: one definition each, so their help cannot drift apart.
InputsHelp = ("files, folders or glob patterns (quote globs); - reads paths from standard input and @FILE from FILE, "
              "one a line (blank lines and # comments skipped).")
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output folder; the input tree is mirrored under it, names and formats kept. Two inputs of the same name from different folders (A/x.png B/x.png) keep their folders' names: OUT/A/x.png, OUT/B/x.png.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist already. Without it (or --skip-existing) a run that finds any refuses before starting. Inputs are never overwritten.")]
SkipOption = Annotated[bool, typer.Option("--skip-existing", help="Leave outputs that exist already untouched and do the rest (resume an interrupted batch). An existing output that is empty or cannot be read whole is made again, with a note.")]
SuffixOption = Annotated[str, typer.Option("--suffix", help="Text added to each output name before its extension: --suffix _sr writes x_sr.png for x.png (x_sr.ome.tif for x.ome.tif) [default: none].")]
CompressionOption = Annotated[str, typer.Option("--compression", help="Compression of TIFF outputs: 'keep' (default: the input's; LZW, zlib, zstd and PackBits are written again, JPEG and schemes ficli cannot write become zlib, with a note), 'none', 'zlib', 'lzw' or 'zstd' (the last two need the imagecodecs package, else zlib with a note). PNG is always compressed losslessly.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line; failures, errors and notes still go to stderr.")]
ResultQuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or status line; the result itself (table, JSON) is still shown, and errors and notes still go to stderr.")]
# Options that enhance, video and bench share.
ModelOption = Annotated[Optional[Path], typer.Option("--model", "-m", help="Model file (.safetensors from 'ficli train'), or 'paper' for the shipped paper-protocol model (fixed ×4 PIL bicubic), or 'noise-kept' for the shipped model that sharpens without removing noise (for clean images whose grain you want kept; models/MODEL_CARD_noise-kept.md), or 'deconvolve' for the shipped model of blur by the optics at the native grid (a Gaussian PSF, no resampling; clean images; models/MODEL_CARD_deconvolve.md). Default: the shipped robust model, told the blur scale (--scale), which also removes heavy shot noise.")]
TileOption = Annotated[int, typer.Option("--tile", help="Largest tile side in pixels (multiple of 4). An image whose area is at most tile² runs whole; a larger one is cut into the fewest equal tiles of at most this side. Memory is about 0.5 GB per million pixels of a batch in fp32: smaller tiles use less.")]
OverlapOption = Annotated[int, typer.Option("--overlap", help="Context and cross-fade width between tiles, pixels per side (rounded up to 4).")]
CompileOption = Annotated[bool, typer.Option("--compile", help="Run the generator through torch.compile (on CUDA; on 2 CPU cores it measured 1.4× slower than without). The first frame or tile of each size waits for compilation (seconds to a minute); where compiling fails, ficli says so and runs without it.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps.")]
ScaleOption = Annotated[str, typer.Option("--scale", callback=blur_scale_value, help="Blur scale s of the input, for a model conditioned on it: 1 = already sharp, 4 = as blurred as a ×4 bicubic enlargement; a number from 1 to 8, or auto (default): estimated from each image's power spectrum (docs/DEGRADATIONS.md), once per image or stack, and printed; an image too small or flat to estimate gets the model's training scale. An s above the model's training scale is told that scale. The shipped default model is conditioned; a plain one (--model paper) ignores auto and refuses S.")]
KeepCoarseOption = Annotated[Optional[bool], typer.Option("--keep-coarse/--free-coarse", help="For a model told the blur scale s. --keep-coarse: keep the input's coarse content at every s: the network's correction loses the part a Gaussian blur of σ = s/2.4 px passes (back-projection), so local brightness and shapes wider than the blur stay the input's, an image that was sharp already comes back nearly as it is, and an s read too high harms little (docs/DEGRADATIONS.md, 'Keeping the coarse content'). --free-coarse: the network's output as it is at every s. Neither (default): kept where the s told is below 3.25, the output as it is from 3.25 up, where keeping it halved the gain (×4 files of the test split: +0.5 to +0.9 dB more; under shot noise +0.6 to +0.7) except on OpenCV's aliased ×4 (−0.25 dB; models/MODEL_CARD.md, 'Issue 24, round 7').", show_default=False)]
PrecisionOption = Annotated[str, typer.Option("--precision", help="fp32 (exact); fp16: CUDA autocast, within 1 grey level of 8-bit of fp32; bf16: CUDA, or a CPU with AVX-512 BF16/AMX (about 3× fp32 there), within 2 grey levels. A batch with NaN/Inf is redone in fp32.")]
# Options for OME-Zarr inputs and for job arrays (issue 28).
ShardOption = Annotated[Optional[str], typer.Option("--shard", help="I/N: do only the I-th of N disjoint parts of the inputs (1 <= I <= N; every N-th input in the order of their paths below their folders, the same on every machine), for SLURM/SGE array jobs and GNU parallel: `--shard $SLURM_ARRAY_TASK_ID/N` with --array=1-N. With --skip-existing, shards and reruns compose; each shard takes its own lock on --out and writes its own ficli-run.shardIofN.json [default: all inputs].")]
PyramidOption = Annotated[int, typer.Option("--pyramid", min=0, max=12, help="OME-Zarr output: also write N lower-resolution levels, each half the previous in y and x (2×2 means), rebuilt from the full-resolution result, for viewers such as napari [default: 0, the full resolution alone].")]
