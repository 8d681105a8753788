"""The `ficli` command line: options, help, progress bars and error reporting, nothing else.

Each subcommand parses its options, calls one library function and turns a `FicliError` into one
line on stderr and exit code 1 (no traceback for a user mistake).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ficli import __version__
from ficli.errors import ConfigError, FicliError

app = typer.Typer(
    name="ficli",
    help="Sharpen fluorescence images and videos with FI-GAN (total gradient loss), and measure the result.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Into a file or a pipe, tables keep every digit instead of being squeezed into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 240)
err_console = Console(stderr=True)


def _version(value: bool):
    if value:
        console.print(f"ficli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Sharpen fluorescence images and videos with FI-GAN (total gradient loss), and measure the result."""
    _tolerate_undecodable_names()


def _tolerate_undecodable_names() -> None:
    """A file name that is not UTF-8 (Python holds its bytes as surrogate escapes) is printed as its
    own bytes, as `ls` does, instead of crashing a strict UTF-8 stdout or stderr mid-table."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(Exception):
                stream.reconfigure(errors="surrogateescape")


def _stdout_console(*outputs) -> Console:
    """Where tables and messages go: stderr when one of `outputs` is "-" (standard output), so
    that stdout holds the data alone."""
    from ficli.io import is_stdout

    return err_console if any(path is not None and is_stdout(path) for path in outputs) else console


def _one_stdout(**options) -> None:
    """Usage error (exit 2) when more than one of `options` (name → path) is "-"."""
    from ficli.io import is_stdout

    named = [name for name, path in options.items() if path is not None and is_stdout(path)]
    if len(named) > 1:
        raise typer.BadParameter(f"only one output can go to standard output ('-'), not {' and '.join(named)}", param_hint=named[-1])


BATCH_INTERRUPTED = "interrupted: finished files are complete, no partial file was left; rerun with --skip-existing to go on"


@contextlib.contextmanager
def _reporting_errors(interrupted=BATCH_INTERRUPTED):
    """Turn user errors into one line on stderr and exit 1; Ctrl-C into the `interrupted` message
    (a string, or a function giving it at that moment) and exit 130."""
    try:
        yield
    except FicliError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        message = interrupted() if callable(interrupted) else interrupted
        err_console.print(message, highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(130) from None


@contextlib.contextmanager
def _usage_errors():
    """A ConfigError (an option value that cannot work, here or on this machine) becomes Typer's
    usage error: exit 2, before any file is read or model loaded."""
    try:
        yield
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _note(message: str) -> None:
    """A yellow "note:" line on stderr (above a running progress bar); the message is printed as is."""
    err_console.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _progress(quiet: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=quiet or not err_console.is_terminal,
    )


def _run_files(description: str, outs: dict, process, skip_existing: bool, quiet: bool = False):
    """Run a batch over files (`outs`: input -> output path) with a progress bar that moves by file
    and, within a file, by tile (`process(item, dest, on_fraction)`); report failures and a summary."""
    from ficli.batch import run_batch

    start = time.perf_counter()
    with _progress(quiet) as progress:
        task = progress.add_task(description, total=len(outs), rate="")
        finished, rate = [0], [""]

        def on_fraction(item, fraction):
            shown = f"{rate[0]}  {item.rel.name} {fraction:.0%}".strip()  # names may hold [brackets]
            progress.update(task, completed=finished[0] + min(fraction, 0.999), rate=escape(shown))

        def on_item(item, status, message):
            finished[0] += 1
            rate[0] = f"{finished[0] / max(time.perf_counter() - start, 1e-9):.2f} files/s"
            progress.update(task, completed=finished[0], rate=rate[0])
            if status == "failed":
                progress.console.print(f"[red]failed:[/] {escape(message)}", highlight=False, soft_wrap=True)  # names may hold [brackets]

        report = run_batch(list(outs), outs.__getitem__, lambda item, dest: process(item, dest, lambda f: on_fraction(item, f)),
                           skip_existing=skip_existing, on_item=on_item)
    if not quiet:
        console.print(f"{description}: {report.summary()} in {time.perf_counter() - start:.1f} s", highlight=False, soft_wrap=True)
    if not report.ok:
        written = f"the other {len(report.done)} were written" if report.done else "nothing was written"
        err_console.print(f"{len(report.failed)} file(s) failed; {written}", highlight=False)
        raise typer.Exit(1)


def _plan_batch(inputs, out: Path, recursive: bool, suffix: str, overwrite: bool, skip_existing: bool, share=None) -> dict:
    """Inputs and their checked outputs, before torch is imported or a model loaded: paths, an
    output folder that would overwrite inputs, clashes, existing outputs (see `batch.plan_outputs`)."""
    from ficli import batch, io

    with _usage_errors():
        io.check_name_suffix(suffix)
        if overwrite and skip_existing:
            raise ConfigError("give one of --overwrite (replace existing outputs) and --skip-existing (leave them)")
    items = io.collect_inputs(inputs, recursive=recursive)
    io.check_output_dir(out, items, recursive=recursive)
    mine = batch.shard(items) if share else items
    outs = batch.plan_outputs(items, lambda item: io.output_path(item, out, name_suffix=suffix),
                              overwrite=overwrite, skip_existing=skip_existing, share=mine)
    return {item: outs[item] for item in mine}


# Options that degrade, enhance and video share: one definition each, so their help cannot drift apart.
InputsHelp = ("files, folders or glob patterns (quote globs); - reads paths from standard input and @FILE from FILE, "
              "one a line (blank lines and # comments skipped).")
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output folder; the input tree is mirrored under it, names and formats kept. Two inputs of the same name from different folders (A/x.png B/x.png) keep their folders' names: OUT/A/x.png, OUT/B/x.png.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist already. Without it (or --skip-existing) a run that finds any refuses before starting. Inputs are never overwritten.")]
SkipOption = Annotated[bool, typer.Option("--skip-existing", help="Leave outputs that exist already untouched and do the rest (resume an interrupted batch).")]
SuffixOption = Annotated[str, typer.Option("--suffix", help="Text added to each output name before its extension: --suffix _sr writes x_sr.png for x.png (x_sr.ome.tif for x.ome.tif) [default: none].")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line; failures, errors and notes still go to stderr.")]


# ------------------------------------------------------------------------------------------- degrade


@app.command()
def degrade(
    inputs: list[str] = typer.Argument(..., help="HR images: " + InputsHelp),
    out: OutOption = ...,
    scale: str = typer.Option("4", "--scale", "-s", help="Shrink factor s of K_s, any number from 1 to 8 (e.g. 2.5); default 4. U then enlarges back to the input size; 1 with no blur and no noise leaves the image as it is. The sides padded to multiples of s stay within 400 million pixels."),
    kernel: str = typer.Option("pil", "--kernel", "-k", help="Downscale kernel K_s: 'pil' (default, the paper's: antialiased bicubic a=-0.5, as PIL/MATLAB shrink), 'cv2' (OpenCV INTER_CUBIC a=-0.75, not antialiased: what most OpenCV pipelines do), 'area' (mean over each pixel's footprint: what a camera pixel integrates), 'bilinear' (OpenCV INTER_LINEAR, not antialiased: cv2.resize's default). See docs/DEGRADATIONS.md."),
    psf_sigma: float = typer.Option(0.0, "--psf-sigma", help="Gaussian PSF blur before K_s, standard deviation in HR pixels, 0 to 50; default 0 = none."),
    poisson_peak: float = typer.Option(0.0, "--poisson-peak", help="Poisson (shot) noise on the small image: photon count at the image's maximum, up to 1e9; default 0 = none. Lower is noisier (e.g. 200)."),
    gaussian_sigma: float = typer.Option(0.0, "--gaussian-sigma", help="Gaussian read noise on the small image, standard deviation as a fraction of the image's maximum, 0 to 1; default 0 = none."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the noise; the same seed gives the same output for the same file name."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders."),
    overwrite: OverwriteOption = False,
    skip_existing: SkipOption = False,
    suffix: SuffixOption = "",
    quiet: QuietOption = False,
):
    """Simulate blurred, low-resolution images: Y = U(K_s(B(X)) + noise).

    B is an optional Gaussian PSF blur; K_s shrinks by --scale with the --kernel; Poisson, then
    Gaussian noise are added to the small image (where a camera counts photons); U enlarges back with
    the project's one bicubic resize, so each output has its input's size, pixel type and format.
    Sides that do not divide by the scale are reflect-padded before K_s and cropped back after U.
    """
    with _reporting_errors():
        outs = _plan_batch(inputs, out, recursive, suffix, overwrite, skip_existing)
        from ficli.degrade import SCALE_RANGE, Degradation, check_setting, degrade_file  # torch: after the paths are checked

        with _usage_errors():
            try:
                scale = float(scale)
            except ValueError:
                check_setting("scale", scale, *SCALE_RANGE)  # refuses, naming the range
            settings = Degradation(scale=scale, psf_sigma=psf_sigma, poisson_peak=poisson_peak, gaussian_sigma=gaussian_sigma, kernel=kernel)
        _run_files("degrade", outs, lambda item, dest, on_fraction: degrade_file(item.path, dest, settings, seed),
                   skip_existing, quiet)


# ------------------------------------------------------------------------------------------ evaluate


@app.command()
def evaluate(
    hr: str = typer.Argument(..., help="Ground-truth (HR) folder, image file or glob pattern."),
    sr: list[str] = typer.Argument(..., help="One or more folders of restored (SR) images, one per method; each gets its own column group."),
    data_range: str = typer.Option("dtype", "--data-range", help="Intensity scale mapped to [0, 1]: 'dtype' (integers ÷ their type's maximum, floats as they are), 'hr' (each HR image's min..max, same map on its SR image) or a number (e.g. 4095 for a 12-bit camera)."),
    crop_border: int = typer.Option(0, "--crop-border", min=0, help="Pixels cropped from each side of each image before scoring (e.g. the scale factor); 0 = none."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders; pairing uses the path inside each folder."),
    per_image: bool = typer.Option(True, "--per-image/--summary-only", help="Show one row per image, or only the mean ± std and count rows."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write per-image scores here (hr, method, sr, psnr_db, ssim, rmse, scale); '-' = standard output (the table then goes to stderr). File names that are not UTF-8 are written as their own bytes."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write everything here as strict JSON: scale, per-method mean/std/n, per-image scores, every problem by file; '-' = standard output. Infinite or undefined numbers (PSNR of identical images) are null; non-UTF-8 bytes of file names are written as \\xNN."),
    allow_unpaired: bool = typer.Option(False, "--allow-unpaired", help="Exit 0 even when some files have no partner in the other folder (they are still listed)."),
):
    """Score restorations against ground truth: PSNR (dB), SSIM and RMSE per image and per folder.

    SR images pair with HR images by path inside their folders, or by name without extension (HR
    a.tif with SR a.png). Images are scored on [0, 1] (see --data-range; the table title states the
    scale): RMSE, PSNR = 20·log10(1/RMSE), and SSIM with an 11×11 Gaussian window (σ = 1.5,
    Wang et al. 2004, as scikit-image computes it). Colour images are averaged over channels, stacks
    over frames. Summary rows give the mean ± sample standard deviation (n − 1) over images.

    Nothing is dropped silently: unpaired files, size or pixel-type mismatches (not scored: their
    units differ), images smaller than 11×11 after --crop-border and unreadable files are listed by
    name on stderr and in --json.

    Exit code: 0 when every image was scored; 1 when any file was listed as a problem (the table
    and --csv/--json still hold everything that could be scored) or nothing could be scored, or on
    a missing or empty folder; 2 for a bad option.
    """
    from ficli import evaluate as ev

    with _reporting_errors("interrupted: nothing was written (--csv and --json are written at the end); run it again"):
        try:
            scale = ev.parse_scale(data_range)
        except FicliError as exc:
            raise typer.BadParameter(str(exc).split(": ", 1)[-1], param_hint="--data-range") from None
        _one_stdout(**{"--csv": csv_file, "--json": json_file})
        for path, option in ((csv_file, "--csv"), (json_file, "--json")):
            if path is not None:
                ev.check_output_file(path, option)
        out_console = _stdout_console(csv_file, json_file)
        with _progress() as progress:
            task = progress.add_task("evaluate", total=None, rate="")
            report = ev.evaluate_folders(
                hr, sr, scale=scale, crop_border=crop_border, recursive=recursive,
                on_pair=lambda done, total: progress.update(task, completed=done, total=total),
                outputs=[path for path in (csv_file, json_file) if path is not None],
            )
        out_console.print(_evaluate_table(report, per_image))
        _print_evaluate_notes(report)
        if csv_file is not None:
            ev.write_csv(report, csv_file)
        if json_file is not None:
            ev.write_json(report, json_file)
        if not report.rows:
            raise FicliError("no image pair could be scored; see the problems above")
    if not report.ok(allow_unpaired=allow_unpaired):
        raise typer.Exit(1)


def _evaluate_table(report, per_image: bool):
    from rich.table import Table

    from ficli.evaluate import METRICS

    units = {"psnr": "PSNR dB", "ssim": "SSIM", "rmse": "RMSE"}
    table = Table(title=f"{report.hr} — scale: {report.scale.describe()}", title_justify="left",
                  caption=f"crop border {report.crop_border} px" if report.crop_border else None)
    table.add_column("image", overflow="fold")
    for method in report.methods:
        for m in METRICS:
            table.add_column(f"{method.name}\n{units[m]}", justify="right", no_wrap=True)
    if per_image:
        scores = report.scores_by_image()
        for rel in report.hr_order:
            cells = [scores.get((rel, method.name)) for method in report.methods]
            if any(cells):
                table.add_row(rel.as_posix(), *[_metric_cell(m, getattr(s, m) if s else None) for s in cells for m in METRICS])
        table.add_section()
    summaries = [report.summary(method.name) for method in report.methods]
    table.add_row("mean ± std", *[
        _metric_cell(m, getattr(s.mean, m) if s.mean else None) + (f" ± {_metric_text(m, getattr(s.std, m))}" if s.std else "")
        for s in summaries for m in METRICS
    ])
    table.add_row("n (images)", *[str(s.n) if m == "psnr" else "" for s in summaries for m in METRICS])
    return table


def _metric_text(metric: str, value: float) -> str:
    if value != value:
        return "–"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return {"psnr": f"{value:.2f}", "ssim": f"{value:.4f}", "rmse": f"{value:.4g}"}[metric]


def _metric_cell(metric: str, value) -> str:
    return "–" if value is None else _metric_text(metric, value)


def _print_evaluate_notes(report, shown: int = 10) -> None:
    """Problems grouped by kind and method, `shown` names each (all are in --json); the narrow-range hint once."""
    groups: dict = {}
    for problem in report.problems:
        groups.setdefault((problem.kind, problem.method), []).append(problem)
    titles = {
        "no-sr": "HR images without an SR image", "no-hr": "SR images without an HR image",
        "ambiguous": "ambiguous names", "unreadable": "unreadable images", "size": "size mismatches",
        "dtype": "pixel-type mismatches", "unscorable": "pairs that cannot be scored",
    }
    for (kind, method), problems in groups.items():
        where = f" in {method}" if method else ""
        err_console.print(f"[bold yellow]{titles.get(kind, kind)}{where}:[/] {len(problems)}", highlight=False)
        for problem in problems[:shown]:
            err_console.print(f"  {problem.message}", highlight=False, soft_wrap=True, markup=False)
        if len(problems) > shown:
            err_console.print(f"  … and {len(problems) - shown} more (all are listed with --json FILE)", highlight=False)
    if report.narrow:
        path, lo, hi, top = report.narrow[0]
        err_console.print(
            f"note: {len(report.narrow)} HR image(s) span less than 1/8 of their pixel type's range "
            f"(e.g. {path}: {lo:g}..{hi:g} of {top:g}); on the dtype scale their scores look better than they are — "
            "consider --data-range hr (or the camera's range, e.g. --data-range 4095)",
            highlight=False, soft_wrap=True, markup=False,
        )


# Options that enhance and video share: one definition each, so their help cannot drift apart.
ModelOption = Annotated[Optional[Path], typer.Option("--model", "-m", help="Model file (.safetensors from 'ficli train'). Default: the model shipped in models/.")]
TileOption = Annotated[int, typer.Option("--tile", help="Largest tile side in pixels (multiple of 4). An image whose area is at most tile² runs whole; a larger one is cut into the fewest equal tiles of at most this side. Memory is about 0.5 GB per million pixels of a batch in fp32: smaller tiles use less.")]
OverlapOption = Annotated[int, typer.Option("--overlap", help="Context and cross-fade width between tiles, pixels per side (rounded up to 4).")]
CompileOption = Annotated[bool, typer.Option("--compile", help="Run the generator through torch.compile (on CUDA; on 2 CPU cores it measured 1.4× slower than without). The first frame or tile of each size waits for compilation (seconds to a minute); where compiling fails, ficli says so and runs without it.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps.")]
PrecisionOption = Annotated[str, typer.Option("--precision", help="fp32 (exact); fp16: CUDA autocast, within 1 grey level of 8-bit of fp32; bf16: CUDA, or a CPU with AVX-512 BF16/AMX (about 3× fp32 there), within 2 grey levels. A batch with NaN/Inf is redone in fp32.")]


# ------------------------------------------------------------------------------------------- enhance


@app.command()
def enhance(
    inputs: list[str] = typer.Argument(..., help="PNG, TIFF (stacks too), JPEG, BMP images: " + InputsHelp),
    out: OutOption = ...,
    model: ModelOption = None,
    upscale: int = typer.Option(1, "--upscale", min=1, help="Bicubic-enlarge each image by this factor before enhancing (the paper's re-up-scaling): use it for images at their native resolution. 1 = same size, for images already enlarged from low resolution or blurred. The output stays within 400 million pixels a frame."),
    tile: TileOption = 512,
    overlap: OverlapOption = 32,
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Tiles run through the network at once [default: 1 on the CPU, where it is fastest, 4 on a GPU]."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    compile_model: CompileOption = False,
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Feed [0, 1]-scaled intensities as they are, without the 0.1/99.9-percentile mapping (for data already spanning [0, 1])."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders."),
    overwrite: OverwriteOption = False,
    skip_existing: SkipOption = False,
    suffix: SuffixOption = "",
    quiet: QuietOption = False,
):
    """Sharpen images with FI-GAN, tile by tile, keeping each file's pixel type and range.

    **What the default does**: at the default --upscale 1 the output has the input's size and the
    network undoes the blur of a ×4 bicubic enlargement, which is what it was trained on. Use it on
    images made by enlarging a low-resolution image to the size wanted (e.g. `ficli degrade`
    output, or data upsampled by the microscope software) and on similarly blurred data. On images
    at their native resolution (already sharp to the pixel) it over-sharpens: dark halos around
    bright structures. For those give --upscale S: each image is first enlarged S× (output S×
    larger; 4 matches the ×4 it was trained on), which is the case the model knows.

    Each image (or whole TIFF stack) is mapped by its own 0.1 and 99.9 intensity percentiles before
    the network and mapped back exactly after it, so intensities stay in the file's units. RGB images
    go through a 1-channel model channel by channel; alpha is kept. Under `torchrun --nproc-per-node N
    -m ficli enhance ...` each process takes every N-th file. Exit code: 1 if any file failed (the others are
    written) or outputs exist already; 2 for an option value that cannot work here.
    """
    with _reporting_errors():
        outs = _plan_batch(inputs, out, recursive, suffix, overwrite, skip_existing, share=True)
        if model is not None:
            from ficli import io

            io.check_input_file(model)
        # torch from here on: the paths are checked.
        from ficli.engine import TileConfig, default_batch, resolve_device, resolve_precision
        from ficli.enhance import CompiledGenerator, EnhanceOptions, enhance_file, load_generator

        with _usage_errors():  # once, not once per file
            dev = resolve_device(device)
            options = EnhanceOptions(
                upscale=upscale,
                normalize=not no_normalize,
                tile=TileConfig(tile=tile, overlap=overlap, batch=batch or default_batch(dev), device=str(dev), precision=precision),
            )
            resolve_precision(precision, dev)
        generator, info = load_generator(model, dev)
        channels = info["config"].channels
        notices: set[str] = set()

        def notice(message: str):
            if message not in notices:
                notices.add(message)
                _note(message)

        if compile_model:
            generator = CompiledGenerator(generator, on_notice=notice)

        _run_files("enhance", outs,
                   lambda item, dest, on_fraction: enhance_file(item.path, dest, generator, options, channels, notice, on_fraction),
                   skip_existing, quiet)


# --------------------------------------------------------------------------------------------- train


def _positive_finite(value: Optional[float]) -> Optional[float]:
    """Typer callback: a number above 0 that is finite (exit 2 otherwise, before anything loads)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a finite number above 0")
    return value


def _finite(value: Optional[float]) -> Optional[float]:
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _decay(value: float) -> float:
    if not 0 <= value < 1:  # also refuses nan
        raise typer.BadParameter(f"{value}: use 0 (off) or a decay in [0, 1), e.g. 0.999")
    return value


# With --resume or --continue-from the run's own settings hold; these may be given anew (data that
# moved, more epochs, another device). Any other option given must equal the run's setting.
_RUN_MAY_CHANGE = {"data", "val", "out", "resume", "continue_from", "epochs", "device", "overwrite"}


def _differing_options(ctx: typer.Context, cfg, given: dict) -> list[str]:
    """The options given on the command line whose value differs from the run's setting `cfg`."""
    flat = {**dataclasses.asdict(cfg), **dataclasses.asdict(cfg.weights), **dataclasses.asdict(cfg.generator)}
    aliases = {"no_gan": ("gan", lambda v: not v), "tg_weight": ("tg", None), "adv_weight": ("adv", None), "mse_weight": ("mse", None),
               "l1_weight": ("smooth_l1", None), "vgg_weight": ("vgg", None), "resnet_weight": ("resnet", None),
               "init": ("init", lambda v: str(v) if v else None), "k_max": ("k_max", lambda v: int(v) if str(v).isdigit() else v)}
    differ = []
    for name, value in given.items():
        if name in _RUN_MAY_CHANGE or getattr(ctx.get_parameter_source(name), "name", None) != "COMMANDLINE":
            continue
        key, convert = aliases.get(name, (name, None))
        value = convert(value) if convert else value
        if key not in flat or flat[key] != value:
            option = "--" + name.replace("_", "-")
            differ.append(f"{option} {given[name]} (the run's: {flat.get(key, 'not set')})")
    return differ


@app.command()
def train(
    ctx: typer.Context,
    data: list[str] = typer.Option(None, "--data", help="Folder(s) of HR training images (searched recursively; other files such as MANIFEST.csv are passed over); repeat for several, e.g. --data train --data train_extra."),
    val: Optional[str] = typer.Option(None, "--val", help="Folder of HR validation images."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder: checkpoint.pt, best/last.safetensors, metrics.csv, curves.png, summary.json."),
    stage: str = typer.Option("pretrain", "--stage", help="pretrain (natural images: lr 1e-3, batch 64, crop 64, ε 1e-3, θ 1) or finetune (fluorescence: lr 1e-6, batch 64, crop 32, ε 1, α β θ 10)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this model file (e.g. the pretrain run's best.safetensors); a new run: step count and schedule start at 0."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted run in this folder exactly where its last finished epoch ended (needs its checkpoint.pt); other options are taken from it."),
    continue_from: Optional[Path] = typer.Option(None, "--continue-from", help="Continue a run from its model file alone (RUN/last.safetensors, e.g. copied to another machine) into a new --out: step count, learning-rate schedule and data order go on; optimizer state (and the critic) start afresh. --data/--val give the data's new location; it must be the same files."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run or trained models already in --out (otherwise refused)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Maximum number of epochs [default: 100]; with --resume/--continue-from, raises the run's own limit."),
    steps: int = typer.Option(100, "--steps", min=1, help="Batches per epoch."),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Crops per batch, 1 or more [default: the stage's, 64]."),
    crop: Optional[int] = typer.Option(None, "--crop", min=8, help="HR crop side in pixels, a multiple of 4, at least 8 [default: the stage's, 64 or 32]."),
    lr: Optional[float] = typer.Option(None, "--lr", callback=_positive_finite, help="Adam learning rate, a finite number above 0 [default: the stage's, 1e-3 or 1e-6]."),
    lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant, or cosine: from --lr down to 0 at the last step of --epochs."),
    warmup_steps: int = typer.Option(0, "--warmup-steps", min=0, help="Raise the learning rate linearly from 0 to --lr over this many steps (0 = none)."),
    ema: float = typer.Option(0.0, "--ema", callback=_decay, help="Validate and export an exponential moving average of the generator's weights with this decay per step, in [0, 1), e.g. 0.999; 0 = off."),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many epochs without a higher validation PSNR."),
    no_gan: bool = typer.Option(False, "--no-gan", help="Train the generator alone (no discriminator, ε = 0): a warm-up."),
    tg_weight: Optional[float] = typer.Option(None, "--tg-weight", min=0, callback=_finite, help="θ, weight of the total gradient loss, finite, ≥ 0 [default: the stage's]."),
    k_max: str = typer.Option("N/2", "--k-max", help="Largest TG lag: 1, N/2, N or an integer."),
    adv_weight: Optional[float] = typer.Option(None, "--adv-weight", min=0, callback=_finite, help="ε, weight of the adversarial loss, finite, ≥ 0 [default: the stage's]."),
    mse_weight: Optional[float] = typer.Option(None, "--mse-weight", min=0, callback=_finite, help="α, weight of the MSE term, finite, ≥ 0 [default: the stage's]."),
    l1_weight: Optional[float] = typer.Option(None, "--l1-weight", min=0, callback=_finite, help="β, weight of the SmoothL1 term, finite, ≥ 0 [default: the stage's]."),
    vgg_weight: float = typer.Option(0.0, "--vgg-weight", min=0, callback=_finite, help="γ, VGG16 feature term; needs FICLI_VGG16_WEIGHTS (torchvision ImageNet file). The paper: 8e-3 / 8."),
    resnet_weight: float = typer.Option(0.0, "--resnet-weight", min=0, callback=_finite, help="η, ResNet152 feature term; needs FICLI_RESNET152_WEIGHTS. The paper: 1e-2 / 1."),
    psf_sigma_max: float = typer.Option(0.0, "--psf-sigma-max", min=0, max=20, help="Robustness: PSF blur sigma drawn in [0, this] HR pixels per crop, 0-20."),
    poisson_peak_min: float = typer.Option(0.0, "--poisson-peak-min", min=0, callback=_finite, help="Robustness: Poisson noise with peak photons drawn in [this, 10×this] per crop; 0 = none."),
    gaussian_sigma_max: float = typer.Option(0.0, "--gaussian-sigma-max", min=0, max=1, help="Robustness: Gaussian read noise sigma drawn in [0, this] (fraction of the maximum), 0-1."),
    degradations: str = typer.Option("paper", "--degradations", help="How training inputs are made: 'paper' (default: every crop ×--scale with PIL's bicubic, the paper's protocol, plus the --psf-sigma-max/--poisson-peak-min/--gaussian-sigma-max ranges) or 'family' (each crop with its own kernel pil|cv2|area|bilinear, blur scale s in [1, 4], PSF and Poisson-Gaussian noise, 15 % left sharp; the generator is told s and --scale auto can set it; see docs/DEGRADATIONS.md)."),
    val_size: int = typer.Option(256, "--val-size", min=0, help="Centre-crop validation images to this side in pixels (0 = whole images)."),
    val_limit: int = typer.Option(0, "--val-limit", min=0, help="Validate on at most this many images (0 = all)."),
    features: int = typer.Option(64, "--features", min=4, help="Generator width F (feature channels)."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="Channels-last (NHWC) tensors while training [default: on; a step at crop 64 measured 1.39× faster on an AMD EPYC CPU, crop 32 the same]."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the generator and critic for training (compiling takes a minute or more; see docs/BENCHMARKS.md)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps (bf16 autocast on CUDA)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (crops, augmentation, initial weights): repeatable on CPU."),
):
    """Train FI-GAN: stage 1 on natural images, stage 2 fine-tuning on fluorescence images.

    Each epoch draws --steps batches of random crops, makes their low-resolution inputs with the
    project's own degradation (×4 bicubic, optional blur/noise), and validates on the --val images
    through the tiled engine (PSNR/SSIM against the bicubic input). Samples/s, the share of each
    part of a step and an ETA go to the screen and metrics.csv. A run continues with --resume RUN
    (same folder) or --continue-from RUN/last.safetensors --out NEW (another folder or machine).
    Multi-GPU: `torchrun --nproc-per-node N -m ficli train ...`.
    """
    given = dict(ctx.params)
    if resume and continue_from:
        raise typer.BadParameter("give one of --resume RUN_DIR and --continue-from MODEL_FILE", param_hint="--continue-from")
    from ficli.losses import LossWeights
    from ficli.nets import GeneratorConfig
    from ficli import train as training

    def interrupted() -> str:
        run_dir = resume or out
        if run_dir is not None and (Path(run_dir) / training.CHECKPOINT).is_file():
            return f"interrupted: every finished epoch is saved in {run_dir}; continue with: ficli train --resume {run_dir}"
        return "interrupted before the first epoch finished: there is nothing to resume; start the run again"

    with _reporting_errors(interrupted):
        if resume or continue_from:
            if continue_from:
                if not out:
                    raise FicliError("--continue-from needs --out NEWDIR, the folder the continued run writes to")
                cfg = training.read_continue_config(continue_from, str(out), data=tuple(data) if data else None, val=val, epochs=epochs,
                                                    device=device if device != "auto" else None)
            else:
                cfg = training.read_run_config(resume)
                cfg = dataclasses.replace(cfg, out=str(resume), epochs=epochs or cfg.epochs, data=tuple(data) if data else cfg.data,
                                          val=val or cfg.val)
            differ = _differing_options(ctx, cfg, given)
            if differ:
                source = resume or continue_from
                raise ConfigError(
                    f"{source}: the run was made with other settings than {', '.join(differ)}; a continued run keeps its "
                    "own settings (only --data, --val, --epochs and --device may be given): drop those options, or start "
                    "a new run with --out NEWDIR (--init FILE to start from its weights)"
                )
        else:
            if not data or not val or not out:
                raise FicliError("give --data, --val and --out (or --resume RUN_DIR / --continue-from MODEL --out NEWDIR to continue a run)")
            preset = training.PRESETS.get(stage)
            if preset is None:
                raise FicliError(f"unknown --stage {stage!r}; use pretrain or finetune")
            w = preset.weights
            weights = LossWeights(
                adv=0.0 if no_gan else (w.adv if adv_weight is None else adv_weight),
                mse=w.mse if mse_weight is None else mse_weight,
                smooth_l1=w.smooth_l1 if l1_weight is None else l1_weight,
                vgg=vgg_weight,
                resnet=resnet_weight,
                tg=w.tg if tg_weight is None else tg_weight,
                k_max=int(k_max) if k_max.isdigit() else k_max,
            )
            cfg = training.TrainConfig.for_stage(
                stage, data=tuple(data), val=val, out=str(out), init=str(init) if init else None, weights=weights,
                gan=not no_gan, lr=lr, batch=batch, crop=crop, epochs=epochs or 100, steps=steps, patience=patience,
                psf_sigma_max=psf_sigma_max, poisson_peak_min=poisson_peak_min, gaussian_sigma_max=gaussian_sigma_max,
                val_size=val_size, val_limit=val_limit, device=device, seed=seed, generator=GeneratorConfig(features=features, scale_input=degradations == "family"),
                degradations=degradations, lr_schedule=lr_schedule, warmup_steps=warmup_steps, ema=ema, channels_last=channels_last, compile=compile_model,
            )
            if cfg.crop % 4:
                raise FicliError(f"--crop must be a multiple of 4, got {cfg.crop}")
        with Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=err_console, disable=not err_console.is_terminal,
        ) as bar:
            task = bar.add_task("train", total=cfg.steps, epoch=0, info="")

            last_line = [time.perf_counter()]

            def on_step(epoch, step, total, terms):
                info = (f"G {terms['total']:.4g}  TG {terms['tg']:.3g}  {terms['samples_per_s']:.1f} samples/s  "
                        f"ETA {_duration(terms['eta_s'])}")
                bar.update(task, completed=step, epoch=f"{epoch}/{cfg.epochs}", info=info)
                if bar.disable and time.perf_counter() - last_line[0] > 60:  # logs and nohup: a line a minute
                    last_line[0] = time.perf_counter()
                    err_console.print(f"epoch {epoch}/{cfg.epochs} step {step}/{total}  {info}", highlight=False)

            def on_epoch(row):
                shares = "  ".join(f"{k[6:]} {row[k]:.0%}" for k in row if k.startswith("share_"))
                bar.console.print(
                    f"epoch {row['epoch']}: loss {row['loss_total']:.4g}  val PSNR {row['val_psnr']:.2f} dB "
                    f"(bicubic {row['val_bicubic_psnr']:.2f})  SSIM {row['val_ssim']:.4f} (bicubic {row['val_bicubic_ssim']:.4f})  "
                    f"{row['seconds']:.0f} s, {row['samples_per_s']:.1f} samples/s, {row['steps_per_s']:.3g} steps/s  "
                    f"({shares})  ETA {_duration(row['eta_s'])}",
                    highlight=False,
                )
                bar.reset(task, total=cfg.steps)

            summary = training.train(cfg, training.Progress(on_step=on_step, on_epoch=on_epoch, on_notice=_note), resume=bool(resume),
                                     continue_from=str(continue_from) if continue_from else None, overwrite=overwrite)
        if summary["rank"] == 0:
            best = Path(cfg.out) / "best.safetensors"
            if summary["best_val_psnr"] is not None and best.is_file():
                console.print(f"best val PSNR {summary['best_val_psnr']:.2f} dB at epoch {summary['best_epoch']}; model: {best}", highlight=False)
            else:
                console.print(f"no epoch was run (the run had reached --epochs {cfg.epochs}); raise --epochs to go on", highlight=False)


def _duration(seconds: float) -> str:
    """12 s, 3 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------------------------------- profile


@app.command()
def profile(
    images: list[Path] = typer.Argument(..., help="Images of the same field and size: e.g. original, bicubic and enhanced."),
    line: str = typer.Option(..., "--line", help="x0,y0,x1,y1 in pixels (x to the right, y down; sub-pixel allowed)."),
    out: Path = typer.Option(..., "--out", "-o", help="The plot, a PNG file; '-' = standard output."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Also write the sampled values: distance_px and one column per image (headed by the file names; names that are not UTF-8 as their own bytes); '-' = standard output."),
    title: Optional[str] = typer.Option(None, "--title", help="Plot title [default: the line's end points]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out or --csv file. An input image is never replaced."),
):
    """Plot the intensity along one line through several images (like the paper's Figs. 5-7).

    One sample per pixel of line length, bilinear interpolation, in each file's own units; colour
    images give the mean over channels; a stack gives its first frame. --out and --csv are checked
    before any image is read: neither may name an input image, nor an existing file without
    --overwrite.
    """
    from ficli.profile import check_outputs, parse_line, profile_files

    with _reporting_errors("interrupted: nothing was written; run it again"):
        _one_stdout(**{"--out": out, "--csv": csv_file})
        check_outputs(images, out, csv_file, overwrite=overwrite)
        profile_files(images, parse_line(line), out, csv_file, title)
        _stdout_console(out, csv_file).print(f"wrote {out}" + (f" and {csv_file}" if csv_file else ""), highlight=False, markup=False)


# --------------------------------------------------------------------------------------------- bench


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="Small sizes and one repeat (about a minute on 2 CPU cores): checks that everything runs, not how fast."),
    device: DeviceOption = "auto",
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed runs per row after one warm-up; the best is reported."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write every table and the machine description here (rewritten after each table, so a run cut short keeps what it measured); '-' = standard output, once at the end (the tables then go to stderr)."),
    compile_model: bool = typer.Option(False, "--compile", help="Also time the generator and the video pipeline through torch.compile, as --compile runs them, at 1280×720 in half precision (compiling takes tens of seconds per shape)."),
    only: Optional[str] = typer.Option(None, "--only", help="Run only these tables, comma-separated: tg, generator, body, tiled, train, video [default: all]."),
    sizes_option: Optional[str] = typer.Option(None, "--sizes", help="Frame sizes for the generator, body and video tables, WIDTHxHEIGHT comma-separated, multiples of 4 [default: 640x360,1280x720,1920x1080; body 1280x720; video 640x360,1280x720]."),
):
    """Time the parts that decide speed: TG loss (direct vs FFT), the generator and its body, tiled
    vs whole, a training step (fp32/bf16, channels-last, compiled with --compile), each stage of
    `ficli video`; then the performance targets against what was measured.

    Best of --repeats runs after a warm-up (other jobs on a shared machine only add time). GFLOP
    are counted from the convolution shapes. Ratios measured in the same run are the numbers to
    compare across machines.
    """
    import json

    from ficli import bench as b
    from ficli.engine import resolve_device
    from ficli.io import is_stdout, write_text
    from ficli.nets import GeneratorConfig

    with _reporting_errors():
        with _usage_errors():
            chosen_sizes = b.parse_sizes(sizes_option) if sizes_option else None
            dev = str(resolve_device(device))
        reps = 1 if quick else repeats
        small = GeneratorConfig(features=16, growth=8) if quick else GeneratorConfig()
        tables = {}
        sizes = chosen_sizes or (((160, 92),) if quick else ((640, 360), (1280, 720), (1920, 1080)))
        runs = {
            # On a GPU at training's batch (64): a batch of 4 would time kernel launches only.
            "tg": ("Total gradient loss, forward + backward, k_max N/2",
                   lambda: b.bench_tg((32, 64) if quick else (32, 64, 128, 256), batch=4 if dev == "cpu" else 64,
                                      repeats=reps, device=dev)),
            "generator": ("Generator forward per frame: batch 1 and the best batch, each precision the device runs" + (" (quick: width 16)" if quick else ""),
                          lambda: b.generator_rows(quick, dev, reps, small, sizes, compile_model)),
            "body": ("Generator body alone (residual dense blocks + fusion, at 1/4 size): TFLOP/s and share of the device's dense half-precision peak",
                     lambda: b.bench_body(sizes if quick or chosen_sizes else sizes[1:2], dev, reps, small)),
            "tiled": ("Tiled engine (tile 512, overlap 32, batch 4) vs whole image",
                      lambda: b.bench_tiled(((640, 360),) if quick else ((640, 360), (1280, 720), (4096, 4096)), dev, 1, small)),
            "train": ("One training step (critic + generator, TG loss, backward, Adam) at the presets' shapes, and the batch of pairs alone" + (" (quick: width 16, critic width 16, batch 4)" if quick else ""),
                      lambda: b.bench_train((("finetune", 4, 32),) if quick else (("finetune", 64, 32), ("pretrain", 64, 64)), dev, reps,
                                            small, compiled=(False, True) if compile_model else (False,),
                                            critic_features=16 if quick else 64)),
            "video": ("ficli video: each stage alone (frames/s), end to end once frames flow, the one-off start, and the stage that limits it; default-size generator",
                      lambda: b.video_rows(quick, dev, reps, compile_model, chosen_sizes)),
        }
        chosen = list(runs) if only is None else [name.strip() for name in only.split(",") if name.strip()]
        if not chosen or any(name not in runs for name in chosen):
            raise typer.BadParameter(f"{only!r}: use a comma-separated list of {', '.join(runs)}", param_hint="--only")
        info = b.machine_info(dev)
        shown = _stdout_console(json_file)  # stderr when the JSON goes to stdout
        shown.print(" · ".join(f"{k} {v}" for k, v in info.items()), highlight=False)

        def save(final: bool = False) -> None:  # after every table: a run cut short keeps what it measured
            if json_file is not None and (final or not is_stdout(json_file)):
                write_text(json_file, json.dumps({"machine": info, "quick": quick, "tables": tables}, indent=2))

        rows_of = {}
        for name in chosen:
            title, run = runs[name]
            with err_console.status(f"timing: {title} …"):
                rows_of[name] = run()
            tables[title] = rows_of[name]
            shown.print(f"\n[bold]{title}[/]")
            shown.print(b.format_table(rows_of[name]), highlight=False, markup=False)
            save()
        targets = b.target_rows(rows_of.get("generator", []), rows_of.get("body", []), rows_of.get("video", []), dev)
        tables["Targets"] = targets
        shown.print("\n[bold]Targets[/] (judged only on the device they are set for)")
        shown.print(b.format_table(targets), highlight=False, markup=False)
        save(final=True)


# --------------------------------------------------------------------------------------------- video


@app.command()
def video(
    src: Path = typer.Argument(..., help="Input video: anything ffmpeg reads (MP4, MOV, MKV, AVI...)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output video (.mp4, .m4v, .mov or .mkv). Default: NAME_ficli.mp4 next to the input NAME.ext."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (and frames in --frames-dir). The input is never overwritten."),
    model: ModelOption = None,
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Original (bicubic-enlarged with --upscale) left, enhanced right: twice the width."),
    compare_only: bool = typer.Option(False, "--compare-only", help="A split preview at the frame's own width: left half original, right half enhanced."),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Small 'original' / 'ficli' labels in --side-by-side and --compare-only frames."),
    channels: str = typer.Option("auto", "--channels", help="auto: gray video (also gray stored as RGB: channels within 2 levels) as one channel, colour video by its luminance; gray: the channels' mean (gray output); luma: Y of YCrCb enhanced, chroma kept; rgb: each channel."),
    upscale: int = typer.Option(1, "--upscale", min=1, help="Bicubic-enlarge frames by this factor before enhancing: for video at its native resolution. 1 = same size, for video enlarged from low resolution or blurred. The output stays within 400 million pixels a frame."),
    start: float = typer.Option(0.0, "--start", min=0, help="Start this many seconds into the video."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Process this many seconds (default: to the end)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Process at most this many frames."),
    frames_dir: Optional[Path] = typer.Option(None, "--frames-dir", help="Also write each enhanced frame here as NAME_000001.png, ... (16-bit PNG for high-bit-depth video)."),
    crf: int = typer.Option(18, "--crf", min=0, max=51, help="H.264 quality: 0 lossless, 18 visually lossless, 23 x264's default; lower is larger."),
    preset: str = typer.Option("medium", "--preset", help="x264 speed/size trade-off: ultrafast ... medium ... veryslow."),
    tile: TileOption = 1280,  # video.VIDEO_TILE: 720p frames whole, 1080p in two tiles
    overlap: OverlapOption = 32,
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Frames run through the network at once (the same tile of each) [default: 1 on the CPU, where it is fastest, 4 on a GPU]."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    compile_model: CompileOption = False,
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Feed [0, 1]-scaled intensities as they are, without the percentile mapping."),
    quiet: QuietOption = False,
):
    """Sharpen a video (e.g. a NIR surgical recording) frame by frame into an H.264 file.

    **What the default does**: at the default --upscale 1 the frames keep their size and the
    network undoes the blur of a ×4 bicubic enlargement, which is what it was trained on: right for
    video enlarged from a low-resolution sensor or similarly blurred. On video at its native
    resolution (sharp to the pixel) it over-sharpens: dark halos around bright structures; give
    --upscale S there (frames enlarged S× first, output S× larger).

    Frames stream from ffmpeg through the network and back into ffmpeg (decoding, inference and
    encoding overlap; memory stays small for hour-long files). The output is H.264 (yuv420p, BT.709)
    at the input's frame rate, with the input's audio copied unchanged (re-encoded to AAC only where
    MP4 cannot hold it). It is written to a temporary file and renamed when complete.

    **Normalisation**: one 0.1/99.9-percentile intensity range for the whole selected section
    (never per frame, which would flicker), computed from up to 32 frames spread evenly over it.

    Variable-frame-rate input is made constant at the stream's nominal rate (frames repeated or
    dropped), so every frame keeps its time and the audio stays in step. An odd width or height is padded by one repeated pixel
    (yuv420p needs even sides). Ctrl-C finishes the encoder on the frames already done and keeps
    them, playable, as OUT.partial.mp4 (OUT is written only when complete).
    """
    from ficli import io

    with _reporting_errors():
        if side_by_side and compare_only:
            raise typer.BadParameter("choose one of --side-by-side and --compare-only", param_hint="--compare-only")
        for path in (src, model):  # before torch is imported (seconds)
            if path is not None:
                io.check_input_file(path)
        from ficli.engine import TileConfig, default_batch, resolve_device, resolve_precision
        from ficli.enhance import CompiledGenerator, load_generator
        from ficli.video import Section, VideoInterrupted, VideoOptions, check_video, enhance_video

        with _usage_errors():
            dev = resolve_device(device)
            options = VideoOptions(
                out=out, overwrite=overwrite, layout="side-by-side" if side_by_side else "compare" if compare_only else "enhanced",
                labels=labels, channels=channels.lower(), upscale=upscale, normalize=not no_normalize,
                section=Section(start=start, duration=duration, max_frames=max_frames), frames_dir=frames_dir,
                crf=crf, preset=preset, batch=batch or default_batch(dev),
                tile=TileConfig(tile=tile, overlap=overlap, batch=1, device=str(dev), precision=precision),
            )
            resolve_precision(precision, dev)
        begun = time.perf_counter()
        try:
            source = check_video(src, options)  # input and output problems before the model loads
            generator, info = load_generator(model, dev)
            if compile_model:
                generator = CompiledGenerator(generator, cuda_graphs=dev.type == "cuda", on_notice=_note)
            with _progress(quiet) as progress:
                task = progress.add_task("video", total=None, rate="")

                def on_start(plan):
                    nonlocal begun
                    begun = time.perf_counter()
                    progress.update(task, total=plan.frames)
                    if not quiet:
                        progress.console.print(plan.describe(), highlight=False, soft_wrap=True, markup=False)

                def on_progress(done, expected):
                    total = None if expected is None else max(expected, done)
                    rate = done / max(time.perf_counter() - begun, 1e-9)
                    progress.update(task, completed=done, total=total, rate=f"{rate:.2f} frames/s")

                report = enhance_video(src, generator, options, info["config"].channels, info=source,
                                       on_start=on_start, on_progress=on_progress, on_notice=_note)
                progress.update(task, completed=report.frames, total=report.frames)
        except VideoInterrupted as stop:
            err_console.print(f"interrupted: {stop}", highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            err_console.print("interrupted before any frame was written; no file was left")
            raise typer.Exit(130) from None
    if quiet:
        return
    console.print(
        f"video: {report.frames} frames in {report.seconds:.1f} s, {report.fps:.2f} frames/s end to end "
        f"(network alone {report.network_fps:.2f} frames/s) -> {report.out}",
        highlight=False, soft_wrap=True, markup=False,
    )


# -------------------------------------------------------------------------------------- export, info


@app.command()
def export(
    model: ModelOption = None,
    format_name: str = typer.Option(..., "--format", "-f", help="onnx (opset 17, dynamic batch, height and width), torchscript (torch.jit), or bioimageio (a BioImage Model Zoo package, .zip, for deepImageJ, ilastik, napari)."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (.onnx, .pt, .zip); written only when complete and checked."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    scale: Optional[float] = typer.Option(None, "--scale", help="For a model conditioned on the blur scale: the scale s (1 to 8) fixed in the exported graph [default: the model's training scale]. Refused for a plain model."),
):
    """Export a model for other tools: ONNX, TorchScript, or a bioimage.io package.

    The exported graph is the generator on the normalised scale: feed each image mapped by its own
    0.1 and 99.9 percentiles to 0 and 1, as `ficli enhance` does; map the output back with
    y·(hi − lo) + lo. Any height and width of at least 4 pixels (padded to multiples of 4 inside
    the graph). The written file is loaded back and checked against ficli's generator (within 1e-4)
    before it is put in place. ONNX and bioimageio need `pip install 'ficli[export]'`.

    Exit code: 2 for an unknown --format or a --scale the model cannot take; 1 for a file that is
    not a ficli model, an existing --out without --overwrite, or a missing package.
    """
    from ficli import io

    with _reporting_errors("interrupted: nothing was written; run it again"):
        with _usage_errors():
            from ficli.export import check_format, check_target

            check_format(format_name)
        check_target(out, overwrite)
        if model is not None:
            io.check_input_file(model)
        from ficli.export import export_model

        with _usage_errors(), err_console.status(f"exporting to {format_name} …"):  # --scale: a usage error
            report = export_model(model, format_name, out, overwrite=overwrite, scale=scale)
        console.print(report.describe(), highlight=False, soft_wrap=True, markup=False)


@app.command()
def info(
    model: Optional[Path] = typer.Argument(None, help="Model file (.safetensors) [default: the model shipped in models/]."),
    json_output: bool = typer.Option(False, "--json", help="Print everything the file records as JSON on standard output, for scripts."),
):
    """What a model file holds: architecture, blur scale, training stages (data, settings, time) and
    validation scores. Reads the file's header only (no weights are loaded)."""
    import json

    from ficli.api import model_summary

    with _reporting_errors("interrupted"):
        if model is not None:
            from ficli import io

            io.check_input_file(model)
        summary = model_summary(model)
        if json_output:
            print(json.dumps(summary, indent=2))
            return
        console.print(_info_table(summary))


def _info_table(summary: dict):
    from rich.table import Table

    c = summary["config"]
    table = Table(title=escape(str(summary["path"])), title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    table.add_row("architecture", f"FI-GAN generator: {c['channels']} channel(s), {c['features']} features, {c['blocks']} residual dense blocks of {c['layers']} layers, growth {c['growth']}")
    table.add_row("parameters", f"{summary['parameters']:,}")
    table.add_row("blur scale", f"conditioned on the input's scale (trained at ×{summary['scale']})" if c.get("scale_input") else f"×{summary['scale']} (fixed)")
    norm = summary["info"].get("normalize")
    if norm:
        table.add_row("normalisation", f"percentiles {norm['lo_pct']} / {norm['hi_pct']}")
    table.add_row("file", f"{summary['bytes'] / 1e6:.1f} MB, format version {summary['format_version']}, sha256 {summary['sha256'][:16]}…")
    for stage in summary["info"].get("stages", []):
        settings = stage.get("settings", {})
        m = stage.get("val_metrics", {})
        data = ", ".join(str(d) for d in stage.get("data", [])) or "?"
        text = (f"data {data}; val {stage.get('val', '?')}\n"
                f"{stage.get('epochs', '?')} epochs (best {stage.get('best_epoch', '?')}), {stage.get('seconds', 0) / 60:.1f} min on {settings.get('device', '?')}; "
                f"lr {settings.get('lr', '?')}, batch {settings.get('batch', '?')}, crop {settings.get('crop', '?')}")
        if "val_psnr" in m:
            text += (f"\nval PSNR {m['val_psnr']:.2f} dB (bicubic {m.get('val_bicubic_psnr', float('nan')):.2f}), "
                     f"SSIM {m.get('val_ssim', float('nan')):.4f} (bicubic {m.get('val_bicubic_ssim', float('nan')):.4f})")
        table.add_row(f"stage {stage.get('stage', '?')}", escape(text))
    return table


def main() -> None:
    app()


if __name__ == "__main__":
    main()
